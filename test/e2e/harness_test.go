package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator"
	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/attest"
	"github.com/dovetail-dev/dovetail/coordinator/eventdedupe"
	"github.com/dovetail-dev/dovetail/coordinator/launcher"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
	"github.com/dovetail-dev/dovetail/coordinator/wiring"
	"github.com/dovetail-dev/dovetail/daemon/agent"
	"github.com/dovetail-dev/dovetail/health"
	"github.com/dovetail-dev/dovetail/internal/freeport"
	"github.com/dovetail-dev/dovetail/kubeclient"
	"github.com/dovetail-dev/dovetail/metricsdoc"
	"github.com/dovetail-dev/dovetail/tlsid"
)

const clusterName = "dovetail-e2e"

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	// client-go reports events a stopped leader could not send; the
	// replicas' own logs go to a file per test.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	klog.SetLogger(logr.Discard())
	os.Exit(controlplane.RunTests(m))
}

// env is one end-to-end world: the real control plane, the EC2 simulator
// registering kwok Nodes, and three coordinator replicas in this process
// wired exactly as cmd/dovetail-coordinator wires them (wiring.Components).
type env struct {
	t    testing.TB
	ctx  context.Context
	cp   *controlplane.ControlPlane
	sim  *ec2sim.Sim
	kube kubernetes.Interface
	c    client.Client
	log  *slog.Logger
	opts wiring.Options

	peers []raftnode.Peer
	dirs  map[string]string
	// pki is the trust material (secure_test.go), certs each replica's
	// key pairs; viewer reads the API as the chart's dovetail-view.
	pki    *pki
	certs  map[string]replicaTLS
	viewer *http.Client

	mu   sync.Mutex
	reps map[string]*coordinator.Coordinator
	// cloudRecs record each replica's EC2 provider metrics.
	cloudRecs map[string]*metricsdoc.Recorder
}

// testOptions are wiring options with short windows so the suite is quick.
func testOptions(rc *rest.Config) wiring.Options {
	o := wiring.Options{RESTConfig: rc, Region: "us-east-1"}
	o.Provisioning = wiring.ProvisioningOptions{IdleGap: 300 * time.Millisecond, MaxWindow: 2 * time.Second, Resync: 3 * time.Second}
	o.Disruption.Interval = time.Second
	o.Disruption.ValidationDelay = 2 * time.Second
	o.Disruption.PollInterval = 300 * time.Millisecond
	o.Disruption.ReplacementTimeout = time.Minute
	o.Drain.RetryInterval = 200 * time.Millisecond
	o.Drain.PollInterval = 100 * time.Millisecond
	// EC2NodeClass status (capacity reservations included) within seconds.
	o.NodeClass.Interval = 2 * time.Second
	o.CapacityTypeInterval = time.Second
	return o
}

func newEnv(t *testing.T, simCfg ec2sim.Config) *env { return newEnvWith(t, simCfg, nil) }

// newEnvWith is newEnv with the replicas' wiring options adjusted by tune
// (the benchmarks run the shipped provisioning windows, not the tests').
func newEnvWith(t testing.TB, simCfg ec2sim.Config, tune func(*wiring.Options)) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	cp := controlplane.Shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("dovetail-e2e-%s-%d.log", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().Unix()))
	var w io.Writer = io.Discard
	if f, err := os.Create(logPath); err == nil {
		w = f
		t.Cleanup(func() { _ = f.Close() })
		t.Logf("coordinator logs: %s", logPath)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))

	simCfg.ClusterName = clusterName
	simCfg.RESTConfig = cp.RESTConfig
	simCfg.Logger = log.With("part", "ec2sim")
	if simCfg.BootDelay == 0 {
		simCfg.BootDelay = 500 * time.Millisecond
	}
	sim := ec2sim.New(simCfg)
	if err := sim.Start(ctx); err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(sim.Close)

	c, err := kubeclient.New(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	resetCluster(t, ctx, c)
	e := &env{t: t, ctx: ctx, cp: cp, sim: sim, kube: kubernetes.NewForConfigOrDie(cp.RESTConfig), c: c, log: log,
		opts: testOptions(cp.RESTConfig), dirs: map[string]string{}, reps: map[string]*coordinator.Coordinator{}}
	if tune != nil {
		tune(&e.opts)
	}
	addrs := freeport.Addrs(t, 6)
	base := t.TempDir()
	e.pki = newPKI(t, ctx, e.kube, filepath.Join(base, "pki"))
	e.viewer = &http.Client{Timeout: 15 * time.Second, Transport: e.pki.transport(e.pki.token)}
	e.certs = map[string]replicaTLS{}
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("coord-%d", i)
		e.peers = append(e.peers, raftnode.Peer{ID: id, RaftAddr: addrs[2*i], HTTPAddr: addrs[2*i+1]})
		e.dirs[id] = filepath.Join(base, id)
		var rt replicaTLS
		rt.raft, rt.apiCert, rt.apiKey = e.pki.replicaCerts(t, id)
		e.certs[id] = rt
	}
	for _, p := range e.peers {
		e.start(p.ID)
	}
	t.Cleanup(func() {
		e.mu.Lock()
		reps := e.reps
		e.reps = map[string]*coordinator.Coordinator{}
		e.mu.Unlock()
		for _, r := range reps {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = r.Close(cctx)
			cancel()
		}
	})
	return e
}

