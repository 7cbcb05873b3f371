package ec2

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
)

type cachedNodeClass struct {
	resolved *cloud.ResolvedNodeClass
	until    time.Time
}

// resolve answers what a node class's selectors match right now, from a
// short cache: selectors are read on every launch, and subnets, groups and
// AMIs change on the scale of minutes at the fastest.
func (p *Provider) resolve(ctx context.Context, nc nodeClass) (*cloud.ResolvedNodeClass, error) {
	key := nc.selectorKey()
	now := p.clock.Now()
	p.ncMu.Lock()
	if c, ok := p.ncCache[key]; ok && now.Before(c.until) {
		p.ncMu.Unlock()
		return c.resolved, nil
	}
	p.ncMu.Unlock()

	amis, err := p.resolveAMIs(ctx, nc)
	if err != nil {
		return nil, fmt.Errorf("node class %s: %w", nc.Name, err)
	}
	subnets, err := p.resolveSubnets(ctx, nc.SubnetTerms)
	if err != nil {
		return nil, fmt.Errorf("node class %s: %w", nc.Name, err)
	}
	sgs, err := p.resolveSecurityGroups(ctx, nc.SGTerms)
	if err != nil {
		return nil, fmt.Errorf("node class %s: %w", nc.Name, err)
	}
	reservations, err := p.resolveReservations(ctx, nc)
	if err != nil {
		return nil, fmt.Errorf("node class %s: %w", nc.Name, err)
	}
	pg, err := p.resolvePlacementGroup(ctx, nc)
	if err != nil {
		return nil, fmt.Errorf("node class %s: %w", nc.Name, err)
	}
	r := &cloud.ResolvedNodeClass{AMIs: amis, Subnets: subnets, SecurityGroups: sgs, CapacityReservations: reservations, PlacementGroup: pg}
	p.ncMu.Lock()
	p.ncCache[key] = cachedNodeClass{resolved: r, until: now.Add(p.cfg.NodeClassTTL)}
	p.ncMu.Unlock()
	return r, nil
}

func describeSelector(t selectorTerm) string {
	var parts []string
	if t.ID != "" {
		parts = append(parts, "id="+t.ID)
	}
	if t.Name != "" {
		parts = append(parts, "name="+t.Name)
	}
	if len(t.Tags) > 0 {
		parts = append(parts, "tags{"+joinPairs(t.Tags)+"}")
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func (p *Provider) resolveSubnets(ctx context.Context, terms []selectorTerm) ([]cloud.Subnet, error) {
	if len(terms) == 0 {
		return nil, fmt.Errorf("%w: the node class has no subnetSelectorTerms", ErrNoSubnets)
	}
	seen := map[string]cloud.Subnet{}
	var tried []string
	for _, t := range terms {
		in := &awsec2.DescribeSubnetsInput{Filters: tagFilters(t.Tags)}
		if t.ID != "" {
			in.SubnetIds = []string{t.ID}
		}
		if t.ID == "" && len(in.Filters) == 0 {
			return nil, fmt.Errorf("%w: a subnetSelectorTerm needs id or tags", ErrNoSubnets)
		}
		tried = append(tried, describeSelector(t))
		pages := awsec2.NewDescribeSubnetsPaginator(p.ec2, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				if isNotFoundCode(err) {
					break
				}
				return nil, fmt.Errorf("describe subnets: %w", err)
			}
			for _, s := range page.Subnets {
				if s.State != "" && s.State != ec2types.SubnetStateAvailable {
					continue
				}
				id := aws.ToString(s.SubnetId)
				seen[id] = cloud.Subnet{ID: id, Zone: aws.ToString(s.AvailabilityZone), ZoneID: aws.ToString(s.AvailabilityZoneId), AvailableIPs: aws.ToInt32(s.AvailableIpAddressCount)}
			}
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("%w: nothing found for %s", ErrNoSubnets, strings.Join(tried, "; "))
	}
	out := make([]cloud.Subnet, 0, len(seen))
	for _, s := range seen {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Zone != out[j].Zone {
			return out[i].Zone < out[j].Zone
		}
		// The subnet with most free addresses first: the one to launch into.
		if out[i].AvailableIPs != out[j].AvailableIPs {
			return out[i].AvailableIPs > out[j].AvailableIPs
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func (p *Provider) resolveSecurityGroups(ctx context.Context, terms []selectorTerm) ([]cloud.SecurityGroup, error) {
	if len(terms) == 0 {
		return nil, fmt.Errorf("%w: the node class has no securityGroupSelectorTerms", ErrNoSecurityGroups)
	}
	seen := map[string]cloud.SecurityGroup{}
	var tried []string
	for _, t := range terms {
		in := &awsec2.DescribeSecurityGroupsInput{Filters: tagFilters(t.Tags)}
		if t.ID != "" {
			in.GroupIds = []string{t.ID}
		}
		if t.Name != "" {
			in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("group-name"), Values: []string{t.Name}})
		}
		if t.ID == "" && len(in.Filters) == 0 {
			return nil, fmt.Errorf("%w: a securityGroupSelectorTerm needs id, name or tags", ErrNoSecurityGroups)
		}
		tried = append(tried, describeSelector(t))
		pages := awsec2.NewDescribeSecurityGroupsPaginator(p.ec2, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				if isNotFoundCode(err) {
					break
				}
				return nil, fmt.Errorf("describe security groups: %w", err)
			}
			for _, g := range page.SecurityGroups {
				id := aws.ToString(g.GroupId)
				seen[id] = cloud.SecurityGroup{ID: id, Name: aws.ToString(g.GroupName)}
			}
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("%w: nothing found for %s", ErrNoSecurityGroups, strings.Join(tried, "; "))
	}
	out := make([]cloud.SecurityGroup, 0, len(seen))
	for _, g := range seen {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ResolveNodeClass resolves an EC2NodeClass's selectors: the newest AMI per
// architecture, the subnets (per zone, most free addresses first) and the
// security groups. When a selector matches nothing the error wraps
// ErrNoAMI, ErrNoSubnets or ErrNoSecurityGroups and says which terms were
// tried, for the node class's status condition.
func (p *Provider) ResolveNodeClass(ctx context.Context, nodeClass *awsv1.EC2NodeClass) (*cloud.ResolvedNodeClass, error) {
	nc, err := fromAPI(nodeClass)
	if err != nil {
		return nil, err
	}
	return p.resolve(ctx, nc)
}
