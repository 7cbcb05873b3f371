package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVersionAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "dovetail-agent ") {
		t.Fatalf("--version: %d %q", code, out.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "DOVETAIL_AGENT_") {
		t.Fatalf("--help: %d %q", code, errb.String())
	}
	if code := run([]string{"--no-such-flag"}, &out, &errb); code != 2 {
		t.Fatalf("bad flag exit %d", code)
	}
}

func TestReadKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	// 32 and 16 byte keys, base64, with a comment and a blank line.
	content := "# primary first\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n\nAgICAgICAgICAgICAgICAg==\n"
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := readKeys(p)
	if err != nil || len(keys) != 2 || len(keys[0]) != 32 || len(keys[1]) != 16 {
		t.Fatalf("%v %v", keys, err)
	}
	if err := os.WriteFile(p, []byte("not base64!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readKeys(p); err == nil {
		t.Fatal("garbage key accepted")
	}
}
