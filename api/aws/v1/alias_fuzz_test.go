package v1

import (
	"strings"
	"testing"
)

// FuzzParseAlias: amiSelectorTerms[].alias is user input read by the
// provider on every launch. ParseAlias never panics; what it accepts has a
// supported family and a non-empty version, and reads back as the input
// (family lower-cased), so the provider resolves what the user wrote.
func FuzzParseAlias(f *testing.F) {
	for _, s := range []string{"al2023@latest", "bottlerocket@1.10.0", "AL2@v20240807", "windows2025@latest",
		"windows2022@v1", "@latest", "al2023@", "al2023", "al2023@@x", "ubuntu@latest", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAlias(s)
		if err != nil {
			return
		}
		if _, ok := aliasFamilies[a.Family]; !ok || a.Version == "" {
			t.Fatalf("ParseAlias(%q) = %+v: unknown family or empty version", s, a)
		}
		family, version, _ := strings.Cut(s, "@")
		if a.Family != strings.ToLower(family) || a.Version != version {
			t.Fatalf("ParseAlias(%q) = %+v, want %s@%s", s, a, strings.ToLower(family), version)
		}
	})
}
