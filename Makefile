# Parley's build. `make help` lists the targets; `make run` and `make test` are
# the two the README promises work on a fresh Debian/Ubuntu machine with Go
# and Node: every tool they need is pinned below and installed under .tmp/.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --warn-undefined-variables
MAKEFLAGS += --no-builtin-rules
MAKEFLAGS += --no-print-directory

# Pinned tools. buf and protoc-gen-es come from clients/ts/package.json
# (@bufbuild/buf, @bufbuild/protoc-gen-es; one npm workspace in clients/), protoc-gen-go and
# protoc-gen-connect-go from go.mod's tool block; the rest are here.
GOLANGCI_LINT_VERSION := v2.15.0
GRPCURL_VERSION := v1.9.4
# controller-gen writes the operator's CRD, RBAC and deepcopy code.
CONTROLLER_GEN_VERSION := v0.23.0
# SeaweedFS's weed: the S3-compatible server the media tests store into.
WEED_VERSION := v0.0.0-20261109003541-7506e5f91cd6
# protovalidate's validate.proto, imported by proto/ (see buf.yaml).
PROTOVALIDATE_VERSION := v1.2.2

TMP := $(abspath .tmp)
# Each Go tool is installed into its own versioned directory and linked into
# $(BIN), so bumping a version reinstalls it and nothing else.
BIN := $(TMP)/bin
TOOLS := $(TMP)/tools
CLIENTS := clients
TS := $(CLIENTS)/ts
WEB := $(CLIENTS)/web
NPM_STAMP := $(CLIENTS)/node_modules/.package-lock.json
PROTOVALIDATE := $(TMP)/protovalidate/buf/validate/validate.proto
GEN_DIRS := clients/go/gen clients/ts/src/gen clients/mobile/kotlin/gen
# What `make manifests` writes from operator/api and the controller's RBAC
# markers; checkgen compares these too.
MANIFEST_DIRS := config/crd/bases config/rbac/role.yaml operator/api/v1alpha1/zz_generated.deepcopy.go
export PATH := $(BIN):$(abspath $(CLIENTS)/node_modules/.bin):$(PATH)

GO_TEST_TIMEOUT ?= 20m
GO_TEST_FLAGS ?=
BENCH ?= .
BENCH_COUNT ?= 1
BENCH_PKGS ?= ./...
RUN_FLAGS ?=
# buf breaking compares proto/ with this commit and with its parent (HEAD
# when there is no such branch).
BREAKING_AGAINST ?= main

.PHONY: help
help: ## Describe the make targets
	@grep -E '^[a-zA-Z_-]+:.*?## .*$$' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: run
run: ## Build the web app (when Node is present) and run parleyd on 127.0.0.1:8080, data in ./data (RUN_FLAGS=...)
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
		$(MAKE) web || echo "run: the web app did not build (see above); starting the API without it."; \
	else \
		echo "run: Node.js and npm not found, so the web app is not built; the API works without it."; \
		echo "run: for the chat app at http://127.0.0.1:8080/ install Node.js 20 or newer with npm (nodejs.org, or your distribution if it ships 20+) and run make run again."; \
	fi
	go run ./server/cmd/parleyd $(RUN_FLAGS)

# The web app (clients/web) is built on the SDK's compiled output
# (clients/ts/dist), so the SDK builds first. Both are rebuilt only when
# their sources change; the built files are never committed.
WEB_DIST := $(WEB)/dist/index.html
TS_DIST := $(TS)/dist/index.js
TS_SRC := $(shell find $(TS)/src -name '*.ts' 2>/dev/null) $(TS)/package.json $(wildcard $(TS)/tsconfig*.json)
WEB_SRC := $(shell find $(WEB)/src $(WEB)/public -type f 2>/dev/null) $(WEB)/package.json $(wildcard $(WEB)/index.html $(WEB)/vite.config.* $(WEB)/tsconfig*.json)

.PHONY: web
web: $(WEB_DIST) ## Build the TypeScript SDK and the web app into clients/web/dist (needs Node 20+)

