// Command dovetail-coordinator is the replicated control loop: provisioning,
// disruption and launches, replicated with Raft. Run 3 or 5 replicas with the
// same command line (a StatefulSet): each derives its peers from its pod name,
// --bootstrap-expect and --peer-domain, a fresh cluster bootstraps itself and
// a restarted pod rejoins with its data directory.
//
// Every flag can also be set in the environment as DOVETAIL_COORDINATOR_<FLAG>,
// upper-cased with dashes as underscores (--data-dir → DOVETAIL_COORDINATOR_DATA_DIR);
// a flag on the command line wins.
package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dovetail-dev/dovetail/cloud/ec2"
	"github.com/dovetail-dev/dovetail/coordinator"
	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/attest"
	"github.com/dovetail-dev/dovetail/coordinator/eventdedupe"
	"github.com/dovetail-dev/dovetail/coordinator/launcher"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
	"github.com/dovetail-dev/dovetail/coordinator/wiring"
	"github.com/dovetail-dev/dovetail/flagenv"
	"github.com/dovetail-dev/dovetail/gossip"
	"github.com/dovetail-dev/dovetail/kubeclient"
	"github.com/dovetail-dev/dovetail/systemd"
	"github.com/dovetail-dev/dovetail/tlsid"
	"github.com/dovetail-dev/dovetail/version"
)

const envPrefix = "DOVETAIL_COORDINATOR_"

