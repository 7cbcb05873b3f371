// Command dovetail-agent is the node daemon: IMDS interruption watch, health
// checks, self-repair, drain and gossip. It runs under systemd on every node
// (systemd/dovetail-agent.service).
//
// Every flag can also be set in the environment as DOVETAIL_AGENT_<FLAG>,
// upper-cased with dashes as underscores (--state-dir → DOVETAIL_AGENT_STATE_DIR);
// a flag on the command line wins.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dovetail-dev/dovetail/daemon/agent"
	"github.com/dovetail-dev/dovetail/daemon/repair"
	"github.com/dovetail-dev/dovetail/flagenv"
	"github.com/dovetail-dev/dovetail/gossip"
	"github.com/dovetail-dev/dovetail/health"
	"github.com/dovetail-dev/dovetail/systemd"
	"github.com/dovetail-dev/dovetail/tlsid"
	"github.com/dovetail-dev/dovetail/version"
)

type options struct {
	coordinatorCA, coordinatorIdentity           string
	insecureCoordinators                         bool
	kubeconfig, nodeName, imdsEndpoint           string
	imdsInterval                                 time.Duration
	coordinators                                 string
	gossipBind, gossipAdvertise, gossipSeeds     string
	gossipLabel, gossipKeyFile, gossipName       string
	gossipDev                                    bool
	stateDir                                     string
	attest                                       bool
	attestFormat                                 string
	healthInterval                               time.Duration
	healthRoot, kubeletHealthz, containerdSocket string
	dnsName                                      string
	expectedGPUs                                 int
	kernelJournalMatch                           string
	allowReboot, disableRepair, dryRun           bool
	repairRestartAfter, repairRebootAfter        time.Duration
	repairReplaceAfter                           time.Duration
	repairMaxRestarts                            int
	maintenanceLead, spotForceDeleteBefore       time.Duration
	listen, logLevel, logFormat                  string
	showVersion                                  bool
}

