# paasmeter — `make help` lists the targets.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN       := bin/paasmeter
BENCH_BIN := bin/paasmeter-bench
IMAGE     ?= bin/paasmeter-image.tar
IMAGE_REF ?= localhost/paasmeter:$(VERSION)
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

.PHONY: image
image: build ## Build the paasmeter image FROM scratch around bin/paasmeter, as an OCI archive (IMAGE, default bin/paasmeter-image.tar) for ctr images import or docker load; no Docker daemon
	$(GO) run ./cmd/paasmeter-image -o $(IMAGE) -ref $(IMAGE_REF) -paasmeter $(BIN) -version $(VERSION)

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
bench: build build-bench ## Benchmarks: ingest (HTTP vs direct store; into ClickHouse vs clickhouse-client), the month query at 10M records, agent cost with 50 idle containers, one Kubernetes node's agent with 10/50/100 pods beside Docker's, agents' latency under one institution's abuse, the curves of ingest, query, draft and reconciliation at 1M-100M records
	$(GO) test -run '^$$' -bench . -benchtime 100x ./collector/ ./metering/... ./runtime/spool/ ./runtime/cgroups/
	$(BENCH_BIN) ingest --records 300000 --batch 5000 --concurrency 4
	@./scripts/test-deps.sh >/dev/null
	$(BENCH_BIN) clickhouse --records 1000000 --batch 1000 --concurrency 64 --query-records 10000000
	$(BENCH_BIN) invoice --institutions 1000 --records 10000000 --clickhouse
	$(BENCH_BIN) invoice --institutions 1000 --records 100000000 --clickhouse --embedded=false
	$(BENCH_BIN) curve --store clickhouse --sizes 1M,10M,100M
	$(BENCH_BIN) curve --store embedded --sizes 1M,10M
	$(BENCH_BIN) abuse --paasmeter $(BIN)
	@env=$$(./scripts/test-deps.sh) || exit 1; eval "$$env" && $(GO) test -count=1 -run TestBusyboxRunsOnTheTestEngine ./runtime/dockertest/ >/dev/null && \
	$(BENCH_BIN) agent --paasmeter $(BIN) --containers 50 --duration 60s
	@env=$$(./scripts/test-deps.sh) || exit 1; eval "$$env" && $(BENCH_BIN) kube-node --paasmeter $(BIN) --pods 10,50,100 --duration 60s

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# make fuzz's targets, as package:target:minimize time. The minimize time bounds
# how long the engine shrinks each new input, in time quadratic in its length:
# short for targets whose seeds are kilobytes long.
FUZZ_TARGETS := \
	./usage/:FuzzDecodeBatch:10s \
	./usage/:FuzzFastDecode:10s \
	./usage/:FuzzCheckBounds:10s \
	./events/:FuzzDecodeBatch:10s \
	./logs/:FuzzDecodeBatch:10s \
	./collector/lokipush/:FuzzDecodeProtobuf:10s \
	./collector/lokipush/:FuzzDecodeJSON:10s \
	./logs/logql/:FuzzParse:10s \
	./billing/ratecard/:FuzzParse:10s \
	./billing/slafile/:FuzzParse:10s \
	./billing/ubl/:FuzzCheck:2s \
	./sla/maintenance/:FuzzDecodeDeclaration:2s \
	./runtime/netwall/:FuzzDrops:2s \
	./internal/tlsconf/:FuzzParseCertificates:2s \
	./accesslog/:FuzzVerify:2s \
	./internal/jsonkey/:FuzzRepeated:2s \
	./runtime/spec/:FuzzParse:2s \
	./runtime/spool/:FuzzOpenCorrupt:2s \
	./runtime/kube/:FuzzParseCRILine:2s \
	./runtime/cgroups/:FuzzParseFlatKeyed:2s \
	./runtime/cgroups/:FuzzParseSingle:2s \
	./runtime/cgroups/:FuzzParseIOStat:2s \
	./runtime/cgroups/:FuzzParseBlkioServiceBytes:2s \
	./runtime/cgroups/:FuzzParseNetDev:2s \
	./runtime/cgroups/:FuzzParseProcCgroup:2s \
	./runtime/cgroups/:FuzzParseProcs:2s \
	./runtime/cgroups/:FuzzParseProcStat:2s \
	./runtime/agent/:FuzzNodeCapacity:2s \
	./config/:FuzzParse:10s \
	./collector/readquery/:FuzzParseQueries:2s \
	./metering/internal/sqlkit/:FuzzParseCursor:2s

.PHONY: fuzz
fuzz: ## Fuzz every decoder of outside input (make fuzz-targets lists them; docs/reliability.md says what each covers), each for FUZZTIME (default 60s; 10000000x runs ten million inputs), then PROPERTY_SEQUENCES (default 200) random sequences of invoice runs; new crashers land in testdata/fuzz
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; min=$${rest#*:}; \
	  echo "$(GO) test $$pkg -run '^\$$' -fuzz '^$$name\$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $$min"; \
	  $(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $$min || exit 1; done
	$(GO) test ./billing/ -count=1 -run '^TestPropertyEveryRecordIsBilledOnce$$' -property.sequences $(PROPERTY_SEQUENCES)

.PHONY: fuzz-targets
fuzz-targets: ## Print make fuzz's targets, one a line as package:target:minimize time (scripts/fuzz-campaign.sh runs them)
	@printf '%s\n' $(FUZZ_TARGETS)

.PHONY: clean
clean: ## Remove the binary, the local data directory and the agent's spool
	rm -rf bin data spool
