package ec2sim

import (
	"fmt"
	"strconv"
)

// placementGroup is an EC2 placement group: cluster (one zone, packed),
// partition (instances spread over numbered partitions) or spread (at most
// seven running instances per zone).
type placementGroup struct {
	id, name, strategy, spreadLevel, state string
	partitions                             int
	tags                                   map[string]string
}

// spreadPerZone is EC2's limit of running instances per zone in a spread
// placement group.
const spreadPerZone = 7

// CreatePlacementGroup adds an available placement group and returns its
// id. partitions applies to the partition strategy (1–7, default 2).
func (s *Sim) CreatePlacementGroup(name, strategy string, partitions int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, aerr := s.newPlacementGroupLocked(name, strategy, partitions, nil)
	if aerr != nil {
		return "", aerr
	}
	return g.id, nil
}

func (s *Sim) newPlacementGroupLocked(name, strategy string, partitions int, tags map[string]string) (*placementGroup, *apiError) {
	if name == "" {
		return nil, missingParam("GroupName")
	}
	for _, g := range s.placementGroups {
		if g.name == name {
			return nil, &apiError{Status: 400, Code: "InvalidPlacementGroup.Duplicate", Message: fmt.Sprintf("The placement group '%s' already exists.", name)}
		}
	}
	g := &placementGroup{name: name, strategy: strategy, state: "available", tags: copyTags(tags)}
	switch strategy {
	case "cluster":
	case "spread":
		g.spreadLevel = "rack"
	case "partition":
		if partitions == 0 {
			partitions = 2
		}
		if partitions < 1 || partitions > 7 {
			return nil, badParam("PartitionCount must be between 1 and 7")
		}
		g.partitions = partitions
	default:
		return nil, badParam("Strategy must be cluster, partition or spread")
	}
	s.seq++
	g.id = fmt.Sprintf("pg-%017x", 0x0b0b0b000000000+s.seq)
	if s.placementGroups == nil {
		s.placementGroups = map[string]*placementGroup{}
	}
	s.placementGroups[g.id] = g
	return g, nil
}

func (s *Sim) createPlacementGroupAPI(p *params, w *xw) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, aerr := s.newPlacementGroupLocked(p.str("GroupName"), p.str("Strategy"), p.int("PartitionCount", 0), p.tagSpecs("TagSpecification")["placement-group"])
	if aerr != nil {
		return aerr
	}
	w.open("placementGroup")
	writePlacementGroupBody(w, g)
	w.close("placementGroup")
	return nil
}

func writePlacementGroupBody(w *xw, g *placementGroup) {
	w.elem("groupName", g.name)
	w.elem("groupId", g.id)
	w.elem("state", g.state)
	w.elem("strategy", g.strategy)
	if g.partitions > 0 {
		w.intElem("partitionCount", int64(g.partitions))
	}
	w.opt("spreadLevel", g.spreadLevel)
	w.tagSet(g.tags)
}

func (s *Sim) describePlacementGroups(p *params, w *xw) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	names, ids := p.list("GroupName"), p.list("GroupId")
	for _, n := range names {
		if s.placementGroupLocked("", n) == nil {
			return &apiError{Status: 400, Code: "InvalidPlacementGroup.Unknown", Message: fmt.Sprintf("The Placement Group '%s' is unknown.", n)}
		}
	}
	for _, id := range ids {
		if s.placementGroupLocked(id, "") == nil {
			return &apiError{Status: 400, Code: "InvalidPlacementGroup.Unknown", Message: fmt.Sprintf("The Placement Group '%s' is unknown.", id)}
		}
	}
	w.open("placementGroupSet")
	for _, id := range sortedKeys(s.placementGroups) {
		g := s.placementGroups[id]
		if (len(names) > 0 && !matchAny(names, g.name)) || (len(ids) > 0 && !matchAny(ids, g.id)) {
			continue
		}
		ok := true
		for _, f := range p.filters() {
			if m, isTag := matchTags(f, g.tags); isTag {
				ok = ok && m
				continue
			}
			switch f.Name {
			case "state":
				ok = ok && matchAny(f.Values, g.state)
			case "strategy":
				ok = ok && matchAny(f.Values, g.strategy)
			case "group-name":
				ok = ok && matchAny(f.Values, g.name)
			case "group-id":
				ok = ok && matchAny(f.Values, g.id)
			default:
				return badParam("The filter '" + f.Name + "' is invalid")
			}
		}
		if !ok {
			continue
		}
		w.open("item")
		writePlacementGroupBody(w, g)
		w.close("item")
	}
	w.close("placementGroupSet")
	return nil
}

func (s *Sim) placementGroupLocked(id, name string) *placementGroup {
	for _, g := range s.placementGroups {
		if (id != "" && g.id == id) || (name != "" && g.name == name) {
			return g
		}
	}
	return nil
}

// placementLocked decides where a launch from the template goes in its
// placement group, refusing what EC2 refuses: an unknown group, a type
// without the group's strategy, a cluster group's second zone, a spread
// group's eighth running instance in a zone, a partition number outside
// the group. It returns the group id and partition ("", 0: no group).
func (s *Sim) placementLocked(lt *launchTemplate, itype, zone string) (string, int, string, string) {
	if lt == nil {
		return "", 0, "", ""
	}
	id, name := lt.data["LaunchTemplateData.Placement.GroupId"], lt.data["LaunchTemplateData.Placement.GroupName"]
	if id == "" && name == "" {
		return "", 0, "", ""
	}
	g := s.placementGroupLocked(id, name)
	if g == nil || g.state != "available" {
		return "", 0, "InvalidPlacementGroup.Unknown", fmt.Sprintf("The Placement Group '%s%s' is unknown.", id, name)
	}
	t, _ := s.catalogType(itype)
	supported := false
	for _, st := range placementStrategies(&t) {
		supported = supported || st == g.strategy
	}
	if !supported {
		return "", 0, "InvalidParameterCombination", fmt.Sprintf("The instance type '%s' does not support the placement group strategy '%s'.", itype, g.strategy)
	}
	var live []*instance
	for _, in := range s.instances {
		if in.pgID == g.id && in.state != stateTerminated && in.state != stateShuttingDown {
			live = append(live, in)
		}
	}
	switch g.strategy {
	case "cluster":
		for _, in := range live {
			if in.zone != zone {
				return "", 0, "InvalidParameterCombination", fmt.Sprintf("The cluster placement group '%s' is in %s; it cannot take instances in %s.", g.name, in.zone, zone)
			}
		}
	case "spread":
		n := 0
		for _, in := range live {
			if in.zone == zone {
				n++
			}
		}
		if n >= spreadPerZone {
			return "", 0, "InsufficientInstanceCapacity", fmt.Sprintf("You have reached the limit of %d running instances per Availability Zone in spread placement group %s.", spreadPerZone, g.name)
		}
	case "partition":
		if v := lt.data["LaunchTemplateData.Placement.PartitionNumber"]; v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > g.partitions {
				return "", 0, "InvalidParameterValue", fmt.Sprintf("Partition number %s is not valid for placement group %s with %d partitions.", v, g.name, g.partitions)
			}
			return g.id, n, "", ""
		}
		// EC2 spreads instances over the partitions: the emptiest one.
		count := make([]int, g.partitions+1)
		for _, in := range live {
			count[in.partition]++
		}
		best := 1
		for i := 2; i <= g.partitions; i++ {
			if count[i] < count[best] {
				best = i
			}
		}
		return g.id, best, "", ""
	}
	return g.id, 0, "", ""
}
