// Package flagenv lets every command-line flag of a daemon also be set from
// the environment (PREFIX_FLAG_NAME), the way systemd units and Kubernetes
// pod specs like to configure things.
package flagenv

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Name is the environment variable for a flag: prefix + upper-cased name
// with dashes as underscores (--data-dir → DOVETAIL_COORDINATOR_DATA_DIR).
func Name(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Apply sets each flag of fs whose variable lookup finds. Call it before
// fs.Parse so the command line wins over the environment. Every bad value
// is reported, not just the first.
func Apply(fs *flag.FlagSet, prefix string, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := Name(prefix, f.Name)
		if v, ok := lookup(name); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// Parse sets fs from the environment (prefix), then from args, so the
// command line wins. Bad values are written to stderr; it returns
// flag.ErrHelp after -h (exit 0) and any other error for a usage failure
// (exit 2).
func Parse(fs *flag.FlagSet, prefix string, args []string, lookup func(string) (string, bool), stderr io.Writer) error {
	if err := Apply(fs, prefix, lookup); err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return err
	}
	return fs.Parse(args)
}

// ExitCode is the process exit code for an error from Parse.
func ExitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