$(TS_DIST): $(NPM_STAMP) $(TS_SRC)
	cd $(CLIENTS) && npm run --silent build -w @parley/client
	touch $@

$(WEB_DIST): $(TS_DIST) $(WEB_SRC)
	cd $(CLIENTS) && npm run --silent build -w @parley/web
	touch $@

.PHONY: build
build: ## Build bin/parleyd (server) and bin/parley (CLI)
	go build -o bin/parleyd ./server/cmd/parleyd
	go build -o bin/parley ./clients/go/cmd/parley

# go test gets a scratch TMPDIR (world-writable like /tmp: PostgreSQL's
# initdb runs as another user in it). envtest keeps the control plane's
# data there, so afterwards reap.sh can kill, by PID, any etcd or
# kube-apiserver a crashed test binary left running, and only those.
.PHONY: test
test: tools checkgen ## Run every test with -race (Go, the operator against a real kube-apiserver, the TypeScript SDK, the web app in Chromium), after checking generated code is current
	@scratch="$$(mktemp -d)"; chmod 1777 "$$scratch"; assets="$$($(CONTROLPLANE)/build.sh -print)"; status=0; \
	echo "go test -race -timeout $(GO_TEST_TIMEOUT) $(GO_TEST_FLAGS) ./...   (TMPDIR=$$scratch KUBEBUILDER_ASSETS=$$assets)"; \
	TMPDIR="$$scratch" KUBEBUILDER_ASSETS="$$assets" go test -race -timeout $(GO_TEST_TIMEOUT) $(GO_TEST_FLAGS) ./... || status=$$?; \
	$(CONTROLPLANE)/reap.sh "$$assets" "$$scratch"; rm -rf "$$scratch"; \
	exit $$status
	$(MAKE) check-mobile-java test-ts test-web

# The TypeScript tests start the parleyd built here (PARLEYD_BIN), so each
# test process does not build its own.
PARLEYD_TEST_BIN := $(TMP)/ts-test/parleyd

.PHONY: test-ts
test-ts: $(TS_DIST) ## Type-check the TypeScript SDK and its tests, then run them against a real parleyd
	cd $(CLIENTS) && npm run --silent typecheck -w @parley/client
	go build -o $(PARLEYD_TEST_BIN) ./server/cmd/parleyd
	cd $(CLIENTS) && PARLEYD_BIN=$(PARLEYD_TEST_BIN) npm test -w @parley/client

.PHONY: test-web
test-web: $(WEB_DIST) ## Type-check the web app and its browser tests, then run them (Chromium at /usr/bin/chromium) against a real parleyd
	cd $(CLIENTS) && npm run --silent typecheck -w @parley/web
	go build -o $(PARLEYD_TEST_BIN) ./server/cmd/parleyd
	cd $(CLIENTS) && PARLEYD_BIN=$(PARLEYD_TEST_BIN) npm test -w @parley/web

# make bench: the hot paths' Go benchmarks (frame encoding, routing, store
# append, fan-out) and the standard load suite (loadtest/suite.txt) against
# servers the load generator starts itself; then docs/benchmarks.md's
# generated section is rewritten with the results.
BENCH_DIR := $(TMP)/bench
HOT_BENCH := MessageFrame|Entry|DeliverToUser|AppendMessages|PublishBatch|PersistAndRoute|^BenchmarkSend$$
HOT_PKGS := ./server/wire ./server/route ./server/hub ./server/engine ./storage/embedded ./storage/postgres ./storage/redis
HOT_CMD := go test -run '^$$' -bench '$(HOT_BENCH)' -benchmem $(HOT_PKGS)

.PHONY: bench
bench: ## Run the hot-path benchmarks and the standard load suite; rewrite docs/benchmarks.md
	@mkdir -p $(BENCH_DIR)
	$(HOT_CMD) | tee $(BENCH_DIR)/micro.txt
	$(MAKE) bench-load
	go run ./loadtest/benchdoc -doc docs/benchmarks.md -micro $(BENCH_DIR)/micro.txt -micro-cmd "$(HOT_CMD)" \
		-commit "$$(git rev-parse --short HEAD)" -date "$$(date -u +%F)" \
		$$(grep -v '^#' loadtest/suite.txt | while read -r name _; do [ -z "$$name" ] || printf -- '-load $(BENCH_DIR)/%s.json ' "$$name"; done)

