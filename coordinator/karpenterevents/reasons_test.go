package karpenterevents

import (
	"os"
	"strings"
	"testing"
)

// The README's events table must list every reason with its type, so an
// operator can grep it for what an Event means.
func TestReadmeListsEveryReason(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for r, info := range All {
		if info.Type != "Normal" && info.Type != "Warning" {
			t.Errorf("%s: type %q", r, info.Type)
		}
		row := "| `" + r + "` | " + info.Type + " |"
		if !strings.Contains(string(b), row) {
			t.Errorf("README.md lacks row starting %q", row)
		}
	}
}
