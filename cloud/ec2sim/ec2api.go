package ec2sim

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

type ec2Action func(p *params, w *xw) *apiError

func (s *Sim) ec2Actions() map[string]ec2Action {
	return map[string]ec2Action{
		"CreateFleet":                   s.createFleet,
		"RunInstances":                  s.runInstances,
		"CreateLaunchTemplate":          s.createLaunchTemplate,
		"DescribeLaunchTemplates":       s.describeLaunchTemplates,
		"DeleteLaunchTemplate":          s.deleteLaunchTemplate,
		"DescribeInstanceTypes":         s.describeInstanceTypes,
		"DescribeInstanceTypeOfferings": s.describeInstanceTypeOfferings,
		"DescribeSpotPriceHistory":      s.describeSpotPriceHistory,
		"DescribeSubnets":               s.describeSubnets,
		"DescribeSecurityGroups":        s.describeSecurityGroups,
		"DescribeImages":                s.describeImages,
		"DescribeInstances":             s.describeInstances,
		"TerminateInstances":            s.terminateInstances,
		"CreateTags":                    s.createTags,
		"DescribeAvailabilityZones":     s.describeAvailabilityZones,
		"DescribeCapacityReservations":  s.describeCapacityReservations,
		"CreateCapacityReservation":     s.createCapacityReservationAPI,
		"CancelCapacityReservation":     s.cancelCapacityReservationAPI,
		"CreatePlacementGroup":          s.createPlacementGroupAPI,
		"DescribePlacementGroups":       s.describePlacementGroups,
	}
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// serveEC2 answers one EC2 Query request.
func (s *Sim) serveEC2(w http.ResponseWriter, r *http.Request, actions map[string]ec2Action) {
	w = flooredWriter{w, time.Now()}
	reqID := newRequestID()
	if err := r.ParseForm(); err != nil {
		s.writeEC2Error(w, "", &apiError{Status: 400, Code: "MalformedQueryString", Message: err.Error()}, reqID)
		return
	}
	action := r.Form.Get("Action")
	s.metrics.calls.WithLabelValues(action).Inc()
	if s.initErr != nil {
		s.writeEC2Error(w, action, &apiError{Status: 500, Code: "InternalError", Message: s.initErr.Error()}, reqID)
		return
	}
	fn, ok := actions[action]
	if !ok {
		s.writeEC2Error(w, action, &apiError{Status: 400, Code: "InvalidAction", Message: fmt.Sprintf("The action %s is not valid for this web service.", action)}, reqID)
		return
	}
	if v := r.Form.Get("Version"); v != "" && v != "2016-11-15" {
		s.writeEC2Error(w, action, &apiError{Status: 400, Code: "InvalidParameterValue", Message: "Unsupported API version " + v}, reqID)
		return
	}
	if !s.admit(r) {
		s.writeEC2Error(w, action, &apiError{Status: 503, Code: "RequestLimitExceeded", Message: "Request limit exceeded."}, reqID)
		return
	}
	fault := s.apiFault(action)
	if fault.Hang {
		<-r.Context().Done() // a stalled call: the client's deadline ends it
		return
	}
	s.Reconcile()
	out := newResponse(action, reqID)
	if aerr := fn(newParams(r.Form), out); aerr != nil {
		s.writeEC2Error(w, action, aerr, reqID)
		return
	}
	s.poke()
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("x-amzn-RequestId", reqID)
	body := out.finish(action)
	if fault.Mangle != nil {
		body = fault.Mangle(body)
	}
	writeBody(w, http.StatusOK, body)
}

func (s *Sim) writeEC2Error(w http.ResponseWriter, action string, e *apiError, reqID string) {
	s.metrics.errors.WithLabelValues(action, e.Code).Inc()
	s.log.Debug("ec2sim error", "action", action, "code", e.Code, "msg", e.Message)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("x-amzn-RequestId", reqID)
	writeBody(w, e.Status, errorXML(e, reqID))
}

// writeBody sends a complete answer with its Content-Length, no sooner
// than responseFloor after the request arrived. Answering a loopback
// request within microseconds races aws-sdk-go-v2, which closes the request
// body as soon as the response headers arrive: Go's transport can then
// fail the connection mid-response ("use of closed network connection",
// aws/aws-sdk-go-v2#2737). Real EC2 is never that fast; a millisecond
// floor removes the race, and the SDK's default retryer covers the rest.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// responseFloor is the least time an EC2 or SSM answer takes.
const responseFloor = time.Millisecond

// flooredWriter holds the status line back until responseFloor has passed
// since the request arrived.
type flooredWriter struct {
	http.ResponseWriter
	start time.Time
}

func (f flooredWriter) WriteHeader(code int) {
	if d := responseFloor - time.Since(f.start); d > 0 {
		time.Sleep(d)
	}
	f.ResponseWriter.WriteHeader(code)
}

// admit applies the configured latency and throttling to one API call.
func (s *Sim) admit(r *http.Request) bool {
	s.mu.Lock()
	lat := s.latency
	ok := s.throttle.allow(s.clock.Now())
	s.mu.Unlock()
	if lat > 0 {
		t := time.NewTimer(lat)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	return ok
}

// throttleState rejects the next N calls and/or keeps a token bucket.
type throttleState struct {
	next   int
	rate   float64 // calls per second; 0 = no limit
	tokens float64
	last   time.Time
}

func (t *throttleState) allow(now time.Time) bool {
	if t.next > 0 {
		t.next--
		return false
	}
	if t.rate <= 0 {
		return true
	}
	if !t.last.IsZero() {
		t.tokens += now.Sub(t.last).Seconds() * t.rate
	}
	t.last = now
	if burst := t.rate; t.tokens > burst {
		t.tokens = burst
	}
	if t.tokens < 1 {
		return false
	}
	t.tokens--
	return true
}

// ---- launch templates ----

func (s *Sim) createLaunchTemplate(p *params, w *xw) *apiError {
	name := p.str("LaunchTemplateName")
	if name == "" {
		return missingParam("LaunchTemplateName")
	}
	token := p.str("ClientToken")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, lt := range s.templates {
		if token != "" && lt.token == token && lt.name == name {
			// An idempotent retry: the template the first call created.
			w.open("launchTemplate")
			s.writeLaunchTemplate(w, lt)
			w.close("launchTemplate")
			return nil
		}
		if lt.name == name {
			return &apiError{Status: 400, Code: "InvalidLaunchTemplateName.AlreadyExistsException", Message: fmt.Sprintf("Launch template name already in use: %s", name)}
		}
	}
	img := p.str("LaunchTemplateData.ImageId")
	if img != "" && s.imageByID(img) == nil {
		return &apiError{Status: 400, Code: "InvalidAMIID.NotFound", Message: fmt.Sprintf("The image id '[%s]' does not exist", img)}
	}
	if err := checkTemplateData(p); err != nil {
		return err
	}
	lt := &launchTemplate{
		id: s.nextID("lt"), name: name, created: s.clock.Now(), token: token, data: p.prefixed("LaunchTemplateData."),
		imageID:   img,
		instType:  p.str("LaunchTemplateData.InstanceType"),
		userData:  p.str("LaunchTemplateData.UserData"),
		sgIDs:     p.list("LaunchTemplateData.SecurityGroupId"),
		tagSpecs:  p.tagSpecs("LaunchTemplateData.TagSpecification"),
		tags:      p.tagSpecs("TagSpecification")["launch-template"],
		httpToken: p.str("LaunchTemplateData.MetadataOptions.HttpTokens"),
	}
	if lt.tags == nil {
		lt.tags = map[string]string{}
	}
	s.templates[lt.id] = lt
	w.open("launchTemplate")
	s.writeLaunchTemplate(w, lt)
	w.close("launchTemplate")
	return nil
}

func (s *Sim) writeLaunchTemplate(w *xw, lt *launchTemplate) {
	w.elem("launchTemplateId", lt.id)
	w.elem("launchTemplateName", lt.name)
	w.timeElem("createTime", lt.created)
	w.elem("createdBy", "arn:aws:iam::"+s.cfg.AccountID+":role/dovetail")
	w.intElem("defaultVersionNumber", 1)
	w.intElem("latestVersionNumber", 1)
	w.tagSet(lt.tags)
}

func (s *Sim) templateLocked(id, name string) (*launchTemplate, *apiError) {
	if id != "" {
		if lt := s.templates[id]; lt != nil {
			return lt, nil
		}
		return nil, &apiError{Status: 400, Code: "InvalidLaunchTemplateId.NotFound", Message: fmt.Sprintf("The specified launch template, with template ID %s, does not exist.", id)}
	}
	for _, lt := range s.templates {
		if lt.name == name {
			return lt, nil
		}
	}
	return nil, &apiError{Status: 400, Code: "InvalidLaunchTemplateName.NotFoundException", Message: fmt.Sprintf("The specified launch template, with template name %s, does not exist.", name)}
}

func (s *Sim) describeLaunchTemplates(p *params, w *xw) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*launchTemplate
	ids, names := p.list("LaunchTemplateId"), p.list("LaunchTemplateName")
	if len(ids)+len(names) > 0 {
		for _, id := range ids {
			lt, err := s.templateLocked(id, "")
			if err != nil {
				return err
			}
			out = append(out, lt)
		}
		for _, n := range names {
			lt, err := s.templateLocked("", n)
			if err != nil {
				return err
			}
			out = append(out, lt)
		}
	} else {
		for _, id := range sortedKeys(s.templates) {
			out = append(out, s.templates[id])
		}
	}
	fs := p.filters()
	var kept []*launchTemplate
	for _, lt := range out {
		ok := true
		for _, f := range fs {
			if m, isTag := matchTags(f, lt.tags); isTag {
				ok = ok && m
				continue
			}
			switch f.Name {
			case "launch-template-name":
				ok = ok && matchAny(f.Values, lt.name)
			case "create-time":
			default:
				return badParam("The filter '" + f.Name + "' is invalid")
			}
		}
		if ok {
			kept = append(kept, lt)
		}
	}
	pg, next, aerr := page(p, kept, 1000)
	if aerr != nil {
		return aerr
	}
	w.open("launchTemplates")
	for _, lt := range pg {
		w.open("item")
		s.writeLaunchTemplate(w, lt)
		w.close("item")
	}
	w.close("launchTemplates")
	w.opt("nextToken", next)
	return nil
}

func (s *Sim) deleteLaunchTemplate(p *params, w *xw) *apiError {
	id, name := p.str("LaunchTemplateId"), p.str("LaunchTemplateName")
	if id == "" && name == "" {
		return missingParam("LaunchTemplateId or LaunchTemplateName")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lt, err := s.templateLocked(id, name)
	if err != nil {
		return err
	}
	delete(s.templates, lt.id)
	w.open("launchTemplate")
	s.writeLaunchTemplate(w, lt)
	w.close("launchTemplate")
	return nil
}

// ---- zones, subnets, security groups ----

func (s *Sim) describeAvailabilityZones(p *params, w *xw) *apiError {
	names := p.list("ZoneName")
	w.open("availabilityZoneInfo")
	for i, z := range s.cfg.Zones {
		if len(names) > 0 && !matchAny(names, z) {
			continue
		}
		ok := true
		for _, f := range p.filters() {
			switch f.Name {
			case "zone-name":
				ok = ok && matchAny(f.Values, z)
			case "zone-id":
				ok = ok && matchAny(f.Values, zoneID(s.cfg.Region, i))
			case "state":
				ok = ok && matchAny(f.Values, "available")
			case "region-name":
				ok = ok && matchAny(f.Values, s.cfg.Region)
			}
		}
		if !ok {
			continue
		}
		w.open("item")
		w.elem("zoneName", z)
		w.elem("zoneState", "available")
		w.elem("regionName", s.cfg.Region)
		w.elem("zoneId", zoneID(s.cfg.Region, i))
		w.elem("zoneType", "availability-zone")
		w.elem("optInStatus", "opt-in-not-required")
		w.elem("groupName", s.cfg.Region+"-zg-1")
		w.elem("networkBorderGroup", s.cfg.Region)
		w.open("messageSet")
		w.close("messageSet")
		w.close("item")
	}
	w.close("availabilityZoneInfo")
	return nil
}

func (s *Sim) describeSubnets(p *params, w *xw) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := p.list("SubnetId")
	for _, id := range ids {
		if s.subnetByID(id) == nil {
			return &apiError{Status: 400, Code: "InvalidSubnetID.NotFound", Message: fmt.Sprintf("The subnet ID '%s' does not exist", id)}
		}
	}
	var kept []*subnet
	for _, sn := range s.subnets {
		if len(ids) > 0 && !matchAny(ids, sn.id) {
			continue
		}
		ok := true
		for _, f := range p.filters() {
			if m, isTag := matchTags(f, sn.tags); isTag {
				ok = ok && m
				continue
			}
			switch f.Name {
			case "subnet-id":
				ok = ok && matchAny(f.Values, sn.id)
			case "vpc-id":
				ok = ok && matchAny(f.Values, sn.vpcID)
			case "availability-zone":
				ok = ok && matchAny(f.Values, sn.zone)
			case "availability-zone-id":
				ok = ok && matchAny(f.Values, sn.zoneID)
			case "state":
				ok = ok && matchAny(f.Values, "available")
			case "cidr-block", "cidr":
				ok = ok && matchAny(f.Values, sn.cidr)
			default:
				return badParam("The filter '" + f.Name + "' is invalid")
			}
		}
		if ok {
			kept = append(kept, sn)
		}
	}
	pg, next, aerr := page(p, kept, 1000)
	if aerr != nil {
		return aerr
	}
	w.open("subnetSet")
	for _, sn := range pg {
		size := 1 << (32 - sn.prefix.Bits())
		w.open("item")
		w.elem("subnetId", sn.id)
		w.elem("subnetArn", fmt.Sprintf("arn:aws:ec2:%s:%s:subnet/%s", s.cfg.Region, s.cfg.AccountID, sn.id))
		w.elem("state", "available")
		w.elem("ownerId", s.cfg.AccountID)
		w.elem("vpcId", sn.vpcID)
		w.elem("cidrBlock", sn.cidr)
		w.intElem("availableIpAddressCount", int64(size-int(sn.nextHost)-1))
		w.elem("availabilityZone", sn.zone)
		w.elem("availabilityZoneId", sn.zoneID)
		w.boolElem("defaultForAz", false)
		w.boolElem("mapPublicIpOnLaunch", false)
		w.boolElem("assignIpv6AddressOnCreation", false)
		w.tagSet(sn.tags)
		w.close("item")
	}
	w.close("subnetSet")
	w.opt("nextToken", next)
	return nil
}

func (s *Sim) describeSecurityGroups(p *params, w *xw) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, names := p.list("GroupId"), p.list("GroupName")
	for _, id := range ids {
		found := false
		for _, g := range s.sgs {
			found = found || g.id == id
		}
		if !found {
			return &apiError{Status: 400, Code: "InvalidGroup.NotFound", Message: fmt.Sprintf("The security group '%s' does not exist", id)}
		}
	}
	var kept []*securityGroup
	for _, g := range s.sgs {
		if len(ids) > 0 && !matchAny(ids, g.id) {
			continue
		}
		if len(names) > 0 && !matchAny(names, g.name) {
			continue
		}
		ok := true
		for _, f := range p.filters() {
			if m, isTag := matchTags(f, g.tags); isTag {
				ok = ok && m
				continue
			}
			switch f.Name {
			case "group-id":
				ok = ok && matchAny(f.Values, g.id)
			case "group-name":
				ok = ok && matchAny(f.Values, g.name)
			case "vpc-id":
				ok = ok && matchAny(f.Values, g.vpcID)
			default:
				return badParam("The filter '" + f.Name + "' is invalid")
			}
		}
		if ok {
			kept = append(kept, g)
		}
	}
	pg, next, aerr := page(p, kept, 1000)
	if aerr != nil {
		return aerr
	}
	w.open("securityGroupInfo")
	for _, g := range pg {
		w.open("item")
		w.elem("ownerId", s.cfg.AccountID)
		w.elem("groupId", g.id)
		w.elem("groupName", g.name)
		w.elem("groupDescription", g.desc)
		w.elem("vpcId", g.vpcID)
		w.elem("securityGroupArn", fmt.Sprintf("arn:aws:ec2:%s:%s:security-group/%s", s.cfg.Region, s.cfg.AccountID, g.id))
		w.open("ipPermissions")
		w.close("ipPermissions")
		w.open("ipPermissionsEgress")
		w.close("ipPermissionsEgress")
		w.tagSet(g.tags)
		w.close("item")
	}
	w.close("securityGroupInfo")
	w.opt("nextToken", next)
	return nil
}

