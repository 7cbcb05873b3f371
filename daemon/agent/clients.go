package agent

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Client budgets the agent ships with. A drain is the one burst the agent
// makes: a full node's evictions (up to 250 pods) must go out at once, so the
// main client's burst covers them and its QPS keeps retries of refused
// evictions (one per blocked pod per second) from being throttled. Events
// travel on a second client with a budget of their own (drain.Options
// EventClient paces them), so they never delay an eviction. Before, one
// client at 20 QPS / burst 40 carried evictions, a per-pod Event each and a
// pod list every 250 ms: 100 pods took about 8 s.
const (
	KubeQPS    = 100
	KubeBurst  = 300
	EventQPS   = 20
	EventBurst = 50
)

// Clients returns the agent's main and Events clients for cfg (which is
// copied, not changed).
func Clients(cfg *rest.Config, userAgent string) (kube, events kubernetes.Interface, err error) {
	main := rest.CopyConfig(cfg)
	main.UserAgent = userAgent
	main.QPS, main.Burst = KubeQPS, KubeBurst
	if kube, err = kubernetes.NewForConfig(main); err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	ev := rest.CopyConfig(cfg)
	ev.UserAgent = userAgent
	// The drain's event queue waits for its own token bucket before each
	// request; the client's limiter must not add a second wait (client-go
	// logs "client-side throttling" when it waits long).
	ev.QPS, ev.Burst = EventQPS*2, EventBurst*2
	if events, err = kubernetes.NewForConfig(ev); err != nil {
		return nil, nil, fmt.Errorf("kubernetes events client: %w", err)
	}
	return kube, events, nil
}
