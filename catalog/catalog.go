// Package catalog is Dovetail's instance-type catalogue: every EC2 instance
// type Karpenter documents, with its shape, allocatable resources, labels,
// on-demand prices per region and observed spot prices. The data is embedded
// (catalog.json.gz, produced by ./gen from the shared data files) so the
// binaries need nothing at run time; see README.md for where it came from.
package catalog

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

//go:generate go run ./gen -types ../../shared/data/instance-types.json -spot ../../shared/data/spot-prices.json -out catalog.json.gz

//go:embed catalog.json.gz
var embedded []byte

// File is the layout of the embedded catalogue.
type File struct {
	Source string `json:"source"`
	Types  []Type `json:"types"`
}

// Accelerator describes GPUs or other accelerators of a type. For GPUs
// MemoryMiB is per device, as Karpenter labels it.
type Accelerator struct {
	Name         string `json:"name"`
	Count        int    `json:"count"`
	Manufacturer string `json:"manufacturer"`
	MemoryMiB    int64  `json:"memoryMiB,omitempty"`
}

// SpotRegion is the observed spot market of a type in one region.
type SpotRegion struct {
	// PerAZ holds the current price of each Availability Zone, ascending. The
	// source did not keep zone names.
	PerAZ []float64 `json:"currentPerAZ"`
	Min   float64   `json:"min"`
	Max   float64   `json:"max,omitempty"`
	// InterruptionFrequency is the Spot Instance Advisor bucket, e.g. "<5%".
	InterruptionFrequency  string `json:"interruptionFrequency,omitempty"`
	SavingsOverOnDemandPct int    `json:"savingsOverOnDemandPct,omitempty"`
}

// Type is one instance type. The JSON layout is that of the shared
// instance-types.json (so LoadFile reads that file directly) plus Spot.
type Type struct {
	Name                 string                `json:"name"`
	Arch                 string                `json:"arch"` // amd64 or arm64, as kubernetes.io/arch
	VCPU                 int                   `json:"vcpu"`
	MemoryMiB            int64                 `json:"memoryMiB"`
	MaxPods              int                   `json:"maxPods"`
	EphemeralStorage     string                `json:"ephemeralStorage,omitempty"`
	NetworkBandwidthMbps int                   `json:"networkBandwidthMbps,omitempty"`
	GPU                  *Accelerator          `json:"gpu,omitempty"`
	Accelerator          *Accelerator          `json:"accelerator,omitempty"`
	LocalNVMeGiB         int                   `json:"localNVMeGiB,omitempty"`
	BareMetal            bool                  `json:"bareMetal,omitempty"`
	Hypervisor           string                `json:"hypervisor,omitempty"`
	Resources            map[string]string     `json:"resources"` // allocatable, after Karpenter's overhead
	Labels               map[string]string     `json:"labels"`
	OnDemand             map[string]float64    `json:"onDemandPrice,omitempty"` // region → USD/hour
	Spot                 map[string]SpotRegion `json:"spot,omitempty"`          // region → observed spot prices
}

// OnDemandPrice is the Linux on-demand list price in USD/hour in region.
func (t Type) OnDemandPrice(region string) (float64, bool) {
	p, ok := t.OnDemand[region]
	return p, ok && p > 0
}

// SpotPrices returns the observed per-AZ spot prices in region, ascending,
// or nil when none were observed. The result is a copy.
func (t Type) SpotPrices(region string) []float64 {
	s, ok := t.Spot[region]
	if !ok {
		return nil
	}
	if len(s.PerAZ) == 0 {
		if s.Min > 0 {
			return []float64{s.Min}
		}
		return nil
	}
	return append([]float64(nil), s.PerAZ...)
}

// SpotMinPrice is the lowest observed spot price in region.
func (t Type) SpotMinPrice(region string) (float64, bool) {
	s, ok := t.Spot[region]
	if !ok || s.Min <= 0 {
		return 0, false
	}
	return s.Min, true
}

