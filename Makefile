# chordkv — build, run and test. `make help` lists the targets.
#
# `make test` is exactly what CI runs (.ci/run calls it): tools check, gofmt,
# go vet, staticcheck, proto staleness, unit tests with -race, then the
# end-to-end tests against a freshly built binary.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
# The test steps must run in order (and e2e after build) even under make -j.
.NOTPARALLEL:

GO      ?= go
BIN     := bin/chordkv
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/chordkv/chordkv/internal/cli.Version=$(VERSION)

# staticcheck 2026.2.2; its go.mod requires Go 1.26, so it understands ours.
STATICCHECK_VERSION := v0.8.2
STATICCHECK         := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Bounds for the test steps: a hung test fails instead of stalling CI. A whole
# `make test` takes about 6 minutes on 2 cores with an empty test cache; the
# race-enabled simulator alone about 3.5 of them while it shares the cores with
# the other packages, so its package gets room to spare.
UNIT_TIMEOUT ?= 10m
E2E_TIMEOUT  ?= 4m
# Extra flags for the e2e run, e.g. E2E_FLAGS='-v -run TestRing' to see timings.
E2E_FLAGS    ?=
# Serve flags added to every node the e2e tests start, to run the suite
# under other settings, e.g. E2E_SERVE_ARGS='--read-lease 0' (leases off).
E2E_SERVE_ARGS ?=
export E2E_SERVE_ARGS
# The docker e2e test builds an image and drives a 5-container ring; it skips
# itself when no docker engine answers.
DOCKER_E2E_TIMEOUT ?= 6m

# The demo cluster (deploy/docker-compose.yml). `docker compose` (v2) when
# the docker CLI has it, else the v1 `docker-compose` binary.
IMAGE   ?= chordkv:dev
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo 'docker compose' || echo docker-compose)
COMPOSE_FILE_DEPLOY := deploy/docker-compose.yml
# e.g. COMPOSE_PROFILES=monitoring make compose-up, to add Prometheus and Grafana.

.PHONY: help build run test tools tools-check fmt fmt-check vet staticcheck lint \
        proto proto-check unit e2e e2e-docker bench plots rest stall soak-sim image compose-up compose-down clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## static binary bin/chordkv (CGO_ENABLED=0), version from git describe
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/chordkv

run: build ## start a local 5-node ring (deploy/local/run-ring.sh); Ctrl-C stops it
	CHORDKV_BIN=$(abspath $(BIN)) deploy/local/run-ring.sh

test: tools-check fmt-check vet staticcheck proto-check unit e2e e2e-docker ## everything CI runs
	@echo "make test: all checks passed"

tools: ## install missing tools (protoc via apt-get)
	.ci/tools.sh install

tools-check:
	.ci/tools.sh check

fmt: ## gofmt every Go file
	gofmt -w .

fmt-check:
	@files=$$(gofmt -l .); \
	if [ -n "$$files" ]; then \
		echo "gofmt would change these files (run 'make fmt'):"; echo "$$files"; exit 1; \
	fi

vet:
	$(GO) vet ./...

staticcheck:
	$(STATICCHECK) ./...

lint: vet staticcheck ## go vet + staticcheck (pinned)

proto: ## regenerate the committed protobuf/gRPC code
	proto/gen.sh

# The generated code is committed; fail when it no longer matches proto/.
# Without protoc: install it as root, fail when CI=true, else warn and skip.
proto-check:
	@if [ ! -d proto ]; then echo "proto-check: no proto/ directory, nothing to check"; exit 0; fi; \
	rc=0; .ci/tools.sh protoc || rc=$$?; \
	case $$rc in \
	0) proto/gen.sh --check && echo "proto-check: generated code matches proto/" ;; \
	3) echo "WARNING: protoc is not installed, SKIPPING the proto staleness check." \
	        "Run 'make tools' (or apt-get install protobuf-compiler) to enable it." ;; \
	*) exit $$rc ;; \
	esac

