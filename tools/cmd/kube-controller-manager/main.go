// Command kube-controller-manager is the upstream controller manager, built from
// the pinned k8s.io/kubernetes module for Dovetail's local control plane.
package main

import (
	"os"
	_ "time/tzdata" // CronJob time zones need the tz database inside the binary.

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
