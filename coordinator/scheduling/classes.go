package scheduling

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podClass is the compiled scheduling signature shared by all pods with
// identical constraints (namespace, labels, selectors, affinity,
// tolerations, spread, ports, volume zones). Requirements and topology
// groups are compiled once per class, not once per pod.
type podClass struct {
	id          int
	ns          string
	labels      map[string]string
	tolerations []corev1.Toleration
	ports       []hostPort
	// err is set when the pod's spec cannot be compiled; such pods are
	// reported unschedulable with this reason instead of crashing anything.
	err error

	nodeTerms  []requirements // required node affinity OR terms (each incl. nodeSelector and volume zones)
	nodePrefs  []requirements // preferred node affinity terms, heaviest first
	reqAff     []termC        // required pod affinity
	reqAnti    []termC        // required pod anti-affinity
	prefTerms  []prefTerm     // preferred pod (anti-)affinity, lightest first (relaxed first)
	hardSpread []spreadC
	softSpread []spreadC // ScheduleAnyway: honoured until relaxed
	owns       []*topoGroup

	match *labelMatch

	levels  map[levelKey]*classLevel
	current levelKey
	// hostCapped: at most a few pods of this class per node (hostname
	// anti-affinity or spread); placed first because they decide node count.
	hostCapped bool
	// eligTerms are the pod's nodeSelector and required node affinity
	// (no volume zones, no preferences): the nodes a spread with
	// nodeAffinityPolicy Honor counts. nil: every node.
	eligTerms []requirements
	// ordered: the class takes part in a constraint whose outcome depends
	// on bind order (zone-like spread, required pod affinity): such pods
	// are placed in kube-scheduler's queue order among themselves.
	ordered bool
}

type hostPort struct {
	proto string
	ip    string
	port  int32
}

func (a hostPort) conflicts(b hostPort) bool {
	if a.port != b.port || a.proto != b.proto {
		return false
	}
	return a.ip == b.ip || a.ip == "" || b.ip == "" || a.ip == "0.0.0.0" || b.ip == "0.0.0.0"
}

type termC struct {
	g    *topoGroup
	self bool // the pod matches its own term
}

type prefTerm struct {
	weight int32
	anti   bool
	t      termC
}

type spreadC struct {
	g          *topoGroup
	maxSkew    int32
	minDomains int32
	self       bool
	// hard: DoNotSchedule (kube-scheduler filters on it); ScheduleAnyway
	// constraints only score there, so Solve honours them until relaxed.
	hard bool
	// affHonor/taintHonor: nodeAffinityPolicy and nodeTaintsPolicy
	// (kube-scheduler's defaults Honor and Ignore): which nodes count.
	affHonor, taintHonor bool
}

// levelKey identifies how far a class's preferences have been relaxed.
type levelKey struct {
	term        int    // index of the required node-affinity OR term in use
	nodePref    int    // index of the heaviest preferred node term still required
	droppedPref uint64 // bit i set: prefTerms[i] dropped
	dropAnyway  bool   // ScheduleAnyway spreads dropped
	tolPrefer   bool   // PreferNoSchedule taints tolerated
}

// classLevel is a class at one relaxation level: the constraints actually enforced.
type classLevel struct {
	c       *podClass
	key     levelKey
	reqs    requirements
	spreads []spreadC
	affs    []termC
	antis   []termC
	// monotone: once a slot rejects this level it rejects it forever
	// (no constraint can become satisfied by more pods arriving).
	monotone bool
	pools    []*classPool
	slotOK   []int8 // existing/in-flight slot compatibility: 0 unknown, 1 yes, 2 no

	allowedMemo  map[string]*allowedCache
	eligibleMemo map[string][]string
}

