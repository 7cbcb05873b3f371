package scheduling

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Karpenter v1.14's inclusive integer operators (not in corev1).
const (
	OpGte corev1.NodeSelectorOperator = "Gte"
	OpLte corev1.NodeSelectorOperator = "Lte"
)

// valueSet is the set of values a label may take: either the finite set
// values (complement false) or every value except values (complement true),
// further bounded by gt/lt for integer-valued labels. An empty finite set
// means "the label must not exist".
type valueSet struct {
	complement bool
	values     []string // sorted, unique
	gt, lt     int64    // exclusive bounds; math.MinInt64/MaxInt64 when unset
	minValues  int
}

func anyValue() valueSet {
	return valueSet{complement: true, gt: math.MinInt64, lt: math.MaxInt64}
}

func bounded(v valueSet) bool { return v.gt != math.MinInt64 || v.lt != math.MaxInt64 }

// newValueSet compiles one node selector requirement.
func newValueSet(op corev1.NodeSelectorOperator, values []string) (valueSet, error) {
	v := anyValue()
	switch op {
	case corev1.NodeSelectorOpIn:
		v.complement = false
		v.values = sortedUnique(values)
	case corev1.NodeSelectorOpNotIn:
		v.values = sortedUnique(values)
	case corev1.NodeSelectorOpExists:
	case corev1.NodeSelectorOpDoesNotExist:
		v.complement = false
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt, OpGte, OpLte:
		if len(values) != 1 {
			return v, fmt.Errorf("operator %s needs exactly one value, got %d", op, len(values))
		}
		n, err := strconv.ParseInt(values[0], 10, 64)
		if err != nil {
			return v, fmt.Errorf("operator %s needs an integer value: %w", op, err)
		}
		// Labels compared this way are integers, so Gte n is Gt n-1 and Lte
		// n is Lt n+1 (Karpenter v1.14); the bounds stay exclusive.
		switch op {
		case corev1.NodeSelectorOpGt:
			v.gt = n
		case corev1.NodeSelectorOpLt:
			v.lt = n
		case OpGte:
			if n == math.MinInt64 {
				break // every integer is >= MinInt64
			}
			v.gt = n - 1
		case OpLte:
			if n == math.MaxInt64 {
				break
			}
			v.lt = n + 1
		}
		if v.gt != math.MinInt64 && v.lt != math.MaxInt64 && v.lt-v.gt <= 1 {
			return valueSet{gt: math.MinInt64, lt: math.MaxInt64}, nil
		}
	default:
		return v, fmt.Errorf("unknown operator %q", op)
	}
	return v, nil
}

func sortedUnique(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	j := 0
	for i := range out {
		if i == 0 || out[i] != out[i-1] {
			out[j] = out[i]
			j++
		}
	}
	return out[:j]
}

func contains(sorted []string, v string) bool {
	i := sort.SearchStrings(sorted, v)
	return i < len(sorted) && sorted[i] == v
}

func (v valueSet) inBounds(s string) bool {
	if !bounded(v) {
		return true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return false
	}
	return n > v.gt && n < v.lt
}

// has reports whether a node whose label has value s satisfies the set.
func (v valueSet) has(s string) bool {
	if !v.inBounds(s) {
		return false
	}
	if v.complement {
		return !contains(v.values, s)
	}
	return contains(v.values, s)
}

// allowsAbsent reports whether a node without the label satisfies the set
// (NotIn and DoesNotExist do; In, Exists, Gt and Lt do not).
func (v valueSet) allowsAbsent() bool {
	if bounded(v) {
		return false
	}
	if v.complement {
		return len(v.values) > 0 // NotIn; Exists has none
	}
	return len(v.values) == 0 // DoesNotExist
}

// empty reports whether no value (present) satisfies the set.
func (v valueSet) empty() bool { return !v.complement && len(v.values) == 0 }

// intersect returns the values both sets allow.
func (v valueSet) intersect(o valueSet) valueSet {
	out := valueSet{gt: max(v.gt, o.gt), lt: min(v.lt, o.lt), minValues: max(v.minValues, o.minValues)}
	switch {
	case v.complement && o.complement:
		out.complement = true
		out.values = sortedUnique(append(append([]string(nil), v.values...), o.values...))
		if bounded(out) && out.lt-out.gt <= 1 && out.gt != math.MinInt64 && out.lt != math.MaxInt64 {
			return valueSet{gt: math.MinInt64, lt: math.MaxInt64}
		}
		return out
	case !v.complement && !o.complement:
		for _, s := range v.values {
			if contains(o.values, s) && out.inBounds(s) {
				out.values = append(out.values, s)
			}
		}
	default:
		fin, comp := v, o
		if v.complement {
			fin, comp = o, v
		}
		for _, s := range fin.values {
			if !contains(comp.values, s) && out.inBounds(s) {
				out.values = append(out.values, s)
			}
		}
	}
	out.gt, out.lt = math.MinInt64, math.MaxInt64
	return out
}

