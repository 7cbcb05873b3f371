package karpentermetrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-dev/dovetail/version"
)

// BuildInfo is karpenter_build_info: 1, labelled by the build. Karpenter's
// operator registers it in every process, leader or not, so every replica
// serves it (unlike the other karpenter_* metrics, which only the leader
// serves): version is Dovetail's release version, commit its VCS revision.
func BuildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_build_info",
		Help: "A metric with a constant '1' value labeled by version from which karpenter was built."},
		[]string{"version", "goversion", "goarch", "commit"})
	g.WithLabelValues(version.Version, runtime.Version(), runtime.GOARCH, version.Revision()).Set(1)
	return g
}
