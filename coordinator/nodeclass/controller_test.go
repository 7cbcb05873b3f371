package nodeclass

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud/ec2"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/kubeclient"
)

func TestMain(m *testing.M) { os.Exit(controlplane.RunTests(m)) }

const simCluster = "nc-test"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type env struct {
	sim  *ec2sim.Sim
	c    client.Client
	kube kubernetes.Interface
	ctl  *Controller
	reg  *prometheus.Registry
}

// newEnv starts the simulator and the real provider against it, on the
// package's shared control plane.
func newEnv(t *testing.T) *env {
	t.Helper()
	cp := controlplane.Shared(t)
	sim := ec2sim.New(ec2sim.Config{DisableIMDS: true, ClusterName: simCluster, Logger: quiet()})
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	prov, err := ec2.New(context.Background(), ec2.Config{
		Region: sim.Region(), Endpoint: sim.URL(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		ClusterName: simCluster, ClusterEndpoint: "https://10.0.0.1:6443", ClusterCA: "Q0EK",
		KubernetesVersion: "1.37", Logger: quiet(), MaxAttempts: 3, MaxBackoff: 10 * time.Millisecond,
		// Resolve afresh on every pass: the test moves the world between passes.
		NodeClassTTL: time.Nanosecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubeclient.New(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rec, stop, err := newRecorder(ctx, kube)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	reg := prometheus.NewRegistry()
	ctl, err := New(Config{Client: c, Resolver: prov, Events: rec, Log: quiet(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return &env{sim: sim, c: c, kube: kube, ctl: ctl, reg: reg}
}

func nodeClass(name string, terms ...awsv1.AMISelectorTerm) *awsv1.EC2NodeClass {
	nc := &awsv1.EC2NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: awsv1.EC2NodeClassSpec{
			AMISelectorTerms:           terms,
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": simCluster}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": simCluster}}},
			Role:                       "KarpenterNodeRole-" + simCluster,
		},
	}
	if terms[0].Alias == "" {
		fam := awsv1.AMIFamilyAL2023
		nc.Spec.AMIFamily = &fam
	}
	return nc
}

func (e *env) create(t *testing.T, nc *awsv1.EC2NodeClass) {
	t.Helper()
	if err := e.c.Create(context.Background(), nc); err != nil {
		t.Fatalf("create %s: %v", nc.Name, err)
	}
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), nc) })
}

func (e *env) get(t *testing.T, name string) *awsv1.EC2NodeClass {
	t.Helper()
	nc := &awsv1.EC2NodeClass{}
	if err := e.c.Get(context.Background(), client.ObjectKey{Name: name}, nc); err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return nc
}

func (e *env) pass(t *testing.T) {
	t.Helper()
	if err := e.ctl.Pass(context.Background()); err != nil {
		t.Fatalf("pass: %v", err)
	}
}

// eventually polls cond until it holds; the bound is generous (a loaded
// machine), not a speed target.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) events(t *testing.T, name string) []corev1.Event {
	t.Helper()
	list, err := e.kube.CoreV1().Events("").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func hasEvent(evs []corev1.Event, reason, contains string) bool {
	return slices.ContainsFunc(evs, func(ev corev1.Event) bool {
		return ev.Reason == reason && strings.Contains(ev.Message, contains) && ev.InvolvedObject.Kind == awsv1.Kind
	})
}

func ids(nc *awsv1.EC2NodeClass) []string { return amiIDs(nc.Status.AMIs) }

