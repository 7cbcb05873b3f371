package ec2

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

// Well-known label keys.
const (
	labelInstanceType = "node.kubernetes.io/instance-type"
	labelArch         = "kubernetes.io/arch"
	labelOS           = "kubernetes.io/os"
	labelPrefix       = "karpenter.k8s.aws/"
	labelCapacityType = "karpenter.sh/capacity-type"
	labelNodePool     = "karpenter.sh/nodepool"
)

// typeInfo is one instance type as EC2 described it, with everything but the
// offerings' availability (which changes with the insufficient-capacity
// store) precomputed.
type typeInfo struct {
	name        string
	arch        string
	labels      map[string]string
	capacity    corev1.ResourceList
	allocatable corev1.ResourceList
	zones       []string
	spot        bool // supports the spot usage class
	onDemand    bool
	// What node-class compatibility needs (compat.go), from EC2's answer.
	efa          bool   // NetworkInfo.EfaSupported
	maxEFA       int32  // EfaInfo.MaximumEfaInterfaces (0: not reported)
	networkCards int32  // len(NetworkInfo.NetworkCards), at least 1
	hypervisor   string // nitro | xen
	nestedVirt   bool   // ProcessorInfo.SupportedFeatures has nested-virtualization
	pgStrategies []string
}

type typesSnapshot struct {
	types     map[string]*typeInfo
	names     []string
	fetched   time.Time
	spot      map[spotKey]float64
	spotFresh time.Time
	odPrices  map[string]float64 // overrides of the catalogue's on-demand prices
}

type spotKey struct{ instanceType, zone string }

// InstanceTypes lists the instance types offered in the region, each with
// its offerings (zone × capacity type × price × available). Types and zones
// are cached for InstanceTypesTTL, spot prices for PricesTTL; availability
// reflects the insufficient-capacity store at the time of the call.
func (p *Provider) InstanceTypes(ctx context.Context) ([]*cloud.InstanceType, error) {
	snap, err := p.typesSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*cloud.InstanceType, 0, len(snap.names))
	for _, name := range snap.names {
		ti := snap.types[name]
		it := &cloud.InstanceType{
			Name:        ti.name,
			Labels:      ti.labels,
			Capacity:    ti.capacity,
			Allocatable: ti.allocatable,
		}
		od, odOK := p.onDemandPrice(snap, name)
		for _, zone := range ti.zones {
			if ti.spot {
				if price, ok := snap.spot[spotKey{name, zone}]; ok {
					it.Offerings = append(it.Offerings, cloud.Offering{Zone: zone, CapacityType: cloud.CapacityTypeSpot, Price: price,
						Available: !p.avoided(name, zone, cloud.CapacityTypeSpot)})
				}
			}
			if ti.onDemand && odOK {
				it.Offerings = append(it.Offerings, cloud.Offering{Zone: zone, CapacityType: cloud.CapacityTypeOnDemand, Price: od,
					Available: !p.avoided(name, zone, cloud.CapacityTypeOnDemand)})
			}
		}
		// A type with no priced offering cannot be chosen sensibly; leave it out.
		if len(it.Offerings) > 0 {
			out = append(out, it)
		}
	}
	return out, nil
}

// SetOnDemandPrices replaces the bundled on-demand price table for the types
// given (USD/hour), e.g. from the AWS Price List API or a file an operator
// maintains. Types not in prices keep the bundled price.
func (p *Provider) SetOnDemandPrices(prices map[string]float64) {
	p.typesMu.Lock()
	defer p.typesMu.Unlock()
	p.odOverride = make(map[string]float64, len(prices))
	for k, v := range prices {
		if v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
			p.odOverride[k] = v
		}
	}
}

// Refresh drops the cached instance types, prices and resolved node classes
// so the next call asks EC2 again.
func (p *Provider) Refresh() {
	p.typesMu.Lock()
	p.types = nil
	p.typesMu.Unlock()
	p.ncMu.Lock()
	p.ncCache = map[string]cachedNodeClass{}
	p.ncMu.Unlock()
}

