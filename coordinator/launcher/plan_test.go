package launcher

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

var (
	t0     = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	graces = Graces{OrphanClaim: 2 * time.Minute, Leak: 5 * time.Minute, Node: 2 * time.Minute}
)

// obs is an observation past the post-failover grace, with Kubernetes.
func obs() Observed {
	st := fsm.NewState()
	st.Epoch = fsm.LeaderEpoch{Term: 1, At: t0.Add(-time.Hour)}
	return Observed{HaveKube: true, State: st, Nodes: map[string]*corev1.Node{}, FirstSeen: map[string]time.Time{}, ClaimsListed: t0.Add(-time.Second), Now: t0}
}

func intent(o Observed, token, state, instanceID string) *fsm.Intent {
	in := &fsm.Intent{Token: token, NodeClaim: "nc-" + token, State: state, CreatedAt: t0.Add(-10 * time.Minute)}
	if instanceID != "" {
		in.Instance = &cloud.Instance{ID: instanceID, ProviderID: "aws:///us-east-1a/" + instanceID, State: cloud.StateRunning,
			Tags: map[string]string{cloud.TagNodeClaim: in.NodeClaim}}
	}
	o.State.Intents[token] = in
	return in
}

func claim(name string, age time.Duration, providerID string, deleted bool) karpv1.NodeClaim {
	nc := karpv1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(-age))}}
	nc.Status.ProviderID = providerID
	if deleted {
		ts := metav1.NewTime(t0)
		nc.DeletionTimestamp = &ts
	}
	return nc
}

func node(name string, ready bool) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
}

