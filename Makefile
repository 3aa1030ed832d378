# Every target is one line; the real work lives in app/cli.py, tests/ and bench/.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PY := .venv/bin/python
STAMP := .venv/.installed
# This machine's pip config names an index folder that is sometimes absent; its warnings are
# noise. Only grep's own "nothing left" status is forgiven: a failed pip still fails make.
QUIET_PIP := { grep -v '^WARNING: Location' || true; }

.PHONY: install run test lint bench migrate clean tools tools-k8s tools-faults tools-delivery tools-beam tools-auth tools-observability tools-bench bench-scaling bench-beam lint-deploy audit wheel deploy lock crd-schemas chart-readme

$(STAMP): pyproject.toml
	@echo "sluice: installing into .venv (the first time takes about a minute)"
	@test -x $(PY) || python3 -m venv .venv
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | $(QUIET_PIP)
	@touch $@

install: $(STAMP)

run: install
	$(PY) -m app serve --migrate

# The Beam pipeline's own virtualenv (~/.cache/sluice/beam-venv): apache-beam never enters .venv.
tools-beam:
	bash .ci/beam-venv

# schemathesis in its own venv for tests/security.
tools-auth: install
	.ci/tools-auth

# Debian's prometheus (promtool) and the Datadog test agent (own venv) for tests/observability.
tools-observability:
	bash .ci/tools-observability

test: install lint tools
	$(PY) -m pytest

# Everything the tests need beyond .venv, each installed only when missing.
tools: tools-k8s tools-faults tools-delivery tools-beam tools-auth tools-bench

# PostgreSQL's initdb/pg_ctl/pg_basebackup/pg_dump (Debian) for tests/faults.
tools-faults:
	.ci/tools-faults

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
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy app bench && .venv/bin/lint-imports --no-cache && .venv/bin/bandit -q -c pyproject.toml -r app

# podman/runc/debootstrap (Debian) and checkov (own venv) for tests/image and tests/chart.
tools-k8s: install
	.ci/tools-k8s.sh

# The hash-pinned dependencies the image installs; refresh after changing [project].dependencies.
lock: install
	.venv/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet -o requirements.lock

# Rewrite the chart tests' CRD schemas from the pinned models (.ci/tools-k8s.sh).
crd-schemas: tools-k8s
	$${XDG_CACHE_HOME:-$$HOME/.cache}/sluice/crd-models-venv/bin/python deploy/crd_schemas.py tests/chart/crd-schemas

# Regenerate the values table of charts/sluice/README.md from values.yaml.
chart-readme: install
	$(PY) deploy/chart_values_table.py

# wrk (Debian) drives the single-event rows of `make bench`; installed only when missing.
tools-bench:
	@command -v wrk >/dev/null || apt-get install -y -q wrk

bench: install tools-bench
	$(PY) -m bench

# The workers / batch size / delay sweep (~4 min): chart and table into docs/benchmarks.md.
bench-scaling: install
	$(PY) -m bench.scaling --write-docs

bench-beam: install tools-beam
	$(PY) -m bench --beam-events 100000 --consumer-messages 0

migrate: install
	$(PY) -m app migrate

clean:
	rm -rf .venv .data .mypy_cache .ruff_cache .pytest_cache
