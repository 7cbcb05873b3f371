package imds

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// client is a minimal IMDSv2 client: one kept-alive connection per poll
// loop, one session token shared by all of them and reused until shortly
// before it expires (or IMDS says 401), and one GET per read. It replaced
// aws-sdk-go-v2's feature/ec2/imds, whose middleware stack cost about 200
// allocations per request; at six requests a second that, and not the
// requests, was most of the agent's idle CPU.
//
// It never reads without a token: a failed token request is an error, not
// an IMDSv1 read (IMDSv2-only instances refuse those, and a proxy that
// strips the PUT must not downgrade us).
type client struct {
	base     string // http://169.254.169.254, no trailing slash
	http     *http.Client
	tokenTTL time.Duration
	now      func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

const (
	defaultEndpoint = "http://169.254.169.254"
	tokenPath       = "/latest/api/token"
	metadataPrefix  = "/latest/meta-data/"
	dynamicPrefix   = "/latest/dynamic/"
	ttlHeader       = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	tokenHeader     = "X-Aws-Ec2-Metadata-Token"
	// defaultTokenTTL is the longest IMDS grants (6 h); the token is
	// renewed a minute before it runs out.
	defaultTokenTTL = 6 * time.Hour
	tokenRenewEarly = time.Minute
)

func newClient(endpoint string, now func() time.Time) *client {
	if endpoint == "" {
		endpoint = os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT")
	}
	if endpoint == "" {
		endpoint = defaultEndpoint
	}
	tr := &http.Transport{
		// IMDS is link-local: never through a proxy from the environment.
		Proxy:       nil,
		DialContext: (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext,
		// One connection per poll loop stays open between polls: no
		// connect per request.
		MaxIdleConns:        8,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &client{base: strings.TrimRight(endpoint, "/"), http: &http.Client{Transport: tr}, tokenTTL: defaultTokenTTL, now: now}
}

// getMetadata reads one meta-data path. 404 is errNotFound, any other
// non-200 a *StatusError; a 401 (token revoked, IMDS restarted) gets one
// more try with a fresh token.
func (c *client) getMetadata(ctx context.Context, path string) ([]byte, error) {
	return c.get(ctx, metadataPrefix+path)
}

// getDynamic reads one dynamic-data path (the instance identity document).
func (c *client) getDynamic(ctx context.Context, path string) ([]byte, error) {
	return c.get(ctx, dynamicPrefix+path)
}

func (c *client) get(ctx context.Context, path string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		tok, err := c.sessionToken(ctx)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set(tokenHeader, tok)
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, err
		}
		b, err := readBody(resp)
		switch {
		case err != nil:
			return nil, fmt.Errorf("read: %w", err)
		case resp.StatusCode == http.StatusOK:
			return b, nil
		case resp.StatusCode == http.StatusNotFound:
			return nil, errNotFound
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0:
			c.dropToken(tok)
			continue
		}
		return nil, &StatusError{Status: resp.StatusCode, Err: fmt.Errorf("GET %s: %s", path, strings.TrimSpace(string(b)))}
	}
}

// sessionToken returns the cached token or fetches a new one.
func (c *client) sessionToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && c.now().Before(c.expires) {
		return c.token, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+tokenPath, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set(ttlHeader, strconv.Itoa(int(c.tokenTTL/time.Second)))
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	b, err := readBody(resp)
	if err != nil {
		return "", fmt.Errorf("token: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", &StatusError{Status: resp.StatusCode, Err: fmt.Errorf("token PUT refused (no IMDSv1 fallback): %s", strings.TrimSpace(string(b)))}
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("token: empty answer")
	}
	ttl := c.tokenTTL
	if s, err := strconv.Atoi(resp.Header.Get(ttlHeader)); err == nil && s > 0 {
		ttl = time.Duration(s) * time.Second
	}
	c.token, c.expires = tok, c.now().Add(max(ttl-tokenRenewEarly, ttl/2))
	return tok, nil
}

func (c *client) dropToken(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == tok {
		c.token = ""
	}
}

// readBody reads at most 1 MiB (notices are tiny: a broken endpoint must not
// feed us forever) and drains the rest, so the connection is kept.
func readBody(resp *http.Response) ([]byte, error) {
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

func (c *client) close() { c.http.CloseIdleConnections() }

// loopConn is one poll loop's own kept-alive connection, used
// synchronously by that loop: a poll is one write and one read on it, with
// no connection-pool goroutines handing the request and the answer
// between them (net/http's transport wakes three goroutines per request;
// at two polls a second that was most of the agent's idle CPU).
type loopConn struct {
	c   *client
	nc  net.Conn
	br  *bufio.Reader
	buf []byte
}

func (c *client) newLoopConn() *loopConn { return &loopConn{c: c} }

func (l *loopConn) close() {
	if l.nc != nil {
		_ = l.nc.Close()
		l.nc, l.br = nil, nil
	}
}

// getMetadata is client.getMetadata over the loop's connection.
func (l *loopConn) getMetadata(ctx context.Context, path string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		tok, err := l.c.sessionToken(ctx)
		if err != nil {
			return nil, err
		}
		status, b, err := l.roundTrip(ctx, metadataPrefix+path, tok)
		switch {
		case err != nil:
			return nil, err
		case status == http.StatusOK:
			return b, nil
		case status == http.StatusNotFound:
			return nil, errNotFound
		case status == http.StatusUnauthorized && attempt == 0:
			l.c.dropToken(tok)
			continue
		}
		return nil, &StatusError{Status: status, Err: fmt.Errorf("GET %s: %s", path, strings.TrimSpace(string(b)))}
	}
}

// roundTrip sends one GET and reads the answer. A kept connection the
// server closed meanwhile is replaced once, transparently.
func (l *loopConn) roundTrip(ctx context.Context, path, token string) (int, []byte, error) {
	u, err := url.Parse(l.c.base)
	if err != nil {
		return 0, nil, err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	for attempt := 0; ; attempt++ {
		reused := l.nc != nil
		if !reused {
			nc, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", host)
			if err != nil {
				return 0, nil, err
			}
			l.nc, l.br = nc, bufio.NewReaderSize(nc, 4096)
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = l.nc.SetDeadline(dl)
		} else {
			_ = l.nc.SetDeadline(time.Time{})
		}
		l.buf = append(l.buf[:0], "GET "...)
		l.buf = append(l.buf, path...)
		l.buf = append(l.buf, " HTTP/1.1\r\nHost: "...)
		l.buf = append(l.buf, u.Host...)
		l.buf = append(l.buf, "\r\nUser-Agent: dovetail-agent\r\n"+tokenHeader+": "...)
		l.buf = append(l.buf, token...)
		l.buf = append(l.buf, "\r\n\r\n"...)
		_, err := l.nc.Write(l.buf)
		var resp *http.Response
		if err == nil {
			resp, err = http.ReadResponse(l.br, nil)
		}
		if err != nil {
			l.close()
			if reused && attempt == 0 && ctx.Err() == nil && !isTimeout(err) {
				continue // the server closed the idle connection: one fresh try
			}
			return 0, nil, err
		}
		b, err := readBody(resp)
		if err != nil || resp.Close {
			l.close()
		}
		if err != nil {
			return 0, nil, fmt.Errorf("read: %w", err)
		}
		return resp.StatusCode, b, nil
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
