package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
)

// rolloutResumeCmd is `dovetail rollouts resume NODEPOOL`, attached to the
// rollouts command in status.go. A rollout halts itself when replacements
// do not become Ready; only an operator resumes it.
func rolloutResumeCmd() *cobra.Command {
	var f serverFlags
	var attempts int
	cmd := &cobra.Command{
		Use:   "resume NODEPOOL",
		Short: "Resume a NodePool's AMI rollout that halted because replacements did not become Ready",
		Long: `Resume a halted AMI rollout. The leader forgets the failed replacement steps
(the old nodes were kept) and clears the halt; the rollout then continues within
the NodePool's disruption budgets. Any coordinator replica accepts the request.

Exit status is non-zero when the NodePool has no rollout (404) or the rollout
is not halted (409).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.output != "text" && f.output != "json" {
				return fmt.Errorf("--output %q: want text or json", f.output)
			}
			if attempts < 1 {
				attempts = 1
			}
			pool := args[0]
			c, err := f.client()
			if err != nil {
				return err
			}
			res, err := resumeRollout(cmd.Context(), c, pool, f.timeout, attempts)
			if err != nil {
				var he *api.HTTPError
				if errors.As(err, &he) {
					switch he.StatusCode {
					case http.StatusNotFound:
						return fmt.Errorf("nodepool %q has no rollout (see `dovetail rollouts`)", pool)
					case http.StatusConflict:
						return fmt.Errorf("nothing to resume: %s", he.Body.Error)
					}
				}
				return fmt.Errorf("resume rollout of %q: %w", pool, err)
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return printJSON(w, res)
			}
			done, total, state := disruption.RolloutProgress(res.Rollout)
			fmt.Fprintf(w, "Rollout of nodepool %s resumed (by leader %s).\n", pool, dash(res.Leader))
			fmt.Fprintf(w, "Target AMI:   %s\n", dash(res.Rollout.TargetAMI))
			fmt.Fprintf(w, "State:        %s, %d of %d nodes done, %d in progress, %d remaining\n",
				state, done, total, len(res.Rollout.InProgress), len(res.Rollout.Remaining))
			if len(res.Cleared) > 0 {
				fmt.Fprintf(w, "Retrying:     %s (failed replacement steps forgotten)\n", strings.Join(res.Cleared, ", "))
			}
			return nil
		},
	}
	f.add(cmd)
	// --consistent means nothing for a write (it always goes to the leader).
	_ = cmd.Flags().MarkHidden("consistent")
	cmd.Flags().IntVar(&attempts, "attempts", 3, "tries while no leader is reachable (only retried when the request certainly had no effect)")
	return cmd
}

// resumeRollout posts the resume, retrying only answers that certainly had
// no effect (no leader yet, leader unreachable), so a 409 after a retry
// never hides a resume the previous try did.
func resumeRollout(ctx context.Context, c *api.Client, pool string, timeout time.Duration, attempts int) (*api.RolloutResumed, error) {
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(i) * 500 * time.Millisecond):
			}
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		var res *api.RolloutResumed
		res, err = c.ResumeRollout(rctx, pool)
		cancel()
		if err == nil {
			return res, nil
		}
		var he *api.HTTPError
		if !errors.As(err, &he) || !he.Body.NotApplied || he.StatusCode/100 != 5 {
			return nil, err
		}
	}
	return nil, err
}
