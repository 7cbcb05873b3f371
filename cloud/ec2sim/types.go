package ec2sim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dovetail-dev/dovetail/catalog"
)

// enisFor picks a (network interfaces, IPv4 per interface) pair whose
// Karpenter max-pods figure, ENIs × (IPs − 1) + 2, equals the catalogue's
// maxPods, so a provider that derives pods from DescribeInstanceTypes gets
// the same answer as one that reads the catalogue.
func enisFor(maxPods int) (int, int) {
	n := maxPods - 2
	if n <= 0 {
		return 2, 2
	}
	for _, enis := range []int{3, 4, 2, 8, 15, 6, 7, 5, 9, 10, 11, 12, 13, 14, 16, 1} {
		if n%enis == 0 && n/enis+1 <= 64 {
			return enis, n/enis + 1
		}
	}
	return 1, n + 1
}

func (s *Sim) typeOffered(t *catalog.Type) bool {
	_, ok := t.OnDemandPrice(s.cfg.Region)
	return ok
}

func (s *Sim) describeInstanceTypes(p *params, w *xw) *apiError {
	names := p.list("InstanceType")
	var kept []catalog.Type
	if len(names) > 0 {
		for _, n := range names {
			t, ok := s.catalogType(n)
			if !ok || !s.typeOffered(&t) {
				return &apiError{Status: 400, Code: "InvalidInstanceType", Message: fmt.Sprintf("The following supplied instance types do not exist: [%s]", n)}
			}
			kept = append(kept, t)
		}
	} else {
		for _, t := range s.cfg.Catalog.Types() {
			if s.typeOffered(&t) {
				kept = append(kept, t)
			}
		}
	}
	fs := p.filters()
	var out []catalog.Type
	for _, t := range kept {
		ok := true
		for _, f := range fs {
			switch f.Name {
			case "instance-type":
				ok = ok && matchAny(f.Values, t.Name)
			case "processor-info.supported-architecture":
				ok = ok && matchAny(f.Values, ec2Arch(t.Arch))
			case "current-generation":
				ok = ok && matchAny(f.Values, "true")
			case "bare-metal":
				ok = ok && matchAny(f.Values, strconv.FormatBool(t.BareMetal))
			case "vcpu-info.default-vcpus":
				ok = ok && matchAny(f.Values, strconv.Itoa(t.VCPU))
			case "memory-info.size-in-mib":
				ok = ok && matchAny(f.Values, strconv.FormatInt(t.MemoryMiB, 10))
			case "hypervisor":
				ok = ok && matchAny(f.Values, t.Hypervisor)
			case "supported-usage-class":
				ok = ok && (matchAny(f.Values, "on-demand") || (matchAny(f.Values, "spot") && len(t.SpotPrices(s.cfg.Region)) > 0))
			default:
				return badParam("The filter '" + f.Name + "' is invalid")
			}
		}
		if ok {
			out = append(out, t)
		}
	}
	pg, next, aerr := page(p, out, 100)
	if aerr != nil {
		return aerr
	}
	w.open("instanceTypeSet")
	for i := range pg {
		s.writeInstanceType(w, &pg[i])
	}
	w.close("instanceTypeSet")
	w.opt("nextToken", next)
	return nil
}

