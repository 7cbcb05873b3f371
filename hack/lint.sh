#!/usr/bin/env bash
# gofmt, go vet and staticcheck over the product module. Any finding fails.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
unformatted=$(gofmt -l $(git ls-files -co --exclude-standard '*.go' | grep -v '^tools/' || true) 2>/dev/null || true)
if [[ -n "$unformatted" ]]; then
  echo "gofmt: these files need formatting:"; echo "$unformatted"; fail=1
fi
echo "go vet ./..."
go vet ./... || fail=1
sc=bin/staticcheck
if [[ ! -x $sc ]]; then
  echo "staticcheck: bin/staticcheck missing (run make tools); using go run"
  sc="go run honnef.co/go/tools/cmd/staticcheck@v0.7.0"
fi
echo "staticcheck ./..."
$sc ./... || fail=1
exit $fail
