package ec2sim

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dovetail-dev/dovetail/catalog"
)

// Instance states as the simulator tracks them.
const (
	statePending      = "pending"
	stateRunning      = "running"
	stateShuttingDown = "shutting-down"
	stateTerminated   = "terminated"
)

// stateCode is EC2's numeric code for a state.
func stateCode(state string) int64 {
	switch state {
	case statePending:
		return 0
	case stateRunning:
		return 16
	case stateShuttingDown:
		return 32
	case stateTerminated:
		return 48
	}
	return 0
}

// DiscoveryTagKey is the tag Karpenter-style subnet and security-group
// selectors use; the default world tags its subnets and group with it.
const DiscoveryTagKey = "karpenter.sh/discovery"

// Owners of the public images, as on AWS.
const (
	OwnerAmazonEKS    = "602401143452"
	OwnerBottlerocket = "651937483462"
	// OwnerAmazonWindows owns the public EKS-optimized Windows images.
	OwnerAmazonWindows = "801119661308"
)

type subnet struct {
	id, zone, zoneID, cidr, vpcID string
	prefix                        netip.Prefix
	nextHost                      uint32
	tags                          map[string]string
}

type securityGroup struct {
	id, name, desc, vpcID string
	tags                  map[string]string
}

type image struct {
	id, name, desc, owner, ownerAlias, arch string
	created                                 time.Time
	tags                                    map[string]string
	public                                  bool
}

type ssmParam struct {
	name, value string
	version     int64
	modified    time.Time
}

type launchTemplate struct {
	id, name  string
	token     string // ClientToken of the create call
	created   time.Time
	imageID   string
	instType  string
	userData  string // base64, as EC2 stores it
	sgIDs     []string
	tagSpecs  map[string]map[string]string // resource type → tags to apply at launch
	tags      map[string]string
	httpToken string
	// data is every LaunchTemplateData.* parameter as sent (tests read it
	// through Sim.LaunchTemplateData).
	data map[string]string
}

type poolKey struct{ itype, zone, capType string }

type pool struct {
	remaining int    // -1 unlimited
	errorCode string // forced error for every launch from the pool ("" = none)
}

type pricePoint struct {
	at    time.Time
	price float64
}

type maintenanceEvent struct {
	id, code, desc, state string
	notBefore, notAfter   time.Time
	notBeforeDeadline     time.Time
}

type spotAction struct {
	action   string
	deadline time.Time
}

type instance struct {
	id, itype, zone, subnetID, vpcID, imageID, arch string
	capType, spotRequestID, clientToken, fleetID    string
	reservationID                                   string
	privateIP, privateDNS                           string
	launched, runAt, terminateAt                    time.Time
	state, stateReason, stateReasonMsg              string
	tags, volumeTags                                map[string]string
	volumeID                                        string
	userData                                        []byte // decoded
	sgIDs                                           []string
	templateID                                      string
	// capResID is the capacity reservation the instance runs in ("" none,
	// or no longer: an ended ODCR lets its instances run on as on-demand).
	capResID       string
	capResTargeted bool
	inReservation  bool   // launched into a reservation (so not from the pool)
	capResPref     string // the template's CapacityReservationPreference, "open" by default
	pgID           string // placement group
	partition      int    // partition number in a partition placement group

	action      *spotAction
	rebalanceAt time.Time
	events      []*maintenanceEvent

	imds           *imdsServer
	imdsStarting   bool
	imdsFault      IMDSFault
	nodeRegistered bool
}

// poolFor returns (creating with the default capacity) the pool.
func (s *Sim) poolLocked(k poolKey) *pool {
	p := s.pools[k]
	if p == nil {
		p = &pool{remaining: s.cfg.DefaultPoolCapacity}
		s.pools[k] = p
	}
	return p
}

func (s *Sim) releasePoolLocked(in *instance) {
	if in.inReservation {
		s.releaseReservationLocked(in)
		return
	}
	p := s.poolLocked(poolKey{in.itype, in.zone, in.capType})
	if p.remaining >= 0 {
		p.remaining++
	}
}