.PHONY: bench-load
bench-load: ## Run the standard load suite (loadtest/suite.txt), reports in .tmp/bench
	@mkdir -p $(BENCH_DIR)
	go build -o $(BENCH_DIR)/loadtest ./loadtest
	@grep -v '^#' loadtest/suite.txt | while read -r name args; do \
		[ -n "$$name" ] || continue; \
		echo "== $$name: go run ./loadtest $$args"; \
		echo "go run ./loadtest $$args" > $(BENCH_DIR)/$$name.cmd; \
		rm -f $(BENCH_DIR)/$$name.json; \
		$(BENCH_DIR)/loadtest $$args -json $(BENCH_DIR)/$$name.json < /dev/null \
			|| echo "== $$name exited with status $$?: its row shows what it reported"; \
		[ -f $(BENCH_DIR)/$$name.json ] || echo '{"scenario":"'"$$name"'","error":"no report written"}' > $(BENCH_DIR)/$$name.json; \
	done

.PHONY: bench-go
bench-go: ## Run any Go benchmarks with -benchmem (BENCH=regexp BENCH_PKGS=./server/... BENCH_COUNT=n)
	go test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCH_COUNT) $(BENCH_PKGS)

.PHONY: tools
tools: $(NPM_STAMP) $(BIN)/grpcurl $(BIN)/weed controlplane ## Install the pinned tools the tests need (buf, protoc-gen-es, grpcurl, weed, kube-apiserver and etcd)

# The operator's tests (envtest) need kube-apiserver and etcd, built from
# the modules pinned in $(CONTROLPLANE)/go.mod and cached outside the
# checkout (~/.cache/parley/controlplane): 5–10 minutes once, then instant.
CONTROLPLANE := operator/tools/controlplane

.PHONY: controlplane
controlplane: ## Build (once, cached) the kube-apiserver and etcd the operator's tests run
	@$(CONTROLPLANE)/build.sh >/dev/null

.PHONY: gen
gen: $(NPM_STAMP) protodeps ## Regenerate Go, TypeScript and Android (Java/Kotlin lite) code from proto/ and format proto/
	buf format -w proto
	buf generate
	$(MAKE) gen-mobile

# The committed Android messages are protoc 3.21's (Debian 12's
# protobuf-compiler): another protoc version generates different code, so
# it is refused rather than allowed to rewrite them. Swift and the Connect
# clients come from remote plugins: see clients/mobile/README.md.
.PHONY: gen-mobile
gen-mobile: $(NPM_STAMP) protodeps ## Regenerate the committed Android messages (Java/Kotlin lite) with protoc 3.21
	@command -v protoc >/dev/null || { echo "gen-mobile: protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
	@v="$$(protoc --version)"; case "$$v" in "libprotoc 3.21."*) ;; *) echo "gen-mobile: $$v: the committed code is protoc 3.21's (Debian 12 protobuf-compiler); another version rewrites it" >&2; exit 1;; esac
	buf generate --template buf.gen.mobile.yaml

.PHONY: check-mobile-java
check-mobile-java: ## Compile the committed Java messages and check them against Go's wire format (JDK + libprotobuf-java)
	clients/mobile/kotlin/check-java.sh

.PHONY: checkgen
checkgen: gen manifests ## Fail if `make gen` or `make manifests` changes anything under proto/, the generated dirs or the operator's manifests
	@if [ ! -d .git ]; then echo "checkgen: not a git checkout, cannot compare; skipped" >&2; exit 0; fi
	@changes="$$(git status --porcelain --untracked-files=all -- proto $(GEN_DIRS) $(MANIFEST_DIRS))"; \
	if [ -n "$$changes" ]; then \
		echo "$$changes" >&2; \
		git --no-pager diff --stat -- proto $(GEN_DIRS) $(MANIFEST_DIRS) >&2; \
		echo "checkgen: generated code, manifests or proto formatting are out of date (files above)." >&2; \
		echo "checkgen: run 'make gen manifests' and commit the result; never edit generated files by hand." >&2; \
		exit 1; \
	fi

