package main

import (
	"github.com/dovetail-dev/dovetail/coordinator"
	"github.com/dovetail-dev/dovetail/coordinator/leader"
)

// leaderComponents builds the leader-only controllers (provisioning,
// disruption) from the replica's runtime. Each runs under a context that is
// cancelled when leadership is lost. The launcher and Raft membership are
// wired by coordinator.Start itself.
func leaderComponents(rt *coordinator.Runtime) ([]leader.Named, error) {
	return nil, nil
}
