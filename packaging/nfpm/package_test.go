package nfpm

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testVersion has the shapes hack/package.sh produces for an untagged build.
const testVersion = "1.2.3+git4.abcdef012345"

// repoRoot is two levels up from this package (packaging/nfpm).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "systemd", "dovetail-agent.service")); err != nil {
		t.Fatalf("repository root %s has no systemd/dovetail-agent.service: %v", root, err)
	}
	return root
}

// needTool skips when a host tool is missing, except under CI=true where the
// missing tool is a broken machine setup and must fail.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" && name != "rpm" {
			t.Fatalf("%s not on PATH", name)
		}
		t.Skipf("%s not on PATH (install it with apt-get to run this check)", name)
	}
}

var (
	packagerOnce sync.Once
	packagerPath string
	packagerErr  error
)

// packager builds tools/nfpm once per test binary (the Go build cache makes
// it seconds after the first, cold build of about 90 s).
func packager(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the nfpm packager; skipped in -short mode")
	}
	packagerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dovetail-nfpm-")
		if err != nil {
			packagerErr = err
			return
		}
		packagerPath = filepath.Join(dir, "dovetail-nfpm")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-C", filepath.Join(repoRoot(t), "tools", "nfpm"), "-o", packagerPath, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			packagerErr = fmt.Errorf("go build tools/nfpm: %w\n%s", err, out)
		}
	})
	if packagerErr != nil {
		t.Fatal(packagerErr)
	}
	return packagerPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if packagerPath != "" {
		_ = os.RemoveAll(filepath.Dir(packagerPath))
	}
	os.Exit(code)
}

