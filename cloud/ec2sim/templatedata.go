package ec2sim

import (
	"fmt"

	"strconv"
)

// checkTemplateData refuses launch template settings EC2 refuses, with its
// error code: volume initialization rates outside 100–300 MiB/s or without
// a snapshot, conntrack timeouts outside their ranges, a prefix count below
// one, and an unknown nested-virtualization value.
func checkTemplateData(p *params) *apiError {
	bad := func(format string, args ...any) *apiError {
		return &apiError{Status: 400, Code: "InvalidParameterValue", Message: fmt.Sprintf(format, args...)}
	}
	for _, i := range p.indices("LaunchTemplateData.BlockDeviceMapping") {
		pre := fmt.Sprintf("LaunchTemplateData.BlockDeviceMapping.%d.Ebs.", i)
		rate := p.str(pre + "VolumeInitializationRate")
		if rate == "" {
			continue
		}
		n, err := strconv.Atoi(rate)
		if err != nil || n < 100 || n > 300 {
			return bad("The volume initialization rate %q must be between 100 and 300 MiB/s.", rate)
		}
		if p.str(pre+"SnapshotId") == "" {
			return bad("A volume initialization rate can only be specified for volumes created from a snapshot.")
		}
	}
	ranges := map[string][2]int{"TcpEstablishedTimeout": {60, 432000}, "UdpStreamTimeout": {60, 180}, "UdpTimeout": {30, 60}}
	for _, i := range p.indices("LaunchTemplateData.NetworkInterface") {
		pre := fmt.Sprintf("LaunchTemplateData.NetworkInterface.%d.", i)
		for k, r := range ranges {
			v := p.str(pre + "ConnectionTrackingSpecification." + k)
			if v == "" {
				continue
			}
			if n, err := strconv.Atoi(v); err != nil || n < r[0] || n > r[1] {
				return bad("%s %q must be between %d and %d seconds.", k, v, r[0], r[1])
			}
		}
		if v := p.str(pre + "Ipv4PrefixCount"); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n < 1 {
				return bad("Ipv4PrefixCount %q must be a positive integer.", v)
			}
			if p.str(pre+"SecondaryPrivateIpAddressCount") != "" {
				return bad("Ipv4PrefixCount cannot be combined with SecondaryPrivateIpAddressCount.")
			}
		}
	}
	if v := p.str("LaunchTemplateData.CpuOptions.NestedVirtualization"); v != "" && v != "enabled" && v != "disabled" {
		return bad("Invalid nested virtualization value %q.", v)
	}
	return nil
}

// LaunchTemplateData returns the LaunchTemplateData parameters the named
// template was created with (query-protocol keys without the
// "LaunchTemplateData." prefix), or nil if there is no such template.
func (s *Sim) LaunchTemplateData(name string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, lt := range s.templates {
		if lt.name == name {
			out := make(map[string]string, len(lt.data))
			for k, v := range lt.data {
				out[k[len("LaunchTemplateData."):]] = v
			}
			return out
		}
	}
	return nil
}

// LaunchTemplateNames lists the simulator's launch templates by name.
func (s *Sim) LaunchTemplateNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, lt := range s.templates {
		out = append(out, lt.name)
	}
	return out
}
