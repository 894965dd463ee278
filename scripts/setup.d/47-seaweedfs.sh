#!/usr/bin/env bash
# setup: background
# SeaweedFS (`weed` 4.53), the S3-compatible server the s3 checks are tested against
# (tests/services/s3.py, docs/s3.md). Built from the Go module proxy: `go install` refuses
# the module because its go.mod has a replace directive, so `./weed` is built inside a copy
# of the module's directory taken out of the module cache (~5.5 min cold on 2 cores). The
# binary lands in $CONTROLPLANE_CACHE/bin/weed with a version stamp; a warm run only checks it.
set -euo pipefail
CACHE="${CONTROLPLANE_CACHE:-$HOME/.cache/controlplane}"
BIN="$CACHE/bin"
MODULE=github.com/seaweedfs/seaweedfs
VERSION=v0.0.0-20261109003541-7506e5f91cd6   # weed 4.53
STAMP="$MODULE@$VERSION"
mkdir -p "$BIN"
if [ -x "$BIN/weed" ] && [ "$(cat "$BIN/weed.version" 2>/dev/null)" = "$STAMP" ]; then
  exit 0
fi

# Shared with the other Go builds of setup.d: a module fetched once serves every step.
export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gobuild" GOFLAGS=-mod=mod CGO_ENABLED=0
export GOTOOLCHAIN=local
dir="$(go mod download -json "$STAMP" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
src="$(mktemp -d)"
trap 'chmod -R u+w "$src"; rm -rf "$src"' EXIT
cp -r "$dir/." "$src/"
chmod -R u+w "$src"   # the module cache is read-only; go writes go.sum updates
echo "seaweedfs: building weed from $STAMP (cold: ~5.5 min)"
(cd "$src/weed" && go build -trimpath -ldflags "-s -w" -o "$BIN/weed.new" .)
mv "$BIN/weed.new" "$BIN/weed"
echo "$STAMP" >"$BIN/weed.version"
echo "seaweedfs: $("$BIN/weed" version 2>/dev/null | head -n 1)"