// Default release history of the public AMI families. The last entry of
// each list is "latest"/"recommended"; the older ones stay pinnable.
var (
	al2023Releases = []release{{"v20240729", day(2024, 7, 29)}, {"v20260914", day(2026, 9, 14)}, {"v20261020", day(2026, 10, 20)}}
	al2Releases    = []release{{"v20240729", day(2024, 7, 29)}, {"v20260914", day(2026, 9, 14)}, {"v20261020", day(2026, 10, 20)}}
	brReleases     = []release{{"1.20.5", day(2024, 7, 30)}, {"1.48.0", day(2026, 9, 18)}, {"1.50.1", day(2026, 10, 23)}}
)

type release struct {
	version string
	date    time.Time
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 18, 4, 11, 0, time.UTC) }

// AMI families the simulator publishes.
const (
	FamilyAL2023       = "al2023"
	FamilyAL2          = "al2"
	FamilyBottlerocket = "bottlerocket"
	FamilyWindows2019  = "windows2019"
	FamilyWindows2022  = "windows2022"
	FamilyWindows2025  = "windows2025"
)

// windowsVersions: the Windows Server version in each family's image and
// SSM parameter names (AWS publishes only the latest, x86_64 only).
var windowsVersions = map[string]string{FamilyWindows2019: "2019", FamilyWindows2022: "2022", FamilyWindows2025: "2025"}

func (s *Sim) buildWorld() {
	now := s.clock.Now()
	s.vpcID = s.nextID("vpc")
	clusterTag := "kubernetes.io/cluster/" + s.cfg.ClusterName
	for i, z := range s.cfg.Zones {
		pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(16 * i), 0}), 20)
		sn := &subnet{
			id: s.nextID("subnet"), zone: z, zoneID: zoneID(s.cfg.Region, i), cidr: pfx.String(), vpcID: s.vpcID,
			prefix: pfx, nextHost: 10,
			tags: map[string]string{
				DiscoveryTagKey: s.cfg.ClusterName, clusterTag: "owned", "Name": s.cfg.ClusterName + "-private-" + z,
				"kubernetes.io/role/internal-elb": "1",
			},
		}
		s.subnets = append(s.subnets, sn)
	}
	s.sgs = append(s.sgs, &securityGroup{
		id: s.nextID("sg"), name: s.cfg.ClusterName + "-node", desc: "Dovetail nodes of " + s.cfg.ClusterName, vpcID: s.vpcID,
		tags: map[string]string{DiscoveryTagKey: s.cfg.ClusterName, clusterTag: "owned", "Name": s.cfg.ClusterName + "-node"},
	}, &securityGroup{
		id: s.nextID("sg"), name: "default", desc: "default VPC security group", vpcID: s.vpcID, tags: map[string]string{},
	})
	for _, r := range al2023Releases {
		s.publishLocked(FamilyAL2023, r.version, r.date)
	}
	for _, r := range al2Releases {
		s.publishLocked(FamilyAL2, r.version, r.date)
	}
	for _, r := range brReleases {
		s.publishLocked(FamilyBottlerocket, r.version, r.date)
	}
	for _, f := range []string{FamilyWindows2019, FamilyWindows2022, FamilyWindows2025} {
		s.publishLocked(f, "2026.11.12", day(2026, 11, 12))
	}
	for _, arch := range []string{"x86_64", "arm64"} {
		s.images = append(s.images, &image{
			id: s.nextID("ami"), name: "dovetail-custom-" + arch + "-2026-10-01", desc: "Custom Dovetail node image",
			owner: s.cfg.AccountID, arch: arch, created: day(2026, 10, 1),
			tags: map[string]string{"dovetail.dev/image": "custom", "Name": "dovetail-custom-" + arch},
		})
	}
	_ = now
}

func zoneID(region string, i int) string {
	short := strings.ReplaceAll(region, "-", "")
	if len(short) > 4 {
		short = short[:3] + short[len(short)-1:]
	}
	return fmt.Sprintf("%s-az%d", short, i+1)
}

