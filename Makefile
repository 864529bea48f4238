# The two commands of the README: `make demo` and `make test`. Both set up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/harness run --stack auto

test: setup
	bash scripts/test.sh

bench: setup
	$(PY) benchmarks/instrumentation_overhead.py
	$(PY) benchmarks/workloads.py
	$(PY) benchmarks/generator.py
	$(PY) benchmarks/install_footprint.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
