package api

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// Bounds of a forwarding connection. Why: the leader's address is a DNS
// name whose IP changes when its pod or container moves (a StatefulSet pod
// rescheduled onto another node keeps its name, not its IP). A pooled
// keep-alive connection to the vanished IP is a black hole: the request is
// written, nothing answers, and TCP retransmits for ~15 minutes. Each bound
// below turns that silence into an error so the forward is retried on a
// fresh connection, which dials the name again and so resolves the new IP.
const (
	// forwardDialTimeout bounds connecting to the leader (a SYN to a
	// vanished IP is never answered).
	forwardDialTimeout = 2 * time.Second
	// forwardUserTimeout is how long sent data may stay unacknowledged
	// before the kernel aborts the connection (TCP_USER_TIMEOUT, Linux).
	// A live but slow leader acknowledges at once, so this only cuts dead
	// peers, whatever the request's own duration.
	forwardUserTimeout = 5 * time.Second
	// defaultForwardAttempt is the first attempt's bound of a forwarded
	// idempotent request (Config.ForwardAttemptTimeout).
	defaultForwardAttempt = time.Second
)

// NewForwardClient returns the client a replica forwards requests to the
// leader with; tlsCfg nil forwards over plain http. Besides the dial and
// TCP bounds above it probes idle connections (TCP keep-alive, HTTP/2
// pings), so a dead pooled connection is dropped before it is reused.
func NewForwardClient(tlsCfg *tls.Config) *http.Client {
	d := &net.Dialer{
		Timeout: forwardDialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second,
			Interval: 2 * time.Second, Count: 3},
		Control: setUserTimeout,
	}
	return &http.Client{
		// Outer bound only: viaLeader bounds each attempt by the request's
		// retry window.
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			TLSClientConfig:     tlsCfg,
			ForceAttemptHTTP2:   true,
			TLSHandshakeTimeout: 5 * time.Second,
			IdleConnTimeout:     30 * time.Second,
			MaxIdleConnsPerHost: 16,
			HTTP2:               &http.HTTP2Config{SendPingTimeout: 2 * time.Second, PingTimeout: 2 * time.Second},
		},
	}
}
