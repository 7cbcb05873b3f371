package main

import (
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
simulator and three dovetail-coordinator replicas (pending pods get EC2
instances that join as nodes), writes .dev/kubeconfig and runs until Ctrl-C,
then tears everything down.

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
	cmd.PreRun = func(*cobra.Command, []string) {
		if cfg.SummaryEvery <= 0 {
			cfg.SummaryEvery = -1
		}
		cfg.Parts = []devcluster.Part{}
		if !*noSim {
			cfg.Parts = append(cfg.Parts, &devcluster.EC2Sim{})
		}
		if *coordinators > 0 {
			cfg.Parts = append(cfg.Parts, &devcluster.Coordinators{Replicas: *coordinators})
		}
	}
	rootCmd.AddCommand(cmd)
}
