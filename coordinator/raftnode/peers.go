package raftnode

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Peer is one replica of the coordinator.
type Peer struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raftAddr"`
	// HTTPAddr is where the replica's API listens (for leader forwarding).
	HTTPAddr string `json:"httpAddr,omitempty"`
}

// ParsePeers parses "id=raftHost:port[|httpHost:port],..." into peers.
func ParsePeers(s string) ([]Peer, error) {
	var out []Peer
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, addrs, ok := strings.Cut(part, "=")
		if !ok || id == "" || addrs == "" {
			return nil, fmt.Errorf("peer %q: want id=raftaddr[|httpaddr]", part)
		}
		raftAddr, httpAddr, _ := strings.Cut(addrs, "|")
		if _, _, err := net.SplitHostPort(raftAddr); err != nil {
			return nil, fmt.Errorf("peer %q raft address: %w", id, err)
		}
		if httpAddr != "" {
			if _, _, err := net.SplitHostPort(httpAddr); err != nil {
				return nil, fmt.Errorf("peer %q http address: %w", id, err)
			}
		}
		if seen[id] {
			return nil, fmt.Errorf("peer %q listed twice", id)
		}
		seen[id] = true
		out = append(out, Peer{ID: id, RaftAddr: raftAddr, HTTPAddr: httpAddr})
	}
	return out, nil
}

// StatefulSetPeers derives the peer list of a StatefulSet from one pod's name
// ("<set>-<ordinal>"), the expected replica count and the headless service
// domain (e.g. "dovetail-coordinator.kube-system.svc.cluster.local"): peer i is
// "<set>-i.<domain>". Every replica computes the same list, so every replica
// can start with the same command line.
func StatefulSetPeers(podName string, expect int, domain string, raftPort, httpPort int) ([]Peer, error) {
	i := strings.LastIndexByte(podName, '-')
	if i <= 0 {
		return nil, fmt.Errorf("pod name %q is not <statefulset>-<ordinal>", podName)
	}
	if _, err := strconv.Atoi(podName[i+1:]); err != nil {
		return nil, fmt.Errorf("pod name %q is not <statefulset>-<ordinal>: %w", podName, err)
	}
	if expect < 1 {
		return nil, fmt.Errorf("bootstrap-expect must be at least 1, got %d", expect)
	}
	set := podName[:i]
	out := make([]Peer, 0, expect)
	for n := 0; n < expect; n++ {
		id := fmt.Sprintf("%s-%d", set, n)
		host := id
		if domain != "" {
			host = id + "." + strings.TrimPrefix(domain, ".")
		}
		out = append(out, Peer{
			ID:       id,
			RaftAddr: net.JoinHostPort(host, strconv.Itoa(raftPort)),
			HTTPAddr: net.JoinHostPort(host, strconv.Itoa(httpPort)),
		})
	}
	return out, nil
}
