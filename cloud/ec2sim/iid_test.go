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
