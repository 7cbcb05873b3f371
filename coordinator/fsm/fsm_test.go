package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/report"
)

var t0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func applyAll(t testing.TB, f *FSM, cmds ...Command) []any {
	t.Helper()
	var out []any
	for _, c := range cmds {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f.Apply(&raft.Log{Index: f.AppliedIndex() + 1, Type: raft.LogCommand, Data: b}))
	}
	return out
}

func sampleCommands() []Command {
	inst := &cloud.Instance{ID: "i-1", ProviderID: "aws:///us-east-1a/i-1", InstanceType: "m5.large", Zone: "us-east-1a"}
	return []Command{
		IntentCreate{Intent: Intent{Token: "t1", NodeClaim: "nc-1", NodePool: "default", CreatedAt: t0,
			Options: []cloud.LaunchOption{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: "spot"}}}},
		IntentCreate{Intent: Intent{Token: "t2", NodeClaim: "nc-2", CreatedAt: t0.Add(time.Second)}},
		IntentResult{Token: "t1", State: IntentLaunched, Instance: inst, Term: 3, At: t0},
		IntentResult{Token: "t2", State: IntentFailed, Error: "ICE", ICE: true, Term: 3, At: t0},
		IntentUpdate{Token: "t1", Registered: true, NodeName: "node-1", At: t0},
		ICEMark{Entries: []ICEEntry{{InstanceType: "m5.large", Zone: "us-east-1b", CapacityType: "spot", Until: t0.Add(time.Minute)}}},
		DisruptionBegin{Disruption: Disruption{NodeName: "node-1", NodePool: "default", Reason: "Drifted", Since: t0}},
		RolloutSet{Rollout: Rollout{NodePool: "default", TargetAMI: "ami-2", Remaining: []string{"node-1"}}},
		ReportReceived{ReceivedAt: t0, Report: report.Report{ID: "r1", Kind: report.KindHealth, NodeName: "node-1",
			Checks: []report.CheckResult{{Name: "kubelet", State: "degraded"}}}},
		ReportReceived{ReceivedAt: t0, Report: report.Report{ID: "r2", Kind: report.KindInterruption, NodeName: "node-1",
			Action: "terminate", Deadline: t0.Add(2 * time.Minute)}},
		LeaderEpoch{Term: 3, Leader: "c-0", At: t0},
		Noop{},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, c := range append(sampleCommands(), IntentDelete{Token: "x"}, ICEExpire{Now: t0},
		DisruptionEnd{NodeName: "n"}, RolloutDelete{NodePool: "p"}) {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if got.CommandType() != c.CommandType() {
			t.Fatalf("%T decoded as %T", c, got)
		}
		again, _ := Encode(got)
		if !bytes.Equal(again, b) {
			t.Fatalf("%T: %s != %s", c, again, b)
		}
	}
}

func TestUnknownCommands(t *testing.T) {
	c, err := Decode(append([]byte{byte(FlagIgnorable | 0x7e)}, []byte(`{"future":true}`)...))
	if err != nil || c != nil {
		t.Fatalf("ignorable unknown: %v, %v", c, err)
	}
	if _, err := Decode([]byte{0x7e, '{', '}'}); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("required unknown: %v", err)
	}
	f := New(quiet())
	res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{byte(FlagIgnorable | 0x7e), '{', '}'}})
	if res != nil || f.AppliedIndex() != 1 {
		t.Fatalf("skipping ignorable: %v", res)
	}
}

func TestCommandsAreIdempotent(t *testing.T) {
	f := New(quiet())
	cmds := sampleCommands()
	applyAll(t, f, cmds...)
	once, _ := json.Marshal(stripIndex(f.State()))
	applyAll(t, f, cmds...) // a retried apply of every command changes nothing
	twice, _ := json.Marshal(stripIndex(f.State()))
	if !bytes.Equal(once, twice) {
		t.Fatalf("state changed on re-apply:\n%s\n%s", once, twice)
	}
	st := f.State()
	if in := st.Intents["t1"]; in.State != IntentLaunched || in.Instance.ID != "i-1" || !in.Registered || in.NodeName != "node-1" {
		t.Fatalf("intent t1 = %+v", in)
	}
	if in := st.Intents["t2"]; in.State != IntentFailed || !in.ICE {
		t.Fatalf("intent t2 = %+v", in)
	}
	// A late result for a resolved intent (stale leader) is ignored.
	applyAll(t, f, IntentResult{Token: "t1", State: IntentLaunched, Instance: &cloud.Instance{ID: "i-other"}, At: t0})
	if got := f.State().Intents["t1"].Instance.ID; got != "i-1" {
		t.Fatalf("resolved intent rebound to %s", got)
	}
	if n := st.Nodes["node-1"]; n.Health != "degraded" || n.Interruption == nil || n.Interruption.Action != "terminate" {
		t.Fatalf("node-1 = %+v", n)
	}
	if b := st.Bindings["i-1"]; b == nil || b.NodeName != "node-1" {
		t.Fatalf("binding = %+v", b)
	}
}

