package ec2

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// A DescribeInstances that never answers must not block List: the call
// deadline ends it with an error, counted and logged.
func TestHungDescribeInstancesEndsAtTheCallDeadline(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	p, reg := newProvider(t, e, func(c *Config) { c.CallTimeout = 300 * time.Millisecond })
	e.sim.SetAPIFault("DescribeInstances", ec2sim.APIFault{Hang: true})
	start := time.Now()
	_, err := p.List(context.Background()) // no deadline of its own
	took := time.Since(start)
	if err == nil {
		t.Fatal("List succeeded against a hung DescribeInstances")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "DescribeInstances") {
		t.Fatalf("error = %v", err)
	}
	if took > 5*time.Second {
		t.Fatalf("List returned after %s; the deadline is 300ms", took)
	}
	if n := testutil.ToFloat64(p.metrics.timeouts.WithLabelValues("EC2.DescribeInstances")); n != 1 {
		t.Fatalf("timeouts counted = %v", n)
	}
	if n, err := testutil.GatherAndCount(reg, "dovetail_cloudprovider_call_timeouts_total"); err != nil || n != 1 {
		t.Fatalf("exported timeout series = %d, %v", n, err)
	}
	e.sim.SetAPIFault("DescribeInstances", ec2sim.APIFault{})
	if _, err := p.List(context.Background()); err != nil {
		t.Fatalf("List after the fault healed: %v", err)
	}
}

// A CreateFleet answer whose instance ID is empty (or lacks the instance
// type) is an error, and nothing is remembered as launched.
func TestCreateFleetAnswerWithoutInstanceIDIsAnError(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	nc := testNodeClass("default")
	ids := regexp.MustCompile(`(<instanceIds>\s*<item>)i-[0-9a-f]+(</item>)`)
	types := regexp.MustCompile(`<instanceType>[^<]*</instanceType>`)
	for name, mangle := range map[string]func([]byte) []byte{
		"empty instance ID": func(b []byte) []byte { return ids.ReplaceAll(b, []byte("${1}${2}")) },
		"no instance type":  func(b []byte) []byte { return types.ReplaceAll(b, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			e.sim.SetAPIFault("CreateFleet", ec2sim.APIFault{Mangle: func(b []byte) []byte {
				out := mangle(b)
				if bytes.Equal(out, b) {
					t.Errorf("fault did not change the answer:\n%s", b)
				}
				return out
			}})
			defer e.sim.SetAPIFault("CreateFleet", ec2sim.APIFault{})
			claim := "default-" + strings.ReplaceAll(name, " ", "")
			inst, err := e.p.Create(ctx, nc, request(claim, opt("m5.large", "us-east-1a", "on-demand", 0.096)))
			if err == nil {
				t.Fatalf("accepted %+v", inst)
			}
			if _, ok := e.p.recent.byNodeClaim(claim); ok {
				t.Fatal("the bogus launch was cached")
			}
		})
	}
}
