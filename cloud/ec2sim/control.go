package ec2sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrNotFound is returned by control methods for an unknown instance.
var ErrNotFound = fmt.Errorf("ec2sim: not found")

func (s *Sim) routes() http.Handler {
	mux := http.NewServeMux()
	actions := s.ec2Actions()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /sim/instances", s.httpListInstances)
	mux.HandleFunc("GET /sim/instances/{id}", s.httpGetInstance)
	mux.HandleFunc("POST /sim/instances/{id}/interrupt", s.httpInstanceOp(func(id string, _ *http.Request) (any, error) { return s.InterruptSpot(id) }))
	mux.HandleFunc("POST /sim/instances/{id}/rebalance", s.httpInstanceOp(func(id string, _ *http.Request) (any, error) { return nil, s.RebalanceRecommendation(id) }))
	mux.HandleFunc("POST /sim/instances/{id}/terminate", s.httpInstanceOp(func(id string, _ *http.Request) (any, error) { return nil, s.TerminateInstance(id) }))
	mux.HandleFunc("POST /sim/instances/{id}/maintenance", s.httpInstanceOp(func(id string, r *http.Request) (any, error) {
		var ev MaintenanceEvent
		if err := decodeBody(r, &ev); err != nil {
			return nil, err
		}
		eid, err := s.ScheduleMaintenance(id, ev)
		return map[string]string{"eventId": eid}, err
	}))
	mux.HandleFunc("DELETE /sim/instances/{id}/maintenance/{event}", s.httpInstanceOp(func(id string, r *http.Request) (any, error) {
		return nil, s.CancelMaintenance(id, r.PathValue("event"))
	}))
	mux.HandleFunc("POST /sim/instances/{id}/imds-fault", s.httpInstanceOp(func(id string, r *http.Request) (any, error) {
		var f struct {
			Mode  string `json:"mode"`
			Delay string `json:"delay"`
		}
		if err := decodeBody(r, &f); err != nil {
			return nil, err
		}
		fault := IMDSFault{Mode: f.Mode}
		if f.Delay != "" {
			d, err := time.ParseDuration(f.Delay)
			if err != nil {
				return nil, fmt.Errorf("delay: %w", err)
			}
			fault.Delay = d
		}
		return nil, s.SetIMDSFault(id, fault)
	}))
	mux.HandleFunc("GET /sim/capacity-reservations", s.httpJSON(func(*http.Request) (any, error) { return s.CapacityReservations(), nil }))
	mux.HandleFunc("POST /sim/capacity-reservations", s.httpJSON(func(r *http.Request) (any, error) {
		var spec CapacityReservationSpec
		if err := decodeBody(r, &spec); err != nil {
			return nil, err
		}
		id, err := s.CreateCapacityReservation(spec)
		return map[string]string{"id": id}, err
	}))
	mux.HandleFunc("DELETE /sim/capacity-reservations/{id}", s.httpJSON(func(r *http.Request) (any, error) {
		return nil, s.CancelCapacityReservation(r.PathValue("id"))
	}))
	mux.HandleFunc("POST /sim/pools", s.httpJSON(func(r *http.Request) (any, error) {
		var req struct {
			InstanceType string `json:"instanceType"`
			Zone         string `json:"zone"`
			CapacityType string `json:"capacityType"`
			Capacity     *int   `json:"capacity"`
			ErrorCode    string `json:"errorCode"`
		}
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		c := -1
		if req.Capacity != nil {
			c = *req.Capacity
		}
		return nil, s.SetPool(req.InstanceType, req.Zone, req.CapacityType, c, req.ErrorCode)
	}))
	mux.HandleFunc("POST /sim/pools/interrupt", s.httpJSON(func(r *http.Request) (any, error) {
		var req struct {
			InstanceType string `json:"instanceType"`
			Zone         string `json:"zone"`
		}
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		ids, err := s.InterruptSpotPool(req.InstanceType, req.Zone)
		return map[string]any{"instanceIds": ids}, err
	}))
	mux.HandleFunc("POST /sim/spot-price", s.httpJSON(func(r *http.Request) (any, error) {
		var req struct {
			InstanceType string  `json:"instanceType"`
			Zone         string  `json:"zone"`
			Price        float64 `json:"price"`
		}
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		return nil, s.SetSpotPrice(req.InstanceType, req.Zone, req.Price)
	}))
	mux.HandleFunc("POST /sim/amis/release", s.httpJSON(func(r *http.Request) (any, error) {
		var req struct {
			Family  string `json:"family"`
			Version string `json:"version"`
		}
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		ids, err := s.PublishRelease(req.Family, req.Version)
		return map[string]any{"imageIds": ids}, err
	}))
	mux.HandleFunc("POST /sim/throttle", s.httpJSON(func(r *http.Request) (any, error) {
		var req struct {
			Next          int     `json:"next"`
			RatePerSecond float64 `json:"ratePerSecond"`
		}
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		s.Throttle(req.Next, req.RatePerSecond)
		return nil, nil
	}))
	mux.HandleFunc("POST /sim/latency", s.httpJSON(func(r *http.Request) (any, error) {
		var req struct {
			Latency string `json:"latency"`
		}
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		d, err := time.ParseDuration(req.Latency)
		if err != nil {
			return nil, fmt.Errorf("latency: %w", err)
		}
		s.SetLatency(d)
		return nil, nil
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("X-Amz-Target"), "AmazonSSM.") {
			s.serveSSM(w, r)
			return
		}
		if r.Method != http.MethodPost && r.Method != http.MethodGet {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.serveEC2(w, r, actions)
	})
	return mux
}

func decodeBody(r *http.Request, v any) error {
	if r.Body == nil || r.ContentLength == 0 {
		return nil
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v == nil {
		v = map[string]string{"status": "ok"}
	}
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Sim) httpJSON(fn func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := fn(r)
		if err != nil {
			status := http.StatusBadRequest
			if strings.Contains(err.Error(), ErrNotFound.Error()) {
				status = http.StatusNotFound
			}
			writeJSON(w, status, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Sim) httpInstanceOp(fn func(id string, r *http.Request) (any, error)) http.HandlerFunc {
	return s.httpJSON(func(r *http.Request) (any, error) { return fn(r.PathValue("id"), r) })
}

func (s *Sim) httpListInstances(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Instances())
}

func (s *Sim) httpGetInstance(w http.ResponseWriter, r *http.Request) {
	in, ok := s.Instance(r.PathValue("id"))
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "instance not found"})
		return
	}
	writeJSON(w, http.StatusOK, in)
}

