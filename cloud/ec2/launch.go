package ec2

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	corev1 "k8s.io/api/core/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
)

// maxOverrides bounds one fleet request; the options are cheapest first, so
// the tail is the least attractive anyway.
const maxOverrides = 60

// override is one launch option made concrete: a subnet and an AMI (and
// for a reserved option, its capacity reservation).
type override struct {
	opt    cloud.LaunchOption
	subnet string
	arch   string
	ami    string
	res    *cloud.CapacityReservation
}

// attempt is one CreateFleet call: one capacity type, many overrides.
type attempt struct {
	capacityType string
	overrides    []override
	// token names the call in its client tokens (the capacity type, plus
	// the partition for reserved calls) so each call has its own.
	token string
}

// Create launches one instance for req, trying spot options first and
// on-demand options second, each as one instant EC2 Fleet over all the
// options of that capacity type so EC2 picks the pool. Offerings in the ICE
// cache are skipped; offerings EC2 refuses for capacity enter it. The call is
// idempotent: the same req.ClientToken never launches a second instance,
// and an instance already tagged with req.NodeClaimName is returned as is.
func (p *Provider) Create(ctx context.Context, nodeClass *awsv1.EC2NodeClass, req *cloud.LaunchRequest) (*cloud.Instance, error) {
	if req == nil || req.ClientToken == "" {
		return nil, errors.New("ec2: launch request needs a client token")
	}
	if len(req.Options) == 0 {
		return nil, errors.New("ec2: launch request has no options")
	}
	nc, err := fromAPI(nodeClass)
	if err != nil {
		return nil, err
	}
	resolved, err := p.resolve(ctx, nc)
	if err != nil {
		return nil, err
	}
	if req.NodeClaimName != "" {
		existing, err := p.findByNodeClaim(ctx, req.NodeClaimName)
		if err != nil {
			return nil, err
		}
		if existing != nil {
			p.log.InfoContext(ctx, "launch already done, returning the existing instance", "nodeClaim", req.NodeClaimName, "instance", existing.ID)
			return existing, nil
		}
	}

	attempts, skipped, err := p.plan(resolved, req)
	if err != nil {
		return nil, err
	}
	unavailable := skipped
	for _, a := range attempts {
		inst, refused, err := p.launch(ctx, nc, resolved, req, a)
		if err != nil {
			p.metrics.launches.WithLabelValues("error", a.capacityType).Inc()
			return nil, err
		}
		if inst != nil {
			if pg := resolved.PlacementGroup; pg != nil && pg.Strategy == string(ec2types.PlacementStrategyPartition) {
				inst.PlacementGroupPartition = p.partitionOf(ctx, inst.ID)
			}
			p.metrics.launches.WithLabelValues("launched", inst.CapacityType).Inc()
			return inst, nil
		}
		unavailable = append(unavailable, refused...)
		p.log.InfoContext(ctx, "no capacity for any option of this capacity type", "nodeClaim", req.NodeClaimName, "capacityType", a.capacityType, "refused", len(refused))
	}
	p.metrics.launches.WithLabelValues("insufficient_capacity", "").Inc()
	return nil, &cloud.InsufficientCapacityError{Unavailable: unavailable}
}

