#!/usr/bin/env bash
# Azurite 3.35.0 (Azure Blob emulator) from npm into $CONTROLPLANE_CACHE/azurite.
# Newer Azurite releases need Node >= 21; 3.35.0 runs on Debian's Node 18/20.
set -euo pipefail
CACHE="${CONTROLPLANE_CACHE:-$HOME/.cache/controlplane}"
DEST="$CACHE/azurite"
VERSION=3.35.0
if [ -x "$DEST/node_modules/.bin/azurite-blob" ] && \
   grep -q "\"version\": \"$VERSION\"" "$DEST/node_modules/azurite/package.json" 2>/dev/null; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
fi
mkdir -p "$DEST"
npm install --no-audit --no-fund --silent --prefix "$DEST" "azurite@$VERSION"
"$DEST/node_modules/.bin/azurite-blob" --version
