package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func init() {
	cmd := &cobra.Command{Use: "attestation", Short: "Node attestation: the instance ↔ agent key bindings"}
	cmd.AddCommand(attestationResetCmd())
	rootCmd.AddCommand(cmd)
}

// attestationResetCmd is `dovetail attestation reset INSTANCE`. A bound
// instance refuses every other key (a replayed identity document must not
// let someone else speak for it); when the agent really was reinstalled and
// lost its key, an operator clears the binding so the new key may attest.
func attestationResetCmd() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "reset INSTANCE-ID",
		Short: "Forget an instance's attestation key so its (reinstalled) agent may attest with a new one",
		Long: `Forget the key an instance's agent attested with. The next attestation of that
instance (trust on first use) binds whichever key presents a valid identity
document first, so run this only once you know the agent on that instance lost
its key (reinstalled, state directory wiped). Any coordinator replica accepts
the request; it is committed through Raft.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.output != "text" && f.output != "json" {
				return fmt.Errorf("--output %q: want text or json", f.output)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			c, err := f.client()
			if err != nil {
				return err
			}
			res, err := c.ResetAttestation(ctx, args[0])
			if err != nil {
				return fmt.Errorf("reset attestation of %s: %w", args[0], err)
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return printJSON(w, res)
			}
			if !res.Was {
				fmt.Fprintf(w, "Instance %s had no attestation binding (nothing to reset).\n", res.InstanceID)
				return nil
			}
			fmt.Fprintf(w, "Attestation of instance %s reset (by leader %s): its agent attests again with its current key.\n", res.InstanceID, dash(res.Leader))
			return nil
		},
	}
	f.add(cmd)
	_ = cmd.Flags().MarkHidden("consistent")
	return cmd
}