// resetCluster removes what an earlier test of this package left on the
// shared control plane (its coordinators are gone, so nothing else will):
// Dovetail's objects, nodes, and the workloads in every test namespace. A
// test that failed half-way must not make the next one fail on "already
// exists" or provision for its leftover pods.
func resetCluster(t testing.TB, ctx context.Context, c client.Client) {
	t.Helper()
	var claims karpv1.NodeClaimList
	if err := c.List(ctx, &claims); err != nil {
		t.Fatalf("reset: list NodeClaims: %v", err)
	}
	for i := range claims.Items {
		nc := &claims.Items[i]
		if len(nc.Finalizers) > 0 {
			patch := client.MergeFrom(nc.DeepCopy())
			nc.Finalizers = nil
			_ = c.Patch(ctx, nc, patch)
		}
	}
	var nss corev1.NamespaceList
	if err := c.List(ctx, &nss); err != nil {
		t.Fatalf("reset: list namespaces: %v", err)
	}
	zero := client.GracePeriodSeconds(0)
	for _, ns := range nss.Items {
		switch ns.Name {
		case "kube-system", "kube-public", "kube-node-lease":
			continue
		}
		for _, o := range []client.Object{&appsv1.Deployment{}, &appsv1.ReplicaSet{}, &corev1.Pod{}} {
			if err := c.DeleteAllOf(ctx, o, client.InNamespace(ns.Name), zero); err != nil {
				t.Fatalf("reset: delete %T in %s: %v", o, ns.Name, err)
			}
		}
	}
	for _, o := range []client.Object{&karpv1.NodeClaim{}, &karpv1.NodePool{}, &awsv1.EC2NodeClass{}, &corev1.Node{}} {
		if err := c.DeleteAllOf(ctx, o, zero); err != nil {
			t.Fatalf("reset: delete %T: %v", o, err)
		}
	}
	// Deletion is asynchronous: wait until the names are free again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pools karpv1.NodePoolList
		var classes awsv1.EC2NodeClassList
		var left karpv1.NodeClaimList
		err1, err2, err3 := c.List(ctx, &pools), c.List(ctx, &classes), c.List(ctx, &left)
		if err1 == nil && err2 == nil && err3 == nil && len(pools.Items)+len(classes.Items)+len(left.Items) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reset: still %d NodePools, %d EC2NodeClasses, %d NodeClaims (%v %v %v)",
				len(pools.Items), len(classes.Items), len(left.Items), err1, err2, err3)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// replicaTLS is one replica's certificate files.
type replicaTLS struct {
	raft            raftnode.TLSFiles
	apiCert, apiKey string
}

// secure puts a replica on the production path (secure_test.go): Raft
// mutual TLS checking the peer name, the API over TLS with the coordinator
// identity, followers forwarding to the leader over verified TLS, and
// TokenReview + SubjectAccessReview on every guarded route.
func (e *env) secure(id string, cfg *coordinator.Config) {
	e.t.Helper()
	ct := e.certs[id]
	var err error
	if cfg.Raft.ServerTLS, cfg.Raft.ClientTLS, err = ct.raft.Load(e.peers); err != nil {
		e.t.Fatalf("raft TLS of %s: %v", id, err)
	}
	cf, err := tlsid.NewCertFiles(ct.apiCert, ct.apiKey)
	if err != nil {
		e.t.Fatalf("API TLS of %s: %v", id, err)
	}
	cfg.APITLS = cf.ServerTLSConfig()
	cfg.ForwardClient = &http.Client{Timeout: 15 * time.Second, Transport: e.pki.transport("")}
	if cfg.APIAuth, err = api.NewKubeAuth(api.KubeAuthConfig{Client: e.kube, Log: e.log.With("replica", id)}); err != nil {
		e.t.Fatal(err)
	}
}

