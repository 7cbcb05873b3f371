package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

// Annotations the reconciler keeps on its objects to tell an edit from the
// API server's defaulting: the hash of the spec as stored right after
// Dovetail last wrote it, and the hash of the template it wrote.
const (
	AnnotationSpecHash     = "dovetail.dev/builtin-spec-hash"
	AnnotationTemplateHash = "dovetail.dev/builtin-template-hash"
)

// Client is the part of a controller-runtime client the reconciler uses.
type Client interface {
	Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error
	Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error
	Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error
	Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error
}

// Config turns the built-in objects on and off. The default NodeClass
// exists while either pool is on.
type Config struct {
	GeneralPurpose bool
	System         bool
	Options        Options
	Interval       time.Duration // between reconciles (1m)
	Registry       prometheus.Registerer
	Log            *slog.Logger
}

// Reconciler keeps the built-in objects as defined.
type Reconciler struct {
	c        Client
	cfg      Config
	log      *slog.Logger
	restores *prometheus.CounterVec
}

// NewReconciler returns a reconciler.
func NewReconciler(c Client, cfg Config) (*Reconciler, error) {
	if c == nil {
		return nil, errors.New("builtin: client is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	r := &Reconciler{c: c, cfg: cfg, log: cfg.Log.With("component", "builtin"),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dovetail_builtin_reconciles_total",
			Help: "Built-in objects created, restored after an edit, or deleted when turned off."}, []string{"object", "action"})}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(r.restores); err != nil {
			return nil, fmt.Errorf("builtin: register metrics: %w", err)
		}
	}
	return r, nil
}

// Run reconciles every Interval until ctx ends (leader-only component).
func (r *Reconciler) Run(ctx context.Context, _ uint64) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if err := r.Reconcile(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("built-in reconcile failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

type item struct {
	name    string
	enabled bool
	want    client.Object
	fresh   func() client.Object
	spec    func(client.Object) any
	setSpec func(dst, src client.Object)
}

func (r *Reconciler) items() []item {
	npSpec := func(o client.Object) any { return o.(*karpv1.NodePool).Spec }
	npSet := func(dst, src client.Object) { dst.(*karpv1.NodePool).Spec = src.(*karpv1.NodePool).Spec }
	return []item{
		{DefaultNodeClass, r.cfg.GeneralPurpose || r.cfg.System, DefaultEC2NodeClass(r.cfg.Options),
			func() client.Object { return &awsv1.EC2NodeClass{} },
			func(o client.Object) any { return o.(*awsv1.EC2NodeClass).Spec },
			func(dst, src client.Object) { dst.(*awsv1.EC2NodeClass).Spec = src.(*awsv1.EC2NodeClass).Spec }},
		{GeneralPurpose, r.cfg.GeneralPurpose, GeneralPurposePool(), func() client.Object { return &karpv1.NodePool{} }, npSpec, npSet},
		{System, r.cfg.System, SystemPool(), func() client.Object { return &karpv1.NodePool{} }, npSpec, npSet},
	}
}

// Reconcile makes one pass over the built-in objects.
func (r *Reconciler) Reconcile(ctx context.Context) error {
	var errs []error
	for _, it := range r.items() {
		if err := r.reconcile(ctx, it); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", it.name, err))
		}
	}
	return errors.Join(errs...)
}

func hashOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	h := fnv.New64a()
	_, _ = h.Write(b)
	return strconv.FormatUint(h.Sum64(), 16)
}

func (r *Reconciler) reconcile(ctx context.Context, it item) error {
	got := it.fresh()
	err := r.c.Get(ctx, client.ObjectKey{Name: it.name}, got)
	switch {
	case apierrors.IsNotFound(err):
		if !it.enabled {
			return nil
		}
		obj := it.want.DeepCopyObject().(client.Object)
		if err := r.c.Create(ctx, obj); err != nil {
			return fmt.Errorf("create: %w", err)
		}
		r.restores.WithLabelValues(it.name, "create").Inc()
		r.log.Info("created built-in object", "name", it.name)
		return r.stamp(ctx, it, obj)
	case err != nil:
		return fmt.Errorf("get: %w", err)
	}
	if got.GetLabels()[LabelBuiltin] != "true" {
		return nil // the user took it over (or made their own of that name)
	}
	if !it.enabled {
		if got.GetDeletionTimestamp() != nil {
			return nil
		}
		if err := r.c.Delete(ctx, got); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete (turned off): %w", err)
		}
		r.restores.WithLabelValues(it.name, "delete").Inc()
		r.log.Info("deleted built-in object: turned off", "name", it.name)
		return nil
	}
	ann := got.GetAnnotations()
	if ann[AnnotationSpecHash] == hashOf(it.spec(got)) && ann[AnnotationTemplateHash] == hashOf(it.spec(it.want)) {
		return nil
	}
	// Edited (or our template changed): put the defaults back.
	it.setSpec(got, it.want)
	if err := r.c.Update(ctx, got); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	r.restores.WithLabelValues(it.name, "restore").Inc()
	r.log.Info("restored built-in object to its defaults", "name", it.name)
	return r.stamp(ctx, it, got)
}

// stamp records the stored spec's hash (after any server defaulting) and
// the template's, so the next pass can tell an edit from defaulting.
func (r *Reconciler) stamp(ctx context.Context, it item, obj client.Object) error {
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationSpecHash] = hashOf(it.spec(obj))
	ann[AnnotationTemplateHash] = hashOf(it.spec(it.want))
	obj.SetAnnotations(ann)
	if err := r.c.Update(ctx, obj); err != nil {
		return fmt.Errorf("stamp: %w", err)
	}
	return nil
}
