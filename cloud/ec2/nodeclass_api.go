package ec2

import (
	"errors"
	"maps"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
)

// fromAPI converts an EC2NodeClass into the provider's own view of it.
func fromAPI(in *awsv1.EC2NodeClass) (nodeClass, error) {
	if in == nil {
		return nodeClass{}, errors.New("ec2: nil EC2NodeClass")
	}
	s := in.Spec
	nc := nodeClass{
		Name:               in.Name,
		Role:               s.Role,
		InstanceProfile:    deref(s.InstanceProfile),
		Tags:               maps.Clone(s.Tags),
		UserData:           deref(s.UserData),
		AssociatePublicIP:  s.AssociatePublicIPAddress,
		DetailedMonitoring: s.DetailedMonitoring != nil && *s.DetailedMonitoring,
	}
	nc.IPPrefixCount = deref(s.IPPrefixCount)
	for _, n := range s.NetworkInterfaces {
		if n != nil {
			nc.NICs = append(nc.NICs, nic{Card: n.NetworkCardIndex, Device: n.DeviceIndex, Type: string(n.InterfaceType)})
		}
	}
	if c := s.ConnectionTracking; c != nil {
		nc.ConnTrack = &connTrack{TCPEstablished: deref(c.TCPEstablishedTimeout), UDPStream: deref(c.UDPStreamTimeout), UDP: deref(c.UDPTimeout)}
	}
	if c := s.CPUOptions; c != nil {
		nc.NestedVirtualization = deref(c.NestedVirtualization)
	}
	if s.AMIFamily != nil {
		nc.AMIFamily = *s.AMIFamily
	} else if a, ok, err := in.Alias(); ok && err == nil {
		nc.AMIFamily = a.AMIFamily()
	} else if !ok {
		// Karpenter's default when only custom AMI terms are given.
		nc.AMIFamily = FamilyCustom
	}
	for _, t := range s.AMISelectorTerms {
		nc.AMITerms = append(nc.AMITerms, amiTerm{Alias: t.Alias, ID: t.ID, Name: t.Name, Owner: t.Owner, Tags: maps.Clone(t.Tags), SSMParameter: t.SSMParameter})
	}
	for _, t := range s.SubnetSelectorTerms {
		nc.SubnetTerms = append(nc.SubnetTerms, selectorTerm{ID: t.ID, Tags: maps.Clone(t.Tags)})
	}
	for _, t := range s.SecurityGroupSelectorTerms {
		nc.SGTerms = append(nc.SGTerms, selectorTerm{ID: t.ID, Name: t.Name, Tags: maps.Clone(t.Tags)})
	}
	for _, t := range s.CapacityReservationSelectorTerms {
		nc.CRTerms = append(nc.CRTerms, crTerm{ID: t.ID, OwnerID: t.OwnerID, Tags: maps.Clone(t.Tags), InstanceMatchCriteria: t.InstanceMatchCriteria})
	}
	if pg := s.PlacementGroupSelector; pg != nil {
		nc.PlacementGroup = &pgSelector{Name: deref(pg.Name), ID: deref(pg.ID)}
	}
	if k := s.Kubelet; k != nil {
		nc.Kubelet = kubeletConfig{
			MaxPods:        deref(k.MaxPods),
			PodsPerCore:    deref(k.PodsPerCore),
			ClusterDNS:     append([]string(nil), k.ClusterDNS...),
			SystemReserved: maps.Clone(k.SystemReserved),
			KubeReserved:   maps.Clone(k.KubeReserved),
			EvictionHard:   maps.Clone(k.EvictionHard),
		}
	}
	if m := s.MetadataOptions; m != nil {
		nc.Metadata = metadataOptions{
			HTTPEndpoint:            deref(m.HTTPEndpoint),
			HTTPProtocolIPv6:        deref(m.HTTPProtocolIPv6),
			HTTPPutResponseHopLimit: int32(deref(m.HTTPPutResponseHopLimit)),
			HTTPTokens:              deref(m.HTTPTokens),
		}
	}
	for _, b := range s.BlockDeviceMappings {
		if b == nil {
			continue
		}
		bd := blockDevice{DeviceName: deref(b.DeviceName), RootVolume: b.RootVolume}
		if e := b.EBS; e != nil {
			if e.VolumeSize != nil {
				// EBS sizes are whole GiB; round a request up, never down.
				const giB = 1 << 30
				bd.VolumeSizeGiB = int32((e.VolumeSize.Value() + giB - 1) / giB)
			}
			bd.VolumeType = deref(e.VolumeType)
			bd.IOPS = int32(deref(e.IOPS))
			bd.Throughput = int32(deref(e.Throughput))
			bd.Encrypted = e.Encrypted
			bd.KMSKeyID = deref(e.KMSKeyID)
			bd.SnapshotID = deref(e.SnapshotID)
			bd.DeleteOnTermination = e.DeleteOnTermination
			bd.VolumeInitializationRate = deref(e.VolumeInitializationRate)
		}
		nc.BlockDevices = append(nc.BlockDevices, bd)
	}
	return nc.withDefaults(), nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
