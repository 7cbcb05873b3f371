package ec2

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/dovetail-dev/dovetail/cloud"
)

// alias is a parsed AMI alias such as al2023@latest or bottlerocket@v1.20.5.
type alias struct {
	family  string // FamilyAL2023, FamilyAL2, FamilyBottlerocket
	version string // "latest" or the pinned version as written (v20240729, v1.20.5)
}

func parseAlias(s string) (alias, error) {
	name, version, ok := strings.Cut(s, "@")
	if !ok || version == "" {
		return alias{}, fmt.Errorf("AMI alias %q: want family@version, e.g. al2023@latest", s)
	}
	var a alias
	switch strings.ToLower(name) {
	case "al2023":
		a.family = FamilyAL2023
	case "al2":
		a.family = FamilyAL2
	case "bottlerocket":
		a.family = FamilyBottlerocket
	case "windows2019":
		a.family = FamilyWindows2019
	case "windows2022":
		a.family = FamilyWindows2022
	case "windows2025":
		a.family = FamilyWindows2025
	default:
		return alias{}, fmt.Errorf("AMI alias %q: unknown family %q (want al2023, al2, bottlerocket, windows2019, windows2022 or windows2025)", s, name)
	}
	if _, win := windowsFamilies[a.family]; win {
		// AWS publishes only the latest EKS-optimized Windows image.
		if version != "latest" {
			return alias{}, fmt.Errorf("AMI alias %q: windows aliases support only @latest", s)
		}
		a.version = version
		return a, nil
	}
	if version != "latest" && !strings.HasPrefix(version, "v") {
		return alias{}, fmt.Errorf("AMI alias %q: version must be latest or start with v", s)
	}
	a.version = version
	return a, nil
}

// ssmArch is how the public SSM parameters name an architecture.
var ssmArchs = []struct{ kube, ssm string }{{"amd64", "x86_64"}, {"arm64", "arm64"}}

// ssmParameter is the public SSM parameter holding the image id of alias a
// for architecture arch (x86_64|arm64) and Kubernetes version k8s. The paths
// are the ones AWS publishes for EKS-optimized and Bottlerocket AMIs.
func ssmParameter(a alias, k8s, arch string) string {
	if w, ok := windowsFamilies[a.family]; ok {
		if arch != "x86_64" {
			return "" // EKS-optimized Windows AMIs are x86_64 only
		}
		return fmt.Sprintf("/aws/service/ami-windows-latest/Windows_Server-%s-English-Core-EKS_Optimized-%s/image_id", w.version, k8s)
	}
	switch a.family {
	case FamilyAL2023:
		if a.version == "latest" {
			return fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2023/%s/standard/recommended/image_id", k8s, arch)
		}
		return fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2023/%s/standard/amazon-eks-node-al2023-%s-standard-%s-%s/image_id", k8s, arch, arch, k8s, a.version)
	case FamilyAL2:
		dir, node := "amazon-linux-2", "amazon-eks-node"
		if arch == "arm64" {
			dir, node = "amazon-linux-2-arm64", "amazon-eks-arm64-node"
		}
		if a.version == "latest" {
			return fmt.Sprintf("/aws/service/eks/optimized-ami/%s/%s/recommended/image_id", k8s, dir)
		}
		return fmt.Sprintf("/aws/service/eks/optimized-ami/%s/%s/%s-%s-%s/image_id", k8s, dir, node, k8s, a.version)
	default: // Bottlerocket publishes versions without the leading v.
		return fmt.Sprintf("/aws/service/bottlerocket/aws-k8s-%s/%s/%s/image_id", k8s, arch, strings.TrimPrefix(a.version, "v"))
	}
}

// ErrNoAMI, ErrNoSubnets and ErrNoSecurityGroups are wrapped by
// ResolveNodeClass when a selector matches nothing; the message says which
// terms were tried so a status condition can show it.
var (
	ErrNoAMI            = errors.New("no AMI matches the amiSelectorTerms")
	ErrNoSubnets        = errors.New("no subnet matches the subnetSelectorTerms")
	ErrNoSecurityGroups = errors.New("no security group matches the securityGroupSelectorTerms")
)

// resolveAMIs returns the newest usable image per architecture.
func (p *Provider) resolveAMIs(ctx context.Context, nc nodeClass) ([]cloud.AMI, error) {
	if len(nc.AMITerms) == 0 {
		return nil, fmt.Errorf("%w: the node class has no amiSelectorTerms", ErrNoAMI)
	}
	var images []ec2types.Image
	var why []string
	for _, t := range nc.AMITerms {
		var (
			found []ec2types.Image
			err   error
		)
		switch {
		case t.Alias != "":
			found, err = p.imagesForAlias(ctx, t.Alias)
		case t.SSMParameter != "":
			found, err = p.imagesForParameter(ctx, t.SSMParameter)
		default:
			found, err = p.imagesForTerm(ctx, t)
		}
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			why = append(why, describeAMITerm(t))
		}
		images = append(images, found...)
	}
	amis := newestPerArch(images)
	if len(amis) == 0 {
		return nil, fmt.Errorf("%w: nothing found for %s", ErrNoAMI, strings.Join(why, "; "))
	}
	return amis, nil
}

