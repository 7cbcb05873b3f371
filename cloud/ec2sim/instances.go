package ec2sim

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// launchSpec is one fully resolved attempt to launch an instance.
type launchSpec struct {
	itype, zone, subnetID, capType, imageID, clientToken, fleetID, templateID string
	userData                                                                  string // base64
	sgIDs                                                                     []string
	instTags, volTags                                                         map[string]string
	// capRes is the capacity reservation the launch goes into (nil: none);
	// capResTargeted says the template named it.
	capRes         *capacityReservation
	capResTargeted bool
	pgID           string
	partition      int
}

// launchLocked creates one instance. The caller has checked the pool.
func (s *Sim) launchLocked(ls launchSpec, reservationID string, now time.Time) (*instance, *apiError) {
	sn := s.subnetByID(ls.subnetID)
	if sn == nil {
		return nil, &apiError{Status: 400, Code: "InvalidSubnetID.NotFound", Message: fmt.Sprintf("The subnet ID '%s' does not exist", ls.subnetID)}
	}
	ip, ok := sn.allocIP()
	if !ok {
		return nil, &apiError{Status: 400, Code: "InsufficientFreeAddressesInSubnet", Message: "There are not enough free addresses in subnet '" + sn.id + "' to satisfy the requested number of instances."}
	}
	t, _ := s.catalogType(ls.itype)
	in := &instance{
		id: s.nextID("i"), itype: ls.itype, zone: sn.zone, subnetID: sn.id, vpcID: sn.vpcID, imageID: ls.imageID,
		arch: ec2Arch(t.Arch), capType: ls.capType, clientToken: ls.clientToken, fleetID: ls.fleetID,
		reservationID: reservationID, privateIP: ip.String(), privateDNS: s.privateDNSName(ip),
		launched: now, runAt: now.Add(s.cfg.BootDelay), state: statePending,
		tags: copyTags(ls.instTags), volumeTags: copyTags(ls.volTags), volumeID: s.nextID("vol"),
		sgIDs: ls.sgIDs, templateID: ls.templateID,
	}
	if ls.capType == "spot" {
		s.seq++
		in.spotRequestID = fmt.Sprintf("sir-%08x", 0x5a000000+s.seq)
	}
	if ls.userData != "" {
		if raw, err := base64.StdEncoding.DecodeString(ls.userData); err == nil {
			in.userData = raw
		} else {
			in.userData = []byte(ls.userData)
		}
	}
	if len(in.sgIDs) == 0 && len(s.sgs) > 0 {
		in.sgIDs = []string{s.sgs[0].id}
	}
	in.pgID, in.partition = ls.pgID, ls.partition
	in.capResPref = "open"
	if lt := s.templates[ls.templateID]; lt != nil {
		if v := lt.data["LaunchTemplateData.CapacityReservationSpecification.CapacityReservationPreference"]; v != "" {
			in.capResPref = v
		}
	}
	if cr := ls.capRes; cr != nil {
		cr.available--
		in.capResID, in.capResTargeted, in.inReservation = cr.id, ls.capResTargeted, true
	} else if p := s.poolLocked(poolKey{ls.itype, sn.zone, ls.capType}); p.remaining > 0 {
		p.remaining--
	}
	s.instances[in.id] = in
	s.order = append(s.order, in.id)
	s.metrics.launches.WithLabelValues(ls.capType).Inc()
	s.log.Info("instance launched", "id", in.id, "type", in.itype, "zone", in.zone, "capacityType", in.capType, "ip", in.privateIP)
	return in, nil
}

// instanceLifecycleLocked is the instanceLifecycle of a non-spot instance:
// capacity-block or interruptible-capacity-reservation for instances in
// such reservations, "" (EC2 omits it) for plain on-demand.
func (s *Sim) instanceLifecycleLocked(in *instance) string {
	cr := s.reservations[in.capResID]
	if cr == nil || !in.capResTargeted {
		return ""
	}
	switch {
	case cr.reservationType == "capacity-block":
		return "capacity-block"
	case cr.interruptible:
		return "interruptible-capacity-reservation"
	}
	return ""
}

