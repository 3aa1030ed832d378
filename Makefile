# Every target is one line; the real work lives in app/cli.py, tests/ and bench/.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PY := .venv/bin/python
STAMP := .venv/.installed
# This machine's pip config names an index folder that is sometimes absent; its warnings are noise.
QUIET_PIP := grep -v '^WARNING: Location' || true

.PHONY: install run test lint bench migrate clean tools tools-observability

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | $(QUIET_PIP)
	touch $@

install: $(STAMP)

run: install
	$(PY) -m app serve --migrate

tools: tools-observability

tools-observability:
	bash .ci/tools-observability

test: install lint tools
	$(PY) -m pytest

lint: install
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy app && .venv/bin/lint-imports --no-cache

bench: install
	$(PY) -m bench

migrate: install
	$(PY) -m app migrate

clean:
	rm -rf .venv .data .mypy_cache .ruff_cache .pytest_cache
