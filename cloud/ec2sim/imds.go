package ec2sim

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IMDSFault makes an instance's metadata service misbehave, for the
// agent's robustness tests.
type IMDSFault struct {
	// Mode is "" (healthy), "error" (HTTP 500 on every GET), "malformed"
	// (truncated JSON on JSON documents, garbage elsewhere) or "slow".
	Mode string `json:"mode"`
	// Delay is how long "slow" waits before answering.
	Delay time.Duration `json:"delay"`
}

// imdsTimeFormat is how IMDS writes times in events/maintenance/scheduled.
const imdsTimeFormat = "2 Jan 2006 15:04:05 GMT"

type imdsServer struct {
	srv *http.Server
	url string

	mu     sync.Mutex
	tokens map[string]time.Time // token → expiry
}

func (m *imdsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
}

// startIMDS gives an instance its own IMDS listener on loopback.
func (s *Sim) startIMDS(in *instance) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.log.Error("imds listen failed", "instance", in.id, "err", err)
		s.mu.Lock()
		in.imdsStarting = false
		s.mu.Unlock()
		return
	}
	m := &imdsServer{url: "http://" + ln.Addr().String(), tokens: map[string]time.Time{}}
	id := in.id
	m.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveIMDS(w, r, m, id) }), ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	in.imdsStarting = false
	if s.closed || in.state == stateTerminated {
		s.mu.Unlock()
		_ = ln.Close()
		return
	}
	in.imds = m
	s.mu.Unlock()
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("imds server stopped", "instance", id, "err", err)
		}
	}()
}