// plan turns the request's options into fleet attempts, spot first. It
// returns the options it skipped because the insufficient-capacity store
// (Config.Offerings) holds them.
func (p *Provider) plan(resolved *cloud.ResolvedNodeClass, req *cloud.LaunchRequest) ([]attempt, []cloud.UnavailableOffering, error) {
	amiByArch := map[string]string{}
	for _, a := range resolved.AMIs {
		amiByArch[a.Arch] = a.ID
	}
	subnetByZone := map[string]string{}
	subnetOK := map[string]bool{}
	for _, s := range resolved.Subnets { // sorted: most free addresses first per zone
		if _, ok := subnetByZone[s.Zone]; !ok {
			subnetByZone[s.Zone] = s.ID
		}
		subnetOK[s.ID] = true
	}
	resByID := map[string]*cloud.CapacityReservation{}
	for i := range resolved.CapacityReservations {
		resByID[resolved.CapacityReservations[i].ID] = &resolved.CapacityReservations[i]
	}
	byCT := map[string][]override{}
	var skipped []cloud.UnavailableOffering
	var unusable []string
	seen := map[string]bool{}
	for _, o := range req.Options {
		ct := o.CapacityType
		if ct == "" {
			ct = cloud.CapacityTypeOnDemand
		}
		var res *cloud.CapacityReservation
		switch ct {
		case cloud.CapacityTypeSpot, cloud.CapacityTypeOnDemand:
		case cloud.CapacityTypeReserved:
			res = resByID[o.ReservationID]
			if res == nil || res.InstanceType != o.InstanceType || res.Zone != o.Zone {
				unusable = append(unusable, o.InstanceType+"/"+o.Zone+": capacity reservation "+o.ReservationID+" is not one of the node class's for this type and zone")
				continue
			}
			if res.State != cloud.ReservationStateActive {
				unusable = append(unusable, o.InstanceType+"/"+o.Zone+": capacity reservation "+res.ID+" is "+res.State)
				continue
			}
			if n, known := p.reservations.get(res.ID); known && n <= 0 {
				skipped = append(skipped, cloud.UnavailableOffering{InstanceType: o.InstanceType, Zone: o.Zone, CapacityType: ct, Code: "ReservationCapacityExceeded"})
				continue
			}
		default:
			unusable = append(unusable, o.InstanceType+"/"+o.Zone+": capacity type "+ct)
			continue
		}
		if code, ok := p.ice.Unavailable(o.InstanceType, o.Zone, ct); ok {
			p.metrics.iceHits.WithLabelValues(ct).Inc()
			skipped = append(skipped, cloud.UnavailableOffering{InstanceType: o.InstanceType, Zone: o.Zone, CapacityType: ct, Code: code})
			continue
		}
		arch := p.archOf(o.InstanceType)
		ami := amiByArch[arch]
		if ami == "" {
			unusable = append(unusable, o.InstanceType+": no AMI for architecture "+arch)
			continue
		}
		subnet := o.SubnetID
		if subnet == "" || !subnetOK[subnet] {
			subnet = subnetByZone[o.Zone]
		}
		if subnet == "" {
			unusable = append(unusable, o.InstanceType+"/"+o.Zone+": no subnet of the node class in the zone")
			continue
		}
		key := ct + "|" + o.InstanceType + "|" + subnet
		if res != nil {
			// One reserved offering per type and zone: CreateFleet takes
			// one override per pool. Karpenter keeps the reservation with
			// the most room; options arrive cheapest first and reserved
			// prices tie, so the first seen wins unless another has more.
			key = ct + "|" + o.InstanceType + "|" + o.Zone
		}
		if seen[key] {
			if res != nil {
				for i, ov := range byCT[ct] {
					if ov.opt.InstanceType == o.InstanceType && ov.opt.Zone == o.Zone && res.Available > ov.res.Available {
						o.CapacityType = ct
						byCT[ct][i] = override{opt: o, subnet: subnet, arch: arch, ami: ami, res: res}
					}
				}
			}
			continue
		}
		seen[key] = true
		o.CapacityType = ct
		byCT[ct] = append(byCT[ct], override{opt: o, subnet: subnet, arch: arch, ami: ami, res: res})
	}
	// Reserved capacity first (Karpenter: reserved > spot > on-demand):
	// ODCRs in one call, each capacity block in its own (CreateFleet takes
	// one), interruptible reservations in one.
	var attempts []attempt
	parts := map[int][]override{}
	for _, ov := range byCT[cloud.CapacityTypeReserved] {
		parts[reservationPartition(*ov.res)] = append(parts[reservationPartition(*ov.res)], ov)
	}
	for part := 0; part < 3; part++ {
		ovs := parts[part]
		if len(ovs) == 0 {
			continue
		}
		if part == 1 {
			for _, ov := range ovs {
				attempts = append(attempts, attempt{capacityType: cloud.CapacityTypeReserved, overrides: []override{ov}, token: "reserved-cb-" + ov.res.ID})
			}
			continue
		}
		if len(ovs) > maxOverrides {
			ovs = ovs[:maxOverrides]
		}
		attempts = append(attempts, attempt{capacityType: cloud.CapacityTypeReserved, overrides: ovs, token: fmt.Sprintf("reserved-%d", part)})
	}
	for _, ct := range []string{cloud.CapacityTypeSpot, cloud.CapacityTypeOnDemand} {
		ovs := byCT[ct]
		if len(ovs) == 0 {
			continue
		}
		if len(ovs) > maxOverrides {
			ovs = ovs[:maxOverrides]
		}
		attempts = append(attempts, attempt{capacityType: ct, overrides: ovs, token: ct})
	}
	if len(attempts) == 0 && len(skipped) == 0 {
		return nil, nil, fmt.Errorf("ec2: no launch option is usable with this node class: %s", strings.Join(unusable, "; "))
	}
	return attempts, skipped, nil
}

