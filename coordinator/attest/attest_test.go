package attest

import (
	"crypto/rsa"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Every embedded AWS certificate parses, carries an RSA key, is valid today
// and is filed under a region; the common regions have both the RSA and the
// RSA-2048 certificate.
func TestEmbeddedAWSCertificates(t *testing.T) {
	regions := AWSRegions()
	if len(regions) < 30 {
		t.Fatalf("only %d regions embedded: %v", len(regions), regions)
	}
	now := time.Now()
	for _, r := range regions {
		certs, err := AWSCertificates(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			if _, ok := c.PublicKey.(*rsa.PublicKey); !ok {
				t.Errorf("%s: %T key", r, c.PublicKey)
			}
			if now.After(c.NotAfter) {
				t.Errorf("%s: certificate expired %s", r, c.NotAfter)
			}
		}
	}
	for _, r := range []string{"us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1"} {
		certs, err := AWSCertificates(r)
		if err != nil || len(certs) != 2 {
			t.Fatalf("%s: %d certificates, %v", r, len(certs), err)
		}
		sizes := map[int]bool{}
		for _, c := range certs {
			sizes[c.PublicKey.(*rsa.PublicKey).N.BitLen()] = true
		}
		if !sizes[2048] {
			t.Fatalf("%s: no RSA-2048 certificate: %v", r, sizes)
		}
	}
	if _, err := AWSCertificates("xx-nowhere-1"); err == nil {
		t.Fatal("unknown region has certificates")
	}
}

func TestTrustConfigBundle(t *testing.T) {
	aws, err := TrustConfig{Region: "us-east-1"}.Roots()
	if err != nil || len(aws) != 2 {
		t.Fatalf("aws roots: %d %v", len(aws), err)
	}
	b, err := awsCerts.ReadFile("awscerts/rsa2048.pem")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	added, err := TrustConfig{Region: "us-east-1", BundleFile: f}.Roots()
	if err != nil || len(added) != 2+len(AWSRegions()) {
		t.Fatalf("added: %d %v", len(added), err)
	}
	only, err := TrustConfig{Region: "us-east-1", BundleFile: f, ReplaceAWS: true}.Roots()
	if err != nil || len(only) != len(added)-2 {
		t.Fatalf("replaced: %d %v", len(only), err)
	}
	if _, err := (TrustConfig{Region: "us-east-1", ReplaceAWS: true}).Roots(); err == nil {
		t.Fatal("replace without a bundle accepted")
	}
	if _, err := (TrustConfig{Region: "xx-nowhere-1"}).Roots(); err == nil {
		t.Fatal("region without certificates and no bundle accepted")
	}
}
