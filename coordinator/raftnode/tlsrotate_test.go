package raftnode

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeFile writes data with a modification time of its own, so the reload
// sees a change even within the file system's timestamp granularity.
func writeFile(t *testing.T, path string, data []byte, gen int) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mod := time.Now().Add(time.Duration(gen) * time.Second)
	if err := os.Chtimes(path, mod, mod); err != nil {
		t.Fatal(err)
	}
}

func bundlePEM(cas ...*testCA) []byte {
	var b []byte
	for _, ca := range cas {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	}
	return b
}

func writePair(t *testing.T, dir string, c tls.Certificate, gen int) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), gen)
	writeFile(t, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), gen)
}

// TestRaftTLSFollowsCABundleRotation rotates the Raft CA the way an
// operator does (add the new CA to the bundle, move the certificates to it)
// on files two running replicas read, without rebuilding their TLS configs:
// each step takes effect at the next handshake, on the accepting side
// (client certificates) and on the dialling side (server certificates).
func TestRaftTLSFollowsCABundleRotation(t *testing.T) {
	oldCA, newCA := newCA(t, "raft-ca-old"), newCA(t, "raft-ca-new")
	const name = "dovetail-coordinator-raft"
	dirA, dirB := t.TempDir(), t.TempDir()
	filesA := TLSFiles{CAFile: filepath.Join(dirA, "ca.crt"), CertFile: filepath.Join(dirA, "tls.crt"), KeyFile: filepath.Join(dirA, "tls.key"), ServerName: name}
	filesB := TLSFiles{CAFile: filepath.Join(dirB, "ca.crt"), CertFile: filepath.Join(dirB, "tls.crt"), KeyFile: filepath.Join(dirB, "tls.key"), ServerName: name}
	// A still has the old CA and certificate; B already got a new-CA
	// certificate but trusts only the old CA.
	writeFile(t, filesA.CAFile, bundlePEM(oldCA), 1)
	writePair(t, dirA, oldCA.issueNamed(t, name), 1)
	writeFile(t, filesB.CAFile, bundlePEM(oldCA), 1)
	writePair(t, dirB, newCA.issueNamed(t, name), 1)

	serverA, _, err := filesA.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, clientB, err := filesB.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := echoTLS(t, serverA)
	talk := func() error {
		conn, err := tls.Dial("tcp", addr, clientB)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		_, err = conn.Read(make([]byte, 4))
		return err
	}

	if err := talk(); err == nil {
		t.Fatal("A accepted B's certificate of a CA A does not trust yet")
	}
	// Step 1: A's bundle gains the new CA.
	writeFile(t, filesA.CAFile, bundlePEM(oldCA, newCA), 2)
	if err := talk(); err != nil {
		t.Fatalf("after A's bundle gained the new CA: %v", err)
	}
	// Step 2: A moves to a new-CA certificate; B does not trust it yet.
	writePair(t, dirA, newCA.issueNamed(t, name), 3)
	if err := talk(); err == nil {
		t.Fatal("B accepted A's certificate of a CA B does not trust yet")
	}
	// Step 3: both bundles drop the old CA.
	writeFile(t, filesB.CAFile, bundlePEM(newCA), 4)
	writeFile(t, filesA.CAFile, bundlePEM(newCA), 4)
	if err := talk(); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
	// A half-written bundle keeps the last good one.
	writeFile(t, filesA.CAFile, []byte("-----BEGIN CERT"), 5)
	if err := talk(); err != nil {
		t.Fatalf("a broken bundle file dropped the last good CA: %v", err)
	}
	// And a peer of the old CA is now refused.
	writePair(t, dirB, oldCA.issueNamed(t, name), 6)
	if err := talk(); err == nil {
		t.Fatal("A accepted a certificate of the dropped CA")
	}
}
