package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Group is the API group of the Dovetail resources people are authorised on.
// Nothing is served under it by the Kubernetes API server: it exists only in
// RBAC rules (the chart's dovetail-admin and dovetail-view ClusterRoles) and
// in the SubjectAccessReviews the coordinator sends, as kube-rbac-proxy does.
const Group = "dovetail.dev"

// Access is what one route needs: the attributes of the SubjectAccessReview
// asked for the caller. Either Resource (in Group) or NonResourcePath is set.
type Access struct {
	Verb        string
	Resource    string
	Subresource string
	// NameFrom names the path value ({nodepool}) that is the object's name,
	// so RBAC resourceNames can narrow a grant to one NodePool.
	NameFrom string
	// NonResourcePath is a non-resource URL (/metrics), authorised the way
	// Prometheus' scrape identities already are.
	NonResourcePath string
}

func (a Access) String() string {
	if a.NonResourcePath != "" {
		return a.Verb + " " + a.NonResourcePath
	}
	s := a.Verb + " " + Group + "/" + a.Resource
	if a.Subresource != "" {
		s += "/" + a.Subresource
	}
	return s
}

// The accesses of the built-in routes; the chart's ClusterRoles grant them.
var (
	AccessStatus        = Access{Verb: "get", Resource: "status"}
	AccessNodes         = Access{Verb: "get", Resource: "nodes"}
	AccessLaunches      = Access{Verb: "get", Resource: "launches"}
	AccessRollouts      = Access{Verb: "get", Resource: "rollouts"}
	AccessDisruptions   = Access{Verb: "get", Resource: "disruptions"}
	AccessPlans         = Access{Verb: "get", Resource: "plans"}
	AccessRolloutResume = Access{Verb: "update", Resource: "rollouts", Subresource: "resume", NameFrom: "nodepool"}
	AccessAttestReset   = Access{Verb: "delete", Resource: "attestations", NameFrom: "instance"}
	AccessMetrics       = Access{Verb: "get", NonResourcePath: PathMetrics}
)

// Refusal reasons: the values of dovetail_api_refused_total{reason}.
const (
	RefusedNoToken      = "no_token"
	RefusedBadToken     = "bad_token"
	RefusedForbidden    = "forbidden"
	RefusedAuthnFailure = "authn_unavailable"
	RefusedAuthzFailure = "authz_unavailable"
)

// Caller is an authenticated identity.
type Caller struct {
	User   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// Decision is the outcome of checking one request.
type Decision struct {
	Caller Caller
	// Code is 0 when allowed, else 401, 403 or 503.
	Code int
	// Reason is one of the Refused* constants when refused.
	Reason string
	// Message says why, for the caller and the log.
	Message string
}

// Authorizer decides whether a request may use a route.
type Authorizer interface {
	Authorize(r *http.Request, a Access) Decision
}

// KubeAuthConfig configures KubeAuth.
type KubeAuthConfig struct {
	// Client calls TokenReview and SubjectAccessReview; its identity needs
	// create on tokenreviews and subjectaccessreviews (system:auth-delegator).
	Client kubernetes.Interface
	// Audiences, when set, are sent with every TokenReview and one of them
	// must be in the answer (tokens minted for Dovetail only).
	Audiences []string
	// TokenTTL is how long an authenticated token is trusted without asking
	// again (default 1m), DenyTTL how long a refused token or a denied access
	// is remembered (default 10s) and AllowTTL how long an allowed access is
	// (default 10s): a revoked RoleBinding takes effect within AllowTTL.
	TokenTTL, DenyTTL, AllowTTL time.Duration
	// Timeout bounds each review call (default 5s).
	Timeout time.Duration
	Now     func() time.Time
	Log     *slog.Logger
}

// KubeAuth authenticates bearer tokens with TokenReview and authorises them
// with SubjectAccessReview, caching both answers briefly so a CLI session or
// a scrape loop does not cost two API server calls per request.
type KubeAuth struct {
	cfg KubeAuthConfig

	mu     sync.Mutex
	tokens map[[32]byte]tokenEntry
	access map[string]accessEntry
}

type tokenEntry struct {
	caller  Caller
	ok      bool
	message string
	exp     time.Time
}

type accessEntry struct {
	allowed bool
	message string
	exp     time.Time
}

// maxCache bounds each cache: past it, expired entries are dropped and, if
// that is not enough, the cache starts over (a flood of random tokens must
// not grow memory).
const maxCache = 4096

// NewKubeAuth returns the TokenReview/SubjectAccessReview authorizer.
func NewKubeAuth(cfg KubeAuthConfig) (*KubeAuth, error) {
	if cfg.Client == nil {
		return nil, errors.New("kube auth needs a Kubernetes client")
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = time.Minute
	}
	if cfg.DenyTTL == 0 {
		cfg.DenyTTL = 10 * time.Second
	}
	if cfg.AllowTTL == 0 {
		cfg.AllowTTL = 10 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &KubeAuth{cfg: cfg, tokens: map[[32]byte]tokenEntry{}, access: map[string]accessEntry{}}, nil
}

// BearerToken is the token of an "Authorization: Bearer ..." header.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// Authorize implements Authorizer.
func (k *KubeAuth) Authorize(r *http.Request, a Access) Decision {
	tok := BearerToken(r)
	if tok == "" {
		return Decision{Code: http.StatusUnauthorized, Reason: RefusedNoToken,
			Message: "authentication required: send a Kubernetes bearer token (Authorization: Bearer ...)"}
	}
	caller, d := k.authenticate(r.Context(), tok)
	if d.Code != 0 {
		return d
	}
	d = k.authorize(r.Context(), caller, a, r)
	d.Caller = caller
	return d
}

func (k *KubeAuth) authenticate(ctx context.Context, tok string) (Caller, Decision) {
	key := sha256.Sum256([]byte(tok))
	now := k.cfg.Now()
	k.mu.Lock()
	e, hit := k.tokens[key]
	k.mu.Unlock()
	if !hit || !now.Before(e.exp) {
		ctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout)
		defer cancel()
		tr, err := k.cfg.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
			Spec: authnv1.TokenReviewSpec{Token: tok, Audiences: k.cfg.Audiences},
		}, metav1.CreateOptions{})
		if err != nil {
			// Not cached: the API server being away says nothing about the token.
			return Caller{}, Decision{Code: http.StatusServiceUnavailable, Reason: RefusedAuthnFailure,
				Message: fmt.Sprintf("token review failed: %v", err)}
		}
		e = tokenEntry{ok: tr.Status.Authenticated, message: tr.Status.Error}
		if e.ok && len(k.cfg.Audiences) > 0 && !intersects(tr.Status.Audiences, k.cfg.Audiences) {
			e.ok, e.message = false, "token is not meant for audience "+strings.Join(k.cfg.Audiences, ",")
		}
		if e.ok {
			u := tr.Status.User
			e.caller = Caller{User: u.Username, UID: u.UID, Groups: u.Groups}
			if len(u.Extra) > 0 {
				e.caller.Extra = map[string][]string{}
				for name, v := range u.Extra {
					e.caller.Extra[name] = v
				}
			}
			e.exp = now.Add(k.cfg.TokenTTL)
		} else {
			e.exp = now.Add(k.cfg.DenyTTL)
		}
		k.mu.Lock()
		if len(k.tokens) >= maxCache {
			for kk, v := range k.tokens {
				if !now.Before(v.exp) {
					delete(k.tokens, kk)
				}
			}
			if len(k.tokens) >= maxCache {
				k.tokens = map[[32]byte]tokenEntry{}
			}
		}
		k.tokens[key] = e
		k.mu.Unlock()
	}
	if !e.ok {
		msg := "token not authenticated by the Kubernetes API server"
		if e.message != "" {
			msg += ": " + e.message
		}
		return Caller{}, Decision{Code: http.StatusUnauthorized, Reason: RefusedBadToken, Message: msg}
	}
	return e.caller, Decision{}
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

