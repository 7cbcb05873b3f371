// Command gen turns the shared instance-type data (instance-types.json and
// spot-prices.json, see catalog/README.md for provenance) into the compact,
// gzip'd catalogue that package catalog embeds. It runs only under
// `go generate`; the build never needs the shared data directory.
//
// The output is deterministic: records sorted by name, maps encoded with
// sorted keys and a gzip header without name or modification time, so
// running the generator twice yields identical bytes.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sort"

	"github.com/dovetail-dev/dovetail/catalog"
)

func main() {
	typesPath := flag.String("types", "../../shared/data/instance-types.json", "instance-types.json in the shared format")
	spotPath := flag.String("spot", "../../shared/data/spot-prices.json", "spot-prices.json in the shared format")
	out := flag.String("out", "catalog.json.gz", "output file")
	flag.Parse()
	if err := run(*typesPath, *spotPath, *out); err != nil {
		slog.Error("catalog generation failed", "err", err)
		os.Exit(1)
	}
}

// spotFile is the part of spot-prices.json the product uses.
type spotFile struct {
	EC2InstancesInfo struct {
		Source       string                                   `json:"source"`
		SourceCommit string                                   `json:"sourceCommit"`
		Prices       map[string]map[string]catalog.SpotRegion `json:"prices"`
	} `json:"ec2instancesInfo"`
}

func run(typesPath, spotPath, out string) error {
	types, err := catalog.ReadTypesFile(typesPath)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(spotPath)
	if err != nil {
		return fmt.Errorf("read spot prices: %w", err)
	}
	var spot spotFile
	if err := json.Unmarshal(raw, &spot); err != nil {
		return fmt.Errorf("parse %s: %w", spotPath, err)
	}
	withSpot := 0
	for i := range types {
		if p, ok := spot.EC2InstancesInfo.Prices[types[i].Name]; ok && len(p) > 0 {
			types[i].Spot = p
			withSpot++
		}
	}
	sort.Slice(types, func(a, b int) bool { return types[a].Name < types[b].Name })
	doc := catalog.File{
		Source: "instance-types.json and spot-prices.json from Dovetail's shared data (Karpenter docs/pricing at 1d927085, ec2instances.info at 32acf84f); see catalog/README.md",
		Types:  types,
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("encode catalogue: %w", err)
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if _, err := zw.Write(js); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	slog.Info("catalogue written", "out", out, "types", len(types), "withSpot", withSpot, "jsonBytes", len(js), "gzipBytes", buf.Len())
	return nil
}