func (s *Sim) writeInstanceType(w *xw, t *catalog.Type) {
	w.open("item")
	w.elem("instanceType", t.Name)
	w.boolElem("currentGeneration", true)
	w.boolElem("freeTierEligible", false)
	w.open("supportedUsageClasses")
	w.elem("item", "on-demand")
	if len(t.SpotPrices(s.cfg.Region)) > 0 {
		w.elem("item", "spot")
	}
	w.close("supportedUsageClasses")
	w.open("supportedRootDeviceTypes")
	w.elem("item", "ebs")
	w.close("supportedRootDeviceTypes")
	w.open("supportedVirtualizationTypes")
	w.elem("item", "hvm")
	w.close("supportedVirtualizationTypes")
	w.boolElem("bareMetal", t.BareMetal)
	w.opt("hypervisor", t.Hypervisor)
	w.open("processorInfo")
	w.open("supportedArchitectures")
	w.elem("item", ec2Arch(t.Arch))
	w.close("supportedArchitectures")
	if mhz, err := strconv.ParseFloat(t.Labels["karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz"], 64); err == nil {
		w.elem("sustainedClockSpeedInGhz", strconv.FormatFloat(mhz/1000, 'f', -1, 64))
	}
	switch t.Labels["karpenter.k8s.aws/instance-cpu-manufacturer"] {
	case "aws":
		w.elem("manufacturer", "AWS")
	case "intel":
		w.elem("manufacturer", "Intel")
	case "amd":
		w.elem("manufacturer", "AMD")
	}
	if nestedVirtSupported(t) {
		w.open("supportedFeatures")
		w.elem("item", "nested-virtualization")
		w.close("supportedFeatures")
	}
	w.close("processorInfo")
	w.open("vCpuInfo")
	w.intElem("defaultVCpus", int64(t.VCPU))
	threads := 2
	if t.Arch == "arm64" || t.VCPU == 1 {
		threads = 1
	}
	w.intElem("defaultCores", int64(t.VCPU/threads))
	w.intElem("defaultThreadsPerCore", int64(threads))
	w.close("vCpuInfo")
	w.open("memoryInfo")
	w.intElem("sizeInMiB", t.MemoryMiB)
	w.close("memoryInfo")
	w.boolElem("instanceStorageSupported", t.LocalNVMeGiB > 0)
	if t.LocalNVMeGiB > 0 {
		w.open("instanceStorageInfo")
		w.intElem("totalSizeInGB", int64(t.LocalNVMeGiB))
		w.open("disks")
		w.open("item")
		w.intElem("sizeInGB", int64(t.LocalNVMeGiB))
		w.intElem("count", 1)
		w.elem("type", "ssd")
		w.close("item")
		w.close("disks")
		w.elem("nvmeSupport", "required")
		w.elem("encryptionSupport", "required")
		w.close("instanceStorageInfo")
	}
	w.open("ebsInfo")
	w.elem("ebsOptimizedSupport", "default")
	w.elem("encryptionSupport", "supported")
	w.elem("nvmeSupport", "required")
	w.close("ebsInfo")
	enis, ips := enisFor(t.MaxPods)
	w.open("networkInfo")
	bw := t.NetworkBandwidthMbps
	perf := "Up to 10 Gigabit"
	if bw >= 1000 {
		perf = strconv.Itoa(bw/1000) + " Gigabit"
	}
	w.elem("networkPerformance", perf)
	w.intElem("maximumNetworkInterfaces", int64(enis))
	w.intElem("maximumNetworkCards", 1)
	w.intElem("defaultNetworkCardIndex", 0)
	w.open("networkCards")
	w.open("item")
	w.intElem("networkCardIndex", 0)
	w.elem("networkPerformance", perf)
	w.intElem("maximumNetworkInterfaces", int64(enis))
	if bw > 0 {
		w.elem("baselineBandwidthInGbps", strconv.FormatFloat(float64(bw)/1000, 'f', -1, 64))
		w.elem("peakBandwidthInGbps", strconv.FormatFloat(float64(bw)/1000, 'f', -1, 64))
	}
	w.close("item")
	w.close("networkCards")
	w.intElem("ipv4AddressesPerInterface", int64(ips))
	w.intElem("ipv6AddressesPerInterface", int64(ips))
	w.boolElem("ipv6Supported", true)
	w.elem("enaSupport", "required")
	_, efa := t.Resources["vpc.amazonaws.com/efa"]
	w.boolElem("efaSupported", efa)
	w.boolElem("encryptionInTransitSupported", t.Labels["karpenter.k8s.aws/instance-encryption-in-transit-supported"] == "true")
	w.close("networkInfo")
	if g := t.GPU; g != nil {
		w.open("gpuInfo")
		w.open("gpus")
		w.open("item")
		w.elem("name", g.Name)
		w.elem("manufacturer", g.Manufacturer)
		w.intElem("count", int64(g.Count))
		w.open("memoryInfo")
		w.intElem("sizeInMiB", g.MemoryMiB)
		w.close("memoryInfo")
		w.close("item")
		w.close("gpus")
		w.intElem("totalGpuMemoryInMiB", g.MemoryMiB*int64(g.Count))
		w.close("gpuInfo")
	}
	w.boolElem("hibernationSupported", false)
	w.boolElem("burstablePerformanceSupported", strings.HasPrefix(t.Name, "t"))
	w.boolElem("dedicatedHostsSupported", true)
	w.boolElem("autoRecoverySupported", !t.BareMetal && t.LocalNVMeGiB == 0)
	w.open("supportedBootModes")
	w.elem("item", "uefi")
	if t.Arch == "amd64" {
		w.elem("item", "legacy-bios")
	}
	w.close("supportedBootModes")
	w.elem("nitroEnclavesSupport", "unsupported")
	w.elem("nitroTpmSupport", "unsupported")
	w.open("placementGroupInfo")
	w.open("supportedStrategies")
	for _, st := range placementStrategies(t) {
		w.elem("item", st)
	}
	w.close("supportedStrategies")
	w.close("placementGroupInfo")
	w.close("item")
}

