// Package cloudmetrics serves Karpenter v1.14's cloud provider call metrics
// (kubernetes-sigs/karpenter pkg/cloudprovider/metrics):
// karpenter_cloudprovider_duration_seconds{controller,method,provider} and
// karpenter_cloudprovider_errors_total{controller,method,provider,error},
// with Karpenter's method names (Create, Delete, Get, List,
// GetInstanceTypes), its controller names for the caller
// (nodeclaim.lifecycle, nodeclaim.garbagecollection, provisioner,
// disruption), provider "aws" and its error values (InsufficientCapacityError,
// NodeClaimNotFoundError, NodeClassNotReadyError, "" for any other).
//
// Like every karpenter_* metric Dovetail serves, they are the leader's: the
// collector exposes them only while its replica leads, so sum() over
// replicas is the leader's figure.
package cloudmetrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/internal/promreg"
)

// Karpenter's method label values.
const (
	MethodCreate           = "Create"
	MethodDelete           = "Delete"
	MethodGet              = "Get"
	MethodList             = "List"
	MethodGetInstanceTypes = "GetInstanceTypes"
)

// Karpenter's controller names for the callers Dovetail has.
const (
	ControllerLifecycle         = "nodeclaim.lifecycle"
	ControllerGarbageCollection = "nodeclaim.garbagecollection"
	ControllerProvisioner       = "provisioner"
	ControllerDisruption        = "disruption"
)

// Provider is the AWS provider's Name().
const Provider = "aws"

// Karpenter's error label values.
const (
	LabelInsufficientCapacity = "InsufficientCapacityError"
	LabelNodeClaimNotFound    = "NodeClaimNotFoundError"
	LabelNodeClassNotReady    = "NodeClassNotReadyError"
)

// ErrNodeClassNotReady marks an error as the NodeClass not being usable
// (errors.Is), so its calls count under NodeClassNotReadyError.
var ErrNodeClassNotReady = errors.New("nodeclass not ready")

// Metrics records cloud calls. A nil *Metrics records nothing.
type Metrics struct {
	prometheus.Collector // both families, collected only while leading
	duration             *prometheus.HistogramVec
	errs                 *prometheus.CounterVec
}

// New returns the metrics; leading reports whether this replica leads
// (nil: always). Register the result with a registry.
func New(leading func() bool) *Metrics {
	m := &Metrics{
		// Karpenter sets no buckets: the client library's defaults.
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "karpenter_cloudprovider_duration_seconds",
			Help: "Duration of cloud provider method calls. Labeled by the controller, method name and provider.",
		}, []string{"controller", "method", "provider"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "karpenter_cloudprovider_errors_total",
			Help: "Total number of errors returned from CloudProvider calls.",
		}, []string{"controller", "method", "provider", "error"}),
	}
	m.Collector = promreg.WhileLeading(leading, m.duration, m.errs)
	return m
}

// Observe records one call that took took and returned err.
func (m *Metrics) Observe(controller, method string, took time.Duration, err error) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(controller, method, Provider).Observe(took.Seconds())
	if err != nil {
		m.errs.WithLabelValues(controller, method, Provider, ErrorLabel(err)).Inc()
	}
}

// ErrorLabel is Karpenter's error label value for err.
func ErrorLabel(err error) string {
	var ice *cloud.InsufficientCapacityError
	switch {
	case errors.As(err, &ice):
		return LabelInsufficientCapacity
	case errors.Is(err, cloud.ErrNotFound):
		return LabelNodeClaimNotFound
	case errors.Is(err, ErrNodeClassNotReady):
		return LabelNodeClassNotReady
	default:
		return ""
	}
}

// InstanceTypeSource lists instance types (provisioning.InstanceTypeProvider).
type InstanceTypeSource interface {
	InstanceTypes(ctx context.Context) ([]*cloud.InstanceType, error)
}

// InstanceTypes measures a source's listing as Karpenter's
// GetInstanceTypes by controller.
type InstanceTypes struct {
	Src        InstanceTypeSource
	Metrics    *Metrics
	Controller string
	Now        func() time.Time // nil: time.Now
}

// InstanceTypes implements InstanceTypeSource.
func (t *InstanceTypes) InstanceTypes(ctx context.Context) ([]*cloud.InstanceType, error) {
	now := t.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	its, err := t.Src.InstanceTypes(ctx)
	t.Metrics.Observe(t.Controller, MethodGetInstanceTypes, now().Sub(start), err)
	return its, err
}

// MetricTypes implements metricsdoc.Typed (the README table's types).
func (m *Metrics) MetricTypes() map[string]string {
	return map[string]string{
		"karpenter_cloudprovider_duration_seconds": "histogram",
		"karpenter_cloudprovider_errors_total":     "counter",
	}
}
