# kamal-secure: `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck unit e2e deps venv bench docs clean fuzz
E2E_ROOT := .e2e/kamal

test: deps venv lint typecheck unit e2e demo

deps:
	@bash scripts/system-deps.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -q -m "not e2e"

# A long fuzz campaign (tests/test_fuzz.py; `make test` runs 300 cases with a fixed seed):
# FUZZ_CASES projects through `scan --offline`, a fresh seed unless FUZZ_SEED is given.
FUZZ_CASES ?= 20000
fuzz: venv
	KAMAL_SECURE_FUZZ_CASES=$(FUZZ_CASES) KAMAL_SECURE_FUZZ_SEED=$${FUZZ_SEED:-$$RANDOM} \
	  $(VENV)/bin/pytest -q -s tests/test_fuzz.py

# The real Kamal from Debian's registry (scripts/install-kamal.sh), then the e2e tier.
e2e: deps venv
	@kamal=$$(bash scripts/install-kamal.sh $(E2E_ROOT)) || { echo "e2e: the real Kamal could not be installed (see above)"; exit 1; }; \
	KAMAL_E2E_BIN=$$kamal $(VENV)/bin/pytest -q -m e2e tests/e2e

demo: venv
	$(PY) examples/demo.py

docs: venv
	$(PY) -m kamal_secure.rules.docs --write docs/rules

bench: venv
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .e2e build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