// InterruptionFrequency is the Spot Instance Advisor bucket in region ("" when unknown).
func (t Type) InterruptionFrequency(region string) string {
	return t.Spot[region].InterruptionFrequency
}

// Catalog is an immutable, indexed set of instance types. It is safe for
// concurrent use; callers must not modify the Types they get back.
type Catalog struct {
	types  []Type
	byName map[string]int
	Source string

	// Parsed resource lists, built once on first use by InstanceTypes.
	resOnce  sync.Once
	capacity []corev1.ResourceList
	alloc    []corev1.ResourceList
}

var (
	loadOnce sync.Once
	loaded   *Catalog
	loadErr  error
)

// Load returns the embedded catalogue. It is parsed on the first call and
// shared afterwards.
func Load() (*Catalog, error) {
	loadOnce.Do(func() {
		loaded, loadErr = parseCompact(embedded)
	})
	return loaded, loadErr
}

// MustLoad is Load for program start-up and tests where the embedded data
// is known good; it panics only if the binary itself is corrupt.
func MustLoad() *Catalog {
	c, err := Load()
	if err != nil {
		panic(fmt.Sprintf("embedded instance catalogue is corrupt: %v", err))
	}
	return c
}

func parseCompact(data []byte) (*Catalog, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("catalog: open gzip: %w", err)
	}
	defer zr.Close()
	var f File
	if err := json.NewDecoder(zr).Decode(&f); err != nil {
		return nil, fmt.Errorf("catalog: decode: %w", err)
	}
	c, err := New(f.Types)
	if err != nil {
		return nil, err
	}
	c.Source = f.Source
	return c, nil
}

// LoadFile reads a catalogue from a file: either the shared
// instance-types.json format (a JSON array of types, optionally with a
// "spot" map per type) or the gzip'd format this package embeds.
func LoadFile(path string) (*Catalog, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: read %s: %w", path, err)
	}
	if len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		c, err := parseCompact(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return c, nil
	}
	types, err := decodeTypes(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", path, err)
	}
	return New(types)
}

// ReadTypesFile reads the shared instance-types.json format.
func ReadTypesFile(path string) ([]Type, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	defer f.Close()
	types, err := decodeTypes(f)
	if err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", path, err)
	}
	return types, nil
}

func decodeTypes(r io.Reader) ([]Type, error) {
	var types []Type
	if err := json.NewDecoder(r).Decode(&types); err != nil {
		return nil, fmt.Errorf("decode instance types: %w", err)
	}
	return types, nil
}

// New builds a catalogue from types. Names must be unique and non-empty.
func New(types []Type) (*Catalog, error) {
	c := &Catalog{types: make([]Type, len(types)), byName: make(map[string]int, len(types))}
	copy(c.types, types)
	sort.SliceStable(c.types, func(a, b int) bool { return c.types[a].Name < c.types[b].Name })
	for i, t := range c.types {
		if t.Name == "" {
			return nil, fmt.Errorf("catalog: type #%d has no name", i)
		}
		if _, dup := c.byName[t.Name]; dup {
			return nil, fmt.Errorf("catalog: type %q appears twice", t.Name)
		}
		if t.VCPU <= 0 || t.MemoryMiB <= 0 {
			return nil, fmt.Errorf("catalog: type %q has no vcpu or memory", t.Name)
		}
		c.byName[t.Name] = i
	}
	return c, nil
}

// Types returns every type, sorted by name. The slice is the caller's; the
// maps inside are shared and must not be modified.
func (c *Catalog) Types() []Type {
	return append([]Type(nil), c.types...)
}

// Len is the number of types.
func (c *Catalog) Len() int { return len(c.types) }

// Get returns the named type.
func (c *Catalog) Get(name string) (Type, bool) {
	i, ok := c.byName[name]
	if !ok {
		return Type{}, false
	}
	return c.types[i], true
}
