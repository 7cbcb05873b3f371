package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dovetail-dev/dovetail/devcluster"
)

func init() {
	var cfg devcluster.Config
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the local development cluster until Ctrl-C",
		Long: `Starts a real local Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok for fake nodes) with
Dovetail's CRDs, applies the example NodeClass and NodePools, starts the EC2
simulator, three dovetail-coordinator replicas (pending pods get EC2
instances that join as nodes) and a dovetail-agent per simulated instance
(spot notices in the simulator's IMDS drain the node), writes
.dev/kubeconfig and runs until Ctrl-C, then tears everything down.

--demo then plays a guided tour with progress lines: (a) a Deployment scaled
to 30 pods gets NodeClaims, instances and Ready nodes; (b) a spot instance is
interrupted, its agent drains it, the coordinator replaces it; (r) a spot
node gets a rebalance recommendation, the coordinator brings a replacement up
on another offering first, then drains the node; (c) scaled down, idle nodes
consolidate; (d) a new al2023 AMI release rolls the nodes
within the pool's budget. The cluster keeps running afterwards.

Needs the binaries built by 'make tools' in bin/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg.Out = cmd.OutOrStdout()
			return devcluster.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.StateDir, "state-dir", "", "where the kubeconfig, logs and cluster data go (default <repo>/.dev)")
	f.StringVar(&cfg.BinDir, "bin-dir", "", "control plane binaries (default $DOVETAIL_BIN or <repo>/bin)")
	f.StringSliceVar(&cfg.ExampleFiles, "apply", nil, "manifests to apply at start (default: packaging/examples/ec2nodeclass-default, nodepool-general-purpose and nodepool-system)")
	f.BoolVar(&cfg.NoExamples, "no-examples", false, "apply no example manifests")
	f.DurationVar(&cfg.SummaryEvery, "summary-every", 15*time.Second, "how often to print the nodes/pods summary (0 or less: never)")
	coordinators := f.Int("coordinators", 3, "dovetail-coordinator replicas to run (0: none)")
	noSim := f.Bool("no-ec2sim", false, "run without the EC2 simulator (coordinators then run with --no-cloud)")
	agents := f.Bool("agents", true, "run a dovetail-agent (in process) per simulated instance")
	prom := f.Bool("prometheus", true, "run the Prometheus server (bin/prometheus) scraping the coordinators on loopback and print its URL")
	noAgentGossip := f.Bool("no-agent-gossip", false, "keep the agents out of the gossip pool (they report to the coordinators' API only)")
	demo := f.Bool("demo", false, "play the guided demo once the cluster is up (needs the simulator, coordinators and agents)")
	demoSteps := f.String("demo-steps", "abrcd", "which demo steps to play: a scale up, b spot interruption, r spot rebalance recommendation, c consolidation, d AMI roll")
	demoReplicas := f.Int("demo-replicas", 30, "pods the demo scales up to")
	demoTimeout := f.Duration("demo-step-timeout", 4*time.Minute, "how long each demo step may take")
	cmd.PreRun = func(*cobra.Command, []string) {
		if cfg.SummaryEvery <= 0 {
			cfg.SummaryEvery = -1
		}
		cfg.Parts = []devcluster.Part{}
		if !*noSim {
			cfg.Parts = append(cfg.Parts, &devcluster.EC2Sim{})
		}
		if *coordinators > 0 {
			c := &devcluster.Coordinators{Replicas: *coordinators}
			if *demo {
				c.Env = devcluster.DemoCoordinatorEnv
			}
			cfg.Parts = append(cfg.Parts, c)
		}
		if *agents && !*noSim {
			cfg.Parts = append(cfg.Parts, &devcluster.Agents{NoGossip: *noAgentGossip})
		}
		if *prom && *coordinators > 0 {
			cfg.Parts = append(cfg.Parts, &devcluster.Prometheus{})
		}
		if *demo {
			cfg.Demo = &devcluster.Demo{Steps: *demoSteps, Replicas: *demoReplicas, StepTimeout: *demoTimeout}
		}
	}
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if *demo && (*noSim || *coordinators == 0 || !*agents) {
			return errors.New("--demo needs the EC2 simulator, coordinators and agents")
		}
		c.PreRun(c, args)
		return nil
	}
	rootCmd.AddCommand(cmd)
}
