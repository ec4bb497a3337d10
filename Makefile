# Two commands a new machine needs:
#   make demo   set up, start LocalStack on the host, provision, run the pipeline end to end
#   make test   set up and run the whole test suite (LocalStack, Prometheus included)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup system-packages localstack demo demo-dashboard demo-stop dashboard test test-unit lint bench bench-e2e clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

system-packages:
	bash deploy/install-system-packages.sh

localstack: setup
	$(PY) -m sensorpipe.devstack.localstack install

demo: setup localstack
	$(PY) -m sensorpipe.devstack.demo

# The demo, then the dashboard over what it produced (http://127.0.0.1:8090/, Ctrl-C ends).
demo-dashboard: setup localstack
	$(PY) -m sensorpipe.devstack.demo --dashboard

demo-stop: setup
	$(PY) -m sensorpipe.devstack.localstack stop

# The web dashboard on http://127.0.0.1:8090/ (AWS_* and SENSORPIPE_PIPELINE_CONFIG as
# for the services; eval "$$(.venv/bin/sensorpipe-localstack env)" for LocalStack).
dashboard: setup
	$(PY) -m services.dashboard

test: setup system-packages localstack
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest -m "not integration and not e2e"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup localstack
	$(PY) -m benchmarks

# End to end through `notification`: throughput, CPU and RSS per stage, latency at a live
# 5,000 readings/s, bytes per bucket, next to its three baselines (docs/BENCHMARKS.md).
bench-e2e: setup localstack
	$(PY) benchmarks/bench_e2e.py

clean:
	rm -rf $(VENV) .localstack .demo .pytest_cache .mypy_cache .ruff_cache