// InstanceInfo is the control API's view of an instance.
type InstanceInfo struct {
	ID           string `json:"id"`
	InstanceType string `json:"instanceType"`
	Zone         string `json:"zone"`
	SubnetID     string `json:"subnetID"`
	// SecurityGroupIDs are the groups the instance's network interface is in.
	SecurityGroupIDs []string `json:"securityGroupIDs,omitempty"`
	CapacityType     string   `json:"capacityType"`
	// CapacityReservationID is the reservation the instance runs in.
	CapacityReservationID string            `json:"capacityReservationID,omitempty"`
	ImageID               string            `json:"imageID"`
	State                 string            `json:"state"`
	StateReason           string            `json:"stateReason,omitempty"`
	PrivateIP             string            `json:"privateIP"`
	PrivateDNS            string            `json:"privateDNSName"`
	ProviderID            string            `json:"providerID"`
	LaunchTime            time.Time         `json:"launchTime"`
	ClientToken           string            `json:"clientToken,omitempty"`
	Tags                  map[string]string `json:"tags"`
	VolumeTags            map[string]string `json:"volumeTags"`
	IMDSEndpoint          string            `json:"imdsEndpoint,omitempty"`
	UserData              string            `json:"userData,omitempty"`
	SpotAction            *time.Time        `json:"spotActionTime,omitempty"`
	RebalanceTime         *time.Time        `json:"rebalanceNoticeTime,omitempty"`
}

