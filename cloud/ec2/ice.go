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

// iceCache remembers offerings EC2 refused for capacity so the next launch
// and the next InstanceTypes answer avoid them until the TTL passes.
type iceCache struct {
	mu    sync.Mutex
	clock Clock
	ttl   time.Duration
	m     map[iceKey]iceValue
}

func newICECache(c Clock, ttl time.Duration) *iceCache {
	return &iceCache{clock: c, ttl: ttl, m: map[iceKey]iceValue{}}
}

func (c *iceCache) mark(instanceType, zone, capacityType, code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[iceKey{instanceType, zone, capacityType}] = iceValue{code: code, until: c.clock.Now().Add(c.ttl)}
}

// unavailable reports whether the offering is cached as refused.
func (c *iceCache) unavailable(instanceType, zone, capacityType string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	k := iceKey{instanceType, zone, capacityType}
	if v, ok := c.m[k]; ok {
		if now.Before(v.until) {
			return true
		}
		delete(c.m, k)
	}
	return false
}

// code is the error code an offering was cached with ("" if it is not).
func (c *iceCache) code(instanceType, zone, capacityType string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[iceKey{instanceType, zone, capacityType}].code
}

func (c *iceCache) entries() []ICEEntry {
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
