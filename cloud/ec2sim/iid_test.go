package ec2sim

import (
	"context"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/dovetail-dev/dovetail/coordinator/attest"
)

func getDynamic(t *testing.T, c *imds.Client, path string) []byte {
	t.Helper()
	out, err := c.GetDynamicData(context.Background(), &imds.GetDynamicDataInput{Path: path})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The identity document served through the SDK's IMDS client verifies
// against the simulator's exported certificate, and only against it; a
// tampered document or another cluster's account/region is refused with
// the reason the coordinator counts.
func TestIMDSIdentityDocumentSignature(t *testing.T) {
	s := startSim(t, Config{Clock: newFakeClock()})
	id := launchOne(t, s, "iid-1", "spot", "m5.large", "")
	c := imdsClient(t, s, id)
	doc := getDynamic(t, c, "instance-identity/document")
	sig := getDynamic(t, c, "instance-identity/signature")

	pemBytes, err := s.IdentityCertificatePEM()
	if err != nil {
		t.Fatal(err)
	}
	roots, err := attest.ParseBundle(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	v := attest.Verifier{Roots: roots, AccountID: "123456789012", Region: s.Region()}
	d, err := v.Verify(doc, sig)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if d.InstanceID != id || d.Region != s.Region() {
		t.Fatalf("document: %+v", d)
	}

	tampered := append([]byte(nil), doc...)
	tampered[len(tampered)-3] ^= 1
	if _, err := v.Verify(tampered, sig); attest.ReasonOf(err) != attest.ReasonBadSignature {
		t.Fatalf("tampered document: %v", err)
	}
	if _, err := v.Verify(doc, nil); attest.ReasonOf(err) != attest.ReasonNoCredentials {
		t.Fatalf("no signature: %v", err)
	}
	other := v
	other.AccountID = "210987654321"
	if _, err := other.Verify(doc, sig); attest.ReasonOf(err) != attest.ReasonOtherAccount {
		t.Fatalf("other account: %v", err)
	}
	other = v
	other.Region = "eu-west-1"
	if _, err := other.Verify(doc, sig); attest.ReasonOf(err) != attest.ReasonOtherRegion {
		t.Fatalf("other region: %v", err)
	}
	// Another simulator's certificate (another signer) does not verify this one's documents.
	s2 := startSim(t, Config{Clock: newFakeClock()})
	pem2, err := s2.IdentityCertificatePEM()
	if err != nil {
		t.Fatal(err)
	}
	roots2, _ := attest.ParseBundle(pem2)
	foreign := attest.Verifier{Roots: roots2, AccountID: v.AccountID, Region: v.Region}
	if _, err := foreign.Verify(doc, sig); attest.ReasonOf(err) != attest.ReasonBadSignature {
		t.Fatalf("foreign signer: %v", err)
	}
}

// The rsa2048 form (PKCS #7 embedding the document) verifies against the
// simulator's certificate, carries exactly the served document, and is
// refused when the PKCS #7 is altered, sent with another document, or
// checked against AWS's real certificates only (production trusts no
// simulator).
func TestIMDSIdentityRSA2048(t *testing.T) {
	s := startSim(t, Config{Clock: newFakeClock()})
	id := launchOne(t, s, "iid-2", "on-demand", "m5.large", "")
	c := imdsClient(t, s, id)
	doc := getDynamic(t, c, "instance-identity/document")
	p7 := getDynamic(t, c, "instance-identity/rsa2048")
	pemBytes, err := s.IdentityCertificatePEM()
	if err != nil {
		t.Fatal(err)
	}
	roots, err := attest.ParseBundle(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	v := attest.Verifier{Roots: roots, AccountID: "123456789012", Region: s.Region()}
	d, err := v.VerifyFormat(attest.FormatRSA2048, doc, p7)
	if err != nil {
		t.Fatalf("verify rsa2048: %v", err)
	}
	if d.InstanceID != id {
		t.Fatalf("document: %+v", d)
	}
	if d2, err := v.VerifyFormat(attest.FormatRSA2048, nil, p7); err != nil || d2.InstanceID != id {
		t.Fatalf("rsa2048 without the plain document: %+v %v", d2, err)
	}
	other := getDynamic(t, imdsClient(t, s, launchOne(t, s, "iid-3", "on-demand", "m5.large", "")), "instance-identity/document")
	if _, err := v.VerifyFormat(attest.FormatRSA2048, other, p7); attest.ReasonOf(err) != attest.ReasonBadSignature {
		t.Fatalf("rsa2048 with another document: %v", err)
	}
	bad := []byte(string(p7[:len(p7)-8]) + "AAAAAAA=")
	if _, err := v.VerifyFormat(attest.FormatRSA2048, nil, bad); attest.ReasonOf(err) != attest.ReasonBadSignature {
		t.Fatalf("altered rsa2048: %v", err)
	}
	awsOnly, err := attest.TrustConfig{Region: s.Region()}.Roots()
	if err != nil {
		t.Fatal(err)
	}
	prod := attest.Verifier{Roots: awsOnly, AccountID: v.AccountID, Region: v.Region}
	if _, err := prod.VerifyFormat(attest.FormatRSA2048, doc, p7); attest.ReasonOf(err) != attest.ReasonBadSignature {
		t.Fatalf("simulator document accepted by AWS-only roots: %v", err)
	}
	sig := getDynamic(t, c, "instance-identity/signature")
	if _, err := prod.VerifyFormat(attest.FormatSignature, doc, sig); attest.ReasonOf(err) != attest.ReasonBadSignature {
		t.Fatalf("simulator signature accepted by AWS-only roots: %v", err)
	}
	if _, err := v.VerifyFormat(attest.FormatPKCS7, doc, p7); attest.ReasonOf(err) != attest.ReasonBadSignature {
		t.Fatalf("pkcs7 (DSA) form: %v", err)
	}
}
