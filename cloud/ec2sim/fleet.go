package ec2sim

import (
	"fmt"
	"sort"
	"strconv"
)

// fleetOverride is one instance-type × subnet choice of a CreateFleet call.
type fleetOverride struct {
	ltID, ltName, version string
	itype, subnetID, zone string
	imageID               string
	priority, maxPrice    float64
	hasPriority           bool
	weight                string
	maxPriceRaw           string
	priorityRaw           string
}

type fleetLaunch struct {
	ov        fleetOverride
	lifecycle string
	ids       []string
}

type fleetError struct {
	ov            fleetOverride
	lifecycle     string
	code, message string
}

// fleetRecord is what a ClientToken replays: the original answer.
type fleetRecord struct {
	fleetID   string
	canonical string
	launches  []fleetLaunch
	errors    []fleetError
}

func (s *Sim) createFleet(p *params, w *xw) *apiError {
	if t := p.str("Type"); t != "instant" {
		return badParam("The simulator supports only fleets of Type=instant (got " + strconv.Quote(t) + ")")
	}
	total := p.int("TargetCapacitySpecification.TotalTargetCapacity", 0)
	if total <= 0 {
		return missingParam("TargetCapacitySpecification.TotalTargetCapacity")
	}
	def := p.str("TargetCapacitySpecification.DefaultTargetCapacityType")
	odT := p.int("TargetCapacitySpecification.OnDemandTargetCapacity", 0)
	spT := p.int("TargetCapacitySpecification.SpotTargetCapacity", 0)
	var want = map[string]int{}
	switch def {
	case "spot":
		want["on-demand"] = min(odT, total)
		want["spot"] = total - want["on-demand"]
	case "on-demand", "capacity-block", "reserved-capacity":
		// capacity-block and reserved-capacity are on-demand launches into
		// the capacity block or interruptible reservation the template names.
		want["spot"] = min(spT, total)
		want["on-demand"] = total - want["spot"]
	default:
		return badParam("TargetCapacitySpecification.DefaultTargetCapacityType must be spot, on-demand, capacity-block or reserved-capacity")
	}
	token := p.str("ClientToken")
	canon := p.canonical()

	s.mu.Lock()
	defer s.mu.Unlock()
	if token != "" {
		if rec := s.fleets[token]; rec != nil {
			if rec.canonical != canon {
				return &apiError{Status: 400, Code: "IdempotentParameterMismatch", Message: "Client token " + token + " was used with different parameters"}
			}
			s.metrics.replays.Inc()
			s.writeFleet(w, rec)
			return nil
		}
	}
	var ovs []fleetOverride
	instTags := p.tagSpecs("TagSpecification")["instance"]
	volTags := p.tagSpecs("TagSpecification")["volume"]
	for _, n := range p.indices("LaunchTemplateConfigs") {
		base := idx("LaunchTemplateConfigs", n)
		ltID := p.str(base + ".LaunchTemplateSpecification.LaunchTemplateId")
		ltName := p.str(base + ".LaunchTemplateSpecification.LaunchTemplateName")
		lt, aerr := s.templateLocked(ltID, ltName)
		if aerr != nil {
			return aerr
		}
		version := p.str(base + ".LaunchTemplateSpecification.Version")
		ns := p.indices(base + ".Overrides")
		if len(ns) == 0 {
			// No overrides: the template alone, in the first zone.
			ovs = append(ovs, fleetOverride{ltID: lt.id, ltName: lt.name, version: version, itype: lt.instType})
			continue
		}
		for _, m := range ns {
			ob := idx(base+".Overrides", m)
			ov := fleetOverride{
				ltID: lt.id, ltName: lt.name, version: version,
				itype: p.str(ob + ".InstanceType"), subnetID: p.str(ob + ".SubnetId"),
				zone: p.str(ob + ".AvailabilityZone"), imageID: p.str(ob + ".ImageId"),
				weight: p.str(ob + ".WeightedCapacity"), maxPriceRaw: p.str(ob + ".MaxPrice"),
				priorityRaw: p.str(ob + ".Priority"),
			}
			if ov.itype == "" {
				ov.itype = lt.instType
			}
			ov.maxPrice, _ = p.float(ob + ".MaxPrice")
			ov.priority, ov.hasPriority = p.float(ob + ".Priority")
			ovs = append(ovs, ov)
		}
	}
	if len(ovs) == 0 {
		return missingParam("LaunchTemplateConfigs")
	}
	for i := range ovs {
		ov := &ovs[i]
		if ov.itype == "" {
			return badParam("An instance type is required in the launch template or its overrides")
		}
		switch {
		case ov.subnetID != "":
			sn := s.subnetByID(ov.subnetID)
			if sn == nil {
				return &apiError{Status: 400, Code: "InvalidSubnetID.NotFound", Message: fmt.Sprintf("The subnet ID '%s' does not exist", ov.subnetID)}
			}
			if ov.zone != "" && ov.zone != sn.zone {
				return badParam("Subnet " + sn.id + " is not in Availability Zone " + ov.zone)
			}
			ov.zone = sn.zone
		case ov.zone != "":
			if sn := s.subnetForZone(ov.zone); sn != nil {
				ov.subnetID = sn.id
			}
		default:
			ov.subnetID, ov.zone = s.subnets[0].id, s.subnets[0].zone
		}
	}
	rec := &fleetRecord{fleetID: "fleet-" + newRequestID(), canonical: canon}
	now := s.clock.Now()
	reservation := s.nextID("r")
	strategies := map[string]string{
		"spot":      p.str("SpotOptions.AllocationStrategy"),
		"on-demand": p.str("OnDemandOptions.AllocationStrategy"),
	}
	// Spot first, as EC2 fills both parts of a mixed fleet independently.
	for _, capType := range []string{"spot", "on-demand"} {
		need := want[capType]
		if need == 0 {
			continue
		}
		cands := s.orderCandidates(ovs, capType, strategies[capType])
		for _, ov := range cands {
			if need == 0 {
				break
			}
			var launched []string
			lifecycle := capType
			for need > 0 {
				rc, code, msg := s.reservationForLocked(s.templates[ov.ltID], ov.itype, ov.zone, capType, def)
				if code == "" && rc.cr == nil {
					// Capacity held by a reservation is not drawn from the pool.
					code, msg = s.poolErrorLocked(ov.itype, ov.zone, capType, ov.maxPrice)
				}
				if code == "" {
					code, msg = s.imageErrorLocked(ov)
				}
				if code == "" {
					code, msg = s.interfaceErrorLocked(ov)
				}
				pgID, partition := "", 0
				if code == "" {
					pgID, partition, code, msg = s.placementLocked(s.templates[ov.ltID], ov.itype, ov.zone)
				}
				if code != "" {
					rec.errors = append(rec.errors, fleetError{ov: ov, lifecycle: capType, code: code, message: msg})
					s.metrics.fleetErrors.WithLabelValues(code).Inc()
					break
				}
				lt := s.templates[ov.ltID]
				img := ov.imageID
				if img == "" {
					img = lt.imageID
				}
				ls := launchSpec{
					itype: ov.itype, zone: ov.zone, subnetID: ov.subnetID, capType: capType, imageID: img,
					clientToken: token, fleetID: rec.fleetID, templateID: lt.id, userData: lt.userData, sgIDs: lt.sgIDs,
					instTags: mergeTags(lt.tagSpecs["instance"], instTags), volTags: mergeTags(lt.tagSpecs["volume"], volTags),
				}
				if rc.cr != nil {
					ls.capRes, ls.capResTargeted = rc.cr, rc.targeted
				}
				ls.pgID, ls.partition = pgID, partition
				lifecycle = lifecycleOf(capType, rc)
				in, aerr := s.launchLocked(ls, reservation, now)
				if aerr != nil {
					rec.errors = append(rec.errors, fleetError{ov: ov, lifecycle: capType, code: aerr.Code, message: aerr.Message})
					break
				}
				launched = append(launched, in.id)
				need--
			}
			if len(launched) > 0 {
				rec.launches = append(rec.launches, fleetLaunch{ov: ov, lifecycle: lifecycle, ids: launched})
			}
		}
	}
	if token != "" {
		s.fleets[token] = rec
	}
	s.writeFleet(w, rec)
	return nil
}

