package catalog

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

func TestLoadEmbedded(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1363 {
		t.Fatalf("types = %d, want 1363", c.Len())
	}
	c2, _ := Load()
	if c != c2 {
		t.Fatal("Load is not cached")
	}
	// Spot checks against the figures in the shared data README.
	cases := []struct {
		name    string
		arch    string
		vcpu    int
		mem     int64
		maxPods int
		odUSE1  float64
		spotMin float64
	}{
		{"m5.large", "amd64", 2, 8192, 29, 0.096, 0.0315},
		{"c5.xlarge", "amd64", 4, 8192, 58, 0.17, 0.0618},
		{"r5.2xlarge", "amd64", 8, 65536, 58, 0.504, 0.1759},
		{"m7g.large", "arm64", 2, 8192, 29, 0.0816, 0.0271},
		{"p4d.24xlarge", "amd64", 96, 1179648, 737, 21.957642, 9.7812},
	}
	for _, tc := range cases {
		ty, ok := c.Get(tc.name)
		if !ok {
			t.Fatalf("%s missing", tc.name)
		}
		if ty.Arch != tc.arch || ty.VCPU != tc.vcpu || ty.MemoryMiB != tc.mem || ty.MaxPods != tc.maxPods {
			t.Errorf("%s: got %s", tc.name, ty)
		}
		if p, ok := ty.OnDemandPrice("us-east-1"); !ok || p != tc.odUSE1 {
			t.Errorf("%s on-demand us-east-1 = %v,%v want %v", tc.name, p, ok, tc.odUSE1)
		}
		if p, ok := ty.SpotMinPrice("us-east-1"); !ok || p != tc.spotMin {
			t.Errorf("%s spot min = %v want %v", tc.name, p, tc.spotMin)
		}
		if ty.Labels["node.kubernetes.io/instance-type"] != tc.name {
			t.Errorf("%s: instance-type label %q", tc.name, ty.Labels["node.kubernetes.io/instance-type"])
		}
	}
	p4d, _ := c.Get("p4d.24xlarge")
	if p4d.GPU == nil || p4d.GPU.Count != 8 || p4d.GPU.Name != "a100" || p4d.GPU.Manufacturer != "nvidia" || p4d.GPU.MemoryMiB != 40960 {
		t.Errorf("p4d gpu = %+v", p4d.GPU)
	}
	if p4d.LocalNVMeGiB != 8000 {
		t.Errorf("p4d nvme = %d", p4d.LocalNVMeGiB)
	}
	if q := p4d.Allocatable()["nvidia.com/gpu"]; q.Value() != 8 {
		t.Errorf("p4d allocatable gpu = %v", q.String())
	}
	m5, _ := c.Get("m5.large")
	if got := m5.SpotPrices("us-east-1"); len(got) != 5 || got[0] != 0.0315 {
		t.Errorf("m5.large spot per AZ = %v", got)
	}
	if m5.InterruptionFrequency("us-east-1") != "10-15%" {
		t.Errorf("m5.large interruption = %q", m5.InterruptionFrequency("us-east-1"))
	}
	if _, ok := c.Get("no.such"); ok {
		t.Error("Get of unknown type succeeded")
	}
	metal := 0
	for _, ty := range c.Types() {
		if ty.BareMetal {
			metal++
		}
	}
	if metal != 143 {
		t.Errorf("bare metal = %d, want 143", metal)
	}
}

