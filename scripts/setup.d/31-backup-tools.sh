#!/usr/bin/env bash
# Tools the backup tests use: the age CLI (restore by hand), pg_dump/pg_restore,
# PostgreSQL 15 server binaries (initdb/pg_ctl), curl (download by hand).
set -euo pipefail
PKGS=(age postgresql-client postgresql curl util-linux)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