// nestedVirtSupported is the simulator's model of which types report
// nested-virtualization in ProcessorInfo.SupportedFeatures: the
// 8th-generation Intel Nitro families (c8i, m8i, r8i and their -flex
// variants), the ones AWS introduced nested virtualization on.
func nestedVirtSupported(t *catalog.Type) bool {
	fam := t.Labels["karpenter.k8s.aws/instance-family"]
	return t.Hypervisor == "nitro" && (strings.HasPrefix(fam, "c8i") || strings.HasPrefix(fam, "m8i") || strings.HasPrefix(fam, "r8i"))
}

// placementStrategies: burstable (t*) types cannot join cluster placement
// groups; every type supports partition and spread.
func placementStrategies(t *catalog.Type) []string {
	if strings.HasPrefix(t.Name, "t") {
		return []string{"partition", "spread"}
	}
	return []string{"cluster", "partition", "spread"}
}

func (s *Sim) describeInstanceTypeOfferings(p *params, w *xw) *apiError {
	lt := p.str("LocationType")
	if lt == "" {
		lt = "region"
	}
	if lt != "region" && lt != "availability-zone" && lt != "availability-zone-id" {
		return badParam("Invalid LocationType " + lt)
	}
	type off struct{ itype, loc string }
	var all []off
	for _, t := range s.cfg.Catalog.Types() {
		if !s.typeOffered(&t) {
			continue
		}
		switch lt {
		case "region":
			all = append(all, off{t.Name, s.cfg.Region})
		case "availability-zone":
			for _, z := range s.cfg.Zones {
				all = append(all, off{t.Name, z})
			}
		default:
			for i := range s.cfg.Zones {
				all = append(all, off{t.Name, zoneID(s.cfg.Region, i)})
			}
		}
	}
	var kept []off
	for _, o := range all {
		ok := true
		for _, f := range p.filters() {
			switch f.Name {
			case "instance-type":
				ok = ok && matchAny(f.Values, o.itype)
			case "location":
				ok = ok && matchAny(f.Values, o.loc)
			default:
				return badParam("The filter '" + f.Name + "' is invalid")
			}
		}
		if ok {
			kept = append(kept, o)
		}
	}
	pg, next, aerr := page(p, kept, 1000)
	if aerr != nil {
		return aerr
	}
	w.open("instanceTypeOfferingSet")
	for _, o := range pg {
		w.open("item")
		w.elem("instanceType", o.itype)
		w.elem("locationType", lt)
		w.elem("location", o.loc)
		w.close("item")
	}
	w.close("instanceTypeOfferingSet")
	w.opt("nextToken", next)
	return nil
}