func (c *podClass) level(k levelKey) *classLevel {
	if l, ok := c.levels[k]; ok {
		return l
	}
	l := &classLevel{c: c, key: k, monotone: true}
	if len(c.nodeTerms) > 0 {
		l.reqs = c.nodeTerms[min(k.term, len(c.nodeTerms)-1)]
	} else {
		l.reqs = requirements{}
	}
	if k.nodePref < len(c.nodePrefs) {
		l.reqs = l.reqs.merge(c.nodePrefs[k.nodePref])
	}
	l.spreads = append(l.spreads, c.hardSpread...)
	if !k.dropAnyway {
		l.spreads = append(l.spreads, c.softSpread...)
	}
	l.affs = append(l.affs, c.reqAff...)
	l.antis = append(l.antis, c.reqAnti...)
	for i, p := range c.prefTerms {
		if k.droppedPref&(1<<uint(i)) != 0 {
			continue
		}
		if p.anti {
			l.antis = append(l.antis, p.t)
		} else {
			l.affs = append(l.affs, p.t)
		}
	}
	for _, s := range l.spreads {
		if s.g.key != LabelHostname {
			l.monotone = false
		}
	}
	if len(l.affs) > 0 {
		l.monotone = false
	}
	c.levels[k] = l
	return l
}

// next returns the next relaxation levels to try after k failed, most
// preferred first: dropping a single preferred pod term (lightest first),
// then the next preferred node term, then ScheduleAnyway spreads, then the
// next required OR term, then tolerating PreferNoSchedule.
func (c *podClass) next(k levelKey) []levelKey {
	var out []levelKey
	for i := range c.prefTerms {
		if i < 64 && k.droppedPref&(1<<uint(i)) == 0 {
			n := k
			n.droppedPref |= 1 << uint(i)
			out = append(out, n)
		}
	}
	if len(out) > 0 {
		return out
	}
	switch {
	case k.nodePref < len(c.nodePrefs):
		k.nodePref++
	case !k.dropAnyway && len(c.softSpread) > 0:
		k.dropAnyway = true
	case k.term+1 < len(c.nodeTerms):
		k.term++
		k.nodePref = 0
		k.dropAnyway = false
		k.droppedPref = 0
	case !k.tolPrefer:
		k.tolPrefer = true
	default:
		return nil
	}
	return []levelKey{k}
}

// initialLevel is where a class starts: everything preferred is required,
// unless preferences are ignored.
func (c *podClass) initialLevel(ignorePrefs bool) levelKey {
	if !ignorePrefs {
		return levelKey{}
	}
	k := levelKey{nodePref: len(c.nodePrefs), dropAnyway: true}
	for i := range c.prefTerms {
		if i < 64 {
			k.droppedPref |= 1 << uint(i)
		}
	}
	return k
}

