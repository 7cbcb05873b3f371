package scheduling

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/podreq"
)

// ReplayRefusal is a planned pod that kube-scheduler would not bind on the
// node the plan gives it.
type ReplayRefusal struct {
	Pod string `json:"pod"`
	// Node is the existing node or in-flight NodeClaim name, or "new-<i>"
	// for Result.NewNodeClaims[i].
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// Replay checks a plan against the contract in README.md ("The contract"):
// every planned pod, bound in kube-scheduler's queue order (priority
// descending, then creation time, then the order of Snapshot.Pods), must pass
// kube-scheduler's filters on its planned node, with the cluster's existing
// pods and the pods bound before it in place and every planned node present.
// The filters are NodeResourcesFit, TaintToleration (NoSchedule and
// NoExecute), NodeAffinity (nodeSelector and required terms),
// PodTopologySpread (DoNotSchedule constraints, counted as
// kube-scheduler counts them: every pod of the namespace matching the
// selector on an eligible node, minDomains, nodeAffinityPolicy and
// nodeTaintsPolicy) and InterPodAffinity (required affinity and
// anti-affinity, both directions).
//
// A new NodeClaim is modelled as the node of its first launch option: that
// type's labels and allocatable, the option's zone and capacity type, the
// claim's labels and single-valued requirements, and its DaemonSet overhead
// (Requests minus its pods). Replay is written independently of Solve (it
// shares only the toleration rule and podreq) so that it can catch Solve's
// mistakes; it is meant for tests, benchmarks and `dovetail simulate`.
func Replay(snap Snapshot, res Result) []ReplayRefusal {
	r := newReplayer(&snap)
	r.addExisting()
	for i := range res.NewNodeClaims {
		r.addNewClaim(i, &res.NewNodeClaims[i])
	}
	type planned struct {
		pod  *corev1.Pod
		node int
		rank int
	}
	index := map[*corev1.Pod]int{}
	for i, p := range snap.Pods {
		index[p] = i
	}
	var plan []planned
	for i := range res.NewNodeClaims {
		n := r.byName[fmt.Sprintf("new-%d", i)]
		for _, p := range res.NewNodeClaims[i].Pods {
			plan = append(plan, planned{pod: p, node: n, rank: index[p]})
		}
	}
	var out []ReplayRefusal
	for _, pl := range res.Placements {
		name := pl.Node
		if name == "" {
			name = pl.NodeClaim
		}
		n, ok := r.byName[name]
		if !ok {
			out = append(out, ReplayRefusal{Pod: pl.PodName, Node: name, Reason: "planned node does not exist"})
			continue
		}
		plan = append(plan, planned{pod: pl.Pod, node: n, rank: index[pl.Pod]})
	}
	sort.SliceStable(plan, func(i, j int) bool {
		a, b := plan[i].pod, plan[j].pod
		if pa, pb := podPriority(a), podPriority(b); pa != pb {
			return pa > pb
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return plan[i].rank < plan[j].rank
	})
	for _, pl := range plan {
		r.register(pl.pod)
	}
	r.countBound()
	for _, pl := range plan {
		if reason := r.check(pl.pod, r.nodes[pl.node]); reason != "" {
			out = append(out, ReplayRefusal{Pod: pl.pod.Namespace + "/" + pl.pod.Name, Node: r.nodes[pl.node].name, Reason: reason})
			continue
		}
		r.bind(pl.pod, pl.node)
	}
	return out
}

// QueueLess orders pods as kube-scheduler's active queue does (priority
// descending, then creation time); ties keep the caller's order.
func QueueLess(a, b *corev1.Pod) bool {
	if pa, pb := podPriority(a), podPriority(b); pa != pb {
		return pa > pb
	}
	return a.CreationTimestamp.Before(&b.CreationTimestamp)
}

func podPriority(p *corev1.Pod) int32 {
	if p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

type rNode struct {
	name   string
	labels map[string]string
	taints []corev1.Taint
	alloc  map[corev1.ResourceName]int64 // milli-units
	used   map[corev1.ResourceName]int64
	npods  int64
	pods   []*corev1.Pod
}

type replayer struct {
	snap   *Snapshot
	nodes  []*rNode
	byName map[string]int
	types  map[string]map[string]*cloud.InstanceType // pool → name → type

	spreads map[string]*rSpread // ns|selector → per-node counts
	affs    map[string]*rAffSet // required affinity term lists
	antis   map[string]*rTerm   // incoming anti-affinity terms (with domain counts)
	owners  map[string]*rTerm   // bound pods' anti-affinity terms (domains they occupy)
	elig    map[string][]bool
}

type rSpread struct {
	ns    string
	sel   labels.Selector
	count []int32
}

// rTerm is a pod (anti-)affinity term with its namespaces resolved.
type rTerm struct {
	key    string
	nsAll  bool
	ns     map[string]bool
	sel    labels.Selector
	counts map[string]int32 // by topology value
}

func (t *rTerm) matches(p *corev1.Pod) bool {
	return (t.nsAll || t.ns[p.Namespace]) && t.sel.Matches(labels.Set(p.Labels))
}

type rAffSet struct {
	terms  []*rTerm
	counts map[[2]string]int32 // (key, value) of pods matching all terms
}

func newReplayer(s *Snapshot) *replayer {
	r := &replayer{snap: s, byName: map[string]int{}, types: map[string]map[string]*cloud.InstanceType{},
		spreads: map[string]*rSpread{}, affs: map[string]*rAffSet{}, antis: map[string]*rTerm{}, owners: map[string]*rTerm{}, elig: map[string][]bool{}}
	for pool, list := range s.InstanceTypes {
		m := map[string]*cloud.InstanceType{}
		for _, it := range list {
			if it != nil {
				m[it.Name] = it
			}
		}
		r.types[pool] = m
	}
	return r
}

func (r *replayer) typeOf(pool, name string) *cloud.InstanceType {
	if m, ok := r.types[pool]; ok {
		return m[name]
	}
	return r.types[""][name]
}

func milliList(l corev1.ResourceList) map[corev1.ResourceName]int64 {
	out := make(map[corev1.ResourceName]int64, len(l))
	for k, q := range l {
		out[k] = q.MilliValue()
	}
	return out
}

func (r *replayer) addNode(n *rNode) int {
	if n.labels[LabelHostname] == "" {
		l := make(map[string]string, len(n.labels)+1)
		for k, v := range n.labels {
			l[k] = v
		}
		l[LabelHostname] = n.name
		n.labels = l
	}
	if n.used == nil {
		n.used = map[corev1.ResourceName]int64{}
	}
	r.byName[n.name] = len(r.nodes)
	r.nodes = append(r.nodes, n)
	return len(r.nodes) - 1
}

func (r *replayer) addExisting() {
	for i := range r.snap.Nodes {
		sn := &r.snap.Nodes[i]
		n := &rNode{name: sn.Name, labels: sn.Labels, taints: sn.Taints, alloc: milliList(sn.Allocatable)}
		if sn.Unschedulable {
			n.taints = append(append([]corev1.Taint(nil), n.taints...), corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule})
		}
		for _, p := range sn.Pods {
			if p != nil && !podTerminal(p) {
				n.pods = append(n.pods, p)
			}
		}
		r.addNode(n)
	}
	for i := range r.snap.NodeClaims {
		nc := &r.snap.NodeClaims[i]
		lbls := map[string]string{}
		var typeNames []string
		for _, q := range nc.Requirements {
			if q.Operator == corev1.NodeSelectorOpIn && len(q.Values) == 1 {
				lbls[q.Key] = q.Values[0]
			}
			if q.Key == LabelInstanceType && q.Operator == corev1.NodeSelectorOpIn {
				typeNames = q.Values
			}
		}
		for k, v := range nc.Labels {
			lbls[k] = v
		}
		lbls[LabelNodePool] = nc.NodePool
		n := &rNode{name: nc.Name, labels: lbls, taints: nc.Taints, alloc: milliList(nc.Allocatable)}
		if len(nc.Allocatable) == 0 {
			// The smallest allocatable among the claim's options, as Solve assumes.
			for _, tn := range typeNames {
				it := r.typeOf(nc.NodePool, tn)
				if it == nil {
					continue
				}
				a := milliList(it.Allocatable)
				if len(n.alloc) == 0 {
					n.alloc = a
					continue
				}
				for k, v := range n.alloc {
					n.alloc[k] = min(v, a[k])
				}
			}
		}
		for _, p := range nc.Pods {
			if p != nil {
				n.pods = append(n.pods, p)
			}
		}
		r.addNode(n)
	}
}

func (r *replayer) addNewClaim(i int, nc *NewNodeClaim) {
	name := fmt.Sprintf("new-%d", i)
	opt := cloud.LaunchOption{Zone: nc.Zone, CapacityType: nc.CapacityType}
	if len(nc.Options) > 0 {
		opt = nc.Options[0]
	} else if len(nc.InstanceTypes) > 0 {
		opt.InstanceType = nc.InstanceTypes[0]
	}
	lbls := map[string]string{}
	it := r.typeOf(nc.NodePool, opt.InstanceType)
	n := &rNode{name: name, labels: lbls, taints: nc.Taints, alloc: map[corev1.ResourceName]int64{}, used: map[corev1.ResourceName]int64{}}
	if it != nil {
		for k, v := range it.Labels {
			lbls[k] = v
		}
		n.alloc = milliList(it.Allocatable)
	}
	for _, q := range nc.Requirements {
		if q.Operator == corev1.NodeSelectorOpIn && len(q.Values) == 1 {
			lbls[q.Key] = q.Values[0]
		}
	}
	for k, v := range nc.Labels {
		lbls[k] = v
	}
	lbls[LabelInstanceType] = opt.InstanceType
	if opt.Zone != "" {
		lbls[LabelZone] = opt.Zone
	}
	if opt.CapacityType != "" {
		lbls[LabelCapacityType] = opt.CapacityType
	}
	if r.snap.Region != "" {
		lbls[LabelRegion] = r.snap.Region
	}
	lbls[LabelNodePool] = nc.NodePool
	// DaemonSet pods land first: charge what the claim's requests hold
	// beyond its pods.
	ds := milliList(nc.Requests)
	for _, p := range nc.Pods {
		for k, q := range podreq.Requests(p) {
			ds[k] -= q.MilliValue()
		}
	}
	for k, v := range ds {
		if k != corev1.ResourcePods && v > 0 {
			n.used[k] = v
		}
	}
	if v := ds[corev1.ResourcePods] / 1000; v > int64(len(nc.Pods)) {
		n.npods = v - int64(len(nc.Pods))
	}
	r.addNode(n)
}

// namespaces resolves a term's namespaces for a pod in namespace ns:
// namespaces ∪ namespaceSelector matches; neither means the pod's own
// namespace; an empty selector means all.
func (r *replayer) namespaces(ns string, t *corev1.PodAffinityTerm) (bool, map[string]bool, error) {
	out := map[string]bool{}
	for _, n := range t.Namespaces {
		out[n] = true
	}
	if t.NamespaceSelector == nil {
		if len(out) == 0 {
			out[ns] = true
		}
		return false, out, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(t.NamespaceSelector)
	if err != nil {
		return false, nil, fmt.Errorf("namespace selector: %w", err)
	}
	if sel.Empty() || r.snap.Namespaces == nil {
		return true, nil, nil
	}
	for name, l := range r.snap.Namespaces {
		if sel.Matches(labels.Set(l)) {
			out[name] = true
		}
	}
	return false, out, nil
}

func termSelector(ls *metav1.LabelSelector, keys []string, podLabels map[string]string) (labels.Selector, error) {
	if ls == nil {
		return labels.Nothing(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("label selector: %w", err)
	}
	for _, k := range keys {
		if v, ok := podLabels[k]; ok {
			req, err := labels.NewRequirement(k, selection.Equals, []string{v})
			if err != nil {
				return nil, fmt.Errorf("matchLabelKeys %q: %w", k, err)
			}
			sel = sel.Add(*req)
		}
	}
	return sel, nil
}

func (r *replayer) term(p *corev1.Pod, t *corev1.PodAffinityTerm) (*rTerm, string, error) {
	sel, err := termSelector(t.LabelSelector, t.MatchLabelKeys, p.Labels)
	if err != nil {
		return nil, "", err
	}
	all, ns, err := r.namespaces(p.Namespace, t)
	if err != nil {
		return nil, "", err
	}
	names := make([]string, 0, len(ns))
	for n := range ns {
		names = append(names, n)
	}
	sort.Strings(names)
	key := fmt.Sprintf("%s|%t|%s|%s", t.TopologyKey, all, strings.Join(names, ","), sel.String())
	return &rTerm{key: t.TopologyKey, nsAll: all, ns: ns, sel: sel, counts: map[string]int32{}}, key, nil
}

type rSpreadC struct {
	c   *corev1.TopologySpreadConstraint
	s   *rSpread
	sel labels.Selector
}

func (r *replayer) hardSpreads(p *corev1.Pod) ([]rSpreadC, error) {
	var out []rSpreadC
	for i := range p.Spec.TopologySpreadConstraints {
		c := &p.Spec.TopologySpreadConstraints[i]
		if c.WhenUnsatisfiable != corev1.DoNotSchedule && c.WhenUnsatisfiable != "" {
			continue
		}
		sel, err := termSelector(c.LabelSelector, c.MatchLabelKeys, p.Labels)
		if err != nil {
			return nil, err
		}
		k := p.Namespace + "|" + sel.String()
		s := r.spreads[k]
		if s == nil {
			s = &rSpread{ns: p.Namespace, sel: sel}
			r.spreads[k] = s
		}
		out = append(out, rSpreadC{c: c, s: s, sel: sel})
	}
	return out, nil
}

func (r *replayer) affTerms(p *corev1.Pod) (*rAffSet, error) {
	a := p.Spec.Affinity
	if a == nil || a.PodAffinity == nil || len(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution) == 0 {
		return nil, nil
	}
	var keys []string
	var terms []*rTerm
	for i := range a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		t, k, err := r.term(p, &a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[i])
		if err != nil {
			return nil, err
		}
		terms, keys = append(terms, t), append(keys, k)
	}
	k := strings.Join(keys, ";")
	if s, ok := r.affs[k]; ok {
		return s, nil
	}
	s := &rAffSet{terms: terms, counts: map[[2]string]int32{}}
	r.affs[k] = s
	return s, nil
}

func (r *replayer) antiTerms(p *corev1.Pod, into map[string]*rTerm) ([]*rTerm, error) {
	a := p.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		return nil, nil
	}
	var out []*rTerm
	for i := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		t, k, err := r.term(p, &a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[i])
		if err != nil {
			return nil, err
		}
		if e, ok := into[k]; ok {
			t = e
		} else {
			into[k] = t
		}
		out = append(out, t)
	}
	return out, nil
}

// register compiles a planned pod's terms before any pod is counted, so
// every count below includes every bound pod.
func (r *replayer) register(p *corev1.Pod) {
	_, _ = r.hardSpreads(p)
	_, _ = r.affTerms(p)
	_, _ = r.antiTerms(p, r.antis)
}

func (r *replayer) countBound() {
	for i, n := range r.nodes {
		pods := n.pods
		n.pods = nil
		for _, p := range pods {
			r.bind(p, i)
		}
	}
}

func (r *replayer) bind(p *corev1.Pod, ni int) {
	n := r.nodes[ni]
	n.pods = append(n.pods, p)
	n.npods++
	for k, q := range podreq.Requests(p) {
		n.used[k] += q.MilliValue()
	}
	if p.DeletionTimestamp == nil {
		set := labels.Set(p.Labels)
		for _, s := range r.spreads {
			if s.ns == p.Namespace && !s.sel.Empty() && s.sel.Matches(set) {
				for len(s.count) <= ni {
					s.count = append(s.count, 0)
				}
				s.count[ni]++
			}
		}
	}
	for _, a := range r.affs {
		all := true
		for _, t := range a.terms {
			if !t.matches(p) {
				all = false
				break
			}
		}
		if !all {
			continue
		}
		for _, t := range a.terms {
			if v, ok := n.labels[t.key]; ok {
				a.counts[[2]string{t.key, v}]++
			}
		}
	}
	for _, t := range r.antis {
		if v, ok := n.labels[t.key]; ok && t.matches(p) {
			t.counts[v]++
		}
	}
	owned, err := r.antiTerms(p, r.owners)
	if err == nil {
		for _, t := range owned {
			if v, ok := n.labels[t.key]; ok {
				t.counts[v]++
			}
		}
	}
}

// check runs the filters; it returns the first refusal or "".
func (r *replayer) check(p *corev1.Pod, n *rNode) string {
	for k, q := range podreq.Requests(p) {
		need := q.MilliValue()
		if need == 0 {
			continue
		}
		if a := n.alloc[k]; n.used[k]+need > a {
			return fmt.Sprintf("insufficient %s: %dm requested, %dm of %dm free", k, need, a-n.used[k], a)
		}
	}
	if a, ok := n.alloc[corev1.ResourcePods]; ok && (n.npods+1)*1000 > a {
		return fmt.Sprintf("too many pods: %d allowed", a/1000)
	}
	for i := range n.taints {
		t := &n.taints[i]
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		ok := false
		for j := range p.Spec.Tolerations {
			if ToleratesTaint(&p.Spec.Tolerations[j], t) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Sprintf("untolerated taint %s=%s:%s", t.Key, t.Value, t.Effect)
		}
	}
	if !nodeAffinityMatches(p, n) {
		return "node affinity / nodeSelector does not match"
	}
	if reason := r.checkSpread(p, n); reason != "" {
		return reason
	}
	return r.checkInterPod(p, n)
}

func (r *replayer) checkSpread(p *corev1.Pod, n *rNode) string {
	cs, err := r.hardSpreads(p)
	if err != nil {
		return err.Error()
	}
	if len(cs) == 0 {
		return ""
	}
	podSet := labels.Set(p.Labels)
	for _, c := range cs {
		key := c.c.TopologyKey
		val, ok := n.labels[key]
		if !ok {
			return "node lacks topology label " + key
		}
		elig := r.eligible(p, cs, c.c)
		dom := map[string]int32{}
		for mi, m := range r.nodes {
			if !elig[mi] {
				continue
			}
			var cnt int32
			if mi < len(c.s.count) {
				cnt = c.s.count[mi]
			}
			dom[m.labels[key]] += cnt
		}
		minMatch := int32(1 << 30)
		for _, v := range dom {
			minMatch = min(minMatch, v)
		}
		if c.c.MinDomains != nil && int32(len(dom)) < *c.c.MinDomains {
			minMatch = 0
		}
		self := int32(0)
		if c.sel.Matches(podSet) {
			self = 1
		}
		here := dom[val]
		if skew := here + self - minMatch; skew > c.c.MaxSkew {
			return fmt.Sprintf("topology spread on %s: %d matching pods in %s, global minimum %d, maxSkew %d", key, here, val, minMatch, c.c.MaxSkew)
		}
	}
	return ""
}

// eligible lists the nodes a spread constraint counts: they carry every
// topology key of the pod's hard constraints and pass its node affinity
// (nodeAffinityPolicy Honor, the default) and its taints (nodeTaintsPolicy
// Honor; the default Ignore counts tainted nodes).
func (r *replayer) eligible(p *corev1.Pod, cs []rSpreadC, c *corev1.TopologySpreadConstraint) []bool {
	affHonor := c.NodeAffinityPolicy == nil || *c.NodeAffinityPolicy == corev1.NodeInclusionPolicyHonor
	taintHonor := c.NodeTaintsPolicy != nil && *c.NodeTaintsPolicy == corev1.NodeInclusionPolicyHonor
	var b strings.Builder
	fmt.Fprintf(&b, "%t|%t|", affHonor, taintHonor)
	for _, o := range cs {
		b.WriteString(o.c.TopologyKey)
		b.WriteByte(',')
	}
	if affHonor {
		writeMap(&b, p.Spec.NodeSelector)
		if a := p.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
			for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
				writeTerm(&b, t)
			}
		}
	}
	if taintHonor {
		for _, t := range p.Spec.Tolerations {
			fmt.Fprintf(&b, "%s/%s/%s/%s;", t.Key, t.Operator, t.Value, t.Effect)
		}
	}
	k := b.String()
	if e, ok := r.elig[k]; ok {
		return e
	}
	out := make([]bool, len(r.nodes))
	for i, n := range r.nodes {
		ok := true
		for _, o := range cs {
			if _, has := n.labels[o.c.TopologyKey]; !has {
				ok = false
			}
		}
		if ok && affHonor {
			ok = nodeAffinityMatches(p, n)
		}
		if ok && taintHonor {
			if tol, _ := tolerates(p.Spec.Tolerations, filterTaints(n.taints), true); !tol {
				ok = false
			}
		}
		out[i] = ok
	}
	r.elig[k] = out
	return out
}