type options struct {
	id, dataDir                         string
	raftAddr, raftAdvertise, httpAddr   string
	peers, peerDomain                   string
	bootstrapExpect                     int
	tlsCA, tlsCert, tlsKey, tlsName     string
	insecureRaft                        bool
	apiCert, apiKey, apiCA, apiIdentity string
	insecureAPI, metricsOpen            bool
	clusterName, region, ec2Endpoint    string
	attestAccount, attestBundle         string
	attestBundleOnly                    bool
	insecureReports                     bool
	clusterEndpoint, clusterCA, k8sVer  string
	awsStatic                           bool
	kubeconfig                          string
	noKube, noCloud                     bool
	gossipBind, gossipAdvertise         string
	gossipSeeds, gossipLabel, gossipKey string
	gossipDev, noGossip                 bool
	leakGrace, nodeGrace, interval      time.Duration
	orphanGrace, deadServer             time.Duration
	heartbeat, election, lease          time.Duration
	logLevel, logFormat                 string
	showVersion                         bool
	raftRejoin                          bool
	// Read again by leaderComponents (components.go) from the same command
	// line; registered here so the flag set accepts them and --help lists them.
	builtinPools, nodeRole                     string
	disruptionInterval, validationDelay        time.Duration
	nodeClassInterval, ec2CallTimeout          time.Duration
	provisioningIdleGap, provisioningMaxWindow time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func defaultID() string {
	if v := os.Getenv("POD_NAME"); v != "" {
		return v
	}
	h, _ := os.Hostname()
	return h
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("dovetail-coordinator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.id, "id", defaultID(), "replica ID, stable across restarts (pod name; default $POD_NAME or host name)")
	fs.StringVar(&o.dataDir, "data-dir", "/var/lib/dovetail-coordinator", "Raft WAL and snapshots (a persistent volume)")
	fs.StringVar(&o.raftAddr, "raft-addr", ":7000", "Raft listen address")
	fs.StringVar(&o.raftAdvertise, "raft-advertise", "", "Raft address peers dial (default: this replica's entry in the peer list)")
	fs.StringVar(&o.httpAddr, "http-addr", ":8080", "API listen address (/v1/..., /v1/reports, /healthz, /readyz, /metrics)")
	fs.StringVar(&o.peers, "peers", "", "explicit peer list id=raftHost:port|httpHost:port,... (instead of --bootstrap-expect)")
	fs.IntVar(&o.bootstrapExpect, "bootstrap-expect", 0, "replica count of the StatefulSet; peers are <set>-<i>.<peer-domain>")
	fs.StringVar(&o.peerDomain, "peer-domain", "", "headless service domain, e.g. dovetail-coordinator.kube-system.svc.cluster.local")
	fs.StringVar(&o.tlsCA, "raft-tls-ca", "", "CA bundle that signs every replica's Raft certificate")
	fs.StringVar(&o.tlsCert, "raft-tls-cert", "", "this replica's Raft certificate (client and server)")
	fs.StringVar(&o.tlsKey, "raft-tls-key", "", "key of --raft-tls-cert")
	fs.StringVar(&o.tlsName, "raft-tls-server-name", "", "name every peer certificate must carry (default: the dialled host)")
	fs.BoolVar(&o.insecureRaft, "insecure-raft", false, "allow plain-TCP Raft (development and tests only)")
	fs.StringVar(&o.apiCert, "api-tls-cert", "", "API serving certificate (PEM; must carry the URI SAN of --coordinator-identity); reloaded when the file changes")
	fs.StringVar(&o.apiKey, "api-tls-key", "", "key of --api-tls-cert")
	fs.StringVar(&o.apiCA, "api-tls-ca", "", "CA bundle that signs every replica's API certificate (followers forward to the leader over TLS)")
	fs.StringVar(&o.apiIdentity, "coordinator-identity", "", "URI SAN every coordinator API certificate carries (default spiffe://<cluster-name>/coordinator)")
	fs.BoolVar(&o.insecureAPI, "insecure-api", false, "serve the API over plain HTTP without authentication (development and tests only)")
	fs.BoolVar(&o.metricsOpen, "metrics-open", false, "serve /metrics without authentication (the rest of the API stays authorised)")
	fs.StringVar(&o.clusterName, "cluster-name", "", "cluster name, tagged on every instance")
	fs.StringVar(&o.region, "region", os.Getenv("AWS_REGION"), "AWS region")
	fs.StringVar(&o.attestAccount, "attest-account-id", "", "AWS account whose instances may report: turns on node attestation (every report signed by an agent key bound to an instance of this cluster)")
	fs.StringVar(&o.attestBundle, "attest-trust-bundle", "", "PEM file of extra certificates that sign identity documents (added to AWS's embedded ones; the EC2 simulator's in make dev)")
	fs.BoolVar(&o.attestBundleOnly, "attest-trust-bundle-only", false, "trust only --attest-trust-bundle, not AWS's embedded certificates")
	fs.BoolVar(&o.insecureReports, "insecure-reports", false, "accept unsigned reports from any process that reaches the API, without node attestation (development and tests only; implied by --insecure-api)")
	fs.StringVar(&o.ec2Endpoint, "ec2-endpoint", "", "EC2/SSM endpoint override (the EC2 simulator)")
	fs.DurationVar(&o.ec2CallTimeout, "ec2-call-timeout", 30*time.Second, "deadline of every AWS call, SDK retries included: a hung call fails, is counted in dovetail_cloudprovider_call_timeouts_total and logged instead of stalling the leader")
	fs.BoolVar(&o.awsStatic, "aws-static-test-credentials", false, "use fixed fake AWS credentials (the EC2 simulator)")
	fs.StringVar(&o.clusterEndpoint, "cluster-endpoint", "", "Kubernetes API endpoint for node user data")
	fs.StringVar(&o.clusterCA, "cluster-ca", "", "base64 cluster CA for node user data")
	fs.StringVar(&o.k8sVer, "kubernetes-version", "1.37", "Kubernetes minor version for AMI aliases")
	fs.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig (default: in-cluster)")
	fs.BoolVar(&o.noKube, "no-kube", false, "run without Kubernetes (no NodeClaims; launches from the API only)")
	fs.BoolVar(&o.noCloud, "no-cloud", false, "run without a cloud provider (replication and API only)")
	fs.StringVar(&o.gossipBind, "gossip-bind", ":7946", "memberlist bind address")
	fs.StringVar(&o.gossipAdvertise, "gossip-advertise", "", "memberlist advertise address")
	fs.StringVar(&o.gossipSeeds, "gossip-seeds", "", "comma-separated host:port of pool members to join")
	fs.StringVar(&o.gossipLabel, "gossip-label", "", "cluster label separating gossip pools (default: --cluster-name)")
	fs.StringVar(&o.gossipKey, "gossip-key-file", "", "gossip keyring: one base64 key per line, first is primary")
	fs.BoolVar(&o.gossipDev, "gossip-dev", false, "unencrypted gossip with fast local timings (development only)")
	fs.BoolVar(&o.noGossip, "no-gossip", false, "do not join the gossip pool")
	fs.DurationVar(&o.leakGrace, "leak-grace", 5*time.Minute, "how long an instance no launch owns survives before it is terminated")
	fs.DurationVar(&o.nodeGrace, "node-grace", 2*time.Minute, "after a leader change, how long before nodes can be judged gone")
	fs.DurationVar(&o.orphanGrace, "orphan-claim-grace", 2*time.Minute, "how long a NodeClaim with no launch intent survives")
	fs.DurationVar(&o.interval, "reconcile-interval", 10*time.Second, "launcher reconcile period")
	fs.DurationVar(&o.deadServer, "dead-server-timeout", 2*time.Minute, "failed time before an unexpected Raft server is removed")
	// 400 ms (lease too), not raft's 1 s: a killed leader is replaced
	// (new leader committing writes) in p50 0.89-0.92 s / p90 1.08-1.16 s,
	// 3 replicas on a 2-core box with a CPU hog per core (test/failover);
	// 500 ms gave p50 0.93-1.13 s, 300 ms 0.75 s. Unprovoked elections in a
	// steady run under the same hogs: 0 in 120 s at load 10 for 400 and
	// 500 ms; at load 26-30 (13x oversubscribed) 400 ms 1 in 3 min, 500 ms
	// 2, 350 ms 4 in 2 min, 300 ms 5, so 400 ms is the lowest that is no
	// flakier than 500 ms. The lease equals the heartbeat: a shorter one made
	// loaded leaders step down on their own.
	fs.DurationVar(&o.heartbeat, "raft-heartbeat-timeout", 400*time.Millisecond, "Raft heartbeat timeout")
	fs.DurationVar(&o.election, "raft-election-timeout", 400*time.Millisecond, "Raft election timeout")
	fs.DurationVar(&o.lease, "raft-leader-lease-timeout", 0, "how long a leader keeps leading without hearing from a quorum; at most --raft-heartbeat-timeout (0: equal to it)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "json", "json, text, journal (systemd priorities) or auto (journal under systemd, else text)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.BoolVar(&o.raftRejoin, "raft-rejoin", false, "with an empty data dir, wait for the leader to replicate instead of bootstrapping (recovery of a lost or corrupt data dir)")
	fs.StringVar(&o.builtinPools, "builtin-nodepools", "none", "built-in NodePools to keep: general-purpose,system or none")
	fs.StringVar(&o.nodeRole, "node-role", "", "IAM role of the built-in EC2NodeClass")
	fs.DurationVar(&o.disruptionInterval, "disruption-interval", 0, "how often the disruption planner runs (0: its default)")
	fs.DurationVar(&o.nodeClassInterval, "nodeclass-interval", 0, "how often EC2NodeClass status (resolved AMIs, subnets, security groups) is refreshed (0: 1m)")
	fs.DurationVar(&o.validationDelay, "validation-delay", 0, "wait before a voluntary disruption is validated again and executed (0: its default)")
	fs.DurationVar(&o.provisioningIdleGap, "provisioning-idle-gap", 0, "a batch of pending pods closes after this idle gap (0: 1s)")
	fs.DurationVar(&o.provisioningMaxWindow, "provisioning-max-window", 0, "a batch of pending pods closes after at most this long (0: 10s)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: dovetail-coordinator [flags]\n\n"+
			"The Dovetail coordinator: one Raft replica of the control loop.\n\n"+
			"Every flag may be set in the environment as %s<FLAG> (e.g. %sDATA_DIR).\n\nFlags:\n", envPrefix, envPrefix)
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, envPrefix, args, os.LookupEnv, stderr); err != nil {
		return flagenv.ExitCode(err)
	}
	if o.showVersion {
		fmt.Fprintln(stdout, "dovetail-coordinator", version.String())
		return 0
	}
	log, err := systemd.NewLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 2
	}
	cfg, err := buildConfig(context.Background(), o, log)
	if err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := coordinator.Run(ctx, cfg); err != nil {
		log.Error("coordinator stopped", "err", err)
		return 1
	}
	log.Info("coordinator stopped")
	return 0
}

func port(addr string, def int) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return def
	}
	n, err := strconv.Atoi(p)
	if err != nil || n == 0 {
		return def
	}
	return n
}

