package ec2sim

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// Capacity reservation states, as EC2 names them.
const (
	crStateActive    = "active"
	crStateExpired   = "expired"
	crStateCancelled = "cancelled"
)

// capacityReservation is one On-Demand Capacity Reservation or capacity
// block. available counts down as instances launch into it and back up as
// they terminate, as EC2's AvailableInstanceCount does.
type capacityReservation struct {
	id, itype, zone, owner string
	platform, tenancy      string
	matchCriteria          string // open | targeted
	reservationType        string // default | capacity-block
	interruptible          bool
	total, available       int
	start, end, created    time.Time // end zero: unlimited
	state                  string
	tags                   map[string]string
}

// CapacityReservationSpec describes a reservation for
// Sim.CreateCapacityReservation. Capacity blocks and interruptible
// reservations cannot be made with EC2's CreateCapacityReservation (they
// are bought or shared), so the control API is how a test makes them.
type CapacityReservationSpec struct {
	InstanceType string `json:"instanceType"`
	Zone         string `json:"zone"`
	Count        int    `json:"count"`
	// InstanceMatchCriteria: open (default) takes any matching on-demand
	// launch that does not opt out; targeted only launches that name it.
	InstanceMatchCriteria string `json:"instanceMatchCriteria,omitempty"`
	// ReservationType: default (an ODCR) or capacity-block.
	ReservationType string `json:"reservationType,omitempty"`
	Interruptible   bool   `json:"interruptible,omitempty"`
	// EndDate: zero means the reservation never ends.
	EndDate time.Time `json:"endDate,omitempty"`
	// OwnerID defaults to the simulator's account (another value models a
	// reservation shared from another account).
	OwnerID string            `json:"ownerID,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"`
}

// CapacityReservationInfo is a reservation as the control API reports it.
type CapacityReservationInfo struct {
	ID                    string            `json:"id"`
	InstanceType          string            `json:"instanceType"`
	Zone                  string            `json:"zone"`
	OwnerID               string            `json:"ownerID"`
	InstanceMatchCriteria string            `json:"instanceMatchCriteria"`
	ReservationType       string            `json:"reservationType"`
	Interruptible         bool              `json:"interruptible"`
	Total                 int               `json:"totalInstanceCount"`
	Available             int               `json:"availableInstanceCount"`
	State                 string            `json:"state"`
	EndDate               *time.Time        `json:"endDate,omitempty"`
	Tags                  map[string]string `json:"tags,omitempty"`
}

// CreateCapacityReservation adds a reservation and returns its id.
func (s *Sim) CreateCapacityReservation(spec CapacityReservationSpec) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cr, aerr := s.newReservationLocked(spec)
	if aerr != nil {
		return "", aerr
	}
	return cr.id, nil
}