// archOf is the kubernetes.io/arch of an instance type, from the cached
// DescribeInstanceTypes answer or else the bundled catalogue.
func (p *Provider) archOf(instanceType string) string {
	p.typesMu.Lock()
	snap := p.types
	p.typesMu.Unlock()
	if snap != nil {
		if ti, ok := snap.types[instanceType]; ok {
			return ti.arch
		}
	}
	if t, ok := p.catalog.Get(instanceType); ok {
		return t.Arch
	}
	// Graviton families carry a g right after the generation (m7g, c6gd).
	family, _, _ := strings.Cut(instanceType, ".")
	if m := familyScheme.FindString(family); m != "" && strings.HasPrefix(family[len(m):], "g") {
		return "arm64"
	}
	return "amd64"
}

// launch makes one CreateFleet call (with Dovetail's own retries for
// throttling answers inside the fleet response). It returns the instance, or
// the offerings EC2 refused for capacity, or an error for anything else.
func (p *Provider) launch(ctx context.Context, nc nodeClass, resolved *cloud.ResolvedNodeClass, req *cloud.LaunchRequest, a attempt) (*cloud.Instance, []cloud.UnavailableOffering, error) {
	labels := maps.Clone(req.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[labelCapacityType] = a.capacityType
	if req.NodePoolName != "" {
		labels[labelNodePool] = req.NodePoolName
	}
	labels[labelPrefix+"ec2nodeclass"] = nc.Name
	if pg := resolved.PlacementGroup; pg != nil {
		labels[labelPrefix+"placement-group-id"] = pg.ID
	}

	sgs := make([]string, 0, len(resolved.SecurityGroups))
	for _, g := range resolved.SecurityGroups {
		sgs = append(sgs, g.ID)
	}
	// One launch template per AMI (so per architecture), and for reserved
	// launches per reservation: the template names its target.
	groups := map[string][]override{}
	for _, o := range a.overrides {
		k := o.ami
		if o.res != nil {
			k += "|" + o.res.ID
		}
		groups[k] = append(groups[k], o)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var configs []ec2types.FleetLaunchTemplateConfigRequest
	zoneOfSubnet := map[string]string{}
	for _, k := range keys {
		ovs := groups[k]
		tl := labels
		res := ovs[0].res
		if res != nil {
			tl = maps.Clone(labels)
			tl[labelPrefix+"capacity-reservation-id"] = res.ID
			tl[labelPrefix+"capacity-reservation-type"] = res.ReservationType
			tl[labelPrefix+"capacity-reservation-interruptible"] = strconv.FormatBool(res.Interruptible)
		}
		spec, err := p.templateSpec(nc, ovs[0].ami, sgs, tl, req)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case res != nil:
			spec.CRPreference, spec.CRTarget, spec.MarketType = string(ec2types.CapacityReservationPreferenceCapacityReservationsOnly), res.ID, marketType(*res)
		case len(nc.CRTerms) > 0:
			// As Karpenter: spot and on-demand launches of a class that
			// selects reservations stay out of open ones, so the
			// reservations' counts are the class's reserved launches.
			spec.CRPreference = string(ec2types.CapacityReservationPreferenceNone)
		}
		if pg := resolved.PlacementGroup; pg != nil {
			spec.PlacementGroupID = pg.ID
		}
		name := spec.name(p.cfg.ClusterName)
		if err := p.ensureLaunchTemplate(ctx, name, spec); err != nil {
			return nil, nil, err
		}
		cfg := ec2types.FleetLaunchTemplateConfigRequest{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: aws.String(name), Version: aws.String("$Latest")},
		}
		for _, o := range ovs {
			zoneOfSubnet[o.subnet] = o.opt.Zone
			cfg.Overrides = append(cfg.Overrides, ec2types.FleetLaunchTemplateOverridesRequest{
				InstanceType: ec2types.InstanceType(o.opt.InstanceType), SubnetId: aws.String(o.subnet), AvailabilityZone: aws.String(o.opt.Zone),
			})
		}
		configs = append(configs, cfg)
	}

	tags := p.instanceTags(nc, req)
	in := &awsec2.CreateFleetInput{
		Type:                  ec2types.FleetTypeInstant,
		LaunchTemplateConfigs: configs,
		TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{
			TotalTargetCapacity:       aws.Int32(1),
			DefaultTargetCapacityType: ec2types.DefaultTargetCapacityType(a.capacityType),
		},
		TagSpecifications: []ec2types.TagSpecification{
			{ResourceType: ec2types.ResourceTypeInstance, Tags: ec2Tags(tags)},
			{ResourceType: ec2types.ResourceTypeVolume, Tags: ec2Tags(tags)},
			{ResourceType: ec2types.ResourceTypeFleet, Tags: ec2Tags(tags)},
		},
	}
	switch {
	case a.capacityType == cloud.CapacityTypeSpot:
		in.SpotOptions = &ec2types.SpotOptionsRequest{AllocationStrategy: ec2types.SpotAllocationStrategyPriceCapacityOptimized}
	case a.capacityType == cloud.CapacityTypeReserved:
		// Every override of a reserved call is of one partition.
		res := a.overrides[0].res
		in.TargetCapacitySpecification.DefaultTargetCapacityType = targetCapacityType(*res)
		switch {
		case res.Interruptible:
			in.ReservedCapacityOptions = &ec2types.ReservedCapacityOptionsRequest{
				ReservationTypes: []ec2types.FleetReservationType{ec2types.FleetReservationTypeInterruptibleCapacityReservation}}
		case res.ReservationType != cloud.ReservationTypeCapacityBlock:
			in.OnDemandOptions = &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyLowestPrice}
		}
	default:
		in.OnDemandOptions = &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyLowestPrice}
	}

	out, err := p.createFleet(ctx, req, a.token, in)
	if err != nil {
		return nil, nil, err
	}
	return p.fleetResult(ctx, req, a, out, tags, sgs, zoneOfSubnet, a.overrides, resolved.PlacementGroup)
}