// leaseTimeout is --raft-leader-lease-timeout, or the heartbeat timeout
// when unset: a lease of half the heartbeat (raft's ratio) made loaded
// leaders step down on their own, and a default tied to the heartbeat keeps
// --raft-heartbeat-timeout alone a valid setting.
func leaseTimeout(o options) time.Duration {
	if o.lease == 0 {
		return o.heartbeat
	}
	return o.lease
}

// checkRaftTimeouts applies raft's own constraints (raft.ValidateConfig) to
// the flags, so a bad combination is refused naming the flags at startup
// instead of failing inside raft.NewRaft with its field names.
func checkRaftTimeouts(o options) error {
	const floor = 5 * time.Millisecond
	lease := leaseTimeout(o)
	switch {
	case o.heartbeat < floor || o.election < floor || lease < floor:
		return fmt.Errorf("--raft-heartbeat-timeout (%v), --raft-election-timeout (%v) and --raft-leader-lease-timeout (%v) must be at least %v",
			o.heartbeat, o.election, lease, floor)
	case lease > o.heartbeat:
		return fmt.Errorf("--raft-leader-lease-timeout (%v) must not exceed --raft-heartbeat-timeout (%v)", lease, o.heartbeat)
	case o.election < o.heartbeat:
		return fmt.Errorf("--raft-election-timeout (%v) must be at least --raft-heartbeat-timeout (%v)", o.election, o.heartbeat)
	}
	return nil
}