func copyTags(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// liveSpotLocked counts spot instances that are not terminated.
func (s *Sim) liveSpotLocked() int {
	n := 0
	for _, in := range s.instances {
		if in.capType == "spot" && in.state != stateTerminated && in.state != stateShuttingDown {
			n++
		}
	}
	return n
}

// poolErrorLocked says why a pool cannot launch now ("" = it can).
func (s *Sim) poolErrorLocked(itype, zone, capType string, maxPrice float64) (code, msg string) {
	t, ok := s.catalogType(itype)
	if !ok || !s.typeOffered(&t) {
		return "Unsupported", fmt.Sprintf("Your requested instance type (%s) is not supported in your requested Availability Zone (%s).", itype, zone)
	}
	if s.subnetForZone(zone) == nil {
		return "Unsupported", fmt.Sprintf("The requested Availability Zone (%s) is not available.", zone)
	}
	if capType == "spot" {
		price, ok := s.spotPriceLocked(itype, zone)
		if !ok {
			return "UnfulfillableCapacity", "Unable to fulfill capacity due to your request configuration. Please adjust your request and try again."
		}
		if maxPrice > 0 && price > maxPrice {
			return "SpotMaxPriceTooLow", fmt.Sprintf("Your Spot request price of %g is lower than the minimum required Spot request fulfillment price of %g.", maxPrice, price)
		}
		if s.cfg.MaxSpotInstances > 0 && s.liveSpotLocked() >= s.cfg.MaxSpotInstances {
			return "MaxSpotInstanceCountExceeded", "Max spot instance count exceeded"
		}
	}
	p := s.poolLocked(poolKey{itype, zone, capType})
	if p.errorCode != "" {
		return p.errorCode, "The pool " + itype + "/" + zone + "/" + capType + " is failing with " + p.errorCode + " (simulated)."
	}
	if p.remaining == 0 {
		return "InsufficientInstanceCapacity", fmt.Sprintf("We currently do not have sufficient %s capacity in the Availability Zone you requested (%s). Our system will be working on provisioning additional capacity.", itype, zone)
	}
	return "", ""
}

func (s *Sim) priceLocked(itype, zone, capType string) float64 {
	if capType == "spot" {
		p, _ := s.spotPriceLocked(itype, zone)
		return p
	}
	t, _ := s.catalogType(itype)
	p, _ := t.OnDemandPrice(s.cfg.Region)
	return p
}

// ---- DescribeInstances / TerminateInstances / CreateTags ----

func (s *Sim) describeInstances(p *params, w *xw) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := p.list("InstanceId")
	for _, id := range ids {
		if s.instances[id] == nil {
			return &apiError{Status: 400, Code: "InvalidInstanceID.NotFound", Message: fmt.Sprintf("The instance ID '%s' does not exist", id)}
		}
	}
	fs := p.filters()
	var kept []*instance
	for _, id := range s.order {
		in := s.instances[id]
		if len(ids) > 0 && !matchAny(ids, in.id) {
			continue
		}
		ok := true
		for _, f := range fs {
			if m, isTag := matchTags(f, in.tags); isTag {
				ok = ok && m
				continue
			}
			switch f.Name {
			case "instance-state-name":
				ok = ok && matchAny(f.Values, in.state)
			case "instance-state-code":
				ok = ok && matchAny(f.Values, strconv.FormatInt(stateCode(in.state), 10))
			case "instance-id":
				ok = ok && matchAny(f.Values, in.id)
			case "instance-type":
				ok = ok && matchAny(f.Values, in.itype)
			case "availability-zone":
				ok = ok && matchAny(f.Values, in.zone)
			case "subnet-id":
				ok = ok && matchAny(f.Values, in.subnetID)
			case "vpc-id":
				ok = ok && matchAny(f.Values, in.vpcID)
			case "image-id":
				ok = ok && matchAny(f.Values, in.imageID)
			case "private-ip-address":
				ok = ok && matchAny(f.Values, in.privateIP)
			case "private-dns-name":
				ok = ok && matchAny(f.Values, in.privateDNS)
			case "client-token":
				ok = ok && matchAny(f.Values, in.clientToken)
			case "instance-lifecycle":
				ok = ok && in.capType == "spot" && matchAny(f.Values, "spot")
			case "reservation-id":
				ok = ok && matchAny(f.Values, in.reservationID)
			default:
				return badParam("The filter '" + f.Name + "' is invalid")
			}
		}
		if ok {
			kept = append(kept, in)
		}
	}
	pg, next, aerr := page(p, kept, 1000)
	if aerr != nil {
		return aerr
	}
	w.open("reservationSet")
	for i := 0; i < len(pg); {
		j := i
		for j < len(pg) && pg[j].reservationID == pg[i].reservationID {
			j++
		}
		w.open("item")
		w.elem("reservationId", pg[i].reservationID)
		w.elem("ownerId", s.cfg.AccountID)
		w.open("groupSet")
		w.close("groupSet")
		w.open("instancesSet")
		for _, in := range pg[i:j] {
			s.writeInstance(w, in)
		}
		w.close("instancesSet")
		w.close("item")
		i = j
	}
	w.close("reservationSet")
	w.opt("nextToken", next)
	return nil
}

