package ec2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/internal/promreg"
)

type metrics struct {
	calls    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	iceHits  *prometheus.CounterVec
	iceMarks *prometheus.CounterVec
	launches *prometheus.CounterVec
	timeouts *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_cloud_api_calls_total",
			Help: "AWS API operations issued by the EC2 provider, retries included in one call.",
		}, []string{"service", "api"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_cloud_api_errors_total",
			Help: "AWS API operations that failed after retries, by error code.",
		}, []string{"service", "api", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dovetail_cloud_api_duration_seconds",
			Help:    "Duration of AWS API operations including SDK retries.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"service", "api"}),
		iceHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_cloud_ice_skipped_offerings_total",
			Help: "Launch options skipped because the offering is in the insufficient-capacity cache.",
		}, []string{"capacity_type"}),
		iceMarks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_cloud_ice_marked_offerings_total",
			Help: "Offerings EC2 refused for capacity and that were put into the insufficient-capacity cache.",
		}, []string{"capacity_type", "code"}),
		launches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_cloud_launches_total",
			Help: "Launch requests by outcome (launched, insufficient_capacity, error).",
		}, []string{"outcome", "capacity_type"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_cloudprovider_call_timeouts_total",
			Help: "AWS calls that hit the provider's per-call deadline (Config.CallTimeout), by method (Service.Operation).",
		}, []string{"method"}),
	}
	if reg != nil {
		// A second provider on the same registry (tests, a restarted
		// leader loop) shares the collectors already there.
		var err error
		for _, c := range []**prometheus.CounterVec{&m.calls, &m.errors, &m.iceHits, &m.iceMarks, &m.launches, &m.timeouts} {
			if *c, err = promreg.Register(reg, *c); err != nil {
				return nil, fmt.Errorf("ec2: %w", err)
			}
		}
		if m.latency, err = promreg.Register(reg, m.latency); err != nil {
			return nil, fmt.Errorf("ec2: %w", err)
		}
	}
	return m, nil
}

// middleware is added to every SDK client's stack: it times each operation
// (all its retries) and counts failures by error code.
func (m *metrics) middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("DovetailMetrics",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			service, api := awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx)
			start := time.Now()
			out, md, err := next.HandleInitialize(ctx, in)
			m.calls.WithLabelValues(service, api).Inc()
			m.latency.WithLabelValues(service, api).Observe(time.Since(start).Seconds())
			if err != nil {
				m.errors.WithLabelValues(service, api, errorCode(err)).Inc()
			}
			return out, md, err
		}), middleware.After)
}

// errorCode is the AWS error code of err, or a coarse class when it has none.
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "Canceled"
	}
	return "Unknown"
}

// deadlineMiddleware gives every operation (all its SDK retries) a
// deadline of d, so that a hung endpoint cannot stall a caller without one,
// and counts and logs the calls that hit it.
func deadlineMiddleware(d time.Duration, timeouts *prometheus.CounterVec, log *slog.Logger) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("DovetailDeadline",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				cctx, cancel := context.WithTimeout(ctx, d)
				defer cancel()
				start := time.Now()
				out, md, err := next.HandleInitialize(cctx, in)
				if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
					method := awsmiddleware.GetServiceID(ctx) + "." + awsmiddleware.GetOperationName(ctx)
					timeouts.WithLabelValues(method).Inc()
					log.WarnContext(ctx, "AWS call stalled past its deadline; giving up", "method", method, "deadline", d, "took", time.Since(start).Round(time.Millisecond))
					err = fmt.Errorf("%s: no answer within the %s call deadline: %w", method, d, err)
				}
				return out, md, err
			}), middleware.Before)
	}
}
