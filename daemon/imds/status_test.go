package imds

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// A 500 used to wait out the whole timeout inside the SDK's retry backoff
// and come back as "context deadline exceeded", with one request sent.
func TestServerErrorCarriesStatusAndRetriesWithBackoff(t *testing.T) {
	var mu sync.Mutex
	var gets []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			_, _ = w.Write([]byte("tok"))
			return
		}
		mu.Lock()
		gets = append(gets, time.Now())
		mu.Unlock()
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer srv.Close()
	w, err := New(Config{Endpoint: srv.URL, Timeout: 300 * time.Millisecond, Retries: 2, RetryBackoff: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.get(t.Context(), "spot/instance-action")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusInternalServerError || !strings.Contains(err.Error(), "HTTP 500") {
		t.Fatalf("error %v does not carry the status", err)
	}
	if strings.Contains(err.Error(), "deadline") {
		t.Fatalf("a 500 reported as a timeout: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(gets) != 3 {
		t.Fatalf("%d GETs, want 1 + 2 retries", len(gets))
	}
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		if gap := gets[i+1].Sub(gets[i]); gap < want {
			t.Fatalf("retry %d after %v, before its %v backoff", i+1, gap, want)
		}
	}
}
