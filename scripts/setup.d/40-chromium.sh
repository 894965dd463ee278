#!/usr/bin/env bash
# Headless Chromium for the browser tests (Python playwright drives it via executable_path;
# we never run `playwright install`, which would download a browser from outside Debian).
set -euo pipefail
PKGS=(chromium fonts-dejavu-core)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v chromium >/dev/null || { echo "chromium not found after install" >&2; exit 1; }