func (s *Sim) infoLocked(in *instance) InstanceInfo {
	info := InstanceInfo{
		ID: in.id, InstanceType: in.itype, Zone: in.zone, SubnetID: in.subnetID, CapacityType: in.capType,
		ImageID: in.imageID, State: in.state, StateReason: in.stateReason, PrivateIP: in.privateIP,
		PrivateDNS: in.privateDNS, ProviderID: "aws:///" + in.zone + "/" + in.id, LaunchTime: in.launched,
		ClientToken: in.clientToken, Tags: copyTags(in.tags), VolumeTags: copyTags(in.volumeTags),
		UserData: string(in.userData), SecurityGroupIDs: append([]string(nil), in.sgIDs...),
		CapacityReservationID: in.capResID,
	}
	if in.imds != nil {
		info.IMDSEndpoint = in.imds.url
	}
	if in.action != nil {
		t := in.action.deadline
		info.SpotAction = &t
	}
	if !in.rebalanceAt.IsZero() {
		t := in.rebalanceAt
		info.RebalanceTime = &t
	}
	return info
}

// Instances lists every instance still visible, in launch order.
func (s *Sim) Instances() []InstanceInfo {
	s.Reconcile()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []InstanceInfo{}
	for _, in := range s.sortedInstancesLocked() {
		out = append(out, s.infoLocked(in))
	}
	return out
}

// Instance returns one instance.
func (s *Sim) Instance(id string) (InstanceInfo, bool) {
	s.Reconcile()
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return InstanceInfo{}, false
	}
	return s.infoLocked(in), true
}

