# stickyws: the two commands are `make synth` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
CDK := npx --no-install cdk

# jsii prints an end-of-life banner on Node 20 in every process; the CLI stays offline.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export PATH := $(BIN):$(PATH)

.PHONY: help setup synth test lint format pytest system-deps clean twin bench compiled

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[cdk,server,dev,examples]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The seed article's Node server: the benchmark's peer, and a `twin up --server-cmd` in the tests.
bench/node-peer/node_modules/.installed: bench/node-peer/package.json bench/node-peer/package-lock.json
	cd bench/node-peer && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The pinned `ws` package the browser client's Node tests run with (tests/browser/node).
tests/browser/node/node_modules/.installed: tests/browser/node/package.json tests/browser/node/package-lock.json
	cd tests/browser/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Node examples (examples/node-ws, examples/node-socketio; examples/node-drain requires nothing), run in the twin by tests/e2e.
examples/%/node_modules/.installed: examples/%/package.json examples/%/package-lock.json
	cd examples/$* && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed bench/node-peer/node_modules/.installed tests/browser/node/node_modules/.installed examples/node-ws/node_modules/.installed examples/node-socketio/node_modules/.installed  ## Create .venv (pinned deps), the local CDK CLI and the Node modules of the peer, the browser tests and the Node examples.

synth: setup  ## Synthesize cdk.out/StickyWebSocketStack.template.json offline (settings: -c via CDK_ARGS).
	$(CDK) synth --quiet $(CDK_ARGS)
	@echo "wrote cdk.out/StickyWebSocketStack.template.json"

system-deps:  ## Install redis-server, haproxy, chromium, chromium-driver and the compiler of the compiled build (Debian packages) when missing.
	@STICKYWS_PYTHON=$(PYTHON) scripts/install-system-deps.sh

lint: setup  ## ruff (lint + format check) and mypy.
	$(BIN)/ruff check stickyws constructs_lib stacks tests scripts app.py setup.py
	$(BIN)/ruff format --check stickyws constructs_lib stacks tests scripts app.py setup.py
	$(BIN)/mypy

format: setup  ## Apply ruff's fixes and formatting.
	$(BIN)/ruff check --fix stickyws constructs_lib stacks tests scripts app.py setup.py
	$(BIN)/ruff format stickyws constructs_lib stacks tests scripts app.py setup.py

# The compiled build of the hot path, per message and per handshake (stickyws/compiled.py names its
# modules; setup.py compiles them with mypyc): scripts/build_compiled.py builds the platform wheel the
# image installs into build/compiled/ and puts its extension modules beside their sources, so the suite
# runs on the build the image ships.
# Rebuilt when one of those sources, setup.py or the pins change; until then stickyws.compiled runs the
# sources (never a stale extension; `stickyws --version` says which build runs).
COMPILED_SOURCES := $(shell $(PYTHON) -c 'import runpy; print(*runpy.run_path("stickyws/compiled.py")["SOURCES"])')

stickyws/compiled.json: setup.py stickyws/compiled.py constraints.txt $(COMPILED_SOURCES) | $(VENV)/.installed system-deps
	$(BIN)/python scripts/build_compiled.py

compiled: setup system-deps stickyws/compiled.json  ## Compile the hot path with mypyc (the image's build) and run this checkout on it.

# The suite runs on the compiled build; then the suites of the compiled modules (server, registry, client,
# cluster) run again on their Python sources (STICKYWS_PURE_PYTHON=1), the fallback of a platform without
# the compiled wheel.
PURE_TESTS ?= tests/server tests/registry tests/client tests/cluster tests/test_compiled_build.py

# Three workers on two cores: the suite waits more than it computes (at -n 2 it kept 1.1 of the 2 cores
# busy and took 290 s; at -n 3, 1.2-1.5 cores and 253 s). The process fleets (tests/e2e + tests/twin, the
# deployment proofs, tests/browser) each stay on one worker, in order (tests/conftest.py groups them).
# PYTEST_ARGS="-n 0" runs everything in one process.
PYTEST_ARGS ?= -n 3 --dist loadgroup

pytest: setup system-deps compiled  ## The test suite on the compiled build, then the compiled modules' suites on pure Python.
	STICKYWS_EXPECT_COMPILED=1 $(BIN)/pytest $(PYTEST_ARGS)
	STICKYWS_PURE_PYTHON=1 $(BIN)/pytest $(PYTEST_ARGS) $(PURE_TESTS)

test: setup system-deps lint pytest  ## Everything CI runs: setup, Debian packages, lint, types, tests.

clean:  ## Remove cdk.out, caches and the compiled build (keeps .venv and node_modules).
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache build stickyws/compiled.json
	find stickyws -name '*.so' -delete

twin: setup system-deps  ## Local ALB twin: HAProxy + 3 servers + redis on loopback (type help; Ctrl-C stops).
	$(BIN)/stickyws twin up --servers 3

bench: setup system-deps compiled  ## Benchmarks vs the article's Node.js server and socket.io; writes BENCHMARKS.md + bench/ratios.png (about 20 min).
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bench]'
	cd bench/node-peer && npm ci --no-audit --no-fund --loglevel=error
	cd bench/socketio-peer && npm ci --no-audit --no-fund --loglevel=error
	$(BIN)/python -m bench.run $(BENCH_ARGS)
