# dispatchd: `make run` and `make test` do all set-up on a fresh Debian machine.
BAZEL ?= bazel
EVENTS_DIR ?= ./events
DISPATCHD_FLAGS ?=

.PHONY: deps build run test tsan bench clean demo-image

deps:
	@scripts/install-deps.sh

build: deps
	$(BAZEL) build //...

# All-in-one on ./events against the local Docker engine (DOCKER_HOST honoured).
run: build
	@scripts/ensure-docker.sh
	@mkdir -p $(EVENTS_DIR)
	exec bazel-bin/cmd/dispatchd/dispatchd all-in-one --events-dir $(EVENTS_DIR) $(DISPATCHD_FLAGS)

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

# Every benchmark of docs/benchmarks.md, on a private dockerd (needs root),
# built with -c opt. The table goes to stdout and bench/results.md. `make test`
# runs only its smoke version (//bench:smoke_test).
bench: deps
	$(BAZEL) run -c opt //bench:dispatchd_bench -- --out=$(CURDIR)/bench/results.md
	$(BAZEL) run -c opt //bench:micro_benchmark -- --benchmark_repetitions=3 \
		--benchmark_report_aggregates_only=true > bench/micro_results.txt
	@{ printf '\n### 6. Microbenchmarks (Google Benchmark)\n\n```\n'; \
	  cat bench/micro_results.txt; printf '```\n'; } | tee -a bench/results.md

clean:
	$(BAZEL) clean
