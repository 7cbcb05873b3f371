package scheduling

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// groupKind says what a topology group counts per domain.
type groupKind int

const (
	// countMatching counts pods that match the selector (spread, affinity,
	// the pod's own anti-affinity).
	countMatching groupKind = iota
	// countOwners counts pods that carry a required anti-affinity term, so
	// that an incoming pod matching the term keeps out of their domains
	// (anti-affinity is symmetric).
	countOwners
)

// topoGroup keeps per-domain counts for one (selector, namespaces, key).
// Counts are updated incrementally as pods are placed.
type topoGroup struct {
	id     int
	kind   groupKind
	key    string // topology key
	nsAll  bool
	ns     map[string]bool
	sel    labels.Selector
	domain map[string]int32 // by domain value (zone, capacity type, label value)
	slot   []int32          // by slot index (every key: eligibility-filtered spread counts)
	total  int32
	// capSlot: per slot, the most pods matching the group that the slot may
	// hold (0: no cap), set by pods with a DoNotSchedule hostname spread
	// on the group. Any bind order then passes kube-scheduler's skew check.
	capSlot []int32
	// ordered: a zone-like spread or a required affinity uses the group, so
	// the pods it counts are placed in queue order.
	ordered bool
}

func (g *topoGroup) capOf(i int) int32 {
	if i < len(g.capSlot) {
		return g.capSlot[i]
	}
	return 0
}

func (g *topoGroup) setCap(i int, c int32) {
	for len(g.capSlot) <= i {
		g.capSlot = append(g.capSlot, 0)
	}
	if g.capSlot[i] == 0 || c < g.capSlot[i] {
		g.capSlot[i] = c
	}
}

func (g *topoGroup) matches(ns string, lbls labels.Set) bool {
	if !g.nsAll && !g.ns[ns] {
		return false
	}
	return g.sel.Matches(lbls)
}

func (g *topoGroup) slotCount(i int) int32 {
	if i < len(g.slot) {
		return g.slot[i]
	}
	return 0
}

func (g *topoGroup) addSlot(i int, n int32) {
	for len(g.slot) <= i {
		g.slot = append(g.slot, 0)
	}
	g.slot[i] += n
}

// topology owns the groups of one Solve run.
type topology struct {
	groups []*topoGroup
	byKey  map[string]*topoGroup
	// matchCache memoises which countMatching groups match a (namespace,
	// labels) combination and which countOwners groups' selectors match it.
	matchCache map[string]*labelMatch
	warnings   []string
	// namespaces: name → labels (Snapshot.Namespaces; nil when unknown).
	namespaces map[string]map[string]string
}

type labelMatch struct {
	matching []*topoGroup // countMatching groups this label set counts in
	owners   []*topoGroup // countOwners groups whose selector matches (must keep out)
}

func selectorKey(s labels.Selector) string { return s.String() }

// group returns the deduplicated group for the arguments.
func (t *topology) group(kind groupKind, key string, nsAll bool, ns []string, sel labels.Selector) *topoGroup {
	nss := sortedUnique(ns)
	k := fmt.Sprintf("%d|%s|%t|%s|%s", kind, key, nsAll, strings.Join(nss, ","), selectorKey(sel))
	if g, ok := t.byKey[k]; ok {
		return g
	}
	g := &topoGroup{id: len(t.groups), kind: kind, key: key, nsAll: nsAll, sel: sel, domain: map[string]int32{}}
	if !nsAll {
		g.ns = map[string]bool{}
		for _, n := range nss {
			g.ns[n] = true
		}
	}
	t.groups = append(t.groups, g)
	t.byKey[k] = g
	// A new group invalidates memoised matches.
	t.matchCache = map[string]*labelMatch{}
	return g
}

func labelSetKey(ns string, l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(ns)
	for _, k := range keys {
		b.WriteByte('\x00')
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(l[k])
	}
	return b.String()
}

// match returns (memoised) the groups a pod with these labels interacts with.
func (t *topology) match(ns string, l map[string]string) *labelMatch {
	k := labelSetKey(ns, l)
	if m, ok := t.matchCache[k]; ok {
		return m
	}
	m := &labelMatch{}
	set := labels.Set(l)
	for _, g := range t.groups {
		if !g.matches(ns, set) {
			continue
		}
		if g.kind == countMatching {
			m.matching = append(m.matching, g)
		} else {
			m.owners = append(m.owners, g)
		}
	}
	t.matchCache[k] = m
	return m
}

// selectorFor compiles a label selector plus matchLabelKeys (values taken
// from the pod's own labels). A nil selector matches nothing, as in Kubernetes.
func selectorFor(ls *metav1.LabelSelector, matchLabelKeys []string, podLabels map[string]string) (labels.Selector, error) {
	if ls == nil {
		return labels.Nothing(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("label selector: %w", err)
	}
	for _, k := range matchLabelKeys {
		v, ok := podLabels[k]
		if !ok {
			continue
		}
		r, err := labels.NewRequirement(k, selection.Equals, []string{v})
		if err != nil {
			return nil, fmt.Errorf("matchLabelKeys %q: %w", k, err)
		}
		sel = sel.Add(*r)
	}
	return sel, nil
}

// termNamespaces resolves which namespaces a pod affinity term looks at,
// as kube-scheduler does: the listed namespaces plus those whose labels
// match namespaceSelector; an empty selector means every namespace; neither
// means the pod's own namespace.
func (t *topology) termNamespaces(pod *corev1.Pod, term *corev1.PodAffinityTerm) (bool, []string, error) {
	ns := append([]string(nil), term.Namespaces...)
	if term.NamespaceSelector == nil {
		if len(ns) == 0 {
			ns = []string{pod.Namespace}
		}
		return false, ns, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(term.NamespaceSelector)
	if err != nil {
		return false, nil, fmt.Errorf("namespace selector: %w", err)
	}
	if sel.Empty() {
		return true, nil, nil
	}
	if t.namespaces == nil {
		// Namespace labels are not in the snapshot; widen to all
		// namespaces, which can only make the simulation more conservative
		// for anti-affinity and more permissive for affinity.
		t.warnings = append(t.warnings, fmt.Sprintf("pod %s/%s: namespaceSelector treated as all namespaces (no namespace labels in the snapshot)", pod.Namespace, pod.Name))
		return true, nil, nil
	}
	for name, l := range t.namespaces {
		if sel.Matches(labels.Set(l)) {
			ns = append(ns, name)
		}
	}
	return false, ns, nil
}
