package ec2sim

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

func TestSSMAliasesAndNewRelease(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{})
	sc := ssmClient(s)
	ec := ec2Client(s, 3)

	latest := "/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/arm64/standard/recommended/image_id"
	pinned := "/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/arm64/standard/amazon-eks-node-al2023-arm64-standard-1.37-v20240729/image_id"
	names := []string{
		latest, pinned,
		"/aws/service/eks/optimized-ami/1.37/amazon-linux-2/recommended/image_id",
		"/aws/service/eks/optimized-ami/1.37/amazon-linux-2-arm64/recommended/image_id",
		"/aws/service/bottlerocket/aws-k8s-1.37/x86_64/latest/image_id",
		"/aws/service/bottlerocket/aws-k8s-1.37/arm64/1.20.5/image_id",
	}
	values := map[string]string{}
	for _, n := range names {
		out, err := sc.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(n)})
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		v := aws.ToString(out.Parameter.Value)
		values[n] = v
		img, err := ec.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{v}})
		if err != nil || len(img.Images) != 1 {
			t.Fatalf("%s → %s: %v", n, v, err)
		}
		if out.Parameter.LastModifiedDate == nil || out.Parameter.Version == 0 {
			t.Errorf("%s: metadata %+v", n, out.Parameter)
		}
	}
	if values[latest] == values[pinned] {
		t.Fatal("recommended points at the oldest release")
	}
	if _, err := sc.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/aws/service/nope")}); err == nil {
		t.Fatal("missing parameter found")
	} else {
		var nf *ssmtypes.ParameterNotFound
		if !asErr(err, &nf) {
			t.Fatalf("missing parameter error: %v", err)
		}
	}
	many, err := sc.GetParameters(ctx, &ssm.GetParametersInput{Names: []string{latest, "/aws/service/nope"}})
	if err != nil || len(many.Parameters) != 1 || len(many.InvalidParameters) != 1 {
		t.Fatalf("GetParameters: %+v %v", many, err)
	}

	// A new release moves "recommended" to a newer image; the pinned stays.
	ids, err := s.PublishRelease(FamilyAL2023, "v20261125")
	if err != nil || len(ids) != 8 {
		t.Fatalf("publish: %v %v", ids, err)
	}
	out, err := sc.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(latest)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.Parameter.Value) == values[latest] {
		t.Fatal("recommended did not move")
	}
	if v, _ := s.SSMParameter(pinned); v != values[pinned] {
		t.Fatal("pinned parameter moved")
	}
	newPinned := "/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/arm64/standard/amazon-eks-node-al2023-arm64-standard-1.37-v20261125/image_id"
	if v, ok := s.SSMParameter(newPinned); !ok || v != aws.ToString(out.Parameter.Value) {
		t.Fatalf("new pinned parameter: %q %v", v, ok)
	}
	// The new image is the newest by CreationDate, so "newest matching wins" selects it.
	imgs, err := ec.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}, Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{"amazon-eks-node-al2023-arm64-standard-1.37-*"}}}})
	if err != nil {
		t.Fatal(err)
	}
	newest := ""
	newestID := ""
	for _, im := range imgs.Images {
		if d := aws.ToString(im.CreationDate); d > newest {
			newest, newestID = d, aws.ToString(im.ImageId)
		}
	}
	if newestID != aws.ToString(out.Parameter.Value) {
		t.Fatalf("newest image %s, recommended %s", newestID, aws.ToString(out.Parameter.Value))
	}

	// Bottlerocket through the control HTTP API, with the v prefix users write.
	body, _ := json.Marshal(map[string]string{"family": "bottlerocket", "version": "v1.51.0"})
	resp, err := http.Post(s.URL()+"/sim/amis/release", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("http publish: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, ok := s.SSMParameter("/aws/service/bottlerocket/aws-k8s-1.36/x86_64/1.51.0/image_id"); !ok {
		t.Fatal("bottlerocket 1.51.0 not published")
	}
	if _, err := s.PublishRelease("windows", "v1"); err == nil {
		t.Fatal("unknown family accepted")
	}
}