func main() {
	// One P unless the environment says otherwise (GOMAXPROCS in
	// /etc/dovetail/agent.env). The agent waits on the network: idle, its
	// CPU is almost all the runtime waking up for each IMDS poll, and with
	// more Ps each wake-up also spins up idle threads looking for work
	// (0.09 → 0.06 CPU-s/min, BenchmarkIdleCPU). A 250-pod drain uses well
	// under one core (BenchmarkLargeDrain).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("dovetail-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDefault := "/var/lib/dovetail-agent"
	if d := os.Getenv("STATE_DIRECTORY"); d != "" { // set by systemd's StateDirectory=
		stateDefault = strings.Split(d, ":")[0]
	}
	fs.StringVar(&o.kubeconfig, "kubeconfig", "/var/lib/kubelet/kubeconfig", "kubeconfig the agent acts with: the kubelet's, so it speaks as its node (system:node:<name>) and the API server confines it to this Node and its pods (falls back to $KUBECONFIG, then in-cluster)")
	fs.StringVar(&o.nodeName, "node-name", "", "this node's name (default: resolved from IMDS hostname, instance ID and providerID)")
	fs.BoolVar(&o.attest, "attest", true, "prove this instance's identity to the coordinator (IMDS identity document) and sign every report with a key kept in --state-dir")
	fs.StringVar(&o.attestFormat, "attest-format", "rsa2048", "IMDS identity signature sent: rsa2048 or signature")
	fs.StringVar(&o.imdsEndpoint, "imds-endpoint", "", "IMDS base URL (default: the instance's own, http://169.254.169.254)")
	fs.DurationVar(&o.imdsInterval, "imds-interval", 500*time.Millisecond, "IMDS poll interval (at most 1s to act within 1s)")
	fs.StringVar(&o.coordinatorCA, "coordinator-ca", "", "CA bundle of the coordinators' API certificates: reports go over https to certificates with --coordinator-identity only")
	fs.StringVar(&o.coordinatorIdentity, "coordinator-identity", "", "URI SAN a coordinator certificate must carry (default: any spiffe://<cluster>/coordinator the CA signed)")
	fs.BoolVar(&o.insecureCoordinators, "insecure-coordinators", false, "report over plain HTTP to any coordinator address (development only)")
	fs.StringVar(&o.coordinators, "coordinators", "", "comma-separated coordinator report addresses (host:port); more are found by gossip")
	fs.StringVar(&o.gossipBind, "gossip-bind", "", "gossip listen address host:port (empty: no gossip)")
	fs.StringVar(&o.gossipAdvertise, "gossip-advertise", "", "gossip address others dial, host:port (default: the bind address)")
	fs.StringVar(&o.gossipSeeds, "gossip-seeds", "", "comma-separated gossip seeds (coordinators), host:port")
	fs.StringVar(&o.gossipLabel, "gossip-label", "", "gossip cluster label (keeps clusters apart)")
	fs.StringVar(&o.gossipKeyFile, "gossip-key-file", "/etc/dovetail/gossip.keys", "file of base64 gossip keys, one per line, primary first")
	fs.StringVar(&o.gossipName, "gossip-name", "", "gossip member name (default: the node name)")
	fs.BoolVar(&o.gossipDev, "gossip-dev", false, "allow unencrypted gossip (development only)")
	fs.StringVar(&o.stateDir, "state-dir", stateDefault, "directory for health state, repair history, drain records and the report spool")
	fs.DurationVar(&o.healthInterval, "health-interval", 30*time.Second, "time between health check rounds")
	fs.StringVar(&o.healthRoot, "health-root", "/", "filesystem root the health checks read (/proc, /sys, /dev/kmsg ...)")
	fs.StringVar(&o.kubeletHealthz, "kubelet-healthz", "http://127.0.0.1:10248/healthz", "kubelet healthz URL")
	fs.StringVar(&o.containerdSocket, "containerd-socket", "/run/containerd/containerd.sock", "containerd socket path")
	fs.StringVar(&o.dnsName, "dns-check-name", "", "a name that must resolve for NetworkingReady (empty: only require a nameserver)")
	fs.IntVar(&o.expectedGPUs, "expected-gpus", 0, "NVIDIA GPUs this instance type has (0: detect)")
	fs.StringVar(&o.kernelJournalMatch, "kernel-journal-match", "_TRANSPORT=kernel", "journalctl match for the kernel's messages in the journal, read beside /dev/kmsg (off: /dev/kmsg only)")
	fs.BoolVar(&o.allowReboot, "allow-reboot", false, "let self-repair reboot the node")
	fs.DurationVar(&o.repairRestartAfter, "repair-restart-after", time.Minute, "a check must fail this long before its unit is restarted, and restarts are this far apart")
	fs.IntVar(&o.repairMaxRestarts, "repair-max-restarts", 3, "unit restarts per unit per hour before self-repair escalates")
	fs.DurationVar(&o.repairRebootAfter, "repair-reboot-after", 10*time.Minute, "a failure this old is past restarting: reboot (with --allow-reboot) or ask for replacement")
	fs.DurationVar(&o.repairReplaceAfter, "repair-replace-after", 5*time.Minute, "a failure this old, with nothing left to try on the node, asks the coordinator to replace it")
	fs.BoolVar(&o.disableRepair, "disable-repair", false, "never restart units or reboot; only report")
	fs.BoolVar(&o.dryRun, "dry-run", false, "drain with server-side dry runs and never repair")
	fs.DurationVar(&o.maintenanceLead, "maintenance-lead", 15*time.Minute, "drain this long before a scheduled maintenance event starts")
	fs.DurationVar(&o.spotForceDeleteBefore, "spot-force-delete-before", 10*time.Second, "on spot interruption, delete pods still refused this long before the deadline (0 disables)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:9464", "address for /healthz, /metrics and /status (empty disables)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "auto", "auto (journal under systemd, else text), journal, text or json")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: dovetail-agent [flags]\n\nThe Dovetail node agent: watches IMDS for spot interruptions, rebalance\n"+
			"recommendations and maintenance events; taints, cordons and drains the node;\nruns health checks into NodeConditions; self-repairs; gossips; reports to the coordinator.\n\n"+
			"Every flag may be set in the environment as DOVETAIL_AGENT_<FLAG> (e.g. DOVETAIL_AGENT_STATE_DIR).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, "DOVETAIL_AGENT_", args, os.LookupEnv, stderr); err != nil {
		return flagenv.ExitCode(err)
	}
	if o.showVersion {
		fmt.Fprintln(stdout, "dovetail-agent", version.String())
		return 0
	}
	log, err := systemd.NewLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 2
	}
	slog.SetDefault(log)
	if err := runAgent(o, log); err != nil {
		log.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}