// TestStatusAndAMIRelease runs the controller's passes against the real API
// server, the real provider and the EC2 simulator: status is filled, a new
// al2023 release moves al2023@latest's AMIs (and makes nodes on the old
// image drift) but not a pinned alias, and a selector that matches nothing
// gives Ready=False with the terms tried.
func TestStatusAndAMIRelease(t *testing.T) {
	e := newEnv(t)
	e.create(t, nodeClass("nc-latest", awsv1.AMISelectorTerm{Alias: "al2023@latest"}))
	e.create(t, nodeClass("nc-pinned", awsv1.AMISelectorTerm{Alias: "al2023@v20261020"}))
	e.create(t, nodeClass("nc-nomatch", awsv1.AMISelectorTerm{Tags: map[string]string{"dovetail.dev/image": "missing"}}))

	e.pass(t)
	latest, pinned, nomatch := e.get(t, "nc-latest"), e.get(t, "nc-pinned"), e.get(t, "nc-nomatch")
	for _, nc := range []*awsv1.EC2NodeClass{latest, pinned} {
		if !nc.IsTrue(awsv1.ConditionTypeReady) || len(nc.Status.AMIs) != 2 || len(nc.Status.Subnets) != 3 || len(nc.Status.SecurityGroups) != 1 {
			t.Fatalf("%s status %+v", nc.Name, nc.Status)
		}
		for _, s := range nc.Status.Subnets {
			if !slices.Contains(e.sim.SubnetIDs(), s.ID) || s.Zone == "" || s.ZoneID == "" {
				t.Fatalf("%s subnet %+v (sim has %v)", nc.Name, s, e.sim.SubnetIDs())
			}
		}
		if nc.Status.SecurityGroups[0].ID != e.sim.SecurityGroupID() {
			t.Fatalf("%s security groups %+v, sim's %s", nc.Name, nc.Status.SecurityGroups, e.sim.SecurityGroupID())
		}
	}
	// The AMIs are the ones the SSM aliases point at.
	for _, arch := range []string{"x86_64", "arm64"} {
		id, ok := e.sim.SSMParameter("/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/" + arch + "/standard/recommended/image_id")
		if !ok || !slices.Contains(ids(latest), id) {
			t.Fatalf("latest AMIs %v lack the %s recommended image %q", ids(latest), arch, id)
		}
	}
	// Before the release latest and the newest pinned one agree.
	if !slices.Equal(ids(latest), ids(pinned)) {
		t.Fatalf("latest %v, pinned v20261020 %v", ids(latest), ids(pinned))
	}
	ready := nomatch.GetCondition(awsv1.ConditionTypeReady)
	amisReady := nomatch.GetCondition(awsv1.ConditionTypeAMIsReady)
	if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != ReasonAMINotFound ||
		amisReady == nil || amisReady.Status != metav1.ConditionFalse || !strings.Contains(amisReady.Message, "dovetail.dev/image=missing") {
		t.Fatalf("nomatch conditions %+v", nomatch.Status.Conditions)
	}
	// The provider stops at the AMIs: subnets were never resolved for it.
	if sub := nomatch.GetCondition(awsv1.ConditionTypeSubnetsReady); len(nomatch.Status.AMIs) != 0 || sub == nil ||
		sub.Status != metav1.ConditionUnknown || sub.Reason != ReasonNotResolved {
		t.Fatalf("nomatch status %+v", nomatch.Status)
	}
	writes := testutil.ToFloat64(e.ctl.metrics.writes)

	// A second pass with nothing moved writes nothing.
	idle := time.Now()
	e.pass(t)
	t.Logf("idle pass over 3 node classes (provider cache off, simulator over HTTP): %v", time.Since(idle).Round(time.Millisecond))
	for _, before := range []*awsv1.EC2NodeClass{latest, pinned, nomatch} {
		if after := e.get(t, before.Name); after.ResourceVersion != before.ResourceVersion {
			t.Fatalf("%s rewritten without a change: %s → %s", before.Name, before.ResourceVersion, after.ResourceVersion)
		}
	}
	if w := testutil.ToFloat64(e.ctl.metrics.writes); w != writes {
		t.Fatalf("writes %v → %v on an idle pass", writes, w)
	}

	// A new AL2023 release.
	published, err := e.sim.PublishRelease("al2023", "v20261201")
	if err != nil {
		t.Fatal(err)
	}
	e.pass(t)
	latest2, pinned2 := e.get(t, "nc-latest"), e.get(t, "nc-pinned")
	if len(ids(latest2)) != 2 {
		t.Fatalf("latest after release %+v", latest2.Status.AMIs)
	}
	for _, id := range ids(latest2) {
		if !slices.Contains(published, id) {
			t.Fatalf("latest moved to %v, not to the published %v", ids(latest2), published)
		}
	}
	if !slices.Equal(ids(pinned2), ids(pinned)) || pinned2.ResourceVersion != pinned.ResourceVersion {
		t.Fatalf("pinned moved: %v → %v (rv %s → %s)", ids(pinned), ids(pinned2), pinned.ResourceVersion, pinned2.ResourceVersion)
	}
	if got := testutil.ToFloat64(e.ctl.metrics.amiChanges); got != 3 { // two first resolutions and the release
		t.Fatalf("ami changes metric %v", got)
	}
	// What the disruption planner makes of it: a node on the old image drifts.
	dc := disruption.NodeClassFromAPI(latest2)
	if kind, why := disruption.Drift(&disruption.Node{Name: "old", ImageID: ids(latest)[0]}, nil, &dc); kind != disruption.DriftAMI {
		t.Fatalf("node on %s: drift %q %q", ids(latest)[0], kind, why)
	}
	pc := disruption.NodeClassFromAPI(pinned2)
	if kind, _ := disruption.Drift(&disruption.Node{Name: "old", ImageID: ids(pinned)[0]}, nil, &pc); kind != "" {
		t.Fatalf("pinned node drifts: %q", kind)
	}

	// Events: the change with old and new ids, and the failure.
	want := AMIChangeMessage(ids(latest), ids(latest2))
	eventually(t, "the AMIsChanged and AMINotFound events", func() bool {
		return hasEvent(e.events(t, "nc-latest"), EventAMIsChanged, want) &&
			hasEvent(e.events(t, "nc-nomatch"), ReasonAMINotFound, "dovetail.dev/image=missing")
	})
	if hasEvent(e.events(t, "nc-pinned"), EventAMIsChanged, "") {
		t.Fatal("an AMIsChanged event on the pinned class")
	}

	// Fixing the selector makes the class Ready.
	fixed := e.get(t, "nc-nomatch")
	fixed.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Tags: map[string]string{"dovetail.dev/image": "custom"}}}
	if err := e.c.Update(context.Background(), fixed); err != nil {
		t.Fatal(err)
	}
	e.pass(t)
	fixed = e.get(t, "nc-nomatch")
	if !fixed.IsTrue(awsv1.ConditionTypeReady) || len(fixed.Status.AMIs) == 0 || fixed.GetCondition(awsv1.ConditionTypeReady).ObservedGeneration != fixed.Generation {
		t.Fatalf("fixed class %+v", fixed.Status)
	}
}

// TestRunWritesStatus checks the loop itself (Run on an interval, Events
// through its own broadcaster) and that it stops with its context.
func TestRunWritesStatus(t *testing.T) {
	e := newEnv(t)
	e.create(t, nodeClass("nc-run", awsv1.AMISelectorTerm{Alias: "al2023@latest"}))
	ctl, err := New(Config{Client: e.c, Resolver: e.ctl.cfg.Resolver, Kube: e.kube, Interval: 200 * time.Millisecond, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctl.Run(ctx) }()
	eventually(t, "nc-run to become Ready", func() bool { return e.get(t, "nc-run").IsTrue(awsv1.ConditionTypeReady) })
	before := ids(e.get(t, "nc-run"))
	if _, err := e.sim.PublishRelease("al2023", "v20261215"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "nc-run's AMIs to move", func() bool { return !slices.Equal(ids(e.get(t, "nc-run")), before) })
	eventually(t, "the AMIsResolved event", func() bool { return hasEvent(e.events(t, "nc-run"), EventAMIsResolved, "") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestNewNeedsClientAndResolver(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("no client accepted")
	}
}
