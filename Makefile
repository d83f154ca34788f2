# dispatchd: `make run` and `make test` do all set-up on a fresh Debian machine.
BAZEL ?= bazel
EVENTS_DIR ?= ./events
DISPATCHD_FLAGS ?=

.PHONY: deps build run test tsan bench clean

deps:
	@scripts/install-deps.sh

build: deps
	$(BAZEL) build //...

# All-in-one on ./events against the local Docker engine (DOCKER_HOST honoured).
run: build
	@scripts/ensure-docker.sh
	@mkdir -p $(EVENTS_DIR)
	exec bazel-bin/cmd/dispatchd/dispatchd all-in-one --events-dir $(EVENTS_DIR) $(DISPATCHD_FLAGS)

# Every test: unit tests and the end-to-end tests against private dockerds.
test: deps
	$(BAZEL) test //... --test_output=errors

# The concurrent tests under ThreadSanitizer.
tsan: deps
	$(BAZEL) test --config=tsan //common/... //controller/... //sinks/...

clean:
	$(BAZEL) clean
