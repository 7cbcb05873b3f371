package ec2sim

import (
	"context"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

func TestDebugRaw(t *testing.T) {
	s := startSim(t, Config{})
	c := ec2Client(s, 1)
	for _, n := range []int32{5, 20, 50, 100, 50, 50, 50, 50} {
		_, err := c.DescribeInstanceTypes(context.Background(), &ec2.DescribeInstanceTypesInput{MaxResults: aws.Int32(n)})
		t.Log(n, err)
	}
	c2 := ec2.NewFromConfig(awsConfig(s, 1), func(o *ec2.Options) { o.BaseEndpoint = aws.String(s.URL()); o.HTTPClient = &http.Client{} })
	for _, n := range []int32{5, 20, 50, 100, 50, 50, 50, 50} {
		_, err := c2.DescribeInstanceTypes(context.Background(), &ec2.DescribeInstanceTypesInput{MaxResults: aws.Int32(n)})
		t.Log("plain", n, err)
	}
}
