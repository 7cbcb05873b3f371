// Package devcluster runs Dovetail's local development cluster: the real
// local control plane (package controlplane) with Dovetail's CRDs, the example
// NodeClass and NodePools applied, and — as they are delivered — the parts
// that make it an auto-mode cluster: the EC2 simulator, coordinator replicas
// and an agent per simulated node. It shows progress and a periodic summary,
// runs until its context ends, then tears everything down.
//
// Parts join through the Part interface; Run starts them in order after the
// control plane and stops them in reverse.
package devcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/rest"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
)

// Config configures Run. The zero value runs the default dev cluster.
type Config struct {
	// RepoDir is the repository root. Default: found from the working dir.
	RepoDir string
	// StateDir holds the kubeconfig, component logs and the lock. Default
	// <repo>/.dev (git-ignored).
	StateDir string
	// BinDir holds the control plane binaries. Default <repo>/bin.
	BinDir string
	// ExampleFiles are applied after the CRDs. Default: DefaultExamples
	// found under <repo>/packaging/examples. NoExamples turns this off.
	ExampleFiles []string
	NoExamples   bool
	// Parts join after the control plane, in order. Default: DefaultParts().
	Parts []Part
	// Out receives progress for the user. Default os.Stdout.
	Out io.Writer
	// SummaryEvery is how often a one-line nodes/pods summary is printed
	// (also printed whenever it changes). Default 15 s; negative disables.
	SummaryEvery time.Duration
	// Ready, if set, is called once everything is up (tests use it).
	Ready func(*Cluster)
	// Demo, if set, runs once everything is up (`dovetail dev --demo`); the
	// summary line stays quiet while it runs, and the cluster keeps running
	// after it.
	Demo *Demo
	// DemoDone, if set, is called when the demo has finished (tests stop
	// the cluster with it).
	DemoDone func()
}

// Cluster is what the running parts share.
type Cluster struct {
	ControlPlane *controlplane.ControlPlane
	RESTConfig   *rest.Config
	// Kubeconfig is the user-facing copy (<state>/kubeconfig).
	Kubeconfig string
	RepoDir    string
	StateDir   string
	Log        *slog.Logger
	// Out is the user's terminal: parts print their own progress lines here.
	Out io.Writer
	// EC2Endpoint is the simulator's URL once the ec2sim part started ("" otherwise).
	EC2Endpoint string
	// EC2Region is the simulator's region.
	EC2Region string
	// Sim is the in-process simulator once the ec2sim part started (nil
	// otherwise): the agents part watches its instances, the demo drives it.
	Sim *ec2sim.Sim
	// CoordinatorAddrs are the replicas' API addresses (host:port) and
	// GossipSeeds their memberlist addresses, once the coordinators started.
	CoordinatorAddrs []string
	GossipSeeds      []string
	// GossipLabel is the coordinators' gossip label (their cluster name).
	GossipLabel string
	// GossipKeys is the pool's keyring (generated under <state>/pki).
	GossipKeys [][]byte
	// CoordinatorCA is the PEM file of the CA that signs the coordinators'
	// certificates and CoordinatorTLS how clients verify them (nil: the
	// coordinators serve plain HTTP).
	CoordinatorCA  string
	CoordinatorTLS *tls.Config
	// APIToken is a Kubernetes token bound to dovetail-admin (also in the
	// user's kubeconfig, for the dovetail CLI).
	APIToken string
}

// Part is one piece of the dev cluster beyond the control plane.
type Part interface {
	// Name is shown in progress lines.
	Name() string
	// Start brings the part up and returns once it is usable. It may set
	// fields of c for later parts (the simulator sets EC2Endpoint). ctx
	// lives as long as the cluster.
	Start(ctx context.Context, c *Cluster) error
	// Stop tears it down; called in reverse start order.
	Stop()
}