// start starts (or restarts, with its data directory) one replica.
func (e *env) start(id string) {
	e.t.Helper()
	var p raftnode.Peer
	for _, q := range e.peers {
		if q.ID == id {
			p = q
		}
	}
	log := e.log
	// One registry per replica for the coordinator and its EC2 provider, so
	// the provider's metrics are served and documented too (metrics_test.go).
	reg := prometheus.NewRegistry()
	cloudRec := metricsdoc.NewRecorder(reg)
	e.mu.Lock()
	if e.cloudRecs == nil {
		e.cloudRecs = map[string]*metricsdoc.Recorder{}
	}
	e.cloudRecs[id] = cloudRec
	e.mu.Unlock()
	// As cmd/dovetail-coordinator: the replicated ICE cache is the provider's.
	ice := launcher.NewICEStore()
	prov, err := ec2.New(e.ctx, ec2.Config{Registry: cloudRec, Offerings: ice,
		Region: e.sim.Region(), Endpoint: e.sim.URL(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		ClusterName: clusterName, ClusterEndpoint: e.cp.APIServerURL,
		ClusterCA: base64.StdEncoding.EncodeToString(e.cp.CACertPEM), KubernetesVersion: "1.37",
		Logger: log.With("replica", id), MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		e.t.Fatalf("ec2 provider: %v", err)
	}
	events, stopEvents := eventdedupe.KubeRecorder(e.kube, "dovetail-launcher")
	e.t.Cleanup(stopEvents)
	explain := wiring.NewExplain()
	opts := e.opts
	opts.Explain = explain
	cfg := coordinator.Config{
		ExtraHandlers: explain.Handlers(),
		Raft: raftnode.Config{ID: id, DataDir: e.dirs[id], BindAddr: p.RaftAddr, Peers: e.peers,
			HeartbeatTimeout: raftSlow() * 300 * time.Millisecond, ElectionTimeout: raftSlow() * 300 * time.Millisecond,
			// The lease equals the heartbeat, as shipped: half of it made a
			// loaded leader step down on its own (41 step-downs in one burst
			// run at load 20), and the burst subtest timed out waiting.
			LeaderLeaseTimeout: raftSlow() * 300 * time.Millisecond, SegmentSize: 4 << 20},
		HTTPAddr: p.HTTPAddr, Cloud: prov, Claims: &launcher.KubeClaims{C: e.c}, Registry: reg, Events: events,
		Launcher:  coordinator.LauncherOptions{Interval: time.Second, LeakGrace: 5 * time.Second, OrphanClaimGrace: 20 * time.Second, ICE: ice},
		NodeGrace: 5 * time.Second, Logger: log,
		// The same Setup as cmd/dovetail-coordinator (components.go).
		Setup: func(rt *coordinator.Runtime) ([]leader.Named, error) { return wiring.Components(rt, opts) },
	}
	e.secure(id, &cfg)
	// Reports are attested as in production, with the simulator's signer
	// as the one extra trust anchor (as `make dev` configures it).
	if attested() {
		cfg.Attest = &api.AttestConfig{Verifier: e.verifier()}
	}
	r, err := coordinator.Start(e.ctx, cfg)
	if err != nil {
		e.t.Fatalf("start replica %s: %v", id, err)
	}
	e.mu.Lock()
	e.reps[id] = r
	e.mu.Unlock()
}

// raftSlow scales the replicas' Raft timeouts: slowdown, times
// DOVETAIL_E2E_RAFT_SLOWDOWN when set (a machine shared with other builds
// can starve 300 ms heartbeats, and leadership then changes every few
// seconds).
func raftSlow() time.Duration {
	n, err := strconv.Atoi(os.Getenv("DOVETAIL_E2E_RAFT_SLOWDOWN"))
	if err != nil || n < 1 {
		n = 1
	}
	return slowdown * time.Duration(n)
}

// attested is whether reports are attested (the default, as in make dev);
// DOVETAIL_E2E_ATTEST=0 turns it off to measure what attestation costs.
func attested() bool { return os.Getenv("DOVETAIL_E2E_ATTEST") != "0" }

// verifier trusts AWS's certificates for the simulator's region plus the
// simulator's own signing certificate.
func (e *env) verifier() *attest.Verifier {
	e.t.Helper()
	certPEM, err := e.sim.IdentityCertificatePEM()
	if err != nil {
		e.t.Fatal(err)
	}
	bundle := filepath.Join(e.t.TempDir(), "ec2sim-identity.pem")
	if err := os.WriteFile(bundle, certPEM, 0o600); err != nil {
		e.t.Fatal(err)
	}
	// Watched, as cmd/dovetail-coordinator does.
	trust, err := attest.TrustConfig{Region: e.sim.Region(), BundleFile: bundle}.Watch()
	if err != nil {
		e.t.Fatal(err)
	}
	return &attest.Verifier{Trust: trust, AccountID: e.sim.AccountID(), Region: e.sim.Region()}
}

// leader returns the ID of the replica that leads, waiting for one.
func (e *env) leader() string {
	e.t.Helper()
	var id string
	e.eventually("a leader", time.Minute, func() (bool, string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		for k, r := range e.reps {
			if r.Node().IsLeader() && r.Launcher() != nil && r.Launcher().Term() != 0 {
				id = k
				return true, ""
			}
		}
		return false, "no replica leads"
	})
	return id
}

func (e *env) kill(id string) {
	e.mu.Lock()
	r := e.reps[id]
	delete(e.reps, id)
	e.mu.Unlock()
	if r != nil {
		r.Kill()
	}
}

// eventually polls cond until it holds or the timeout passes (a
// correctness bound, not a speed assertion), then fails with its last why.
func (e *env) eventually(what string, timeout time.Duration, cond func() (bool, string)) {
	e.t.Helper()
	e.poll(what, timeout, 500*time.Millisecond, cond)
}

// poll is eventually asking every interval: the waits whose duration a
// test reports poll finely, or eventually's 500 ms would be the figure's
// resolution.
func (e *env) poll(what string, timeout, every time.Duration, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(slowdown * timeout)
	why := ""
	for {
		ok, w := cond()
		if ok {
			return
		}
		why = w
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("cancelled waiting for %s", what)
		case <-time.After(every):
		}
	}
}

func (e *env) apply(objs ...client.Object) {
	e.t.Helper()
	for _, o := range objs {
		if err := e.c.Create(e.ctx, o); err != nil {
			e.t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

func decode[T any](t testing.TB, doc string) *T {
	t.Helper()
	v := new(T)
	if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
	return v
}

func nodeClass(t testing.TB, name string) *awsv1.EC2NodeClass {
	return decode[awsv1.EC2NodeClass](t, fmt.Sprintf(`
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: %s}
spec:
  amiSelectorTerms: [{alias: al2023@latest}]
  role: KarpenterNodeRole-e2e
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: %s}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: %s}}]
`, name, clusterName, clusterName))
}

func deployment(ns, name string, cpu, mem string) *appsv1.Deployment {
	zero := int32(0)
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: new(int64),
					Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}}}},
				},
			},
		},
	}
}

