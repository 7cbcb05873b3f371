package ec2

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
)

// AMI families, as the EC2NodeClass spells them.
const (
	FamilyAL2023       = awsv1.AMIFamilyAL2023
	FamilyAL2          = awsv1.AMIFamilyAL2
	FamilyBottlerocket = awsv1.AMIFamilyBottlerocket
	FamilyCustom       = awsv1.AMIFamilyCustom
	FamilyWindows2019  = awsv1.AMIFamilyWindows2019
	FamilyWindows2022  = awsv1.AMIFamilyWindows2022
	FamilyWindows2025  = awsv1.AMIFamilyWindows2025
)

// windowsFamilies maps a Windows AMI family to its Windows Server version
// (as in the public SSM parameter names) and the build a node of it reports
// as node.kubernetes.io/windows-build (Karpenter v1.14's constants).
var windowsFamilies = map[string]struct{ version, build string }{
	FamilyWindows2019: {"2019", "10.0.17763"},
	FamilyWindows2022: {"2022", "10.0.20348"},
	FamilyWindows2025: {"2025", "10.0.26100"},
}

// LabelWindowsBuild is the label Windows nodes carry with their OS build.
const LabelWindowsBuild = "node.kubernetes.io/windows-build"

// nodeClass is the provider's own view of an EC2NodeClass: only what the
// provider reads, in plain Go types. Keeping it separate from the API types
// keeps the EC2 logic independent of the CRD's pointer-heavy shape.
type nodeClass struct {
	Name               string
	AMIFamily          string
	AMITerms           []amiTerm
	SubnetTerms        []selectorTerm
	SGTerms            []selectorTerm
	Role               string
	InstanceProfile    string
	Tags               map[string]string
	BlockDevices       []blockDevice
	Metadata           metadataOptions
	UserData           string
	Kubelet            kubeletConfig
	AssociatePublicIP  *bool
	DetailedMonitoring bool
	// Interface and CPU settings that reach the launch template.
	IPPrefixCount        int32
	ConnTrack            *connTrack
	NestedVirtualization string // enabled|disabled, "" = EC2's default
	// NICs is spec.networkInterfaces (EFA layouts); nil: one primary ENA.
	NICs []nic
	// CRTerms is spec.capacityReservationSelectorTerms.
	CRTerms []crTerm
	// PlacementGroup is spec.placementGroupSelector (nil: none).
	PlacementGroup *pgSelector
}

// pgSelector names one placement group by name or id.
type pgSelector struct {
	Name string `json:",omitempty"`
	ID   string `json:",omitempty"`
}

// nic is one interface of a networkInterfaces layout.
type nic struct {
	Card   int32  `json:"card"`
	Device int32  `json:"device"`
	Type   string `json:"type"` // interface | efa-only
}

// connTrack holds the primary interface's conntrack idle timeouts (s).
type connTrack struct {
	TCPEstablished int32 `json:",omitempty"`
	UDPStream      int32 `json:",omitempty"`
	UDP            int32 `json:",omitempty"`
}

type amiTerm struct {
	Alias string // family@version, e.g. al2023@latest
	ID    string
	Name  string // may hold * and ? wildcards
	Owner string
	Tags  map[string]string
	// SSMParameter names a parameter whose value is an image id.
	SSMParameter string
}

type selectorTerm struct {
	ID   string
	Name string // security groups only
	Tags map[string]string
}

type blockDevice struct {
	DeviceName          string
	VolumeSizeGiB       int32
	VolumeType          string
	IOPS                int32
	Throughput          int32
	Encrypted           *bool
	KMSKeyID            string
	SnapshotID          string
	DeleteOnTermination *bool
	RootVolume          bool
	// VolumeInitializationRate (MiB/s) hydrates a snapshot-backed volume.
	VolumeInitializationRate int32 `json:",omitempty"`
}

type metadataOptions struct {
	HTTPEndpoint            string // enabled|disabled
	HTTPProtocolIPv6        string
	HTTPPutResponseHopLimit int32
	HTTPTokens              string // required|optional
}

type kubeletConfig struct {
	MaxPods        int32
	PodsPerCore    int32
	ClusterDNS     []string
	SystemReserved map[string]string
	KubeReserved   map[string]string
	EvictionHard   map[string]string
}

// withDefaults fills in what Karpenter defaults: IMDSv2 required with a hop
// limit of 1, AL2023 when nothing says otherwise.
func (nc nodeClass) withDefaults() nodeClass {
	if nc.AMIFamily == "" {
		nc.AMIFamily = familyFromTerms(nc.AMITerms)
	}
	if nc.Metadata.HTTPEndpoint == "" {
		nc.Metadata.HTTPEndpoint = "enabled"
	}
	if nc.Metadata.HTTPProtocolIPv6 == "" {
		nc.Metadata.HTTPProtocolIPv6 = "disabled"
	}
	if nc.Metadata.HTTPPutResponseHopLimit == 0 {
		nc.Metadata.HTTPPutResponseHopLimit = 1
	}
	if nc.Metadata.HTTPTokens == "" {
		nc.Metadata.HTTPTokens = "required"
	}
	return nc
}

// familyFromTerms infers the AMI family from an alias term.
func familyFromTerms(terms []amiTerm) string {
	for _, t := range terms {
		if t.Alias == "" {
			continue
		}
		if a, err := parseAlias(t.Alias); err == nil {
			return a.family
		}
	}
	return FamilyAL2023
}

// key identifies a node class's selectors for the resolve cache.
func (nc nodeClass) selectorKey() string {
	b, _ := json.Marshal(struct {
		A  []amiTerm
		S  []selectorTerm
		G  []selectorTerm
		F  string
		CR []crTerm    `json:",omitempty"`
		PG *pgSelector `json:",omitempty"`
	}{nc.AMITerms, nc.SubnetTerms, nc.SGTerms, nc.AMIFamily, nc.CRTerms, nc.PlacementGroup})
	sum := sha256.Sum256(b)
	return nc.Name + "/" + hex.EncodeToString(sum[:8])
}

// sortedPairs renders a map as k=v pairs in key order (deterministic user
// data and hashes).
func sortedPairs(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s=%s", k, m[k]))
	}
	return out
}

func joinPairs(m map[string]string) string { return strings.Join(sortedPairs(m), ",") }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