// createFleet calls CreateFleet with a token derived from the request's.
// Throttling inside the fleet answer (no instance, only
// RequestLimitExceeded errors) is retried with backoff under the next token
// of a fixed sequence, so a replay walks the same tokens and finds the same
// answers. SDK-level throttling is retried by the SDK itself.
func (p *Provider) createFleet(ctx context.Context, req *cloud.LaunchRequest, capacityType string, in *awsec2.CreateFleetInput) (*awsec2.CreateFleetOutput, error) {
	backoff := 200 * time.Millisecond
	throttled := 0
	for try := 0; ; try++ {
		in.ClientToken = aws.String(deriveToken(req.ClientToken, capacityType, strconv.Itoa(try)))
		out, err := p.ec2.CreateFleet(ctx, in)
		if err != nil {
			var apiErr smithy.APIError
			if errors.As(err, &apiErr) && apiErr.ErrorCode() == "IdempotentParameterMismatch" {
				// The token was used before with other options (the ICE
				// cache or the node class changed since). If that launch
				// made an instance, it carries the NodeClaim's tag.
				return p.afterMismatch(ctx, req, capacityType, in)
			}
			if isThrottle(err) && throttled < p.cfg.FleetRetries {
				// Refused before EC2 recorded the token: retry the same one.
				throttled++
				if err := p.sleep(ctx, backoff); err != nil {
					return nil, err
				}
				backoff *= 2
				try--
				continue
			}
			return nil, fmt.Errorf("create fleet (%s): %w", capacityType, err)
		}
		if len(launchedIDs(out)) == 0 && onlyThrottled(out.Errors) && throttled < p.cfg.FleetRetries {
			throttled++
			p.log.InfoContext(ctx, "fleet throttled, retrying", "nodeClaim", req.NodeClaimName, "try", try+1, "backoff", backoff)
			if err := p.sleep(ctx, backoff); err != nil {
				return nil, err
			}
			backoff *= 2
			continue
		}
		return out, nil
	}
}