// standIns writes small executables where the real binaries would be: this
// test is about the package around them (check.sh checks real binaries).
func standIns(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range []string{"dovetail-agent", "dovetail"} {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\necho "+b+" stand-in\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// build runs the packager into a fresh directory and returns the paths it
// printed, keyed by extension.
func build(t *testing.T, arch string, env ...string) map[string]string {
	t.Helper()
	dist := t.TempDir()
	root := repoRoot(t)
	cmd := exec.Command(packager(t), "-config", filepath.Join(root, "packaging", "nfpm", "nfpm.yaml"), "-target", dist)
	cmd.Env = append(os.Environ(),
		"DOVETAIL_VERSION="+testVersion,
		"DOVETAIL_ARCH="+arch,
		"DOVETAIL_BIN_DIR="+standIns(t),
		"DOVETAIL_ROOT="+root,
		"SOURCE_DATE_EPOCH=1780000000",
	)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dovetail-nfpm: %v\n%s", err, stderr.String())
	}
	got := map[string]string{}
	for _, p := range strings.Fields(stdout.String()) {
		got[filepath.Ext(p)] = p
	}
	return got
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

func TestFileNamesPerArch(t *testing.T) {
	for _, tc := range []struct{ arch, deb, rpm string }{
		{"amd64", "dovetail-agent_" + testVersion + "-1_amd64.deb", "dovetail-agent-" + testVersion + "-1.x86_64.rpm"},
		{"arm64", "dovetail-agent_" + testVersion + "-1_arm64.deb", "dovetail-agent-" + testVersion + "-1.aarch64.rpm"},
	} {
		got := build(t, tc.arch)
		if filepath.Base(got[".deb"]) != tc.deb || filepath.Base(got[".rpm"]) != tc.rpm {
			t.Errorf("%s: built %v, want %s and %s (check.sh and the AMI recipe expect these names)", tc.arch, got, tc.deb, tc.rpm)
		}
	}
}

func TestDeb(t *testing.T) {
	needTool(t, "dpkg-deb")
	root := repoRoot(t)
	deb := build(t, "arm64")[".deb"]

	info := run(t, "dpkg-deb", "--info", deb)
	for _, want := range []string{"Package: dovetail-agent", "Version: " + testVersion + "-1", "Architecture: arm64", "Section: admin"} {
		if !strings.Contains(info, "\n "+want+"\n") {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	for _, member := range []string{"postinst", "prerm", "postrm", "conffiles", "md5sums"} {
		if !regexp.MustCompile(`(?m)^ +\d+ bytes, +\d+ lines +\*? +` + member + `\b`).MatchString(info) {
			t.Errorf("deb control archive has no %s:\n%s", member, info)
		}
	}
	if got := strings.TrimSpace(run(t, "dpkg-deb", "--info", deb, "conffiles")); got != "/etc/dovetail/agent.env" {
		t.Errorf("conffiles = %q, want exactly /etc/dovetail/agent.env", got)
	}

	// Mode, owner and path of every regular file.
	contents := run(t, "dpkg-deb", "--contents", deb)
	files := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(contents), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || strings.HasPrefix(f[0], "d") {
			continue
		}
		files[f[len(f)-1]] = f[0] + " " + f[1]
	}
	want := map[string]string{
		"./usr/bin/dovetail-agent":                        "-rwxr-xr-x root/root",
		"./usr/bin/dovetail":                              "-rwxr-xr-x root/root",
		"./usr/lib/systemd/system/dovetail-agent.service": "-rw-r--r-- root/root",
		"./etc/dovetail/agent.env":                        "-rw-r----- root/root",
		"./usr/share/doc/dovetail-agent/README.md":        "-rw-r--r-- root/root",
	}
	for p, w := range want {
		if files[p] != w {
			t.Errorf("deb %s: got %q, want %q", p, files[p], w)
		}
	}
	for p := range files {
		if _, ok := want[p]; !ok {
			t.Errorf("deb has unexpected file %s", p)
		}
	}

	x := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, x)
	for pkgPath, src := range map[string]string{
		"usr/lib/systemd/system/dovetail-agent.service": "systemd/dovetail-agent.service",
		"etc/dovetail/agent.env":                        "packaging/nfpm/agent.env",
	} {
		got, err := os.ReadFile(filepath.Join(x, pkgPath))
		if err != nil {
			t.Fatal(err)
		}
		wantB, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantB) {
			t.Errorf("packaged /%s differs from %s", pkgPath, src)
		}
	}
	out, err := exec.Command(filepath.Join(x, "usr/bin/dovetail-agent")).Output()
	if err != nil || string(out) != "dovetail-agent stand-in\n" {
		t.Errorf("packaged /usr/bin/dovetail-agent: %q, %v", out, err)
	}
}

func TestRPM(t *testing.T) {
	needTool(t, "rpm")
	rpm := build(t, "amd64")[".rpm"]

	if got := run(t, "rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}", rpm); got != "dovetail-agent "+testVersion+" 1 x86_64 Apache-2.0" {
		t.Errorf("rpm header: %q", got)
	}
	gotFiles := strings.Fields(run(t, "rpm", "-qpl", rpm))
	wantFiles := []string{
		"/etc/dovetail",
		"/etc/dovetail/agent.env",
		"/usr/bin/dovetail",
		"/usr/bin/dovetail-agent",
		"/usr/lib/systemd/system/dovetail-agent.service",
		"/usr/share/doc/dovetail-agent/README.md",
	}
	if !slices.Equal(gotFiles, wantFiles) {
		// Owning /usr/bin or /usr/lib/systemd/system would conflict with
		// the distribution's filesystem package.
		t.Errorf("rpm -qpl:\n got %v\nwant %v", gotFiles, wantFiles)
	}
	if got := strings.TrimSpace(run(t, "rpm", "-qpc", rpm)); got != "/etc/dovetail/agent.env" {
		t.Errorf("rpm -qpc = %q, want exactly /etc/dovetail/agent.env", got)
	}
	// %config(noreplace) is flag bit 1<<4.
	flags := strings.Fields(run(t, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS}\n]", rpm))
	for i := 0; i+1 < len(flags); i += 2 {
		if flags[i] != "/etc/dovetail/agent.env" {
			continue
		}
		n, err := strconv.Atoi(flags[i+1])
		if err != nil || n&(1<<0) == 0 || n&(1<<4) == 0 {
			t.Errorf("agent.env file flags = %s, want config and noreplace", flags[i+1])
		}
	}
	modes := run(t, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME}\n]", rpm)
	for _, want := range []string{
		"/usr/bin/dovetail-agent -rwxr-xr-x root",
		"/etc/dovetail/agent.env -rw-r----- root",
		"/usr/lib/systemd/system/dovetail-agent.service -rw-r--r-- root",
	} {
		if !strings.Contains(modes, want+"\n") {
			t.Errorf("rpm file modes lack %q:\n%s", want, modes)
		}
	}
	run(t, "rpm", "-K", "--nosignature", rpm)
}