func TestInstanceTypes(t *testing.T) {
	c := MustLoad()
	zones := []string{"us-east-1a", "us-east-1b", "us-east-1c"}
	its := c.InstanceTypes("us-east-1", zones)
	if len(its) != 1345 {
		t.Fatalf("priced in us-east-1: %d, want 1345", len(its))
	}
	var m5 *cloud.InstanceType
	for _, it := range its {
		if it.Name == "m5.large" {
			m5 = it
		}
	}
	if m5 == nil {
		t.Fatal("m5.large missing")
	}
	if len(m5.Offerings) != 6 {
		t.Fatalf("offerings = %+v", m5.Offerings)
	}
	want := map[string]float64{
		"us-east-1a/on-demand": 0.096, "us-east-1b/on-demand": 0.096, "us-east-1c/on-demand": 0.096,
		"us-east-1a/spot": 0.0315, "us-east-1b/spot": 0.0323, "us-east-1c/spot": 0.0324,
	}
	for _, o := range m5.Offerings {
		if want[o.Zone+"/"+o.CapacityType] != o.Price || !o.Available {
			t.Errorf("offering %+v", o)
		}
	}
	if m5.Labels[LabelRegion] != "us-east-1" || m5.Labels["kubernetes.io/arch"] != "amd64" {
		t.Errorf("labels %v", m5.Labels)
	}
	if cpu := m5.Capacity[corev1.ResourceCPU]; cpu.Value() != 2 {
		t.Errorf("capacity cpu %v", cpu.String())
	}
	if mem := m5.Capacity[corev1.ResourceMemory]; mem.Value() != 8<<30 {
		t.Errorf("capacity memory %v", mem.String())
	}
	if cpu := m5.Allocatable[corev1.ResourceCPU]; cpu.MilliValue() >= 2000 || cpu.MilliValue() < 1500 {
		t.Errorf("allocatable cpu %v", cpu.String())
	}
	// Zones beyond the observed list fall back to the region minimum.
	many := c.InstanceTypes("us-east-1", []string{"a", "b", "c", "d", "e", "f", "g"})
	for _, it := range many {
		if it.Name != "m5.large" {
			continue
		}
		for _, o := range it.Offerings {
			if o.Zone == "g" && o.CapacityType == cloud.CapacityTypeSpot && o.Price != 0.0315 {
				t.Errorf("fallback price %v", o.Price)
			}
		}
	}
	// A type without a price in the region is left out.
	if n := len(c.InstanceTypes("xx-nowhere-1", zones)); n != 0 {
		t.Errorf("unknown region gives %d types", n)
	}
	// Mutating the result must not leak into the catalogue.
	m5.Labels["x"] = "y"
	ty, _ := c.Get("m5.large")
	if _, ok := ty.Labels["x"]; ok {
		t.Error("labels are shared with the catalogue")
	}
}

func TestLoadFileSharedFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "types.json")
	data := `[{"name":"x1.tiny","arch":"arm64","vcpu":1,"memoryMiB":512,"maxPods":4,
	  "resources":{"cpu":"900m","memory":"300Mi","pods":"4"},"labels":{"kubernetes.io/arch":"arm64"},
	  "onDemandPrice":{"us-east-1":0.01}}]`
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ty, ok := c.Get("x1.tiny")
	if !ok || ty.VCPU != 1 {
		t.Fatalf("got %+v", ty)
	}
	its := c.InstanceTypes("us-east-1", []string{"z1"})
	if len(its) != 1 || len(its[0].Offerings) != 1 || its[0].Offerings[0].CapacityType != cloud.CapacityTypeOnDemand {
		t.Fatalf("got %+v", its)
	}
	for _, bad := range []string{`not json`, `[{"name":""}]`, `[{"name":"a","vcpu":1,"memoryMiB":1},{"name":"a","vcpu":1,"memoryMiB":1}]`} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadFile(path); err == nil {
			t.Errorf("LoadFile(%q) succeeded", bad)
		}
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("missing file loaded")
	}
}

func TestLoadFileCompact(t *testing.T) {
	c, err := LoadFile("catalog.json.gz")
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1363 {
		t.Fatalf("len %d", c.Len())
	}
}

// TestGeneratedIsReproducible regenerates the catalogue from the shared data
// (when present) and checks the committed file is byte-identical.
func TestGeneratedIsReproducible(t *testing.T) {
	types, spot := "../../shared/data/instance-types.json", "../../shared/data/spot-prices.json"
	if _, err := os.Stat(types); err != nil {
		t.Skip("shared data not present; nothing to compare against")
	}
	out := filepath.Join(t.TempDir(), "catalog.json.gz")
	cmd := exec.Command("go", "run", "./gen", "-types", types, "-spot", spot, "-out", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generator: %v\n%s", err, msg)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, embedded) {
		t.Fatal("catalog.json.gz is not what the generator produces; run go generate ./catalog")
	}
}

func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		c, err := parseCompact(embedded)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&ms1)
		b.ReportMetric(float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/(1<<20), "MiB-retained")
		runtime.KeepAlive(c)
	}
}

func BenchmarkInstanceTypes(b *testing.B) {
	c := MustLoad()
	zones := []string{"us-east-1a", "us-east-1b", "us-east-1c"}
	b.ReportAllocs()
	for b.Loop() {
		_ = c.InstanceTypes("us-east-1", zones)
	}
}
