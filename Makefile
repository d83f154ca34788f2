# dispatchd: `make run` and `make test` do all set-up on a fresh Debian machine.
BAZEL ?= bazel
EVENTS_DIR ?= ./events
DISPATCHD_FLAGS ?=
BENCH_FLAGS ?=

.PHONY: deps build run test tsan asan fuzz bench chaos failover clean demo-image image format

deps:
	@scripts/install-deps.sh
	@scripts/ensure-npm.sh

build: deps
	$(BAZEL) build //...

# All-in-one on ./events against the local Docker engine (DOCKER_HOST honoured).
run: build
	@scripts/ensure-docker.sh
	@mkdir -p $(EVENTS_DIR)
	exec bazel-bin/cmd/dispatchd/dispatchd all-in-one --events-dir $(EVENTS_DIR) $(DISPATCHD_FLAGS)

# The image dispatchd:<version> and dispatchd:latest, built with -c opt from
# this tree into the local engine (DOCKER_HOST honoured): no registry, no
# network. The legacy builder needs nothing but the engine (no buildx).
image: deps
	@scripts/ensure-docker.sh
	$(BAZEL) build -c opt //:image_context //:dispatchd
	@bin=$$($(BAZEL) info -c opt bazel-bin 2>/dev/null); \
	  version=$$($$bin/cmd/dispatchd/dispatchd --version | awk '{print $$2}'); \
	  DOCKER_BUILDKIT=0 docker build -q -t dispatchd:$$version -t dispatchd:latest \
	    - < $$bin/deploy/image/context.tar >/dev/null && \
	  echo "built dispatchd:$$version and dispatchd:latest ($$(docker image inspect -f '{{.Size}}' dispatchd:latest | awk '{printf "%.1f MB", $$1/1e6}'))"

# A tiny local image (dispatchd/busybox) for the README's quick start, no registry needed.
demo-image: deps
	@scripts/ensure-docker.sh
	@scripts/busybox-image.sh

# Every test: unit tests and the end-to-end tests against private dockerds.
test: deps
	$(BAZEL) test //... --test_output=errors

# The concurrent code whose locks ThreadSanitizer can see (std::mutex):
# Debian's abseil is not built with -fsanitize=thread, so code locked with
# absl::Mutex (the controller) reports false races and is not listed here.
TSAN_TESTS = //sinks/... //common:metrics_test //common:http_server_test \
	//agent:watcher_test //agent:spool_test
tsan: deps
	$(BAZEL) test --config=tsan $(TSAN_TESTS)

# Every test, unit and end to end, under AddressSanitizer and
# UndefinedBehaviorSanitizer (--config=asan in .bazelrc): a memory error, a
# leak at exit or undefined behaviour fails the test that runs into it; the
# end-to-end tests run the sanitized dispatchd and fail on its reports too
# (tests/testing/dispatchd_process.h). Debian's gRPC, protobuf and abseil
# are not instrumented: errors inside them go unseen, but not ours.
asan: deps
	$(BAZEL) test --config=asan //...

# The chaos run of docs/reliability.md: events written for CHAOS_SECONDS
# while dispatchd, its agents and the Docker daemons are killed and
# restarted at random (seeded) moments, all-in-one and with a controller
# and three agents on private dockerds (needs root); then every file, run
# and forward is audited. `make test` runs a 40 s version of each.
CHAOS_MODE ?= both
CHAOS_SECONDS ?= 300
CHAOS_SEED ?= $(shell date +%s)
# More flags: --rate=EVENTS_PER_SECOND (10), --drain-seconds=N (600),
# --fault-interval-seconds=N (6), --hosts=N (3).
CHAOS_FLAGS ?=
chaos: deps
	$(BAZEL) run //tests/chaos:chaos -- --mode=$(CHAOS_MODE) --seconds=$(CHAOS_SECONDS) \
		--seed=$(CHAOS_SEED) $(CHAOS_FLAGS)

# The failover run of docs/ha.md: three etcd members, three controller
# replicas and two agents on private dockerds (needs root); the leader is
# killed HA_KILLS times during bursts of events, and the times to a new
# leader and to deliveries are printed. `make test` runs 2 kills.
HA_KILLS ?= 20
failover: deps
	$(BAZEL) test //tests/e2e:ha_test --test_filter='*KillingTheLeader*' \
		--test_env=DISPATCHD_HA_KILLS=$(HA_KILLS) --test_output=streamed --test_timeout=3600

# Every libFuzzer target of tests/fuzz/ for FUZZ_SECONDS each (default 60),
# built with clang, ASan and UBSan; crashes go to fuzz-out/<target>/
# (docs/reliability.md, "Fuzzing"). `make test` replays their seed corpora.
FUZZ_SECONDS ?= 60
fuzz: deps
	@scripts/install-deps.sh clang libclang-rt-14-dev
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# Every benchmark of docs/benchmarks.md, on a private dockerd (needs root),
# built with -c opt. The table goes to stdout and bench/results.md. `make test`
# runs only its smoke version (//bench:smoke_test). BENCH_FLAGS go to the
# driver, e.g. BENCH_FLAGS=--backlog-files=10000 (flags: bench/main.cc);
# BENCH_FLAGS=--skip-fleet leaves out the fleet of 1,000 agents, which
# `bazel run -c opt //bench:fleet_bench -- --agents=N` runs alone.
bench: deps
	$(BAZEL) run -c opt //bench:dispatchd_bench -- --out=$(CURDIR)/bench/results.md $(BENCH_FLAGS)
	$(BAZEL) run -c opt //bench:micro_benchmark -- --benchmark_repetitions=3 \
		--benchmark_report_aggregates_only=true > bench/micro_results.txt
	@{ printf '\n### 6. Microbenchmarks (Google Benchmark)\n\n```\n'; \
	  cat bench/micro_results.txt; printf '```\n'; } | tee -a bench/results.md

# Formats the C++ sources with .clang-format (Debian's clang-format).
format:
	@command -v clang-format >/dev/null || { echo "apt-get install clang-format" >&2; exit 1; }
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	$(BAZEL) clean
