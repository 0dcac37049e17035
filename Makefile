# MultiUserChat: `make run` starts the server, `make test` checks everything.
CARGO ?= cargo
AUTOBAHN_VENV ?= /tmp/autobahn-venv
RECIPES ?= ../shared/recipes

.PHONY: run build test e2e autobahn bench fmt clippy clean

run:
	$(CARGO) build --release --bin multiuserchat
	./target/release/multiuserchat --data-dir data $(ARGS)

# NODES nodes on this machine sharing the usual ports (--reuse-port), joined
# through a private redis-server on a free loopback port; each keeps its history
# in data/nodeN. ARGS go to every node. Ctrl+C stops all of them.
NODES ?= 2
.PHONY: cluster
cluster:
	NODES=$(NODES) CARGO=$(CARGO) examples/cluster.sh $(ARGS)

build:
	$(CARGO) build --release --all-targets

test:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets

e2e:
	e2e/run.sh

# Autobahn|Testsuite against examples/ws_echo.rs (same loop and codec), cases 1.* to 10.*.
autobahn:
	$(CARGO) build --release --example ws_echo
	.ci/autobahn.sh

bench:
	bench/run.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

# Every fuzz target in fuzz/ for FUZZ_SECONDS (default 60) seconds each, on the
# stable toolchain; fails on the first crash and names the saved input.
.PHONY: fuzz
fuzz:
	fuzz/run.sh

# Soak (tests/soak.rs) in release: SOAK_SECONDS (default 600) of chat-load --proto mix
# with SOAK_CLIENTS staying clients (default 300 here; `make test` runs 60 for 25 s),
# one message per client per second (SOAK_RATE overrides), 20% private, SOAK_CHURN
# (default 20) short-lived clients per second; then checks nothing was lost or
# reordered, no user or connection is left, descriptors equal and RSS near the baseline.
SOAK_SECONDS ?= 600
SOAK_CLIENTS ?= 300
.PHONY: soak
soak:
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_CLIENTS=$(SOAK_CLIENTS) $(CARGO) test --release --test soak -- --nocapture
