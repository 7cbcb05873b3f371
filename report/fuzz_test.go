package report

import (
	"encoding/json"
	"net/http"
	"testing"
)

// FuzzReportBody: what the coordinator reads from any process that reaches
// its port — a JSON body and the signature headers. Decoding, clipping and
// header parsing never panic; clipping never grows a report and
// clipping twice changes nothing; parsed signature headers are well formed.
func FuzzReportBody(f *testing.F) {
	f.Add([]byte(`{"id":"r1","kind":"SpotInterruption","nodeName":"ip-10-0-0-1","instanceID":"i-0123"}`), "i-0123", "7", "AAAA")
	f.Add([]byte(`{"id":"r2","kind":"Health","nodeName":"n","checks":[{"name":"kubelet","state":"failed","message":"x"}]}`), "", "", "")
	f.Add([]byte(`{"id":1}`), "i-1\n", "-3", "!!")
	f.Fuzz(func(t *testing.T, body []byte, instance, seq, sig string) {
		var r Report
		if json.Unmarshal(body, &r) == nil {
			full, _ := json.Marshal(r)
			c := r.Clipped()
			b, err := json.Marshal(c)
			if err != nil {
				t.Fatalf("clipped report does not encode: %v", err)
			}
			if len(b) > len(full) {
				t.Fatalf("clipping grew the report from %d to %d bytes", len(full), len(b))
			}
			b2, _ := json.Marshal(c.Clipped())
			if string(b2) != string(b) {
				t.Fatalf("clipping is not idempotent:\n%s\n%s", b, b2)
			}
		}
		h := http.Header{}
		h.Set(HeaderInstance, instance)
		h.Set(HeaderSeq, seq)
		h.Set(HeaderSignature, sig)
		in, n, s, err := SignedBy(h)
		if err == nil && (in == "" || n <= 0 || len(s) == 0) {
			t.Fatalf("SignedBy accepted %q %q %q as %q %d %x", instance, seq, sig, in, n, s)
		}
	})
}
