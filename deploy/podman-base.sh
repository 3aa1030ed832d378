#!/usr/bin/env bash
# Make this machine able to build and run the repo's Dockerfile with podman, offline:
#   1. /etc/containers/containers.conf for this machine (runc, cgroupfs, ulimits root may set);
#   2. a stand-in for the Dockerfile's base image, built from Debian's packages and tagged
#      with the base's name, so `podman build --pull=never` uses it unchanged.
# Idempotent: each step runs only when its result is missing. The stand-in lives in
# podman's own storage (outside the clone); the host's CA bundle is copied into it at
# build time (outbound TLS is re-signed here) and is never committed.
# Usage: deploy/podman-base.sh IMAGE   (IMAGE: the Dockerfile's FROM, e.g. docker.io/library/python:3.12-slim)
set -euo pipefail
image="${1:?usage: podman-base.sh IMAGE}"
conf=/etc/containers/containers.conf
limit="$(ulimit -Hn)"
wanted="$(cat <<CONF
# Written by sluice's deploy/podman-base.sh: crun fails on this machine's hybrid cgroups,
# and podman's default ulimits ask for more than root may set here.
[containers]
default_ulimits = ["nofile=${limit}:${limit}", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
)"
if [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$wanted" >"$conf"
fi
if podman image exists "$image"; then
    exit 0
fi
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sluice"
root="$cache/base-rootfs"
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)"
rm -rf "$root" && mkdir -p "$root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >"$cache/debootstrap.log" 2>&1
# apt inside a build works as on the host: same mirrors, same settings.
cp -a /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/" 2>/dev/null || true
cp -a /etc/apt/apt.conf.d/. "$root/etc/apt/apt.conf.d/"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/host-ca-bundle.crt"
# The official image's interpreter is `python` with pip on PATH; Debian's is `python3`
# under PEP 668. A venv on PATH gives the same commands.
chroot "$root" /usr/bin/python3 -m venv /opt/python
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
bundle=/etc/ssl/certs/host-ca-bundle.crt
tar -C "$root" -c . | podman import --quiet \
    --change "ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV PIP_CERT=$bundle" --change "ENV SSL_CERT_FILE=$bundle" \
    --change "ENV REQUESTS_CA_BUNDLE=$bundle" \
    --change 'CMD ["python3"]' - "$image" >/dev/null
rm -rf "$root"
