package report

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Signed requests: after attestation every report (and the attestation
// request itself, as proof that the agent holds the key it presents) is
// signed with the agent's Ed25519 key over
//
//	dovetail-request-v1 \n METHOD \n PATH \n INSTANCE \n SEQ \n hex(sha256(body))
//
// SEQ is the signing time in Unix nanoseconds: the coordinator accepts it
// only within MaxClockSkew of its own clock and only above the last
// committed sequence of that instance, so a captured request cannot be
// replayed, and the body, method and path cannot be changed.
const (
	HeaderInstance  = "X-Dovetail-Node-Instance"
	HeaderSeq       = "X-Dovetail-Node-Seq"
	HeaderSignature = "X-Dovetail-Node-Signature"
)

// MaxClockSkew bounds how far a request's signing time may be from the
// coordinator's clock. NTP-synced EC2 instances are within milliseconds; a
// retried report is signed again at each attempt, so this only needs to
// cover one request's flight.
const MaxClockSkew = 2 * time.Minute

// AttestPath is the coordinator endpoint that binds an instance to a key.
const AttestPath = "/v1/attest"

// Attestation is the body of POST AttestPath.
type Attestation struct {
	// Format is the IMDS signature form: "rsa2048" or "signature".
	Format string `json:"format"`
	// Document is dynamic/instance-identity/document, exactly as served.
	Document string `json:"document"`
	// Signature is the base64 served at dynamic/instance-identity/<format>.
	Signature string `json:"signature"`
	// PublicKey is the agent's raw Ed25519 public key, base64.
	PublicKey string `json:"publicKey"`
	// NodeName is the Kubernetes node the agent runs on.
	NodeName string `json:"nodeName"`
}

// StringToSign is what the request signature covers.
func StringToSign(method, path, instance string, seq int64, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte("dovetail-request-v1\n" + method + "\n" + path + "\n" + instance + "\n" +
		strconv.FormatInt(seq, 10) + "\n" + hex.EncodeToString(sum[:]))
}

// Sign adds the signature headers to req for body.
func Sign(req *http.Request, key ed25519.PrivateKey, instance string, seq int64, body []byte) {
	sig := ed25519.Sign(key, StringToSign(req.Method, req.URL.Path, instance, seq, body))
	req.Header.Set(HeaderInstance, instance)
	req.Header.Set(HeaderSeq, strconv.FormatInt(seq, 10))
	req.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(sig))
}

// ErrUnsigned is returned by SignedBy for a request without signature headers.
var ErrUnsigned = errors.New("request is not signed")

// SignedBy parses the signature headers of r: the instance, the sequence
// and the raw signature. It does not verify anything.
func SignedBy(h http.Header) (instance string, seq int64, sig []byte, err error) {
	instance, seqs, sigs := h.Get(HeaderInstance), h.Get(HeaderSeq), h.Get(HeaderSignature)
	if instance == "" && seqs == "" && sigs == "" {
		return "", 0, nil, ErrUnsigned
	}
	if instance == "" || seqs == "" || sigs == "" {
		return "", 0, nil, fmt.Errorf("%w: need %s, %s and %s", ErrUnsigned, HeaderInstance, HeaderSeq, HeaderSignature)
	}
	if len(instance) > 64 || strings.ContainsAny(instance, "\n\r") {
		return "", 0, nil, errors.New("malformed instance header")
	}
	seq, err = strconv.ParseInt(seqs, 10, 64)
	if err != nil || seq <= 0 {
		return "", 0, nil, fmt.Errorf("malformed %s: %q", HeaderSeq, seqs)
	}
	sig, err = base64.StdEncoding.DecodeString(sigs)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return "", 0, nil, fmt.Errorf("malformed %s", HeaderSignature)
	}
	return instance, seq, sig, nil
}
