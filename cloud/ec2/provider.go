// Package ec2 is Dovetail's cloud provider for Amazon EC2. It launches one
// instance per NodeClaim with an instant EC2 Fleet, terminates, describes and
// lists Dovetail's instances, lists instance types with their offerings, and
// resolves an EC2NodeClass's selectors (AMIs, subnets, security groups).
//
// Everything goes through aws-sdk-go-v2, so the same code path runs against
// real AWS and against Dovetail's EC2 simulator (cloud/ec2sim), which speaks
// the EC2 Query and SSM JSON wire protocols.
package ec2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go/logging"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/catalog"
)

// Clock is the one clock the provider reads; tests inject a fake one.
// k8s.io/utils/clock.Clock satisfies it.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config configures a Provider. Only Region and ClusterName are required.
type Config struct {
	// Region is the AWS region, e.g. us-east-1.
	Region string
	// Endpoint overrides the EC2 and SSM endpoint (the EC2 simulator serves
	// both on one URL). Empty means the regional AWS endpoints.
	Endpoint string
	// Credentials overrides the standard AWS credential chain (environment,
	// shared config, IMDS/IRSA...). Tests against the simulator pass static
	// credentials here.
	Credentials aws.CredentialsProvider

	// ClusterName tags every instance (cloud.TagCluster) and scopes List.
	ClusterName string
	// ClusterEndpoint and ClusterCA (base64 PEM) go into node user data.
	ClusterEndpoint string
	ClusterCA       string
	// ClusterCIDR is the service CIDR nodeadm needs (AL2023); optional.
	ClusterCIDR string
	// KubernetesVersion ("1.37") selects the AMI alias SSM parameter paths.
	KubernetesVersion string

	Clock    Clock
	Logger   *slog.Logger
	Registry prometheus.Registerer

	// Offerings is the insufficient-capacity store the provider reads
	// before every launch and listing and records EC2's refusals into. Nil
	// means a MemoryOfferings of ICETTL; a coordinator passes its
	// replicated one.
	Offerings Offerings
	// ICETTL is how long the default store avoids an offering EC2 refused
	// for capacity (an injected store keeps its own expiry).
	ICETTL time.Duration
	// InstanceTypesTTL caches DescribeInstanceTypes/-Offerings (they change rarely).
	InstanceTypesTTL time.Duration
	// PricesTTL caches spot prices (DescribeSpotPriceHistory).
	PricesTTL time.Duration
	// NodeClassTTL caches resolved AMIs, subnets and security groups.
	NodeClassTTL time.Duration

	// MaxAttempts and MaxBackoff configure the SDK retryer (throttling and
	// transient errors); FleetRetries bounds Dovetail's own retries of
	// fleet-level throttling answers.
	MaxAttempts  int
	MaxBackoff   time.Duration
	FleetRetries int
	// CallTimeout bounds every AWS call, its SDK retries included (default
	// 30 s): a call that hangs fails with context.DeadlineExceeded, is
	// counted in dovetail_cloudprovider_call_timeouts_total{method} and
	// logged, instead of stalling the leader's reconcile. A caller's
	// shorter deadline still applies.
	CallTimeout time.Duration

	// Catalog supplies on-demand prices (and a fallback for max pods). Nil
	// means the embedded catalogue.
	Catalog *catalog.Catalog
}

func (c *Config) defaults() error {
	if c.Region == "" {
		return errors.New("ec2: Config.Region is required")
	}
	if c.ClusterName == "" {
		return errors.New("ec2: Config.ClusterName is required")
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ICETTL <= 0 {
		c.ICETTL = 3 * time.Minute
	}
	if c.InstanceTypesTTL <= 0 {
		c.InstanceTypesTTL = time.Hour
	}
	if c.PricesTTL <= 0 {
		c.PricesTTL = 5 * time.Minute
	}
	if c.NodeClassTTL <= 0 {
		c.NodeClassTTL = time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 20 * time.Second
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 30 * time.Second
	}
	if c.FleetRetries <= 0 {
		c.FleetRetries = 4
	}
	if c.KubernetesVersion == "" {
		c.KubernetesVersion = "1.37"
	}
	return nil
}

// Provider is the EC2 cloud provider. It is safe for concurrent use.
type Provider struct {
	cfg     Config
	ec2     *awsec2.Client
	ssm     *ssm.Client
	log     *slog.Logger
	clock   Clock
	metrics *metrics
	ice     Offerings
	catalog *catalog.Catalog

	typesMu sync.Mutex
	types   *typesSnapshot

	ncMu    sync.Mutex
	ncCache map[string]cachedNodeClass

	recent *recentLaunches
	// reservations counts what each capacity reservation can still take.
	reservations *reservationAvailability

	ltMu sync.Mutex
	lts  map[string]bool // launch template names known to exist

	odOverride map[string]float64 // guarded by typesMu

	// sleep waits between Dovetail's own retries; replaced in tests.
	sleep func(ctx context.Context, d time.Duration) error
}

// New builds a Provider. It loads AWS credentials from the standard chain
// unless cfg.Credentials is set; it makes no API call.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(cfg.Region),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				o.MaxBackoff = cfg.MaxBackoff
				// Full jitter (the standard retryer's default, stated so it
				// stays): replicas retrying together do not retry in step.
				o.Backoff = retry.NewExponentialJitterBackoff(cfg.MaxBackoff)
				// A throttled control plane must be waited out, not given up
				// on after the client-side retry budget drains: the backoff
				// already spaces the attempts.
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("ec2: load AWS config: %w", err)
	}
	awsCfg.APIOptions = append(awsCfg.APIOptions, m.middleware,
		deadlineMiddleware(cfg.CallTimeout, m.timeouts, cfg.Logger.With("component", "ec2-provider")))
	awsCfg.Logger = sdkLogger{log: cfg.Logger.With("component", "ec2-provider")}

	cat := cfg.Catalog
	if cat == nil {
		cat, err = catalog.Load()
		if err != nil {
			return nil, fmt.Errorf("ec2: load instance catalogue: %w", err)
		}
	}
	p := &Provider{
		cfg:          cfg,
		log:          cfg.Logger.With("component", "ec2-provider", "region", cfg.Region),
		clock:        cfg.Clock,
		metrics:      m,
		recent:       newRecentLaunches(cfg.Clock),
		reservations: newReservationAvailability(),
		catalog:      cat,
		ncCache:      map[string]cachedNodeClass{},
		lts:          map[string]bool{},
		sleep:        sleepCtx,
	}
	if p.ice = cfg.Offerings; p.ice == nil {
		p.ice = NewMemoryOfferings(cfg.Clock, cfg.ICETTL)
	}
	p.ec2 = awsec2.NewFromConfig(awsCfg, func(o *awsec2.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	p.ssm = ssm.NewFromConfig(awsCfg, func(o *ssm.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return p, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ICE returns the offerings currently avoided, for status and debugging
// output, when the store can list them (the default one can; an injected
// store is listed by its owner, e.g. the coordinator's replicated state).
func (p *Provider) ICE() []ICEEntry {
	if l, ok := p.ice.(interface{ Entries() []ICEEntry }); ok {
		return l.Entries()
	}
	return nil
}

// sdkLogger routes the SDK's own log lines (retries, connection reuse) into
// slog at debug level, classified warnings at warn.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if c == logging.Warn {
		l.log.Warn(msg, "source", "aws-sdk")
		return
	}
	l.log.Debug(msg, "source", "aws-sdk")
}
