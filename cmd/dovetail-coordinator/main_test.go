package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/tlsid"
)

func TestVersionAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "dovetail-coordinator ") {
		t.Fatalf("--version: %d %q", code, out.String())
	}
	errb.Reset()
	if code := run([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "DOVETAIL_COORDINATOR_") {
		t.Fatalf("--help: %d %q", code, errb.String())
	}
	if code := run([]string{"--no-such-flag"}, &out, &errb); code != 2 {
		t.Fatalf("bad flag exit %d", code)
	}
}

func TestBuildConfig(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := options{id: "dovetail-coordinator-1", dataDir: "/tmp/x", raftAddr: ":7000", httpAddr: ":8080", gossipBind: ":7946",
		noKube: true, noCloud: true, noGossip: true, heartbeat: 300 * time.Millisecond, election: 300 * time.Millisecond}
	ctx := context.Background()

	for _, tc := range []struct {
		heartbeat, election, lease time.Duration
		want                       string
	}{
		{300 * time.Millisecond, 300 * time.Millisecond, 400 * time.Millisecond, "--raft-leader-lease-timeout (400ms) must not exceed --raft-heartbeat-timeout (300ms)"},
		{300 * time.Millisecond, 200 * time.Millisecond, 0, "--raft-election-timeout (200ms) must be at least --raft-heartbeat-timeout"},
		{time.Millisecond, time.Second, 0, "must be at least 5ms"},
		{0, 0, 0, "must be at least 5ms"},
	} {
		o := base
		o.heartbeat, o.election, o.lease = tc.heartbeat, tc.election, tc.lease
		if _, err := buildConfig(ctx, o, quiet); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("heartbeat %v election %v lease %v: %v, want %q", tc.heartbeat, tc.election, tc.lease, err, tc.want)
		}
	}

	o := base
	if _, err := buildConfig(ctx, o, quiet); err == nil || !strings.Contains(err.Error(), "--peers or --bootstrap-expect") {
		t.Fatalf("no peers: %v", err)
	}
	o.bootstrapExpect, o.peerDomain = 3, "dc.kube-system.svc.cluster.local"
	if _, err := buildConfig(ctx, o, quiet); err == nil || !strings.Contains(err.Error(), "mutual TLS") {
		t.Fatalf("raft without TLS accepted: %v", err)
	}
	o.insecureRaft = true
	if _, err := buildConfig(ctx, o, quiet); err == nil || !strings.Contains(err.Error(), "--api-tls-cert") ||
		!strings.Contains(err.Error(), "--insecure-api") {
		t.Fatalf("plain-HTTP API accepted: %v", err)
	}
	dir := t.TempDir()
	ca, err := tlsid.NewCA("test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caPath, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(tlsid.Leaf{CommonName: "impostor", URIs: []string{"spiffe://c/node/n1"}, Server: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	o.apiCert, o.apiKey, _ = kp.Write(dir, "api")
	o.apiCA, o.clusterName = caPath, "c"
	if _, err := buildConfig(ctx, o, quiet); err == nil || !strings.Contains(err.Error(), "Kubernetes client") {
		t.Fatalf("API without a Kubernetes client for TokenReview accepted: %v", err)
	}
	if err := checkIdentity(mustCertFiles(t, o.apiCert, o.apiKey), tlsid.CoordinatorURI("c")); err == nil ||
		!strings.Contains(err.Error(), "spiffe://c/coordinator") {
		t.Fatalf("certificate without the coordinator URI SAN accepted: %v", err)
	}
	o.apiCert, o.apiKey, o.apiCA = "", "", ""
	o.insecureAPI = true
	cfg, err := buildConfig(ctx, o, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Raft.Peers) != 3 || cfg.Raft.Peers[2].RaftAddr != "dovetail-coordinator-2.dc.kube-system.svc.cluster.local:7000" ||
		cfg.Raft.Peers[0].HTTPAddr != "dovetail-coordinator-0.dc.kube-system.svc.cluster.local:8080" {
		t.Fatalf("derived peers = %+v", cfg.Raft.Peers)
	}
	if cfg.Raft.HeartbeatTimeout != 300*time.Millisecond || cfg.Raft.LeaderLeaseTimeout != 300*time.Millisecond {
		t.Fatalf("raft timeouts not passed on: %+v", cfg.Raft)
	}
	if cfg.Cloud != nil || cfg.Claims != nil || cfg.Gossip != nil {
		t.Fatal("--no-cloud/--no-kube/--no-gossip ignored")
	}
	o.peers = "a=h:1"
	if _, err := buildConfig(ctx, o, quiet); err == nil {
		t.Fatal("--peers with --bootstrap-expect accepted")
	}
	o = base
	o.insecureRaft, o.insecureAPI, o.peers, o.noGossip = true, true, "a=h:1", false
	if _, err := buildConfig(ctx, o, quiet); err == nil || !strings.Contains(err.Error(), "gossip-key-file") {
		t.Fatalf("unencrypted gossip accepted: %v", err)
	}
	o.noCloud = false
	o.noGossip = true
	if _, err := buildConfig(ctx, o, quiet); err == nil || !strings.Contains(err.Error(), "--ec2-call-timeout") {
		t.Fatalf("cloud without an AWS call deadline accepted: %v", err)
	}
	o.ec2CallTimeout = 30 * time.Second
	if _, err := buildConfig(ctx, o, quiet); err == nil {
		t.Fatal("cloud without cluster name and region accepted")
	}
}

func mustCertFiles(t *testing.T, cert, key string) *tlsid.CertFiles {
	t.Helper()
	cf, err := tlsid.NewCertFiles(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cf
}

func TestEnvironmentSetsFlags(t *testing.T) {
	t.Setenv("DOVETAIL_COORDINATOR_LOG_LEVEL", "bogus")
	var out, errb bytes.Buffer
	if code := run([]string{"--no-kube"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "bogus") {
		t.Fatalf("env flag not applied: %d %q", code, errb.String())
	}
}

// TestReportsNeedAttestationByDefault: without --attest-account-id the
// coordinator refuses to start unless an --insecure-* flag asks for an
// unauthenticated report intake.
func TestReportsNeedAttestationByDefault(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := attestConfig(options{}, quiet); err == nil || !strings.Contains(err.Error(), "--attest-account-id") ||
		!strings.Contains(err.Error(), "--insecure-reports") {
		t.Fatalf("unauthenticated reports accepted by default: %v", err)
	}
	for _, o := range []options{{insecureReports: true}, {insecureAPI: true}} {
		if a, err := attestConfig(o, quiet); err != nil || a != nil {
			t.Fatalf("%+v: %v, %v", o, a, err)
		}
	}
	if _, err := attestConfig(options{attestAccount: "123456789012"}, quiet); err == nil || !strings.Contains(err.Error(), "--region") {
		t.Fatalf("attestation without a region: %v", err)
	}
	a, err := attestConfig(options{attestAccount: "123456789012", region: "us-east-1"}, quiet)
	if err != nil || a == nil || a.Verifier.AccountID != "123456789012" || a.Verifier.Trust == nil {
		t.Fatalf("attestation with AWS's certificates: %+v, %v", a, err)
	}
	// The roots are the watched trust (re-read when a bundle file changes).
	if roots, err := a.Verifier.Trust.Get(); err != nil || len(roots) != 2 {
		t.Fatalf("AWS's us-east-1 certificates: %d, %v", len(roots), err)
	}
}