func filterTaints(ts []corev1.Taint) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range ts {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, t)
		}
	}
	return out
}

func (r *replayer) checkInterPod(p *corev1.Pod, n *rNode) string {
	if a, err := r.affTerms(p); err != nil {
		return err.Error()
	} else if a != nil {
		exist := true
		for _, t := range a.terms {
			v, ok := n.labels[t.key]
			if !ok {
				return "node lacks topology label " + t.key + " of a pod affinity term"
			}
			if a.counts[[2]string{t.key, v}] <= 0 {
				exist = false
			}
		}
		if !exist {
			self := true
			for _, t := range a.terms {
				self = self && t.matches(p)
			}
			if len(a.counts) > 0 || !self {
				return "pod affinity: no matching pod in the node's domain"
			}
		}
	}
	antis, err := r.antiTerms(p, r.antis)
	if err != nil {
		return err.Error()
	}
	for _, t := range antis {
		if v, ok := n.labels[t.key]; ok && t.counts[v] > 0 {
			return fmt.Sprintf("pod anti-affinity: a matching pod runs in %s=%s", t.key, v)
		}
	}
	for _, t := range r.owners {
		if v, ok := n.labels[t.key]; ok && t.counts[v] > 0 && t.matches(p) {
			return fmt.Sprintf("an existing pod's anti-affinity repels the pod from %s=%s", t.key, v)
		}
	}
	return ""
}

