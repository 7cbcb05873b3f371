// Package nodekey is the agent's side of node attestation: an Ed25519 key
// kept in the state directory, bound once to this EC2 instance by sending
// the coordinator the instance identity document and AWS's signature
// (trust on first use), then used to sign every report. Signing is a local
// Ed25519 operation, so the spot-notice → report path never waits for IMDS
// or an extra round trip; attestation happens at start and again only when
// the coordinator answers 401.
package nodekey

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dovetail-dev/dovetail/daemon/reporter"
	"github.com/dovetail-dev/dovetail/report"
)

// Evidence returns the identity document and its signature in format.
type Evidence func(ctx context.Context, format string) (doc, sig []byte, err error)

// Config configures a Signer.
type Config struct {
	// KeyFile keeps the private key (PEM PKCS #8, mode 0600). Empty keeps
	// a key in memory only (it then changes at every start, and a restarted
	// agent needs an operator's reset: only for tests).
	KeyFile string
	// Format is the IMDS signature form sent (default "rsa2048").
	Format   string
	Evidence Evidence
	// NodeName is this agent's Kubernetes node (known after start).
	NodeName func() string
	// HTTPClient is used when Attest is given none.
	HTTPClient *http.Client
	Now        func() time.Time
	Logger     *slog.Logger
}

// ErrNotRequired is Attest's answer when the coordinator has no attestation
// endpoint: it accepts unsigned reports, and signing them is harmless.
var ErrNotRequired = reporter.ErrNotRequired

// Signer holds the key and the attestation state.
type Signer struct {
	cfg Config
	key ed25519.PrivateKey
	log *slog.Logger
	// attesting makes attestations one at a time: the reporter's start-up
	// retry and a report's delivery may both find the key unattested, and
	// the second must see the first's result rather than attest again.
	attesting sync.Mutex
	mu        sync.Mutex
	inst      string // instance ID the coordinator bound the key to
	ok        bool   // attested (until a 401)
	seq       int64
}

// New loads the key from KeyFile, or generates and stores one.
func New(cfg Config) (*Signer, error) {
	if cfg.Format == "" {
		cfg.Format = "rsa2048"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NodeName == nil {
		cfg.NodeName = func() string { return "" }
	}
	if cfg.Evidence == nil {
		return nil, errors.New("nodekey: no identity evidence source")
	}
	key, err := loadOrCreate(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	return &Signer{cfg: cfg, key: key, log: cfg.Logger.With("component", "nodekey")}, nil
}

func loadOrCreate(path string) (ed25519.PrivateKey, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		if err == nil {
			blk, _ := pem.Decode(b)
			if blk == nil || blk.Type != "PRIVATE KEY" || len(blk.Bytes) != ed25519.SeedSize {
				return nil, fmt.Errorf("nodekey: %s is not a dovetail node key; remove it (and have the instance's binding reset) to make a new one", path)
			}
			return ed25519.NewKeyFromSeed(blk.Bytes), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("nodekey: read %s: %w", path, err)
		}
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("nodekey: generate: %w", err)
	}
	if path == "" {
		return key, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("nodekey: %w", err)
	}
	// The seed is the key. Written once, readable by the agent only.
	b := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key.Seed()})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return nil, fmt.Errorf("nodekey: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("nodekey: %w", err)
	}
	return key, nil
}

// PublicKey is the key the coordinator binds.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Attested reports whether the coordinator accepted the key (and has not
// answered 401 since).
func (s *Signer) Attested() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok
}

// Invalidate makes the next delivery attest first (the coordinator
// answered 401: binding reset, state lost, or the instance not yet known).
func (s *Signer) Invalidate() {
	s.mu.Lock()
	s.ok = false
	s.mu.Unlock()
}

// InstanceID is the instance the key is bound to ("" before attestation).
func (s *Signer) InstanceID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inst
}

// nextSeq is the signing time in Unix nanoseconds, strictly increasing.
func (s *Signer) nextSeq() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq = max(s.cfg.Now().UnixNano(), s.seq+1)
	return s.seq
}

// Sign adds the signature headers for body to req.
func (s *Signer) Sign(req *http.Request, body []byte) {
	report.Sign(req, s.key, s.InstanceID(), s.nextSeq(), body)
}

// Attest sends the identity document, AWS's signature and the public key
// to the coordinator at base (scheme://host:port), signed with the key.
func (s *Signer) Attest(ctx context.Context, client *http.Client, base string) error {
	s.attesting.Lock()
	defer s.attesting.Unlock()
	if s.Attested() {
		return nil // another caller attested while this one waited
	}
	if client == nil {
		client = s.cfg.HTTPClient
	}
	node := s.cfg.NodeName()
	if node == "" {
		return errors.New("nodekey: node name not known yet")
	}
	doc, sig, err := s.cfg.Evidence(ctx, s.cfg.Format)
	if err != nil {
		return fmt.Errorf("nodekey: identity document: %w", err)
	}
	var d struct {
		InstanceID string `json:"instanceId"`
	}
	if err := json.Unmarshal(doc, &d); err != nil || d.InstanceID == "" {
		return fmt.Errorf("nodekey: identity document without instanceId: %v", err)
	}
	body, err := json.Marshal(report.Attestation{Format: s.cfg.Format, Document: string(doc), Signature: strings.TrimSpace(string(sig)),
		PublicKey: base64.StdEncoding.EncodeToString(s.PublicKey()), NodeName: node})
	if err != nil {
		return fmt.Errorf("nodekey: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+report.AttestPath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("nodekey: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	report.Sign(req, s.key, d.InstanceID, s.nextSeq(), body)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("nodekey: attest: %w", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		// A coordinator without attestation (older, or started without
		// --attest-account-id) has no such route: it takes unsigned reports.
		s.log.Warn("coordinator does not verify node identity; reports go unsigned", "coordinator", base)
		return ErrNotRequired
	}
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("nodekey: attest at %s: HTTP %d: %s", base, resp.StatusCode, strings.TrimSpace(string(msg)))
		if strings.Contains(string(msg), "replayed_document") {
			s.log.Error("the coordinator holds another key for this instance; an operator must reset it (dovetail attestation reset "+d.InstanceID+")", "err", err)
		}
		return err
	}
	s.mu.Lock()
	s.inst, s.ok = d.InstanceID, true
	s.mu.Unlock()
	s.log.Info("attested to the coordinator", "instance", d.InstanceID, "node", node, "format", s.cfg.Format)
	return nil
}
