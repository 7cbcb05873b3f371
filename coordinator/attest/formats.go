package attest

import (
	"bytes"
	"crypto/x509"
	"embed"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/smallstep/pkcs7"

	"github.com/dovetail-dev/dovetail/tlsid"
)

// Format names which IMDS signature accompanies a document.
type Format string

const (
	// FormatSignature is dynamic/instance-identity/signature: base64 RSA
	// PKCS #1 v1.5 over SHA-256 of the document, verified with the region's
	// "RSA" certificate.
	FormatSignature Format = "signature"
	// FormatRSA2048 is dynamic/instance-identity/rsa2048: a base64 PKCS #7
	// SignedData that embeds the document, signed RSA-2048/SHA-256, verified
	// with the region's "RSA-2048" certificate. The default: the strongest
	// form AWS serves.
	FormatRSA2048 Format = "rsa2048"
	// FormatPKCS7 is dynamic/instance-identity/pkcs7: PKCS #7 signed with
	// DSA over SHA-1. Refused: Go's crypto/x509 has not verified DSA since
	// Go 1.16, and SHA-1 signatures are forgeable in principle.
	FormatPKCS7 Format = "pkcs7"
)

// VerifyFormat checks a document and its signature in the given format. For
// FormatRSA2048 the signed document is the one inside the PKCS #7; doc may
// be empty, and when given it must be exactly that document.
func (v *Verifier) VerifyFormat(format Format, doc, signature []byte) (Document, error) {
	switch format {
	case FormatSignature, "":
		return v.Verify(doc, signature)
	case FormatRSA2048:
		content, err := v.verifyPKCS7(doc, signature)
		if err != nil {
			return Document{}, err
		}
		return v.check(content)
	case FormatPKCS7:
		return Document{}, refuse(ReasonBadSignature, "pkcs7 (DSA/SHA-1) signatures are not accepted; send rsa2048 or signature")
	}
	return Document{}, refuse(ReasonMalformed, "unknown signature format %q", format)
}

// maxPKCS7Bytes bounds the base64 PKCS #7 handed to the ASN.1 parser (a
// real one is ~1.8 KiB).
const maxPKCS7Bytes = 8 << 10

func (v *Verifier) verifyPKCS7(doc, signature []byte) ([]byte, error) {
	if len(signature) == 0 {
		return nil, refuse(ReasonNoCredentials, "rsa2048 signature missing")
	}
	if len(signature) > maxPKCS7Bytes {
		return nil, refuse(ReasonMalformed, "rsa2048 signature is %d bytes, limit %d", len(signature), maxPKCS7Bytes)
	}
	der, err := decodePKCS7(signature)
	if err != nil {
		return nil, refuse(ReasonBadSignature, "rsa2048 signature: %w", err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, refuse(ReasonBadSignature, "rsa2048 signature is not PKCS #7: %w", err)
	}
	if len(p7.Content) == 0 {
		// Detached form: the signature covers the document sent beside it.
		p7.Content = doc
	} else if len(doc) > 0 && !bytes.Equal(bytes.TrimSpace(doc), bytes.TrimSpace(p7.Content)) {
		return nil, refuse(ReasonBadSignature, "document differs from the one the rsa2048 signature covers")
	}
	if len(p7.Content) == 0 {
		return nil, refuse(ReasonNoCredentials, "identity document missing")
	}
	if len(p7.Content) > MaxDocumentBytes {
		return nil, refuse(ReasonMalformed, "identity document is %d bytes, limit %d", len(p7.Content), MaxDocumentBytes)
	}
	// AWS's PKCS #7 carries no certificate: the signer is named by issuer
	// and serial, and only our roots can answer to that name. A certificate
	// inside the message is never trusted.
	roots, err := v.roots()
	if err != nil {
		return nil, err
	}
	p7.Certificates = roots
	if err := p7.Verify(); err != nil {
		return nil, refuse(ReasonBadSignature, "rsa2048 signature verifies against none of %d trusted certificates: %w", len(roots), err)
	}
	return p7.Content, nil
}

// decodePKCS7 accepts IMDS's bare base64 and a PEM-armoured form.
func decodePKCS7(b []byte) ([]byte, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		return blk.Bytes, nil
	}
	s := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, string(b))
	out, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	return out, nil
}

//go:embed awscerts/*.pem
var awsCerts embed.FS

// AWSCertificates are AWS's published identity-document certificates for a
// region: the "RSA" one (FormatSignature) and the "RSA-2048" one
// (FormatRSA2048). See awscerts/README.md for where they come from.
func AWSCertificates(region string) ([]*x509.Certificate, error) {
	all, err := awsCertificates()
	if err != nil {
		return nil, err
	}
	certs := all[region]
	if len(certs) == 0 {
		return nil, fmt.Errorf("no embedded AWS identity certificate for region %q (pass a trust bundle file)", region)
	}
	return certs, nil
}

// AWSRegions lists the regions with embedded certificates.
func AWSRegions() []string {
	all, _ := awsCertificates()
	out := make([]string, 0, len(all))
	for r := range all {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func awsCertificates() (map[string][]*x509.Certificate, error) {
	out := map[string][]*x509.Certificate{}
	for _, name := range []string{"awscerts/rsa1024.pem", "awscerts/rsa2048.pem"} {
		b, err := awsCerts.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("embedded %s: %w", name, err)
		}
		// Each certificate is preceded by a "region: <code> (...)" line.
		region := ""
		for len(b) > 0 {
			line, rest, _ := bytes.Cut(b, []byte("\n"))
			if r, ok := strings.CutPrefix(string(line), "region: "); ok {
				region, _, _ = strings.Cut(r, " ")
				b = rest
				continue
			}
			blk, after := pem.Decode(b)
			if blk == nil {
				break
			}
			b = after
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("embedded %s, region %s: %w", name, region, err)
			}
			if region == "" {
				return nil, errors.New("embedded certificate without a region line in " + name)
			}
			out[region] = append(out[region], c)
		}
	}
	return out, nil
}

// TrustConfig says which certificates may sign identity documents.
type TrustConfig struct {
	// Region selects AWS's embedded certificates.
	Region string
	// BundleFile, when set, is a PEM file whose certificates are added to
	// AWS's (or replace them with ReplaceAWS). `make dev` and the tests pass
	// the EC2 simulator's certificate this way.
	BundleFile string
	ReplaceAWS bool
}

// Watch resolves a TrustConfig to certificates now and again whenever the
// bundle file changes, so an operator adding or replacing a signer's
// certificate reaches a running coordinator without a restart. A changed
// file that does not resolve (half written, no certificate) keeps the last
// good roots: refusing every attestation because of a typo in the bundle
// would stop every new node from reporting. Without a bundle file the
// embedded certificates are resolved once.
func (c TrustConfig) Watch() (*tlsid.Watched[[]*x509.Certificate], error) {
	var paths []string
	if c.BundleFile != "" {
		paths = append(paths, c.BundleFile)
	}
	return tlsid.Watch(c.Roots, paths...)
}

// Roots resolves a TrustConfig to certificates.
func (c TrustConfig) Roots() ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	if !c.ReplaceAWS {
		aws, err := AWSCertificates(c.Region)
		if err != nil && c.BundleFile == "" {
			return nil, err
		}
		roots = append(roots, aws...)
	}
	if c.BundleFile != "" {
		extra, err := LoadBundle(c.BundleFile)
		if err != nil {
			return nil, err
		}
		roots = append(roots, extra...)
	}
	if len(roots) == 0 {
		return nil, errors.New("no trusted identity certificate: replacing AWS's needs a trust bundle file")
	}
	return roots, nil
}