unit: ## go test -race ./... (e2e tests skip themselves here)
	env -u CHORDKV_BIN $(GO) test -race -timeout $(UNIT_TIMEOUT) ./...

e2e: build ## end-to-end tests: real chordkv processes on 127.0.0.1
	CHORDKV_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout $(E2E_TIMEOUT) $(E2E_FLAGS) ./test/e2e/...

# Also checks the compose file and the Grafana dashboard's metric names; the
# cluster part skips itself (with the reason) when no docker engine answers.
e2e-docker: build ## docker e2e: image from bin/chordkv, 5-node compose ring, kill/partition/rolling restart
	CHORDKV_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout $(DOCKER_E2E_TIMEOUT) $(E2E_FLAGS) ./test/docker/...

# Not part of `make test`: it takes about four minutes (plus about two, once,
# to build ghz) and its numbers depend on the machine. The markdown report
# goes to standard output. GHZ=0 skips the ghz section, REDIS=0 the Redis one.
bench: build ## throughput vs a bare gRPC ceiling (chordkv bench and ghz) and vs Redis: 1 node and a 3-node ring (test/bench/run.sh)
	CHORDKV_BIN=$(abspath $(BIN)) test/bench/run.sh

# Not part of `make test` either: about 5-10 minutes on 2 cores. Rewrites
# docs/data/*.json and docs/img/*.png; POINT_DURATION (default 3s) sets the
# time per point.
rest: build ## an 8-node ring at rest: CPU and RSS of each node over 60 s (test/bench/rest.sh)
	CHORDKV_BIN=$(abspath $(BIN)) test/bench/rest.sh

stall: build ## a 5-node ring: how long writes wait after a kill -9 (test/bench/stall.sh; SERVE_ARGS='--read-lease 0' to compare)
	CHORDKV_BIN=$(abspath $(BIN)) test/bench/stall.sh

# Not part of `make test`: lossy-network simulations whose failures come from
# goroutine scheduling, so a run finds a rare bug only some of the time; 2 to
# 4 minutes per round (leases off and on, without and with crashes), mostly
# waiting out lost calls' deadlines. SOAK_COUNT sets the rounds (default 3);
# the deadline allows 8 minutes a round.
SOAK_COUNT ?= 3
soak-sim: ## simulated churn and crashes with 5% message loss and read leases, checked for stale reads (internal/sim)
	SIM_SOAK=1 $(GO) test -count=$(SOAK_COUNT) -timeout $$(( $(SOAK_COUNT) * 8 + 2 ))m -run 'Lossy' -v ./internal/sim/ | grep -E '^(---|ok|FAIL)|^ +(---|kv_test.go)'

plots: build ## figures for docs/benchmarks.md: sim hops vs N, bench throughput and p99 vs concurrency (test/bench/sweep.sh)
	CHORDKV_BIN=$(abspath $(BIN)) test/bench/sweep.sh

image: build ## container image (IMAGE, default chordkv:dev) FROM scratch with bin/chordkv (deploy/Dockerfile)
	docker build -t $(IMAGE) -f deploy/Dockerfile .

compose-up: image ## start the 5-node demo ring (deploy/docker-compose.yml); node1 on 127.0.0.1:7000
	CHORDKV_IMAGE=$(IMAGE) $(COMPOSE) -f $(COMPOSE_FILE_DEPLOY) up -d
	@echo "ring:    $(COMPOSE) -f $(COMPOSE_FILE_DEPLOY) exec node1 /chordkv ring"
	@echo "put/get: $(BIN) put greeting hello --endpoints 127.0.0.1:$${CHORDKV_PORT:-7000}"

compose-down: ## stop the demo ring; its data stays in the volumes (add -v by hand to delete it)
	$(COMPOSE) -f $(COMPOSE_FILE_DEPLOY) --profile monitoring down

clean: ## remove build output and the local ring's data (.run/)
	rm -rf bin .run
