package ec2sim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/smallstep/pkcs7"
)

// iidSigner is the simulator's stand-in for AWS's per-region identity
// document signing key. AWS signs the base64 `signature` with an RSA key
// whose certificate it publishes per region; the simulator generates its own
// key and self-signed certificate at start so that tests and `make dev` can
// add exactly that certificate as an extra trust anchor. Production trusts
// only AWS's certificates, so a simulator signature is worthless there.
type iidSigner struct {
	once    sync.Once
	key     *rsa.PrivateKey
	cert    *x509.Certificate
	certPEM []byte
	err     error
}

func (g *iidSigner) init(region string) error {
	g.once.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			g.err = fmt.Errorf("generate identity signing key: %w", err)
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:      pkix.Name{Organization: []string{"ec2sim"}, CommonName: "ec2sim instance identity " + region},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			g.err = fmt.Errorf("self-sign identity certificate: %w", err)
			return
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			g.err = fmt.Errorf("parse identity certificate: %w", err)
			return
		}
		g.key, g.cert = key, cert
		g.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	})
	return g.err
}

// sign returns the base64 RSA-SHA256 (PKCS #1 v1.5) signature of doc, the
// form IMDS serves at dynamic/instance-identity/signature.
func (g *iidSigner) sign(region string, doc []byte) ([]byte, error) {
	if err := g.init(region); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(doc)
	sig, err := rsa.SignPKCS1v15(rand.Reader, g.key, crypto.SHA256, sum[:])
	if err != nil {
		return nil, fmt.Errorf("sign identity document: %w", err)
	}
	return []byte(base64.StdEncoding.EncodeToString(sig)), nil
}

// signRSA2048 returns the form IMDS serves at
// dynamic/instance-identity/rsa2048: base64 of a PKCS #7 SignedData that
// embeds doc, signed RSA/SHA-256. Like AWS's, it is verified against the
// published certificate, not one carried inside.
func (g *iidSigner) signRSA2048(region string, doc []byte) ([]byte, error) {
	if err := g.init(region); err != nil {
		return nil, err
	}
	sd, err := pkcs7.NewSignedData(doc)
	if err != nil {
		return nil, fmt.Errorf("pkcs7 identity document: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(g.cert, g.key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("pkcs7 sign identity document: %w", err)
	}
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("pkcs7 identity document: %w", err)
	}
	return []byte(base64.StdEncoding.EncodeToString(der)), nil
}

// IdentityCertificatePEM is the certificate that verifies this simulator's
// instance identity signatures (give it to the coordinator's trust bundle).
func (s *Sim) IdentityCertificatePEM() ([]byte, error) {
	if err := s.iid.init(s.cfg.Region); err != nil {
		return nil, err
	}
	return append([]byte(nil), s.iid.certPEM...), nil
}