func (s *Sim) newReservationLocked(spec CapacityReservationSpec) (*capacityReservation, *apiError) {
	if spec.Count <= 0 {
		return nil, badParam("InstanceCount must be a positive integer")
	}
	if t, ok := s.catalogType(spec.InstanceType); !ok || !s.typeOffered(&t) {
		return nil, badParam(fmt.Sprintf("The instance type '%s' is not supported.", spec.InstanceType))
	}
	if s.subnetForZone(spec.Zone) == nil {
		return nil, badParam(fmt.Sprintf("The Availability Zone '%s' is not available.", spec.Zone))
	}
	imc := spec.InstanceMatchCriteria
	if imc == "" {
		imc = "open"
	}
	if imc != "open" && imc != "targeted" {
		return nil, badParam("InstanceMatchCriteria must be open or targeted")
	}
	rt := spec.ReservationType
	if rt == "" {
		rt = "default"
	}
	if rt != "default" && rt != "capacity-block" {
		return nil, badParam("ReservationType must be default or capacity-block")
	}
	if rt == "capacity-block" {
		if spec.Interruptible {
			return nil, badParam("A capacity block cannot be interruptible")
		}
		if spec.EndDate.IsZero() {
			return nil, badParam("A capacity block needs an end date")
		}
		// Capacity blocks accept only targeted launches.
		imc = "targeted"
	}
	now := s.clock.Now()
	if !spec.EndDate.IsZero() && !spec.EndDate.After(now) {
		return nil, badParam("The end date must be in the future")
	}
	owner := spec.OwnerID
	if owner == "" {
		owner = s.cfg.AccountID
	}
	s.seq++
	cr := &capacityReservation{
		id: fmt.Sprintf("cr-%017x", 0x0c0ffee00000000+s.seq), itype: spec.InstanceType, zone: spec.Zone, owner: owner,
		platform: "Linux/UNIX", tenancy: "default", matchCriteria: imc, reservationType: rt, interruptible: spec.Interruptible,
		total: spec.Count, available: spec.Count, start: now, end: spec.EndDate, created: now, state: crStateActive,
		tags: copyTags(spec.Tags),
	}
	if s.reservations == nil {
		s.reservations = map[string]*capacityReservation{}
	}
	s.reservations[cr.id] = cr
	s.log.Info("capacity reservation created", "id", cr.id, "type", cr.itype, "zone", cr.zone, "count", cr.total, "reservationType", rt, "match", imc)
	return cr, nil
}

// CancelCapacityReservation ends a reservation now, as EC2's
// CancelCapacityReservation: it stops taking launches and its instances
// keep running as ordinary on-demand instances.
func (s *Sim) CancelCapacityReservation(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cr := s.reservations[id]
	if cr == nil {
		return &apiError{Status: 400, Code: "InvalidCapacityReservationId.NotFound", Message: fmt.Sprintf("The capacity reservation ID '%s' does not exist", id)}
	}
	if cr.state != crStateActive {
		return &apiError{Status: 400, Code: "IncorrectState", Message: fmt.Sprintf("The capacity reservation '%s' is %s", id, cr.state)}
	}
	s.endReservationLocked(cr, crStateCancelled, s.clock.Now())
	return nil
}

// CapacityReservation reports one reservation.
func (s *Sim) CapacityReservation(id string) (CapacityReservationInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cr := s.reservations[id]
	if cr == nil {
		return CapacityReservationInfo{}, false
	}
	info := CapacityReservationInfo{
		ID: cr.id, InstanceType: cr.itype, Zone: cr.zone, OwnerID: cr.owner, InstanceMatchCriteria: cr.matchCriteria,
		ReservationType: cr.reservationType, Interruptible: cr.interruptible, Total: cr.total, Available: cr.available,
		State: cr.state, Tags: copyTags(cr.tags),
	}
	if !cr.end.IsZero() {
		t := cr.end
		info.EndDate = &t
	}
	return info, true
}

// endReservationLocked expires or cancels a reservation. Instances in an
// ODCR carry on as on-demand instances outside it; a capacity block's
// instances are terminated at its end, as EC2 does.
func (s *Sim) endReservationLocked(cr *capacityReservation, state string, now time.Time) {
	cr.state = state
	cr.available = 0
	for _, in := range s.instances {
		if in.capResID != cr.id || in.state == stateTerminated || in.state == stateShuttingDown {
			continue
		}
		if cr.reservationType == "capacity-block" {
			s.beginTerminateLocked(in, now, "Server.ScheduledStop", "Server.ScheduledStop: Stopped due to the end of the capacity block")
			continue
		}
		in.capResID = ""
	}
	s.log.Info("capacity reservation ended", "id", cr.id, "state", state)
}

// expireReservationsLocked ends reservations whose end date passed and
// returns the next end date (zero: none).
func (s *Sim) expireReservationsLocked(now time.Time) time.Time {
	var next time.Time
	for _, id := range sortedKeys(s.reservations) {
		cr := s.reservations[id]
		if cr.state != crStateActive || cr.end.IsZero() {
			continue
		}
		if !now.Before(cr.end) {
			s.endReservationLocked(cr, crStateExpired, now)
			continue
		}
		if next.IsZero() || cr.end.Before(next) {
			next = cr.end
		}
	}
	return next
}