func (p *Provider) afterMismatch(ctx context.Context, req *cloud.LaunchRequest, capacityType string, in *awsec2.CreateFleetInput) (*awsec2.CreateFleetOutput, error) {
	if req.NodeClaimName != "" {
		existing, err := p.findByNodeClaim(ctx, req.NodeClaimName)
		if err != nil {
			return nil, err
		}
		if existing != nil {
			return &awsec2.CreateFleetOutput{Instances: []ec2types.CreateFleetInstance{{
				InstanceIds: []string{existing.ID}, InstanceType: ec2types.InstanceType(existing.InstanceType),
				Lifecycle: ec2types.InstanceLifecycle(existing.CapacityType), AvailabilityZone: aws.String(existing.Zone),
			}}}, nil
		}
	}
	if req.NodeClaimName == "" {
		// Without the NodeClaim tag there is no way to tell whether the
		// earlier call launched something; refuse rather than risk a
		// second instance.
		return nil, fmt.Errorf("create fleet (%s): client token %q was used before with other options and the request names no NodeClaim to look the instance up by", capacityType, req.ClientToken)
	}
	// Nothing was launched under the old parameters: a token naming the
	// new parameters is safe and stays stable for replays of this request.
	sum := sha256.Sum256([]byte(fmt.Sprint(in.LaunchTemplateConfigs)))
	in.ClientToken = aws.String(deriveToken(req.ClientToken, capacityType, "p"+hex.EncodeToString(sum[:6])))
	p.log.WarnContext(ctx, "client token reused with other parameters and no instance found; launching under a derived token", "nodeClaim", req.NodeClaimName)
	out, err := p.ec2.CreateFleet(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("create fleet (%s): %w", capacityType, err)
	}
	return out, nil
}