// classKey builds the scheduling signature of a pod.
//
// Only labels some selector in the snapshot looks at (relevant) are part of
// the signature: a StatefulSet's per-pod labels would otherwise make every
// pod a class of its own.
func classKey(p *corev1.Pod, volKey string, relevant map[string]bool) string {
	var b strings.Builder
	b.Grow(256)
	lbls := p.Labels
	if len(lbls) > 0 {
		lbls = make(map[string]string, len(p.Labels))
		for k, v := range p.Labels {
			if relevant[k] {
				lbls[k] = v
			}
		}
	}
	b.WriteString(labelSetKey(p.Namespace, lbls))
	b.WriteString("|ns:")
	writeMap(&b, p.Spec.NodeSelector)
	if a := p.Spec.Affinity; a != nil {
		if na := a.NodeAffinity; na != nil {
			b.WriteString("|na:")
			if r := na.RequiredDuringSchedulingIgnoredDuringExecution; r != nil {
				for _, t := range r.NodeSelectorTerms {
					writeTerm(&b, t)
				}
			}
			b.WriteString("|np:")
			for _, t := range na.PreferredDuringSchedulingIgnoredDuringExecution {
				b.WriteString(strconv.Itoa(int(t.Weight)))
				writeTerm(&b, t.Preference)
			}
		}
		if pa := a.PodAffinity; pa != nil {
			b.WriteString("|pa:")
			writePodTerms(&b, pa.RequiredDuringSchedulingIgnoredDuringExecution, pa.PreferredDuringSchedulingIgnoredDuringExecution)
		}
		if pa := a.PodAntiAffinity; pa != nil {
			b.WriteString("|paa:")
			writePodTerms(&b, pa.RequiredDuringSchedulingIgnoredDuringExecution, pa.PreferredDuringSchedulingIgnoredDuringExecution)
		}
	}
	b.WriteString("|tol:")
	for _, t := range p.Spec.Tolerations {
		fmt.Fprintf(&b, "%s/%s/%s/%s;", t.Key, t.Operator, t.Value, t.Effect)
	}
	b.WriteString("|tsc:")
	for _, t := range p.Spec.TopologySpreadConstraints {
		fmt.Fprintf(&b, "%s/%d/%s/", t.TopologyKey, t.MaxSkew, t.WhenUnsatisfiable)
		if t.MinDomains != nil {
			b.WriteString(strconv.Itoa(int(*t.MinDomains)))
		}
		writeSelector(&b, t.LabelSelector)
		b.WriteString(strings.Join(t.MatchLabelKeys, ","))
		b.WriteByte(';')
	}
	b.WriteString("|ports:")
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.HostPort != 0 {
				fmt.Fprintf(&b, "%s/%s/%d;", port.Protocol, port.HostIP, port.HostPort)
			}
		}
	}
	b.WriteString("|vol:")
	b.WriteString(volKey)
	return b.String()
}