// releaseReservationLocked gives a terminated instance's slot back.
func (s *Sim) releaseReservationLocked(in *instance) {
	if in.capResID == "" {
		return
	}
	if cr := s.reservations[in.capResID]; cr != nil && cr.state == crStateActive && cr.available < cr.total {
		cr.available++
	}
	in.capResID = ""
}

// reservationChoice is where a launch's capacity comes from.
type reservationChoice struct {
	cr       *capacityReservation
	targeted bool // the template names the reservation (capacity-reservations-only)
}

// reservationForLocked decides whether a launch from the template goes
// into a capacity reservation, following EC2's rules:
//   - CapacityReservationTarget names a reservation: the launch must fit
//     it (type, zone, active, a free slot, the market type a capacity
//     block or an interruptible reservation needs), else a per-override
//     error (ReservationCapacityExceeded when it is full);
//   - preference capacity-reservations-only without a target: refused;
//   - preference open (EC2's default) for an on-demand launch: a matching
//     open reservation with a free slot is used if there is one;
//   - preference none, or spot: no reservation.
func (s *Sim) reservationForLocked(lt *launchTemplate, itype, zone, capType, targetType string) (reservationChoice, string, string) {
	var data map[string]string
	if lt != nil {
		data = lt.data
	}
	pref := data["LaunchTemplateData.CapacityReservationSpecification.CapacityReservationPreference"]
	target := data["LaunchTemplateData.CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId"]
	market := data["LaunchTemplateData.InstanceMarketOptions.MarketType"]
	if target == "" {
		switch {
		case pref == "capacity-reservations-only":
			return reservationChoice{}, "InvalidParameterCombination", "CapacityReservationPreference capacity-reservations-only needs a CapacityReservationTarget."
		case targetType == "capacity-block" || targetType == "reserved-capacity":
			return reservationChoice{}, "InvalidParameterCombination", "DefaultTargetCapacityType " + targetType + " needs a launch template that targets a capacity reservation."
		case capType != "on-demand" || pref == "none":
			return reservationChoice{}, "", ""
		}
		for _, id := range sortedKeys(s.reservations) {
			cr := s.reservations[id]
			if cr.state == crStateActive && cr.matchCriteria == "open" && cr.reservationType == "default" && !cr.interruptible &&
				cr.itype == itype && cr.zone == zone && cr.available > 0 {
				return reservationChoice{cr: cr}, "", ""
			}
		}
		return reservationChoice{}, "", ""
	}
	cr := s.reservations[target]
	if cr == nil {
		return reservationChoice{}, "InvalidCapacityReservationId.NotFound", fmt.Sprintf("The capacity reservation ID '%s' does not exist", target)
	}
	if capType == "spot" {
		return reservationChoice{}, "InvalidParameterCombination", "Spot instances cannot be launched into a capacity reservation."
	}
	if cr.itype != itype || cr.zone != zone {
		return reservationChoice{}, "InvalidParameterCombination", fmt.Sprintf("The capacity reservation '%s' is for %s in %s, not %s in %s.", cr.id, cr.itype, cr.zone, itype, zone)
	}
	if cr.state != crStateActive {
		return reservationChoice{}, "IncorrectState", fmt.Sprintf("The capacity reservation '%s' is %s.", cr.id, cr.state)
	}
	switch {
	case cr.reservationType == "capacity-block" && (market != "capacity-block" || targetType != "capacity-block"):
		return reservationChoice{}, "InvalidParameterCombination", "Launching into capacity block " + cr.id + " needs MarketType capacity-block and DefaultTargetCapacityType capacity-block."
	case cr.interruptible && (market != "interruptible-capacity-reservation" || targetType != "reserved-capacity"):
		return reservationChoice{}, "InvalidParameterCombination", "Launching into interruptible reservation " + cr.id + " needs MarketType interruptible-capacity-reservation and DefaultTargetCapacityType reserved-capacity."
	case cr.reservationType == "default" && !cr.interruptible && targetType != "on-demand":
		return reservationChoice{}, "InvalidParameterCombination", "Launching into capacity reservation " + cr.id + " needs DefaultTargetCapacityType on-demand."
	}
	if cr.available <= 0 {
		return reservationChoice{}, "ReservationCapacityExceeded", fmt.Sprintf("The requested capacity reservation '%s' has no available capacity.", cr.id)
	}
	return reservationChoice{cr: cr, targeted: true}, "", ""
}

