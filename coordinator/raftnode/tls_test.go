package raftnode

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/internal/freeport"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{name}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestMutualTLSCluster forms a cluster over mutual TLS and shows that a
// replica with a certificate from another CA cannot take part.
func TestMutualTLSCluster(t *testing.T) {
	ca := newCA(t, "dovetail-raft-ca")
	rogueCA := newCA(t, "rogue")
	addrs := freeport.Addrs(t, 3)
	var peers []Peer
	for i, a := range addrs {
		peers = append(peers, Peer{ID: fmt.Sprintf("t-%d", i), RaftAddr: a})
	}
	base := t.TempDir()
	nodes := map[string]*Node{}
	t.Cleanup(func() {
		for _, n := range nodes {
			_ = n.Kill()
		}
	})
	start := func(p Peer, issuer *testCA, trust *x509.CertPool) {
		cfg := fastConfig(t, p.ID, filepath.Join(base, p.ID), peers)
		var err error
		cfg.ServerTLS, cfg.ClientTLS, err = MutualTLS(trust, issuer.issue(t, "raft.dovetail.internal"), "raft.dovetail.internal", peers)
		if err != nil {
			t.Fatal(err)
		}
		n, err := Start(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for range n.LeaderNotify() {
			}
		}()
		nodes[p.ID] = n
	}
	// Two honest replicas form a quorum; the third holds a rogue certificate.
	start(peers[0], ca, ca.pool)
	start(peers[1], ca, ca.pool)
	start(peers[2], rogueCA, rogueCA.pool)
	var leader *Node
	deadline := time.Now().Add(5 * time.Second)
	for leader == nil && time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.IsLeader() {
				leader = n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if leader == nil || leader.ID() == "t-2" {
		t.Fatalf("leader = %v", leader)
	}
	if err := leader.Apply(context.Background(), &fsm.RolloutSet{Rollout: fsm.Rollout{NodePool: "p", TargetAMI: "ami-1"}}); err != nil {
		t.Fatal(err)
	}
	idx := leader.FSM().AppliedIndex()
	for _, id := range []string{"t-0", "t-1"} {
		waitIndex(t, nodes[id], idx)
	}
	time.Sleep(300 * time.Millisecond)
	if got := nodes["t-2"].State().Rollouts["p"]; got != nil {
		t.Fatal("replica with a rogue certificate received replicated state")
	}
}

// issueNamed is issue without the loopback IP SAN: a certificate of the
// right CA that names only dns.
func (ca *testCA) issueNamed(t *testing.T, dns string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: dns},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{dns}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestMutualTLSChecksPeerName: a certificate the CA signed is not enough to
// talk Raft to a replica; it must name the shared peer name or a configured
// peer's host. A node's certificate from the same CA is refused.
func TestMutualTLSChecksPeerName(t *testing.T) {
	ca := newCA(t, "dovetail-raft-ca")
	peers := []Peer{{ID: "c-0", RaftAddr: "coordinator-0.peers.local:7000"}, {ID: "c-1", RaftAddr: "coordinator-1.peers.local:7000"}}
	server, _, err := MutualTLS(ca.pool, ca.issueNamed(t, "coordinator-0.peers.local"), "", peers)
	if err != nil {
		t.Fatal(err)
	}
	addr := echoTLS(t, server)
	talk := func(cert tls.Certificate) error {
		conn, err := tls.Dial("tcp", addr, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.pool,
			ServerName: "coordinator-0.peers.local", Certificates: []tls.Certificate{cert}})
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err = conn.Read(buf)
		return err
	}
	if err := talk(ca.issueNamed(t, "coordinator-1.peers.local")); err != nil {
		t.Fatalf("configured peer refused: %v", err)
	}
	if err := talk(ca.issueNamed(t, "ip-10-0-3-7.node.local")); err == nil {
		t.Fatal("a certificate of the same CA naming no peer was accepted")
	}
}

// echoTLS serves cfg on a loopback port until the test ends, echoing the
// first 4 bytes of each connection (enough to finish a handshake and prove
// the channel works); it returns the address.
func echoTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4)
				if _, err := c.Read(buf); err == nil {
					_, _ = c.Write(buf)
				}
			}()
		}
	}()
	return ln.Addr().String()
}
