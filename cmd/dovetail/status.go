package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
)

// The cluster-state commands talk to any coordinator replica: reads are
// served from the replica's replicated state (--consistent routes them
// through the leader).
func init() {
	for _, c := range []*cobra.Command{statusCmd(), nodesCmd(), launchesCmd(), rolloutsCmd()} {
		rootCmd.AddCommand(c)
	}
}

type serverFlags struct {
	server     string
	output     string
	consistent bool
	timeout    time.Duration
	conn       connFlags
}

func (f *serverFlags) add(cmd *cobra.Command) {
	def := os.Getenv("DOVETAIL_SERVER")
	if def == "" {
		def = "127.0.0.1:8080"
	}
	cmd.Flags().StringVar(&f.server, "server", def, "any coordinator replica, host:port or URL (env DOVETAIL_SERVER)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVar(&f.consistent, "consistent", false, "read through the leader after a Raft barrier")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "API request timeout")
	f.conn.add(cmd)
}

func (f *serverFlags) client() (*api.Client, error) { return f.conn.client(f.server) }

func (f *serverFlags) get(cmd *cobra.Command, path string, out any) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("--output %q: want text or json", f.output)
	}
	if f.consistent {
		if strings.Contains(path, "?") {
			path += "&consistent=1"
		} else {
			path += "?consistent=1"
		}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	c, err := f.client()
	if err != nil {
		return err
	}
	return c.Get(ctx, path, out)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func since(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func statusCmd() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the coordinator cluster: leader, term, replicas and state counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s api.Status
			if err := f.get(cmd, api.PathStatus, &s); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return printJSON(w, s)
			}
			fmt.Fprintf(w, "Answered by:   %s (%s)\n", s.Replica, s.State)
			fmt.Fprintf(w, "Leader:        %s (term %d, acting since %s)\n", dash(s.LeaderID), s.Term, since(s.EpochSince))
			fmt.Fprintf(w, "Raft index:    applied %d, commit %d\n", s.AppliedIndex, s.CommitIndex)
			grace := "no"
			if s.InGrace {
				grace = "yes (nodes are not judged gone yet)"
			}
			fmt.Fprintf(w, "Grace period:  %s\n", grace)
			fmt.Fprintf(w, "Launches:      %d open, %d total\n", s.OpenLaunches, s.Launches)
			fmt.Fprintf(w, "Nodes:         %d reporting, %d disrupting, %d rollouts, %d ICE entries\n\n", s.Nodes, s.Disruptions, s.Rollouts, s.ICE)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REPLICA\tADDRESS\tSUFFRAGE\tROLE")
			for _, sv := range s.Servers {
				role := "follower"
				if sv.Leader {
					role = "leader"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", sv.ID, sv.Address, sv.Suffrage, role)
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}

func nodesCmd() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List nodes with health, interruptions and disruptions as the coordinator knows them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var nodes []api.Node
			if err := f.get(cmd, api.PathNodes, &nodes); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return printJSON(w, nodes)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tINSTANCE\tNODEPOOL\tHEALTH\tINTERRUPTION\tDISRUPTION\tDRAIN\tLAST REPORT\tFAILING")
			for _, n := range nodes {
				health := dash(n.Health)
				if n.Replace {
					health += " (replace)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, dash(n.InstanceID), dash(n.NodePool), health,
					dash(n.Interruption), dash(n.Disruption), dash(n.Drain), since(n.LastReport), dash(strings.Join(n.Checks, ",")))
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}

func launchesCmd() *cobra.Command {
	var f serverFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "launches",
		Short: "List launch intents (open ones by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := api.PathLaunches
			if !all {
				path += "?open=1"
			}
			var l api.Launches
			if err := f.get(cmd, path, &l); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return printJSON(w, l)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODECLAIM\tNODEPOOL\tSTATE\tINSTANCE\tTYPE\tZONE\tCAPACITY\tTERM\tATTEMPTS\tAGE\tERROR")
			for _, in := range l.Intents {
				id, typ, zone, ct := "-", "-", "-", "-"
				if in.Instance != nil {
					id, typ, zone, ct = in.Instance.ID, in.Instance.InstanceType, in.Instance.Zone, in.Instance.CapacityType
				}
				errText := in.Error
				if len(errText) > 60 {
					errText = errText[:57] + "..."
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", in.NodeClaim, dash(in.NodePool), in.State,
					id, typ, zone, ct, in.Term, in.Attempts, since(in.CreatedAt), dash(errText))
			}
			if len(l.Intents) == 0 {
				fmt.Fprintln(tw, "(none)")
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&all, "all", "A", false, "include resolved launches")
	return cmd
}

func rolloutsCmd() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:     "rollouts",
		Aliases: []string{"rollout"},
		Short:   "Show AMI rollouts per NodePool",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r api.Rollouts
			if err := f.get(cmd, api.PathRollouts, &r); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return printJSON(w, r)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODEPOOL\tTARGET AMI\tSTATE\tDONE\tIN PROGRESS\tREMAINING\tBLOCKED\tUPDATED")
			for _, ro := range r.Rollouts {
				blocked := ro.BlockedReason
				if ro.Paused {
					blocked = "paused " + blocked
				}
				done, total, state := disruption.RolloutProgress(*ro)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%s\t%s\n", ro.NodePool, ro.TargetAMI, state, done, total, len(ro.InProgress),
					len(ro.Remaining), dash(strings.TrimSpace(blocked)), since(ro.UpdatedAt))
			}
			if len(r.Rollouts) == 0 {
				fmt.Fprintln(tw, "(none)")
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	cmd.AddCommand(rolloutResumeCmd())
	return cmd
}
