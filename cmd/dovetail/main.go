// Command dovetail is the Dovetail CLI: node health, cluster and rollout
// status, offline simulation and the local development cluster.
//
// Each subcommand lives in its own file and registers itself on rootCmd in
// an init function, so subcommands can be added without touching this file.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/dovetail-dev/dovetail/version"
)

var rootCmd = &cobra.Command{
	Use:           "dovetail",
	Short:         "Dovetail: self-hosted auto mode for Kubernetes on EC2",
	Version:       version.String(),
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
