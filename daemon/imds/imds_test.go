package imds

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIMDS is a scriptable IMDSv2 endpoint for failure modes AEMM cannot
// produce: every answer can be swapped at run time.
type fakeIMDS struct {
	mu        sync.Mutex
	docs      map[string]string // meta-data path → body
	status    int               // non-zero: answer every GET with this
	delay     time.Duration
	tokenPuts atomic.Int32
	v1Gets    atomic.Int32 // GETs without a token
	tokens    map[string]bool
}

func newFake(t *testing.T) (*fakeIMDS, string) {
	f := &fakeIMDS{docs: map[string]string{"instance-id": "i-0abc", "placement/availability-zone": "eu-west-1b",
		"local-hostname": "ip-10-1-2-3.eu-west-1.compute.internal", "instance-type": "m7g.large"}, tokens: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeIMDS) set(path, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if body == "" {
		delete(f.docs, path)
	} else {
		f.docs[path] = body
	}
}

func (f *fakeIMDS) setStatus(code int) { f.mu.Lock(); f.status = code; f.mu.Unlock() }
func (f *fakeIMDS) setDelay(d time.Duration) {
	f.mu.Lock()
	f.delay = d
	f.mu.Unlock()
}
func (f *fakeIMDS) revokeTokens() { f.mu.Lock(); f.tokens = map[string]bool{}; f.mu.Unlock() }

func (f *fakeIMDS) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	delay, status := f.delay, f.status
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
		n := f.tokenPuts.Add(1)
		tok := fmt.Sprintf("tok-%d", n)
		f.mu.Lock()
		f.tokens[tok] = true
		f.mu.Unlock()
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		_, _ = w.Write([]byte(tok))
		return
	}
	tok := r.Header.Get("X-Aws-Ec2-Metadata-Token")
	if tok == "" {
		f.v1Gets.Add(1)
	}
	f.mu.Lock()
	valid := f.tokens[tok]
	body, ok := f.docs[strings.TrimPrefix(r.URL.Path, "/latest/meta-data/")]
	f.mu.Unlock()
	if !valid {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if status != 0 {
		http.Error(w, "boom", status)
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write([]byte(body))
}

func newWatcher(t *testing.T, endpoint string) *Watcher {
	t.Helper()
	w, err := New(Config{Endpoint: endpoint, Interval: 50 * time.Millisecond, Timeout: 300 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func run(t *testing.T, w *Watcher) <-chan Notice {
	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan Notice, 16)
	done := make(chan struct{})
	go func() { _ = w.Run(ctx, out); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

func next(t *testing.T, ch <-chan Notice) Notice {
	t.Helper()
	select {
	case n := <-ch:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no notice")
		return Notice{}
	}
}

func none(t *testing.T, ch <-chan Notice, d time.Duration) {
	t.Helper()
	select {
	case n := <-ch:
		t.Fatalf("unexpected notice %+v", n)
	case <-time.After(d):
	}
}

func TestSurvivesFaultsThenSeesSpotNotice(t *testing.T) {
	f, url := newFake(t)
	w := newWatcher(t, url)
	out := run(t, w)

	// 5xx, slow, malformed and wrong-shape answers: no notice, no crash.
	f.setStatus(http.StatusInternalServerError)
	none(t, out, 200*time.Millisecond)
	f.setStatus(0)
	f.setDelay(500 * time.Millisecond) // beyond the 300 ms timeout
	none(t, out, 700*time.Millisecond)
	f.setDelay(0)
	f.set("spot/instance-action", `{"action": "terminate", "time": `)
	none(t, out, 200*time.Millisecond)
	f.set("spot/instance-action", `{"action": "terminate", "time": "yesterday"}`)
	f.set("events/maintenance/scheduled", `{"not": "a list"}`)
	f.set("events/recommendations/rebalance", `[]`)
	none(t, out, 200*time.Millisecond)

	// Tokens revoked (IMDS restarted): 401, the client must fetch a new one.
	f.revokeTokens()
	f.set("spot/instance-action", `{"action": "stop", "time": "2026-11-27T10:00:00Z"}`)
	n := next(t, out)
	if n.Kind != KindSpotInterruption || n.Action != "stop" || !n.Time.Equal(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("notice %+v", n)
	}
	// Sent once, not on every poll.
	none(t, out, 300*time.Millisecond)
	if f.v1Gets.Load() != 0 {
		t.Fatalf("%d IMDSv1 (token-less) requests", f.v1Gets.Load())
	}
	if puts := f.tokenPuts.Load(); puts < 2 || puts > 20 {
		t.Fatalf("%d token PUTs: want reuse, and a refresh after revocation", puts)
	}
}

func TestNoV1FallbackWhenTokensUnavailable(t *testing.T) {
	// A server that refuses token PUTs (IMDSv1-only, or a hostile proxy).
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		gets.Add(1)
		_, _ = w.Write([]byte(`{"action":"terminate","time":"2026-01-01T00:00:00Z"}`))
	}))
	defer srv.Close()
	w := newWatcher(t, srv.URL)
	out := run(t, w)
	none(t, out, 400*time.Millisecond)
	if gets.Load() != 0 {
		t.Fatalf("watcher made %d token-less GETs", gets.Load())
	}
}

func TestRebalanceAndMaintenanceLifecycle(t *testing.T) {
	f, url := newFake(t)
	out := run(t, newWatcher(t, url))
	f.set("events/recommendations/rebalance", `{"noticeTime": "2026-11-27T09:00:00Z"}`)
	if n := next(t, out); n.Kind != KindRebalance || n.Time.Hour() != 9 {
		t.Fatalf("%+v", n)
	}
	active := `[{"NotBefore":"27 Nov 2026 12:00:00 GMT","Code":"system-reboot","Description":"scheduled reboot","EventId":"instance-event-1","NotAfter":"27 Nov 2026 14:00:00 GMT","NotBeforeDeadline":"4 Dec 2026 12:00:00 GMT","State":"active"}]`
	f.set("events/maintenance/scheduled", active)
	n := next(t, out)
	if n.Kind != KindMaintenance || n.EventID != "instance-event-1" || n.Action != "system-reboot" || n.Cancelled ||
		!n.Time.Equal(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)) || n.NotAfter.Hour() != 14 {
		t.Fatalf("%+v", n)
	}
	none(t, out, 200*time.Millisecond)
	f.set("events/maintenance/scheduled", strings.Replace(strings.Replace(active, `"active"`, `"canceled"`, 1), "scheduled reboot", "[Canceled] scheduled reboot", 1))
	if n := next(t, out); !n.Cancelled || n.EventID != "instance-event-1" {
		t.Fatalf("%+v", n)
	}
	// A second event that vanishes without a state change counts as cancelled.
	f.set("events/maintenance/scheduled", strings.Replace(active, "instance-event-1", "instance-event-2", 1))
	if n := next(t, out); n.EventID != "instance-event-2" || n.Cancelled {
		t.Fatalf("%+v", n)
	}
	f.set("events/maintenance/scheduled", "[]")
	if n := next(t, out); n.EventID != "instance-event-2" || !n.Cancelled || n.State != "vanished" {
		t.Fatalf("vanished event not reported cancelled: %+v", n)
	}
	// event-1 left the list already cancelled: nothing more to say.
	none(t, out, 200*time.Millisecond)
}

func TestIdentity(t *testing.T) {
	_, url := newFake(t)
	id, err := newWatcher(t, url).Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if id.InstanceID != "i-0abc" || id.Region != "eu-west-1" || id.ProviderID() != "aws:///eu-west-1b/i-0abc" ||
		id.Hostname != "ip-10-1-2-3.eu-west-1.compute.internal" || id.InstanceType != "m7g.large" {
		t.Fatalf("%+v", id)
	}
}

func TestIdentityGivesUpWithContext(t *testing.T) {
	f, url := newFake(t)
	f.setStatus(http.StatusServiceUnavailable)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := newWatcher(t, url).Identity(ctx); err == nil {
		t.Fatal("identity without IMDS")
	}
}

func TestUnknownSpotActionTreatedAsTerminate(t *testing.T) {
	f, url := newFake(t)
	out := run(t, newWatcher(t, url))
	f.set("spot/instance-action", `{"action": "explode", "time": "2026-01-01T00:00:00Z"}`)
	n := next(t, out)
	if n.Kind != KindSpotInterruption || n.Action != "terminate" || !strings.Contains(n.Description, `"explode"`) {
		t.Fatalf("unknown action not acted on as terminate: %+v", n)
	}
	none(t, out, 200*time.Millisecond)
}

func TestMaintenance404FlapIsDebounced(t *testing.T) {
	f, url := newFake(t)
	w, err := New(Config{Endpoint: url, Interval: 50 * time.Millisecond, Timeout: 300 * time.Millisecond,
		VanishAfter: 600 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	out := run(t, w)
	active := `[{"NotBefore":"27 Nov 2026 12:00:00 GMT","Code":"system-reboot","EventId":"instance-event-7","State":"active"}]`
	f.set("events/maintenance/scheduled", active)
	if n := next(t, out); n.EventID != "instance-event-7" || n.Cancelled {
		t.Fatalf("%+v", n)
	}
	// The path answers 404 for 150 ms, then lists the event again: neither
	// a cancel nor a second notice.
	f.set("events/maintenance/scheduled", "")
	time.Sleep(150 * time.Millisecond)
	f.set("events/maintenance/scheduled", active)
	none(t, out, time.Second)
	// Gone for good: cancelled once, after the debounce.
	f.set("events/maintenance/scheduled", "")
	gone := time.Now()
	n := next(t, out)
	if n.EventID != "instance-event-7" || !n.Cancelled || n.State != "vanished" {
		t.Fatalf("%+v", n)
	}
	if d := time.Since(gone); d < 500*time.Millisecond {
		t.Fatalf("cancelled after %v, before the 600 ms debounce", d)
	}
	none(t, out, 200*time.Millisecond)
}
