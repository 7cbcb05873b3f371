package devcluster

import (
	"os"
	"testing"

	"github.com/dovetail-dev/dovetail/controlplane"
)

// TestMain stops the shared control plane that some tests start.
func TestMain(m *testing.M) { os.Exit(controlplane.RunTests(m)) }
