package ec2_test

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/credentials"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// Launch an instance for a NodeClaim against the EC2 simulator. Against real
// AWS, leave Endpoint and Credentials empty.
func Example() {
	ctx := context.Background()
	sim := ec2sim.New(ec2sim.Config{ClusterName: "demo", DisableIMDS: true})
	if err := sim.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer sim.Close()

	p, err := ec2.New(ctx, ec2.Config{
		Region: sim.Region(), Endpoint: sim.URL(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		ClusterName: "demo", ClusterEndpoint: "https://10.0.0.1:6443", ClusterCA: "Q0EK", KubernetesVersion: "1.37",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	nodeClass := &awsv1.EC2NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: awsv1.EC2NodeClassSpec{
			AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "demo"}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "demo"}}},
		},
	}
	_ = sim.ExhaustPool("m5.large", "", cloud.CapacityTypeSpot) // no spot capacity today
	inst, err := p.Create(ctx, nodeClass, &cloud.LaunchRequest{
		ClientToken: "nodeclaim-uid-1234", NodeClaimName: "default-abcde", NodePoolName: "default", LeaderTerm: 3,
		Options: []cloud.LaunchOption{
			{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloud.CapacityTypeSpot, Price: 0.0315},
			{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloud.CapacityTypeOnDemand, Price: 0.096},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(inst.InstanceType, inst.Zone, inst.CapacityType, inst.Tags[cloud.TagNodeClaim])
	for _, e := range p.ICE() {
		fmt.Println("avoiding", e.InstanceType, e.Zone, e.CapacityType, e.Code)
	}
	// Output:
	// m5.large us-east-1a on-demand default-abcde
	// avoiding m5.large us-east-1a spot InsufficientInstanceCapacity
}