func kinds(p ReconcilePlan) string {
	var out []string
	for _, a := range p.Actions {
		s := string(a.Kind) + ":" + a.NodeClaim
		if a.InstanceID != "" {
			s += "/" + a.InstanceID
		}
		if a.Kind == ActRegister {
			s += map[bool]string{true: "+ready", false: ""}[a.Ready]
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(o *Observed)
		want  string
	}{
		{"nothing to do", func(o *Observed) {}, ""},
		{"pending intent is executed, deleting one terminated", func(o *Observed) {
			intent(*o, "a", fsm.IntentPending, "")
			intent(*o, "b", fsm.IntentDeleting, "i-b")
			o.Claims = []karpv1.NodeClaim{claim("nc-a", time.Minute, "", false), claim("nc-b", time.Hour, "aws:///us-east-1a/i-b", true)}
			o.Instances = []*cloud.Instance{o.State.Intents["b"].Instance}
		}, "Execute:nc-a Terminate:nc-b"},
		{"deleted NodeClaim of a launched intent: deleting, then terminated once", func(o *Observed) {
			in := intent(*o, "a", fsm.IntentLaunched, "i-a")
			in.Initialized = true
			o.Claims = []karpv1.NodeClaim{claim("nc-a", time.Hour, in.Instance.ProviderID, true)}
			o.Instances = []*cloud.Instance{in.Instance}
		}, "MarkDeleting:nc-a Terminate:nc-a"},
		{"deleted NodeClaim without intent: finalizer released", func(o *Observed) {
			o.Claims = []karpv1.NodeClaim{claim("nc-x", time.Hour, "", true)}
		}, "ReleaseClaim:nc-x"},
		{"NodeClaim without intent: deleted only after the grace and only without providerID", func(o *Observed) {
			o.Claims = []karpv1.NodeClaim{claim("nc-young", time.Minute, "", false), claim("nc-old", 3*time.Minute, "", false),
				claim("nc-adopted", time.Hour, "aws:///us-east-1a/i-z", false)}
		}, "DeleteClaim:nc-old"},
		{"launched: result mirrored, node registered not ready", func(o *Observed) {
			in := intent(*o, "a", fsm.IntentLaunched, "i-a")
			o.Claims = []karpv1.NodeClaim{claim("nc-a", time.Minute, "", false)}
			o.Instances = []*cloud.Instance{in.Instance}
			o.Nodes[in.Instance.ProviderID] = node("ip-a", false)
		}, "MirrorResult:nc-a Register:nc-a/i-a"},
		{"registered, node still not ready: nothing new", func(o *Observed) {
			in := intent(*o, "a", fsm.IntentLaunched, "i-a")
			in.Registered, in.NodeName = true, "ip-a"
			o.Claims = []karpv1.NodeClaim{claim("nc-a", time.Minute, in.Instance.ProviderID, false)}
			o.Instances = []*cloud.Instance{in.Instance}
			o.Nodes[in.Instance.ProviderID] = node("ip-a", false)
		}, ""},
		{"registered, node turned ready: initialized", func(o *Observed) {
			in := intent(*o, "a", fsm.IntentLaunched, "i-a")
			in.Registered, in.NodeName = true, "ip-a"
			o.Claims = []karpv1.NodeClaim{claim("nc-a", time.Minute, in.Instance.ProviderID, false)}
			o.Instances = []*cloud.Instance{in.Instance}
			o.Nodes[in.Instance.ProviderID] = node("ip-a", true)
		}, "Register:nc-a/i-a+ready"},
		{"failed launch is mirrored", func(o *Observed) {
			intent(*o, "a", fsm.IntentFailed, "")
			o.Claims = []karpv1.NodeClaim{claim("nc-a", time.Minute, "", false)}
		}, "MirrorResult:nc-a"},
		{"intent whose NodeClaim vanished turns deleting (not a pending or deleting one)", func(o *Observed) {
			in := intent(*o, "a", fsm.IntentLaunched, "i-a")
			in.Initialized = true
			intent(*o, "b", fsm.IntentPending, "")
			o.Instances = []*cloud.Instance{in.Instance}
		}, "Execute:nc-b MarkDeleting:nc-a"},
		{"intent committed after the NodeClaims were listed is not judged gone (its claim may be newer than the listing)", func(o *Observed) {
			in := intent(*o, "a", fsm.IntentLaunched, "i-a")
			in.CreatedAt = o.ClaimsListed.Add(time.Millisecond)
			o.Instances = []*cloud.Instance{in.Instance}
		}, ""},
		{"instance owned by no intent: only after the leak grace", func(o *Observed) {
			o.Instances = []*cloud.Instance{
				{ID: "i-new", State: cloud.StateRunning, Tags: map[string]string{cloud.TagNodeClaim: "nc-gone"}},
				{ID: "i-waiting", State: cloud.StateRunning},
				{ID: "i-old", State: cloud.StateRunning, Tags: map[string]string{cloud.TagNodeClaim: "nc-old", cloud.TagLeaderTerm: "3"}},
				{ID: "i-dead", State: cloud.StateTerminated},
			}
			o.FirstSeen["i-waiting"] = t0.Add(-time.Minute)
			o.FirstSeen["i-old"] = t0.Add(-6 * time.Minute)
		}, "TerminateLeak:nc-old/i-old"},
		{"instance of a pending intent is not a leak", func(o *Observed) {
			intent(*o, "a", fsm.IntentPending, "")
			o.Claims = []karpv1.NodeClaim{claim("nc-a", time.Minute, "", false)}
			o.Instances = []*cloud.Instance{{ID: "i-a", State: cloud.StateRunning, Tags: map[string]string{cloud.TagNodeClaim: "nc-a"}}}
			o.FirstSeen["i-a"] = t0.Add(-time.Hour)
		}, "Execute:nc-a"},
		{"launched instance missing from the listing is confirmed gone", func(o *Observed) {
			in := intent(*o, "a", fsm.IntentLaunched, "i-a")
			in.Initialized = true
			o.Claims = []karpv1.NodeClaim{claim("nc-a", time.Hour, in.Instance.ProviderID, false)}
		}, "ConfirmGone:nc-a/i-a"},
		{"nothing is judged gone inside the post-failover grace", func(o *Observed) {
			o.State.Epoch.At = t0.Add(-time.Minute)
			in := intent(*o, "a", fsm.IntentLaunched, "i-a")
			in.Initialized = true
			o.Claims = []karpv1.NodeClaim{claim("nc-a", time.Hour, in.Instance.ProviderID, false)}
		}, ""},
		{"expired capacity errors are dropped once", func(o *Observed) {
			o.State.ICE["a"] = fsm.ICEEntry{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: "spot", Until: t0.Add(-time.Second)}
			o.State.ICE["b"] = fsm.ICEEntry{InstanceType: "m5.xlarge", Zone: "us-east-1a", CapacityType: "spot", Until: t0.Add(-time.Second)}
		}, "ExpireICE:"},
		{"without Kubernetes only intents and instances are reconciled", func(o *Observed) {
			o.HaveKube = false
			in := intent(*o, "a", fsm.IntentLaunched, "i-a")
			o.Instances = []*cloud.Instance{in.Instance}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := obs()
			tc.setup(&o)
			p := Plan(o, graces)
			if got := kinds(p); got != tc.want {
				t.Fatalf("plan %q, want %q\n%v", got, tc.want, p.Actions)
			}
			if again := Plan(o, graces); !reflect.DeepEqual(again, p) {
				t.Fatalf("Plan is not deterministic:\n%v\n%v", p.Actions, again.Actions)
			}
		})
	}
}

// The leak bookkeeping: first sightings start the clock, owned instances
// leave it, an instance past the grace stays counted until its termination
// succeeds (a failed one is retried next pass, not re-graced).
func TestPlanLeakBookkeeping(t *testing.T) {
	o := obs()
	in := intent(o, "a", fsm.IntentLaunched, "i-owned")
	in.Initialized = true
	o.Claims = []karpv1.NodeClaim{claim("nc-a", time.Hour, in.Instance.ProviderID, false)}
	o.Instances = []*cloud.Instance{in.Instance, {ID: "i-new", State: cloud.StateRunning}, {ID: "i-old", State: cloud.StateRunning}}
	o.FirstSeen = map[string]time.Time{"i-owned": t0.Add(-time.Hour), "i-old": t0.Add(-time.Hour), "i-vanished": t0.Add(-time.Hour)}
	p := Plan(o, graces)
	want := map[string]time.Time{"i-new": t0, "i-old": t0.Add(-time.Hour)}
	if !reflect.DeepEqual(p.FirstSeen, want) {
		t.Fatalf("FirstSeen %v, want %v", p.FirstSeen, want)
	}
	if len(p.NewlyUnowned) != 1 || p.NewlyUnowned[0].ID != "i-new" {
		t.Fatalf("newly unowned %v", p.NewlyUnowned)
	}
}
