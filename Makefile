# kvtrack developer entry points. `make demo` and `make test` are all a
# newcomer types: each installs what it is missing first (demo: deps-demo,
# the rest: deps).

GO       ?= go
PKGS     ?= ./...
BENCHOUT ?= bench.txt
BENCHCOUNT ?= 5

export PATH := $(PATH):/usr/local/go/bin

.PHONY: all deps deps-demo build test test-short bench demo lint fmt fuzz clean

all: build

deps: ## install missing system packages and fetched fixtures (the test suite's)
	@hack/install-deps.sh all

deps-demo: ## install only what the demo needs: libzmq3-dev, pkg-config
	@hack/install-deps.sh demo

build: deps
	$(GO) build $(PKGS)

test: deps ## vet, the race-enabled test suite, and the router's attack test (which -race skips)
	$(GO) vet $(PKGS)
	$(GO) test -race -timeout 30m $(PKGS)
	$(GO) test -count=1 -run '^TestRouterHoldsItsCostUnderAttack$$' ./examples/router

test-short: deps
	$(GO) test -short $(PKGS)

bench: deps ## benchmarks into $(BENCHOUT), readable by benchstat
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) $(PKGS) | tee $(BENCHOUT)
	@echo "wrote $(BENCHOUT); compare runs with: benchstat old.txt $(BENCHOUT)"

demo: deps-demo ## the main job: kvtrack simulate with its defaults
	$(GO) run ./cmd/kvtrack simulate

lint: ## gofmt check and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fuzz: deps ## a short run of every fuzz target
	@hack/fuzz.sh

clean:
	rm -f $(BENCHOUT)
