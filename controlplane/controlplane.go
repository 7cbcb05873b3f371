// Package controlplane runs a real, small Kubernetes control plane on
// loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
// kwok (which plays the kubelet for fake nodes), all as child processes built
// by `make tools` into the repo's bin/. It generates a CA, serving and client
// certificates and the service-account key at start, installs Dovetail's CRDs
// and waits until the cluster behaves like a cluster: the API is ready, the
// controllers and the scheduler are healthy, the CRDs are served and the
// default service account exists.
//
// Used by integration tests (StartForTest, Shared) and by `dovetail dev`.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/dovetail-dev/dovetail/internal/freeport"
)

// Annotation and value that mark a Node as kwok's to manage. Nodes without it
// are left alone, so an agent or a test can own other nodes.
const (
	KwokNodeAnnotation = "kwok.x-k8s.io/node"
	KwokNodeValue      = "fake"
)

const (
	serviceCIDR = "10.96.0.0/16"
	serviceIP   = "10.96.0.1" // first address of serviceCIDR: the kubernetes Service
	podCIDR     = "10.0.0.0/16"
	// issuer of service-account tokens, as a real cluster spells it.
	saIssuer = "https://kubernetes.default.svc.cluster.local"
)

// Options configures Start. The zero value is a good default.
type Options struct {
	// BinDir holds the binaries built by `make tools`. Default: $DOVETAIL_BIN,
	// else <repo>/bin, the repo being found by walking up to Dovetail's go.mod.
	BinDir string
	// CRDDir holds CRD manifests (*.yaml, *.yml, *.json, searched
	// recursively) to install. Default <repo>/packaging/crds; a missing
	// default directory is skipped with a log line, a missing explicit one is
	// an error.
	CRDDir string
	// Dir is the work dir for certificates, kubeconfigs, etcd data and logs.
	// Default: a new temp dir, removed by Stop. A given Dir is kept.
	Dir string
	// Log receives progress lines (what starts, what is ready). Default: discard.
	// Component output always goes to files under Dir/logs.
	Log io.Writer
	// KwokStages is kept for callers written against the first sketch of this
	// API; kwok always runs with the node and pod "fast" stages plus node
	// heartbeats. Use SkipKwok to run without kwok.
	KwokStages bool
	// SkipKwok starts no kwok: fake nodes then never become Ready. For tests
	// that only need the API.
	SkipKwok bool
	// NoNodeRestriction runs the API server without the NodeRestriction
	// admission plugin (the Node authorizer stays), as some self-managed
	// clusters do: for tests of the policies that back it up.
	NoNodeRestriction bool
	// StartTimeout bounds the whole start. Default 3 minutes (a loaded
	// two-core machine can take a minute for the API server alone).
	StartTimeout time.Duration
}

// ControlPlane is a running control plane. Stop it when done.
type ControlPlane struct {
	// RESTConfig authenticates as a cluster admin (system:masters).
	RESTConfig *rest.Config
	// Kubeconfig is the path of an admin kubeconfig with embedded credentials.
	Kubeconfig string
	// Dir is the work dir; component logs are in Dir/logs/<component>.log.
	Dir string
	// APIServerURL is https://127.0.0.1:<port>.
	APIServerURL string
	// CACertPEM is the cluster CA, for clients that build their own TLS config.
	CACertPEM []byte

	keys      *pki
	log       *slog.Logger
	removeDir bool
	procs     []*process // in start order
	stopOnce  sync.Once

	failOnce sync.Once
	failed   chan struct{}
	failErr  error
}

// Start brings up a control plane and returns once it is usable, or an error
// naming the component that failed with the end of its log. ctx bounds the
// start only; the control plane runs until Stop.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if opts.Log != nil {
		log = slog.New(slog.NewTextHandler(opts.Log, &slog.HandlerOptions{
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{} // the caller's terminal or test log has its own clock
				}
				return a
			},
		}))
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	if err := resolveOptions(&opts, log); err != nil {
		return nil, err
	}
	if err := BinariesPresent(opts.BinDir); err != nil {
		return nil, err
	}

	// Free ports are picked and released before the components bind them; a
	// parallel test package can steal one in between. Such a start fails with
	// "address already in use" and is simply tried again on new ports.
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		cp, err := startOnce(ctx, opts, log)
		if err == nil {
			return cp, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") || ctx.Err() != nil {
			break
		}
		log.Warn("port taken while starting, retrying on new ports", "attempt", attempt)
	}
	return nil, lastErr
}