// lifecycleOf is the instanceLifecycle EC2 reports for a launch.
func lifecycleOf(capType string, rc reservationChoice) string {
	if rc.cr != nil && rc.targeted {
		if rc.cr.reservationType == "capacity-block" {
			return "capacity-block"
		}
		if rc.cr.interruptible {
			return "interruptible-capacity-reservation"
		}
	}
	return capType
}

// ---- DescribeCapacityReservations / CreateCapacityReservation / CancelCapacityReservation ----

func (s *Sim) describeCapacityReservations(p *params, w *xw) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := p.list("CapacityReservationId")
	for _, id := range ids {
		if s.reservations[id] == nil {
			return &apiError{Status: 400, Code: "InvalidCapacityReservationId.NotFound", Message: fmt.Sprintf("The capacity reservation ID '%s' does not exist", id)}
		}
	}
	if len(ids) > 0 && p.str("MaxResults") != "" {
		// EC2 refuses the combination (Karpenter's query builder avoids it).
		return badParam("MaxResults cannot be combined with CapacityReservationId")
	}
	var kept []*capacityReservation
	for _, id := range sortedKeys(s.reservations) {
		cr := s.reservations[id]
		if len(ids) > 0 && !matchAny(ids, cr.id) {
			continue
		}
		ok := true
		for _, f := range p.filters() {
			if m, isTag := matchTags(f, cr.tags); isTag {
				ok = ok && m
				continue
			}
			switch f.Name {
			case "state":
				ok = ok && matchAny(f.Values, cr.state)
			case "owner-id":
				ok = ok && matchAny(f.Values, cr.owner)
			case "instance-type":
				ok = ok && matchAny(f.Values, cr.itype)
			case "availability-zone":
				ok = ok && matchAny(f.Values, cr.zone)
			case "instance-match-criteria":
				ok = ok && matchAny(f.Values, cr.matchCriteria)
			case "instance-platform":
				ok = ok && matchAny(f.Values, cr.platform)
			case "tenancy":
				ok = ok && matchAny(f.Values, cr.tenancy)
			case "end-date-type":
				ok = ok && matchAny(f.Values, endDateType(cr))
			case "reservation-type":
				ok = ok && matchAny(f.Values, cr.reservationType)
			default:
				return badParam("The filter '" + f.Name + "' is invalid")
			}
		}
		if ok {
			kept = append(kept, cr)
		}
	}
	if mr := p.str("MaxResults"); mr != "" {
		if n, err := strconv.Atoi(mr); err != nil || n < 1 || n > 1000 {
			return badParam("MaxResults must be between 1 and 1000")
		}
	}
	pg, next, aerr := page(p, kept, 1000)
	if aerr != nil {
		return aerr
	}
	w.open("capacityReservationSet")
	for _, cr := range pg {
		s.writeReservationItem(w, cr)
	}
	w.close("capacityReservationSet")
	w.opt("nextToken", next)
	return nil
}

func endDateType(cr *capacityReservation) string {
	if cr.end.IsZero() {
		return "unlimited"
	}
	return "limited"
}