.PHONY: protodeps
protodeps: $(PROTOVALIDATE) ## Copy protovalidate's validate.proto into .tmp/protovalidate for buf

.PHONY: lint
lint: $(NPM_STAMP) protodeps ## Lint: buf lint, buf format, buf breaking, go vet, golangci-lint
	buf lint
	buf format -d --exit-code proto
	$(MAKE) breaking
	go vet ./...
	$(MAKE) golangci-lint

.PHONY: breaking
breaking: $(NPM_STAMP) protodeps ## Check proto/ for breaking changes against main and main~1
	@# Not buf's own '.git#branch=main' input: the commit lacks the git-ignored
	@# .tmp/protovalidate module that buf.yaml lists, so buf refuses it. Export
	@# each commit's tree instead and add the module to it.
	@if [ ! -d .git ]; then echo "breaking: not a git checkout; skipped"; exit 0; fi
	@base=$(BREAKING_AGAINST); git rev-parse -q --verify "$$base^{commit}" >/dev/null || base=HEAD; \
	for ref in "$$base" "$$base~1"; do \
		if ! sha="$$(git rev-parse -q --verify "$$ref^{commit}")"; then \
			echo "breaking: no commit $$ref (first commit?); skipped"; continue; \
		fi; \
		dir="$(TMP)/breaking/$$sha"; \
		if [ ! -d "$$dir" ]; then \
			mkdir -p "$$dir.part" && git archive "$$sha" | tar -x -C "$$dir.part" && mv "$$dir.part" "$$dir"; \
		fi; \
		if [ ! -f "$$dir/buf.yaml" ]; then echo "breaking: $$ref has no buf.yaml; skipped"; continue; fi; \
		rm -rf "$$dir/.tmp/protovalidate" && mkdir -p "$$dir/.tmp" && cp -R "$(TMP)/protovalidate" "$$dir/.tmp/"; \
		echo "buf breaking --against $$ref ($${sha:0:12})"; \
		buf breaking --against "$$dir"; \
	done

.PHONY: golangci-lint
golangci-lint: ## Run golangci-lint (installed into .tmp/bin on first use)
	@if ! $(MAKE) $(BIN)/golangci-lint; then \
		echo "golangci-lint: could not install $(GOLANGCI_LINT_VERSION) (see above); buf lint, buf format, buf breaking and go vet still ran" >&2; \
		exit 1; \
	fi
	golangci-lint run --timeout 10m ./...

.PHONY: manifests
manifests: $(BIN)/controller-gen ## Regenerate the operator's CRD (config/crd/bases), RBAC role (config/rbac) and deepcopy code
	controller-gen object paths=./operator/api/...
	controller-gen crd paths=./operator/api/... output:crd:artifacts:config=config/crd/bases
	controller-gen rbac:roleName=parley-operator paths=./operator/internal/controller/... output:rbac:artifacts:config=config/rbac

# Container images without docker (make images). IMAGE_ARCH is the GOARCH
# the binaries and images are built for; IMAGE_REPO and IMAGE_TAG name them.
# The Dockerfiles (server/cmd/parleyd, operator/cmd/parley-operator) build
# the same images for people with docker.
IMAGE_ARCH ?= $(shell go env GOARCH)
IMAGE_REPO ?= parley
IMAGE_TAG ?= dev