func buildConfig(ctx context.Context, o options, log *slog.Logger) (coordinator.Config, error) {
	var cfg coordinator.Config
	if o.id == "" {
		return cfg, errors.New("--id is required")
	}
	if err := checkRaftTimeouts(o); err != nil {
		return cfg, err
	}
	if !o.noCloud && o.ec2CallTimeout <= 0 {
		return cfg, fmt.Errorf("--ec2-call-timeout (%v) must be positive: an AWS call without a deadline can stall the leader", o.ec2CallTimeout)
	}
	var peers []raftnode.Peer
	var err error
	switch {
	case o.peers != "" && o.bootstrapExpect > 0:
		return cfg, errors.New("use either --peers or --bootstrap-expect, not both")
	case o.peers != "":
		peers, err = raftnode.ParsePeers(o.peers)
	case o.bootstrapExpect > 0:
		peers, err = raftnode.StatefulSetPeers(o.id, o.bootstrapExpect, o.peerDomain, port(o.raftAddr, 7000), port(o.httpAddr, 8080))
	default:
		return cfg, errors.New("one of --peers or --bootstrap-expect is required")
	}
	if err != nil {
		return cfg, err
	}
	rc := raftnode.Config{
		ID: o.id, DataDir: o.dataDir, BindAddr: o.raftAddr, AdvertiseAddr: o.raftAdvertise, Peers: peers,
		HeartbeatTimeout: o.heartbeat, ElectionTimeout: o.election, LeaderLeaseTimeout: leaseTimeout(o), DeadServerTimeout: o.deadServer,
		Rejoin: o.raftRejoin,
	}
	tlsFiles := raftnode.TLSFiles{CAFile: o.tlsCA, CertFile: o.tlsCert, KeyFile: o.tlsKey, ServerName: o.tlsName}
	switch {
	case tlsFiles.Enabled():
		rc.ServerTLS, rc.ClientTLS, err = tlsFiles.Load(peers)
		if err != nil {
			return cfg, err
		}
	case !o.insecureRaft:
		return cfg, errors.New("raft needs mutual TLS (--raft-tls-ca, --raft-tls-cert, --raft-tls-key) or --insecure-raft for development")
	default:
		log.Warn("raft traffic is NOT encrypted (--insecure-raft)")
	}
	cfg = coordinator.Config{
		Raft: rc, HTTPAddr: o.httpAddr, NodeGrace: o.nodeGrace, Logger: log,
		Launcher: coordinator.LauncherOptions{Interval: o.interval, LeakGrace: o.leakGrace, OrphanClaimGrace: o.orphanGrace},
	}
	var kube client.Client
	if !o.noKube {
		rest, err := restConfig(o.kubeconfig)
		if err != nil {
			return cfg, err
		}
		kube, err = kubeclient.New(rest)
		if err != nil {
			return cfg, err
		}
		cfg.Claims = &launcher.KubeClaims{C: kube}
		events, err := kubernetes.NewForConfig(rest)
		if err != nil {
			return cfg, fmt.Errorf("kubernetes clientset for events: %w", err)
		}
		// Lives as long as the process: NodeClaim Events of launch failures.
		cfg.Events, _ = eventdedupe.KubeRecorder(events, "dovetail-launcher")
		if !o.insecureAPI {
			cs, err := kubernetes.NewForConfig(rest)
			if err != nil {
				return cfg, fmt.Errorf("kubernetes clientset: %w", err)
			}
			cfg.APIAuth, err = api.NewKubeAuth(api.KubeAuthConfig{Client: cs, Log: log})
			if err != nil {
				return cfg, err
			}
		}
	}
	if err := apiSecurity(o, &cfg, log); err != nil {
		return cfg, err
	}
	if !o.noCloud {
		if o.clusterName == "" || o.region == "" {
			return cfg, errors.New("--cluster-name and --region are required with a cloud (or pass --no-cloud)")
		}
		if kube == nil {
			return cfg, errors.New("launching needs Kubernetes for EC2NodeClasses (drop --no-kube or pass --no-cloud)")
		}
		// The replicated ICE cache is the provider's only one.
		ice := launcher.NewICEStore()
		cfg.Launcher.ICE = ice
		ec := ec2.Config{Region: o.region, Endpoint: o.ec2Endpoint, ClusterName: o.clusterName,
			ClusterEndpoint: o.clusterEndpoint, ClusterCA: o.clusterCA, KubernetesVersion: o.k8sVer, CallTimeout: o.ec2CallTimeout, Logger: log,
			Offerings: ice}
		if o.awsStatic {
			ec.Credentials = credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")
		}
		prov, err := ec2.New(ctx, ec)
		if err != nil {
			return cfg, fmt.Errorf("ec2 provider: %w", err)
		}
		cfg.Cloud = prov
	}
	if !o.noGossip {
		g := &gossip.Config{Name: o.id, Dev: o.gossipDev, Label: o.gossipLabel, Logger: log}
		if g.Label == "" {
			g.Label = o.clusterName
		}
		host, _, err := net.SplitHostPort(o.gossipBind)
		if err != nil {
			return cfg, fmt.Errorf("--gossip-bind: %w", err)
		}
		g.BindAddr, g.BindPort = host, port(o.gossipBind, 7946)
		if o.gossipAdvertise != "" {
			ah, _, err := net.SplitHostPort(o.gossipAdvertise)
			if err != nil {
				return cfg, fmt.Errorf("--gossip-advertise: %w", err)
			}
			g.AdvertiseAddr, g.AdvertisePort = ah, port(o.gossipAdvertise, g.BindPort)
		}
		for _, s := range strings.Split(o.gossipSeeds, ",") {
			if s = strings.TrimSpace(s); s != "" {
				g.Seeds = append(g.Seeds, s)
			}
		}
		if o.gossipKey != "" {
			keys, err := readKeys(o.gossipKey)
			if err != nil {
				return cfg, err
			}
			g.Keys = keys
		} else if !o.gossipDev {
			return cfg, errors.New("gossip needs --gossip-key-file outside --gossip-dev (or pass --no-gossip)")
		} else {
			log.Warn("gossip is NOT encrypted (--gossip-dev): anyone who reaches the gossip port can join the pool")
		}
		cfg.Gossip = g
	}
	att, err := attestConfig(o, log)
	if err != nil {
		return cfg, err
	}
	cfg.Attest = att
	// The explain endpoints are served by every replica and answer from the
	// disruption controller of the current leader term.
	explain := wiring.NewExplain()
	cfg.ExtraHandlers = explain.Handlers()
	cfg.Setup = func(rt *coordinator.Runtime) ([]leader.Named, error) { return leaderComponents(rt, explain) }
	return cfg, nil
}