func (k *KubeAuth) authorize(ctx context.Context, c Caller, a Access, r *http.Request) Decision {
	name := ""
	if a.NameFrom != "" {
		name = r.PathValue(a.NameFrom)
	}
	groups := append([]string(nil), c.Groups...)
	sort.Strings(groups)
	key := strings.Join([]string{c.User, c.UID, strings.Join(groups, ","), a.String(), name}, "\x00")
	now := k.cfg.Now()
	k.mu.Lock()
	e, hit := k.access[key]
	k.mu.Unlock()
	if !hit || !now.Before(e.exp) {
		spec := authzv1.SubjectAccessReviewSpec{User: c.User, UID: c.UID, Groups: c.Groups}
		if len(c.Extra) > 0 {
			spec.Extra = map[string]authzv1.ExtraValue{}
			for name, v := range c.Extra {
				spec.Extra[name] = v
			}
		}
		if a.NonResourcePath != "" {
			spec.NonResourceAttributes = &authzv1.NonResourceAttributes{Path: a.NonResourcePath, Verb: a.Verb}
		} else {
			spec.ResourceAttributes = &authzv1.ResourceAttributes{Group: Group, Resource: a.Resource,
				Subresource: a.Subresource, Verb: a.Verb, Name: name}
		}
		ctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout)
		defer cancel()
		sar, err := k.cfg.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx,
			&authzv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			return Decision{Code: http.StatusServiceUnavailable, Reason: RefusedAuthzFailure,
				Message: fmt.Sprintf("subject access review failed: %v", err)}
		}
		e = accessEntry{allowed: sar.Status.Allowed && !sar.Status.Denied, message: sar.Status.Reason}
		if sar.Status.EvaluationError != "" && e.message == "" {
			e.message = sar.Status.EvaluationError
		}
		ttl := k.cfg.DenyTTL
		if e.allowed {
			ttl = k.cfg.AllowTTL
		}
		e.exp = now.Add(ttl)
		k.mu.Lock()
		if len(k.access) >= maxCache {
			for kk, v := range k.access {
				if !now.Before(v.exp) {
					delete(k.access, kk)
				}
			}
			if len(k.access) >= maxCache {
				k.access = map[string]accessEntry{}
			}
		}
		k.access[key] = e
		k.mu.Unlock()
	}
	if e.allowed {
		return Decision{}
	}
	target := a.String()
	if name != "" {
		target += " " + name
	}
	msg := fmt.Sprintf("user %q may not %s", c.User, target)
	if e.message != "" {
		msg += ": " + e.message
	}
	return Decision{Code: http.StatusForbidden, Reason: RefusedForbidden, Message: msg}
}
