#!/usr/bin/env bash
# Tools that check what ships (tests/ship): Prometheus + promtool and shellcheck from Debian;
# helm, actionlint and kubeconform built once from the Go module proxy into
# $CONTROLPLANE_CACHE/bin (GOMODCACHE and GOCACHE there too, so a warm run is instant).
set -euo pipefail
CACHE="${CONTROLPLANE_CACHE:-$HOME/.cache/controlplane}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

PKGS=(prometheus shellcheck)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-cache show "${missing[0]}" >/dev/null 2>&1 || apt-get update -qq
  # The package's service is not started here (tests run the binary on their own ports).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v promtool >/dev/null
command -v shellcheck >/dev/null

export GOBIN="$BIN" GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gobuild" GOFLAGS=-mod=mod
export CGO_ENABLED=0
build() {  # build NAME MODULE@VERSION: once; the version stamp makes an upgrade rebuild
  local name=$1 mod=$2
  if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/$name.version" 2>/dev/null)" = "$mod" ]; then
    return
  fi
  echo "building $name from $mod (cached in $CACHE)"
  go install "$mod"
  echo "$mod" >"$BIN/$name.version"
}
build actionlint github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
build kubeconform github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0
build helm helm.sh/helm/v4/cmd/helm@v4.3.2