// TestReproducible: the same inputs and SOURCE_DATE_EPOCH give the same bytes,
// so a rebuilt package can be compared with a published one.
func TestReproducible(t *testing.T) {
	a, b := build(t, "amd64"), build(t, "amd64")
	for _, ext := range []string{".deb", ".rpm"} {
		x, err := os.ReadFile(a[ext])
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(b[ext])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("two %s builds differ (%d and %d bytes)", ext, len(x), len(y))
		}
	}
}

func TestRefusesUnsetVariables(t *testing.T) {
	dist := t.TempDir()
	cmd := exec.Command(packager(t), "-config", filepath.Join(repoRoot(t), "packaging", "nfpm", "nfpm.yaml"), "-target", dist)
	cmd.Env = append(os.Environ(), "DOVETAIL_VERSION=", "DOVETAIL_ARCH=amd64", "DOVETAIL_BIN_DIR="+standIns(t), "DOVETAIL_ROOT=")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("dovetail-nfpm built packages with DOVETAIL_VERSION and DOVETAIL_ROOT empty:\n%s", out)
	}
	if !strings.Contains(string(out), "DOVETAIL_ROOT, DOVETAIL_VERSION") {
		t.Errorf("error does not name the unset variables:\n%s", out)
	}
	if left, _ := os.ReadDir(dist); len(left) != 0 {
		t.Errorf("a failed build left %d files in the target directory", len(left))
	}
}

// fakeSystemctl puts a systemctl that appends its arguments to log first on
// a PATH that otherwise is the system's, and returns that PATH.
func fakeSystemctl(t *testing.T, log string) string {
	t.Helper()
	dir := t.TempDir()
	fake := "#!/bin/sh\necho \"$*\" >>" + strconv.Quote(log) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir + ":/usr/sbin:/usr/bin:/sbin:/bin"
}

