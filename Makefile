# credbroker: the two commands a fresh machine needs are `make demo` and
# `make test`. Test servers are built from the Go module proxy on first use
# and cached in $(TESTBIN) (outside the repo), so later runs start at once.

GO        ?= go
TESTBIN   ?= $(or $(CREDBROKER_TESTBIN),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/credbroker/testbin)
TOOLS     := $(CURDIR)/.cache/tools
GOLANGCI  := $(TOOLS)/golangci-lint-v2.15.0
BENCHSTAT_VERSION := v0.0.0-20260908200009-22c9c6c9d4da
BENCHSTAT := $(TOOLS)/benchstat-$(BENCHSTAT_VERSION)
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
NFPM_VERSION := v2.48.0
NFPM      := $(TOOLS)/nfpm-$(NFPM_VERSION)
DIST      ?= $(CURDIR)/dist
PKGSTAGE  := $(CURDIR)/.cache/package
export CREDBROKER_TESTBIN := $(TESTBIN)

.PHONY: all build package testbins test test-unit lint bench demo fmt vet clean fuzz fuzz-short soak crash

all: build

## build: bin/credbroker (the CLI, also mounted into sandboxes: no provider
## SDK, no store driver) and bin/credbroker-daemon (what `credbroker serve`
## runs: the providers and the lease store); both static
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/credbroker ./cmd/credbroker
	CGO_ENABLED=0 $(GO) build -trimpath -tags daemon -ldflags "$(LDFLAGS)" -o bin/credbroker-daemon ./cmd/credbroker

## package: $(DIST)/credbroker_<version>_<arch>.deb and .rpm, built with
## nfpm (packaging/nfpm.yaml): the two binaries, the systemd units, man
## pages and shell completions generated from the commands, the config
## template; see docs/operations.md, "Install from a package"
package: build $(NFPM)
	rm -rf $(PKGSTAGE) && mkdir -p $(PKGSTAGE)/user $(DIST)
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) CGO_ENABLED=0 \
	  $(GO) run -trimpath -tags gendocs -ldflags "$(LDFLAGS)" ./cmd/credbroker $(PKGSTAGE)
	sed 's|^ExecStart=%h/.local/bin/credbroker serve|ExecStart=/usr/bin/credbroker serve|' \
	  configs/systemd/user/credbroker.service >$(PKGSTAGE)/user/credbroker.service
	@grep -q '^ExecStart=/usr/bin/credbroker serve' $(PKGSTAGE)/user/credbroker.service || \
	  { echo "package: configs/systemd/user/credbroker.service has no ExecStart=%h/.local/bin/credbroker serve to rewrite"; exit 1; }
	rm -f $(DIST)/credbroker_*.deb $(DIST)/credbroker-*.rpm
	@v=$$(scripts/pkg-version.sh); a=$$($(GO) env GOARCH); for p in deb rpm; do \
	  echo "nfpm: credbroker $$v $$a .$$p"; \
	  VERSION=$$v ARCH=$$a SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) \
	    $(NFPM) package --config packaging/nfpm.yaml --packager $$p --target $(DIST)/ || exit 1; \
	done

## testbins: build the real servers the tests run against (Vault, MinIO,
## kube-apiserver, Toxiproxy) and install the Debian clients and servers
## they use (see the script)
testbins:
	@scripts/install-deps.sh
	@scripts/build-vault.sh >/dev/null
	@scripts/build-minio.sh >/dev/null
	@scripts/build-kube.sh >/dev/null
	@scripts/build-toxiproxy.sh >/dev/null

## test: every test, integration tests against the real Vault included, under
## -race (the package test runs `make package`: nfpm is built first, outside
## the test's timeout)
test: testbins vet $(NFPM)
	$(GO) test -race -count=1 -timeout 20m ./...

## test-unit: tests that need no server
test-unit:
	$(GO) test -race -count=1 ./internal/... ./configs/... ./agentenv/... ./leases ./leases/sqlite/... ./leases/storetest/...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags daemon ./cmd/...

$(GOLANGCI):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
	mv $(TOOLS)/golangci-lint $@

$(NFPM):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
	mv $(TOOLS)/nfpm $@

$(BENCHSTAT):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install golang.org/x/perf/cmd/benchstat@$(BENCHSTAT_VERSION)
	mv $(TOOLS)/benchstat $@

lint: $(GOLANGCI)
	$(GOLANGCI) run ./...
	$(GOLANGCI) run --build-tags daemon ./cmd/...

# Fuzz targets: package and function (seed corpora are the f.Add calls).
FUZZ_TARGETS := configs:FuzzParse agentenv:FuzzParseEnv agentenv:FuzzLoadSession \
	broker:FuzzDecodeRequest broker:FuzzVerifyAudit broker/guard:FuzzScan broker/guard:FuzzParseDiff \
	broker/egress:FuzzReadProxyRequest broker/egress:FuzzReadSOCKS broker/egress:FuzzClientHello \
	broker/proxy/awssig:FuzzParseAuthorization broker/proxy/awssig:FuzzChunkRewriter broker/proxy/awssig:FuzzResign \
	broker/proxy:FuzzRedact broker/proxy:FuzzRewriteRequest
# An execution count, not a duration: a duration can end while a worker is
# busy and the fuzz engine then fails with "context deadline exceeded".
FUZZTIME ?= 2000x

## fuzz-short: 2,000 executions per fuzz target (CI); `make fuzz FUZZTIME=10m` for a long run
fuzz-short fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; echo "fuzz $$fn ($$pkg, $(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg >/tmp/credbroker-fuzz.log 2>&1 || { cat /tmp/credbroker-fuzz.log; exit 1; }; \
	done

## soak: 2,000 sessions started and ended; goroutines and heap back to baseline
soak: testbins
	$(GO) test -tags soak -run TestSoak -count=1 -v -timeout 30m ./broker/

## crash: the long crash matrix: 12 rounds of every failpoint and 40 random
## SIGKILLs (208 kills); the per-step table goes to .cache/crash-report.md
CRASH_ROUNDS ?= 12
CRASH_RANDOM ?= 40
crash: testbins
	@mkdir -p .cache
	CREDBROKER_CRASH_ROUNDS=$(CRASH_ROUNDS) CREDBROKER_CRASH_RANDOM=$(CRASH_RANDOM) \
	CREDBROKER_CRASH_REPORT=$(CURDIR)/.cache/crash-report.md \
	  $(GO) test -run '^TestE2ECrashMatrix$$' -count=1 -v -timeout 90m ./cmd/credbroker/
	@cat .cache/crash-report.md

## bench: the benchmarks behind docs/performance.md, in one run on the same
## local servers; raw output, benchstat medians and ratios in .cache/bench
bench: testbins $(BENCHSTAT)
	GO=$(GO) BENCHSTAT=$(BENCHSTAT) scripts/bench.sh $(CURDIR)/.cache/bench

## demo: a local Vault, the broker, a session from start to revocation
demo: build
	@scripts/demo.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .cache dist