func stripIndex(s *State) *State { s.Index = 0; return s }

func TestICEExpiryAndGrace(t *testing.T) {
	f := New(quiet())
	applyAll(t, f, sampleCommands()...)
	st := f.State()
	if !st.Unavailable("m5.large", "us-east-1b", "spot", t0) || st.Unavailable("m5.large", "us-east-1b", "spot", t0.Add(2*time.Minute)) {
		t.Fatal("ICE entry window wrong")
	}
	applyAll(t, f, ICEExpire{Now: t0.Add(time.Minute)})
	if len(f.State().ICE) != 0 {
		t.Fatal("expired ICE entry kept")
	}
	if !st.InGracePeriod(t0.Add(time.Minute), 2*time.Minute) || st.InGracePeriod(t0.Add(3*time.Minute), 2*time.Minute) {
		t.Fatal("grace period wrong")
	}
	// An older term's epoch never overwrites a newer one.
	applyAll(t, f, LeaderEpoch{Term: 2, Leader: "old", At: t0.Add(time.Hour)})
	if f.State().Epoch.Leader != "c-0" {
		t.Fatal("older epoch applied")
	}
}

func TestInterruptionCancelAndForget(t *testing.T) {
	f := New(quiet())
	applyAll(t, f,
		ReportReceived{ReceivedAt: t0, Report: report.Report{ID: "m1", Kind: report.KindMaintenance, NodeName: "n", EventID: "ev-1"}},
		ReportReceived{ReceivedAt: t0, Report: report.Report{ID: "m2", Kind: report.KindMaintenance, NodeName: "n", EventID: "ev-1", Cancelled: true}},
	)
	if f.State().Nodes["n"].Interruption != nil {
		t.Fatal("cancelled maintenance still active")
	}
	applyAll(t, f, ReportReceived{ReceivedAt: t0, Report: report.Report{ID: "x", Kind: report.KindReplaceMe, NodeName: "n"}},
		DisruptionBegin{Disruption: Disruption{NodeName: "n", Reason: "Unhealthy"}}, DisruptionEnd{NodeName: "n"})
	st := f.State()
	if st.Disruptions["n"] != nil {
		t.Fatal("ended disruption kept")
	}
	res := applyAll(t, f, ReportReceived{Report: report.Report{Kind: report.KindHealth}})
	if res[0] == nil {
		t.Fatal("report without id accepted")
	}
}

type sink struct {
	bytes.Buffer
}

func (s *sink) ID() string    { return "s" }
func (s *sink) Cancel() error { return nil }
func (s *sink) Close() error  { return nil }

func TestSnapshotRestoreAndDeterminism(t *testing.T) {
	a, b := New(quiet()), New(quiet())
	applyAll(t, a, sampleCommands()...)
	applyAll(t, b, sampleCommands()...)
	ja, _ := json.Marshal(a.State())
	jb, _ := json.Marshal(b.State())
	if !bytes.Equal(ja, jb) {
		t.Fatal("same log, different states")
	}
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	c := New(quiet())
	if err := c.Restore(io.NopCloser(&s.Buffer)); err != nil {
		t.Fatal(err)
	}
	jc, _ := json.Marshal(c.State())
	if !bytes.Equal(ja, jc) {
		t.Fatalf("restored state differs:\n%s\n%s", ja, jc)
	}
	if err := c.Restore(io.NopCloser(bytes.NewReader([]byte("not json")))); err == nil {
		t.Fatal("garbage snapshot restored")
	}
}

func BenchmarkApply(b *testing.B) {
	f := New(quiet())
	data := make([][]byte, 0, 64)
	for i := 0; i < 64; i++ {
		d, _ := Encode(ReportReceived{ReceivedAt: t0, Report: report.Report{ID: string(rune('a'+i%26)) + string(rune('A'+i/26)),
			Kind: report.KindHealth, NodeName: "n", Checks: []report.CheckResult{{Name: "k", State: "ok"}}}})
		data = append(data, d)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data[i%len(data)]})
	}
}

func TestResultForDeletedInFlightIntentKeepsInstance(t *testing.T) {
	f := New(quiet())
	applyAll(t, f,
		IntentCreate{Intent: Intent{Token: "t", NodeClaim: "nc"}},
		IntentUpdate{Token: "t", Deleting: true},
		IntentResult{Token: "t", State: IntentLaunched, Instance: &cloud.Instance{ID: "i-late"}},
	)
	in := f.State().Intents["t"]
	if in.State != IntentDeleting || in.Instance == nil || in.Instance.ID != "i-late" {
		t.Fatalf("intent = %+v", in)
	}
}