func kubeClients(path string) (kube, events kubernetes.Interface, err error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if _, err := os.Stat(path); err == nil {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("kubeconfig: %w", err)
	}
	// Budgets: agent.KubeQPS/KubeBurst for the node's own requests and its
	// evictions, a separate client for Events.
	return agent.Clients(cfg, "dovetail-agent/"+version.Version)
}

func readKeys(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func hostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return h, port, nil
}

func runAgent(o options, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	notifier := systemd.NewNotifier(log)

	kc, ec, err := kubeClients(o.kubeconfig)
	if err != nil {
		return err
	}
	cfg := agent.Config{
		Kube:           kc,
		EventKube:      ec,
		NodeName:       o.nodeName,
		IMDSEndpoint:   o.imdsEndpoint,
		Attest:         o.attest,
		AttestFormat:   o.attestFormat,
		IMDSInterval:   o.imdsInterval,
		Coordinators:   splitList(o.coordinators),
		StateDir:       o.stateDir,
		HealthInterval: o.healthInterval,
		HealthEnv: health.Env{Root: o.healthRoot, KubeletHealthz: o.kubeletHealthz, ContainerdSocket: o.containerdSocket, DNSName: o.dnsName,
			ExpectedGPUs: o.expectedGPUs, KernelJournalMatch: o.kernelJournalMatch},
		Repair: repair.Policy{Units: repair.DefaultUnits, AllowReboot: o.allowReboot, RestartAfter: o.repairRestartAfter,
			MaxRestarts: o.repairMaxRestarts, RebootAfter: o.repairRebootAfter, ReplaceAfter: o.repairReplaceAfter},
		DisableRepair:         o.disableRepair,
		DryRun:                o.dryRun,
		MaintenanceLead:       o.maintenanceLead,
		SpotForceDeleteBefore: o.spotForceDeleteBefore,
		ListenAddr:            o.listen,
		Logger:                log,
		Ready: func(status string) {
			if err := notifier.Ready(status); err != nil {
				log.Warn("sd_notify READY", "err", err)
			}
		},
	}
	if o.gossipBind != "" {
		host, port, err := hostPort(o.gossipBind)
		if err != nil {
			return fmt.Errorf("--gossip-bind: %w", err)
		}
		gc := gossip.Config{Name: o.gossipName, BindAddr: host, BindPort: port, Seeds: splitList(o.gossipSeeds), Label: o.gossipLabel, Dev: o.gossipDev}
		if o.gossipAdvertise != "" {
			if gc.AdvertiseAddr, gc.AdvertisePort, err = hostPort(o.gossipAdvertise); err != nil {
				return fmt.Errorf("--gossip-advertise: %w", err)
			}
		}
		if !o.gossipDev {
			if gc.Keys, err = readKeys(o.gossipKeyFile); err != nil {
				return fmt.Errorf("--gossip-key-file: %w (or --gossip-dev for an unencrypted pool)", err)
			}
		}
		cfg.Gossip = gc
	}
	if o.spotForceDeleteBefore == 0 {
		cfg.SpotForceDeleteBefore = -1 // the flag's 0 means never; the config's means default
	}
	switch {
	case o.coordinatorCA != "":
		if cfg.CoordinatorTLS, err = tlsid.CoordinatorClientFromFile(o.coordinatorCA, o.coordinatorIdentity); err != nil {
			return fmt.Errorf("--coordinator-ca: %w", err)
		}
	case !o.insecureCoordinators:
		return errors.New("reports need the coordinators' CA (--coordinator-ca) to verify who receives them, or --insecure-coordinators for development")
	default:
		log.Warn("reports go over plain HTTP to any address claiming to be a coordinator (--insecure-coordinators)")
	}
	if o.repairRestartAfter <= 0 || o.repairRebootAfter <= 0 || o.repairReplaceAfter <= 0 || o.repairMaxRestarts <= 0 {
		return errors.New("--repair-restart-after, --repair-max-restarts, --repair-reboot-after and --repair-replace-after must be positive")
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	go notifier.RunWatchdog(ctx, a.Alive)
	err = a.Run(ctx)
	_ = notifier.Stopping("shutting down")
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil // stopped by a signal while still starting: not a failure
	}
	return err
}