// apiSecurity refuses an API without TLS or without authentication unless
// --insecure-api says so: the API steers the fleet (rollouts resume) and
// agents hand it reports, so plain HTTP is opt-in, never a default.
func apiSecurity(o options, cfg *coordinator.Config, log *slog.Logger) error {
	if o.insecureAPI {
		if o.apiCert != "" || o.apiKey != "" {
			return errors.New("--insecure-api and --api-tls-cert/--api-tls-key contradict each other")
		}
		cfg.APIAuth = nil
		log.Warn("API is plain HTTP and NOT authenticated (--insecure-api): anyone who reaches it can steer rollouts")
		return nil
	}
	if o.apiCert == "" || o.apiKey == "" || o.apiCA == "" {
		return errors.New("the API needs TLS: --api-tls-cert, --api-tls-key and --api-tls-ca (the chart mounts them from the Secret apiTLS.secretName), or --insecure-api for development")
	}
	if cfg.APIAuth == nil {
		return errors.New("the API authenticates people with Kubernetes TokenReview and needs a Kubernetes client (drop --no-kube), or --insecure-api for development")
	}
	identity := o.apiIdentity
	if identity == "" {
		if o.clusterName == "" {
			return errors.New("--coordinator-identity or --cluster-name is needed to name the coordinators' certificate identity")
		}
		identity = tlsid.CoordinatorURI(o.clusterName)
	}
	cf, err := tlsid.NewCertFiles(o.apiCert, o.apiKey)
	if err != nil {
		return fmt.Errorf("--api-tls-cert: %w", err)
	}
	if err := checkIdentity(cf, identity); err != nil {
		return err
	}
	// Re-read when the file changes, like the key pair: a CA rotation
	// reaches a running replica's forwarding client.
	pool, err := tlsid.NewPoolFile(o.apiCA)
	if err != nil {
		return fmt.Errorf("--api-tls-ca: %w", err)
	}
	cfg.APITLS = cf.ServerTLSConfig()
	cfg.ForwardClient = api.NewForwardClient(tlsid.CoordinatorClientPool(pool, identity))
	cfg.MetricsOpen = o.metricsOpen
	log.Info("API over TLS with Kubernetes authentication", "identity", identity, "metricsOpen", o.metricsOpen)
	return nil
}

