package main

import (
	"strings"
	"testing"
)

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "1.2.3", "B": "/bin dir", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	got, err := expandEnv("# ${UNSET} in a comment stays\nversion: ${A}\nsrc: ${B}/x $1 $A\n", lookup)
	if err != nil {
		t.Fatalf("expandEnv: %v", err)
	}
	want := "# ${UNSET} in a comment stays\nversion: 1.2.3\nsrc: /bin dir/x $1 $A\n"
	if got != want {
		t.Errorf("expandEnv:\n got %q\nwant %q", got, want)
	}

	_, err = expandEnv("a: ${NOPE}\nb: ${EMPTY}\nc: ${NOPE}\n", lookup)
	if err == nil || !strings.Contains(err.Error(), "EMPTY, NOPE") {
		t.Errorf("expandEnv with unset variables: err = %v, want one naming EMPTY, NOPE", err)
	}
}
