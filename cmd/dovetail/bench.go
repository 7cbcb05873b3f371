package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/test/bench"
)

func init() {
	var sizes, output, instanceTypes string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark the provisioning decision (what `make bench` runs)",
		Long: `bench generates batches of pending pods (1 to 20,000; a mix in fifths of plain pods,
zonal spread, hostname spread, zonal self-affinity and hostname self-anti-affinity, and plain
pods alone), plus 4,000 pods with preferences, and decides them against the real instance-type
catalogue (us-east-1, three zones) and a synthetic 400-type one. It prints pods/s, nodes,
$/hour, the ratio to the cost lower bound (and to a tighter LP bound) and the peak heap.`,
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
			return nil
		},
	}
	cmd.Flags().StringVar(&sizes, "sizes", "", "comma-separated batch sizes (default 1,50,100,500,1000,2000,5000,10000,20000)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
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