# The two ociimage runs share one shell: the web app is looked for after
# `make web` ran (a $(wildcard) would be expanded before it), and the labels
# and creation time (the last commit's, so rebuilds agree) are computed once.
.PHONY: images
images: ## Build bin/images/{parleyd,parley-operator}.tar without docker (OCI archives: podman load, skopeo, ctr import); parleyd's has the web app when Node is present
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
		$(MAKE) web; \
	else \
		echo "images: Node.js and npm not found, so parleyd's image has no web app (install Node.js 20+ for it)."; \
	fi
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) go build -trimpath -ldflags='-s -w' -o bin/static/parleyd ./server/cmd/parleyd
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) go build -trimpath -ldflags='-s -w' -o bin/static/parley-operator ./operator/cmd/parley-operator
	go build -o $(BIN)/ociimage ./operator/tools/ociimage
	web=(); if [[ -f $(WEB_DIST) ]]; then web=(-add $(WEB)/dist:/usr/share/parley/web); fi; \
	version="$$(git describe --always --dirty)"; revision="$$(git rev-parse HEAD)"; \
	export SOURCE_DATE_EPOCH="$$(git log -1 --format=%ct)"; \
	$(BIN)/ociimage -binary bin/static/parleyd -arch $(IMAGE_ARCH) \
		-tag $(IMAGE_REPO)/parleyd:$(IMAGE_TAG) -o bin/images/parleyd.tar \
		-version "$$version" -revision "$$revision" "$${web[@]}" \
		-dir /var/lib/parley:65532 \
		-env PARLEY_LISTEN=:8080 -env PARLEY_ADMIN_LISTEN=:9090 \
		-env PARLEY_DATA_DIR=/var/lib/parley -env PARLEY_WEB_DIR=/usr/share/parley/web \
		-port 8080/tcp -port 9090/tcp; \
	$(BIN)/ociimage -binary bin/static/parley-operator -arch $(IMAGE_ARCH) \
		-tag $(IMAGE_REPO)/parley-operator:$(IMAGE_TAG) -o bin/images/parley-operator.tar \
		-version "$$version" -revision "$$revision" \
		-port 8080/tcp -port 8081/tcp

.PHONY: clean
clean: ## Delete bin/ and .tmp/ (tools, protovalidate copy); keeps ./data and node_modules
	rm -rf bin $(TMP)

$(NPM_STAMP): $(CLIENTS)/package.json $(CLIENTS)/package-lock.json $(TS)/package.json $(WEB)/package.json
	cd $(CLIENTS) && npm ci --no-audit --no-fund
	@# npm ci rewrites the stamp; touch it in case npm kept an older mtime.
	touch $@

$(PROTOVALIDATE): Makefile
	@# Files in the module cache are read-only: replace the copy, never write into it.
	dir="$$(cd / && go mod download -json github.com/bufbuild/protovalidate@$(PROTOVALIDATE_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')"; \
	test -n "$$dir"; \
	rm -rf $(TMP)/protovalidate; \
	mkdir -p $(TMP); \
	cp -R "$$dir/proto/protovalidate" $(TMP)/protovalidate; \
	chmod -R u+w $(TMP)/protovalidate; \
	touch $@

# go_tool installs $(2) at version $(3) as $(1): `go install` into
# .tmp/tools/NAME/VERSION/, linked from .tmp/bin/NAME. make follows the link,
# so a present tool is up to date and a new version is a new path to build.
define go_tool
$(BIN)/$(1): $(TOOLS)/$(1)/$(3)/$(1)
	@mkdir -p $$(@D)
	ln -sf $$< $$@

$(TOOLS)/$(1)/$(3)/$(1):
	GOBIN=$$(@D) go install $(2)@$(3)
endef
$(eval $(call go_tool,grpcurl,github.com/fullstorydev/grpcurl/cmd/grpcurl,$(GRPCURL_VERSION)))
$(eval $(call go_tool,controller-gen,sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_GEN_VERSION)))
$(eval $(call go_tool,golangci-lint,github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION)))

# weed cannot be `go install`ed at a version (SeaweedFS's go.mod has a
# replace directive): it is built inside the downloaded module, pinned by
# that module's own go.sum. Cold, this is the slowest step of a fresh CI run
# (several minutes of compiling); after that it is a symlink check.
$(BIN)/weed: $(TOOLS)/weed/$(WEED_VERSION)/weed
	@mkdir -p $(@D)
	ln -sf $< $@

$(TOOLS)/weed/$(WEED_VERSION)/weed:
	dir="$$(cd / && go mod download -json github.com/seaweedfs/seaweedfs@$(WEED_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')"; \
	test -n "$$dir"; \
	cd "$$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags='-s -w' -o $@ ./weed
