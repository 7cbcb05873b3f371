// Package capacitytype demotes reserved NodeClaims and Nodes to on-demand
// once their capacity reservation is gone, as Karpenter v1.14's
// capacitytype controller does: when an On-Demand Capacity Reservation
// expires or is cancelled its instances keep running as ordinary
// on-demand instances, and EC2 stops naming the reservation on them. The
// planner (Plan) is pure; the controller lists, plans and patches.
package capacitytype

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
)

// ReservedLabels are the labels a reserved NodeClaim carries that go when
// it becomes on-demand (Karpenter's ReservedCapacityLabels).
var ReservedLabels = []string{
	karpv1.LabelCapacityReservationID,
	karpv1.LabelCapacityReservationType,
	karpv1.AWSGroup + "/capacity-reservation-interruptible",
}

// Demotion is one object to relabel on-demand.
type Demotion struct {
	Kind string // NodeClaim | Node
	Name string
}

// Plan returns the NodeClaims labelled reserved whose instance EC2 now
// reports as on-demand, and their registered Nodes still labelled
// reserved. Deleting objects are left alone (they are draining already),
// and so are Nodes not yet registered (their labels are not synced yet).
func Plan(claims []karpv1.NodeClaim, nodes []corev1.Node, instances []*cloud.Instance) []Demotion {
	byProvider := map[string]*cloud.Instance{}
	for _, in := range instances {
		if in != nil {
			byProvider[in.ProviderID] = in
		}
	}
	nodeByName := map[string]*corev1.Node{}
	for i := range nodes {
		nodeByName[nodes[i].Name] = &nodes[i]
	}
	var out []Demotion
	for _, c := range claims {
		in := byProvider[c.Status.ProviderID]
		if c.DeletionTimestamp != nil || in == nil || in.CapacityType != cloud.CapacityTypeOnDemand {
			continue
		}
		if c.Labels[karpv1.CapacityTypeLabelKey] == karpv1.CapacityTypeReserved {
			out = append(out, Demotion{Kind: "NodeClaim", Name: c.Name})
		}
		if n := nodeByName[c.Status.NodeName]; n != nil && n.DeletionTimestamp == nil &&
			n.Labels[karpv1.NodeRegisteredLabelKey] == "true" && n.Labels[karpv1.CapacityTypeLabelKey] == karpv1.CapacityTypeReserved {
			out = append(out, Demotion{Kind: "Node", Name: n.Name})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Lister lists the cluster's instances (cloud/ec2.Provider.List).
type Lister interface {
	List(ctx context.Context) ([]*cloud.Instance, error)
}

// Controller runs Plan every Interval and applies it.
type Controller struct {
	C        client.Client
	Cloud    Lister
	Interval time.Duration // default 1 min, as Karpenter
	Log      *slog.Logger
}

// Run passes until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	iv := c.Interval
	if iv <= 0 {
		iv = time.Minute
	}
	return leader.Every(ctx, iv, c.log(), "capacity type", c.Pass)
}

func (c *Controller) log() *slog.Logger {
	if c.Log == nil {
		return slog.Default()
	}
	return c.Log
}

// Pass lists, plans and applies once.
func (c *Controller) Pass(ctx context.Context) error {
	instances, err := c.Cloud.List(ctx)
	if err != nil {
		return fmt.Errorf("list instances: %w", err)
	}
	var claims karpv1.NodeClaimList
	if err := c.C.List(ctx, &claims); err != nil {
		return fmt.Errorf("list nodeclaims: %w", err)
	}
	var nodes corev1.NodeList
	if err := c.C.List(ctx, &nodes); err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var errs []error
	for _, d := range Plan(claims.Items, nodes.Items, instances) {
		var obj client.Object = &karpv1.NodeClaim{}
		if d.Kind == "Node" {
			obj = &corev1.Node{}
		}
		if err := c.demote(ctx, obj, d.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		c.log().InfoContext(ctx, "capacity reservation gone: relabelled on-demand", "kind", d.Kind, "name", d.Name)
	}
	return errors.Join(errs...)
}

func (c *Controller) demote(ctx context.Context, obj client.Object, name string) error {
	if err := c.C.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	base := obj.DeepCopyObject().(client.Object)
	labels := obj.GetLabels()
	if labels == nil || labels[karpv1.CapacityTypeLabelKey] != karpv1.CapacityTypeReserved {
		return nil
	}
	labels[karpv1.CapacityTypeLabelKey] = karpv1.CapacityTypeOnDemand
	for _, l := range ReservedLabels {
		delete(labels, l)
	}
	obj.SetLabels(labels)
	if err := c.C.Patch(ctx, obj, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("relabel %s on-demand: %w", name, err)
	}
	return nil
}