func (s *Sim) withInstance(id string, fn func(in *instance, now time.Time) error) error {
	s.Reconcile()
	s.mu.Lock()
	in := s.instances[id]
	if in == nil {
		s.mu.Unlock()
		return fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	err := fn(in, s.clock.Now())
	s.mu.Unlock()
	s.poke()
	s.Reconcile()
	return err
}

// SpotInterruptionNotice is how long EC2 warns before reclaiming a spot instance.
const SpotInterruptionNotice = 2 * time.Minute

// InterruptSpot gives a spot instance its two-minute notice: IMDS
// spot/instance-action appears, and the instance is terminated at the
// deadline. It returns the deadline.
func (s *Sim) InterruptSpot(id string) (time.Time, error) {
	var deadline time.Time
	err := s.withInstance(id, func(in *instance, now time.Time) error {
		if in.capType != "spot" {
			return fmt.Errorf("instance %s is %s, not spot", id, in.capType)
		}
		if in.state != stateRunning && in.state != statePending {
			return fmt.Errorf("instance %s is %s", id, in.state)
		}
		if in.action == nil {
			in.action = &spotAction{action: "terminate", deadline: now.Add(SpotInterruptionNotice).Truncate(time.Second)}
		}
		deadline = in.action.deadline
		s.log.Info("spot interruption", "instance", id, "deadline", deadline)
		return nil
	})
	return deadline, err
}

// InterruptSpotPool reclaims a spot pool the way a capacity crunch does:
// every live spot instance of the type in the zone (all zones when zone is
// empty) gets its two-minute notice, and the pool is exhausted so
// replacements fail with InsufficientInstanceCapacity until RefillPool.
// It returns the interrupted instance IDs.
func (s *Sim) InterruptSpotPool(instanceType, zone string) ([]string, error) {
	if err := s.ExhaustPool(instanceType, zone, "spot"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	var ids []string
	for _, id := range s.order {
		in := s.instances[id]
		if in.capType == "spot" && in.itype == instanceType && (zone == "" || in.zone == zone) &&
			(in.state == statePending || in.state == stateRunning) && in.action == nil {
			ids = append(ids, id)
		}
	}
	s.mu.Unlock()
	for _, id := range ids {
		if _, err := s.InterruptSpot(id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// RebalanceRecommendation publishes events/recommendations/rebalance.
func (s *Sim) RebalanceRecommendation(id string) error {
	return s.withInstance(id, func(in *instance, now time.Time) error {
		if in.state == stateTerminated {
			return fmt.Errorf("instance %s is terminated", id)
		}
		if in.rebalanceAt.IsZero() {
			in.rebalanceAt = now.Truncate(time.Second)
		}
		return nil
	})
}

// TerminateInstance terminates like EC2 would on its own initiative.
func (s *Sim) TerminateInstance(id string) error {
	return s.withInstance(id, func(in *instance, now time.Time) error {
		s.beginTerminateLocked(in, now, "Server.InternalError", "Server.InternalError: Internal error on launch")
		return nil
	})
}

// MaintenanceEvent describes a scheduled event.
type MaintenanceEvent struct {
	// Code is instance-reboot, system-reboot, system-maintenance,
	// instance-retirement or instance-stop (default system-reboot).
	Code        string    `json:"code"`
	Description string    `json:"description"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	// NotBeforeDeadline is the latest time the event can be rescheduled to.
	NotBeforeDeadline time.Time `json:"notBeforeDeadline"`
}

// ScheduleMaintenance adds an event to events/maintenance/scheduled and
// returns its ID. Zero NotBefore means a week from now.
func (s *Sim) ScheduleMaintenance(id string, ev MaintenanceEvent) (string, error) {
	var eid string
	err := s.withInstance(id, func(in *instance, now time.Time) error {
		if in.state == stateTerminated {
			return fmt.Errorf("instance %s is terminated", id)
		}
		switch ev.Code {
		case "":
			ev.Code = "system-reboot"
		case "instance-reboot", "system-reboot", "system-maintenance", "instance-retirement", "instance-stop":
		default:
			return fmt.Errorf("unknown maintenance code %q", ev.Code)
		}
		if ev.Description == "" {
			ev.Description = "scheduled " + strings.ReplaceAll(ev.Code, "-", " ")
		}
		if ev.NotBefore.IsZero() {
			ev.NotBefore = now.Add(7 * 24 * time.Hour)
		}
		if ev.NotAfter.IsZero() {
			ev.NotAfter = ev.NotBefore.Add(2 * time.Hour)
		}
		if ev.NotBeforeDeadline.IsZero() {
			ev.NotBeforeDeadline = ev.NotBefore.Add(14 * 24 * time.Hour)
		}
		s.seq++
		eid = fmt.Sprintf("instance-event-%017x", 0x0d5993728000000+s.seq)
		in.events = append(in.events, &maintenanceEvent{
			id: eid, code: ev.Code, desc: ev.Description, state: "active",
			notBefore: ev.NotBefore.Truncate(time.Second), notAfter: ev.NotAfter.Truncate(time.Second),
			notBeforeDeadline: ev.NotBeforeDeadline.Truncate(time.Second),
		})
		return nil
	})
	return eid, err
}

// CancelMaintenance marks an event canceled; it stays listed with State
// "canceled" and a "[Canceled]" description, as AWS shows it.
func (s *Sim) CancelMaintenance(id, eventID string) error {
	return s.withInstance(id, func(in *instance, _ time.Time) error {
		for _, e := range in.events {
			if e.id == eventID {
				if e.state != "canceled" {
					e.state = "canceled"
					e.desc = "[Canceled] " + e.desc
				}
				return nil
			}
		}
		return fmt.Errorf("event %s: %w", eventID, ErrNotFound)
	})
}

// SetIMDSFault makes an instance's IMDS misbehave (zero value heals it).
func (s *Sim) SetIMDSFault(id string, f IMDSFault) error {
	switch f.Mode {
	case "", "error", "malformed", "slow":
	default:
		return fmt.Errorf("unknown IMDS fault mode %q", f.Mode)
	}
	return s.withInstance(id, func(in *instance, _ time.Time) error {
		in.imdsFault = f
		return nil
	})
}

// SetPool sets how many more instances a pool can launch (-1 unlimited)
// and, when errorCode is not empty, makes every launch from it fail with
// that code (e.g. UnfulfillableCapacity). Empty zone or capacity type
// applies to all zones or both capacity types.
func (s *Sim) SetPool(instanceType, zone, capacityType string, capacity int, errorCode string) error {
	if _, ok := s.cfg.Catalog.Get(instanceType); !ok {
		return fmt.Errorf("instance type %q: %w", instanceType, ErrNotFound)
	}
	zones := s.cfg.Zones
	if zone != "" {
		zones = []string{zone}
	}
	caps := []string{"spot", "on-demand"}
	if capacityType != "" {
		if capacityType != "spot" && capacityType != "on-demand" {
			return fmt.Errorf("capacity type %q is neither spot nor on-demand", capacityType)
		}
		caps = []string{capacityType}
	}
	s.mu.Lock()
	for _, z := range zones {
		for _, c := range caps {
			p := s.poolLocked(poolKey{instanceType, z, c})
			p.remaining = capacity
			p.errorCode = errorCode
		}
	}
	s.mu.Unlock()
	return nil
}

// ExhaustPool makes launches from a pool fail with InsufficientInstanceCapacity.
func (s *Sim) ExhaustPool(instanceType, zone, capacityType string) error {
	return s.SetPool(instanceType, zone, capacityType, 0, "")
}

// RefillPool makes a pool unlimited again.
func (s *Sim) RefillPool(instanceType, zone, capacityType string) error {
	return s.SetPool(instanceType, zone, capacityType, -1, "")
}

// SetSpotPrice moves the spot price of a type in a zone (recorded in the
// price history at the current time).
func (s *Sim) SetSpotPrice(instanceType, zone string, price float64) error {
	if price <= 0 {
		return fmt.Errorf("spot price must be positive")
	}
	if _, ok := s.cfg.Catalog.Get(instanceType); !ok {
		return fmt.Errorf("instance type %q: %w", instanceType, ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := poolKey{instanceType, zone, "spot"}
	s.history[k] = append(s.history[k], pricePoint{at: s.clock.Now().Truncate(time.Second), price: price})
	return nil
}

// PublishRelease publishes a new AMI release of a family (al2023, al2,
// bottlerocket) for every Kubernetes version and architecture: new images
// appear, the recommended/latest SSM parameters move to them and a pinned
// parameter for the version is added; older pinned parameters stay.
func (s *Sim) PublishRelease(family, version string) ([]string, error) {
	if version == "" {
		return nil, fmt.Errorf("version is required")
	}
	switch family {
	case FamilyAL2023, FamilyAL2:
		if !strings.HasPrefix(version, "v") {
			return nil, fmt.Errorf("%s versions look like v20261101", family)
		}
	case FamilyBottlerocket:
		version = strings.TrimPrefix(version, "v")
	case FamilyWindows2019, FamilyWindows2022, FamilyWindows2025:
	default:
		return nil, fmt.Errorf("unknown AMI family %q (want al2023, al2 or bottlerocket)", family)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.publishLocked(family, version, s.clock.Now().Truncate(time.Second))
	s.log.Info("AMI release published", "family", family, "version", version, "images", len(ids))
	return ids, nil
}

// SSMParameter returns a parameter's current value.
func (s *Sim) SSMParameter(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.ssmParams[name]
	if p == nil {
		return "", false
	}
	return p.value, true
}

// SSMParameterNames lists every parameter, sorted.
func (s *Sim) SSMParameterNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := sortedKeys(s.ssmParams)
	sort.Strings(out)
	return out
}

// Throttle answers the next `next` EC2/SSM calls with RequestLimitExceeded
// and, when rate > 0, limits calls to rate per second afterwards (0 lifts it).
func (s *Sim) Throttle(next int, rate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle.next = next
	s.throttle.rate = rate
	s.throttle.tokens = rate
	s.throttle.last = time.Time{}
}

// SetLatency delays every EC2 and SSM answer by d.
func (s *Sim) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SubnetIDs returns the default subnets, in zone order.
func (s *Sim) SubnetIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, sn := range s.subnets {
		out = append(out, sn.id)
	}
	return out
}

// SecurityGroupID returns the cluster's node security group.
func (s *Sim) SecurityGroupID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sgs[0].id
}

// APIFault makes one EC2 action misbehave, for fault tests of the
// provider: Hang never answers (until the client gives up), Mangle rewrites
// the XML body of a successful answer (e.g. blanking an instance ID).
type APIFault struct {
	Hang   bool
	Mangle func(body []byte) []byte
}

// SetAPIFault sets the fault of an EC2 action ("DescribeInstances",
// "CreateFleet", ...); the zero APIFault heals it.
func (s *Sim) SetAPIFault(action string, f APIFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.apiFaults == nil {
		s.apiFaults = map[string]APIFault{}
	}
	if !f.Hang && f.Mangle == nil {
		delete(s.apiFaults, action)
		return
	}
	s.apiFaults[action] = f
}

func (s *Sim) apiFault(action string) APIFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apiFaults[action]
}