// selectorKeys adds the label keys a pod's selectors look at.
func selectorKeys(p *corev1.Pod, into map[string]bool) {
	addSel := func(ls *metav1.LabelSelector, matchLabelKeys []string) {
		for _, k := range matchLabelKeys {
			into[k] = true
		}
		if ls == nil {
			return
		}
		for k := range ls.MatchLabels {
			into[k] = true
		}
		for _, e := range ls.MatchExpressions {
			into[e.Key] = true
		}
	}
	for _, t := range p.Spec.TopologySpreadConstraints {
		addSel(t.LabelSelector, t.MatchLabelKeys)
	}
	a := p.Spec.Affinity
	if a == nil {
		return
	}
	terms := func(req []corev1.PodAffinityTerm, pref []corev1.WeightedPodAffinityTerm) {
		for _, t := range req {
			addSel(t.LabelSelector, t.MatchLabelKeys)
		}
		for _, t := range pref {
			addSel(t.PodAffinityTerm.LabelSelector, t.PodAffinityTerm.MatchLabelKeys)
		}
	}
	if a.PodAffinity != nil {
		terms(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
	}
	if a.PodAntiAffinity != nil {
		terms(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
	}
}

func writeMap(b *strings.Builder, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(m[k])
		b.WriteByte(',')
	}
}

func writeTerm(b *strings.Builder, t corev1.NodeSelectorTerm) {
	b.WriteByte('{')
	for _, e := range t.MatchExpressions {
		fmt.Fprintf(b, "%s %s %v;", e.Key, e.Operator, e.Values)
	}
	for _, e := range t.MatchFields {
		fmt.Fprintf(b, "F%s %s %v;", e.Key, e.Operator, e.Values)
	}
	b.WriteByte('}')
}

func writeSelector(b *strings.Builder, s *metav1.LabelSelector) {
	if s == nil {
		b.WriteString("nil")
		return
	}
	b.WriteByte('[')
	writeMap(b, s.MatchLabels)
	for _, e := range s.MatchExpressions {
		fmt.Fprintf(b, "%s %s %v;", e.Key, e.Operator, e.Values)
	}
	b.WriteByte(']')
}

func writePodTerms(b *strings.Builder, req []corev1.PodAffinityTerm, pref []corev1.WeightedPodAffinityTerm) {
	w := func(t corev1.PodAffinityTerm) {
		b.WriteString(t.TopologyKey)
		writeSelector(b, t.LabelSelector)
		b.WriteString(strings.Join(t.Namespaces, ","))
		if t.NamespaceSelector != nil {
			b.WriteString("nss")
			writeSelector(b, t.NamespaceSelector)
		}
		b.WriteString(strings.Join(t.MatchLabelKeys, ","))
		b.WriteByte(';')
	}
	for _, t := range req {
		w(t)
	}
	b.WriteString("/pref:")
	for _, t := range pref {
		b.WriteString(strconv.Itoa(int(t.Weight)))
		w(t.PodAffinityTerm)
	}
}

// compileClass builds a class from its first pod.
func compileClass(id int, p *corev1.Pod, volReqs requirements, topo *topology) *podClass {
	c := &podClass{id: id, ns: p.Namespace, labels: p.Labels, tolerations: p.Spec.Tolerations, levels: map[levelKey]*classLevel{}}
	c.err = c.compile(p, volReqs, topo)
	return c
}

func (c *podClass) compile(p *corev1.Pod, volReqs requirements, topo *topology) error {
	base := requirements{}
	for k, v := range p.Spec.NodeSelector {
		base.add(k, valueSet{values: []string{v}, gt: anyValue().gt, lt: anyValue().lt})
	}
	base = base.merge(volReqs)
	for _, ctr := range p.Spec.Containers {
		for _, port := range ctr.Ports {
			if port.HostPort == 0 {
				continue
			}
			proto := string(port.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			c.ports = append(c.ports, hostPort{proto: proto, ip: port.HostIP, port: port.HostPort})
		}
	}
	a := p.Spec.Affinity
	if a != nil && a.NodeAffinity != nil {
		if r := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution; r != nil {
			for _, t := range r.NodeSelectorTerms {
				tr, err := compileSelectorTerm(t)
				if err != nil {
					return err
				}
				c.nodeTerms = append(c.nodeTerms, base.merge(tr))
			}
			if len(c.nodeTerms) == 0 {
				return fmt.Errorf("required node affinity has no terms, so no node matches")
			}
		}
		prefs := append([]corev1.PreferredSchedulingTerm(nil), a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution...)
		sort.SliceStable(prefs, func(i, j int) bool { return prefs[i].Weight > prefs[j].Weight })
		for _, t := range prefs {
			tr, err := compileSelectorTerm(t.Preference)
			if err != nil {
				return err
			}
			c.nodePrefs = append(c.nodePrefs, tr)
		}
	}
	if len(c.nodeTerms) == 0 {
		c.nodeTerms = []requirements{base}
	}
	if len(p.Spec.NodeSelector) > 0 || (a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil) {
		sel := requirements{}
		for k, v := range p.Spec.NodeSelector {
			sel.add(k, valueSet{values: []string{v}, gt: anyValue().gt, lt: anyValue().lt})
		}
		if a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
			for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
				tr, err := compileSelectorTerm(t)
				if err != nil {
					return err
				}
				c.eligTerms = append(c.eligTerms, sel.merge(tr))
			}
		} else {
			c.eligTerms = []requirements{sel}
		}
	}
	mkTerm := func(t *corev1.PodAffinityTerm, kind groupKind) (termC, error) {
		sel, err := selectorFor(t.LabelSelector, t.MatchLabelKeys, p.Labels)
		if err != nil {
			return termC{}, err
		}
		if t.TopologyKey == "" {
			return termC{}, fmt.Errorf("pod affinity term has an empty topologyKey")
		}
		nsAll, ns, err := topo.termNamespaces(p, t)
		if err != nil {
			return termC{}, err
		}
		g := topo.group(kind, t.TopologyKey, nsAll, ns, sel)
		return termC{g: g, self: g.matches(p.Namespace, p.Labels)}, nil
	}
	if a != nil && a.PodAffinity != nil {
		for i := range a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			t, err := mkTerm(&a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[i], countMatching)
			if err != nil {
				return err
			}
			c.reqAff = append(c.reqAff, t)
		}
		for i := range a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			w := &a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution[i]
			t, err := mkTerm(&w.PodAffinityTerm, countMatching)
			if err != nil {
				return err
			}
			c.prefTerms = append(c.prefTerms, prefTerm{weight: w.Weight, t: t})
		}
	}
	if a != nil && a.PodAntiAffinity != nil {
		for i := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			term := &a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[i]
			t, err := mkTerm(term, countMatching)
			if err != nil {
				return err
			}
			c.reqAnti = append(c.reqAnti, t)
			o, err := mkTerm(term, countOwners)
			if err != nil {
				return err
			}
			c.owns = append(c.owns, o.g)
			if t.g.key == LabelHostname {
				c.hostCapped = true
			}
		}
		for i := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			w := &a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[i]
			t, err := mkTerm(&w.PodAffinityTerm, countMatching)
			if err != nil {
				return err
			}
			c.prefTerms = append(c.prefTerms, prefTerm{weight: w.Weight, anti: true, t: t})
			if t.g.key == LabelHostname {
				c.hostCapped = true
			}
		}
	}
	sort.SliceStable(c.prefTerms, func(i, j int) bool { return c.prefTerms[i].weight < c.prefTerms[j].weight })
	for i := range p.Spec.TopologySpreadConstraints {
		t := &p.Spec.TopologySpreadConstraints[i]
		if t.MaxSkew <= 0 {
			return fmt.Errorf("topology spread on %q has maxSkew %d", t.TopologyKey, t.MaxSkew)
		}
		sel, err := selectorFor(t.LabelSelector, t.MatchLabelKeys, p.Labels)
		if err != nil {
			return err
		}
		if sel.Empty() {
			// kube-scheduler counts no pod for an empty selector, so the
			// skew is at most 1 (the pod itself): never refused.
			continue
		}
		g := topo.group(countMatching, t.TopologyKey, false, []string{p.Namespace}, sel)
		s := spreadC{g: g, maxSkew: t.MaxSkew, self: g.matches(p.Namespace, p.Labels), hard: t.WhenUnsatisfiable != corev1.ScheduleAnyway,
			affHonor:   t.NodeAffinityPolicy == nil || *t.NodeAffinityPolicy == corev1.NodeInclusionPolicyHonor,
			taintHonor: t.NodeTaintsPolicy != nil && *t.NodeTaintsPolicy == corev1.NodeInclusionPolicyHonor}
		if t.MinDomains != nil {
			s.minDomains = *t.MinDomains
		}
		if t.WhenUnsatisfiable == corev1.ScheduleAnyway {
			c.softSpread = append(c.softSpread, s)
		} else {
			c.hardSpread = append(c.hardSpread, s)
		}
		if t.TopologyKey == LabelHostname {
			c.hostCapped = true
		}
	}
	return nil
}

// tolerates reports whether the class tolerates every NoSchedule/NoExecute
// taint (and PreferNoSchedule unless relaxed), returning the first one not tolerated.
func tolerates(tols []corev1.Toleration, taints []corev1.Taint, tolPrefer bool) (bool, *corev1.Taint) {
	for i := range taints {
		t := &taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule && tolPrefer {
			continue
		}
		ok := false
		for j := range tols {
			if ToleratesTaint(&tols[j], t) {
				ok = true
				break
			}
		}
		if !ok {
			return false, t
		}
	}
	return true, nil
}

// ToleratesTaint is the Kubernetes toleration matching rule (empty effect
// matches every effect, empty key with Exists matches every key, Exists
// ignores the value), without the klog dependency of corev1's method.
func ToleratesTaint(tol *corev1.Toleration, t *corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Key == "" {
		return tol.Operator == corev1.TolerationOpExists
	}
	if tol.Key != t.Key {
		return false
	}
	switch tol.Operator {
	case corev1.TolerationOpExists:
		return true
	case "", corev1.TolerationOpEqual:
		return tol.Value == t.Value
	}
	return false
}
