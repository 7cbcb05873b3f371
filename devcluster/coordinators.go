package devcluster

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dovetail-dev/dovetail/controlplane"
)

// Coordinators runs dovetail-coordinator replicas as subprocesses forming one
// Raft group on loopback, pointed at the dev cluster and, when the EC2Sim part
// ran before, at the simulator.
type Coordinators struct {
	// Replicas defaults to 3.
	Replicas int
	// Binary is a prebuilt dovetail-coordinator; default: built from
	// ./cmd/dovetail-coordinator into <state>/bin, so the dev cluster always
	// runs the code in the tree.
	Binary string
	// Env entries are added to each replica's environment, e.g. the
	// DOVETAIL_COORDINATOR_* interval knobs (see cmd/dovetail-coordinator).
	Env []string

	procs []*controlplane.Process
	tls   *tls.Config
	// HTTPAddrs are the replicas' API addresses (host:port), for `dovetail status --server`
	// and agents' --coordinators.
	HTTPAddrs []string
	// GossipAddrs are the replicas' memberlist addresses, for agents' --gossip-seeds.
	GossipAddrs []string
}

// clusterName is the dev cluster's name: the simulator's discovery tags and
// the coordinators' gossip label use it.
const clusterName = "dovetail-local"

// Name implements Part.
func (c *Coordinators) Name() string {
	return fmt.Sprintf("%d coordinator replicas", c.replicas())
}

func (c *Coordinators) replicas() int {
	if c.Replicas <= 0 {
		return 3
	}
	return c.Replicas
}

// Start implements Part.
func (c *Coordinators) Start(ctx context.Context, cl *Cluster) error {
	bin := c.Binary
	if bin == "" {
		bin = filepath.Join(cl.StateDir, "bin", "dovetail-coordinator")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/dovetail-coordinator")
		build.Dir = cl.RepoDir
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("build dovetail-coordinator: %w\n%s", err, out)
		}
	}
	n := c.replicas()
	ports, err := controlplane.FreePorts(3 * n)
	if err != nil {
		return err
	}
	type replica struct{ id, raft, http, gossip string }
	reps := make([]replica, n)
	var peers, seeds []string
	for i := range n {
		r := replica{
			id:     fmt.Sprintf("coordinator-%d", i),
			raft:   "127.0.0.1:" + strconv.Itoa(ports[3*i]),
			http:   "127.0.0.1:" + strconv.Itoa(ports[3*i+1]),
			gossip: "127.0.0.1:" + strconv.Itoa(ports[3*i+2]),
		}
		reps[i] = r
		peers = append(peers, r.id+"="+r.raft+"|"+r.http)
		seeds = append(seeds, r.gossip)
		c.HTTPAddrs = append(c.HTTPAddrs, r.http)
		c.GossipAddrs = append(c.GossipAddrs, r.gossip)
	}
	dataRoot := filepath.Join(cl.StateDir, "coordinators")
	// Raft state from an earlier run belongs to a cluster that no longer exists.
	if err := os.RemoveAll(dataRoot); err != nil {
		return fmt.Errorf("clean coordinator data: %w", err)
	}
	logDir := filepath.Join(cl.ControlPlane.Dir, "logs")
	// Node attestation on the simulator's signer: its certificate is the
	// one extra trust anchor, so the agents' reports take the path
	// production takes (AWS's certificates stay trusted too).
	var attestArgs []string
	if cl.Sim != nil {
		certPEM, err := cl.Sim.IdentityCertificatePEM()
		if err != nil {
			return fmt.Errorf("simulator identity certificate: %w", err)
		}
		bundle := filepath.Join(cl.StateDir, "ec2sim-identity.pem")
		if err := os.WriteFile(bundle, certPEM, 0o644); err != nil {
			return fmt.Errorf("write simulator identity certificate: %w", err)
		}
		attestArgs = []string{"--attest-account-id=" + cl.Sim.AccountID(), "--attest-trust-bundle=" + bundle}
	} else {
		// No simulator, no instances: nothing could attest, and the
		// coordinator refuses an unauthenticated intake unless told.
		attestArgs = []string{"--insecure-reports"}
	}
	pki, err := newDevPKI(cl.StateDir)
	if err != nil {
		return err
	}
	c.tls = pki.clientTLS()
	for _, r := range reps {
		secure, err := pki.replicaFlags(r.id)
		if err != nil {
			return err
		}
		args := []string{
			"--id=" + r.id,
			"--peers=" + strings.Join(peers, ","),
			"--raft-addr=" + r.raft,
			"--http-addr=" + r.http,
			"--gossip-bind=" + r.gossip,
			"--gossip-advertise=" + r.gossip,
			"--gossip-seeds=" + strings.Join(seeds, ","),
			"--gossip-dev",
			"--data-dir=" + filepath.Join(dataRoot, r.id),
			"--kubeconfig=" + cl.ControlPlane.Kubeconfig,
			"--cluster-name=" + clusterName,
			"--cluster-endpoint=" + cl.ControlPlane.APIServerURL,
			"--cluster-ca=" + base64.StdEncoding.EncodeToString(cl.ControlPlane.CACertPEM),
			"--log-format=text",
		}
		args = append(args, secure...)
		if cl.EC2Endpoint != "" {
			args = append(args, "--ec2-endpoint="+cl.EC2Endpoint, "--region="+cl.EC2Region, "--aws-static-test-credentials")
			args = append(args, attestArgs...)
		} else {
			args = append(args, "--no-cloud")
		}
		p, err := controlplane.StartProcess(r.id, bin, args, c.Env, filepath.Join(logDir, r.id+".log"))
		if err != nil {
			return err
		}
		c.procs = append(c.procs, p)
	}
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	cl.CoordinatorAddrs = append([]string(nil), c.HTTPAddrs...)
	cl.GossipSeeds = append([]string(nil), c.GossipAddrs...)
	cl.GossipLabel = clusterName
	cl.GossipKeys = pki.gossipKeys
	cl.CoordinatorCA, cl.CoordinatorTLS = pki.caFile, c.tls
	printer{w: cl.Out}.line("  · coordinator API on " + strings.Join(c.HTTPAddrs, ", ") + " (TLS, Kubernetes tokens)" +
		"; try: DOVETAIL_SERVER=" + c.HTTPAddrs[0] + " DOVETAIL_CA=" + relPath(cl.RepoDir, pki.caFile) +
		" KUBECONFIG=" + relPath(cl.RepoDir, cl.Kubeconfig) + " bin/dovetail status")
	return nil
}

// waitReady waits until every replica answers /readyz (it has joined Raft and
// knows a leader).
func (c *Coordinators) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = c.tls
	client := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	for i, addr := range c.HTTPAddrs {
		for {
			if err := c.procs[i].Err(); err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/readyz", nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("coordinator %s not ready: %w (log: %s)", addr, ctx.Err(), "see logs/coordinator-*.log")
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// Stop implements Part: all replicas at once, each given time to hand over
// leadership and close Raft cleanly.
func (c *Coordinators) Stop() {
	done := make(chan struct{})
	for _, p := range c.procs {
		go func() {
			p.Stop(10 * time.Second)
			done <- struct{}{}
		}()
	}
	for range c.procs {
		<-done
	}
}

func relPath(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}
