package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/dovetail-dev/dovetail/coordinator"
	"github.com/dovetail-dev/dovetail/coordinator/builtin"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
	"github.com/dovetail-dev/dovetail/coordinator/wiring"
	"github.com/dovetail-dev/dovetail/flagenv"
)

// leaderComponents builds the leader-only controllers (provisioning,
// disruption, built-in NodePools) from the replica's runtime; see package
// coordinator/wiring, which the end-to-end tests call the same way. Each runs
// under a context that is cancelled when leadership is lost. The launcher and
// Raft membership are wired by coordinator.Start itself.
//
// The Setup hook receives only the runtime, so the few command-line values
// the controllers need (--kubeconfig, --region, --cluster-name, --no-kube)
// are read again from the same command line and environment main parsed.
// Each can also be set in the environment:
//
//	DOVETAIL_COORDINATOR_BUILTIN_NODEPOOLS  "general-purpose,system", "none" (default none)
//	DOVETAIL_COORDINATOR_NODE_ROLE          IAM role of the built-in EC2NodeClass
//	DOVETAIL_COORDINATOR_DISRUPTION_INTERVAL, _VALIDATION_DELAY  (durations)
//	DOVETAIL_COORDINATOR_NODECLASS_INTERVAL                      (duration; EC2NodeClass status)
//	DOVETAIL_COORDINATOR_PROVISIONING_IDLE_GAP, _MAX_WINDOW      (durations)
func leaderComponents(rt *coordinator.Runtime, explain *wiring.Explain) ([]leader.Named, error) {
	o, err := componentOptions(os.Args[1:], os.LookupEnv)
	if err != nil {
		return nil, err
	}
	o.Explain = explain
	if rt.Log != nil {
		// controller-runtime's client logs through its global logger; give it
		// the replica's so it does not complain that none was set.
		ctrllog.SetLogger(logr.FromSlogHandler(rt.Log.Handler()))
	}
	return wiring.Components(rt, o)
}

func componentOptions(args []string, env func(string) (string, bool)) (wiring.Options, error) {
	var o wiring.Options
	setting := func(flag string) (string, bool) {
		if v, ok := argValue(args, flag); ok {
			return v, true
		}
		return env(flagenv.Name(envPrefix, flag))
	}
	if v, ok := setting("no-kube"); ok {
		if b, err := strconv.ParseBool(v); err == nil && b {
			return o, nil
		}
	}
	kubeconfig, ok := setting("kubeconfig")
	if !ok {
		kubeconfig, _ = env("KUBECONFIG")
	}
	rc, err := restConfig(kubeconfig)
	if err != nil {
		return o, err
	}
	o.RESTConfig = rc
	if o.Region, ok = setting("region"); !ok {
		o.Region, _ = env("AWS_REGION")
	}
	cluster, _ := setting("cluster-name")
	role, _ := setting("node-role")
	pools, _ := setting("builtin-nodepools")
	for _, p := range strings.Split(pools, ",") {
		switch strings.TrimSpace(p) {
		case "", "none":
		case builtin.GeneralPurpose:
			o.Builtin.GeneralPurpose = true
		case builtin.System:
			o.Builtin.System = true
		default:
			return o, fmt.Errorf("%sBUILTIN_NODEPOOLS: unknown pool %q (want %s, %s or none)", envPrefix, p, builtin.GeneralPurpose, builtin.System)
		}
	}
	o.Builtin.Options = builtin.Options{ClusterName: cluster, Role: role}
	for flag, dst := range map[string]*time.Duration{
		"disruption-interval":     &o.Disruption.Interval,
		"nodeclass-interval":      &o.NodeClass.Interval,
		"validation-delay":        &o.Disruption.ValidationDelay,
		"provisioning-idle-gap":   &o.Provisioning.IdleGap,
		"provisioning-max-window": &o.Provisioning.MaxWindow,
	} {
		if v, ok := setting(flag); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				return o, fmt.Errorf("%s: %w", flagenv.Name(envPrefix, flag), err)
			}
			*dst = d
		}
	}
	return o, nil
}

// argValue finds --name value, --name=value, -name value or -name=value in
// args (the last one wins) without knowing the other flags: a bare boolean
// flag reads as "true".
func argValue(args []string, name string) (string, bool) {
	var val string
	found := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if k, v, ok := strings.Cut(a, "="); ok {
			if k == name {
				val, found = v, true
			}
			continue
		}
		if a != name {
			continue
		}
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			val, found = args[i+1], true
			i++
		} else {
			val, found = "true", true
		}
	}
	return val, found
}