func (p *Provider) onDemandPrice(snap *typesSnapshot, name string) (float64, bool) {
	if v, ok := snap.odPrices[name]; ok {
		return v, true
	}
	t, ok := p.catalog.Get(name)
	if !ok {
		return 0, false
	}
	return t.OnDemandPrice(p.cfg.Region)
}

// typesSnapshot returns the cached types, refreshing what has expired. It
// holds the lock across the API calls so concurrent callers make one set of
// calls rather than many. Snapshots are never modified once published (a
// refresh publishes a new one), so callers read them without the lock.
func (p *Provider) typesSnapshot(ctx context.Context) (*typesSnapshot, error) {
	p.typesMu.Lock()
	defer p.typesMu.Unlock()
	now := p.clock.Now()
	var next typesSnapshot
	if p.types != nil {
		next = *p.types
	}
	if p.types == nil || now.Sub(next.fetched) >= p.cfg.InstanceTypesTTL {
		types, names, err := p.fetchTypes(ctx)
		switch {
		case err == nil:
			next.types, next.names, next.fetched = types, names, now
		case p.types != nil:
			// Serve the stale list rather than stop launching: types
			// change rarely. Try again in a minute, not on every call.
			p.log.WarnContext(ctx, "refreshing instance types failed, serving cached list", "err", err)
			next.fetched = now.Add(min(time.Minute, p.cfg.InstanceTypesTTL) - p.cfg.InstanceTypesTTL)
		default:
			return nil, err
		}
	}
	if next.spot == nil || now.Sub(next.spotFresh) >= p.cfg.PricesTTL {
		spot, err := p.fetchSpotPrices(ctx)
		switch {
		case err == nil:
			next.spot, next.spotFresh = spot, now
		case next.spot != nil:
			p.log.WarnContext(ctx, "refreshing spot prices failed, serving cached prices", "err", err)
			next.spotFresh = now.Add(min(time.Minute, p.cfg.PricesTTL) - p.cfg.PricesTTL)
		default:
			return nil, err
		}
	}
	next.odPrices = p.odOverride
	p.types = &next
	return &next, nil
}

func (p *Provider) fetchTypes(ctx context.Context) (map[string]*typeInfo, []string, error) {
	types := map[string]*typeInfo{}
	pages := awsec2.NewDescribeInstanceTypesPaginator(p.ec2, &awsec2.DescribeInstanceTypesInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("describe instance types: %w", err)
		}
		for i := range page.InstanceTypes {
			if ti := p.typeInfo(&page.InstanceTypes[i]); ti != nil {
				types[ti.name] = ti
			}
		}
	}
	offers := awsec2.NewDescribeInstanceTypeOfferingsPaginator(p.ec2, &awsec2.DescribeInstanceTypeOfferingsInput{
		LocationType: ec2types.LocationTypeAvailabilityZone,
	})
	for offers.HasMorePages() {
		page, err := offers.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("describe instance type offerings: %w", err)
		}
		for _, o := range page.InstanceTypeOfferings {
			if ti, ok := types[string(o.InstanceType)]; ok && o.Location != nil {
				ti.zones = append(ti.zones, *o.Location)
			}
		}
	}
	names := make([]string, 0, len(types))
	for name, ti := range types {
		if len(ti.zones) == 0 {
			delete(types, name)
			continue
		}
		sort.Strings(ti.zones)
		ti.zones = compactStrings(ti.zones)
		names = append(names, name)
	}
	sort.Strings(names)
	p.log.InfoContext(ctx, "instance types refreshed", "types", len(names))
	return types, names, nil
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// fetchSpotPrices reads the current Linux spot price of every type × zone.
func (p *Provider) fetchSpotPrices(ctx context.Context) (map[spotKey]float64, error) {
	type rec struct {
		price float64
		at    time.Time
	}
	latest := map[spotKey]rec{}
	pages := awsec2.NewDescribeSpotPriceHistoryPaginator(p.ec2, &awsec2.DescribeSpotPriceHistoryInput{
		ProductDescriptions: []string{"Linux/UNIX"},
		// StartTime=now asks for the price in effect now, one record per
		// type × zone, instead of the whole history.
		StartTime: aws.Time(p.clock.Now()),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe spot price history: %w", err)
		}
		for _, sp := range page.SpotPriceHistory {
			price, err := strconv.ParseFloat(aws.ToString(sp.SpotPrice), 64)
			if err != nil || price <= 0 {
				continue
			}
			k := spotKey{string(sp.InstanceType), aws.ToString(sp.AvailabilityZone)}
			at := aws.ToTime(sp.Timestamp)
			if cur, ok := latest[k]; !ok || at.After(cur.at) {
				latest[k] = rec{price, at}
			}
		}
	}
	out := make(map[spotKey]float64, len(latest))
	for k, r := range latest {
		out[k] = r.price
	}
	return out, nil
}

