# Petit: the daemon (petitd), the CLI (petitctl) and the dashboard (petit-tui).
# `make ci` is what CI runs (through .ci/run): formatting, lints, crate boundaries, tests.

CARGO ?= cargo
JOBS ?= examples/jobs
CONFIG ?= examples/petit.yaml

.PHONY: all fmt fmt-check lint test test-long test-tools fuzz check build bench hot-text boundaries run ci

all: fmt lint boundaries test build

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The end-to-end tests drive the real binaries, which `cargo test` builds (each binary's
# crate has an integration test of its own) with the same features as the tests: one
# build of the workspace, not two (a separate `cargo build --bins` has no dev-dependency
# features, so it compiled petit-server and everything under tokio a second time). Every
# test binary runs even when one fails, so a red run lists all its failures.
test:
	$(CARGO) test --workspace --no-fail-fast

# The longer variants: more schemathesis examples, the cluster's every-second job for
# 30 s and 1,000 triggers over three nodes, 25 kills in the crash loop (5 in `make
# test`; PETIT_CRASH_SEED replays a run), 20 s of 200 clients (3 s in `make test`).
# Not part of CI's run.
test-long: test-tools
	$(CARGO) test --workspace --no-run
	PETIT_SCHEMATHESIS_EXAMPLES=200 $(CARGO) test -p petit-tests --test openapi --no-fail-fast
	PETIT_CLUSTER_SECONDS=30 PETIT_CLUSTER_TRIGGERS=1000 $(CARGO) test -p petit-tests --test cluster --no-fail-fast
	PETIT_CRASH_KILLS=25 $(CARGO) test -p petit-tests --test crash_loop --no-fail-fast
	PETIT_LOAD_SECONDS=20 $(CARGO) test -p petit-tests --test load --no-fail-fast

# cargo-fuzz on the parsers of hostile input (job files, schedules, REST JSON bodies,
# placeholders), FUZZ_SECONDS each, from the seed corpus in server/fuzz/corpus (new
# inputs go to target/fuzz-corpus). Needs `cargo install cargo-fuzz`; the sanitizer
# flags it uses are nightly-only, hence RUSTC_BOOTSTRAP. `make test` runs the same
# parsers over the same seeds as a short seeded property pass (server/src/hostile.rs).
FUZZ_SECONDS ?= 60
fuzz:
	@for target in job cron json placeholder; do \
	  mkdir -p target/fuzz-corpus/$$target; \
	  (cd server/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $$target \
	    ../../target/fuzz-corpus/$$target corpus/$$target -- -max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done

# Python tools some end-to-end tests use (OpenAPI validation, API fuzzing), in a venv
# under target/; without them those tests are skipped (and fail under CI).
VENV ?= target/test-venv
test-tools: $(VENV)/.installed
$(VENV)/.installed:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q openapi-spec-validator==0.9.0 schemathesis==4.32.5
	touch $@

check:
	$(CARGO) check --workspace --all-targets

build:
	$(CARGO) build --workspace --release

# Every figure beside the raw cost of the same work measured in the same run: engine
# and per-task overhead against the same spawns done directly, the log pipeline against
# a plain pipe, petitd's memory serving a 2,000,000-line log, REST/gRPC calls under load
# against the health call (needs wrk and h2load: apt-get install wrk nghttp2-client),
# the release petitd at rest (start-up, memory, wake-ups), cluster mode on a private
# PostgreSQL, reads of a 1,000,000-task-run history (p50/p99 against the health call),
# criterion micro-benchmarks of the hot pure parts with their instruction counts under
# callgrind (skipped without valgrind). The last step prints them as one table and
# appends it to BENCHMARKS.md with the date, machine and commit (see server/benches).
bench:
	rm -f target/bench-table.tsv
	$(CARGO) bench -p petit-server --bench engine
	$(CARGO) bench -p petit-server --bench logs
	$(CARGO) bench -p petit-server --bench log_memory
	$(CARGO) bench -p petit-server --bench log_append
	# The crates petitd is made of, answering health with nothing of Petit: the floor
	# of the API's figures and of memory (server/examples/stack_floor.rs), each built
	# as the petitd it is compared with.
	$(CARGO) build --profile bench -p petit-server --example stack_floor
	PETIT_STACK_FLOOR=$(CURDIR)/target/release/examples/stack_floor $(CARGO) bench -p petit-server --bench rest
	$(CARGO) build --release -p petit-server --bin petitd --example stack_floor
	# Benches build their own petitd into target/release too: measure a copy.
	cp target/release/petitd target/petitd-release
	cp target/release/examples/stack_floor target/stack_floor-release
	PETITD=$(CURDIR)/target/petitd-release PETIT_STACK_FLOOR=$(CURDIR)/target/stack_floor-release \
	  $(CARGO) bench -p petit-server --bench idle
	$(CARGO) bench -p petit-server --bench history
	$(CARGO) bench -p petit-server --bench micro
	$(CARGO) bench -p petit-server --bench cluster
	$(CARGO) bench -p petit-server --bench table

# The order of petitd's code (server/hot-text.txt, see server/build.rs): the functions
# it runs at start-up, serving reads of the API and running jobs, found by running it
# under callgrind (needs valgrind and curl). Run it again after changes that add or
# rename much of what those paths run; names it no longer finds cost nothing.
hot-text:
	$(CARGO) build --release -p petit-server --bin petitd -p petit-client --bin petitctl
	server/hot-text.sh target/release/petitd target/release/petitctl server/hot-text.txt

# The clients must never depend on server code, SQLite, YAML parsing or the REST stack.
boundaries:
	@set -e; \
	check() { pkg=$$1; shift; deps=$$($(CARGO) tree -e normal -p $$pkg --prefix none --format '{p}' | awk '{print $$1}' | sort -u); \
	  for forbidden in "$$@"; do \
	    if echo "$$deps" | grep -qx "$$forbidden"; then echo "boundary violated: $$pkg depends on $$forbidden"; exit 1; fi; \
	  done; echo "boundaries ok: $$pkg"; }; \
	check petit-client petit-server rusqlite serde_yaml axum tonic-reflection ratatui crossterm tokio-postgres deadpool-postgres; \
	check petit-tui petit-server rusqlite serde_yaml axum tonic-reflection tokio-postgres deadpool-postgres; \
	check petit-server ratatui crossterm petit-client; \
	check petit-proto petit-server petit-client rusqlite axum

run:
	$(CARGO) run --release -p petit-server --bin petitd -- --jobs $(JOBS) --config $(CONFIG)

ci: fmt-check lint boundaries test
