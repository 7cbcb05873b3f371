package ec2

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
)

// templateSpec is everything that goes into one launch template. Its hash
// names the template, so equal specs share a template and any change (a new
// AMI, other labels, taints or kubelet settings) makes a new one. Tags are
// not part of it: CreateFleet tags the instances and volumes itself.
type templateSpec struct {
	NodeClass string
	Family    string
	AMI       string
	UserData  string
	SGs       []string
	Profile   string
	Devices   []blockDevice
	Metadata  metadataOptions
	Monitor   bool
	PublicIP  *bool
	// omitempty keeps the names (hashes) of templates without them stable.
	IPPrefixCount int32      `json:",omitempty"`
	ConnTrack     *connTrack `json:",omitempty"`
	NestedVirt    string     `json:",omitempty"`
	NICs          []nic      `json:",omitempty"`
	// Capacity reservation targeting: the preference
	// (capacity-reservations-only for reserved launches, none for the
	// others of a class that selects reservations), the target and the
	// market type a capacity block or interruptible reservation needs.
	CRPreference string `json:",omitempty"`
	CRTarget     string `json:",omitempty"`
	MarketType   string `json:",omitempty"`
	// PlacementGroupID and PlacementPartition go on Placement.
	PlacementGroupID   string `json:",omitempty"`
	PlacementPartition int32  `json:",omitempty"`
}

var ltNameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9().\-/_]`)

// name is "dovetail/<cluster>/<nodeclass>/<hash>", within EC2's 128
// characters and character set.
func (t templateSpec) name(cluster string) string {
	b, _ := json.Marshal(t)
	sum := sha256.Sum256(b)
	prefix := ltNameUnsafe.ReplaceAllString("dovetail/"+cluster+"/"+t.NodeClass, "_")
	if len(prefix) > 100 {
		prefix = prefix[:100]
	}
	return prefix + "/" + hex.EncodeToString(sum[:10])
}

// defaultBlockDevices follows what each family's AMI expects: one root
// volume, and Bottlerocket's separate data volume.
func defaultBlockDevices(family string) []blockDevice {
	enc := true
	if _, win := windowsFamilies[family]; win {
		// Karpenter's Windows default: a 50 GiB root volume on /dev/sda1.
		return []blockDevice{{DeviceName: "/dev/sda1", VolumeSizeGiB: 50, VolumeType: "gp3", Encrypted: &enc, RootVolume: true}}
	}
	if family == FamilyBottlerocket {
		return []blockDevice{
			{DeviceName: "/dev/xvda", VolumeSizeGiB: 4, VolumeType: "gp3", Encrypted: &enc},
			{DeviceName: "/dev/xvdb", VolumeSizeGiB: 20, VolumeType: "gp3", Encrypted: &enc, RootVolume: true},
		}
	}
	return []blockDevice{{DeviceName: "/dev/xvda", VolumeSizeGiB: 20, VolumeType: "gp3", Encrypted: &enc, RootVolume: true}}
}

// layout renders the instance's network interfaces: spec.networkInterfaces
// as Karpenter does (every interface as given, card, device and type, with
// the security groups; prefixes, public IP and conntrack only on interfaces
// that are not efa-only, which EC2 refuses there with
// InvalidParameterValue), or, without a layout, an explicit primary
// interface when one of its settings is set (then it must carry the
// security groups). nil: EC2's default primary interface.
func (t templateSpec) layout() []ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest {
	nics := t.NICs
	if len(nics) == 0 {
		if t.PublicIP == nil && t.IPPrefixCount == 0 && t.ConnTrack == nil {
			return nil
		}
		// The primary interface, without InterfaceType (EC2's default ENA).
		nics = []nic{{Card: -1}}
	}
	out := make([]ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest, 0, len(nics))
	for _, n := range nics {
		r := ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{DeviceIndex: aws.Int32(n.Device), Groups: t.SGs}
		if n.Card >= 0 {
			r.NetworkCardIndex, r.InterfaceType = aws.Int32(n.Card), aws.String(n.Type)
		}
		if n.Type != string(awsv1.InterfaceTypeEFAOnly) {
			r.AssociatePublicIpAddress = t.PublicIP
			if t.IPPrefixCount > 0 {
				r.Ipv4PrefixCount = aws.Int32(t.IPPrefixCount)
			}
			if c := t.ConnTrack; c != nil {
				ct := &ec2types.ConnectionTrackingSpecificationRequest{}
				if c.TCPEstablished > 0 {
					ct.TcpEstablishedTimeout = aws.Int32(c.TCPEstablished)
				}
				if c.UDPStream > 0 {
					ct.UdpStreamTimeout = aws.Int32(c.UDPStream)
				}
				if c.UDP > 0 {
					ct.UdpTimeout = aws.Int32(c.UDP)
				}
				r.ConnectionTrackingSpecification = ct
			}
		}
		out = append(out, r)
	}
	return out
}

func (t templateSpec) data() *ec2types.RequestLaunchTemplateData {
	d := &ec2types.RequestLaunchTemplateData{
		ImageId:          aws.String(t.AMI),
		UserData:         aws.String(base64.StdEncoding.EncodeToString([]byte(t.UserData))),
		SecurityGroupIds: t.SGs,
		MetadataOptions: &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{
			HttpEndpoint:            ec2types.LaunchTemplateInstanceMetadataEndpointState(t.Metadata.HTTPEndpoint),
			HttpProtocolIpv6:        ec2types.LaunchTemplateInstanceMetadataProtocolIpv6(t.Metadata.HTTPProtocolIPv6),
			HttpPutResponseHopLimit: aws.Int32(t.Metadata.HTTPPutResponseHopLimit),
			HttpTokens:              ec2types.LaunchTemplateHttpTokensState(t.Metadata.HTTPTokens),
		},
		Monitoring: &ec2types.LaunchTemplatesMonitoringRequest{Enabled: aws.Bool(t.Monitor)},
	}
	if t.Profile != "" {
		d.IamInstanceProfile = &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String(t.Profile)}
	}
	if nics := t.layout(); nics != nil {
		// The interfaces carry the security groups; EC2 refuses both.
		d.NetworkInterfaces = nics
		d.SecurityGroupIds = nil
	}
	if t.CRPreference != "" {
		d.CapacityReservationSpecification = &ec2types.LaunchTemplateCapacityReservationSpecificationRequest{
			CapacityReservationPreference: ec2types.CapacityReservationPreference(t.CRPreference),
		}
		if t.CRTarget != "" {
			d.CapacityReservationSpecification.CapacityReservationTarget = &ec2types.CapacityReservationTarget{CapacityReservationId: aws.String(t.CRTarget)}
		}
	}
	if t.MarketType != "" {
		d.InstanceMarketOptions = &ec2types.LaunchTemplateInstanceMarketOptionsRequest{MarketType: ec2types.MarketType(t.MarketType)}
	}
	if t.PlacementGroupID != "" {
		d.Placement = &ec2types.LaunchTemplatePlacementRequest{GroupId: aws.String(t.PlacementGroupID)}
		if t.PlacementPartition > 0 {
			d.Placement.PartitionNumber = aws.Int32(t.PlacementPartition)
		}
	}
	if t.NestedVirt != "" {
		d.CpuOptions = &ec2types.LaunchTemplateCpuOptionsRequest{NestedVirtualization: ec2types.NestedVirtualizationSpecification(t.NestedVirt)}
	}
	for _, b := range t.Devices {
		ebs := &ec2types.LaunchTemplateEbsBlockDeviceRequest{
			VolumeType:          ec2types.VolumeType(b.VolumeType),
			Encrypted:           b.Encrypted,
			DeleteOnTermination: b.DeleteOnTermination,
		}
		if ebs.DeleteOnTermination == nil {
			ebs.DeleteOnTermination = aws.Bool(true)
		}
		if b.VolumeSizeGiB > 0 {
			ebs.VolumeSize = aws.Int32(b.VolumeSizeGiB)
		}
		if b.IOPS > 0 {
			ebs.Iops = aws.Int32(b.IOPS)
		}
		if b.Throughput > 0 {
			ebs.Throughput = aws.Int32(b.Throughput)
		}
		if b.KMSKeyID != "" {
			ebs.KmsKeyId = aws.String(b.KMSKeyID)
		}
		if b.SnapshotID != "" {
			ebs.SnapshotId = aws.String(b.SnapshotID)
		}
		if b.VolumeInitializationRate > 0 {
			ebs.VolumeInitializationRate = aws.Int32(b.VolumeInitializationRate)
		}
		d.BlockDeviceMappings = append(d.BlockDeviceMappings, ec2types.LaunchTemplateBlockDeviceMappingRequest{DeviceName: aws.String(b.DeviceName), Ebs: ebs})
	}
	return d
}

// ensureLaunchTemplate makes sure the named template exists: known from an
// earlier call, found by DescribeLaunchTemplates, or created now. Two
// coordinators racing to create it both succeed ("already exists" is fine).
func (p *Provider) ensureLaunchTemplate(ctx context.Context, name string, spec templateSpec) error {
	p.ltMu.Lock()
	known := p.lts[name]
	p.ltMu.Unlock()
	if known {
		return nil
	}
	out, err := p.ec2.DescribeLaunchTemplates(ctx, &awsec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{name}})
	switch {
	case err == nil && len(out.LaunchTemplates) > 0:
		p.rememberTemplate(name, true)
		return nil
	case err != nil && !isNotFoundCode(err):
		return fmt.Errorf("describe launch template %s: %w", name, err)
	}
	tags := map[string]string{cloud.TagCluster: p.cfg.ClusterName, cloud.TagNodeClass: spec.NodeClass}
	_, err = p.ec2.CreateLaunchTemplate(ctx, &awsec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name),
		LaunchTemplateData: spec.data(),
		TagSpecifications:  []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: ec2Tags(tags)}},
	})
	if err != nil {
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "InvalidLaunchTemplateName.AlreadyExistsException" {
			return fmt.Errorf("create launch template %s: %w", name, err)
		}
	} else {
		p.log.InfoContext(ctx, "launch template created", "name", name, "nodeClass", spec.NodeClass, "ami", spec.AMI)
	}
	p.rememberTemplate(name, true)
	return nil
}

func (p *Provider) rememberTemplate(name string, ok bool) {
	p.ltMu.Lock()
	defer p.ltMu.Unlock()
	if ok {
		p.lts[name] = true
	} else {
		delete(p.lts, name)
	}
}

func ec2Tags(m map[string]string) []ec2types.Tag {
	out := make([]ec2types.Tag, 0, len(m))
	for _, kv := range sortedKeys(m) {
		out = append(out, ec2types.Tag{Key: aws.String(kv), Value: aws.String(m[kv])})
	}
	return out
}