// typeInfo turns EC2's description into labels, capacity and allocatable;
// nil for types Dovetail cannot run (no x86_64/arm64, no memory figure).
func (p *Provider) typeInfo(in *ec2types.InstanceTypeInfo) *typeInfo {
	name := string(in.InstanceType)
	arch := ""
	if in.ProcessorInfo != nil {
		for _, a := range in.ProcessorInfo.SupportedArchitectures {
			if k := kubeArch(string(a)); k != "" && !strings.HasSuffix(string(a), "_mac") {
				arch = k
				break
			}
		}
	}
	if arch == "" || in.MemoryInfo == nil || in.VCpuInfo == nil || name == "" {
		return nil
	}
	ti := &typeInfo{name: name, arch: arch, hypervisor: string(in.Hypervisor), networkCards: 1}
	if n := in.NetworkInfo; n != nil {
		ti.efa = aws.ToBool(n.EfaSupported)
		if n.EfaInfo != nil {
			ti.maxEFA = aws.ToInt32(n.EfaInfo.MaximumEfaInterfaces)
		}
		if c := int32(len(n.NetworkCards)); c > 1 {
			ti.networkCards = c
		}
	}
	if in.ProcessorInfo != nil {
		for _, f := range in.ProcessorInfo.SupportedFeatures {
			if f == ec2types.SupportedAdditionalProcessorFeatureNestedVirtualization {
				ti.nestedVirt = true
			}
		}
	}
	if in.PlacementGroupInfo != nil {
		for _, st := range in.PlacementGroupInfo.SupportedStrategies {
			ti.pgStrategies = append(ti.pgStrategies, string(st))
		}
	}
	for _, u := range in.SupportedUsageClasses {
		switch u {
		case ec2types.UsageClassTypeSpot:
			ti.spot = true
		case ec2types.UsageClassTypeOnDemand:
			ti.onDemand = true
		}
	}
	if len(in.SupportedUsageClasses) == 0 {
		ti.spot, ti.onDemand = true, true
	}

	s := shape{Arch: arch, VCPU: aws.ToInt32(in.VCpuInfo.DefaultVCpus), MemoryMiB: aws.ToInt64(in.MemoryInfo.SizeInMiB)}
	cat, inCatalog := p.catalog.Get(name)
	if in.NetworkInfo != nil {
		s.MaxPods = eniMaxPods(aws.ToInt32(in.NetworkInfo.MaximumNetworkInterfaces), aws.ToInt32(in.NetworkInfo.Ipv4AddressesPerInterface))
		if in.NetworkInfo.EfaInfo != nil {
			s.EFA = aws.ToInt32(in.NetworkInfo.EfaInfo.MaximumEfaInterfaces)
		}
	}
	if s.MaxPods == 0 && inCatalog {
		s.MaxPods = int32(cat.MaxPods)
	}
	if s.MaxPods == 0 {
		s.MaxPods = 110
	}

	labels := map[string]string{}
	if inCatalog {
		// Start from Karpenter's documented labels; what EC2 says below
		// takes precedence.
		for k, v := range cat.Labels {
			labels[k] = v
		}
	}
	family, size, _ := strings.Cut(name, ".")
	labels[labelInstanceType] = name
	labels[labelArch] = arch
	labels[labelOS] = "linux"
	labels[labelPrefix+"instance-family"] = family
	labels[labelPrefix+"instance-size"] = size
	cat2, gen := splitFamily(family)
	labels[labelPrefix+"instance-category"] = cat2
	if gen != "" {
		labels[labelPrefix+"instance-generation"] = gen
	}
	labels[labelPrefix+"instance-cpu"] = strconv.Itoa(int(s.VCPU))
	labels[labelPrefix+"instance-memory"] = strconv.FormatInt(s.MemoryMiB, 10)
	labels[labelPrefix+"instance-hypervisor"] = string(in.Hypervisor)
	if in.ProcessorInfo != nil && in.ProcessorInfo.Manufacturer != nil {
		labels[labelPrefix+"instance-cpu-manufacturer"] = strings.ToLower(strings.Fields(*in.ProcessorInfo.Manufacturer + " x")[0])
	}
	if in.ProcessorInfo != nil && in.ProcessorInfo.SustainedClockSpeedInGhz != nil {
		labels[labelPrefix+"instance-cpu-sustained-clock-speed-mhz"] = strconv.Itoa(int(math.Round(*in.ProcessorInfo.SustainedClockSpeedInGhz * 1000)))
	}
	if in.EbsInfo != nil && in.EbsInfo.EbsOptimizedInfo != nil && in.EbsInfo.EbsOptimizedInfo.MaximumBandwidthInMbps != nil {
		labels[labelPrefix+"instance-ebs-bandwidth"] = strconv.Itoa(int(*in.EbsInfo.EbsOptimizedInfo.MaximumBandwidthInMbps))
	}
	if in.NetworkInfo != nil && in.NetworkInfo.EncryptionInTransitSupported != nil {
		labels[labelPrefix+"instance-encryption-in-transit-supported"] = strconv.FormatBool(*in.NetworkInfo.EncryptionInTransitSupported)
	}
	if in.InstanceStorageInfo != nil && aws.ToInt64(in.InstanceStorageInfo.TotalSizeInGB) > 0 {
		labels[labelPrefix+"instance-local-nvme"] = strconv.FormatInt(aws.ToInt64(in.InstanceStorageInfo.TotalSizeInGB), 10)
	}
	if in.GpuInfo != nil && len(in.GpuInfo.Gpus) > 0 {
		g := in.GpuInfo.Gpus[0]
		s.GPUs = aws.ToInt32(g.Count)
		s.GPUVendor = strings.ToLower(aws.ToString(g.Manufacturer))
		labels[labelPrefix+"instance-gpu-name"] = strings.ToLower(aws.ToString(g.Name))
		labels[labelPrefix+"instance-gpu-manufacturer"] = s.GPUVendor
		labels[labelPrefix+"instance-gpu-count"] = strconv.Itoa(int(s.GPUs))
		if g.MemoryInfo != nil {
			labels[labelPrefix+"instance-gpu-memory"] = strconv.Itoa(int(aws.ToInt32(g.MemoryInfo.SizeInMiB)))
		}
	}
	if in.NeuronInfo != nil {
		for _, d := range in.NeuronInfo.NeuronDevices {
			s.Neuron += aws.ToInt32(d.Count)
		}
	}
	ti.labels = labels
	ti.capacity, ti.allocatable = capacityAndAllocatable(s)
	return ti
}

// familyScheme matches an instance family: category letters, an optional
// high-memory "-<n>tb" part (u-6tb1), then the generation digits.
var familyScheme = regexp.MustCompile(`^([a-z]+)(-[0-9]+tb)?([0-9]+)`)

// splitFamily splits "m7gd" into category "m" and generation "7", and
// "u-6tb1" into "u" and "1", as Karpenter labels them.
func splitFamily(family string) (category, generation string) {
	m := familyScheme.FindStringSubmatch(family)
	if m == nil {
		return family, ""
	}
	return m[1], m[3]
}