func resolveOptions(opts *Options, log *slog.Logger) error {
	repo, repoErr := repoRoot()
	if opts.BinDir == "" {
		opts.BinDir = os.Getenv("DOVETAIL_BIN")
	}
	if opts.BinDir == "" {
		if repoErr != nil {
			return fmt.Errorf("find bin dir: %w (set Options.BinDir or DOVETAIL_BIN)", repoErr)
		}
		opts.BinDir = filepath.Join(repo, "bin")
	}
	if opts.CRDDir == "" && repoErr == nil {
		dir := filepath.Join(repo, "packaging", "crds")
		if _, err := os.Stat(dir); err == nil {
			opts.CRDDir = dir
		} else {
			log.Warn("no CRDs installed: default CRD dir missing", "dir", dir)
		}
	} else if opts.CRDDir != "" {
		if _, err := os.Stat(opts.CRDDir); err != nil {
			return fmt.Errorf("CRD dir: %w", err)
		}
	}
	return nil
}

func startOnce(ctx context.Context, opts Options, log *slog.Logger) (_ *ControlPlane, err error) {
	started := time.Now()
	cp := &ControlPlane{log: log, failed: make(chan struct{})}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "dovetail-cp-")
		if err != nil {
			return nil, fmt.Errorf("create work dir: %w", err)
		}
		cp.Dir, cp.removeDir = dir, true
	} else {
		abs, err := filepath.Abs(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("work dir: %w", err)
		}
		cp.Dir = abs
		// A kept dir from an earlier run holds etcd data keyed to old
		// certificates and ports; start from a clean slate each time.
		for _, sub := range []string{"etcd", "logs", "pki", "kwok"} {
			if err := os.RemoveAll(filepath.Join(abs, sub)); err != nil {
				return nil, fmt.Errorf("clean work dir: %w", err)
			}
		}
	}
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()
	logDir := filepath.Join(cp.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}

	keys, err := newPKI(time.Now())
	if err != nil {
		return nil, err
	}
	files, err := keys.write(filepath.Join(cp.Dir, "pki"))
	if err != nil {
		return nil, err
	}
	ports, err := freeport.Ports(5)
	if err != nil {
		return nil, err
	}
	etcdPort, etcdPeerPort, apiPort, cmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	cp.APIServerURL = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	cp.CACertPEM = keys.CA.CertPEM
	cp.keys = keys

	kubeconfigs := map[string]string{}
	for _, name := range clientIdentities {
		path := filepath.Join(cp.Dir, "kubeconfig-"+name)
		if name == "admin" {
			path = filepath.Join(cp.Dir, "kubeconfig")
		}
		if err := writeKubeconfig(path, cp.APIServerURL, keys.CA.CertPEM, keys.Clients[name]); err != nil {
			return nil, err
		}
		kubeconfigs[name] = path
	}
	cp.Kubeconfig = kubeconfigs["admin"]
	admin := keys.Clients["admin"]
	cp.RESTConfig = &rest.Config{
		Host: cp.APIServerURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: keys.CA.CertPEM, CertData: admin.CertPEM, KeyData: admin.KeyPEM,
		},
		// Tests create objects in bursts; client-side throttling would only
		// make them slow, never more correct.
		QPS: 200, Burst: 400,
	}
	bin := func(name string) string { return filepath.Join(opts.BinDir, name) }
	logPath := func(name string) string { return filepath.Join(logDir, name+".log") }

	// etcd
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeerPort)
	log.Info("starting etcd")
	etcd, err := cp.start("etcd", bin("etcd"), []string{
		"--name=default",
		"--data-dir=" + filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		"--initial-cluster-state=new",
		// Throwaway data: durability buys nothing and fsync on a busy
		// disk is the slowest part of every write.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}, nil, logPath("etcd"))
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "etcd", []*process{etcd}, func(ctx context.Context) error {
		return httpHealthy(ctx, insecureHTTP, etcdURL+"/health")
	}); err != nil {
		return nil, err
	}
	log.Info("etcd ready", "url", etcdURL, "elapsed", since(started))

	// kube-apiserver
	log.Info("starting kube-apiserver")
	apiserver, err := cp.start("kube-apiserver", bin("kube-apiserver"), []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + filepath.Join(cp.Dir, "pki", "apiserver"),
		"--tls-cert-file=" + files.ServingCert,
		"--tls-private-key-file=" + files.ServingKey,
		"--client-ca-file=" + files.CACert,
		"--service-account-issuer=" + saIssuer,
		"--service-account-key-file=" + files.SAPub,
		"--service-account-signing-key-file=" + files.SAKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		// As in EKS: nodes (and Dovetail's agents, which use the
		// kubelet's node identity) are confined to their own Node and
		// the pods bound to it by the Node authorizer and NodeRestriction.
		"--authorization-mode=Node,RBAC",
		admissionFlag(opts),
		// On loopback there is no routable address to publish as the
		// kubernetes Service's endpoint; the reconciler would fight that.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}, nil, logPath("kube-apiserver"))
	if err != nil {
		return nil, err
	}
	restHTTP, err := rest.HTTPClientFor(cp.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("admin client: %w", err)
	}
	if err := waitFor(ctx, "kube-apiserver", []*process{etcd, apiserver}, func(ctx context.Context) error {
		return httpHealthy(ctx, restHTTP, cp.APIServerURL+"/readyz")
	}); err != nil {
		return nil, err
	}
	log.Info("kube-apiserver ready", "url", cp.APIServerURL, "elapsed", since(started))

	// The rest start together: none depends on another, only on the API.
	log.Info("starting kube-controller-manager, kube-scheduler and kwok")
	cmKC := kubeconfigs["kube-controller-manager"]
	cm, err := cp.start("kube-controller-manager", bin("kube-controller-manager"), []string{
		"--kubeconfig=" + cmKC,
		"--authentication-kubeconfig=" + cmKC,
		"--authorization-kubeconfig=" + cmKC,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cmPort),
		"--service-account-private-key-file=" + files.SAKey,
		"--root-ca-file=" + files.CACert,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--leader-elect=false",
		// nodeipam needs a cluster CIDR we do not have; node-lifecycle must
		// run, or the not-ready taint never leaves new nodes.
		"--controllers=*,-nodeipam",
		"--use-service-account-credentials=false",
		"--profiling=false",
		// The defaults (20 QPS, burst 30) make the controller manager,
		// not the code under test, the bottleneck once a test creates
		// thousands of pods or nodes (node-lifecycle untaints every new
		// node, the garbage collector and endpoints follow every pod).
		"--kube-api-qps=" + strconv.Itoa(componentQPS),
		"--kube-api-burst=" + strconv.Itoa(2*componentQPS),
	}, nil, logPath("kube-controller-manager"))
	if err != nil {
		return nil, err
	}
	schedKC := kubeconfigs["kube-scheduler"]
	schedConfig, err := writeSchedulerConfig(filepath.Join(cp.Dir, "kube-scheduler.yaml"), schedKC)
	if err != nil {
		return nil, err
	}
	sched, err := cp.start("kube-scheduler", bin("kube-scheduler"), []string{
		"--config=" + schedConfig,
		"--authentication-kubeconfig=" + schedKC,
		"--authorization-kubeconfig=" + schedKC,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(schedPort),
		"--profiling=false",
	}, nil, logPath("kube-scheduler"))
	if err != nil {
		return nil, err
	}
	watched := []*process{etcd, apiserver, cm, sched}
	if !opts.SkipKwok {
		kwok, err := cp.startKwok(opts.BinDir, kubeconfigs["kwok"], logPath("kwok"))
		if err != nil {
			return nil, err
		}
		watched = append(watched, kwok)
	}

	// While those come up, install the CRDs.
	if opts.CRDDir != "" {
		n, err := installCRDs(ctx, cp.RESTConfig, opts.CRDDir, func(ctx context.Context) error {
			return cp.firstFailure(watched)
		})
		if err != nil {
			return nil, err
		}
		log.Info("CRDs established", "count", n, "dir", opts.CRDDir, "elapsed", since(started))
	}

	cmURL := "https://127.0.0.1:" + strconv.Itoa(cmPort) + "/healthz"
	schedURL := "https://127.0.0.1:" + strconv.Itoa(schedPort) + "/healthz"
	if err := waitFor(ctx, "kube-controller-manager", watched, func(ctx context.Context) error {
		return httpHealthy(ctx, insecureHTTP, cmURL)
	}); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "kube-scheduler", watched, func(ctx context.Context) error {
		return httpHealthy(ctx, insecureHTTP, schedURL)
	}); err != nil {
		return nil, err
	}
	// Pods cannot be created in a namespace before its default service
	// account exists; the controller manager makes it shortly after start.
	if err := waitFor(ctx, "default service account", watched, func(ctx context.Context) error {
		return httpHealthy(ctx, restHTTP, cp.APIServerURL+"/api/v1/namespaces/default/serviceaccounts/default")
	}); err != nil {
		return nil, err
	}
	go cp.watch(watched)
	log.Info("control plane ready", "kubeconfig", cp.Kubeconfig, "elapsed", since(started))
	return cp, nil
}

