package launcher

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// Observed is what one reconcile pass sees, read in the order that keeps
// the protocol's invariants: NodeClaims, then the cloud, then the replicated
// state (every launch creates its NodeClaim, then commits its intent, then
// calls the cloud, so whatever a listing shows that belongs to a live launch
// has its intent in the state read after it), then the nodes of launched
// claims.
type Observed struct {
	// Claims is nil when the launcher runs without Kubernetes.
	Claims    []karpv1.NodeClaim
	HaveKube  bool
	Instances []*cloud.Instance
	State     *fsm.State
	// Nodes holds, by providerID, the node of each launched intent not yet
	// initialized (absent: no node yet).
	Nodes map[string]*corev1.Node
	// FirstSeen is, by instance ID, when this leadership first saw an
	// instance that no intent owns.
	FirstSeen map[string]time.Time
	// ClaimsListed is when the NodeClaims were listed (before the call).
	// An intent committed after it may have a NodeClaim the listing could
	// not show: a launch creates its claim, then commits its intent, and
	// may finish while the pass still lists the cloud.
	ClaimsListed time.Time
	Now          time.Time
}

// Graces are the launcher's waiting periods (Config's fields of those names).
type Graces struct {
	OrphanClaim, Leak, Node time.Duration
}

// ActionKind names what an Action does.
type ActionKind string

const (
	// ActExecute finishes a Pending intent (launch, commit the result).
	ActExecute ActionKind = "Execute"
	// ActMarkDeleting commits Deleting for an intent.
	ActMarkDeleting ActionKind = "MarkDeleting"
	// ActTerminate finishes a Deleting intent: instance, finalizer, intent.
	ActTerminate ActionKind = "Terminate"
	// ActReleaseClaim removes the finalizer of a deleted NodeClaim no
	// intent owns.
	ActReleaseClaim ActionKind = "ReleaseClaim"
	// ActDeleteClaim deletes a NodeClaim (an orphan, or one whose instance
	// is gone).
	ActDeleteClaim ActionKind = "DeleteClaim"
	// ActMirrorResult writes a resolved intent to its NodeClaim's status.
	ActMirrorResult ActionKind = "MirrorResult"
	// ActRegister marks a NodeClaim registered (and initialized when its
	// node is Ready) and records the node in the intent.
	ActRegister ActionKind = "Register"
	// ActTerminateLeak terminates an instance no intent owned for the
	// whole leak grace.
	ActTerminateLeak ActionKind = "TerminateLeak"
	// ActConfirmGone re-reads a launched intent's instance that the listing
	// lacked; if it is really gone (not a listing that raced a launch), the
	// intent turns Deleting and its NodeClaim is deleted.
	ActConfirmGone ActionKind = "ConfirmGone"
	// ActExpireICE drops expired capacity errors from the replicated cache.
	ActExpireICE ActionKind = "ExpireICE"
)

// Action is one step of a reconcile plan. Only the fields its Kind needs are
// set.
type Action struct {
	Kind       ActionKind
	Token      string
	NodeClaim  string
	InstanceID string
	NodeName   string
	// Ready: for Register, the node is Ready (the claim is initialized).
	Ready bool
	// LaunchTerm: for TerminateLeak, the term tagged on the instance.
	LaunchTerm string
	// Why says in words why the planner chose the action (logs, tests).
	Why string
}

func (a Action) String() string {
	var b strings.Builder
	b.WriteString(string(a.Kind))
	for _, kv := range [][2]string{{"token", a.Token}, {"nodeClaim", a.NodeClaim}, {"instance", a.InstanceID}, {"node", a.NodeName}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
		}
	}
	if a.Why != "" {
		fmt.Fprintf(&b, " (%s)", a.Why)
	}
	return b.String()
}

// ReconcilePlan is what a pass does, in order, and the leak bookkeeping the
// next pass starts from.
type ReconcilePlan struct {
	Actions   []Action
	FirstSeen map[string]time.Time
	// NewlyUnowned are the instances seen unowned for the first time.
	NewlyUnowned []*cloud.Instance
}