// nodeAffinityMatches is kube-scheduler's NodeAffinity filter: every
// nodeSelector label, and one of the required terms.
func nodeAffinityMatches(p *corev1.Pod, n *rNode) bool {
	for k, v := range p.Spec.NodeSelector {
		if n.labels[k] != v {
			return false
		}
	}
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if termMatches(t, n) {
			return true
		}
	}
	return false
}

func termMatches(t corev1.NodeSelectorTerm, n *rNode) bool {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return false
	}
	for _, e := range t.MatchExpressions {
		if !exprMatches(e, n.labels) {
			return false
		}
	}
	for _, e := range t.MatchFields {
		if e.Key != "metadata.name" || !exprMatches(corev1.NodeSelectorRequirement{Key: e.Key, Operator: e.Operator, Values: e.Values}, map[string]string{"metadata.name": n.name}) {
			return false
		}
	}
	return true
}

func exprMatches(e corev1.NodeSelectorRequirement, l map[string]string) bool {
	v, has := l[e.Key]
	in := func() bool {
		for _, x := range e.Values {
			if x == v {
				return true
			}
		}
		return false
	}
	num := func(cmp func(a, b int64) bool) bool {
		if !has || len(e.Values) != 1 {
			return false
		}
		a, err1 := strconv.ParseInt(v, 10, 64)
		b, err2 := strconv.ParseInt(e.Values[0], 10, 64)
		return err1 == nil && err2 == nil && cmp(a, b)
	}
	switch e.Operator {
	case corev1.NodeSelectorOpIn:
		return has && in()
	case corev1.NodeSelectorOpNotIn:
		return !has || !in()
	case corev1.NodeSelectorOpExists:
		return has
	case corev1.NodeSelectorOpDoesNotExist:
		return !has
	case corev1.NodeSelectorOpGt:
		return num(func(a, b int64) bool { return a > b })
	case corev1.NodeSelectorOpLt:
		return num(func(a, b int64) bool { return a < b })
	case OpGte:
		return num(func(a, b int64) bool { return a >= b })
	case OpLte:
		return num(func(a, b int64) bool { return a <= b })
	}
	return false
}
