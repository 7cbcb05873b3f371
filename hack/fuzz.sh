#!/usr/bin/env bash
# Explores every fuzz target of outside input briefly (FUZZTIME each, 5s by
# default) on top of its committed seed corpus, which plain `go test` already
# replays. A finding fails the run and is written under the package's
# testdata/fuzz/<Target>/ by go test: commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
t="${FUZZTIME:-5s}"
targets=(
  "./daemon/imds FuzzNoticeParsers"
  "./coordinator/disruption/budget FuzzBudget"
  "./api/aws/v1 FuzzParseAlias"
  "./report FuzzReportBody"
  "./cloud/ec2 FuzzEC2Answers"
)
for e in "${targets[@]}"; do
  read -r pkg name <<<"$e"
  echo "fuzz: $name ($pkg, $t)"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg"
done
