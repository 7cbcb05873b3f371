// Package version carries the build's version, stamped by the linker
// (-X github.com/dovetail-dev/dovetail/version.Version=...).
package version

import "runtime/debug"

// Version is the release version; "dev" for unstamped builds.
var Version = "dev"

// Commit is the VCS revision; filled from build info when not stamped.
var Commit = ""

// Revision is Commit, or the VCS revision the Go toolchain stamped into
// the build info, or "".
func Revision() string {
	c := Commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	return c
}

// String returns "VERSION (COMMIT)" for --version output.
func String() string {
	c := Revision()
	if c == "" {
		return Version
	}
	if len(c) > 12 {
		c = c[:12]
	}
	return Version + " (" + c + ")"
}
