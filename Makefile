# Every target is one line; the real work lives in app/cli.py, tests/ and bench/.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PY := .venv/bin/python
STAMP := .venv/.installed
# This machine's pip config names an index folder that is sometimes absent; its warnings are noise.
QUIET_PIP := grep -v '^WARNING: Location' || true

.PHONY: install run test lint bench migrate clean tools tools-delivery lint-deploy audit wheel deploy

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | $(QUIET_PIP)
	touch $@

install: $(STAMP)

run: install
	$(PY) -m app serve --migrate

test: install lint tools
	$(PY) -m pytest

tools: tools-delivery

tools-delivery: install
	.ci/tools-delivery

lint-deploy: tools-delivery
	.ci/lint-deploy

audit: install
	.ci/audit

wheel: install
	rm -rf dist && $(PY) -m pip wheel -q --disable-pip-version-check -w dist/wheelhouse . && mv dist/wheelhouse/sluice-*.whl dist/

deploy: install tools-delivery
	cd deploy/ansible && $${XDG_CACHE_HOME:-$$HOME/.cache}/sluice/ansible-venv/bin/ansible-playbook -i inventories/$(ENV)/hosts.yml site.yml -e sluice_version=$(VERSION)

lint: install
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy app

bench: install
	$(PY) -m bench

migrate: install
	$(PY) -m app migrate

clean:
	rm -rf .venv .data .mypy_cache .ruff_cache .pytest_cache
