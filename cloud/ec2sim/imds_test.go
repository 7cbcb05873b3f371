package ec2sim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// launchOne launches one instance through the SDK and returns its ID.
func launchOne(t *testing.T, s *Sim, token, capType, itype, userData string) string {
	t.Helper()
	ctx := context.Background()
	c := ec2Client(s, 3)
	lt := mustTemplate(t, ctx, c, s, "lt-"+token, "x86_64", userData)
	out, err := c.CreateFleet(ctx, fleetInput(token, lt, capType, override{itype, s.SubnetIDs()[0]}))
	if err != nil {
		t.Fatal(err)
	}
	ids := fleetIDs(out)
	if len(ids) != 1 {
		t.Fatalf("launch: %+v", out.Errors)
	}
	return ids[0]
}

func imdsClient(t *testing.T, s *Sim, id string) *imds.Client {
	t.Helper()
	ep := s.IMDSEndpoint(id)
	if ep == "" {
		t.Fatal("no IMDS endpoint")
	}
	return imds.New(imds.Options{Endpoint: ep})
}

func getMeta(t *testing.T, c *imds.Client, path string) (string, error) {
	t.Helper()
	out, err := c.GetMetadata(context.Background(), &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	return string(b), err
}

func TestIMDSv2(t *testing.T) {
	clk := newFakeClock()
	s := startSim(t, Config{Clock: clk})
	userData := "#!/bin/bash\n/etc/eks/bootstrap.sh test\n"
	id := launchOne(t, s, "imds-1", "spot", "m5.large", b64(userData))
	ep := s.IMDSEndpoint(id)

	// IMDSv1 (no token) is refused.
	resp, err := http.Get(ep + "/latest/meta-data/instance-id")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without token: %d", resp.StatusCode)
	}
	// A token request without TTL is a 400.
	req, _ := http.NewRequest(http.MethodPut, ep+"/latest/api/token", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("token without ttl: %d", resp.StatusCode)
	}

	c := imdsClient(t, s, id)
	info, _ := s.Instance(id)
	for path, want := range map[string]string{
		"instance-id":                 id,
		"instance-type":               "m5.large",
		"placement/availability-zone": "us-east-1a",
		"local-ipv4":                  info.PrivateIP,
		"hostname":                    info.PrivateDNS,
		"ami-id":                      info.ImageID,
		"instance-life-cycle":         "spot",
	} {
		got, err := getMeta(t, c, path)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	doc, err := c.GetInstanceIdentityDocument(context.Background(), &imds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		t.Fatal(err)
	}
	if doc.InstanceID != id || doc.Region != "us-east-1" || doc.AvailabilityZone != "us-east-1a" || doc.Architecture != "x86_64" || doc.AccountID != "123456789012" {
		t.Fatalf("identity document: %+v", doc)
	}
	ud, err := c.GetUserData(context.Background(), &imds.GetUserDataInput{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(ud.Content)
	if string(b) != userData {
		t.Fatalf("user-data %q", b)
	}

	// No notice yet: 404s.
	for _, p := range []string{"spot/instance-action", "events/recommendations/rebalance"} {
		if _, err := getMeta(t, c, p); err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("%s before notice: %v", p, err)
		}
	}
	if got, err := getMeta(t, c, "events/maintenance/scheduled"); err != nil || strings.TrimSpace(got) != "[]" {
		t.Errorf("no events: %q %v", got, err)
	}

	// Spot interruption: 2-minute notice, then termination at the deadline.
	deadline, err := s.InterruptSpot(id)
	if err != nil {
		t.Fatal(err)
	}
	if !deadline.Equal(clk.Now().Add(2 * time.Minute)) {
		t.Fatalf("deadline %v", deadline)
	}
	got, err := getMeta(t, c, "spot/instance-action")
	if err != nil {
		t.Fatal(err)
	}
	var action struct{ Action, Time string }
	if err := json.Unmarshal([]byte(got), &action); err != nil || action.Action != "terminate" || action.Time != deadline.UTC().Format("2006-01-02T15:04:05Z") {
		t.Fatalf("instance-action %q (%v)", got, err)
	}

	if err := s.RebalanceRecommendation(id); err != nil {
		t.Fatal(err)
	}
	got, err = getMeta(t, c, "events/recommendations/rebalance")
	if err != nil || !strings.Contains(got, `"noticeTime": "2026-11-27T09:00:00Z"`) {
		t.Fatalf("rebalance %q %v", got, err)
	}

	eid, err := s.ScheduleMaintenance(id, MaintenanceEvent{Code: "system-reboot", NotBefore: clk.Now().Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	got, err = getMeta(t, c, "events/maintenance/scheduled")
	if err != nil {
		t.Fatal(err)
	}
	var events []map[string]string
	if err := json.Unmarshal([]byte(got), &events); err != nil || len(events) != 1 {
		t.Fatalf("events %q %v", got, err)
	}
	ev := events[0]
	if ev["EventId"] != eid || ev["Code"] != "system-reboot" || ev["State"] != "active" || ev["NotBefore"] != "29 Nov 2026 09:00:00 GMT" || ev["NotAfter"] == "" || ev["NotBeforeDeadline"] == "" {
		t.Fatalf("event %v", ev)
	}
	if err := s.CancelMaintenance(id, eid); err != nil {
		t.Fatal(err)
	}
	got, _ = getMeta(t, c, "events/maintenance/scheduled")
	if !strings.Contains(got, `"State": "canceled"`) {
		t.Fatalf("after cancel %q", got)
	}

	// At the deadline the instance goes away, and so does its IMDS.
	clk.Advance(2*time.Minute + time.Second)
	s.Reconcile()
	info, _ = s.Instance(id)
	if info.State != "terminated" || info.StateReason != "Server.SpotInstanceTermination" {
		t.Fatalf("after deadline: %s %s", info.State, info.StateReason)
	}
	if s.IMDSEndpoint(id) != "" {
		t.Fatal("terminated instance still has IMDS")
	}
}

func TestIMDSFaults(t *testing.T) {
	s := startSim(t, Config{})
	id := launchOne(t, s, "fault-1", "on-demand", "m5.large", "")
	c := imdsClient(t, s, id)
	if err := s.SetIMDSFault(id, IMDSFault{Mode: "error"}); err != nil {
		t.Fatal(err)
	}
	raw := imds.New(imds.Options{Endpoint: s.IMDSEndpoint(id), Retryer: noRetry{}})
	if _, err := getMeta(t, raw, "instance-id"); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("error mode: %v", err)
	}
	if err := s.SetIMDSFault(id, IMDSFault{Mode: "malformed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetInstanceIdentityDocument(context.Background(), &imds.GetInstanceIdentityDocumentInput{}); err == nil {
		t.Fatal("malformed identity document parsed")
	}
	if err := s.SetIMDSFault(id, IMDSFault{Mode: "slow", Delay: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := raw.GetMetadata(ctx, &imds.GetMetadataInput{Path: "instance-id"}); err == nil {
		t.Fatal("slow IMDS answered within the deadline")
	}
	if err := s.SetIMDSFault(id, IMDSFault{}); err != nil {
		t.Fatal(err)
	}
	if got, err := getMeta(t, c, "instance-id"); err != nil || got != id {
		t.Fatalf("healed: %q %v", got, err)
	}
	if err := s.SetIMDSFault(id, IMDSFault{Mode: "weird"}); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

func TestRetirementTerminatesAtNotBefore(t *testing.T) {
	clk := newFakeClock()
	s := startSim(t, Config{Clock: clk})
	id := launchOne(t, s, "retire-1", "on-demand", "m5.large", "")
	reboot, err := s.ScheduleMaintenance(id, MaintenanceEvent{Code: "system-reboot", NotBefore: clk.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ScheduleMaintenance(id, MaintenanceEvent{Code: "instance-retirement", NotBefore: clk.Now().Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c := imdsClient(t, s, id)
	clk.Advance(61 * time.Minute)
	s.Reconcile()
	got, err := getMeta(t, c, "events/maintenance/scheduled")
	if err != nil || !strings.Contains(got, `"State": "completed"`) || !strings.Contains(got, reboot) {
		t.Fatalf("after reboot window: %q %v", got, err)
	}
	if info, _ := s.Instance(id); info.State != "running" {
		t.Fatalf("reboot ended the instance: %s", info.State)
	}
	clk.Advance(time.Hour)
	s.Reconcile()
	if info, _ := s.Instance(id); info.State != "terminated" || info.StateReason != "Server.ScheduledStop" {
		t.Fatalf("after retirement: %s %s", info.State, info.StateReason)
	}
}

func TestIMDSTokenExpiry(t *testing.T) {
	clk := newFakeClock()
	s := startSim(t, Config{Clock: clk})
	id := launchOne(t, s, "ttl-1", "on-demand", "m5.large", "")
	ep := s.IMDSEndpoint(id)
	req, _ := http.NewRequest(http.MethodPut, ep+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	get := func() int {
		r, _ := http.NewRequest(http.MethodGet, ep+"/latest/meta-data/instance-id", nil)
		r.Header.Set("X-aws-ec2-metadata-token", string(tok))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != 200 {
		t.Fatalf("fresh token: %d", code)
	}
	clk.Advance(61 * time.Second)
	if code := get(); code != http.StatusUnauthorized {
		t.Fatalf("expired token: %d", code)
	}
}