func (s *Sim) sgName(id string) string {
	for _, g := range s.sgs {
		if g.id == id {
			return g.name
		}
	}
	return ""
}

func (s *Sim) writeInstance(w *xw, in *instance) {
	w.open("item")
	w.elem("instanceId", in.id)
	w.elem("imageId", in.imageID)
	w.open("instanceState")
	w.intElem("code", stateCode(in.state))
	w.elem("name", in.state)
	w.close("instanceState")
	if in.state != stateTerminated {
		w.elem("privateDnsName", in.privateDNS)
	} else {
		w.elem("privateDnsName", "")
	}
	w.elem("dnsName", "")
	w.elem("reason", in.stateReasonMsg)
	w.intElem("amiLaunchIndex", 0)
	w.elem("instanceType", in.itype)
	w.timeElem("launchTime", in.launched)
	w.open("placement")
	w.elem("availabilityZone", in.zone)
	if g := s.placementGroups[in.pgID]; g != nil {
		w.elem("groupName", g.name)
		w.elem("groupId", g.id)
		if in.partition > 0 {
			w.intElem("partitionNumber", int64(in.partition))
		}
	} else {
		w.elem("groupName", "")
	}
	w.elem("tenancy", "default")
	w.close("placement")
	w.open("monitoring")
	w.elem("state", "disabled")
	w.close("monitoring")
	if in.state != stateTerminated {
		w.elem("subnetId", in.subnetID)
		w.elem("vpcId", in.vpcID)
		w.elem("privateIpAddress", in.privateIP)
	}
	w.boolElem("sourceDestCheck", true)
	w.open("groupSet")
	for _, g := range in.sgIDs {
		w.open("item")
		w.elem("groupId", g)
		w.elem("groupName", s.sgName(g))
		w.close("item")
	}
	w.close("groupSet")
	if in.stateReason != "" {
		w.open("stateReason")
		w.elem("code", in.stateReason)
		w.elem("message", in.stateReasonMsg)
		w.close("stateReason")
	}
	w.elem("architecture", in.arch)
	w.elem("rootDeviceType", "ebs")
	w.elem("rootDeviceName", "/dev/xvda")
	w.open("blockDeviceMapping")
	if in.state != stateTerminated {
		w.open("item")
		w.elem("deviceName", "/dev/xvda")
		w.open("ebs")
		w.elem("volumeId", in.volumeID)
		w.elem("status", "attached")
		w.timeElem("attachTime", in.launched)
		w.boolElem("deleteOnTermination", true)
		w.close("ebs")
		w.close("item")
	}
	w.close("blockDeviceMapping")
	if in.capType == "spot" {
		w.elem("instanceLifecycle", "spot")
		w.elem("spotInstanceRequestId", in.spotRequestID)
	} else if lc := s.instanceLifecycleLocked(in); lc != "" {
		w.elem("instanceLifecycle", lc)
	}
	if in.capResID != "" {
		w.elem("capacityReservationId", in.capResID)
	}
	w.open("capacityReservationSpecification")
	if in.capResTargeted && in.capResID != "" {
		w.elem("capacityReservationPreference", "capacity-reservations-only")
		w.open("capacityReservationTarget")
		w.elem("capacityReservationId", in.capResID)
		w.close("capacityReservationTarget")
	} else {
		w.elem("capacityReservationPreference", in.capResPref)
	}
	w.close("capacityReservationSpecification")
	w.elem("virtualizationType", "hvm")
	w.opt("clientToken", in.clientToken)
	w.tagSet(in.tags)
	w.elem("hypervisor", "xen")
	w.boolElem("ebsOptimized", true)
	w.boolElem("enaSupport", true)
	w.open("metadataOptions")
	w.elem("state", "applied")
	w.elem("httpTokens", "required")
	w.intElem("httpPutResponseHopLimit", 2)
	w.elem("httpEndpoint", "enabled")
	w.close("metadataOptions")
	w.open("privateDnsNameOptions")
	w.elem("hostnameType", "ip-name")
	w.close("privateDnsNameOptions")
	w.elem("platformDetails", "Linux/UNIX")
	w.elem("usageOperation", "RunInstances")
	w.elem("bootMode", "uefi")
	w.elem("currentInstanceBootMode", "uefi")
	w.close("item")
}