// Issue 12: a report from a new instance under a reused hostname starts a
// fresh status instead of inheriting the earlier instance's interruption
// and replace request.
func TestReportFromNewInstanceUnderReusedNameStartsClean(t *testing.T) {
	f := New(quiet())
	applyAll(t, f,
		ReportReceived{ReceivedAt: t0, Report: report.Report{ID: "a1", Kind: report.KindInterruption, NodeName: "ip-1", InstanceID: "i-old",
			ProviderID: "aws:///us-east-1a/i-old", Action: "terminate", Deadline: t0.Add(2 * time.Minute)}},
		ReportReceived{ReceivedAt: t0, Report: report.Report{ID: "a2", Kind: report.KindReplaceMe, NodeName: "ip-1", InstanceID: "i-old"}},
	)
	st := f.State()
	if n := st.Nodes["ip-1"]; n == nil || n.Interruption == nil || !n.ReplaceRequested {
		t.Fatalf("setup: %+v", n)
	}
	applyAll(t, f, ReportReceived{ReceivedAt: t0.Add(time.Minute), Report: report.Report{ID: "b1", Kind: report.KindHealth, NodeName: "ip-1",
		InstanceID: "i-new", ProviderID: "aws:///us-east-1b/i-new", Checks: []report.CheckResult{{Name: "kubelet", State: "ok"}}}})
	n := f.State().Nodes["ip-1"]
	if n == nil || n.InstanceID != "i-new" || n.Interruption != nil || n.ReplaceRequested {
		t.Fatalf("new instance inherited the old one's state: %+v", n)
	}
	// The same instance's later report keeps its own state.
	applyAll(t, f, ReportReceived{ReceivedAt: t0.Add(2 * time.Minute), Report: report.Report{ID: "b2", Kind: report.KindReplaceMe, NodeName: "ip-1", InstanceID: "i-new"}})
	applyAll(t, f, ReportReceived{ReceivedAt: t0.Add(3 * time.Minute), Report: report.Report{ID: "b3", Kind: report.KindHealth, NodeName: "ip-1", InstanceID: "i-new"}})
	if n := f.State().Nodes["ip-1"]; !n.ReplaceRequested {
		t.Fatalf("same instance lost its replace request: %+v", n)
	}
}

// Issue 12: State.Nodes is bounded by live instances. Deleting an intent
// (committed once its instance is terminated) forgets that instance's
// status, but not a newer instance's that reuses the hostname.
func TestTerminatedInstanceIsForgotten(t *testing.T) {
	f := New(quiet())
	launch := func(token, id, node string) []Command {
		return append(launched(token, id, node),
			ReportReceived{ReceivedAt: t0, Report: report.Report{ID: "r-" + token, Kind: report.KindReplaceMe, NodeName: node, InstanceID: id}})
	}
	applyAll(t, f, launch("t1", "i-1", "ip-1")...)
	applyAll(t, f, launch("t2", "i-2", "ip-2")...)
	if n := len(f.State().Nodes); n != 2 {
		t.Fatalf("nodes %d", n)
	}
	applyAll(t, f, IntentDelete{Token: "t1"})
	st := f.State()
	if _, ok := st.Nodes["ip-1"]; ok || len(st.Nodes) != 1 {
		t.Fatalf("terminated instance's status kept: %+v", st.Nodes)
	}

	// i-3 reuses ip-2's hostname before i-2's intent is deleted.
	applyAll(t, f, launch("t3", "i-3", "ip-2")...)
	applyAll(t, f, IntentDelete{Token: "t2"})
	if n := f.State().Nodes["ip-2"]; n == nil || n.InstanceID != "i-3" || !n.ReplaceRequested {
		t.Fatalf("newer instance's status under the reused name was forgotten: %+v", n)
	}
	applyAll(t, f, IntentDelete{Token: "t3"})
	if n := len(f.State().Nodes); n != 0 {
		t.Fatalf("nodes %d after forgetting every instance", n)
	}
}

// launched is what the launcher commits for an instance that registered as
// node (fsmtest.Launched, which this package's tests cannot import).
func launched(token, id, node string) []Command {
	return []Command{
		IntentCreate{Intent: Intent{Token: token, NodeClaim: "nc-" + token, CreatedAt: t0}},
		IntentResult{Token: token, State: IntentLaunched, Instance: &cloud.Instance{ID: id, ProviderID: "aws:///us-east-1a/" + id}, Term: 1, At: t0},
		IntentUpdate{Token: token, Registered: true, NodeName: node, At: t0},
	}
}

// A registration records the instance's node binding in one command (the
// launcher used to follow IntentUpdate with a NodeBind whose error it dropped).
func TestRegistrationBindsTheNode(t *testing.T) {
	f := New(quiet())
	applyAll(t, f, launched("t1", "i-1", "ip-1")...)
	b := f.State().Bindings["i-1"]
	if b == nil || b.NodeName != "ip-1" || b.NodeClaim != "nc-t1" {
		t.Fatalf("binding after registration: %+v", b)
	}
}

// Commands no replica proposes any more are skipped when an old log holds them.
func TestRetiredCommandsAreSkipped(t *testing.T) {
	for _, typ := range []Type{typeRetired4, typeRetired5, typeRetired13} {
		c, err := Decode(append([]byte{byte(typ)}, []byte(`{"binding":{"instanceID":"i-1"}}`)...))
		if c != nil || err != nil {
			t.Errorf("type %d: %v, %v; want skipped", typ, c, err)
		}
	}
}
