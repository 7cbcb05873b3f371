package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
	"github.com/dovetail-dev/dovetail/test/bench"
)

func init() {
	var sizes, output, instanceTypes, consolidation string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark the provisioning and consolidation decisions (what `make bench` runs)",
		Long: `bench generates batches of pending pods (1 to 20,000; a mix in fifths of plain pods,
zonal spread, hostname spread, zonal self-affinity and hostname self-anti-affinity, and plain
pods alone), plus 4,000 pods with preferences, and decides them against the real instance-type
catalogue (us-east-1, three zones) and a synthetic 400-type one. It prints pods/s, nodes,
$/hour, the ratio to the cost lower bound (and to a tighter LP bound) and the peak heap.
Then it consolidates clusters of 100, 1,000 and 5,000 nodes after half their pods are deleted
and prints decision time and $/hour against the lower bound.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns, err := parseSizes(sizes)
			if err != nil {
				return err
			}
			var cat *catalog.Catalog
			if instanceTypes != "" {
				cat, err = catalog.LoadFile(instanceTypes)
			} else {
				cat, err = catalog.Load()
			}
			if err != nil {
				return fmt.Errorf("instance types: %w", err)
			}
			var rows []bench.Row
			for _, c := range bench.Cases(cat.InstanceTypes("us-east-1", bench.Zones), bench.SyntheticTypes(), ns) {
				rows = append(rows, bench.Measure(c))
				if output == "text" {
					// Print as we go: the big cases take a while on a busy machine.
					if len(rows) == 1 {
						bench.Print(cmd.OutOrStdout(), rows)
					} else {
						bench.PrintRow(cmd.OutOrStdout(), rows[len(rows)-1])
					}
				}
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			if consolidation == "" || consolidation == "none" {
				return nil
			}
			cs, err := parseSizes(consolidation)
			if err != nil {
				return fmt.Errorf("--consolidation: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "\nconsolidation after deleting a random half of the pods (real catalogue, us-east-1):")
			return disruption.BenchmarkTableSizes(cmd.OutOrStdout(), cs)
		},
	}
	cmd.Flags().StringVar(&sizes, "sizes", "", "comma-separated batch sizes (default 1,50,100,500,1000,2000,5000,10000,20000)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&consolidation, "consolidation", "100,1000,5000", "cluster sizes (nodes) for the consolidation table, or none")
	cmd.Flags().StringVar(&instanceTypes, "instance-types", "", "real catalogue file (default: the embedded one)")
	rootCmd.AddCommand(cmd)
}

func parseSizes(s string) ([]int, error) {
	if s == "" {
		return bench.Sizes, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad batch size %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}