// compatible reports whether some node can satisfy both sets: they share a
// value, or both allow the label to be absent.
func (v valueSet) compatible(o valueSet) bool {
	if v.allowsAbsent() && o.allowsAbsent() {
		return true
	}
	return !v.intersect(o).empty()
}

func (v valueSet) String() string {
	var b strings.Builder
	switch {
	case !v.complement && len(v.values) == 0:
		b.WriteString("DoesNotExist")
	case !v.complement:
		b.WriteString("In [" + strings.Join(v.values, ",") + "]")
	case len(v.values) > 0:
		b.WriteString("NotIn [" + strings.Join(v.values, ",") + "]")
	default:
		b.WriteString("Exists")
	}
	if v.gt != math.MinInt64 {
		fmt.Fprintf(&b, " >%d", v.gt)
	}
	if v.lt != math.MaxInt64 {
		fmt.Fprintf(&b, " <%d", v.lt)
	}
	return b.String()
}

// requirements is a compiled conjunction of label requirements, keyed by label.
type requirements map[string]valueSet

// compileRequirements compiles a list of requirements, intersecting repeated keys.
func compileRequirements(in []Requirement) (requirements, error) {
	out := make(requirements, len(in))
	for _, r := range in {
		v, err := newValueSet(r.Operator, r.Values)
		if err != nil {
			return nil, fmt.Errorf("requirement on %q: %w", r.Key, err)
		}
		if r.MinValues != nil {
			v.minValues = *r.MinValues
		}
		out.add(r.Key, v)
	}
	return out, nil
}

func compileSelectorTerm(t corev1.NodeSelectorTerm) (requirements, error) {
	out := requirements{}
	for _, e := range t.MatchExpressions {
		v, err := newValueSet(e.Operator, e.Values)
		if err != nil {
			return nil, fmt.Errorf("node affinity on %q: %w", e.Key, err)
		}
		out.add(e.Key, v)
	}
	return out, nil
}

func (r requirements) add(key string, v valueSet) {
	if cur, ok := r[key]; ok {
		v = cur.intersect(v)
	}
	r[key] = v
}

func (r requirements) clone() requirements {
	out := make(requirements, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// merge returns the conjunction of r and o (a new map).
func (r requirements) merge(o requirements) requirements {
	out := r.clone()
	for k, v := range o {
		out.add(k, v)
	}
	return out
}

// matchesLabels reports whether a node with labels satisfies r.
func (r requirements) matchesLabels(labels map[string]string) (bool, string) {
	for _, k := range r.sortedKeys() {
		v := r[k]
		val, ok := labels[k]
		if !ok {
			if !v.allowsAbsent() {
				return false, fmt.Sprintf("label %s is missing (needs %s)", k, v)
			}
			continue
		}
		if !v.has(val) {
			return false, fmt.Sprintf("label %s=%s does not satisfy %s", k, val, v)
		}
	}
	return true, ""
}

func (r requirements) sortedKeys() []string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// toList renders r back as API requirements (deterministic order).
func (r requirements) toList() []Requirement {
	out := make([]Requirement, 0, len(r))
	for _, k := range r.sortedKeys() {
		out = append(out, r[k].toRequirements(k)...)
	}
	return out
}

func (v valueSet) toRequirements(key string) []Requirement {
	var out []Requirement
	var mv *int
	if v.minValues > 0 {
		m := v.minValues
		mv = &m
	}
	switch {
	case !v.complement && len(v.values) == 0:
		out = append(out, Requirement{Key: key, Operator: corev1.NodeSelectorOpDoesNotExist})
	case !v.complement:
		out = append(out, Requirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: append([]string(nil), v.values...), MinValues: mv})
	case len(v.values) > 0:
		out = append(out, Requirement{Key: key, Operator: corev1.NodeSelectorOpNotIn, Values: append([]string(nil), v.values...), MinValues: mv})
	case !bounded(v):
		out = append(out, Requirement{Key: key, Operator: corev1.NodeSelectorOpExists, MinValues: mv})
	}
	if v.complement && v.gt != math.MinInt64 {
		out = append(out, Requirement{Key: key, Operator: corev1.NodeSelectorOpGt, Values: []string{strconv.FormatInt(v.gt, 10)}})
	}
	if v.complement && v.lt != math.MaxInt64 {
		out = append(out, Requirement{Key: key, Operator: corev1.NodeSelectorOpLt, Values: []string{strconv.FormatInt(v.lt, 10)}})
	}
	return out
}
