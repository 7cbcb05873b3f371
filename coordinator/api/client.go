package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