// checkIdentity fails start-up when the serving certificate lacks the
// identity clients require: every agent would refuse it.
func checkIdentity(cf *tlsid.CertFiles, identity string) error {
	c, err := cf.Get()
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return fmt.Errorf("--api-tls-cert: %w", err)
	}
	if !tlsid.HasURI(leaf, identity) {
		return fmt.Errorf("--api-tls-cert does not carry the URI SAN %s that agents and the CLI require (set --coordinator-identity to the one it carries)", identity)
	}
	return nil
}

// attestConfig is the report intake's trust: node attestation with
// --attest-account-id, refused without it unless an --insecure-* flag says
// unauthenticated reports are wanted (development and tests).
func attestConfig(o options, log *slog.Logger) (*api.AttestConfig, error) {
	if o.attestAccount == "" {
		switch {
		case o.attestBundle != "" || o.attestBundleOnly:
			return nil, errors.New("--attest-trust-bundle needs --attest-account-id")
		case !o.insecureReports && !o.insecureAPI:
			// Secure by default: an unauthenticated report intake lets any pod
			// terminate any node past every budget (issue 11's first finding).
			return nil, errors.New("reports need node attestation: --attest-account-id (the chart's attestation.accountId) and --region, or --insecure-reports for development")
		}
		log.Warn("reports are NOT authenticated: any process that reaches the API can speak for any node (pass --attest-account-id)")
		return nil, nil
	}
	if o.region == "" {
		return nil, errors.New("--attest-account-id needs --region")
	}
	// The bundle file is re-read when it changes (a signer's certificate
	// added or replaced without a restart; a broken file keeps the last good).
	trust, err := attest.TrustConfig{Region: o.region, BundleFile: o.attestBundle, ReplaceAWS: o.attestBundleOnly}.Watch()
	if err != nil {
		return nil, fmt.Errorf("node attestation: %w", err)
	}
	roots, _ := trust.Get()
	log.Info("node attestation on: reports must be signed by attested agents", "account", o.attestAccount, "region", o.region,
		"trustedCertificates", len(roots), "bundle", o.attestBundle)
	return &api.AttestConfig{Verifier: &attest.Verifier{Trust: trust, AccountID: o.attestAccount, Region: o.region}}, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster kubernetes config (or pass --kubeconfig / --no-kube): %w", err)
	}
	return c, nil
}

// readKeys reads a gossip keyring: one base64 key per line, primary first.
func readKeys(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read gossip keys: %w", err)
	}
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("gossip key on line %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("gossip key file %s holds no keys", path)
	}
	return keys, nil
}