// Plan decides one reconcile pass from what was observed. It is pure: the
// same observation always gives the same plan, so every branch is tested as
// a table and a pass can be printed before it is applied.
func Plan(o Observed, g Graces) ReconcilePlan {
	st := o.State
	var p ReconcilePlan
	add := func(a Action) { p.Actions = append(p.Actions, a) }

	// 1. Open intents: a Pending one is finished, a Deleting one terminated.
	terminating := map[string]bool{}
	for _, in := range st.OpenIntents() {
		switch in.State {
		case fsm.IntentPending:
			add(Action{Kind: ActExecute, Token: in.Token, NodeClaim: in.NodeClaim, Why: "intent pending"})
		case fsm.IntentDeleting:
			add(Action{Kind: ActTerminate, Token: in.Token, NodeClaim: in.NodeClaim, Why: "intent deleting"})
			terminating[in.Token] = true
		}
	}

	// 2. NodeClaims against intents.
	byClaim := make(map[string]*fsm.Intent, len(st.Intents))
	for _, in := range st.Intents {
		byClaim[in.NodeClaim] = in
	}
	if o.HaveKube {
		present := make(map[string]bool, len(o.Claims))
		for i := range o.Claims {
			nc := &o.Claims[i]
			present[nc.Name] = true
			in := byClaim[nc.Name]
			switch {
			case nc.DeletionTimestamp != nil && in == nil:
				add(Action{Kind: ActReleaseClaim, NodeClaim: nc.Name, Why: "deleted NodeClaim without intent"})
			case nc.DeletionTimestamp != nil:
				if in.State != fsm.IntentDeleting {
					add(Action{Kind: ActMarkDeleting, Token: in.Token, NodeClaim: nc.Name, Why: "NodeClaim deleted"})
				}
				if !terminating[in.Token] {
					add(Action{Kind: ActTerminate, Token: in.Token, NodeClaim: nc.Name, Why: "NodeClaim deleted"})
					terminating[in.Token] = true
				}
			case in == nil:
				if nc.Status.ProviderID == "" && o.Now.Sub(nc.CreationTimestamp.Time) >= g.OrphanClaim {
					add(Action{Kind: ActDeleteClaim, NodeClaim: nc.Name,
						Why: fmt.Sprintf("no launch intent after %s", g.OrphanClaim)})
				}
			case in.State == fsm.IntentLaunched:
				if nc.Status.ProviderID == "" {
					add(Action{Kind: ActMirrorResult, Token: in.Token, NodeClaim: nc.Name, Why: "launch not on NodeClaim status yet"})
				}
				if !in.Initialized && in.Instance != nil {
					if a, ok := register(in, o.Nodes[in.Instance.ProviderID]); ok {
						add(a)
					}
				}
			case in.State == fsm.IntentFailed:
				add(Action{Kind: ActMirrorResult, Token: in.Token, NodeClaim: nc.Name, Why: "launch failed"})
			}
		}
		// Intents whose NodeClaim vanished (deleted without our finalizer).
		// Only intents older than the listing: a launch that committed its
		// intent (and even its result) while this pass listed the cloud has
		// a NodeClaim created after the listing. Judged gone, its instance
		// was terminated under a live claim that kept its Launched status
		// and no intent for good, and provisioning nominated pending pods
		// onto that ghost every pass (a 1,000-pod benchmark left one pod
		// Pending so). Each leader stamps CreatedAt with its own clock: a
		// clock ahead only delays the judgement by its skew.
		for _, in := range sortedIntents(st) {
			if present[in.NodeClaim] || in.State == fsm.IntentDeleting || in.State == fsm.IntentPending || !in.CreatedAt.Before(o.ClaimsListed) {
				continue
			}
			add(Action{Kind: ActMarkDeleting, Token: in.Token, NodeClaim: in.NodeClaim, Why: "NodeClaim gone"})
		}
	}

	// 3. Instances against intents: leaks and vanished instances.
	owner := map[string]*fsm.Intent{}
	pending := map[string]bool{}
	for _, in := range st.Intents {
		if in.Instance != nil {
			owner[in.Instance.ID] = in
		}
		if in.State == fsm.IntentPending {
			pending[in.NodeClaim] = true
		}
	}
	p.FirstSeen = map[string]time.Time{}
	live := map[string]bool{}
	for _, inst := range o.Instances {
		if isTerminal(inst.State) {
			continue
		}
		live[inst.ID] = true
		if owner[inst.ID] != nil || pending[inst.Tags[cloud.TagNodeClaim]] {
			continue // owned: forgotten from FirstSeen
		}
		first, seen := o.FirstSeen[inst.ID]
		if !seen {
			p.FirstSeen[inst.ID] = o.Now
			p.NewlyUnowned = append(p.NewlyUnowned, inst)
			continue
		}
		if o.Now.Sub(first) < g.Leak {
			p.FirstSeen[inst.ID] = first
			continue
		}
		p.FirstSeen[inst.ID] = first // until the termination succeeds
		add(Action{Kind: ActTerminateLeak, InstanceID: inst.ID, NodeClaim: inst.Tags[cloud.TagNodeClaim],
			LaunchTerm: inst.Tags[cloud.TagLeaderTerm], Why: fmt.Sprintf("owned by no intent for %s", g.Leak)})
	}
	if !st.InGracePeriod(o.Now, g.Node) {
		for _, in := range sortedIntents(st) {
			if in.Instance == nil || live[in.Instance.ID] || in.State != fsm.IntentLaunched {
				continue
			}
			add(Action{Kind: ActConfirmGone, Token: in.Token, NodeClaim: in.NodeClaim, InstanceID: in.Instance.ID,
				Why: "instance missing from the cloud listing"})
		}
	}

	// 4. The capacity-error cache.
	for _, e := range st.ICE {
		if !e.Until.After(o.Now) {
			add(Action{Kind: ActExpireICE, Why: "capacity errors expired"})
			break
		}
	}
	return p
}

// register returns the Register action for a launched intent whose node has
// appeared, or false when there is nothing new to record.
func register(in *fsm.Intent, node *corev1.Node) (Action, bool) {
	if node == nil {
		return Action{}, false
	}
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if in.Registered && in.NodeName == node.Name && (!ready || in.Initialized) {
		return Action{}, false
	}
	return Action{Kind: ActRegister, Token: in.Token, NodeClaim: in.NodeClaim, InstanceID: in.Instance.ID,
		NodeName: node.Name, Ready: ready, Why: "node registered"}, true
}

// sortedIntents returns the intents in a fixed order so plans are stable.
func sortedIntents(st *fsm.State) []*fsm.Intent {
	out := make([]*fsm.Intent, 0, len(st.Intents))
	for _, in := range st.Intents {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Token < out[j].Token })
	return out
}