// IMDSEndpoint is the base URL of an instance's metadata service (use it
// as the IMDS client's endpoint), or "" when it has none (yet).
func (s *Sim) IMDSEndpoint(id string) string {
	s.mu.Lock()
	in := s.instances[id]
	starting := in != nil && in.imds == nil && in.state != stateTerminated && !s.cfg.DisableIMDS
	s.mu.Unlock()
	if starting {
		// The listener is started right after launch; make sure it exists.
		s.Reconcile()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if in = s.instances[id]; in == nil || in.imds == nil {
		return ""
	}
	return in.imds.url
}

func (s *Sim) serveIMDS(w http.ResponseWriter, r *http.Request, m *imdsServer, id string) {
	now := s.clock.Now()
	path := r.URL.Path
	if path == "/latest/api/token" {
		if r.Method != http.MethodPut {
			http.Error(w, "", http.StatusMethodNotAllowed)
			return
		}
		ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		if err != nil || ttl < 1 || ttl > 21600 {
			http.Error(w, "", http.StatusBadRequest)
			return
		}
		var b [32]byte
		_, _ = rand.Read(b[:])
		tok := base64.RawURLEncoding.EncodeToString(b[:])
		m.mu.Lock()
		m.tokens[tok] = now.Add(time.Duration(ttl) * time.Second)
		m.mu.Unlock()
		w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(ttl))
		_, _ = w.Write([]byte(tok))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "", http.StatusMethodNotAllowed)
		return
	}
	tok := r.Header.Get("X-aws-ec2-metadata-token")
	m.mu.Lock()
	exp, ok := m.tokens[tok]
	m.mu.Unlock()
	if tok == "" || !ok || now.After(exp) {
		// IMDSv2 only: no or expired token is 401, as with HttpTokens=required.
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	in := s.instances[id]
	if in == nil {
		s.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	fault := in.imdsFault
	body, ctype, found := s.imdsDocLocked(in, strings.TrimPrefix(path, "/latest/"), now)
	s.mu.Unlock()
	switch fault.Mode {
	case "error":
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	case "slow":
		t := time.NewTimer(fault.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	case "malformed":
		if found {
			if len(body) > 1 {
				body = body[:len(body)/2]
			}
			body = append(body, []byte("\x00{]")...)
		}
	}
	if !found {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ctype)
	_, _ = w.Write(body)
}

// imdsDocLocked renders one metadata path.
func (s *Sim) imdsDocLocked(in *instance, path string, now time.Time) ([]byte, string, bool) {
	text := func(v string) ([]byte, string, bool) { return []byte(v), "text/plain", true }
	js := func(v any) ([]byte, string, bool) {
		b, _ := json.MarshalIndent(v, "", "  ")
		return b, "text/plain", true
	}
	md := strings.TrimPrefix(path, "meta-data/")
	if !strings.HasPrefix(path, "meta-data") {
		md = "\x00" // not a meta-data path
	}
	switch {
	case path == "user-data":
		if len(in.userData) == 0 {
			return nil, "", false
		}
		return append([]byte(nil), in.userData...), "application/octet-stream", true
	case path == "dynamic/instance-identity/document":
		return s.identityDocLocked(in), "text/plain", true
	case path == "dynamic/instance-identity/signature":
		sig, err := s.iid.sign(s.cfg.Region, s.identityDocLocked(in))
		if err != nil {
			s.log.Error("imds identity signature failed", "instance", in.id, "err", err)
			return nil, "", false
		}
		return sig, "text/plain", true
	case path == "dynamic/instance-identity/rsa2048":
		sig, err := s.iid.signRSA2048(s.cfg.Region, s.identityDocLocked(in))
		if err != nil {
			s.log.Error("imds identity rsa2048 signature failed", "instance", in.id, "err", err)
			return nil, "", false
		}
		return sig, "text/plain", true
	case path == "meta-data" || path == "meta-data/":
		return text(strings.Join([]string{"ami-id", "events/", "hostname", "instance-action", "instance-id", "instance-life-cycle",
			"instance-type", "local-hostname", "local-ipv4", "mac", "placement/", "services/", "spot/"}, "\n"))
	}
	switch md {
	case "instance-id":
		return text(in.id)
	case "instance-type":
		return text(in.itype)
	case "ami-id":
		return text(in.imageID)
	case "hostname", "local-hostname":
		return text(in.privateDNS)
	case "local-ipv4":
		return text(in.privateIP)
	case "mac":
		return text("0e:" + strings.ToLower(in.id[len(in.id)-10:len(in.id)-8]) + ":00:00:00:01")
	case "instance-life-cycle":
		if in.capType == "spot" {
			return text("spot")
		}
		return text("on-demand")
	case "instance-action":
		return text("none")
	case "placement/availability-zone":
		return text(in.zone)
	case "placement/availability-zone-id":
		for i, z := range s.cfg.Zones {
			if z == in.zone {
				return text(zoneID(s.cfg.Region, i))
			}
		}
		return nil, "", false
	case "placement/region":
		return text(s.cfg.Region)
	case "services/domain":
		return text("amazonaws.com")
	case "spot/instance-action":
		if in.action == nil {
			return nil, "", false
		}
		return js(map[string]string{"action": in.action.action, "time": in.action.deadline.UTC().Format("2006-01-02T15:04:05Z")})
	case "spot/termination-time":
		if in.action == nil {
			return nil, "", false
		}
		return text(in.action.deadline.UTC().Format("2006-01-02T15:04:05Z"))
	case "events/recommendations/rebalance":
		if in.rebalanceAt.IsZero() {
			return nil, "", false
		}
		return js(map[string]string{"noticeTime": in.rebalanceAt.UTC().Format("2006-01-02T15:04:05Z")})
	case "events/maintenance/scheduled":
		list := []map[string]string{}
		for _, e := range in.events {
			ev := map[string]string{
				"Code": e.code, "Description": e.desc, "State": e.state, "EventId": e.id,
				"NotBefore": e.notBefore.UTC().Format(imdsTimeFormat),
			}
			if !e.notAfter.IsZero() {
				ev["NotAfter"] = e.notAfter.UTC().Format(imdsTimeFormat)
			}
			if !e.notBeforeDeadline.IsZero() {
				ev["NotBeforeDeadline"] = e.notBeforeDeadline.UTC().Format(imdsTimeFormat)
			}
			list = append(list, ev)
		}
		return js(list)
	case "events/maintenance/history":
		return js([]any{})
	}
	return nil, "", false
}

// identityDocLocked renders the instance identity document. The bytes are
// deterministic, so the signature endpoint signs exactly what the document
// endpoint serves.
func (s *Sim) identityDocLocked(in *instance) []byte {
	b, _ := json.MarshalIndent(map[string]any{
		"accountId": s.cfg.AccountID, "architecture": in.arch, "availabilityZone": in.zone,
		"billingProducts": nil, "devpayProductCodes": nil, "marketplaceProductCodes": nil,
		"imageId": in.imageID, "instanceId": in.id, "instanceType": in.itype, "kernelId": nil,
		"pendingTime": in.launched.UTC().Format(time.RFC3339), "privateIp": in.privateIP,
		"ramdiskId": nil, "region": s.cfg.Region, "version": "2017-09-30",
	}, "", "  ")
	return b
}
