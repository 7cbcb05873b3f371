package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dovetail-dev/dovetail/health"
)

// healthOutput is what `dovetail health -o json` prints.
type healthOutput struct {
	Overall    health.State              `json:"overall"`
	Checks     []health.Result           `json:"checks"`
	Conditions []health.ConditionVerdict `json:"conditions"`
}

func init() {
	var env health.Env
	var output string
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Run the node health checks here and print the results",
		Long: "Runs the same checks as dovetail-agent on this machine (kubelet, containerd, disks,\n" +
			"memory, PIDs, kernel log, network, clock, GPUs) and prints each check's state\n" +
			"(ok, degraded, failed, unknown) with its reason and the NodeCondition it feeds.\n" +
			"Exits non-zero when a check failed. Some checks need root (kernel log, containerd).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := health.NewRunner(health.DefaultChecks(env), "")
			results := r.Run(cmd.Context())
			out := healthOutput{Overall: health.Overall(results), Checks: results, Conditions: health.Summarize(results)}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			case "table", "":
				printHealthTable(cmd.OutOrStdout(), out)
			default:
				return fmt.Errorf("-o %q: want table or json", output)
			}
			if out.Overall == health.StateFailed {
				return fmt.Errorf("node unhealthy: %d checks failed", countState(results, health.StateFailed))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "table", "table or json")
	f.StringVar(&env.Root, "root", "/", "filesystem root to read /proc, /sys, /etc and /dev/kmsg under")
	f.StringVar(&env.KubeletHealthz, "kubelet-healthz", "http://127.0.0.1:10248/healthz", "kubelet healthz URL")
	f.StringVar(&env.ContainerdSocket, "containerd-socket", "/run/containerd/containerd.sock", "containerd socket, relative to --root")
	f.StringVar(&env.DNSName, "dns-check-name", "", "a name that must resolve (default: only require a nameserver)")
	f.IntVar(&env.ExpectedGPUs, "expected-gpus", 0, "NVIDIA GPUs expected (0: detect)")
	f.DurationVar(&env.KernelLogWindow, "kernel-log-window", 10*time.Minute, "how far back kernel-log problems count")
	rootCmd.AddCommand(cmd)
}

func countState(rs []health.Result, s health.State) int {
	n := 0
	for _, r := range rs {
		if r.State == s && !r.NotApplicable {
			n++
		}
	}
	return n
}

func printHealthTable(w io.Writer, out healthOutput) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATE\tCONDITION\tREASON\tMESSAGE")
	for _, r := range out.Checks {
		state := string(r.State)
		if r.NotApplicable {
			state = "n/a"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, state, r.Condition, r.Reason, oneLine(r.Message, 100))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONDITION\tSTATUS\tREASON")
	for _, c := range out.Conditions {
		status := "True"
		if c.State == health.StateFailed {
			status = "False"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Type, status, c.Reason)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\noverall: %s\n", out.Overall)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}
