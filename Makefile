# indexer: the front door. `make help` lists the targets.
# Narrow a test run with PKG=./internal/index T=TestProperty.

GO      ?= go
PKG     ?= ./...
T       ?=
BIN     := bin/indexer
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 30s
BENCH_ARGS ?=
RUN_ARGS ?=
# What 'indexer --version' says (internal/buildinfo); override for releases.
VERSION  ?= $(shell git describe --tags --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell r=$$(git rev-parse --short=12 HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null && echo $$r || echo $$r-dirty; } || echo unknown)
LDFLAGS  := -X github.com/streamindex/indexer/internal/buildinfo.version=$(VERSION) -X github.com/streamindex/indexer/internal/buildinfo.revision=$(REVISION)
IMAGE    ?= indexer

# The integration package runs for minutes, more on a loaded machine:
# go test's default 10-minute limit per package is too short for it.
TESTFLAGS := -count=1 -timeout 30m
ifneq ($(T),)
TESTFLAGS += -run '$(T)'
endif

# The fault-injection scenarios append their summary lines here; test and
# soak print them at the end.
FAULT_SUMMARY := $(CURDIR)/var/fault-summary.txt
SOAK_EVENTS ?= 1000000

.PHONY: help build image run demo test test-deploy soak need-redis fuzz bench gobench lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

build: ## build bin/indexer (with VERSION and REVISION for --version)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/indexer

image: ## build the container image indexer:VERSION from the Dockerfile (needs docker)
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE):$(VERSION) .

run: build ## run a worker in the foreground (NATS embedded, Redis at INDEXER_REDIS_URL); RUN_ARGS= adds flags
	./scripts/run.sh $(RUN_ARGS)

demo: build ## the whole job end to end on loopback: Redis + embedded NATS, 100,000 events, then stats and a query
	./scripts/demo.sh

test: need-redis ## every test, unit and integration, against real servers the tests start (needs redis-server), and deploy/'s checks
	$(call with_fault_summary,$(GO) test $(TESTFLAGS) $(PKG))
ifeq ($(PKG),./...)
	$(MAKE) --no-print-directory test-deploy
endif

test-deploy: ## check deploy/: alerting rules (as promtool does, and evaluated), dashboard queries, compose file (a module of its own)
	cd deploy && $(GO) test $(TESTFLAGS) ./...

soak: need-redis ## the fault-injection chaos run with SOAK_EVENTS (default 1,000,000) events per source (about 10 minutes per 1M)
	$(call with_fault_summary,INDEXER_SOAK_EVENTS=$(SOAK_EVENTS) $(GO) test -count=1 -timeout 3h -v -run '^TestChaos$$' ./test/integration)

# with_fault_summary runs a test command with INDEXER_FAULT_SUMMARY set, then
# prints the summary lines the fault-injection scenarios wrote, and exits
# with the command's status.
define with_fault_summary
	@mkdir -p var && rm -f $(FAULT_SUMMARY)
	INDEXER_FAULT_SUMMARY=$(FAULT_SUMMARY) $(1); rc=$$?; \
	  if [ -s $(FAULT_SUMMARY) ]; then echo "fault-injection summary ($(FAULT_SUMMARY)):"; sort $(FAULT_SUMMARY); fi; exit $$rc
endef

need-redis:
	@command -v redis-server >/dev/null || { echo "redis-server not found: install it with 'sudo apt-get install -y redis-server' (or run .ci/run)"; exit 1; }

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 3s ./event
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMsgpack$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 3s ./event

bench: build bin/nats-server need-redis ## indexer bench: events/s, latency, CPU/event, scaling vs ceilings and a naive baseline (minutes; BENCH_ARGS=--quick); JSON in var/bench.json
	@mkdir -p var
	./$(BIN) bench --json var/bench.json --nats-server bin/nats-server $(BENCH_ARGS)

# nats-server at the version go.mod requires, run in its own process by the bench.
bin/nats-server: go.mod go.sum
	$(GO) build -o $@ github.com/nats-io/nats-server/v2

gobench: ## Go benchmarks with allocations (BenchmarkApply reports Redis CPU µs per event)
	$(GO) test -run '^$$' -bench . -benchmem $(PKG)

lint: ## go vet and staticcheck
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

clean: ## remove build output and demo state
	rm -rf bin var
