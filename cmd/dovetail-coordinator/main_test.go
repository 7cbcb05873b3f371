package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
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
		noKube: true, noCloud: true, noGossip: true}
	ctx := context.Background()

	o := base
	if _, err := buildConfig(ctx, o, quiet); err == nil || !strings.Contains(err.Error(), "--peers or --bootstrap-expect") {
		t.Fatalf("no peers: %v", err)
	}
	o.bootstrapExpect, o.peerDomain = 3, "dc.kube-system.svc.cluster.local"
	if _, err := buildConfig(ctx, o, quiet); err == nil || !strings.Contains(err.Error(), "mutual TLS") {
		t.Fatalf("raft without TLS accepted: %v", err)
	}
	o.insecureRaft = true
	cfg, err := buildConfig(ctx, o, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Raft.Peers) != 3 || cfg.Raft.Peers[2].RaftAddr != "dovetail-coordinator-2.dc.kube-system.svc.cluster.local:7000" ||
		cfg.Raft.Peers[0].HTTPAddr != "dovetail-coordinator-0.dc.kube-system.svc.cluster.local:8080" {
		t.Fatalf("derived peers = %+v", cfg.Raft.Peers)
	}
	if cfg.Cloud != nil || cfg.Claims != nil || cfg.Gossip != nil {
		t.Fatal("--no-cloud/--no-kube/--no-gossip ignored")
	}
	o.peers = "a=h:1"
	if _, err := buildConfig(ctx, o, quiet); err == nil {
		t.Fatal("--peers with --bootstrap-expect accepted")
	}
	o = base
	o.insecureRaft, o.peers, o.noGossip = true, "a=h:1", false
	if _, err := buildConfig(ctx, o, quiet); err == nil || !strings.Contains(err.Error(), "gossip-key-file") {
		t.Fatalf("unencrypted gossip accepted: %v", err)
	}
	o.noCloud = false
	o.noGossip = true
	if _, err := buildConfig(ctx, o, quiet); err == nil {
		t.Fatal("cloud without cluster name and region accepted")
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	t.Setenv("DOVETAIL_COORDINATOR_LOG_LEVEL", "bogus")
	var out, errb bytes.Buffer
	if code := run([]string{"--no-kube"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "bogus") {
		t.Fatalf("env flag not applied: %d %q", code, errb.String())
	}
}
