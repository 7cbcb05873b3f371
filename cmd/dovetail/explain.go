package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dovetail-dev/dovetail/coordinator/disruption"
)

// explain asks the leader why a node was (not) disrupted or a pod is
// pending, or computes the same offline from a snapshot file.
func init() {
	var (
		conn        connFlags
		coordinator string
		file        string
		at          string
		output      string
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "explain (node NAME | pod NAMESPACE/NAME)",
		Short: "Explain why a node was or was not disrupted, or why a pod is pending",
		Long: `Explain shows the disruption leader's reasoning for one node (chosen, and why;
or skipped, with the reason per method: budget, PDB, do-not-disrupt, no cheaper
fit, consolidateAfter not reached ...) or one pod (its node's explanation, or
per NodePool why no node fits it).

By default it asks the coordinator's API. With -f it plans offline from a
snapshot file (the JSON of a disruption.Snapshot, as the coordinator serves
it on ` + "`" + disruption.SnapshotPath + "`" + `) at --at (default now).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name := args[0], args[1]
			if kind != "node" && kind != "pod" {
				return fmt.Errorf("explain: want \"node NAME\" or \"pod NAMESPACE/NAME\", got %q", kind)
			}
			if kind == "pod" && !strings.Contains(name, "/") {
				return fmt.Errorf("explain pod: want NAMESPACE/NAME, got %q", name)
			}
			var (
				e   disruption.Explanation
				err error
			)
			if file != "" {
				e, err = explainOffline(file, at, kind, name)
			} else {
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				defer cancel()
				e, err = explainOnline(ctx, &conn, coordinator, kind, name)
			}
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(e)
			}
			printExplanation(cmd.OutOrStdout(), e)
			return nil
		},
	}
	// Same default and environment as `dovetail status`: any replica's API.
	def := os.Getenv("DOVETAIL_SERVER")
	if def == "" {
		def = "127.0.0.1:8080"
	}
	cmd.Flags().StringVar(&coordinator, "server", def, "any coordinator replica, host:port or URL (env DOVETAIL_SERVER)")
	cmd.Flags().StringVarP(&file, "file", "f", "", "plan offline from this snapshot file (JSON disruption.Snapshot)")
	cmd.Flags().StringVar(&at, "at", "", "with -f: the instant to plan at (RFC 3339, default now)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "API request timeout")
	conn.add(cmd)
	rootCmd.AddCommand(cmd)
}

func explainOnline(ctx context.Context, conn *connFlags, server, kind, name string) (disruption.Explanation, error) {
	var e disruption.Explanation
	path := disruption.ExplainNodePath + url.PathEscape(name)
	if kind == "pod" {
		ns, pod, _ := strings.Cut(name, "/")
		path = disruption.ExplainPodPath + url.PathEscape(ns) + "/" + url.PathEscape(pod)
	}
	c, err := conn.client(server)
	if err != nil {
		return e, err
	}
	base := c.Base
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return e, fmt.Errorf("explain: %w", err)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return e, fmt.Errorf("explain: ask coordinator at %s: %w (or use -f SNAPSHOT to plan offline)", base, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return e, fmt.Errorf("explain: read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return e, fmt.Errorf("explain: coordinator answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return e, fmt.Errorf("explain: decode answer: %w", err)
	}
	return e, nil
}

func explainOffline(file, at, kind, name string) (disruption.Explanation, error) {
	var e disruption.Explanation
	b, err := os.ReadFile(file)
	if err != nil {
		return e, fmt.Errorf("explain: %w", err)
	}
	var s disruption.Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return e, fmt.Errorf("explain: %s is not a disruption snapshot: %w", file, err)
	}
	now := time.Now()
	if at != "" {
		if now, err = time.Parse(time.RFC3339, at); err != nil {
			return e, fmt.Errorf("explain: --at: %w", err)
		}
	}
	plan := disruption.Decide(&s, now, disruption.Options{})
	if kind == "node" {
		return disruption.ExplainNode(&plan, &s, name), nil
	}
	ns, pod, _ := strings.Cut(name, "/")
	return disruption.ExplainPod(&plan, &s, ns, pod), nil
}

func printExplanation(w io.Writer, e disruption.Explanation) {
	fmt.Fprintf(w, "%s %s", e.Kind, e.Name)
	if e.Pool != "" {
		fmt.Fprintf(w, " (NodePool %s)", e.Pool)
	}
	fmt.Fprintf(w, " at %s\n%s\n", e.At.UTC().Format(time.RFC3339), e.Summary)
	if d := e.Decision; d != nil {
		fmt.Fprintf(w, "\ndecision: %s of %s, budget %s", d.Reason, strings.Join(d.Nodes, ","), d.Budget)
		if d.Forceful {
			fmt.Fprint(w, " (forceful)")
		}
		fmt.Fprintln(w)
		if r := d.Replacement; r != nil && len(r.Options) > 0 {
			fmt.Fprintf(w, "replacement: %s %s in %s at $%.4f/h (%d options)\n", r.Options[0].InstanceType, r.Options[0].CapacityType, r.Options[0].Zone, r.Options[0].Price, len(r.Options))
		}
	}
	if f := e.InFlight; f != nil {
		fmt.Fprintf(w, "\nin flight: %s since %s, phase %s, replacements %v\n", f.Reason, f.Since.UTC().Format(time.RFC3339), f.Phase, f.Replacements)
	}
	if len(e.Skipped) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "METHOD\tSKIPPED BECAUSE\tDETAIL")
		for _, s := range e.Skipped {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Method, s.Code, s.Message)
		}
		_ = tw.Flush()
	}
	pools := make([]string, 0, len(e.PendingReasons))
	for pool := range e.PendingReasons {
		pools = append(pools, pool)
	}
	sort.Strings(pools)
	for _, pool := range pools {
		fmt.Fprintf(w, "  %s: %s\n", pool, e.PendingReasons[pool])
	}
}