// interfaceErrorLocked refuses an EFA interface (interfaceType efa or
// efa-only in the template's layout) on an instance type without EFA, as
// EC2 does, and a network card index the type does not have.
func (s *Sim) interfaceErrorLocked(ov fleetOverride) (string, string) {
	lt := s.templates[ov.ltID]
	if lt == nil {
		return "", ""
	}
	t, ok := s.catalogType(ov.itype)
	if !ok {
		return "", ""
	}
	if lt.data["LaunchTemplateData.CpuOptions.NestedVirtualization"] == "enabled" && !nestedVirtSupported(&t) {
		return "InvalidParameterCombination", fmt.Sprintf("Nested virtualization is not supported for instance type '%s'.", ov.itype)
	}
	_, efa := t.Resources["vpc.amazonaws.com/efa"]
	for i := 1; ; i++ {
		pre := fmt.Sprintf("LaunchTemplateData.NetworkInterface.%d.", i)
		typ, dev := lt.data[pre+"InterfaceType"], lt.data[pre+"DeviceIndex"]
		if typ == "" && dev == "" {
			return "", ""
		}
		if (typ == "efa" || typ == "efa-only") && !efa {
			return "InvalidParameterCombination", fmt.Sprintf("The instance type '%s' does not support Elastic Fabric Adapter (EFA) network interfaces.", ov.itype)
		}
		if card := lt.data[pre+"NetworkCardIndex"]; card != "" && card != "0" && !efa {
			return "InvalidParameterValue", fmt.Sprintf("Network card index %s is not valid for instance type '%s'.", card, ov.itype)
		}
	}
}