func (e *env) scale(ns, name string, n int32) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := e.kube.AppsV1().Deployments(ns).GetScale(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Replicas = n
		_, err = e.kube.AppsV1().Deployments(ns).UpdateScale(e.ctx, name, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		e.t.Fatalf("scale %s to %d: %v", name, n, err)
	}
}

// use makes e fail t (a subtest) until the returned restore is called.
func (e *env) use(t *testing.T) (restore func()) {
	prev := e.t
	e.t = t
	return func() { e.t = prev }
}

// fleet is what EC2 and Kubernetes hold at one instant.
type fleet struct {
	live       map[string]ec2sim.InstanceInfo   // by instance ID: pending or running
	byClaim    map[string][]ec2sim.InstanceInfo // live instances by karpenter.sh/nodeclaim tag
	ever       map[string]int                   // instances ever launched (any state) by nodeclaim tag
	claims     map[string]karpv1.NodeClaim
	nodes      map[string]corev1.Node // by name
	nodeByProv map[string]string      // providerID → node name
	pods       []corev1.Pod
}

func (e *env) fleet(ns string) fleet {
	e.t.Helper()
	f := fleet{live: map[string]ec2sim.InstanceInfo{}, byClaim: map[string][]ec2sim.InstanceInfo{}, ever: map[string]int{},
		claims: map[string]karpv1.NodeClaim{}, nodes: map[string]corev1.Node{}, nodeByProv: map[string]string{}}
	for _, in := range e.sim.Instances() {
		f.ever[in.Tags[cloud.TagNodeClaim]]++
		if in.State != cloud.StatePending && in.State != cloud.StateRunning {
			continue
		}
		f.live[in.ID] = in
		f.byClaim[in.Tags[cloud.TagNodeClaim]] = append(f.byClaim[in.Tags[cloud.TagNodeClaim]], in)
	}
	var claims karpv1.NodeClaimList
	if err := e.c.List(e.ctx, &claims); err != nil {
		e.t.Fatalf("list nodeclaims: %v", err)
	}
	for _, c := range claims.Items {
		f.claims[c.Name] = c
	}
	nodes, err := e.kube.CoreV1().Nodes().List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatalf("list nodes: %v", err)
	}
	for _, n := range nodes.Items {
		f.nodes[n.Name] = n
		f.nodeByProv[n.Spec.ProviderID] = n.Name
	}
	pods, err := e.kube.CoreV1().Pods(ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatalf("list pods: %v", err)
	}
	f.pods = pods.Items
	return f
}

