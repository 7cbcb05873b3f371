// Package fsmtest builds replicated-state fixtures for other packages' tests
// out of the commands the coordinator really proposes.
package fsmtest

import (
	"time"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
)

// Launched returns the commands that leave instanceID launched for a
// NodeClaim and registered as nodeName, as the launcher commits them: the
// intent (token "t-<instanceID>", NodeClaim "nc-<instanceID>"), its result
// and the registration that binds the node.
func Launched(instanceID, nodeName string, at time.Time) []fsm.Command {
	token := Token(instanceID)
	return []fsm.Command{
		fsm.IntentCreate{Intent: fsm.Intent{Token: token, NodeClaim: "nc-" + instanceID, CreatedAt: at}},
		fsm.IntentResult{Token: token, State: fsm.IntentLaunched, Term: 1, At: at,
			Instance: &cloud.Instance{ID: instanceID, ProviderID: "aws:///us-east-1a/" + instanceID}},
		fsm.IntentUpdate{Token: token, Registered: true, NodeName: nodeName, At: at},
	}
}

// Token is the intent token Launched uses for instanceID; IntentDelete with
// it stands for the instance's termination.
func Token(instanceID string) string { return "t-" + instanceID }
