// Package dockertest checks the coordinator's packaging. The Docker test
// runs the coordinator as containers built FROM scratch (packaging/Dockerfile)
// on a Docker network, each replica its own host as far as Raft can tell, and
// kills, pauses and disconnects replicas; it is gated by DOVETAIL_DOCKER_TEST=1
// (it builds an image and takes about 30 s). The Helm chart's tests are in
// packaging/helm.
package dockertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/report"
)

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

type env struct {
	t       *testing.T
	net     string
	names   []string
	httpFor map[string]string
}

// refreshPort reads the host port Docker published for a replica's API
// (it changes when a container is restarted).
func (e *env) refreshPort(name string) {
	e.t.Helper()
	hostPort := docker(e.t, "port", name, "8080/tcp")
	e.httpFor[name] = strings.Split(hostPort, "\n")[0]
}

func (e *env) client(name string) *api.Client {
	c := api.NewClient(e.httpFor[name])
	c.HTTP.Timeout = 3 * time.Second
	return c
}

// leader polls the replicas (except skip) until they agree on a leader.
func (e *env) leader(skip ...string) string {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		votes := map[string]int{}
		asked := 0
		for _, n := range e.names {
			if contains(skip, n) {
				continue
			}
			asked++
			st, err := e.client(n).Status(context.Background())
			if err == nil && st.LeaderID != "" && !contains(skip, st.LeaderID) {
				votes[st.LeaderID]++
			}
		}
		for id, v := range votes {
			if v == asked {
				return id
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatal("replicas never agreed on a leader")
	return ""
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (e *env) report(via, id, node string) error {
	b, _ := json.Marshal(report.Report{ID: id, Kind: report.KindHealth, NodeName: node, InstanceID: id,
		ObservedAt: time.Now(), Checks: []report.CheckResult{{Name: "kubelet", State: "ok"}}})
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Post("http://"+e.httpFor[via]+report.Path, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("report via %s: %s", via, resp.Status)
	}
	return nil
}

func (e *env) reportEventually(id, node string, skip ...string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var last error
		for _, n := range e.names {
			if contains(skip, n) {
				continue
			}
			if last = e.report(n, id, node); last == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("report %s never accepted: %v", id, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// converged waits until every listed replica shows the node with instance want.
func (e *env) converged(node, want string, names ...string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range names {
		for {
			var got api.Node
			err := e.client(n).Get(context.Background(), api.PathNodes+"/"+node, &got)
			if err == nil && got.InstanceID == want {
				break
			}
			if time.Now().After(deadline) {
				e.t.Fatalf("%s never showed %s=%s (got %q, %v)", n, node, want, got.InstanceID, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func TestContainersSurviveKillPauseDisconnect(t *testing.T) {
	if os.Getenv("DOVETAIL_DOCKER_TEST") == "" {
		t.Skip("set DOVETAIL_DOCKER_TEST=1 to run the multi-host Docker fault test")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker not installed")
	}
	root := repoRoot(t)
	ctxDir := t.TempDir()
	build := exec.Command("go", "build", "-ldflags", "-s -w", "-o", filepath.Join(ctxDir, "dovetail-coordinator"), "./cmd/dovetail-coordinator")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "packaging", "Dockerfile"), filepath.Join(root, "packaging", "rootfs"), ctxDir).CombinedOutput(); err != nil {
		t.Fatalf("copy build context: %v\n%s", err, out)
	}
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1000000)
	image := "dovetail-coordinator:dockertest-" + suffix
	docker(t, "build", "-q", "-t", image, ctxDir)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })
	e := &env{t: t, net: "dovetail-dt-" + suffix, httpFor: map[string]string{}}
	docker(t, "network", "create", e.net)
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", e.net).Run() })
	for i := 0; i < 3; i++ {
		e.names = append(e.names, fmt.Sprintf("dc-%s-%d", suffix, i))
	}
	t.Cleanup(func() {
		for _, n := range e.names {
			_ = exec.Command("docker", "rm", "-f", "-v", n).Run()
		}
	})
	for _, n := range e.names {
		// The same command line for every replica; only the pod name differs,
		// as in a StatefulSet. --insecure-*: this checks the FROM-scratch
		// image and DNS peer discovery, with no API server (--no-kube) to
		// review tokens and no PKI mounted; the secure path of the same
		// binary is the chart's (packaging/helm TestCoordinatorRunsAsRendered)
		// and test/e2e's.
		docker(t, "run", "-d", "--name", n, "--hostname", n, "--network", e.net, "-e", "POD_NAME="+n,
			"-p", "127.0.0.1::8080", image,
			"--bootstrap-expect=3", "--no-kube", "--no-cloud", "--no-gossip", "--insecure-raft", "--insecure-api",
			"--raft-heartbeat-timeout=500ms", "--raft-election-timeout=500ms", "--log-format=text")
		e.refreshPort(n)
	}
	l := e.leader()
	t.Logf("cluster formed on its own; leader %s", l)
	e.reportEventually("i-1", "node-a")
	e.converged("node-a", "i-1", e.names...)

	// Kill the leader: the other two elect a new one and keep accepting.
	start := time.Now()
	docker(t, "kill", l)
	l2 := e.leader(l)
	t.Logf("killed leader %s; %s leads after %v", l, l2, time.Since(start).Round(time.Millisecond))
	e.reportEventually("i-2", "node-a", l)
	docker(t, "start", l) // restart with its volume: rejoins
	e.refreshPort(l)
	e.converged("node-a", "i-2", e.names...)

	// Pause a follower: writes go on; unpaused, it catches up.
	var follower string
	l = e.leader()
	for _, n := range e.names {
		if n != l {
			follower = n
		}
	}
	docker(t, "pause", follower)
	e.reportEventually("i-3", "node-a", follower)
	docker(t, "unpause", follower)
	e.converged("node-a", "i-3", e.names...)

	// Disconnect the leader from the network: the majority moves on; once
	// reconnected the old leader follows and converges.
	l = e.leader()
	docker(t, "network", "disconnect", e.net, l)
	l3 := e.leader(l)
	t.Logf("disconnected leader %s; %s leads", l, l3)
	e.reportEventually("i-4", "node-a", l)
	docker(t, "network", "connect", e.net, l)
	e.refreshPort(l)
	e.converged("node-a", "i-4", e.names...)
	final := e.leader()

	// SIGTERM on the leader: it hands leadership over before exiting.
	start = time.Now()
	docker(t, "stop", "-t", "20", final)
	l4 := e.leader(final)
	t.Logf("stopped leader %s gracefully; %s leads after %v", final, l4, time.Since(start).Round(time.Millisecond))
	logs, _ := exec.Command("docker", "logs", final).CombinedOutput()
	if !bytes.Contains(logs, []byte("leadership transfer on shutdown")) {
		t.Errorf("stopped leader did not transfer leadership; logs:\n%s", logs)
	}
}

func TestMain(m *testing.M) { os.Exit(controlplane.RunTests(m)) }
