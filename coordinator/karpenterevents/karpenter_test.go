package karpenterevents

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every Karpenter v1.14 reason is either recorded by Dovetail (All) or
// listed in NotEmitted with why, never both; what Dovetail records under a
// Karpenter reason has Karpenter's type and objects.
func TestEveryKarpenterReasonAccountedFor(t *testing.T) {
	for r, up := range Karpenter {
		info, emitted := All[r]
		why, skipped := NotEmitted[r]
		switch {
		case emitted && skipped:
			t.Errorf("%s: both emitted and in NotEmitted (%s)", r, why)
		case !emitted && !skipped:
			t.Errorf("%s: Karpenter v1.14 reason neither emitted nor explained in NotEmitted", r)
		case emitted:
			if !info.Karp {
				t.Errorf("%s: Karpenter has it but All marks it Dovetail's", r)
			}
			if info.Type != up.Type {
				t.Errorf("%s: type %s, Karpenter %s", r, info.Type, up.Type)
			}
			for _, o := range info.Objects {
				if !slices.Contains(up.Objects, o) {
					t.Errorf("%s: recorded on %s, Karpenter records it on %v", r, o, up.Objects)
				}
			}
		}
	}
	for r, info := range All {
		if _, ok := Karpenter[r]; info.Karp && !ok {
			t.Errorf("%s: marked Karpenter's but not in Karpenter", r)
		}
	}
	for r := range NotEmitted {
		if _, ok := Karpenter[r]; !ok {
			t.Errorf("NotEmitted %s is not a Karpenter reason", r)
		}
	}
}

// The root README's Events table has a row for every Karpenter reason, so
// an operator finds each one there: recorded on what, or why not.
func TestRootReadmeListsKarpenterReasons(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for r := range Karpenter {
		i := strings.Index(doc, "| `"+r+"` |")
		if i < 0 {
			t.Errorf("README.md Events table lacks a row for %s", r)
			continue
		}
		row := doc[i : i+strings.IndexByte(doc[i:], '\n')]
		if info, ok := All[r]; ok {
			for _, o := range info.Objects {
				if !strings.Contains(row, o) {
					t.Errorf("README.md row of %s does not name %s: %s", r, o, row)
				}
			}
		} else if !strings.Contains(row, "not emitted") {
			t.Errorf("README.md row of %s should say it is not emitted (and why): %s", r, row)
		}
	}
}

// Every reason in All is recorded somewhere in the non-test code (by its
// constant or literally, as package drain does), so All cannot claim a
// reason nothing emits.
func TestEveryListedReasonIsEmitted(t *testing.T) {
	var src strings.Builder
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "tools" || d.Name() == "karpenterevents" || strings.HasPrefix(d.Name(), ".")) && p != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		src.Write(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code := src.String()
	for r := range All {
		if !strings.Contains(code, "karpenterevents."+r) && !strings.Contains(code, `"`+r+`"`) {
			t.Errorf("%s is in All but no non-test code records it", r)
		}
	}
}