// publishLocked creates the images of one release of a family for every
// Kubernetes version and architecture and points the SSM parameters at
// them: the pinned parameter of the version, and recommended/latest (which
// therefore move with every newer publish).
func (s *Sim) publishLocked(family, version string, created time.Time) []string {
	var ids []string
	for _, kv := range s.cfg.KubernetesVersions {
		for _, arch := range []string{"x86_64", "arm64"} {
			var name, desc, owner string
			var params []string
			switch family {
			case FamilyAL2023:
				name = fmt.Sprintf("amazon-eks-node-al2023-%s-standard-%s-%s", arch, kv, version)
				desc = fmt.Sprintf("EKS-optimized Kubernetes node based on Amazon Linux 2023, (k8s: %s, containerd: 1.7.*)", kv)
				owner = OwnerAmazonEKS
				base := fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2023/%s/standard/", kv, arch)
				params = []string{base + name + "/image_id", base + "recommended/image_id"}
			case FamilyAL2:
				dir := "amazon-linux-2"
				name = fmt.Sprintf("amazon-eks-node-%s-%s", kv, version)
				if arch == "arm64" {
					dir = "amazon-linux-2-arm64"
					name = fmt.Sprintf("amazon-eks-arm64-node-%s-%s", kv, version)
				}
				desc = fmt.Sprintf("EKS Kubernetes Worker AMI with AmazonLinux2 image, (k8s: %s, containerd: 1.7.*)", kv)
				owner = OwnerAmazonEKS
				base := fmt.Sprintf("/aws/service/eks/optimized-ami/%s/%s/", kv, dir)
				params = []string{base + name + "/image_id", base + "recommended/image_id"}
			case FamilyBottlerocket:
				v := strings.TrimPrefix(version, "v")
				name = fmt.Sprintf("bottlerocket-aws-k8s-%s-%s-v%s-%08x", kv, arch, v, uint32(created.Unix()))
				desc = "bottlerocket-aws-k8s-" + kv
				owner = OwnerBottlerocket
				base := fmt.Sprintf("/aws/service/bottlerocket/aws-k8s-%s/%s/", kv, arch)
				params = []string{base + v + "/image_id", base + "latest/image_id"}
			case FamilyWindows2019, FamilyWindows2022, FamilyWindows2025:
				if arch != "x86_64" {
					continue
				}
				name = fmt.Sprintf("Windows_Server-%s-English-Core-EKS_Optimized-%s-%s", windowsVersions[family], kv, version)
				desc = fmt.Sprintf("Microsoft Windows Server %s Core optimized for EKS and Kubernetes %s", windowsVersions[family], kv)
				owner = OwnerAmazonWindows
				params = []string{fmt.Sprintf("/aws/service/ami-windows-latest/Windows_Server-%s-English-Core-EKS_Optimized-%s/image_id", windowsVersions[family], kv)}
			default:
				return nil
			}
			img := &image{id: s.nextID("ami"), name: name, desc: desc, owner: owner, ownerAlias: "amazon", arch: arch, created: created, public: true, tags: map[string]string{}}
			s.images = append(s.images, img)
			ids = append(ids, img.id)
			for _, p := range params {
				s.setParamLocked(p, img.id, created)
			}
		}
	}
	return ids
}

func (s *Sim) setParamLocked(name, value string, at time.Time) {
	p := s.ssmParams[name]
	if p == nil {
		p = &ssmParam{name: name}
		s.ssmParams[name] = p
	}
	if p.value == value {
		return
	}
	p.value = value
	p.version++
	p.modified = at
}

func (s *Sim) subnetByID(id string) *subnet {
	for _, sn := range s.subnets {
		if sn.id == id {
			return sn
		}
	}
	return nil
}

func (s *Sim) subnetForZone(zone string) *subnet {
	for _, sn := range s.subnets {
		if sn.zone == zone {
			return sn
		}
	}
	return nil
}

func (s *Sim) imageByID(id string) *image {
	for _, im := range s.images {
		if im.id == id {
			return im
		}
	}
	return nil
}

// allocIPLocked hands out the next private address of a subnet.
func (sn *subnet) allocIP() (netip.Addr, bool) {
	base := sn.prefix.Addr().As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	size := uint32(1) << (32 - sn.prefix.Bits())
	if sn.nextHost >= size-1 {
		return netip.Addr{}, false
	}
	n += sn.nextHost
	sn.nextHost++
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

func (s *Sim) privateDNSName(ip netip.Addr) string {
	host := "ip-" + strings.ReplaceAll(ip.String(), ".", "-")
	if s.cfg.Region == "us-east-1" {
		return host + ".ec2.internal"
	}
	return host + "." + s.cfg.Region + ".compute.internal"
}

// ec2Arch converts the catalogue's Kubernetes arch to EC2's.
func ec2Arch(k8sArch string) string {
	if k8sArch == "amd64" {
		return "x86_64"
	}
	return k8sArch
}

func (s *Sim) catalogType(name string) (catalog.Type, bool) { return s.cfg.Catalog.Get(name) }