// oneToOne checks that every NodeClaim that launched has exactly one live
// instance and that no live instance lacks a NodeClaim (no leak).
func (f fleet) oneToOne() (bool, string) {
	for name, c := range f.claims {
		n := len(f.byClaim[name])
		if n > 1 {
			return false, fmt.Sprintf("nodeclaim %s has %d live instances", name, n)
		}
		if c.DeletionTimestamp == nil && c.Status.ProviderID != "" && n != 1 {
			return false, fmt.Sprintf("launched nodeclaim %s has %d live instances", name, n)
		}
	}
	for claim, ins := range f.byClaim {
		if _, ok := f.claims[claim]; !ok {
			return false, fmt.Sprintf("instance %s (nodeclaim tag %q) has no NodeClaim: leaked", ins[0].ID, claim)
		}
	}
	return true, ""
}

// running counts pods Running on nodes of live simulator instances.
func (f fleet) running() (running, elsewhere int) {
	for _, p := range f.pods {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		n, ok := f.nodes[p.Spec.NodeName]
		if !ok {
			elsewhere++
			continue
		}
		if _, launched := f.live[instanceID(n.Spec.ProviderID)]; !launched {
			elsewhere++
			continue
		}
		running++
	}
	return running, elsewhere
}

// instanceID is the last path element of aws:///<zone>/<id>.
func instanceID(providerID string) string {
	for i := len(providerID) - 1; i >= 0; i-- {
		if providerID[i] == '/' {
			return providerID[i+1:]
		}
	}
	return providerID
}

// replica returns the live replica id.
func (e *env) replica(id string) *coordinator.Coordinator {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reps[id]
}

// anyReplica returns a live replica.
func (e *env) anyReplica() *coordinator.Coordinator {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.reps {
		return r
	}
	e.t.Fatal("no live replica")
	return nil
}

// startAgent runs dovetail-agent for node in this process against the
// instance's IMDS in the simulator, reporting to every replica. Host health
// checks are off (the node is simulated) and so is self-repair.
func (e *env) startAgent(node, instanceID string) { e.startAgentDir(node, instanceID) }

// startAgentDir is startAgent returning the agent's state directory.
func (e *env) startAgentDir(node, instanceID string) string {
	return e.startAgentWith(node, instanceID, nil)
}

// startAgentWith is startAgentDir with the agent's configuration changed
// by edit (nil: as is) before it starts.
func (e *env) startAgentWith(node, instanceID string, edit func(*agent.Config)) string {
	e.t.Helper()
	var coords []string
	for _, p := range e.peers {
		coords = append(coords, p.HTTPAddr)
	}
	dir := e.t.TempDir()
	// The node's own identity (system:node:<node>), as the agent reads it
	// from the kubelet's kubeconfig on a real node: the API server and the
	// chart's policy confine it to this Node and its pods.
	nodeCfg, err := e.cp.NodeClientConfig(node)
	if err != nil {
		e.t.Fatalf("credentials for node %s: %v", node, err)
	}
	kube, events, err := agent.Clients(nodeCfg, "dovetail-agent/e2e")
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := agent.Config{
		Kube: kube, EventKube: events, NodeName: node, IMDSEndpoint: e.sim.IMDSEndpoint(instanceID), IMDSInterval: 200 * time.Millisecond,
		Coordinators: coords, CoordinatorTLS: e.pki.clientTLS, StateDir: dir, Checks: []health.Check{}, DisableRepair: true, Attest: attested(),
		BootIDFile: filepath.Join(dir, "boot_id"), Logger: e.log.With("agent", node),
	}
	if edit != nil {
		edit(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		e.t.Fatalf("agent for %s: %v", node, err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil && ctx.Err() == nil {
			e.t.Errorf("agent for %s: %v", node, err)
		}
	}()
	e.t.Cleanup(func() { cancel(); <-done })
	e.eventually("the agent found its node", 30*time.Second, func() (bool, string) {
		return a.NodeName() == node, "agent node " + a.NodeName()
	})
	return dir
}