// spotPriceLocked is the current spot price of a type in a zone: an
// override set through the control API, else the catalogue's per-AZ price
// for the zone's position (as catalog.InstanceTypes assigns them), else
// the region minimum.
func (s *Sim) spotPriceLocked(itype, zone string) (float64, bool) {
	if h := s.spotHistory(itype, zone); len(h) > 0 {
		return h[len(h)-1].price, true
	}
	return s.catalogSpotPrice(itype, zone)
}

func (s *Sim) catalogSpotPrice(itype, zone string) (float64, bool) {
	t, ok := s.catalogType(itype)
	if !ok {
		return 0, false
	}
	prices := t.SpotPrices(s.cfg.Region)
	if len(prices) == 0 {
		return 0, false
	}
	for i, z := range s.cfg.Zones {
		if z == zone {
			if i < len(prices) {
				return prices[i], true
			}
			return prices[0], true
		}
	}
	return 0, false
}

func (s *Sim) spotHistory(itype, zone string) []pricePoint {
	return s.history[poolKey{itype, zone, "spot"}]
}

// priceEpoch is the timestamp of the catalogue's prices: one hour before
// the simulator started, so "StartTime=now" queries still see them.
func (s *Sim) priceEpoch() time.Time { return s.started.Add(-time.Hour).Truncate(time.Second) }

func (s *Sim) describeSpotPriceHistory(p *params, w *xw) *apiError {
	types := p.list("InstanceType")
	descs := p.list("ProductDescription")
	az := p.str("AvailabilityZone")
	var start, end time.Time
	if v := p.str("StartTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return badParam("Invalid StartTime " + v)
		}
		start = t
	}
	if v := p.str("EndTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return badParam("Invalid EndTime " + v)
		}
		end = t
	}
	if len(descs) > 0 && !matchAny(descs, "Linux/UNIX") && !matchAny(descs, "Linux/UNIX (Amazon VPC)") {
		w.open("spotPriceHistorySet")
		w.close("spotPriceHistorySet")
		return nil
	}
	type rec struct {
		itype, zone string
		pricePoint
	}
	var out []rec
	s.mu.Lock()
	for _, t := range s.cfg.Catalog.Types() {
		if len(types) > 0 && !matchAny(types, t.Name) {
			continue
		}
		if len(t.SpotPrices(s.cfg.Region)) == 0 {
			continue
		}
		for _, z := range s.cfg.Zones {
			if az != "" && az != z {
				continue
			}
			ok := true
			for _, f := range p.filters() {
				switch f.Name {
				case "instance-type":
					ok = ok && matchAny(f.Values, t.Name)
				case "availability-zone":
					ok = ok && matchAny(f.Values, z)
				case "product-description":
					ok = ok && (matchAny(f.Values, "Linux/UNIX") || matchAny(f.Values, "Linux/UNIX (Amazon VPC)"))
				case "spot-price", "timestamp":
				default:
					s.mu.Unlock()
					return badParam("The filter '" + f.Name + "' is invalid")
				}
			}
			if !ok {
				continue
			}
			base, _ := s.catalogSpotPrice(t.Name, z)
			points := append([]pricePoint{{s.priceEpoch(), base}}, s.spotHistory(t.Name, z)...)
			// As on EC2, a window includes the price in force at its start.
			for i, pt := range points {
				if !end.IsZero() && pt.at.After(end) {
					break
				}
				if !start.IsZero() && i+1 < len(points) && !points[i+1].at.After(start) {
					continue
				}
				out = append(out, rec{t.Name, z, pt})
			}
		}
	}
	s.mu.Unlock()
	sort.SliceStable(out, func(a, b int) bool { return out[a].at.After(out[b].at) })
	pg, next, aerr := page(p, out, 1000)
	if aerr != nil {
		return aerr
	}
	w.open("spotPriceHistorySet")
	for _, r := range pg {
		w.open("item")
		w.elem("instanceType", r.itype)
		w.elem("productDescription", "Linux/UNIX")
		w.elem("spotPrice", strconv.FormatFloat(r.price, 'f', 6, 64))
		w.timeElem("timestamp", r.at)
		w.elem("availabilityZone", r.zone)
		w.close("item")
	}
	w.close("spotPriceHistorySet")
	w.opt("nextToken", next)
	return nil
}
