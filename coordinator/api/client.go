package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client is a small client of the API (used by the CLI and tests).
type Client struct {
	// Base is the replica's URL, e.g. http://127.0.0.1:8080.
	Base string
	HTTP *http.Client
}

// NewClient returns a client for a replica address ("host:port" or a URL).
func NewClient(server string) *Client {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	return &Client{Base: strings.TrimRight(server, "/"), HTTP: &http.Client{Timeout: 15 * time.Second}}
}

// Get fetches path into out.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("GET %s: %s: %s", path, resp.Status, e.Error)
		}
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decode: %w", path, err)
	}
	return nil
}

// Status fetches /v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.Get(ctx, PathStatus, &s)
}

// Nodes fetches /v1/nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var n []Node
	return n, c.Get(ctx, PathNodes, &n)
}

// Launches fetches /v1/launches (open only when open is true).
func (c *Client) Launches(ctx context.Context, open bool) (*Launches, error) {
	p := PathLaunches
	if open {
		p += "?open=1"
	}
	var l Launches
	return &l, c.Get(ctx, p, &l)
}

// Rollouts fetches /v1/rollouts.
func (c *Client) Rollouts(ctx context.Context) (*Rollouts, error) {
	var r Rollouts
	return &r, c.Get(ctx, PathRollouts, &r)
}

// HTTPError is a non-2xx answer to a write, with the server's error body,
// so callers can tell 404 (unknown) and 409 (wrong state) from failures.
type HTTPError struct {
	Method, Path string
	StatusCode   int
	Status       string
	Body         Error
}

func (e *HTTPError) Error() string {
	if e.Body.Error != "" {
		return fmt.Sprintf("%s %s: %s: %s", e.Method, e.Path, e.Status, e.Body.Error)
	}
	return fmt.Sprintf("%s %s: %s", e.Method, e.Path, e.Status)
}

// Post sends a body-less POST to path and decodes the answer into out
// (skipped when out is nil). A non-2xx answer is an *HTTPError.
func (c *Client) Post(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		he := &HTTPError{Method: http.MethodPost, Path: path, StatusCode: resp.StatusCode, Status: resp.Status}
		_ = json.Unmarshal(body, &he.Body)
		return he
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("POST %s: decode: %w", path, err)
	}
	return nil
}

// ResumeRollout resumes pool's halted rollout (POST
// /v1/rollouts/{nodepool}/resume on any replica).
func (c *Client) ResumeRollout(ctx context.Context, pool string) (*RolloutResumed, error) {
	var r RolloutResumed
	if err := c.Post(ctx, RolloutResumePath(url.PathEscape(pool)), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// BearerTransport sends token as the bearer token of every request through
// next: the people endpoints authenticate callers with TokenReview.
func BearerTransport(token string, next http.RoundTripper) http.RoundTripper {
	return bearer{token: token, next: next}
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
