// Package nfpm holds the dovetail-agent deb and rpm recipe (nfpm.yaml, the
// default agent.env, the maintainer scripts) and, in its tests, the checks
// that the packages built from it have the right layout, metadata and
// maintainer-script behaviour. It has no Go API: hack/package.sh builds the
// packages with tools/nfpm.
package nfpm
