package devcluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/controlplane"
)

func TestFormatSummary(t *testing.T) {
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue}
	notReady := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse}
	nodes := []corev1.Node{
		{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{ready}}},
		{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{notReady}}},
	}
	now := metav1.Now()
	pods := []corev1.Pod{
		{Status: corev1.PodStatus{Phase: corev1.PodRunning}},
		{Status: corev1.PodStatus{Phase: corev1.PodRunning}},
		{Status: corev1.PodStatus{Phase: corev1.PodPending}},
		{}, // no phase yet counts as pending
		{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: corev1.PodStatus{Phase: corev1.PodRunning}},
	}
	got := formatSummary(nodes, pods, 3, 2)
	want := "nodes 1/2 ready · pods 2 running, 2 pending, 1 terminating · nodeclaims 3 · nodepools 2"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if got := formatSummary(nil, nil, -1, -1); got != "nodes 0/0 ready · pods 0" {
		t.Fatalf("empty cluster without CRDs: %q", got)
	}
}

func TestProgressWriterStripsSlogKeys(t *testing.T) {
	var buf bytes.Buffer
	w := progressWriter{p: printer{w: &buf}}
	_, _ = w.Write([]byte("level=INFO msg=\"etcd ready\" url=http://127.0.0.1:1 elapsed=1.2s\nlevel=WARN msg=\"no CRDs installed\" dir=/x\n"))
	want := "  · etcd ready url=http://127.0.0.1:1 elapsed=1.2s\n  ! no CRDs installed dir=/x\n"
	if buf.String() != want {
		t.Fatalf("got %q\nwant %q", buf.String(), want)
	}
}

func TestDefaultExamplesPrefersAutoModeDefaults(t *testing.T) {
	dir := t.TempDir()
	write := func(name string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("gpu.yaml")
	write("invalid/bad.yaml")
	files, err := DefaultExamples(dir)
	if err != nil || len(files) != 1 || filepath.Base(files[0]) != "gpu.yaml" {
		t.Fatalf("without default files: %v %v", files, err)
	}
	write("nodepool-system.yaml")
	write("ec2nodeclass-default.yaml")
	files, err = DefaultExamples(dir)
	if err != nil || len(files) != 2 || filepath.Base(files[0]) != "ec2nodeclass-default.yaml" || filepath.Base(files[1]) != "nodepool-system.yaml" {
		t.Fatalf("with default files (class first): %v %v", files, err)
	}
	files, err = DefaultExamples(filepath.Join(dir, "missing"))
	if err != nil || files != nil {
		t.Fatalf("missing dir: %v %v", files, err)
	}
}

func TestSecondRunOnSameStateDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockStateDir(dir); err == nil || !strings.Contains(err.Error(), "another `dovetail dev` is running") {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock2, err := lockStateDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

// recordingPart proves parts start after the control plane, see the
// cluster, and stop in reverse order.
type recordingPart struct {
	name   string
	events *[]string
}

func (p recordingPart) Name() string { return p.name }
func (p recordingPart) Start(_ context.Context, c *Cluster) error {
	if c.RESTConfig == nil || c.ControlPlane == nil {
		*p.events = append(*p.events, p.name+" started without a cluster")
	}
	*p.events = append(*p.events, "start "+p.name)
	return nil
}
func (p recordingPart) Stop() { *p.events = append(*p.events, "stop "+p.name) }

// The whole dev cluster, as `dovetail dev` runs it, against the real
// control plane: up, kubeconfig usable, examples applied, parts in order,
// then a clean teardown on cancel.
func TestRunUpAndDown(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local control plane (-short)")
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := controlplane.BinariesPresent(filepath.Join(root, "bin")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	state := t.TempDir()
	examples := filepath.Join(t.TempDir(), "default-nodeclass.yaml")
	if err := os.WriteFile(examples, []byte(`apiVersion: v1
kind: ConfigMap
metadata:
  name: dev-example
  namespace: default
data:
  applied: "yes"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var events []string
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var readyErr error
	err = Run(ctx, Config{
		StateDir:     state,
		ExampleFiles: []string{examples},
		Parts:        []Part{recordingPart{"a", &events}, recordingPart{"b", &events}},
		Out:          &out,
		SummaryEvery: -1,
		Ready: func(c *Cluster) {
			defer cancel()
			kube, err := kubernetes.NewForConfig(c.RESTConfig)
			if err != nil {
				readyErr = err
				return
			}
			cm, err := kube.CoreV1().ConfigMaps("default").Get(ctx, "dev-example", metav1.GetOptions{})
			if err != nil || cm.Data["applied"] != "yes" {
				readyErr = err
				if err == nil {
					readyErr = os.ErrNotExist
				}
				return
			}
			if _, err := os.Stat(c.Kubeconfig); err != nil {
				readyErr = err
			}
		},
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if readyErr != nil {
		t.Fatalf("cluster not as expected when ready: %v\n%s", readyErr, out.String())
	}
	if got := strings.Join(events, ", "); got != "start a, start b, stop b, stop a" {
		t.Errorf("part lifecycle: %s", got)
	}
	for _, want := range []string{"export KUBECONFIG=" + filepath.Join(state, "kubeconfig"), "Dovetail dev cluster ready", "stopping the control plane"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(state, "kubeconfig")); !os.IsNotExist(err) {
		t.Errorf("kubeconfig left behind after teardown: %v", err)
	}
}
