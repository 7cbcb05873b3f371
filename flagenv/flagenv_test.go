package flagenv

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestApplySetsFlagsAndReportsEveryBadValue(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	dir := fs.String("data-dir", "/default", "")
	fs.Duration("leak-grace", time.Minute, "")
	fs.Int("count", 1, "")
	env := map[string]string{"P_DATA_DIR": "/env", "P_LEAK_GRACE": "soon", "P_COUNT": "x"}
	err := Apply(fs, "P_", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if *dir != "/env" {
		t.Fatalf("data-dir = %q, want /env", *dir)
	}
	if err == nil || !strings.Contains(err.Error(), "P_LEAK_GRACE") || !strings.Contains(err.Error(), "P_COUNT") {
		t.Fatalf("want both bad values reported, got %v", err)
	}
	// The command line still wins when parsed afterwards.
	if err := fs.Parse([]string{"--data-dir", "/cli"}); err != nil || *dir != "/cli" {
		t.Fatalf("command line should win: %v %q", err, *dir)
	}
}

func TestName(t *testing.T) {
	if got := Name("DOVETAIL_AGENT_", "state-dir"); got != "DOVETAIL_AGENT_STATE_DIR" {
		t.Fatal(got)
	}
}