func describeAMITerm(t amiTerm) string {
	var parts []string
	if t.Alias != "" {
		parts = append(parts, "alias="+t.Alias)
	}
	if t.ID != "" {
		parts = append(parts, "id="+t.ID)
	}
	if t.Name != "" {
		parts = append(parts, "name="+t.Name)
	}
	if t.Owner != "" {
		parts = append(parts, "owner="+t.Owner)
	}
	if t.SSMParameter != "" {
		parts = append(parts, "ssmParameter="+t.SSMParameter)
	}
	if len(t.Tags) > 0 {
		parts = append(parts, "tags{"+joinPairs(t.Tags)+"}")
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// imagesForParameter resolves a user-named SSM parameter holding an image id.
func (p *Provider) imagesForParameter(ctx context.Context, name string) ([]ec2types.Image, error) {
	id, err := p.parameter(ctx, name)
	if err != nil || id == "" {
		return nil, err
	}
	return p.describeImages(ctx, &awsec2.DescribeImagesInput{ImageIds: []string{id}})
}

// parameter reads an SSM parameter; "" without error when it does not exist.
func (p *Provider) parameter(ctx context.Context, name string) (string, error) {
	out, err := p.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name)})
	if err != nil {
		var nf *ssmtypes.ParameterNotFound
		if errors.As(err, &nf) {
			return "", nil
		}
		return "", fmt.Errorf("get SSM parameter %s: %w", name, err)
	}
	if out.Parameter == nil {
		return "", nil
	}
	return aws.ToString(out.Parameter.Value), nil
}

func (p *Provider) imagesForAlias(ctx context.Context, s string) ([]ec2types.Image, error) {
	a, err := parseAlias(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoAMI, err)
	}
	var ids []string
	for _, arch := range ssmArchs {
		name := ssmParameter(a, p.cfg.KubernetesVersion, arch.ssm)
		if name == "" {
			continue
		}
		id, err := p.parameter(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("resolve AMI alias %s: %w", s, err)
		}
		if id == "" {
			// Not every family is published for every architecture or
			// version; the other architecture may still match.
			p.log.DebugContext(ctx, "AMI alias parameter not published", "alias", s, "parameter", name)
			continue
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return p.describeImages(ctx, &awsec2.DescribeImagesInput{ImageIds: ids})
}

func (p *Provider) imagesForTerm(ctx context.Context, t amiTerm) ([]ec2types.Image, error) {
	in := &awsec2.DescribeImagesInput{}
	if t.ID != "" {
		in.ImageIds = []string{t.ID}
	}
	if t.Name != "" {
		in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("name"), Values: []string{t.Name}})
		if t.Owner == "" {
			// Without an owner a name would match anyone's public image
			// of that name; Karpenter restricts it the same way.
			in.Owners = []string{"self", "amazon"}
		}
	}
	if t.Owner != "" {
		in.Owners = []string{t.Owner}
	}
	in.Filters = append(in.Filters, tagFilters(t.Tags)...)
	if t.ID == "" && len(in.Filters) == 0 && len(in.Owners) == 0 {
		return nil, fmt.Errorf("%w: an amiSelectorTerm needs alias, id, name, owner or tags", ErrNoAMI)
	}
	return p.describeImages(ctx, in)
}

func (p *Provider) describeImages(ctx context.Context, in *awsec2.DescribeImagesInput) ([]ec2types.Image, error) {
	var out []ec2types.Image
	pages := awsec2.NewDescribeImagesPaginator(p.ec2, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			if isNotFoundCode(err) {
				return out, nil
			}
			return nil, fmt.Errorf("describe images: %w", err)
		}
		for _, img := range page.Images {
			if img.State != "" && img.State != ec2types.ImageStateAvailable {
				continue
			}
			out = append(out, img)
		}
	}
	return out, nil
}

// tagFilters turns selector tags into EC2 filters; "*" means the key must
// exist with any value.
func tagFilters(tags map[string]string) []ec2types.Filter {
	var fs []ec2types.Filter
	for _, kv := range sortedPairs(tags) {
		k, v, _ := strings.Cut(kv, "=")
		if v == "*" {
			fs = append(fs, ec2types.Filter{Name: aws.String("tag-key"), Values: []string{k}})
			continue
		}
		fs = append(fs, ec2types.Filter{Name: aws.String("tag:" + k), Values: []string{v}})
	}
	return fs
}

// newestPerArch keeps, for each architecture, the newest image, preferring
// images that are not deprecated. Result is ordered amd64, arm64.
func newestPerArch(images []ec2types.Image) []cloud.AMI {
	best := map[string]cloud.AMI{}
	for _, img := range images {
		arch := kubeArch(string(img.Architecture))
		if arch == "" {
			continue
		}
		deprecated := false
		if img.DeprecationTime != nil && *img.DeprecationTime != "" {
			deprecated = true
		}
		cand := cloud.AMI{ID: aws.ToString(img.ImageId), Name: aws.ToString(img.Name), Arch: arch, CreationDate: aws.ToString(img.CreationDate), Deprecated: deprecated}
		cur, ok := best[arch]
		if !ok || better(cand, cur) {
			best[arch] = cand
		}
	}
	out := make([]cloud.AMI, 0, len(best))
	for _, a := range best {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Arch < out[j].Arch })
	return out
}

func better(a, b cloud.AMI) bool {
	if a.Deprecated != b.Deprecated {
		return !a.Deprecated
	}
	// EC2 creation dates are RFC 3339 in UTC, so they sort as strings.
	if a.CreationDate != b.CreationDate {
		return a.CreationDate > b.CreationDate
	}
	return a.ID < b.ID
}

// kubeArch maps EC2 architecture names to kubernetes.io/arch values.
func kubeArch(ec2Arch string) string {
	switch ec2Arch {
	case "x86_64", "x86_64_mac", "amd64":
		return "amd64"
	case "arm64", "arm64_mac":
		return "arm64"
	}
	return ""
}
