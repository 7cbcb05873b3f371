// Command dovetail-nfpm builds Dovetail's deb and rpm packages from an nfpm
// YAML config, using nfpm as a library.
//
// It lives in its own module so nfpm's dependency graph (go-git, sprig, ...)
// never reaches the product module. hack/package.sh builds it into bin/ and
// calls it once per architecture:
//
//	dovetail-nfpm -config packaging/nfpm/nfpm.yaml -target dist -packagers deb,rpm
//
// The config may use ${VAR} references anywhere outside comments (nfpm itself
// expands only some fields, and not script paths); they are expanded from the
// environment before nfpm parses the file, and an unset or empty variable is
// an error here rather than an empty string in a package.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dovetail-nfpm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "packaging/nfpm/nfpm.yaml", "nfpm YAML config")
	target := fs.String("target", "dist", "directory the packages are written to")
	packagers := fs.String("packagers", "deb,rpm", "comma-separated package formats")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	raw, err := os.ReadFile(*config)
	if err != nil {
		log.Error("read config", "config", *config, "err", err)
		return 1
	}
	expanded, err := expandEnv(string(raw), os.LookupEnv)
	if err != nil {
		log.Error("config refers to unset variables", "config", *config, "err", err)
		return 1
	}
	if err := os.MkdirAll(*target, 0o755); err != nil {
		log.Error("create target directory", "dir", *target, "err", err)
		return 1
	}
	for _, format := range strings.Split(*packagers, ",") {
		format = strings.TrimSpace(format)
		if format == "" {
			continue
		}
		path, err := build(expanded, format, *target)
		if err != nil {
			log.Error("build package", "format", format, "err", err)
			return 1
		}
		fi, err := os.Stat(path)
		if err != nil {
			log.Error("stat package", "path", path, "err", err)
			return 1
		}
		log.Info("built package", "format", format, "path", path, "bytes", fi.Size())
		fmt.Fprintln(stdout, path)
	}
	return 0
}

// build writes one package of the given format, from an already expanded
// config, into dir under nfpm's conventional file name and returns its path.
func build(config, format, dir string) (path string, err error) {
	// The identity mapping: variables were expanded by expandEnv, and nfpm's
	// own $NFPM_* look-ups must not pick up stray environment.
	cfg, err := nfpm.ParseWithEnvMapping(strings.NewReader(config), func(string) string { return "" })
	if err != nil {
		return "", fmt.Errorf("parse config: %w", err)
	}
	info, err := cfg.Get(format)
	if err != nil {
		return "", fmt.Errorf("config for %s: %w", format, err)
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", fmt.Errorf("validate config for %s: %w", format, err)
	}
	pkg, err := nfpm.Get(format)
	if err != nil {
		return "", fmt.Errorf("packager %s: %w", format, err)
	}
	path = filepath.Join(dir, pkg.ConventionalFileName(info))
	info.Target = path
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	// A half-written package must not be left where the next step finds it.
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if err := pkg.Package(info, f); err != nil {
		return "", fmt.Errorf("package %s: %w", format, err)
	}
	return path, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces every ${VAR} outside comment lines with its value and
// fails, naming them all, when any is unset or empty: nfpm would otherwise
// build e.g. a package with version "" or a content source "/dovetail-agent".
// Only the braced form is expanded, so a "$1" in a description stays as is.
func expandEnv(config string, lookup func(string) (string, bool)) (string, error) {
	missing := map[string]bool{}
	lines := strings.Split(config, "\n")
	for i, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue // comments document the variables
		}
		lines[i] = envRef.ReplaceAllStringFunc(line, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			v, ok := lookup(name)
			if !ok || v == "" {
				missing[name] = true
			}
			return v
		})
	}
	if len(missing) > 0 {
		names := make([]string, 0, len(missing))
		for n := range missing {
			names = append(names, n)
		}
		sort.Strings(names)
		return "", fmt.Errorf("unset or empty: %s", strings.Join(names, ", "))
	}
	return strings.Join(lines, "\n"), nil
}
