// Package consistency is Karpenter v1.14's nodeclaim.consistency
// controller: it compares each initialized NodeClaim with its Node and,
// when the Node came up smaller than the instance type the claim was
// launched as (the NodeShape check: less than 90 % of a requested
// resource's expected capacity), records a FailedConsistencyCheck Warning
// on the NodeClaim and sets its ConsistentStateFound condition False
// (True when nothing is wrong). Each NodeClaim is checked at most once per
// ScanPeriod. Plan is pure; Controller lists, plans and applies.
package consistency

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/coordinator/karpenterevents"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
)

// ScanPeriod is how often one NodeClaim is checked (Karpenter's scanPeriod).
const ScanPeriod = 10 * time.Minute

// minShare is the share of the expected capacity below which a Node is
// inconsistent with its NodeClaim (Karpenter's 90 %).
const minShare = 0.90

// Condition reason and message Karpenter sets when a check fails.
const (
	ReasonFailed  = "ConsistencyCheckFailed"
	messageFailed = "Consistency Check Failed"
)

// Issues returns what is inconsistent between an initialized NodeClaim and
// its Node: for every resource the claim requests, a Node capacity below 90 %
// of the capacity the claim expects (status.capacity, the launched instance
// type's), in Karpenter's words.
func Issues(claim *karpv1.NodeClaim, node *corev1.Node) []string {
	if claim == nil || node == nil {
		return nil
	}
	names := make([]string, 0, len(claim.Spec.Resources.Requests))
	for r := range claim.Spec.Resources.Requests {
		names = append(names, string(r))
	}
	sort.Strings(names)
	var out []string
	for _, name := range names {
		r := corev1.ResourceName(name)
		requested := claim.Spec.Resources.Requests[r]
		expected, ok := claim.Status.Capacity[r]
		if requested.IsZero() || !ok || expected.IsZero() {
			continue
		}
		found := node.Status.Capacity[r]
		share := found.AsApproximateFloat64() / expected.AsApproximateFloat64()
		if share < minShare {
			out = append(out, fmt.Sprintf("expected %s of resource %s, but found %s (%0.1f%% of expected)",
				expected.String(), r, found.String(), share*100))
		}
	}
	return out
}

// Finding is the outcome of checking one NodeClaim.
type Finding struct {
	NodeClaim string
	UID       types.UID
	Issues    []string
	// Condition is the ConsistentStateFound status to write, or "" when
	// the claim already has it.
	Condition metav1.ConditionStatus
}

// Plan checks the NodeClaims due at now (not checked since now-ScanPeriod
// according to last, by UID): launched (a provider ID), initialized, not
// deleting, with exactly one Node of that provider ID. It returns the
// findings in NodeClaim name order; the caller records their time in last.
func Plan(claims []karpv1.NodeClaim, nodes []corev1.Node, last map[types.UID]time.Time, now time.Time) []Finding {
	byProvider := map[string][]*corev1.Node{}
	for i := range nodes {
		if id := nodes[i].Spec.ProviderID; id != "" {
			byProvider[id] = append(byProvider[id], &nodes[i])
		}
	}
	var out []Finding
	for i := range claims {
		c := &claims[i]
		if c.Status.ProviderID == "" || c.DeletionTimestamp != nil || !c.IsTrue(karpv1.ConditionTypeInitialized) {
			continue
		}
		if at, ok := last[c.UID]; ok && now.Sub(at) < ScanPeriod {
			continue
		}
		// No Node, or two for one instance: the lifecycle's business, not
		// a consistency finding (as Karpenter).
		ns := byProvider[c.Status.ProviderID]
		if len(ns) != 1 {
			continue
		}
		f := Finding{NodeClaim: c.Name, UID: c.UID, Issues: Issues(c, ns[0])}
		switch {
		case len(f.Issues) > 0:
			if cur := c.GetCondition(karpv1.ConditionTypeConsistentStateFound); cur == nil || cur.Status != metav1.ConditionFalse {
				f.Condition = metav1.ConditionFalse
			}
		case !c.IsTrue(karpv1.ConditionTypeConsistentStateFound):
			f.Condition = metav1.ConditionTrue
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeClaim < out[j].NodeClaim })
	return out
}

// Controller runs Plan every Interval while its replica leads.
type Controller struct {
	C        client.Client
	Events   record.EventRecorder
	Interval time.Duration // between passes; default 1 min
	Now      func() time.Time
	Log      *slog.Logger

	last map[types.UID]time.Time
}

// Run passes until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	iv := c.Interval
	if iv <= 0 {
		iv = time.Minute
	}
	return leader.Every(ctx, iv, c.log(), "consistency", c.Pass)
}

func (c *Controller) log() *slog.Logger {
	if c.Log == nil {
		return slog.Default()
	}
	return c.Log
}

func (c *Controller) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// Pass lists, plans and applies once.
func (c *Controller) Pass(ctx context.Context) error {
	var claims karpv1.NodeClaimList
	if err := c.C.List(ctx, &claims); err != nil {
		return fmt.Errorf("list nodeclaims: %w", err)
	}
	var nodes corev1.NodeList
	if err := c.C.List(ctx, &nodes); err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	now := c.now()
	if c.last == nil {
		c.last = map[types.UID]time.Time{}
	}
	live := make(map[types.UID]bool, len(claims.Items))
	byName := make(map[string]*karpv1.NodeClaim, len(claims.Items))
	for i := range claims.Items {
		live[claims.Items[i].UID] = true
		byName[claims.Items[i].Name] = &claims.Items[i]
	}
	for uid := range c.last {
		if !live[uid] {
			delete(c.last, uid)
		}
	}
	for _, f := range Plan(claims.Items, nodes.Items, c.last, now) {
		c.last[f.UID] = now
		claim := byName[f.NodeClaim]
		for _, issue := range f.Issues {
			c.log().InfoContext(ctx, "failed consistency check", "nodeclaim", f.NodeClaim, "issue", issue)
			if c.Events != nil {
				// A reference, not the object: listed items carry no kind
				// for the recorder's scheme to find.
				ref := &corev1.ObjectReference{APIVersion: karpv1.SchemeGroupVersion.String(), Kind: "NodeClaim", Name: claim.Name, UID: claim.UID}
				c.Events.Event(ref, corev1.EventTypeWarning, karpenterevents.FailedConsistencyCheck, issue)
			}
		}
		if f.Condition == "" {
			continue
		}
		if err := c.setCondition(ctx, claim, f.Condition, now); err != nil {
			// Checked again next pass rather than in ScanPeriod.
			delete(c.last, f.UID)
			if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				return fmt.Errorf("nodeclaim %s: %w", f.NodeClaim, err)
			}
		}
	}
	return nil
}

// setCondition writes ConsistentStateFound with an optimistic lock, so a
// concurrent status write (the launcher's) is not overwritten.
func (c *Controller) setCondition(ctx context.Context, claim *karpv1.NodeClaim, status metav1.ConditionStatus, now time.Time) error {
	base := claim.DeepCopy()
	cond := metav1.Condition{Type: karpv1.ConditionTypeConsistentStateFound, Status: status,
		Reason: karpv1.ConditionTypeConsistentStateFound, LastTransitionTime: metav1.NewTime(now)}
	if status == metav1.ConditionFalse {
		cond.Reason, cond.Message = ReasonFailed, messageFailed
	}
	claim.SetCondition(cond)
	return c.C.Status().Patch(ctx, claim, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}
