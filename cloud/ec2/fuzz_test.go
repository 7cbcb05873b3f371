package ec2

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// fuzzActions are the EC2 answers the provider reads and acts on, each with
// the provider call that reads it. The simulator answers every other call
// truthfully; only this action's body is replaced by the fuzzer's bytes.
var fuzzActions = []string{"DescribeInstances", "CreateFleet", "DescribeInstanceTypes", "DescribeInstanceTypeOfferings", "DescribeSpotPriceHistory",
	"DescribeCapacityReservations", "DescribePlacementGroups"}

// FuzzEC2Answers feeds arbitrary bodies (HTTP 200, text/xml) to the real
// SDK deserializers and the provider code behind them: List (DescribeInstances),
// Create (CreateFleet), InstanceTypes (DescribeInstanceTypes,
// -Offerings, DescribeSpotPriceHistory) and ResolveNodeClass
// (DescribeCapacityReservations, DescribePlacementGroups). Nothing may panic or hang (a
// misbehaving endpoint that repeats a NextToken must not loop forever), a
// garbled answer is an error with a message, and what is returned as
// success is well-formed: every instance has a valid EC2 instance ID.
//
//	go test -run '^$' -fuzz '^FuzzEC2Answers$' -fuzztime 30s ./cloud/ec2/
func FuzzEC2Answers(f *testing.F) {
	e := newEnv(f, ec2sim.Config{})
	var body atomic.Pointer[[]byte]
	for _, a := range fuzzActions {
		e.sim.SetAPIFault(a, ec2sim.APIFault{Mangle: func(real []byte) []byte {
			if b := body.Load(); b != nil {
				return *b
			}
			return real
		}})
	}
	p, _ := newProvider(f, e, func(c *Config) { c.MaxAttempts, c.CallTimeout = 1, 2*time.Second })
	nc := testNodeClass("default")
	// Resolve the node class (images, subnets, groups) once, truthfully, so
	// every Create reaches CreateFleet.
	if _, err := p.Create(context.Background(), nc, request("warm", opt("m5.large", "us-east-1a", "on-demand", 0.096))); err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), []byte(`<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><reservationSet><item><instancesSet><item><instanceId></instanceId><instanceState><name>running</name></instanceState></item></instancesSet></item></reservationSet></DescribeInstancesResponse>`))
	f.Add(uint8(0), []byte(`<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><reservationSet/><nextToken>again</nextToken></DescribeInstancesResponse>`))
	f.Add(uint8(1), []byte(`<CreateFleetResponse><fleetInstanceSet><item><instanceIds><item>i-0123456789abcdef0</item></instanceIds><instanceType>m5.large</instanceType><lifecycle>on-demand</lifecycle><launchTemplateAndOverrides><overrides><availabilityZone>us-east-1a</availabilityZone></overrides></launchTemplateAndOverrides></item></fleetInstanceSet></CreateFleetResponse>`))
	f.Add(uint8(2), []byte(`<DescribeInstanceTypesResponse><instanceTypeSet><item><instanceType>m5.large</instanceType><memoryInfo><sizeInMiB>-1</sizeInMiB></memoryInfo><vCpuInfo><defaultVCpus>0</defaultVCpus></vCpuInfo></item></instanceTypeSet></DescribeInstanceTypesResponse>`))
	f.Add(uint8(4), []byte(`<DescribeSpotPriceHistoryResponse><spotPriceHistorySet><item><spotPrice>NaN</spotPrice></item></spotPriceHistorySet><nextToken>t</nextToken></DescribeSpotPriceHistoryResponse>`))
	f.Add(uint8(5), []byte(`<DescribeCapacityReservationsResponse><capacityReservationSet><item><capacityReservationId></capacityReservationId><instanceType>m5.large</instanceType><availabilityZone>us-east-1a</availabilityZone><state>active</state><availableInstanceCount>-3</availableInstanceCount></item></capacityReservationSet></DescribeCapacityReservationsResponse>`))
	f.Add(uint8(6), []byte(`<DescribePlacementGroupsResponse><placementGroupSet><item><groupName>training</groupName><strategy>partition</strategy><partitionCount>-1</partitionCount><state>available</state></item></placementGroupSet></DescribePlacementGroupsResponse>`))
	// One class per selector, so each resolution reads only the fuzzed answer.
	ncReserved := testNodeClass("reserved")
	ncReserved.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{Tags: map[string]string{"team": "ml"}}}
	ncPlaced := testNodeClass("placed")
	ncPlaced.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: aws.String("training")}
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		action := fuzzActions[int(which)%len(fuzzActions)]
		body.Store(&b)
		defer body.Store(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
		defer cancel()
		var err error
		switch action {
		case "DescribeInstances":
			var insts []*cloud.Instance
			insts, err = p.List(ctx)
			for _, in := range insts {
				if !validInstanceID(in.ID) {
					t.Fatalf("List returned an instance with ID %q from %q", in.ID, b)
				}
			}
		case "CreateFleet":
			var in *cloud.Instance
			in, err = p.Create(ctx, nc, request(fmt.Sprintf("fuzz-%d", n.Add(1)), opt("m5.large", "us-east-1a", "on-demand", 0.096)))
			if err == nil && (in == nil || !validInstanceID(in.ID) || in.InstanceType == "") {
				t.Fatalf("Create returned %+v from %q", in, b)
			}
		case "DescribeCapacityReservations":
			p.Refresh() // past the node class cache, to the call
			var r *cloud.ResolvedNodeClass
			if r, err = p.ResolveNodeClass(ctx, ncReserved); err == nil {
				for _, cr := range r.CapacityReservations {
					if cr.ID == "" || cr.InstanceType == "" || cr.Zone == "" {
						t.Fatalf("ResolveNodeClass returned reservation %+v from %q", cr, b)
					}
				}
			}
		case "DescribePlacementGroups":
			p.Refresh()
			var r *cloud.ResolvedNodeClass
			if r, err = p.ResolveNodeClass(ctx, ncPlaced); err == nil {
				if g := r.PlacementGroup; g == nil || g.ID == "" || g.Name == "" {
					t.Fatalf("ResolveNodeClass returned placement group %+v from %q", g, b)
				}
			}
		default:
			p.Refresh() // past the type and price caches, to the call
			var types []*cloud.InstanceType
			types, err = p.InstanceTypes(ctx)
			for _, it := range types {
				if it == nil || it.Name == "" {
					t.Fatalf("InstanceTypes returned %+v from %q", it, b)
				}
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("%s answer %q: the provider call did not return before its deadline", action, b)
		}
		if err != nil && strings.TrimSpace(err.Error()) == "" {
			t.Fatalf("%s answer %q: an error without a message", action, b)
		}
	})
}
