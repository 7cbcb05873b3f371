package v1

import (
	"encoding/json"
	"fmt"
	"time"
)

// Never is the NillableDuration spelling of "no duration": a NodePool whose
// expireAfter or consolidateAfter is Never never expires or consolidates.
const Never = "Never"

// NillableDuration is a duration that may also be "Never" (Duration == nil).
// It marshals as a JSON string: "Never" or a Go duration such as "720h".
//
// Raw keeps the bytes it was decoded from so an object read and written back
// is byte-for-byte unchanged (a user's "30m" must not become "30m0s", which
// would look like a spec change to anything hashing the spec).
type NillableDuration struct {
	*time.Duration `json:",inline"`

	// Raw is the JSON the value was decoded from, if any.
	Raw []byte `json:"-"`
}

// NewNillableDuration returns a NillableDuration holding d.
func NewNillableDuration(d time.Duration) NillableDuration {
	return NillableDuration{Duration: &d}
}

// NeverDuration returns a NillableDuration meaning Never.
func NeverDuration() NillableDuration { return NillableDuration{} }

// ParseNillableDuration parses "Never" or a Go duration string.
func ParseNillableDuration(s string) (NillableDuration, error) {
	if s == Never {
		return NillableDuration{}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return NillableDuration{}, fmt.Errorf("parsing duration %q (want a duration like 720h or %q): %w", s, Never, err)
	}
	return NillableDuration{Duration: &d}, nil
}

// IsNever reports whether the duration is Never.
func (d NillableDuration) IsNever() bool { return d.Duration == nil }

// String returns "Never" or the Go duration string.
func (d NillableDuration) String() string {
	if d.Duration == nil {
		return Never
	}
	return d.Duration.String()
}

// UnmarshalJSON accepts "Never", a Go duration string, or null (Never).
func (d *NillableDuration) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"720h\" or %q: %w", Never, err)
	}
	if s == nil {
		*d = NillableDuration{}
		return nil
	}
	parsed, err := ParseNillableDuration(*s)
	if err != nil {
		return err
	}
	parsed.Raw = append([]byte(nil), b...)
	*d = parsed
	return nil
}

// MarshalJSON writes the original bytes when the value was decoded and not
// changed since, otherwise "Never" or the Go duration string.
func (d NillableDuration) MarshalJSON() ([]byte, error) {
	if d.Raw != nil {
		// Raw is only trusted while it still parses to the held value: code
		// that set Duration after decoding must see its change written.
		var s string
		if json.Unmarshal(d.Raw, &s) == nil {
			if p, err := ParseNillableDuration(s); err == nil && sameDuration(p.Duration, d.Duration) {
				return d.Raw, nil
			}
		}
	}
	return json.Marshal(d.String())
}

func sameDuration(a, b *time.Duration) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}
