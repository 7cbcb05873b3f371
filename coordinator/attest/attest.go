// Package attest verifies that a report comes from the EC2 instance it
// claims to be, from that instance's identity document and AWS's signature
// over it, as SPIFFE/SPIRE's aws_iid node attestor does: the signature is
// checked against a region's public certificate, then the document's account
// and region against the cluster's. Whether the instance belongs to a
// NodeClaim of this cluster is the caller's check (state lives in Raft).
package attest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Reason names why an attestation was refused; it is the metric label and
// the log field, so values are stable.
type Reason string

const (
	ReasonNoCredentials Reason = "no_credentials"
	ReasonBadSignature  Reason = "bad_signature"
	ReasonMalformed     Reason = "malformed_document"
	ReasonOtherAccount  Reason = "other_account"
	ReasonOtherRegion   Reason = "other_region"
)

// Error is a refused attestation.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func refuse(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}

// ReasonOf is the refusal reason of err, or "" when err is not a refusal.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Document is the part of the instance identity document the coordinator
// relies on.
type Document struct {
	AccountID        string    `json:"accountId"`
	Region           string    `json:"region"`
	InstanceID       string    `json:"instanceId"`
	InstanceType     string    `json:"instanceType"`
	AvailabilityZone string    `json:"availabilityZone"`
	ImageID          string    `json:"imageId"`
	PrivateIP        string    `json:"privateIp"`
	PendingTime      time.Time `json:"pendingTime"`
}

// Verifier checks identity documents of one cluster's account and region.
type Verifier struct {
	// Roots are the certificates whose RSA keys may sign documents: AWS's
	// per-region certificates in production, plus the EC2 simulator's in
	// tests and `make dev`.
	Roots []*x509.Certificate
	// Trust, when set, is asked for the roots at every verification instead
	// of Roots: TrustConfig.Watch, which re-reads the trust bundle file when
	// it changes.
	Trust     RootSource
	AccountID string
	Region    string
}

// RootSource gives the certificates trusted at this moment.
type RootSource interface {
	Get() ([]*x509.Certificate, error)
}

// roots are the certificates to verify against now. An error is not a
// refusal: the coordinator has no trust to judge with.
func (v *Verifier) roots() ([]*x509.Certificate, error) {
	if v.Trust == nil {
		return v.Roots, nil
	}
	roots, err := v.Trust.Get()
	if err != nil {
		return nil, fmt.Errorf("identity trust bundle: %w", err)
	}
	return roots, nil
}

// MaxDocumentBytes bounds what is parsed; a real document is ~500 bytes.
const MaxDocumentBytes = 4 << 10

// Verify checks the base64 RSA-SHA256 signature (IMDS's
// dynamic/instance-identity/signature) over doc, then the account and region.
// Only a document whose signature verifies is parsed, so nothing an attacker
// writes is interpreted before it is proven to come from EC2.
func (v *Verifier) Verify(doc, signature []byte) (Document, error) {
	if len(doc) == 0 || len(signature) == 0 {
		return Document{}, refuse(ReasonNoCredentials, "identity document or signature missing")
	}
	if len(doc) > MaxDocumentBytes {
		return Document{}, refuse(ReasonMalformed, "identity document is %d bytes, limit %d", len(doc), MaxDocumentBytes)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(signature)))
	if err != nil {
		return Document{}, refuse(ReasonBadSignature, "signature is not base64: %w", err)
	}
	roots, err := v.roots()
	if err != nil {
		return Document{}, err
	}
	sum := sha256.Sum256(doc)
	verified := false
	for _, c := range roots {
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			continue
		}
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return Document{}, refuse(ReasonBadSignature, "signature verifies against none of %d trusted certificates", len(roots))
	}
	return v.check(doc)
}

// check parses a document whose signature verified and compares its
// account and region with the cluster's.
func (v *Verifier) check(doc []byte) (Document, error) {
	var d Document
	if err := json.Unmarshal(doc, &d); err != nil {
		return Document{}, refuse(ReasonMalformed, "identity document: %w", err)
	}
	if d.InstanceID == "" {
		return Document{}, refuse(ReasonMalformed, "identity document has no instanceId")
	}
	if d.AccountID != v.AccountID {
		return Document{}, refuse(ReasonOtherAccount, "instance %s is in account %q, cluster is in %q", d.InstanceID, d.AccountID, v.AccountID)
	}
	if d.Region != v.Region {
		return Document{}, refuse(ReasonOtherRegion, "instance %s is in region %q, cluster is in %q", d.InstanceID, d.Region, v.Region)
	}
	return d, nil
}

// ParseBundle reads PEM certificates (a trust bundle file's content).
func ParseBundle(pemBytes []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for len(pemBytes) > 0 {
		var b *pem.Block
		b, pemBytes = pem.Decode(pemBytes)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trust bundle certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("trust bundle holds no PEM certificate")
	}
	return out, nil
}

// LoadBundle reads a trust bundle file.
func LoadBundle(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read trust bundle: %w", err)
	}
	certs, err := ParseBundle(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}
