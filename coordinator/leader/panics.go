package leader

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
)

// Object names the Kubernetes object a component is working on, so that a
// panic while handling it can be blamed on it (logged, and for NodePools and
// NodeClaims a Warning Event on the object): one bad manifest must show up
// as that object's problem, not as a leader crash loop.
type Object struct {
	Kind      string // "NodePool", "NodeClaim", "Node", "EC2NodeClass", ...
	Namespace string // empty for cluster-scoped kinds
	Name      string
}

func (o Object) String() string {
	if o.Namespace != "" {
		return o.Kind + "/" + o.Namespace + "/" + o.Name
	}
	return o.Kind + "/" + o.Name
}

// Panic is a recovered panic of a leader component.
type Panic struct {
	Component string
	Term      uint64
	Value     any
	Stack     []byte
	// Object is what the component said it was working on (WorkingOn);
	// nil when it did not say.
	Object *Object
}

func (p *Panic) Error() string {
	msg := fmt.Sprintf("leader component %s panicked: %v", p.Component, p.Value)
	if p.Object != nil {
		msg += " (working on " + p.Object.String() + ")"
	}
	return msg
}

// tracker belongs to one run of one component; it lives in the run's
// context so that WorkingOn, Go and Recover reach it from anywhere below.
type tracker struct {
	cancel context.CancelFunc

	mu      sync.Mutex
	current *Object
	first   *Panic
	extra   int // panics after the first in the same run
}

type trackerKey struct{}
type objectKey struct{}

func trackerFrom(ctx context.Context) *tracker {
	t, _ := ctx.Value(trackerKey{}).(*tracker)
	return t
}

// WorkingOn records that the component running under ctx is now working on
// o, until the returned function is called; defer it (defer done()), so
// that a panic while working on o is blamed on o even as the stack unwinds.
// Goroutines started with Go from the returned context are blamed on o
// too, however many run at once. Outside a leader component it only
// annotates the context.
func WorkingOn(ctx context.Context, o Object) (context.Context, func()) {
	ctx = context.WithValue(ctx, objectKey{}, &o)
	t := trackerFrom(ctx)
	if t == nil {
		return ctx, func() {}
	}
	t.mu.Lock()
	prev := t.current
	t.current = &o
	t.mu.Unlock()
	restore := func() {
		t.mu.Lock()
		t.current = prev
		t.mu.Unlock()
	}
	return ctx, func() {
		// Called as a deferred function while panicking, recover works
		// here: record the panic against o with the stack still showing
		// where it happened, then let it continue to the run's recover
		// marked as recorded.
		if r := recover(); r != nil {
			if _, ok := r.(recorded); !ok {
				t.record(r, debug.Stack(), &o)
				r = recorded{r}
			}
			restore()
			panic(r)
		}
		restore()
	}
}

// recorded wraps a panic value already recorded by a WorkingOn function on
// its way up to the run's recover.
type recorded struct{ v any }

// Go runs fn in a new goroutine that is part of the component running
// under ctx: a panic in it is recovered, reported as the component's panic
// and ends the component's run (its context is cancelled), after which the
// loop restarts the component with backoff. A panic in a plain goroutine
// cannot be recovered by anyone else and would kill the process.
func Go(ctx context.Context, fn func()) {
	go func() {
		defer Recover(ctx)
		fn()
	}()
}

// Recover, deferred directly at the top of a goroutine a component starts
// (defer leader.Recover(ctx)), does what Go does for that goroutine. Outside
// a leader component it still recovers, so a stray panic never crashes the
// process, but there is nobody to report it to besides the stack.
func Recover(ctx context.Context) {
	r := recover()
	if r == nil {
		return
	}
	if rec, ok := r.(recorded); ok {
		if trackerFrom(ctx) != nil {
			return
		}
		r = rec.v
	}
	obj, _ := ctx.Value(objectKey{}).(*Object)
	if t := trackerFrom(ctx); t != nil {
		t.record(r, debug.Stack(), obj)
		return
	}
	attrs := []any{"panic", fmt.Sprint(r), "stack", string(debug.Stack())}
	if obj != nil {
		attrs = append(attrs, "object", obj.String())
	}
	slog.Default().Error("recovered a panic outside any leader component", attrs...)
}

// record keeps the first panic of a run (later ones are usually its
// consequences) and stops the run.
func (t *tracker) record(v any, stack []byte, obj *Object) {
	t.mu.Lock()
	if obj == nil {
		obj = t.current
	}
	if t.first == nil {
		t.first = &Panic{Value: v, Stack: stack, Object: obj}
	} else {
		t.extra++
	}
	t.mu.Unlock()
	t.cancel()
}

func (t *tracker) result() (*Panic, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.first, t.extra
}
