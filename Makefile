# Gantry: `make up` runs a single-node platform; `make test` runs the suite.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(shell $(GO) env GOPATH)/bin/staticcheck)

.PHONY: all build deps up test test-short check fmt bench-scale bench-placement bench-router bench-deploy
all: build

## build: both binaries into bin/ (gantryd is static)
build:
	@echo "==> Building bin/gantryd (static) and bin/gantry ($(VERSION))"
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gantryd ./cmd/gantryd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gantry ./cmd/gantry

## deps: install what a fresh Debian machine lacks (PostgreSQL, debootstrap, git, ssh)
deps:
	@deploy/install-deps.sh

## up: build, install what is missing, build the images if missing, run gantryd up
up: deps build
	@echo "==> Checking the images: stack, builder, postgres, platform (built once, a few minutes)"
	bin/gantryd stack build
	@echo "==> Starting gantryd up (Ctrl-C stops it; apps keep running)"
	bin/gantryd up

## test: the whole suite with the race detector
test:
	$(GO) test -race -count=1 -timeout 45m ./...

## test-short: unit tests only (no Docker, etcd, PostgreSQL)
test-short:
	$(GO) test -short -count=1 ./...

## check: gofmt, go vet, staticcheck
check:
	@echo "==> gofmt"; out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "$$out"; exit 1; fi
	@echo "==> go vet"; $(GO) vet ./...
	@echo "==> staticcheck"; if [ ! -x "$(STATICCHECK)" ]; then $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2; fi; $(STATICCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## bench-placement: placement of 10,000 jobs onto 1,000 simulated hosts
bench-placement:
	$(GO) test -run '^$$' -bench Place -benchmem ./layer0/scheduler/placement

## bench-scale: `gantry scale web=20` next to 20 plain `docker run`s
bench-scale: build
	$(GO) run ./deploy/bench/scale -n 20 -runs 3

## bench-deploy: `git push` of the Go test app until the router serves it, next to docker build + docker run
## (more flags through BENCH_DEPLOY_FLAGS, e.g. '-timeline -logs /tmp/bench-deploy')
bench-deploy: build
	bin/gantryd stack build
	$(GO) run ./deploy/bench/deploy -runs 3 $(BENCH_DEPLOY_FLAGS)

include router/bench.mk
