package launcher_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/launcher"
)

// Launched=Unknown reasons as Karpenter writes them: a CreateError's own
// reason and message (also when wrapped), LaunchFailed with the error cut
// to 300 characters otherwise, an explicit reason first.
func TestLaunchFailureReasons(t *testing.T) {
	ce := &cloud.CreateError{Reason: "SubnetResolutionFailed", Message: "Error getting subnets", Err: errors.New("no subnets")}
	for _, c := range []struct {
		reason     string
		err        error
		wantReason string
		wantMsg    string
	}{
		{"", ce, "SubnetResolutionFailed", "Error getting subnets"},
		{"", fmt.Errorf("cloud create: %w", ce), "SubnetResolutionFailed", "Error getting subnets"},
		{"", errors.New("RequestLimitExceeded: slow down"), launcher.ReasonLaunchFailed, "RequestLimitExceeded: slow down"},
		{launcher.ReasonNodeClassNotReady, errors.New(`get EC2NodeClass "x": not found`), "NodeClassNotReady", `get EC2NodeClass "x": not found`},
	} {
		r, m := launcher.LaunchFailure(c.reason, c.err)
		if r != c.wantReason || m != c.wantMsg {
			t.Errorf("LaunchFailure(%q, %v) = %q, %q; want %q, %q", c.reason, c.err, r, m, c.wantReason, c.wantMsg)
		}
	}
	_, m := launcher.LaunchFailure("", errors.New(strings.Repeat("x", 500)))
	if len(m) != 303 || !strings.HasSuffix(m, "...") {
		t.Errorf("long message kept %d characters, want 300 + ...", len(m))
	}
}