// Run starts the dev cluster and blocks until ctx is done or a component
// dies, then tears everything down. The error is nil after a clean Ctrl-C.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	p := printer{w: cfg.Out}
	started := time.Now()

	unlock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return err
	}
	defer unlock()

	logFile, err := os.OpenFile(filepath.Join(cfg.StateDir, "dev.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("open dev log: %w", err)
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, nil))

	if err := controlplane.BinariesPresent(cfg.BinDir); err != nil {
		return err
	}
	p.step("starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
	cpDir := filepath.Join(cfg.StateDir, "cluster")
	cp, err := controlplane.Start(ctx, controlplane.Options{
		BinDir: cfg.BinDir,
		CRDDir: filepath.Join(cfg.RepoDir, "packaging", "crds"),
		Dir:    cpDir,
		Log:    progressWriter{p: p},
	})
	if err != nil {
		if ctx.Err() != nil {
			p.step("interrupted while starting; nothing left running")
			return nil
		}
		return fmt.Errorf("start control plane: %w", err)
	}
	defer func() {
		p.step("stopping the control plane")
		cp.Stop()
	}()

	cl := &Cluster{
		ControlPlane: cp,
		RESTConfig:   cp.RESTConfig,
		Kubeconfig:   filepath.Join(cfg.StateDir, "kubeconfig"),
		RepoDir:      cfg.RepoDir,
		StateDir:     cfg.StateDir,
		Log:          log,
		Out:          cfg.Out,
	}
	if err := cp.WriteKubeconfig(cl.Kubeconfig); err != nil {
		return err
	}
	defer os.Remove(cl.Kubeconfig) // a kubeconfig pointing at a dead port only confuses

	if !cfg.NoExamples && len(cfg.ExampleFiles) > 0 {
		n, err := applyExamples(ctx, cp.RESTConfig, cfg.ExampleFiles)
		if err != nil {
			return err
		}
		p.ok(fmt.Sprintf("applied %d example objects from %s", n, relPaths(cfg.RepoDir, cfg.ExampleFiles)))
	}

	// People reach the coordinator API with a Kubernetes token RBAC
	// authorises, in the dev cluster as anywhere.
	tok, err := setupAccess(ctx, cl)
	if err != nil {
		return fmt.Errorf("set up API access: %w", err)
	}
	cl.APIToken = tok

	var running []Part
	defer func() {
		for i := len(running) - 1; i >= 0; i-- {
			p.step("stopping " + running[i].Name())
			running[i].Stop()
		}
	}()
	for _, part := range cfg.Parts {
		p.step("starting " + part.Name())
		if err := part.Start(ctx, cl); err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C while starting: tear down quietly
			}
			return fmt.Errorf("start %s: %w", part.Name(), err)
		}
		running = append(running, part)
		p.ok(part.Name() + " ready")
	}

	p.ready(cl, cfg, time.Since(started))
	if cfg.Ready != nil {
		cfg.Ready(cl)
	}

	demoDone := make(chan struct{})
	var demoRunning atomic.Bool
	if cfg.Demo != nil {
		demoCtx, demoCancel := context.WithCancel(ctx)
		// Runs before the parts stop (defers run last-in first-out).
		defer func() { demoCancel(); <-demoDone }()
		demoRunning.Store(true)
		go func() {
			defer close(demoDone)
			defer demoRunning.Store(false)
			if err := cfg.Demo.Run(demoCtx, cl); err != nil && demoCtx.Err() == nil {
				p.line("  ! demo: " + err.Error())
			}
			if cfg.DemoDone != nil {
				cfg.DemoDone()
			}
		}()
	} else {
		close(demoDone)
	}

	sum, err := newSummarizer(cp.RESTConfig)
	if err != nil {
		return err
	}
	var tick <-chan time.Time
	if cfg.SummaryEvery > 0 {
		t := time.NewTicker(cfg.SummaryEvery)
		defer t.Stop()
		tick = t.C
	}
	last, lastPrinted := "", time.Time{}
	for {
		select {
		case <-ctx.Done():
			p.line("")
			p.step("shutting down")
			return nil
		case <-cp.Failed():
			return fmt.Errorf("control plane failed: %w", cp.Err())
		case <-tick:
			if demoRunning.Load() {
				continue // the demo prints its own progress
			}
			s, err := sum.summary(ctx)
			if err != nil {
				if ctx.Err() != nil {
					continue
				}
				log.Warn("summary", "err", err)
				s = "summary unavailable: " + err.Error()
			}
			// Quiet when nothing changes, but show a heartbeat once a minute.
			if s != last || time.Since(lastPrinted) >= time.Minute {
				p.line(time.Now().Format("15:04:05") + "  " + s)
				last, lastPrinted = s, time.Now()
			}
		}
	}
}

func (cfg *Config) defaults() error {
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.RepoDir == "" {
		root, err := controlplane.RepoRoot()
		if err != nil {
			return fmt.Errorf("dev cluster: %w (run it from the Dovetail repository)", err)
		}
		cfg.RepoDir = root
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(cfg.RepoDir, ".dev")
	}
	if cfg.BinDir == "" {
		cfg.BinDir = os.Getenv("DOVETAIL_BIN")
	}
	if cfg.BinDir == "" {
		cfg.BinDir = filepath.Join(cfg.RepoDir, "bin")
	}
	if cfg.SummaryEvery == 0 {
		cfg.SummaryEvery = 15 * time.Second
	}
	if cfg.ExampleFiles == nil && !cfg.NoExamples {
		files, err := DefaultExamples(filepath.Join(cfg.RepoDir, "packaging", "examples"))
		if err != nil {
			return err
		}
		cfg.ExampleFiles = files
	}
	if cfg.Parts == nil {
		cfg.Parts = DefaultParts()
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	return nil
}

// lockStateDir makes a second `dovetail dev` on the same repo fail fast
// instead of wiping the first one's state dir under it.
func lockStateDir(dir string) (func(), error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another `dovetail dev` is running on %s (pid %s); stop it first",
				dir, strings.TrimSpace(string(pid)))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func relPaths(base string, files []string) string {
	out := make([]string, 0, len(files))
	for _, f := range files {
		if r, err := filepath.Rel(base, f); err == nil {
			f = r
		}
		out = append(out, f)
	}
	return strings.Join(out, ", ")
}