// deriveToken makes an EC2 client token (at most 64 printable ASCII
// characters) that is a pure function of its parts.
func deriveToken(base string, parts ...string) string {
	s := base + "-" + strings.Join(parts, "-")
	ok := len(s) <= 64
	for i := 0; ok && i < len(s); i++ {
		ok = s[i] >= 0x21 && s[i] <= 0x7e
	}
	if ok {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "dt-" + hex.EncodeToString(sum[:])[:61]
}

func launchedIDs(out *awsec2.CreateFleetOutput) []string {
	var ids []string
	for _, i := range out.Instances {
		ids = append(ids, i.InstanceIds...)
	}
	return ids
}

func onlyThrottled(errs []ec2types.CreateFleetError) bool {
	if len(errs) == 0 {
		return false
	}
	for _, e := range errs {
		switch aws.ToString(e.ErrorCode) {
		case "RequestLimitExceeded", "Throttling":
		default:
			return false
		}
	}
	return true
}

func (p *Provider) fleetResult(ctx context.Context, req *cloud.LaunchRequest, a attempt, out *awsec2.CreateFleetOutput, tags map[string]string, sgs []string, zoneOfSubnet map[string]string, ovs []override, pg *cloud.PlacementGroup) (*cloud.Instance, []cloud.UnavailableOffering, error) {
	// A reserved call's lifecycle reads on-demand (or capacity-block): the
	// capacity type is the call's.
	capacityTypeOf := func(l ec2types.InstanceLifecycle) string {
		if a.capacityType == cloud.CapacityTypeReserved {
			return cloud.CapacityTypeReserved
		}
		return lifecycleCapacityType(l, a.capacityType)
	}
	reservationOf := func(itype, zone string) *cloud.CapacityReservation {
		for _, o := range ovs {
			if o.res != nil && o.opt.InstanceType == itype && o.opt.Zone == zone {
				return o.res
			}
		}
		return nil
	}
	var refused []cloud.UnavailableOffering
	var other []string
	for _, e := range out.Errors {
		code := aws.ToString(e.ErrorCode)
		itype, zone := "", ""
		if lo := e.LaunchTemplateAndOverrides; lo != nil && lo.Overrides != nil {
			itype = string(lo.Overrides.InstanceType)
			zone = aws.ToString(lo.Overrides.AvailabilityZone)
			if zone == "" {
				zone = zoneOfSubnet[aws.ToString(lo.Overrides.SubnetId)]
			}
		}
		ct := capacityTypeOf(e.Lifecycle)
		if isICECode(code) && itype != "" {
			if r := reservationOf(itype, zone); r != nil {
				// Karpenter marks the reservation unavailable; the next
				// DescribeCapacityReservations answer tells the truth again.
				p.reservations.exhausted(r.ID)
			}
			p.ice.MarkUnavailable(itype, zone, ct, code)
			p.metrics.iceMarks.WithLabelValues(ct, code).Inc()
			refused = append(refused, cloud.UnavailableOffering{InstanceType: itype, Zone: zone, CapacityType: ct, Code: code})
			continue
		}
		if strings.Contains(code, "LaunchTemplate") {
			// The template was deleted behind our back: forget it so the
			// next attempt recreates it.
			p.ltMu.Lock()
			p.lts = map[string]bool{}
			p.ltMu.Unlock()
		}
		other = append(other, fmt.Sprintf("%s %s/%s: %s (%s)", ct, itype, zone, code, aws.ToString(e.ErrorMessage)))
	}
	for _, fi := range out.Instances {
		if len(fi.InstanceIds) == 0 {
			continue
		}
		if len(fi.InstanceIds) > 1 || len(out.Instances) > 1 {
			p.log.WarnContext(ctx, "fleet returned more than one instance for a target of one", "ids", launchedIDs(out))
		}
		id := fi.InstanceIds[0]
		if !validInstanceID(id) {
			// Accepting it would record a launch of nothing while a real
			// instance may run untracked (later collected as a leak), and
			// the cache would hand the bogus ID to the next lookup.
			return nil, nil, fmt.Errorf("create fleet (%s): EC2 answered with an invalid instance ID %q for NodeClaim %s; not recorded", a.capacityType, id, req.NodeClaimName)
		}
		itype := string(fi.InstanceType)
		zone := aws.ToString(fi.AvailabilityZone)
		if lo := fi.LaunchTemplateAndOverrides; lo != nil && lo.Overrides != nil {
			if itype == "" {
				itype = string(lo.Overrides.InstanceType)
			}
			if zone == "" {
				zone = aws.ToString(lo.Overrides.AvailabilityZone)
			}
			if zone == "" {
				zone = zoneOfSubnet[aws.ToString(lo.Overrides.SubnetId)]
			}
		}
		if zone == "" {
			zone = zoneOfSubnet[aws.ToString(fi.SubnetId)]
		}
		subnet := aws.ToString(fi.SubnetId)
		if lo := fi.LaunchTemplateAndOverrides; subnet == "" && lo != nil && lo.Overrides != nil {
			subnet = aws.ToString(lo.Overrides.SubnetId)
		}
		if itype == "" || zone == "" {
			return nil, nil, fmt.Errorf("create fleet (%s): EC2's answer for instance %s lacks its instance type (%q) or zone (%q); not recorded", a.capacityType, id, itype, zone)
		}
		image := ""
		arch := p.archOf(itype)
		for _, o := range ovs {
			if o.arch == arch {
				image = o.ami
			}
		}
		inst := &cloud.Instance{
			ID: id, ProviderID: cloud.ProviderID(zone, id), InstanceType: itype, Zone: zone,
			CapacityType: capacityTypeOf(fi.Lifecycle), ImageID: image,
			State: cloud.StatePending, LaunchTime: p.clock.Now(), Tags: tags, SubnetID: subnet,
		}
		if r := reservationOf(itype, zone); r != nil && a.capacityType == cloud.CapacityTypeReserved {
			inst.CapacityReservationID, inst.CapacityReservationType, inst.CapacityReservationInterruptible = r.ID, r.ReservationType, r.Interruptible
			p.reservations.launched(r.ID)
		}
		if pg != nil {
			inst.PlacementGroupID = pg.ID
		}
		if len(sgs) > 0 {
			// The launch template carries exactly these groups, so the
			// instance runs in them; recording them spares a DescribeInstances.
			inst.SecurityGroupIDs = append([]string(nil), sgs...)
		}
		p.recent.add(inst)
		p.log.InfoContext(ctx, "instance launched", "nodeClaim", req.NodeClaimName, "instance", id, "type", itype, "zone", zone, "capacityType", inst.CapacityType, "refusedFirst", len(refused))
		return inst, nil, nil
	}
	if len(other) > 0 {
		return nil, nil, fmt.Errorf("create fleet (%s) launched nothing: %s", a.capacityType, strings.Join(other, "; "))
	}
	if len(refused) == 0 {
		return nil, nil, fmt.Errorf("create fleet (%s) launched nothing and reported no error", a.capacityType)
	}
	return nil, refused, nil
}

// validInstanceID accepts what can be an EC2 instance ID: "i-" and 1 to
// 62 lower-case letters or digits (EC2 uses 8 or 17 hexadecimal digits).
func validInstanceID(id string) bool {
	h, ok := strings.CutPrefix(id, "i-")
	if !ok || h == "" || len(h) > 62 {
		return false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

func lifecycleCapacityType(l ec2types.InstanceLifecycle, fallback string) string {
	switch l {
	case ec2types.InstanceLifecycleSpot:
		return cloud.CapacityTypeSpot
	case ec2types.InstanceLifecycleOnDemand:
		return cloud.CapacityTypeOnDemand
	}
	return fallback
}

// instanceTags are the tags of the instance and its volumes: the node
// class's, the request's, then Dovetail's own (which win).
func (p *Provider) instanceTags(nc nodeClass, req *cloud.LaunchRequest) map[string]string {
	tags := map[string]string{}
	maps.Copy(tags, nc.Tags)
	maps.Copy(tags, req.Tags)
	tags[cloud.TagCluster] = p.cfg.ClusterName
	tags[cloud.TagNodeClass] = nc.Name
	tags[cloud.TagLeaderTerm] = strconv.FormatUint(req.LeaderTerm, 10)
	if req.NodePoolName != "" {
		tags[cloud.TagNodePool] = req.NodePoolName
	}
	if req.NodeClaimName != "" {
		tags[cloud.TagNodeClaim] = req.NodeClaimName
		if _, ok := tags[cloud.TagName]; !ok {
			tags[cloud.TagName] = req.NodeClaimName
		}
	}
	return tags
}

// templateSpec assembles the launch template for one AMI.
func (p *Provider) templateSpec(nc nodeClass, ami string, sgs []string, labels map[string]string, req *cloud.LaunchRequest) (templateSpec, error) {
	taints := append(append([]corev1.Taint(nil), req.Taints...), req.StartupTaints...)
	ud, err := userData(nc.AMIFamily, bootstrap{
		ClusterName: p.cfg.ClusterName, ClusterEndpoint: p.cfg.ClusterEndpoint, ClusterCA: p.cfg.ClusterCA, ClusterCIDR: p.cfg.ClusterCIDR,
		Labels: labels, Taints: taints, Kubelet: nc.Kubelet, MaxPods: nc.Kubelet.MaxPods, Custom: nc.UserData,
	})
	if err != nil {
		return templateSpec{}, fmt.Errorf("node class %s: user data: %w", nc.Name, err)
	}
	devices := nc.BlockDevices
	if len(devices) == 0 {
		devices = defaultBlockDevices(nc.AMIFamily)
	}
	profile := nc.InstanceProfile
	if profile == "" {
		// Without IAM access Dovetail cannot create an instance profile for
		// a role; it expects one of the same name (the console's default).
		profile = nc.Role
	}
	return templateSpec{
		NodeClass: nc.Name, Family: nc.AMIFamily, AMI: ami, UserData: ud, SGs: sgs, Profile: profile,
		Devices: devices, Metadata: nc.Metadata, Monitor: nc.DetailedMonitoring, PublicIP: nc.AssociatePublicIP,
		IPPrefixCount: nc.IPPrefixCount, ConnTrack: nc.ConnTrack, NestedVirt: nc.NestedVirtualization, NICs: nc.NICs,
	}, nil
}
