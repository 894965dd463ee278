#!/usr/bin/env bash
# What tests/ship/test_image.py needs to build and run the Dockerfile for real (DESIGN §5):
# Debian's podman, buildah and runc; podman's own config and vfs storage under
# $CONTROLPLANE_CACHE/image (cgroupfs, runc, no network namespace, small ulimits); a local
# base image, because no registry can be pulled from: Debian bookworm from the apt mirror
# this machine uses (debootstrap) with Python 3.11, pip and venv, imported with
# `podman import` as localhost/controlplane-base:KEY; and a wheelhouse of the project's
# dependencies (pip, from PyPI) so the image's build stage installs offline.
# Each part is keyed by its inputs: a warm run only checks that they exist.
set -euo pipefail
CACHE="${CONTROLPLANE_CACHE:-$HOME/.cache/controlplane}"
DIR="$CACHE/image"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$DIR"

PKGS=(podman buildah runc debootstrap debian-archive-keyring)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-cache show "${missing[0]}" >/dev/null 2>&1 || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# podman's config: read through CONTAINERS_CONF / CONTAINERS_STORAGE_CONF (tests/ship/tools.py),
# so the machine's own podman settings are left alone.
cat >"$DIR/containers.conf" <<EOF
[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "none"
EOF
cat >"$DIR/storage.conf" <<EOF
[storage]
driver = "vfs"
runroot = "$DIR/run"
graphroot = "$DIR/storage"
EOF
export CONTAINERS_CONF="$DIR/containers.conf" CONTAINERS_STORAGE_CONF="$DIR/storage.conf"

# The base image: what python:3.11-slim-bookworm gives the Dockerfile (python, pip, venv).
MIRROR=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources \
         2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
INCLUDE=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
KEY=$(printf '%s\n' 1 "$SUITE" "$MIRROR" "$INCLUDE" | sha256sum | cut -c1-12)
BASE="localhost/controlplane-base:$KEY"
ARCHIVE="$DIR/base-$KEY.tar.gz"
if [ ! -s "$ARCHIVE" ]; then
  echo "making the base image $BASE with debootstrap from $MIRROR (a few minutes, once)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp/rootfs" "$MIRROR" \
    >"$tmp/debootstrap.log" 2>&1 || { tail -20 "$tmp/debootstrap.log"; exit 1; }
  # As in the official python images: pip may install (the image is the environment).
  rm -f "$tmp"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED
  rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/lib/apt/lists/*
  tar -C "$tmp/rootfs" -czf "$ARCHIVE.part" .
  mv "$ARCHIVE.part" "$ARCHIVE"
  rm -rf "$tmp"
  trap - EXIT
fi
if ! podman image exists "$BASE"; then
  podman import --quiet "$ARCHIVE" "$BASE" >/dev/null
fi
echo "$BASE" >"$DIR/base-image"

# The wheelhouse: every dependency as a wheel built or fetched here (host Python 3.11, the
# same ABI as the base's), plus setuptools for the project's own build; keyed by
# dependency list of pyproject.toml. The build stage reads it with PIP_NO_INDEX (tests/ship/test_image.py).
# The dependencies as pyproject.toml lists them (the project itself the image builds).
python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))
            ["project"]["dependencies"]))' "$ROOT/pyproject.toml" >"$DIR/requirements.txt"
WKEY=$(sha256sum <"$DIR/requirements.txt" | cut -c1-12)
WHEELS="$DIR/wheels-$WKEY"
if [ ! -f "$WHEELS/.complete" ]; then
  echo "collecting the image's wheels in $WHEELS (once per dependency list)"
  rm -rf "$WHEELS"
  python3 -m pip wheel --quiet --wheel-dir "$WHEELS" -r "$DIR/requirements.txt" \
    'setuptools>=68' wheel
  touch "$WHEELS/.complete"
fi
ln -sfn "$WHEELS" "$DIR/wheels"
