package nfpm

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestShellcheck lints every shell script of the packaging area when
// shellcheck is installed (apt-get install shellcheck); the maintainer
// scripts are checked as POSIX sh, since dpkg runs them with dash.
func TestShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck not installed")
	}
	root := repoRoot(t)
	for _, tc := range []struct {
		shell string
		files []string
	}{
		{"sh", []string{"packaging/nfpm/scripts/postinstall.sh", "packaging/nfpm/scripts/preremove.sh", "packaging/nfpm/scripts/postremove.sh"}},
		{"bash", []string{"packaging/nfpm/check.sh", "hack/package.sh", "packaging/ami/scripts/install-agent.sh"}},
	} {
		args := []string{"--shell=" + tc.shell}
		for _, f := range tc.files {
			args = append(args, filepath.Join(root, f))
		}
		if out, err := exec.Command("shellcheck", args...).CombinedOutput(); err != nil {
			t.Errorf("shellcheck --shell=%s: %v\n%s", tc.shell, err, out)
		}
	}
}
