package fleetmetrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/report"
)

type src struct{ s *fsm.State }

func (s src) View(fn func(*fsm.State)) { fn(s.s) }

func TestFleetGauges(t *testing.T) {
	st := fsm.NewState()
	st.Nodes["a"] = &fsm.NodeStatus{NodeName: "a", Health: "ok"}
	st.Nodes["b"] = &fsm.NodeStatus{NodeName: "b", Health: "failed",
		Interruption: &report.Report{ID: "1", Kind: report.KindInterruption}}
	st.Nodes["c"] = &fsm.NodeStatus{NodeName: "c", Interruption: &report.Report{ID: "2", Kind: report.KindRebalance}}
	st.Nodes["d"] = nil // a bad entry counts nowhere and does not panic
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(src{st}))
	want := `
# HELP dovetail_fleet_nodes Nodes whose agent has reported to the coordinators, by the worst health check state it reported (ok, degraded, failed; unreported: no health report yet).
# TYPE dovetail_fleet_nodes gauge
dovetail_fleet_nodes{health="degraded"} 0
dovetail_fleet_nodes{health="failed"} 1
dovetail_fleet_nodes{health="ok"} 1
dovetail_fleet_nodes{health="unreported"} 1
# HELP dovetail_fleet_notices Open notices the agents reported (an interruption, rebalance recommendation or scheduled maintenance not yet cancelled or acted on), by kind.
# TYPE dovetail_fleet_notices gauge
dovetail_fleet_notices{kind="Interruption"} 1
dovetail_fleet_notices{kind="Maintenance"} 0
dovetail_fleet_notices{kind="Rebalance"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
