# paasmeter — `make help` lists the targets.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN       := bin/paasmeter
BENCH_BIN := bin/paasmeter-bench
CONFIG    ?= deploy/examples/paasmeter.yaml
PLATFORM  ?= examples/platform.yaml
FUZZTIME  ?= 60s
PROPERTY_SEQUENCES ?= 200
# A static binary: SQLite is linked in through cgo, libc statically.
BUILD_TAGS := netgo,osusergo,sqlite_omit_load_extension
LDFLAGS    := -s -w -X main.version=$(VERSION) -linkmode external -extldflags "-static"

export CGO_ENABLED := 1
export PATH := /usr/local/go/bin:$(PATH)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[1m%-11s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the static binary bin/paasmeter
	$(GO) build -tags $(BUILD_TAGS) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/paasmeter

.PHONY: run
run: build ## Bring the example platform up: collector, agent and examples/platform.yaml's containers (Ctrl-C stops all)
	@env=$$(./scripts/test-deps.sh) || exit 1; eval "$$env"; \
	if [ -z "$$PAASMETER_TEST_DOCKER_HOST" ]; then echo "make run needs a Docker Engine: run it as root (scripts/test-deps.sh starts one)" >&2; exit 1; fi; \
	PAASMETER_DOCKER_HOST=$$PAASMETER_TEST_DOCKER_HOST PAASMETER_AGENT_TOKEN=pm_example_agent_node1 \
	  exec $(BIN) up --config $(CONFIG) --platform $(PLATFORM)

.PHONY: test
test: ## Install and start what the tests need, lint, then run the whole suite (race detector, fuzz seed corpora)
	@env=$$(./scripts/test-deps.sh) || exit 1; eval "$$env" && \
	$(MAKE) --no-print-directory lint && \
	$(GO) test -race -count=1 -timeout 30m ./...

# The packages that run real containers, real servers and real time: the
# ones a loaded machine makes flaky if anything races.
STRESS_PKGS ?= ./runtime/... ./sla/... ./deploy/e2e/ ./cmd/paasmeter/
STRESS_COUNT ?= 3

.PHONY: test-stress
test-stress: ## Run the Docker-backed packages STRESS_COUNT (3) times while busy loops keep every core busy
	@env=$$(./scripts/test-deps.sh) || exit 1; eval "$$env" && \
	./scripts/stress.sh $(GO) test -race -timeout 60m -count=$(STRESS_COUNT) $(STRESS_PKGS)

.PHONY: chaos
chaos: ## The agent's chaos test on a longer random schedule, the collector binary killed too: JOBS (default 120), LONG (the long jobs, default 2m), PACE (default 4: 4x the time between jobs and between agent kills); prints its seed, SEED=n replays one
	@env=$$(./scripts/test-deps.sh) || exit 1; eval "$$env" && \
	PAASMETER_CHAOS_SEED=$(SEED) PAASMETER_CHAOS_JOBS=$${JOBS:-120} PAASMETER_CHAOS_LONG=$${LONG:-2m} PAASMETER_CHAOS_PACE=$${PACE:-4} \
	PAASMETER_CHAOS_KILL_COLLECTOR=1 \
	$(GO) test -count=1 -timeout 60m -v -run '^TestChaos' ./cmd/paasmeter/

.PHONY: build-bench
build-bench: ## Build the load drivers bin/paasmeter-bench (not part of the production binary)
	$(GO) build -tags $(BUILD_TAGS) -ldflags '$(LDFLAGS)' -o $(BENCH_BIN) ./cmd/paasmeter-bench

.PHONY: bench
bench: build build-bench ## Benchmarks: ingest (HTTP vs direct store; into ClickHouse vs clickhouse-client), the month query at 10M records, agent cost with 50 idle containers, agents' latency under one institution's abuse
	$(GO) test -run '^$$' -bench . -benchtime 100x ./collector/ ./metering/... ./runtime/spool/ ./runtime/cgroups/
	$(BENCH_BIN) ingest --records 300000 --batch 5000 --concurrency 4
	@./scripts/test-deps.sh >/dev/null
	$(BENCH_BIN) clickhouse --records 1000000 --batch 1000 --concurrency 64 --query-records 10000000
	$(BENCH_BIN) invoice --institutions 1000 --records 10000000
	$(BENCH_BIN) abuse
	@env=$$(./scripts/test-deps.sh) || exit 1; eval "$$env" && $(GO) test -count=1 -run TestBusyboxRunsOnTheTestEngine ./runtime/dockertest/ >/dev/null && \
	$(BENCH_BIN) agent --paasmeter $(BIN) --containers 50 --duration 60s

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

.PHONY: fuzz
fuzz: ## Fuzz every decoder of outside input: usage, event and log-line batches (and the fast path against the batch decoder), the usage bounds (against exact arithmetic), the Loki push decoders, the LogQL parser, the rate-card, SLA-file and platform-spec parsers, the UBL checker, the maintenance-window decoder, the network wall's reader of iptables rules, the TLS CA-bundle parser, the access-log verifier, the repeated-key finder, corrupt spool segments, the CRI log line parser and the cgroup file parsers, each for FUZZTIME (default 60s; 10000000x runs ten million inputs), then PROPERTY_SEQUENCES (default 200) random sequences of invoice runs; new crashers land in testdata/fuzz
	$(GO) test ./usage/ -run '^$$' -fuzz FuzzDecodeBatch -fuzztime $(FUZZTIME)
	$(GO) test ./usage/ -run '^$$' -fuzz FuzzFastDecode -fuzztime $(FUZZTIME)
	$(GO) test ./usage/ -run '^$$' -fuzz FuzzCheckBounds -fuzztime $(FUZZTIME)
	$(GO) test ./events/ -run '^$$' -fuzz FuzzDecodeBatch -fuzztime $(FUZZTIME)
	$(GO) test ./logs/ -run '^$$' -fuzz FuzzDecodeBatch -fuzztime $(FUZZTIME)
	$(GO) test ./collector/lokipush/ -run '^$$' -fuzz FuzzDecodeProtobuf -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./collector/lokipush/ -run '^$$' -fuzz FuzzDecodeJSON -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./logs/logql/ -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./billing/ratecard/ -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./billing/slafile/ -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./billing/ubl/ -run '^$$' -fuzz FuzzCheck -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./sla/maintenance/ -run '^$$' -fuzz FuzzDecodeDeclaration -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./runtime/netwall/ -run '^$$' -fuzz FuzzDrops -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./internal/tlsconf/ -run '^$$' -fuzz FuzzParseCertificates -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./accesslog/ -run '^$$' -fuzz FuzzVerify -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./internal/jsonkey/ -run '^$$' -fuzz FuzzRepeated -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./runtime/spec/ -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./runtime/spool/ -run '^$$' -fuzz FuzzOpenCorrupt -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./runtime/kube/ -run '^$$' -fuzz FuzzParseCRILine -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	for f in FuzzParseFlatKeyed FuzzParseSingle FuzzParseIOStat FuzzParseBlkioServiceBytes FuzzParseNetDev FuzzParseProcCgroup; do \
	  $(GO) test ./runtime/cgroups/ -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s || exit 1; done
	$(GO) test ./billing/ -count=1 -run '^TestPropertyEveryRecordIsBilledOnce$$' -property.sequences $(PROPERTY_SEQUENCES)

.PHONY: clean
clean: ## Remove the binary, the local data directory and the agent's spool
	rm -rf bin data spool
