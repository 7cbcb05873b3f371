// Package helm holds the tests of the Helm charts beside it:
// dovetail-coordinator (the coordinator with its CRDs in crds/) and
// dovetail-crd (the CRDs alone, as templates, so upgrades update them).
//
// The tests run the real helm binary that hack/build-tools.sh builds into
// bin/ (skipped without it, failed under CI=true): `helm lint --strict`,
// `helm template` with the defaults and with values-production.yaml, the
// refusals of values.schema.json, `helm install --dry-run=server` against the
// local control plane, and the coordinator binary started with the flags,
// environment, files and ports the rendered StatefulSet gives it.
package helm
