package ec2

import (
	"sort"
	"sync"
	"time"
)

// iceCodes are the fleet error codes that mean "this offering cannot be
// filled right now" (as opposed to a bad request). They mark the offering
// unavailable for the ICE TTL.
var iceCodes = map[string]bool{
	"InsufficientInstanceCapacity":         true,
	"InsufficientCapacity":                 true,
	"UnfulfillableCapacity":                true,
	"MaxSpotInstanceCountExceeded":         true,
	"VcpuLimitExceeded":                    true,
	"InsufficientFreeAddressesInSubnet":    true,
	"SpotMaxPriceTooLow":                   true,
	"Unsupported":                          true,
	"InstanceLimitExceeded":                true,
	"InsufficientHostCapacity":             true,
	"InsufficientReservedInstanceCapacity": true,
	"InsufficientCapacityOnOutpost":        true,
	"ReservationCapacityExceeded":          true,
}

// isICECode reports whether a per-override fleet error is a capacity answer.
func isICECode(code string) bool { return iceCodes[code] }

// Offerings is where the provider reads which offerings to avoid and
// records the ones EC2 refuses for capacity. It is declared here, by its
// consumer: a coordinator injects its replicated cache (every replica's
// provider then reads what any leader learned, and an entry expired there is
// available again at once); without one the provider keeps a
// MemoryOfferings with Config.ICETTL.
type Offerings interface {
	// Unavailable reports whether the offering is avoided now, with the
	// code EC2 refused it with.
	Unavailable(instanceType, zone, capacityType string) (code string, ok bool)
	// MarkUnavailable records a refusal. The next Unavailable must see it:
	// the rest of the same launch and concurrent launches skip the offering.
	MarkUnavailable(instanceType, zone, capacityType, code string)
}

type iceKey struct{ instanceType, zone, capacityType string }

// ICEEntry is one offering the provider currently avoids.
type ICEEntry struct {
	InstanceType string    `json:"instanceType"`
	Zone         string    `json:"zone"`
	CapacityType string    `json:"capacityType"`
	Code         string    `json:"code"`
	Until        time.Time `json:"until"`
}

type iceValue struct {
	code  string
	until time.Time
}

// MemoryOfferings is the provider's default Offerings: refusals remembered
// in this process for a TTL, for users without a coordinator (the CLI's
// simulate and bench, tests).
type MemoryOfferings struct {
	mu    sync.Mutex
	clock Clock
	ttl   time.Duration
	m     map[iceKey]iceValue
}

// NewMemoryOfferings returns an empty in-process store whose entries last ttl.
func NewMemoryOfferings(c Clock, ttl time.Duration) *MemoryOfferings {
	if c == nil {
		c = realClock{}
	}
	return &MemoryOfferings{clock: c, ttl: ttl, m: map[iceKey]iceValue{}}
}

// MarkUnavailable implements Offerings.
func (c *MemoryOfferings) MarkUnavailable(instanceType, zone, capacityType, code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[iceKey{instanceType, zone, capacityType}] = iceValue{code: code, until: c.clock.Now().Add(c.ttl)}
}

// Unavailable implements Offerings.
func (c *MemoryOfferings) Unavailable(instanceType, zone, capacityType string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := iceKey{instanceType, zone, capacityType}
	v, ok := c.m[k]
	if !ok {
		return "", false
	}
	if !c.clock.Now().Before(v.until) {
		delete(c.m, k)
		return "", false
	}
	return v.code, true
}

// Entries lists the live entries, sorted, for status and debugging output.
func (c *MemoryOfferings) Entries() []ICEEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	out := make([]ICEEntry, 0, len(c.m))
	for k, v := range c.m {
		if !now.Before(v.until) {
			delete(c.m, k)
			continue
		}
		out = append(out, ICEEntry{InstanceType: k.instanceType, Zone: k.zone, CapacityType: k.capacityType, Code: v.code, Until: v.until})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.InstanceType != b.InstanceType {
			return a.InstanceType < b.InstanceType
		}
		if a.Zone != b.Zone {
			return a.Zone < b.Zone
		}
		return a.CapacityType < b.CapacityType
	})
	return out
}

// avoided reports whether the store holds the offering as refused.
func (p *Provider) avoided(instanceType, zone, capacityType string) bool {
	_, ok := p.ice.Unavailable(instanceType, zone, capacityType)
	return ok
}
