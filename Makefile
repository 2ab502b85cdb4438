# paasmeter — `make help` lists the targets.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN       := bin/paasmeter
CONFIG    ?= deploy/examples/paasmeter.yaml
FUZZTIME  ?= 60s
# A static binary: SQLite is linked in through cgo, libc statically.
BUILD_TAGS := netgo,osusergo,sqlite_omit_load_extension
LDFLAGS    := -s -w -X main.version=$(VERSION) -linkmode external -extldflags "-static"

export CGO_ENABLED := 1
export PATH := /usr/local/go/bin:$(PATH)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the static binary bin/paasmeter
	$(GO) build -tags $(BUILD_TAGS) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/paasmeter

.PHONY: run
run: build ## Run the collector on the embedded store with the example config (data in ./data)
	@echo "paasmeter collector: API on http://127.0.0.1:8080, metrics on http://127.0.0.1:9090/metrics"
	@echo "  send a batch:  $(BIN) usage example | curl -sS -H 'Authorization: Bearer pm_example_agent_node1' --data-binary @- http://127.0.0.1:8080/api/v1/usage"
	@echo "  read it back:  curl -sS -H 'Authorization: Bearer pm_example_caami' 'http://127.0.0.1:8080/api/v1/tenants/caami/usage?group_by=app,day'"
	@echo "  stop with Ctrl-C (in-flight batches finish first)"
	$(BIN) collector --config $(CONFIG)

.PHONY: test
test: ## Install and start what the tests need, then run the whole suite (race detector, fuzz seed corpora)
	@env=$$(./scripts/test-deps.sh) || exit 1; eval "$$env" && \
	$(GO) vet ./... && \
	$(GO) test -race -count=1 ./...

.PHONY: bench
bench: build ## Benchmarks: ingest (HTTP vs direct store), agent cost with 50 idle containers (cgroups vs stats API)
	$(GO) test -run '^$$' -bench . -benchtime 100x ./collector/ ./metering/... ./runtime/spool/ ./runtime/cgroups/
	$(BIN) bench ingest --records 300000 --batch 5000 --concurrency 4
	@env=$$(./scripts/test-deps.sh) || exit 1; eval "$$env" && $(GO) test -count=1 -run TestBusyboxRunsOnTheTestEngine ./runtime/dockertest/ >/dev/null && \
	$(BIN) bench agent --containers 50 --duration 60s

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

.PHONY: fuzz
fuzz: ## Fuzz the batch decoder for FUZZTIME (default 60s); new crashers land in testdata/fuzz
	$(GO) test ./usage/ -run '^$$' -fuzz FuzzDecodeBatch -fuzztime $(FUZZTIME)

.PHONY: clean
clean: ## Remove the binary and the local data directory
	rm -rf bin data
