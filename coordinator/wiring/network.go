package wiring

import (
	"slices"

	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// instanceNetwork returns the subnet and security groups of every instance
// the replicated ledger recorded, keyed by provider ID, for subnet and
// security-group drift. The launcher stores the provider's Create answer in
// the intent, and that answer already says where the instance runs, so the
// snapshot costs no EC2 call. Instances recorded without network placement
// (launched before it was recorded) are left out: they never drift by
// subnet or security group.
func instanceNetwork(st *fsm.State) map[string]disruption.InstanceNetwork {
	if st == nil {
		return nil
	}
	out := map[string]disruption.InstanceNetwork{}
	newest := map[string]*fsm.Intent{}
	for _, in := range st.Intents {
		if in == nil || in.Instance == nil || in.Instance.ProviderID == "" {
			continue
		}
		inst := in.Instance
		if inst.SubnetID == "" && len(inst.SecurityGroupIDs) == 0 {
			continue
		}
		// One instance belongs to one intent; should the ledger ever hold two
		// for a provider ID, the most recently updated one describes it.
		if prev := newest[inst.ProviderID]; prev != nil && prev.UpdatedAt.After(in.UpdatedAt) {
			continue
		}
		newest[inst.ProviderID] = in
		out[inst.ProviderID] = disruption.InstanceNetwork{
			SubnetID:       inst.SubnetID,
			SecurityGroups: slices.Clone(inst.SecurityGroupIDs),
		}
	}
	return out
}
