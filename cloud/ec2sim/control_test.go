package ec2sim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

func postJSON(t *testing.T, url string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	resp, err := http.Post(url, "application/json", rd)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestControlHTTP(t *testing.T) {
	s := startSim(t, Config{})
	id := launchOne(t, s, "ctl-1", "spot", "m5.large", "")

	resp, err := http.Get(s.URL() + "/sim/instances")
	if err != nil {
		t.Fatal(err)
	}
	var list []InstanceInfo
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(list) != 1 || list[0].ID != id || list[0].ProviderID != "aws:///us-east-1a/"+id || list[0].IMDSEndpoint == "" {
		t.Fatalf("instances: %+v", list)
	}

	if code, _ := postJSON(t, s.URL()+"/sim/instances/"+id+"/interrupt", nil); code != 200 {
		t.Fatalf("interrupt: %d", code)
	}
	if code, _ := postJSON(t, s.URL()+"/sim/instances/"+id+"/rebalance", nil); code != 200 {
		t.Fatalf("rebalance: %d", code)
	}
	code, out := postJSON(t, s.URL()+"/sim/instances/"+id+"/maintenance", map[string]any{"code": "instance-retirement"})
	if code != 200 || !strings.HasPrefix(out["eventId"].(string), "instance-event-") {
		t.Fatalf("maintenance: %d %v", code, out)
	}
	req, _ := http.NewRequest(http.MethodDelete, s.URL()+"/sim/instances/"+id+"/maintenance/"+out["eventId"].(string), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("cancel: %v %v", resp, err)
	}
	info, _ := s.Instance(id)
	if info.SpotAction == nil || info.RebalanceTime == nil {
		t.Fatalf("notices: %+v", info)
	}
	if code, _ := postJSON(t, s.URL()+"/sim/instances/i-nope/interrupt", nil); code != 404 {
		t.Fatalf("unknown instance: %d", code)
	}
	if code, _ := postJSON(t, s.URL()+"/sim/pools", map[string]any{"instanceType": "m5.large", "zone": "us-east-1a", "capacityType": "spot", "capacity": 0}); code != 200 {
		t.Fatalf("pools: %d", code)
	}
	if code, _ := postJSON(t, s.URL()+"/sim/pools", map[string]any{"instanceType": "m5.large", "bogus": 1}); code != 400 {
		t.Fatalf("bad body accepted: %d", code)
	}
	if code, _ := postJSON(t, s.URL()+"/sim/spot-price", map[string]any{"instanceType": "m5.large", "zone": "us-east-1b", "price": 0.07}); code != 200 {
		t.Fatalf("spot price: %d", code)
	}
	if code, _ := postJSON(t, s.URL()+"/sim/latency", map[string]any{"latency": "20ms"}); code != 200 {
		t.Fatalf("latency: %d", code)
	}
	c := ec2Client(s, 3)
	start := time.Now()
	if _, err := c.DescribeAvailabilityZones(context.Background(), &ec2.DescribeAvailabilityZonesInput{}); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("latency not applied")
	}
	s.SetLatency(0)
	if code, _ := postJSON(t, s.URL()+"/sim/throttle", map[string]any{"next": 1}); code != 200 {
		t.Fatalf("throttle: %d", code)
	}
	one := ec2Client(s, 1)
	if _, err := one.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}}); apiCode(err) != "RequestLimitExceeded" {
		t.Fatalf("throttled: %v", err)
	}
	if _, err := one.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}, MaxResults: aws.Int32(5)}); err != nil {
		t.Fatalf("after throttle: %v", err)
	}
	if code, _ := postJSON(t, s.URL()+"/sim/instances/"+id+"/terminate", nil); code != 200 {
		t.Fatalf("terminate: %d", code)
	}
	// Metrics are served in the Prometheus text format.
	resp, err = http.Get(s.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ec2sim_api_calls_total{action="CreateFleet"} 1`, `ec2sim_instances_launched_total{capacity_type="spot"} 1`, `ec2sim_instances{state="`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestRateThrottle(t *testing.T) {
	clk := newFakeClock()
	s := startSim(t, Config{Clock: clk})
	s.Throttle(0, 2) // 2 calls per second, burst 2
	c := ec2Client(s, 1)
	ctx := context.Background()
	var codes []string
	for i := 0; i < 3; i++ {
		_, err := c.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
		codes = append(codes, apiCode(err))
	}
	if strings.Join(codes, ",") != ",,RequestLimitExceeded" {
		t.Fatalf("codes %v", codes)
	}
	clk.Advance(time.Second)
	if _, err := c.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{}); err != nil {
		t.Fatalf("after refill: %v", err)
	}
}

func TestInterruptSpotPool(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, Config{})
	c := ec2Client(s, 3)
	lt := mustTemplate(t, ctx, c, s, "lt", "x86_64", "")
	sn := s.SubnetIDs()
	var spot []string
	for i := 0; i < 3; i++ {
		out, err := c.CreateFleet(ctx, fleetInput("p-"+string(rune('a'+i)), lt, "spot", override{"m5.large", sn[0]}))
		if err != nil {
			t.Fatal(err)
		}
		spot = append(spot, fleetIDs(out)...)
	}
	od, _ := c.CreateFleet(ctx, fleetInput("p-od", lt, "on-demand", override{"m5.large", sn[0]}))
	code, out := postJSON(t, s.URL()+"/sim/pools/interrupt", map[string]any{"instanceType": "m5.large", "zone": "us-east-1a"})
	if code != 200 || len(out["instanceIds"].([]any)) != 3 {
		t.Fatalf("interrupt pool: %d %v", code, out)
	}
	for _, id := range spot {
		if info, _ := s.Instance(id); info.SpotAction == nil {
			t.Errorf("%s has no notice", id)
		}
	}
	if info, _ := s.Instance(fleetIDs(od)[0]); info.SpotAction != nil {
		t.Error("on-demand instance interrupted")
	}
	f, err := c.CreateFleet(ctx, fleetInput("p-next", lt, "spot", override{"m5.large", sn[0]}))
	if err != nil || len(f.Instances) != 0 || aws.ToString(f.Errors[0].ErrorCode) != "InsufficientInstanceCapacity" {
		t.Fatalf("replacement in the reclaimed pool: %+v %v", f, err)
	}
}
