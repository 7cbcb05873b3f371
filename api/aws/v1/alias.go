package v1

import (
	"fmt"
	"strings"
)

// Alias families, as spelled in an alias term (family@version).
const (
	AliasFamilyAL2          = "al2"
	AliasFamilyAL2023       = "al2023"
	AliasFamilyBottlerocket = "bottlerocket"
	AliasFamilyWindows2019  = "windows2019"
	AliasFamilyWindows2022  = "windows2022"
	AliasFamilyWindows2025  = "windows2025"
)

// AliasVersionLatest is the alias version that tracks the newest release.
const AliasVersionLatest = "latest"

// Alias is a parsed amiSelectorTerms alias such as al2023@latest or bottlerocket@v1.20.5.
type Alias struct {
	// Family is the lower-case alias family (al2023, bottlerocket ...).
	Family string
	// Version is "latest" or a pinned release starting with "v".
	Version string
}

// String formats the alias as family@version.
func (a Alias) String() string { return a.Family + "@" + a.Version }

// AMIFamily returns the amiFamily value the alias implies (AL2023, Bottlerocket ...).
func (a Alias) AMIFamily() string {
	return aliasFamilies[a.Family]
}

var aliasFamilies = map[string]string{
	AliasFamilyAL2:          AMIFamilyAL2,
	AliasFamilyAL2023:       AMIFamilyAL2023,
	AliasFamilyBottlerocket: AMIFamilyBottlerocket,
	AliasFamilyWindows2019:  AMIFamilyWindows2019,
	AliasFamilyWindows2022:  AMIFamilyWindows2022,
	AliasFamilyWindows2025:  AMIFamilyWindows2025,
}

// ParseAlias parses family@version with the same rules as Karpenter v1.14's
// CRD: a known family and any version after the first "@" (windows
// families: "latest" only); a pinned version need not start with "v"
// (bottlerocket@1.10.0 is accepted). Families are matched
// case-insensitively, as Karpenter does when it resolves aliases.
func ParseAlias(s string) (Alias, error) {
	family, version, ok := strings.Cut(s, "@")
	if !ok || family == "" || version == "" {
		return Alias{}, fmt.Errorf("alias %q is improperly formatted, must match the format 'family@version'", s)
	}
	family = strings.ToLower(family)
	if _, known := aliasFamilies[family]; !known {
		return Alias{}, fmt.Errorf("alias %q: family %q is not supported, must be one of al2, al2023, bottlerocket, windows2019, windows2022, windows2025", s, family)
	}
	if strings.HasPrefix(family, "windows") && version != AliasVersionLatest {
		return Alias{}, fmt.Errorf("alias %q: windows families may only specify version %q", s, AliasVersionLatest)
	}
	return Alias{Family: family, Version: version}, nil
}

// Alias returns the node class's alias term, parsed, and whether it has one.
func (in *EC2NodeClass) Alias() (Alias, bool, error) {
	for _, term := range in.Spec.AMISelectorTerms {
		if term.Alias != "" {
			a, err := ParseAlias(term.Alias)
			return a, true, err
		}
	}
	return Alias{}, false, nil
}

// AMIFamily is the effective AMI family: spec.amiFamily when set, else the
// alias' family, else Custom.
func (in *EC2NodeClass) AMIFamily() string {
	if in.Spec.AMIFamily != nil && *in.Spec.AMIFamily != "" {
		return *in.Spec.AMIFamily
	}
	if a, ok, err := in.Alias(); ok && err == nil {
		return a.AMIFamily()
	}
	return AMIFamilyCustom
}
