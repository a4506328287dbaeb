# kamal-secure: `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck unit e2e deps venv bench docs clean lock test-latest fuzz
E2E_ROOT := .e2e/kamal
OLD_SSHD_ROOT := .e2e/old-sshd

test: deps venv lint typecheck unit e2e demo

deps:
	@bash scripts/system-deps.sh

venv: $(STAMP)

# Everything `make test`, `make demo` and `make bench` install comes from requirements/lock.txt
# (exact versions, sha256 hashes), installed by the uv pinned in requirements/uv.txt.
# `make lock` regenerates both from pyproject.toml; `make test-latest` tries the newest releases.
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_QUIET := $(if $(VERBOSE),,--quiet)

$(UV): requirements/uv.txt
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--require-hashes -r requirements/uv.txt

$(STAMP): pyproject.toml requirements/lock.txt $(UV)
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(UV) pip sync $(UV_QUIET) --python $(PY) --require-hashes requirements/lock.txt
	@$(UV) pip install $(UV_QUIET) --python $(PY) --no-deps --no-build-isolation -e .
	@touch $(STAMP)

lock: $(UV)
	$(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		requirements/uv.in -o requirements/uv.txt
	$(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		--extra dev --extra bench pyproject.toml -o requirements/lock.txt

# The newest releases pyproject.toml allows, in a separate venv, unit tier only: an upstream
# change shows up here as a named failure before it reaches the lock.
LATEST := .venv-latest
test-latest: $(UV)
	@rm -rf $(LATEST) && $(PYTHON) -m venv $(LATEST)
	@$(UV) pip install $(UV_QUIET) --python $(LATEST)/bin/python --upgrade -e '.[dev]'
	$(LATEST)/bin/pytest -q -m "not e2e" -p no:cacheprovider

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

# OpenSSH 8.4 from Debian bullseye (scripts/install-old-sshd.sh) for the lab's old=True hosts:
# if it cannot be installed, `make test` fails (the old_sshd fixture also fails with CI=true).
unit: venv
	@old=$$(bash scripts/install-old-sshd.sh $(OLD_SSHD_ROOT)) || { echo "unit: the old sshd could not be installed (see above)"; exit 1; }; \
	KAMAL_SECURE_TEST_OLD_SSHD=$$old $(VENV)/bin/pytest -q -m "not e2e" --durations=15

# A long fuzz campaign (tests/test_fuzz.py; `make test` runs 1000 cases with a fixed seed):
# FUZZ_CASES projects through `scan --offline`, a fresh seed unless FUZZ_SEED is given.
FUZZ_CASES ?= 20000
fuzz: venv
	KAMAL_SECURE_FUZZ_CASES=$(FUZZ_CASES) KAMAL_SECURE_FUZZ_SEED=$${FUZZ_SEED:-$$RANDOM} \
	  $(VENV)/bin/pytest -q -s tests/test_fuzz.py

# The real Kamal from Debian's registry (scripts/install-kamal.sh), then the e2e tier.
e2e: deps venv
	@kamal=$$(bash scripts/install-kamal.sh $(E2E_ROOT)) || { echo "e2e: the real Kamal could not be installed (see above)"; exit 1; }; \
	KAMAL_E2E_BIN=$$kamal $(VENV)/bin/pytest -q -m e2e tests/e2e --durations=10

demo: venv
	$(PY) examples/demo.py

docs: venv
	$(PY) -m kamal_secure.rules.docs --write docs/rules

bench: venv
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) $(LATEST) $(TOOLS) .e2e build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