func (s *Sim) writeReservationItem(w *xw, cr *capacityReservation) {
	w.open("item")
	w.elem("capacityReservationId", cr.id)
	w.elem("ownerId", cr.owner)
	w.elem("capacityReservationArn", fmt.Sprintf("arn:aws:ec2:%s:%s:capacity-reservation/%s", s.cfg.Region, cr.owner, cr.id))
	w.elem("instanceType", cr.itype)
	w.elem("instancePlatform", cr.platform)
	w.elem("availabilityZone", cr.zone)
	w.elem("availabilityZoneId", s.zoneIDOf(cr.zone))
	w.elem("tenancy", cr.tenancy)
	w.intElem("totalInstanceCount", int64(cr.total))
	w.intElem("availableInstanceCount", int64(cr.available))
	w.boolElem("ebsOptimized", true)
	w.boolElem("ephemeralStorage", false)
	w.elem("state", cr.state)
	w.timeElem("startDate", cr.start)
	if !cr.end.IsZero() {
		w.timeElem("endDate", cr.end)
	}
	w.elem("endDateType", endDateType(cr))
	w.elem("instanceMatchCriteria", cr.matchCriteria)
	w.timeElem("createDate", cr.created)
	w.elem("reservationType", cr.reservationType)
	w.boolElem("interruptible", cr.interruptible)
	w.tagSet(cr.tags)
	w.close("item")
}

// createCapacityReservationAPI is EC2's CreateCapacityReservation (an
// ODCR: InstanceType, InstancePlatform, AvailabilityZone, InstanceCount,
// EndDateType/EndDate, InstanceMatchCriteria, TagSpecifications).
func (s *Sim) createCapacityReservationAPI(p *params, w *xw) *apiError {
	for _, k := range []string{"InstanceType", "InstancePlatform", "InstanceCount"} {
		if p.str(k) == "" {
			return missingParam(k)
		}
	}
	if pl := p.str("InstancePlatform"); pl != "Linux/UNIX" {
		return badParam("The simulator supports only InstancePlatform Linux/UNIX (got " + strconv.Quote(pl) + ")")
	}
	spec := CapacityReservationSpec{
		InstanceType: p.str("InstanceType"), Zone: p.str("AvailabilityZone"), Count: p.int("InstanceCount", 0),
		InstanceMatchCriteria: p.str("InstanceMatchCriteria"), Tags: p.tagSpecs("TagSpecifications")["capacity-reservation"],
	}
	switch p.str("EndDateType") {
	case "", "unlimited":
		if p.str("EndDate") != "" {
			return badParam("EndDate needs EndDateType limited")
		}
	case "limited":
		t, err := time.Parse(time.RFC3339, p.str("EndDate"))
		if err != nil {
			return badParam("EndDate must be an ISO 8601 time")
		}
		spec.EndDate = t
	default:
		return badParam("EndDateType must be unlimited or limited")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cr, aerr := s.newReservationLocked(spec)
	if aerr != nil {
		return aerr
	}
	w.open("capacityReservation")
	inner := &xw{}
	s.writeReservationItem(inner, cr)
	// The item's body without its <item> wrapper.
	body := inner.b.String()
	w.b.WriteString(body[len("<item>") : len(body)-len("</item>")])
	w.close("capacityReservation")
	return nil
}

func (s *Sim) cancelCapacityReservationAPI(p *params, w *xw) *apiError {
	id := p.str("CapacityReservationId")
	if id == "" {
		return missingParam("CapacityReservationId")
	}
	if err := s.CancelCapacityReservation(id); err != nil {
		var aerr *apiError
		if errors.As(err, &aerr) {
			return aerr
		}
		return &apiError{Status: 500, Code: "InternalError", Message: err.Error()}
	}
	w.boolElem("return", true)
	return nil
}

// CapacityReservations lists every reservation, by id.
func (s *Sim) CapacityReservations() []CapacityReservationInfo {
	s.mu.Lock()
	ids := sortedKeys(s.reservations)
	s.mu.Unlock()
	out := make([]CapacityReservationInfo, 0, len(ids))
	for _, id := range ids {
		if info, ok := s.CapacityReservation(id); ok {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