// componentQPS is the client QPS of the controller manager and the
// scheduler (burst twice that). Their defaults (20 and 50 QPS) are sized
// for shared production API servers; on this private one they were the
// bottleneck of every large test: at 50 QPS kube-scheduler alone needs
// 100 s to bind 5,000 pods, and its events and status updates share that
// budget.
const componentQPS = 500

// writeSchedulerConfig writes kube-scheduler's configuration file: its
// client QPS and burst can only be raised there, not by flags.
func writeSchedulerConfig(path, kubeconfig string) (string, error) {
	cfg := fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
  qps: %d
  burst: %d
leaderElection:
  leaderElect: false
`, kubeconfig, componentQPS, 2*componentQPS)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("write kube-scheduler config: %w", err)
	}
	return path, nil
}

// admissionFlag enables NodeRestriction (off by default in kube-apiserver,
// on in EKS and kubeadm clusters) unless the options turn it off.
func admissionFlag(opts Options) string {
	if opts.NoNodeRestriction {
		return "--disable-admission-plugins=NodeRestriction"
	}
	return "--enable-admission-plugins=NodeRestriction"
}

func (cp *ControlPlane) startKwok(binDir, kubeconfig, logPath string) (*process, error) {
	stagesDir := filepath.Join(binDir, "kwok-stages")
	stages, err := filepath.Glob(filepath.Join(stagesDir, "*.yaml"))
	if err != nil || len(stages) == 0 {
		return nil, fmt.Errorf("no kwok stages in %s: run `make tools`", stagesDir)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--manage-nodes-with-annotation-selector=" + KwokNodeAnnotation + "=" + KwokNodeValue,
		// Renew node Leases like a kubelet, so the node-lifecycle
		// controller sees live nodes.
		"--node-lease-duration-seconds=40",
		// kwok's default /24 runs out after 254 pods.
		"--cidr=" + podCIDR,
	}
	for _, s := range stages {
		args = append(args, "--config="+s)
	}
	cp.log.Info("starting kwok", "stages", len(stages))
	// KWOK_WORKDIR keeps kwok from reading a user's ~/.kwok/kwok.yaml.
	return cp.start("kwok", filepath.Join(binDir, "kwok"), args,
		[]string{"KWOK_WORKDIR=" + filepath.Join(cp.Dir, "kwok")}, logPath)
}

func (cp *ControlPlane) start(name, bin string, args, env []string, logPath string) (*process, error) {
	p, err := startProcess(name, bin, args, env, logPath)
	if err != nil {
		return nil, err
	}
	cp.procs = append(cp.procs, p)
	return p, nil
}

// watch records the first component that dies after a successful start, so a
// long-running user (dovetail dev) can notice and report it.
func (cp *ControlPlane) watch(procs []*process) {
	cases := make(chan *process, len(procs))
	for _, p := range procs {
		go func() {
			<-p.done
			cases <- p
		}()
	}
	p := <-cases
	if p.stopRequested() {
		return
	}
	_, err := p.exited()
	cp.failOnce.Do(func() {
		cp.failErr = p.failure(err)
		cp.log.Error("control plane component exited", "component", p.name, "err", err)
		close(cp.failed)
	})
}

// Failed is closed when a component exits unexpectedly after Start
// returned; Err then says which one and why.
func (cp *ControlPlane) Failed() <-chan struct{} { return cp.failed }

// Err is the unexpected exit of a component, or nil.
func (cp *ControlPlane) Err() error {
	select {
	case <-cp.failed:
		return cp.failErr
	default:
		return nil
	}
}

// LogPath is the log file of a component (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok).
func (cp *ControlPlane) LogPath(component string) string {
	return filepath.Join(cp.Dir, "logs", component+".log")
}

// Stop terminates every component (SIGTERM, then SIGKILL after a grace
// period) and removes the work dir if Start created it. Safe to call twice.
func (cp *ControlPlane) Stop() {
	cp.stopOnce.Do(func() {
		// Clients of the API first, all at once; then the API server, then
		// its storage, so nothing logs storms of connection errors.
		var wg sync.WaitGroup
		var clients, core []*process
		for _, p := range cp.procs {
			if p.name == "etcd" || p.name == "kube-apiserver" {
				core = append(core, p)
			} else {
				clients = append(clients, p)
			}
		}
		for _, p := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.stop(5 * time.Second)
			}()
		}
		wg.Wait()
		for i := len(core) - 1; i >= 0; i-- {
			core[i].stop(10 * time.Second)
		}
		if cp.removeDir && cp.Dir != "" {
			if err := os.RemoveAll(cp.Dir); err != nil {
				cp.log.Warn("remove work dir", "dir", cp.Dir, "err", err)
			}
		}
		cp.log.Info("control plane stopped")
	})
}

func (cp *ControlPlane) firstFailure(procs []*process) error {
	for _, p := range procs {
		if done, err := p.exited(); done {
			return p.failure(err)
		}
	}
	return nil
}

// waitFor polls check until it succeeds, a watched process dies (the error
// then carries that process's log tail) or ctx ends.
func waitFor(ctx context.Context, what string, procs []*process, check func(context.Context) error) error {
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		for _, p := range procs {
			if done, err := p.exited(); done {
				return fmt.Errorf("waiting for %s: %w", what, p.failure(err))
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("waiting for %s: %v (last check: %v)", what, ctx.Err(), last)
			for _, p := range procs {
				if p.name == what {
					return errors.New(msg + "\n--- last lines of " + p.logPath + " ---\n" + tailFile(p.logPath, 25))
				}
			}
			return errors.New(msg)
		case <-tick.C:
		}
	}
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

// FreePorts returns n distinct free loopback ports (free when returned; a
// process may still take one before the caller binds it).
func FreePorts(n int) ([]int, error) { return freeport.Ports(n) }

// ClientConfig returns a REST config that authenticates with a fresh client
// certificate as user in groups, for tests that need an identity other than
// the admin's (a node's `system:node:NAME` in `system:nodes`, say).
func (cp *ControlPlane) ClientConfig(user string, groups ...string) (*rest.Config, error) {
	kp, err := cp.keys.issueClient(user, groups, time.Now())
	if err != nil {
		return nil, fmt.Errorf("issue client certificate for %s: %w", user, err)
	}
	cfg := rest.CopyConfig(cp.RESTConfig)
	cfg.CertData, cfg.KeyData = kp.CertPEM, kp.KeyPEM
	return cfg, nil
}
