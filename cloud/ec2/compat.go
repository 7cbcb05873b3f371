package ec2

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
)

// incompatible says why an instance type cannot serve the node class
// ("" = it can), with the checks Karpenter v1.14 applies before offering a
// type for a class: the AMI family (Windows AMIs are x86_64 only; AL2023
// does not boot on a1), the interface layout (EFA interfaces need an EFA
// type with enough EFA interfaces and network cards), nested
// virtualization, the placement group's strategy and connection tracking
// (Nitro only).
func incompatible(ti *typeInfo, nc nodeClass, pg *cloud.PlacementGroup) string {
	if _, win := windowsFamilies[nc.AMIFamily]; win && ti.arch != "amd64" {
		return "Windows AMIs are x86_64 only"
	}
	if nc.AMIFamily == FamilyAL2023 && strings.HasPrefix(ti.name, "a1.") {
		return "AL2023 does not support a1 instances"
	}
	efaOnly := 0
	for _, n := range nc.NICs {
		if n.Type == string(awsv1.InterfaceTypeEFAOnly) {
			efaOnly++
		}
		if n.Card >= ti.networkCards {
			return fmt.Sprintf("network card %d: the type has %d", n.Card, ti.networkCards)
		}
	}
	if efaOnly > 0 && (!ti.efa || (ti.maxEFA > 0 && int32(efaOnly) > ti.maxEFA)) {
		return "the networkInterfaces need EFA"
	}
	if nc.NestedVirtualization == "enabled" && !ti.nestedVirt {
		return "no nested virtualization"
	}
	if pg != nil && len(ti.pgStrategies) > 0 && !slices.Contains(ti.pgStrategies, pg.Strategy) {
		return "placement strategy " + pg.Strategy + " not supported"
	}
	if nc.ConnTrack != nil && ti.hypervisor != "" && ti.hypervisor != "nitro" {
		return "connection tracking needs Nitro"
	}
	return ""
}

// CompatibleInstanceTypes narrows instance types to those that can serve
// the node class (see incompatible) and gives them the class's OS labels:
// kubernetes.io/os=windows and node.kubernetes.io/windows-build for the
// Windows families. Types EC2 did not describe are kept (nothing known
// against them). The input is not modified.
func (p *Provider) CompatibleInstanceTypes(ctx context.Context, nodeClass *awsv1.EC2NodeClass, its []*cloud.InstanceType) ([]*cloud.InstanceType, error) {
	nc, err := fromAPI(nodeClass)
	if err != nil {
		return nil, err
	}
	var pg *cloud.PlacementGroup
	if nc.PlacementGroup != nil {
		// The resolution cache answers; a missing group shows in the
		// class's status and its launches fail there, not here.
		if r, err := p.resolve(ctx, nc); err == nil {
			pg = r.PlacementGroup
		}
	}
	p.typesMu.Lock()
	snap := p.types
	p.typesMu.Unlock()
	win, isWin := windowsFamilies[nc.AMIFamily]
	out := make([]*cloud.InstanceType, 0, len(its))
	for _, it := range its {
		if it == nil {
			continue
		}
		if snap != nil {
			if ti := snap.types[it.Name]; ti != nil {
				if why := incompatible(ti, nc, pg); why != "" {
					continue
				}
			}
		}
		if isWin {
			c := *it
			c.Labels = maps.Clone(it.Labels)
			if c.Labels == nil {
				c.Labels = map[string]string{}
			}
			c.Labels[corev1.LabelOSStable] = "windows"
			c.Labels[LabelWindowsBuild] = win.build
			it = &c
		}
		out = append(out, it)
	}
	return out, nil
}
