package api_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/attest"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/fsm/fsmtest"
	"github.com/dovetail-dev/dovetail/report"
)

// fakeAWS signs identity documents like IMDS's base64 `signature`.
type fakeAWS struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

func newFakeAWS(t *testing.T) *fakeAWS {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test iid"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &fakeAWS{key: key, cert: c}
}

func (f *fakeAWS) doc(t *testing.T, account, region, instance string) (string, string) {
	t.Helper()
	d, _ := json.Marshal(map[string]string{"accountId": account, "region": region, "instanceId": instance,
		"pendingTime": "2026-12-02T10:00:00Z"})
	sum := sha256.Sum256(d)
	sig, err := rsa.SignPKCS1v15(rand.Reader, f.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return string(d), base64.StdEncoding.EncodeToString(sig)
}

type agentKey struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func newAgentKey() agentKey {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return agentKey{priv: priv, pub: pub}
}

type intakeRig struct {
	t   *testing.T
	url string
	reg *prometheus.Registry
	st  func() *fsm.State
	seq int64
}

func (r *intakeRig) post(path string, body []byte, sign func(*http.Request, []byte)) int {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sign != nil {
		sign(req, body)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (r *intakeRig) signer(k agentKey, instance string) func(*http.Request, []byte) {
	return func(req *http.Request, body []byte) {
		r.seq++
		report.Sign(req, k.priv, instance, time.Now().UnixNano()+r.seq, body)
	}
}

func (r *intakeRig) refused(reason string) float64 {
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "dovetail_report_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func attestBody(t *testing.T, doc, sig string, k agentKey, node string) []byte {
	b, _ := json.Marshal(report.Attestation{Format: "signature", Document: doc, Signature: sig,
		PublicKey: base64.StdEncoding.EncodeToString(k.pub), NodeName: node})
	return b
}

// The report intake with attestation on: an instance this cluster launched
// attests once (trust on first use) and then speaks for its own node only;
// every forged, replayed or foreign request is refused, counted under its
// reason, and leaves the replicated state untouched.
func TestAttestedReportIntake(t *testing.T) {
	n := soloNode(t)
	aws := newFakeAWS(t)
	reg := prometheus.NewRegistry()
	v := &attest.Verifier{Roots: []*x509.Certificate{aws.cert}, AccountID: "111122223333", Region: "us-east-1"}
	srv := httptest.NewServer(api.New(api.Config{Backend: n, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Attest: &api.AttestConfig{Verifier: v, Registerer: reg, Rate: 1, Burst: 8}}))
	defer srv.Close()
	rig := &intakeRig{t: t, url: srv.URL, reg: reg, st: n.State}
	ctx := t.Context()
	// i-1 and i-2 are this cluster's instances; i-9 is not.
	for _, c := range append(fsmtest.Launched("i-1", "node-1", time.Now()), fsmtest.Launched("i-2", "node-2", time.Now())...) {
		if err := n.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	k1, k2, thief := newAgentKey(), newAgentKey(), newAgentKey()
	doc1, sig1 := aws.doc(t, "111122223333", "us-east-1", "i-1")
	rep := func(id, node string) []byte {
		b, _ := json.Marshal(report.Report{ID: id, Kind: report.KindInterruption, NodeName: node, Action: "terminate"})
		return b
	}
	expect := func(what string, got, want int, reason string) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: HTTP %d, want %d", what, got, want)
		}
		if reason != "" && rig.refused(reason) < 1 {
			t.Fatalf("%s: refusal %s not counted", what, reason)
		}
	}
	// Before attestation: unsigned, or signed by a key nobody bound.
	expect("unsigned report", rig.post(report.Path, rep("a", "node-1"), nil), 401, "no_credentials")
	expect("unattested key", rig.post(report.Path, rep("b", "node-1"), rig.signer(k1, "i-1")), 401, "not_attested")

	// Attestation refusals.
	expect("no document", rig.post(report.AttestPath, attestBody(t, "", "", k1, "node-1"), rig.signer(k1, "i-1")), 401, "no_credentials")
	forged := strings.Replace(doc1, "i-1", "i-2", 1)
	expect("forged document", rig.post(report.AttestPath, attestBody(t, forged, sig1, k1, "node-2"), rig.signer(k1, "i-2")), 401, "bad_signature")
	other, osig := aws.doc(t, "999988887777", "us-east-1", "i-1")
	expect("other account", rig.post(report.AttestPath, attestBody(t, other, osig, k1, "node-1"), rig.signer(k1, "i-1")), 403, "other_account")
	other, osig = aws.doc(t, "111122223333", "eu-west-1", "i-1")
	expect("other region", rig.post(report.AttestPath, attestBody(t, other, osig, k1, "node-1"), rig.signer(k1, "i-1")), 403, "other_region")
	out, osig := aws.doc(t, "111122223333", "us-east-1", "i-9")
	expect("outside the cluster", rig.post(report.AttestPath, attestBody(t, out, osig, k1, "node-9"), rig.signer(k1, "i-9")), 403, "not_owned")
	expect("claims another node", rig.post(report.AttestPath, attestBody(t, doc1, sig1, k1, "node-2"), rig.signer(k1, "i-1")), 403, "other_node")
	expect("key not held", rig.post(report.AttestPath, attestBody(t, doc1, sig1, k1, "node-1"), rig.signer(thief, "i-1")), 401, "bad_signature")
	if len(n.State().Attestations) != 0 {
		t.Fatalf("refused attestations committed: %+v", n.State().Attestations)
	}

	// First use binds i-1 to k1.
	expect("attest", rig.post(report.AttestPath, attestBody(t, doc1, sig1, k1, "node-1"), rig.signer(k1, "i-1")), 200, "")
	expect("re-attest, same key", rig.post(report.AttestPath, attestBody(t, doc1, sig1, k1, "node-1"), rig.signer(k1, "i-1")), 200, "")
	// The captured document replayed with the thief's key.
	expect("replayed document", rig.post(report.AttestPath, attestBody(t, doc1, sig1, thief, "node-1"), rig.signer(thief, "i-1")), 403, "replayed_document")

	// Reports.
	expect("signed report", rig.post(report.Path, rep("r1", "node-1"), rig.signer(k1, "i-1")), 200, "")
	expect("report about another node", rig.post(report.Path, rep("r2", "node-2"), rig.signer(k1, "i-1")), 403, "other_node")
	expect("thief signs for i-1", rig.post(report.Path, rep("r3", "node-1"), rig.signer(thief, "i-1")), 401, "bad_signature")
	// A captured signed request, replayed byte for byte.
	body := rep("r4", "node-1")
	req, _ := http.NewRequest(http.MethodPost, srv.URL+report.Path, bytes.NewReader(body))
	report.Sign(req, k1.priv, "i-1", time.Now().UnixNano()+1e6, body)
	hdr := req.Header.Clone()
	expect("original", rig.post(report.Path, body, func(r *http.Request, _ []byte) { r.Header = hdr.Clone() }), 200, "")
	expect("replay", rig.post(report.Path, body, func(r *http.Request, _ []byte) { r.Header = hdr.Clone() }), 403, "replayed_request")
	// A changed body under a captured signature.
	expect("tampered body", rig.post(report.Path, rep("r5", "node-1"), func(r *http.Request, _ []byte) { r.Header = hdr.Clone() }), 401, "bad_signature")
	stale := func(r *http.Request, b []byte) {
		report.Sign(r, k1.priv, "i-1", time.Now().Add(-10*time.Minute).UnixNano(), b)
	}
	expect("stale", rig.post(report.Path, rep("r6", "node-1"), stale), 401, "stale_request")
	st := n.State()
	for _, id := range []string{"r2", "r3", "r5", "r6"} {
		if _, ok := st.ReportIDs[id]; ok {
			t.Fatalf("refused report %s committed", id)
		}
	}
	if st.Nodes["node-2"] != nil {
		t.Fatal("report about node-2 committed")
	}
	// Rate limit: the bucket (burst 8, 1/s) runs dry within a burst.
	limited := false
	for i := 0; i < 12 && !limited; i++ {
		limited = rig.post(report.Path, rep("burst"+string(rune('a'+i)), "node-1"), rig.signer(k1, "i-1")) == http.StatusTooManyRequests
	}
	if !limited || rig.refused("rate_limited") < 1 {
		t.Fatal("no rate limit within a burst of 12")
	}

	time.Sleep(1100 * time.Millisecond) // one token back (1/s)

	// Operator reset lets a new key bind; the old one is then refused.
	expect("reset", rig.post(api.AttestResetPath("i-1"), nil, nil), 200, "")
	expect("attest new key", rig.post(report.AttestPath, attestBody(t, doc1, sig1, k2, "node-1"), rig.signer(k2, "i-1")), 200, "")
	expect("old key after reset", rig.post(report.Path, rep("r7", "node-1"), rig.signer(k1, "i-1")), 401, "bad_signature")

	// Terminated: the binding goes with the instance.
	if err := n.Apply(ctx, fsm.IntentDelete{Token: fsmtest.Token("i-1")}); err != nil {
		t.Fatal(err)
	}
	if len(n.State().Attestations) != 0 {
		t.Fatal("terminated instance kept its binding")
	}
	expect("report after termination", rig.post(report.Path, rep("r8", "node-1"), rig.signer(k2, "i-1")), 403, "not_owned")
}

// Unverified attestations share one bucket: a flood of junk documents is
// cut off before the leader verifies RSA signatures for it.
func TestAttestFloodLimited(t *testing.T) {
	n := soloNode(t)
	aws := newFakeAWS(t)
	reg := prometheus.NewRegistry()
	v := &attest.Verifier{Roots: []*x509.Certificate{aws.cert}, AccountID: "111122223333", Region: "us-east-1"}
	srv := httptest.NewServer(api.New(api.Config{Backend: n, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Attest: &api.AttestConfig{Verifier: v, Registerer: reg, AttestRate: 1, AttestBurst: 5}}))
	defer srv.Close()
	rig := &intakeRig{t: t, url: srv.URL, reg: reg}
	k := newAgentKey()
	codes := map[int]int{}
	for i := 0; i < 20; i++ {
		codes[rig.post(report.AttestPath, attestBody(t, `{"instanceId":"i-x"}`, "AAAA", k, "n"), rig.signer(k, "i-x"))]++
	}
	if codes[http.StatusUnauthorized] > 6 || codes[http.StatusTooManyRequests] < 14 {
		t.Fatalf("flood of 20 junk attestations: %v", codes)
	}
	if rig.refused("rate_limited") < 14 || rig.refused("bad_signature") < 5 {
		t.Fatalf("counted: rate_limited %v, bad_signature %v", rig.refused("rate_limited"), rig.refused("bad_signature"))
	}
}

// BenchmarkReportIntake is one report through the API into Raft on a solo
// node: unsigned (attestation off) against signed (attestation on, the
// agent's Ed25519 signature verified and the sequence fenced in the FSM).
// The difference is what attestation adds to the spot-notice → report path.
func BenchmarkReportIntake(b *testing.B) {
	for _, signed := range []bool{false, true} {
		name := "unsigned"
		if signed {
			name = "signed"
		}
		b.Run(name, func(b *testing.B) {
			n := soloNode(b)
			cfg := api.Config{Backend: n, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			k := newAgentKey()
			if signed {
				cfg.Attest = &api.AttestConfig{Verifier: &attest.Verifier{}, Rate: 1e9, Burst: 1 << 30}
				ctx := b.Context()
				for _, c := range fsmtest.Launched("i-1", "node-1", time.Now()) {
					if err := n.Apply(ctx, c); err != nil {
						b.Fatal(err)
					}
				}
				if err := n.Apply(ctx, fsm.AttestBind{Attestation: fsm.Attestation{InstanceID: "i-1", NodeName: "node-1", PublicKey: k.pub}}); err != nil {
					b.Fatal(err)
				}
			}
			srv := httptest.NewServer(api.New(cfg))
			defer srv.Close()
			var seq int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				body, _ := json.Marshal(report.Report{ID: "b" + strconv.Itoa(i), Kind: report.KindInterruption, NodeName: "node-1", Action: "terminate"})
				req, _ := http.NewRequest(http.MethodPost, srv.URL+report.Path, bytes.NewReader(body))
				if signed {
					seq = max(time.Now().UnixNano(), seq+1)
					report.Sign(req, k.priv, "i-1", seq, body)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("HTTP %d", resp.StatusCode)
				}
			}
		})
	}
}