func (s *Sim) imageErrorLocked(ov fleetOverride) (string, string) {
	img := ov.imageID
	if img == "" {
		if lt := s.templates[ov.ltID]; lt != nil {
			img = lt.imageID
		}
	}
	if img == "" {
		return "InvalidParameterValue", "The launch template has no image id and the override supplies none"
	}
	im := s.imageByID(img)
	if im == nil {
		return "InvalidAMIID.NotFound", fmt.Sprintf("The image id '[%s]' does not exist", img)
	}
	t, _ := s.catalogType(ov.itype)
	if im.arch != ec2Arch(t.Arch) {
		return "InvalidParameterValue", fmt.Sprintf("The architecture '%s' of the specified instance type does not match the architecture '%s' of the specified AMI.", ec2Arch(t.Arch), im.arch)
	}
	return "", ""
}

func mergeTags(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// orderCandidates sorts the overrides the way the allocation strategy
// would try them. The simulator treats unlimited pools as the deepest.
func (s *Sim) orderCandidates(ovs []fleetOverride, capType, strategy string) []fleetOverride {
	type cand struct {
		ov    fleetOverride
		price float64
		depth int
	}
	cs := make([]cand, 0, len(ovs))
	for _, ov := range ovs {
		depth := s.poolLocked(poolKey{ov.itype, ov.zone, capType}).remaining
		if depth < 0 {
			depth = 1 << 30
		}
		cs = append(cs, cand{ov, s.priceLocked(ov.itype, ov.zone, capType), depth})
	}
	less := func(a, b cand) bool {
		// Overrides with no price here (unknown type, no spot market) last.
		if (a.price > 0) != (b.price > 0) {
			return a.price > 0
		}
		switch strategy {
		case "capacity-optimized":
			if a.depth != b.depth {
				return a.depth > b.depth
			}
		case "prioritized", "capacity-optimized-prioritized":
			if a.ov.hasPriority != b.ov.hasPriority {
				return a.ov.hasPriority
			}
			if a.ov.priority != b.ov.priority {
				return a.ov.priority < b.ov.priority
			}
		}
		if a.price != b.price {
			return a.price < b.price
		}
		// price-capacity-optimized: among equal prices, the deeper pool.
		return a.depth > b.depth
	}
	sort.SliceStable(cs, func(i, j int) bool { return less(cs[i], cs[j]) })
	out := make([]fleetOverride, len(cs))
	for i, c := range cs {
		out[i] = c.ov
	}
	return out
}

func writeLTAndOverrides(w *xw, ov fleetOverride) {
	w.open("launchTemplateAndOverrides")
	w.open("launchTemplateSpecification")
	w.elem("launchTemplateId", ov.ltID)
	w.opt("version", ov.version)
	w.close("launchTemplateSpecification")
	w.open("overrides")
	w.elem("instanceType", ov.itype)
	w.opt("subnetId", ov.subnetID)
	w.opt("availabilityZone", ov.zone)
	w.opt("maxPrice", ov.maxPriceRaw)
	w.opt("priority", ov.priorityRaw)
	w.opt("weightedCapacity", ov.weight)
	w.opt("imageId", ov.imageID)
	w.close("overrides")
	w.close("launchTemplateAndOverrides")
}

func (s *Sim) writeFleet(w *xw, rec *fleetRecord) {
	w.elem("fleetId", rec.fleetID)
	w.open("errorSet")
	for _, e := range rec.errors {
		w.open("item")
		writeLTAndOverrides(w, e.ov)
		w.elem("lifecycle", e.lifecycle)
		w.elem("errorCode", e.code)
		w.elem("errorMessage", e.message)
		w.close("item")
	}
	w.close("errorSet")
	w.open("fleetInstanceSet")
	for _, l := range rec.launches {
		w.open("item")
		writeLTAndOverrides(w, l.ov)
		w.elem("lifecycle", l.lifecycle)
		w.open("instanceIds")
		for _, id := range l.ids {
			w.elem("item", id)
		}
		w.close("instanceIds")
		w.elem("instanceType", l.ov.itype)
		w.opt("subnetId", l.ov.subnetID)
		w.close("item")
	}
	w.close("fleetInstanceSet")
}

// runInstances supports the simple form: ImageId or LaunchTemplate,
// InstanceType, SubnetId, MinCount/MaxCount, spot via InstanceMarketOptions.
func (s *Sim) runInstances(p *params, w *xw) *apiError {
	minC, maxC := p.int("MinCount", 1), p.int("MaxCount", 1)
	if minC < 1 || maxC < minC {
		return badParam("MinCount and MaxCount must be positive and MinCount <= MaxCount")
	}
	token := p.str("ClientToken")
	s.mu.Lock()
	defer s.mu.Unlock()
	if token != "" {
		var existing []*instance
		for _, id := range s.order {
			if in := s.instances[id]; in.clientToken == token && in.fleetID == "" {
				existing = append(existing, in)
			}
		}
		if len(existing) > 0 {
			s.writeReservation(w, existing)
			return nil
		}
	}
	var lt *launchTemplate
	if id, name := p.str("LaunchTemplate.LaunchTemplateId"), p.str("LaunchTemplate.LaunchTemplateName"); id != "" || name != "" {
		var aerr *apiError
		if lt, aerr = s.templateLocked(id, name); aerr != nil {
			return aerr
		}
	} else {
		lt = &launchTemplate{}
	}
	ov := fleetOverride{ltID: lt.id, itype: p.str("InstanceType"), subnetID: p.str("SubnetId"), imageID: p.str("ImageId"), zone: p.str("Placement.AvailabilityZone")}
	if ov.itype == "" {
		ov.itype = lt.instType
	}
	if ov.imageID == "" {
		ov.imageID = lt.imageID
	}
	if ov.subnetID == "" {
		sn := s.subnets[0]
		if ov.zone != "" {
			if z := s.subnetForZone(ov.zone); z != nil {
				sn = z
			}
		}
		ov.subnetID = sn.id
	}
	sn := s.subnetByID(ov.subnetID)
	if sn == nil {
		return &apiError{Status: 400, Code: "InvalidSubnetID.NotFound", Message: fmt.Sprintf("The subnet ID '%s' does not exist", ov.subnetID)}
	}
	ov.zone = sn.zone
	capType := "on-demand"
	if p.str("InstanceMarketOptions.MarketType") == "spot" {
		capType = "spot"
	}
	maxPrice, _ := p.float("InstanceMarketOptions.SpotOptions.MaxPrice")
	if code, msg := s.poolErrorLocked(ov.itype, ov.zone, capType, maxPrice); code != "" {
		return &apiError{Status: 500, Code: code, Message: msg}
	}
	if s.imageByID(ov.imageID) == nil {
		return &apiError{Status: 400, Code: "InvalidAMIID.NotFound", Message: fmt.Sprintf("The image id '[%s]' does not exist", ov.imageID)}
	}
	userData := p.str("UserData")
	if userData == "" {
		userData = lt.userData
	}
	sgs := p.list("SecurityGroupId")
	if len(sgs) == 0 {
		sgs = lt.sgIDs
	}
	specs := p.tagSpecs("TagSpecification")
	reservation := s.nextID("r")
	now := s.clock.Now()
	var out []*instance
	for i := 0; i < maxC; i++ {
		if code, _ := s.poolErrorLocked(ov.itype, ov.zone, capType, maxPrice); code != "" {
			break
		}
		in, aerr := s.launchLocked(launchSpec{
			itype: ov.itype, zone: ov.zone, subnetID: ov.subnetID, capType: capType, imageID: ov.imageID,
			clientToken: token, templateID: lt.id, userData: userData, sgIDs: sgs,
			instTags: mergeTags(lt.tagSpecs["instance"], specs["instance"]), volTags: mergeTags(lt.tagSpecs["volume"], specs["volume"]),
		}, reservation, now)
		if aerr != nil {
			return aerr
		}
		out = append(out, in)
	}
	if len(out) < minC {
		return &apiError{Status: 500, Code: "InsufficientInstanceCapacity", Message: "Insufficient capacity."}
	}
	s.writeReservation(w, out)
	return nil
}

func (s *Sim) writeReservation(w *xw, ins []*instance) {
	w.elem("reservationId", ins[0].reservationID)
	w.elem("ownerId", s.cfg.AccountID)
	w.open("groupSet")
	w.close("groupSet")
	w.open("instancesSet")
	for _, in := range ins {
		s.writeInstance(w, in)
	}
	w.close("instancesSet")
}
