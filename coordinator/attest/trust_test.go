package attest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// signer is an identity-document signer as the EC2 simulator's (or a
// region's new AWS certificate) would be.
type signer struct {
	key     *rsa.PrivateKey
	cert    *x509.Certificate
	certPEM []byte
}

func newSigner(t *testing.T, name string) signer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return signer{key: key, cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// signature is IMDS's dynamic/instance-identity/signature form.
func (s signer) signature(t *testing.T, doc []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(doc)
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return []byte(base64.StdEncoding.EncodeToString(sig))
}

// rsa2048 is IMDS's dynamic/instance-identity/rsa2048 form. It carries the
// signer's certificate, which the verifier must ignore.
func (s signer) rsa2048(t *testing.T, doc []byte) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(doc)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(s.cert, s.key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return []byte(base64.StdEncoding.EncodeToString(der))
}

// TestTrustBundleReloadsOnChange: a coordinator's verifier built once from
// a trust bundle file follows the file: a signer added to the file is
// trusted at the next attestation, a signer dropped from it is refused, a
// file that breaks keeps the last good roots (and says so), in both the
// signature and the rsa2048 form; AWS's embedded certificates stay
// trusted throughout unless replaced.
func TestTrustBundleReloadsOnChange(t *testing.T) {
	oldS, newS := newSigner(t, "old signer"), newSigner(t, "new signer")
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	gen := 0
	write := func(data []byte) {
		t.Helper()
		gen++
		if err := os.WriteFile(bundle, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// Distinct modification times, as successive real updates have.
		mod := time.Now().Add(time.Duration(gen) * time.Second)
		if err := os.Chtimes(bundle, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	write(oldS.certPEM)
	trust, err := TrustConfig{Region: "us-east-1", BundleFile: bundle}.Watch()
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Trust: trust, AccountID: "111122223333", Region: "us-east-1"}
	doc := []byte(`{"accountId":"111122223333","region":"us-east-1","instanceId":"i-0abc"}`)
	verifies := func(s signer) map[Format]error {
		out := map[Format]error{}
		_, out[FormatSignature] = v.VerifyFormat(FormatSignature, doc, s.signature(t, doc))
		_, out[FormatRSA2048] = v.VerifyFormat(FormatRSA2048, nil, s.rsa2048(t, doc))
		return out
	}
	expect := func(step string, s signer, trusted bool) {
		t.Helper()
		for f, err := range verifies(s) {
			switch {
			case trusted && err != nil:
				t.Errorf("%s: %s of %s refused: %v", step, f, s.cert.Subject.CommonName, err)
			case !trusted && ReasonOf(err) != ReasonBadSignature:
				t.Errorf("%s: %s of %s = %v, want bad_signature", step, f, s.cert.Subject.CommonName, err)
			}
		}
	}
	expect("start", oldS, true)
	expect("start", newS, false)
	write(append(append([]byte{}, oldS.certPEM...), newS.certPEM...))
	expect("new signer added", oldS, true)
	expect("new signer added", newS, true)
	write(newS.certPEM)
	expect("old signer dropped", oldS, false)
	expect("old signer dropped", newS, true)
	write([]byte("-----BEGIN CERTIFICATE-----\nhalf written"))
	expect("broken bundle", newS, true)
	expect("broken bundle", oldS, false)
	if trust.LastError() == nil {
		t.Error("a broken bundle is not reported by LastError")
	}
	if roots, err := trust.Get(); err != nil || len(roots) != 2+1 {
		t.Errorf("after the reloads %d roots (%v), want AWS's 2 for us-east-1 and the new signer", len(roots), err)
	}
	write(oldS.certPEM)
	expect("repaired bundle", oldS, true)
	expect("repaired bundle", newS, false)
	if trust.LastError() != nil {
		t.Errorf("LastError after a good reload: %v", trust.LastError())
	}

	// A bundle that cannot be read at start is an error at start.
	if _, err := (TrustConfig{Region: "us-east-1", BundleFile: filepath.Join(t.TempDir(), "missing.pem")}).Watch(); err == nil {
		t.Error("a missing bundle file was accepted")
	}
	// Without a bundle file the embedded certificates are all there is.
	aws, err := TrustConfig{Region: "us-east-1"}.Watch()
	if err != nil {
		t.Fatal(err)
	}
	if roots, _ := aws.Get(); len(roots) != 2 {
		t.Errorf("AWS-only trust: %d roots, want 2", len(roots))
	}
}