// ---- images ----

func (s *Sim) describeImages(p *params, w *xw) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, owners := p.list("ImageId"), p.list("Owner")
	for _, id := range ids {
		if !strings.HasPrefix(id, "ami-") {
			return &apiError{Status: 400, Code: "InvalidAMIID.Malformed", Message: fmt.Sprintf("Invalid id: \"%s\"", id)}
		}
		if s.imageByID(id) == nil {
			return &apiError{Status: 400, Code: "InvalidAMIID.NotFound", Message: fmt.Sprintf("The image id '[%s]' does not exist", id)}
		}
	}
	var kept []*image
	for _, im := range s.images {
		if len(ids) > 0 && !matchAny(ids, im.id) {
			continue
		}
		if len(owners) > 0 && !s.ownerMatches(owners, im) {
			continue
		}
		ok := true
		for _, f := range p.filters() {
			if m, isTag := matchTags(f, im.tags); isTag {
				ok = ok && m
				continue
			}
			switch f.Name {
			case "name":
				ok = ok && matchAny(f.Values, im.name)
			case "image-id":
				ok = ok && matchAny(f.Values, im.id)
			case "architecture":
				ok = ok && matchAny(f.Values, im.arch)
			case "owner-id":
				ok = ok && matchAny(f.Values, im.owner)
			case "owner-alias":
				ok = ok && matchAny(f.Values, im.ownerAlias)
			case "state":
				ok = ok && matchAny(f.Values, "available")
			case "is-public":
				ok = ok && matchAny(f.Values, strconv.FormatBool(im.public))
			case "image-type":
				ok = ok && matchAny(f.Values, "machine")
			case "description":
				ok = ok && matchAny(f.Values, im.desc)
			case "root-device-type", "virtualization-type", "hypervisor":
			default:
				return badParam("The filter '" + f.Name + "' is invalid")
			}
		}
		if ok {
			kept = append(kept, im)
		}
	}
	pg, next, aerr := page(p, kept, 1000)
	if aerr != nil {
		return aerr
	}
	w.open("imagesSet")
	for _, im := range pg {
		w.open("item")
		w.elem("imageId", im.id)
		w.elem("imageLocation", im.owner+"/"+im.name)
		w.elem("imageState", "available")
		w.elem("imageOwnerId", im.owner)
		w.elem("creationDate", im.created.UTC().Format("2006-01-02T15:04:05.000Z"))
		w.boolElem("isPublic", im.public)
		w.elem("architecture", im.arch)
		w.elem("imageType", "machine")
		w.elem("name", im.name)
		w.elem("description", im.desc)
		w.opt("imageOwnerAlias", im.ownerAlias)
		w.elem("rootDeviceType", "ebs")
		w.elem("rootDeviceName", "/dev/xvda")
		w.elem("virtualizationType", "hvm")
		w.elem("hypervisor", "xen")
		w.boolElem("enaSupport", true)
		w.elem("platformDetails", "Linux/UNIX")
		w.elem("usageOperation", "RunInstances")
		w.elem("bootMode", "uefi-preferred")
		w.tagSet(im.tags)
		w.close("item")
	}
	w.close("imagesSet")
	w.opt("nextToken", next)
	return nil
}

func (s *Sim) ownerMatches(owners []string, im *image) bool {
	for _, o := range owners {
		switch o {
		case "self":
			if im.owner == s.cfg.AccountID {
				return true
			}
		case "amazon", "aws-marketplace":
			if im.ownerAlias == o {
				return true
			}
		default:
			if im.owner == o {
				return true
			}
		}
	}
	return false
}
