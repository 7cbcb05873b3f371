# Dovetail — build, test and run.
#
#   make dev     bring up the local cluster (control plane, EC2 simulator, coordinators, agents)
#   make test    the whole test suite (what CI runs): tools, generated-code check, lint, fuzz (briefly), unit + integration tests
#   make bench   print the benchmark tables

SHELL      := /usr/bin/env bash
GO         ?= go
BIN        := $(CURDIR)/bin
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X github.com/dovetail-dev/dovetail/version.Version=$(VERSION)
GOTESTFLAGS ?= -timeout 20m
export PATH := $(BIN):$(PATH)

.PHONY: all build tools generate verify-generate lint test unit bench dev clean systemd-verify package fuzz

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# Kubernetes control plane, etcd, kwok, AEMM and staticcheck, built once from the Go module proxy.
tools:
	@bash hack/build-tools.sh

generate:
	@bash hack/generate.sh

verify-generate:
	@bash hack/verify-generate.sh

lint:
	@bash hack/lint.sh

systemd-verify:
	@bash systemd/verify.sh

# Every fuzz target of outside input, briefly (FUZZTIME=5s each) on top of its seed corpus.
fuzz:
	@bash hack/fuzz.sh

# Unit tests only: no control plane needed.
unit:
	$(GO) test $(GOTESTFLAGS) -short ./...

# The whole suite: what README's Quick start and .ci/run call.
test: tools verify-generate lint systemd-verify fuzz
	$(GO) test $(GOTESTFLAGS) ./...

bench: build
	$(BIN)/dovetail bench

dev: tools build
	$(BIN)/dovetail dev

# deb and rpm packages of the agent and CLI into dist/, checked with dpkg-deb and rpm.
package:
	@bash hack/package.sh --check

clean:
	rm -rf $(BIN)/dovetail $(BIN)/dovetail-agent $(BIN)/dovetail-coordinator .dev