// newRoot makes a scratch target root with the agent's state directory,
// booted with systemd (run/systemd/system present) or not.
func newRoot(t *testing.T, booted bool) string {
	t.Helper()
	root := t.TempDir()
	dirs := []string{"var/lib/dovetail-agent"}
	if booted {
		dirs = append(dirs, "run/systemd/system")
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dovetail-agent/health.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	return root
}

// readCalls returns the systemctl calls logged so far, with the target root
// written as {root}, and truncates the log.
func readCalls(t *testing.T, log, root string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(strings.ReplaceAll(string(b), root, "{root}"))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// scriptRun runs one maintainer script the way `dpkg --root=DIR
// --force-script-chrootless` would (DPKG_ROOT=DIR), with a recording
// systemctl, and returns the calls it made and the target root.
func scriptRun(t *testing.T, script string, booted bool, args ...string) (calls []string, root string) {
	t.Helper()
	root = newRoot(t, booted)
	log := filepath.Join(t.TempDir(), "systemctl.log")
	path := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", append([]string{path}, args...)...)
	cmd.Env = []string{"PATH=" + fakeSystemctl(t, log), "DPKG_ROOT=" + root}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("script %v: %v\n%s", args, err, out)
	}
	return readCalls(t, log, root), root
}

type scriptCase struct {
	script string // control member (deb) or rpm query tag
	args   []string
	booted bool
	want   []string
}

func checkScripts(t *testing.T, get func(name string) string, cases []scriptCase) {
	t.Helper()
	for _, c := range cases {
		calls, _ := scriptRun(t, get(c.script), c.booted, c.args...)
		if !slices.Equal(calls, c.want) {
			t.Errorf("%s %v (booted=%v): systemctl calls %q, want %q", c.script, c.args, c.booted, calls, c.want)
		}
	}
}

const (
	unit    = "dovetail-agent.service"
	enable  = "--root={root} enable " + unit
	disable = "--root={root} disable " + unit
)

// TestDebMaintainerScripts runs the scripts exactly as packaged in the deb.
func TestDebMaintainerScripts(t *testing.T) {
	needTool(t, "dpkg-deb")
	deb := build(t, "amd64")[".deb"]
	ctrl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctrl)
	get := func(name string) string {
		b, err := os.ReadFile(filepath.Join(ctrl, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	checkScripts(t, get, []scriptCase{
		{"postinst", []string{"configure", ""}, true, []string{"daemon-reload", enable}},
		{"postinst", []string{"configure", "1.0.0-1"}, true, []string{"daemon-reload", enable, "try-restart " + unit}},
		{"postinst", []string{"configure", ""}, false, []string{enable}},
		{"prerm", []string{"remove"}, true, []string{"stop " + unit, disable}},
		{"prerm", []string{"remove"}, false, []string{disable}},
		{"prerm", []string{"upgrade", "1.3.0-1"}, true, nil},
		{"postrm", []string{"remove"}, true, []string{"daemon-reload"}},
		{"postrm", []string{"upgrade", "1.3.0-1"}, false, nil},
	})
	// purge deletes the state directory, and only it.
	_, root := scriptRun(t, get("postrm"), false, "purge")
	if _, err := os.Stat(filepath.Join(root, "var/lib/dovetail-agent")); !os.IsNotExist(err) {
		t.Errorf("postrm purge left the state directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib")); err != nil {
		t.Errorf("postrm purge removed more than the state directory: %v", err)
	}
	_, root = scriptRun(t, get("postrm"), false, "remove")
	if _, err := os.Stat(filepath.Join(root, "var/lib/dovetail-agent")); err != nil {
		t.Errorf("postrm remove deleted the state directory: %v", err)
	}
}

// TestRPMMaintainerScripts runs the scriptlets exactly as packaged in the
// rpm, with rpm's arguments (DPKG_ROOT only stands in for the target root).
func TestRPMMaintainerScripts(t *testing.T) {
	needTool(t, "rpm")
	rpm := build(t, "amd64")[".rpm"]
	get := func(tag string) string { return run(t, "rpm", "-qp", "--qf", "%{"+tag+"}", rpm) }
	checkScripts(t, get, []scriptCase{
		{"POSTIN", []string{"1"}, true, []string{"daemon-reload", enable}},
		{"POSTIN", []string{"2"}, true, []string{"daemon-reload", enable, "try-restart " + unit}},
		{"POSTIN", []string{"1"}, false, []string{enable}},
		{"PREUN", []string{"0"}, true, []string{"stop " + unit, disable}},
		{"PREUN", []string{"1"}, true, nil},
		{"POSTUN", []string{"0"}, true, []string{"daemon-reload"}},
		{"POSTUN", []string{"1"}, false, nil},
	})
}

// changedRoot is a copy of the files nfpm.yaml takes from the repository,
// with a line added to agent.env: the "next release" whose default settings
// changed, to see how each package manager treats a locally edited config.
func changedRoot(t *testing.T) string {
	t.Helper()
	src, dst := repoRoot(t), t.TempDir()
	for _, f := range []string{
		"systemd/dovetail-agent.service",
		"packaging/nfpm/agent.env",
		"packaging/nfpm/README.md",
		"packaging/nfpm/scripts/postinstall.sh",
		"packaging/nfpm/scripts/preremove.sh",
		"packaging/nfpm/scripts/postremove.sh",
	} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "packaging/nfpm/agent.env" {
			b = append(b, "#DOVETAIL_AGENT_NEW_SETTING=\n"...)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// appendTo adds a line to a file, as an operator editing agent.env would.
func appendTo(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(line); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDpkgInstallUpgradeRemovePurge drives real dpkg through a package's
// life in a scratch root: install, upgrade with a locally edited agent.env,
// remove, purge.
func TestDpkgInstallUpgradeRemovePurge(t *testing.T) {
	needTool(t, "dpkg")
	if os.Geteuid() != 0 {
		t.Skip("dpkg --root needs root")
	}
	v1 := build(t, "amd64")[".deb"]
	v2 := build(t, "amd64", "DOVETAIL_VERSION=1.2.4", "DOVETAIL_ROOT="+changedRoot(t))[".deb"]

	root := newRoot(t, true)
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "systemctl.log")
	path := fakeSystemctl(t, log)
	dpkg := func(args ...string) {
		t.Helper()
		cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--log=/dev/null", "--force-confold"}, args...)...)
		cmd.Env = []string{"PATH=" + path}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dpkg %v: %v\n%s", args, err, out)
		}
	}
	status := func() string {
		t.Helper()
		cmd := exec.Command("dpkg-query", "--root="+root, "-W", "-f=${Version} ${db:Status-Abbrev}", "dovetail-agent")
		out, _ := cmd.Output() // exits 1 once purged
		return strings.TrimSpace(string(out))
	}
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(root, p)); return err == nil }
	expectCalls := func(step string, want ...string) {
		t.Helper()
		if got := readCalls(t, log, root); !slices.Equal(got, want) {
			t.Errorf("%s: systemctl calls %q, want %q", step, got, want)
		}
	}

	dpkg("-i", v1)
	if got := status(); got != testVersion+"-1 ii" {
		t.Fatalf("after install: status %q", got)
	}
	expectCalls("install", "daemon-reload", enable)
	for _, p := range []string{"usr/bin/dovetail-agent", "usr/bin/dovetail", "usr/lib/systemd/system/dovetail-agent.service", "etc/dovetail/agent.env"} {
		if !exists(p) {
			t.Errorf("after install: /%s missing", p)
		}
	}

	env := filepath.Join(root, "etc/dovetail/agent.env")
	edit := "DOVETAIL_AGENT_COORDINATORS=10.0.0.10:8080\n"
	appendTo(t, env, edit)

	dpkg("-i", v2)
	if got := status(); got != "1.2.4-1 ii" {
		t.Fatalf("after upgrade: status %q", got)
	}
	// old postrm upgrade, then new postinst configure OLD.
	expectCalls("upgrade", "daemon-reload", "daemon-reload", enable, "try-restart "+unit)
	if b, err := os.ReadFile(env); err != nil || !strings.HasSuffix(string(b), edit) {
		t.Errorf("upgrade lost the local edit of agent.env (err %v)", err)
	}
	// The new default is kept beside it (--force-confold, as unattended
	// upgrades do), not silently merged.
	if b, err := os.ReadFile(env + ".dpkg-dist"); err != nil || !strings.Contains(string(b), "DOVETAIL_AGENT_NEW_SETTING") {
		t.Errorf("upgrade did not leave the new default as agent.env.dpkg-dist (err %v)", err)
	}

	dpkg("-r", "dovetail-agent")
	expectCalls("remove", "stop "+unit, disable, "daemon-reload")
	if exists("usr/bin/dovetail-agent") || exists("usr/lib/systemd/system/dovetail-agent.service") {
		t.Error("after remove: binary or unit still there")
	}
	if !exists("etc/dovetail/agent.env") || !exists("var/lib/dovetail-agent/health.json") {
		t.Error("remove (not purge) deleted agent.env or the state directory")
	}

	dpkg("--purge", "dovetail-agent")
	if exists("etc/dovetail/agent.env") || exists("var/lib/dovetail-agent") {
		t.Error("after purge: agent.env or the state directory still there")
	}
	if got := status(); got != "" && !strings.HasSuffix(got, "pn") {
		t.Errorf("after purge: status %q", got)
	}
}

// TestAgentEnvNamesRealFlags: a DOVETAIL_AGENT_* line in agent.env that
// matches no agent flag would be silently ignored on every node.
func TestAgentEnvNamesRealFlags(t *testing.T) {
	root := repoRoot(t)
	flags := agentFlags(t, filepath.Join(root, "cmd", "dovetail-agent"))
	env, err := os.ReadFile("agent.env")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#?(DOVETAIL_AGENT_[A-Z0-9_]+)=`).FindAllStringSubmatch(string(env), -1) {
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(m[1], "DOVETAIL_AGENT_"), "_", "-"))
		documented[name] = true
		if !flags[name] {
			t.Errorf("agent.env sets %s but dovetail-agent has no --%s flag", m[1], name)
		}
	}
	if len(documented) == 0 {
		t.Fatal("agent.env documents no DOVETAIL_AGENT_* variable")
	}
	// A new flag missing here is worth knowing but not worth failing
	// everyone's build over while the agent is being written.
	for f := range flags {
		if !documented[f] && f != "version" {
			t.Logf("agent flag --%s is not documented in agent.env", f)
		}
	}
}

