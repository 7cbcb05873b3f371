package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/coordinator/provisioning"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

type simulateFlags struct {
	files         []string
	instanceTypes string
	region        string
	zones         []string
	output        string
	maxTypes      int
}

func init() {
	f := &simulateFlags{}
	cmd := &cobra.Command{
		Use:   "simulate -f snapshot.yaml",
		Short: "Show what Dovetail would launch for the pending pods in a cluster snapshot",
		Long: `simulate reads ordinary Kubernetes YAML or JSON (a multi-document file, a List as
'kubectl get pods,nodes,nodepools,nodeclaims,ec2nodeclasses,daemonsets -A -o yaml' prints it,
or a directory of such files) and prints the NodeClaims Dovetail would create: per NodePool
the instance types, capacity type, zone and $/hour, the pods that fit on existing nodes or
in-flight NodeClaims, the pods that stay pending and why, and how long the decision took.
Every unbound pod in the snapshot counts as pending.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSimulate(cmd.OutOrStdout(), f) },
	}
	cmd.Flags().StringSliceVarP(&f.files, "filename", "f", nil, "snapshot file or directory (repeatable)")
	cmd.Flags().StringVar(&f.instanceTypes, "instance-types", "", "instance-type catalogue in the format of instance-types.json (default: the embedded catalogue)")
	cmd.Flags().StringVar(&f.region, "region", "us-east-1", "AWS region whose prices apply")
	cmd.Flags().StringSliceVar(&f.zones, "zones", nil, "zones to offer (default: <region>a,b,c)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().IntVar(&f.maxTypes, "max-instance-types", 60, "longest flexible instance-type list per NodeClaim")
	_ = cmd.MarkFlagRequired("filename")
	rootCmd.AddCommand(cmd)
}

func runSimulate(w io.Writer, f *simulateFlags) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("unknown output format %q (text or json)", f.output)
	}
	in, notes, err := provisioning.LoadInputs(f.files...)
	if err != nil {
		return err
	}
	var cat *catalog.Catalog
	if f.instanceTypes != "" {
		cat, err = catalog.LoadFile(f.instanceTypes)
	} else {
		cat, err = catalog.Load()
	}
	if err != nil {
		return fmt.Errorf("instance types: %w", err)
	}
	zones := f.zones
	if len(zones) == 0 {
		zones = []string{f.region + "a", f.region + "b", f.region + "c"}
	}
	in.Region = f.region
	in.InstanceTypes = cat.InstanceTypes(f.region, zones)
	if len(in.InstanceTypes) == 0 {
		return fmt.Errorf("the catalogue has no instance type priced in %s", f.region)
	}
	snap, buildNotes := provisioning.Build(in, provisioning.PendingForSimulation)
	notes = append(notes, buildNotes...)
	start := time.Now()
	d := provisioning.Plan(snap, provisioning.PlanOptions{
		Scheduling: scheduling.Options{MaxInstanceTypes: f.maxTypes},
		Names:      provisioning.SequentialNames(),
	})
	d.Took = time.Since(start)
	// The plan's contract: kube-scheduler, binding in its queue order,
	// accepts every pod where the plan puts it.
	refused := scheduling.Replay(snap, d.Result)
	if f.output == "json" {
		return writeSimulationJSON(w, d, notes, refused)
	}
	writeSimulationText(w, snap, d, notes)
	fmt.Fprintf(w, "\nkube-scheduler replay (queue order): %d of %d planned pods refused\n", len(refused), len(snap.Pods)-len(d.Result.Unschedulable))
	for i, r := range refused {
		if i == 10 {
			fmt.Fprintf(w, "  ... and %d more\n", len(refused)-10)
			break
		}
		fmt.Fprintf(w, "  %s on %s: %s\n", r.Pod, r.Node, r.Reason)
	}
	return nil
}

type simulationJSON struct {
	Pods          int                        `json:"pods"`
	TookSeconds   float64                    `json:"tookSeconds"`
	PricePerHour  float64                    `json:"pricePerHour"`
	NodeClaims    []simClaim                 `json:"nodeClaims"`
	Placements    []scheduling.Placement     `json:"placements"`
	Unschedulable []scheduling.Unschedulable `json:"unschedulable"`
	Stats         scheduling.Stats           `json:"stats"`
	Notes         []string                   `json:"notes,omitempty"`
	// RefusedOnReplay: planned pods kube-scheduler would refuse (scheduling.Replay).
	RefusedOnReplay []scheduling.ReplayRefusal `json:"refusedOnReplay"`
}

type simClaim struct {
	Name string `json:"name"`
	scheduling.NewNodeClaim
}

func writeSimulationJSON(w io.Writer, d provisioning.Decision, notes []string, refused []scheduling.ReplayRefusal) error {
	if refused == nil {
		refused = []scheduling.ReplayRefusal{}
	}
	out := simulationJSON{RefusedOnReplay: refused, Pods: d.Result.Stats.Pods, TookSeconds: d.Took.Seconds(), PricePerHour: d.Result.TotalPrice(),
		Placements: d.Placements, Unschedulable: d.Unschedulable, Stats: d.Result.Stats, Notes: notes, NodeClaims: []simClaim{}}
	for i, l := range d.Launches {
		out.NodeClaims = append(out.NodeClaims, simClaim{Name: l.NodeClaim.Name, NewNodeClaim: d.Result.NewNodeClaims[i]})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

func writeSimulationText(w io.Writer, snap scheduling.Snapshot, d provisioning.Decision, notes []string) {
	res := d.Result
	fmt.Fprintf(w, "%d pending pods, %d existing nodes, %d in-flight NodeClaims, %d NodePools; decided in %s\n\n",
		len(snap.Pods), len(snap.Nodes), len(snap.NodeClaims), len(snap.NodePools), d.Took.Round(time.Microsecond))
	byPool := map[string][]int{}
	var pools []string
	for i, c := range res.NewNodeClaims {
		if _, ok := byPool[c.NodePool]; !ok {
			pools = append(pools, c.NodePool)
		}
		byPool[c.NodePool] = append(byPool[c.NodePool], i)
	}
	sort.Strings(pools)
	for _, p := range pools {
		var price float64
		for _, i := range byPool[p] {
			price += res.NewNodeClaims[i].Price
		}
		fmt.Fprintf(w, "NodePool %s: %d new node(s), $%.4f/hour\n", p, len(byPool[p]), price)
		for _, i := range byPool[p] {
			c := res.NewNodeClaims[i]
			types := c.InstanceTypes
			more := ""
			if len(types) > 4 {
				more = fmt.Sprintf(" (+%d more)", len(types)-4)
				types = types[:4]
			}
			fmt.Fprintf(w, "  %-22s %-9s %-12s $%-8.4f %3d pods  cpu %-7s mem %-8s types %s%s\n",
				d.Launches[i].NodeClaim.Name, c.CapacityType, c.Zone, c.Price, len(c.Pods),
				c.Requests.Cpu().String(), c.Requests.Memory().String(), strings.Join(types, ","), more)
		}
	}
	if len(pools) == 0 {
		fmt.Fprintln(w, "No new nodes needed.")
	}
	fmt.Fprintf(w, "\nTotal: %d new node(s), $%.4f/hour\n", len(res.NewNodeClaims), res.TotalPrice())
	if len(d.Placements) > 0 {
		fmt.Fprintf(w, "\n%d pod(s) fit on existing nodes or in-flight NodeClaims:\n", len(d.Placements))
		for _, p := range d.Placements {
			fmt.Fprintf(w, "  %-40s -> %s%s\n", p.PodName, p.Node, p.NodeClaim)
		}
	}
	if len(d.Unschedulable) > 0 {
		fmt.Fprintf(w, "\n%d pod(s) stay pending:\n", len(d.Unschedulable))
		for _, u := range d.Unschedulable {
			fmt.Fprintf(w, "  %s\n", u.PodName)
			keys := make([]string, 0, len(u.Reasons))
			for k := range u.Reasons {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				name := k
				if name == "" {
					name = "(all)"
				}
				fmt.Fprintf(w, "      %s: %s\n", name, u.Reasons[k])
			}
		}
	}
	for _, f := range d.SpotFallbacks {
		fmt.Fprintf(w, "note: %s\n", f)
	}
	for _, n := range append(notes, res.Stats.Warnings...) {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
