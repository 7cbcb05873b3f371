package devcluster

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dovetail-dev/dovetail/controlplane"
)

// The replicas get one consistent peer list and the simulator endpoint, and
// a replica that dies at start fails the part with its log.
func TestCoordinatorsFlagsAndStartFailure(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-coordinator")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"args: $*\"\necho 'raft: cannot bind' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cpDir := filepath.Join(dir, "cluster")
	if err := os.MkdirAll(filepath.Join(cpDir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	cl := &Cluster{
		ControlPlane: &controlplane.ControlPlane{Dir: cpDir, Kubeconfig: filepath.Join(cpDir, "kubeconfig"),
			APIServerURL: "https://127.0.0.1:1", CACertPEM: []byte("ca")},
		StateDir:    dir,
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Out:         &bytes.Buffer{},
		EC2Endpoint: "http://127.0.0.1:2",
		EC2Region:   "us-east-1",
	}
	c := &Coordinators{Binary: bin}
	err := c.Start(context.Background(), cl)
	c.Stop() // waits for every replica, so their logs are complete
	if err == nil || !strings.Contains(err.Error(), "raft: cannot bind") {
		t.Fatalf("want the replica's failure with its log, got %v", err)
	}
	if len(c.HTTPAddrs) != 3 || len(c.GossipAddrs) != 3 {
		t.Fatalf("addresses: %v %v", c.HTTPAddrs, c.GossipAddrs)
	}
	peerRE := regexp.MustCompile(`--peers=(\S+)`)
	var peerLists []string
	for i := range 3 {
		log, err := os.ReadFile(filepath.Join(cpDir, "logs", "coordinator-"+strconv.Itoa(i)+".log"))
		if err != nil {
			t.Fatal(err)
		}
		m := peerRE.FindSubmatch(log)
		if m == nil {
			t.Fatalf("replica %d has no --peers:\n%s", i, log)
		}
		peerLists = append(peerLists, string(m[1]))
		for _, want := range []string{"--id=coordinator-" + strconv.Itoa(i), "--ec2-endpoint=http://127.0.0.1:2", "--region=us-east-1", "--raft-tls-server-name=dovetail-coordinator-raft", "--gossip-key-file="} {
			if !bytes.Contains(log, []byte(want)) {
				t.Errorf("replica %d lacks %s:\n%s", i, want, log)
			}
		}
	}
	if peerLists[0] != peerLists[1] || peerLists[1] != peerLists[2] {
		t.Errorf("replicas disagree on peers: %v", peerLists)
	}
	if n := strings.Count(peerLists[0], "coordinator-"); n != 3 {
		t.Errorf("peer list %q has %d members", peerLists[0], n)
	}
}