// agentFlags finds the flag names the agent's main package defines: the
// string literal naming the flag in fs.XxxVar(&v, "name", ...) or
// fs.Xxx("name", ...).
func agentFlags(t *testing.T, dir string) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	matches, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	defineFuncs := map[string]int{ // method → index of the name argument
		"StringVar": 1, "BoolVar": 1, "IntVar": 1, "Int64Var": 1, "UintVar": 1, "Float64Var": 1, "DurationVar": 1, "TextVar": 1, "Func": 0, "BoolFunc": 0,
		"String": 0, "Bool": 0, "Int": 0, "Int64": 0, "Uint": 0, "Float64": 0, "Duration": 0,
	}
	flags := map[string]bool{}
	for _, path := range matches {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			recv, ok := sel.X.(*ast.Ident)
			if !ok || recv.Name != "fs" {
				return true
			}
			i, ok := defineFuncs[sel.Sel.Name]
			if !ok || len(call.Args) <= i {
				return true
			}
			if lit, ok := call.Args[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					flags[s] = true
				}
			}
			return true
		})
	}
	if len(flags) == 0 {
		t.Fatalf("found no fs.XxxVar flag definitions in %s: has the agent's flag set been renamed?", dir)
	}
	return flags
}

// TestRPMInstallUpgradeErase drives real rpm through a package's life in a
// scratch root: install, upgrade with a locally edited agent.env, erase.
// Scriptlets are off (they would run chrooted, and the scratch root has no
// shell); TestRPMMaintainerScripts runs them.
func TestRPMInstallUpgradeErase(t *testing.T) {
	needTool(t, "rpm")
	if os.Geteuid() != 0 {
		t.Skip("rpm --root needs root")
	}
	v1 := build(t, "amd64")[".rpm"]
	v2 := build(t, "amd64", "DOVETAIL_VERSION=1.2.4", "DOVETAIL_ROOT="+changedRoot(t))[".rpm"]
	root := t.TempDir()
	rpmRun := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("rpm", append([]string{"--root=" + root}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("rpm %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(root, p)); return err == nil }
	rpmRun("--initdb")
	install := []string{"--nodeps", "--noscripts", "--ignorearch"}

	rpmRun(append([]string{"-i"}, append(install, v1)...)...)
	if got := strings.TrimSpace(rpmRun("-q", "--qf", "%{VERSION}", "dovetail-agent")); got != testVersion {
		t.Fatalf("after install: version %q", got)
	}
	rpmRun("-V", "dovetail-agent") // every file as packaged

	env := filepath.Join(root, "etc/dovetail/agent.env")
	edit := "DOVETAIL_AGENT_COORDINATORS=10.0.0.10:8080\n"
	appendTo(t, env, edit)

	rpmRun(append([]string{"-U"}, append(install, v2)...)...)
	if got := strings.TrimSpace(rpmRun("-q", "--qf", "%{VERSION}", "dovetail-agent")); got != "1.2.4" {
		t.Fatalf("after upgrade: version %q", got)
	}
	if b, err := os.ReadFile(env); err != nil || !strings.HasSuffix(string(b), edit) {
		t.Errorf("upgrade lost the local edit of agent.env (err %v)", err)
	}
	if b, err := os.ReadFile(env + ".rpmnew"); err != nil || !strings.Contains(string(b), "DOVETAIL_AGENT_NEW_SETTING") {
		t.Errorf("upgrade did not leave the new default as agent.env.rpmnew (err %v)", err)
	}

	rpmRun("-e", "--nodeps", "--noscripts", "dovetail-agent")
	if exists("usr/bin/dovetail-agent") || exists("usr/lib/systemd/system/dovetail-agent.service") {
		t.Error("after erase: binary or unit still there")
	}
	if b, err := os.ReadFile(env + ".rpmsave"); err != nil || !strings.HasSuffix(string(b), edit) {
		t.Errorf("erase did not keep the edited agent.env as agent.env.rpmsave (err %v)", err)
	}
}