func (s *Sim) terminateInstances(p *params, w *xw) *apiError {
	ids := p.list("InstanceId")
	if len(ids) == 0 {
		return missingParam("InstanceId")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.instances[id] == nil {
			return &apiError{Status: 400, Code: "InvalidInstanceID.NotFound", Message: fmt.Sprintf("The instance ID '%s' does not exist", id)}
		}
	}
	now := s.clock.Now()
	w.open("instancesSet")
	for _, id := range ids {
		in := s.instances[id]
		prev := in.state
		s.beginTerminateLocked(in, now, "Client.UserInitiatedShutdown", "Client.UserInitiatedShutdown: User initiated shutdown")
		w.open("item")
		w.elem("instanceId", id)
		w.open("currentState")
		w.intElem("code", stateCode(in.state))
		w.elem("name", in.state)
		w.close("currentState")
		w.open("previousState")
		w.intElem("code", stateCode(prev))
		w.elem("name", prev)
		w.close("previousState")
		w.close("item")
	}
	w.close("instancesSet")
	return nil
}

func (s *Sim) createTags(p *params, w *xw) *apiError {
	ids := p.list("ResourceId")
	if len(ids) == 0 {
		return missingParam("ResourceId")
	}
	tags := map[string]string{}
	for _, n := range p.indices("Tag") {
		k := p.str(idx("Tag", n) + ".Key")
		if k == "" {
			return badParam("Tag key must not be empty")
		}
		if strings.HasPrefix(k, "aws:") {
			return badParam("Tag keys starting with 'aws:' are reserved for internal use")
		}
		tags[k] = p.str(idx("Tag", n) + ".Value")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var targets []map[string]string
	for _, id := range ids {
		var m map[string]string
		switch {
		case strings.HasPrefix(id, "i-"):
			if in := s.instances[id]; in != nil {
				m = in.tags
			} else {
				return &apiError{Status: 400, Code: "InvalidInstanceID.NotFound", Message: fmt.Sprintf("The instance ID '%s' does not exist", id)}
			}
		case strings.HasPrefix(id, "ami-"):
			if im := s.imageByID(id); im != nil {
				m = im.tags
			} else {
				return &apiError{Status: 400, Code: "InvalidAMIID.NotFound", Message: fmt.Sprintf("The image id '[%s]' does not exist", id)}
			}
		case strings.HasPrefix(id, "lt-"):
			if lt := s.templates[id]; lt != nil {
				m = lt.tags
			} else {
				return &apiError{Status: 400, Code: "InvalidLaunchTemplateId.NotFound", Message: "The launch template ID '" + id + "' does not exist"}
			}
		case strings.HasPrefix(id, "subnet-"):
			if sn := s.subnetByID(id); sn != nil {
				m = sn.tags
			}
		case strings.HasPrefix(id, "sg-"):
			for _, g := range s.sgs {
				if g.id == id {
					m = g.tags
				}
			}
		case strings.HasPrefix(id, "vol-"):
			for _, in := range s.instances {
				if in.volumeID == id {
					m = in.volumeTags
				}
			}
		}
		if m == nil {
			return &apiError{Status: 400, Code: "InvalidID", Message: fmt.Sprintf("The ID '%s' is not valid", id)}
		}
		targets = append(targets, m)
	}
	for _, m := range targets {
		for k, v := range tags {
			m[k] = v
		}
	}
	w.boolElem("return", true)
	return nil
}

// sortedInstancesLocked returns live and recently terminated instances in launch order.
func (s *Sim) sortedInstancesLocked() []*instance {
	out := make([]*instance, 0, len(s.order))
	for _, id := range s.order {
		if in := s.instances[id]; in != nil {
			out = append(out, in)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].launched.Before(out[b].launched) })
	return out
}
