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

# Kubernetes JSON schemas for kubeconform, offline: from the kubernetes-validate wheel (PyPI),
# with its "/api/_definitions.json" $refs rewritten to the local file as a file:// URL (what
# kubeconform resolves; a relative reference is not found).
K8S_SCHEMA_VERSION=v1.34.0
SCHEMAS="$CACHE/k8s-schemas/$K8S_SCHEMA_VERSION"
if ! grep -qs "file://$SCHEMAS/_definitions.json" "$SCHEMAS/deployment-apps-v1.json"; then
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps -d "$tmp" kubernetes-validate==1.37.0
  python3 - "$tmp"/kubernetes_validate-*.whl "$SCHEMAS" "$K8S_SCHEMA_VERSION" <<'PY'
import pathlib, sys, zipfile
wheel, out, version = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
prefix = f"kubernetes_validate/kubernetes-json-schema/{version}-local-strict/"
out.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and name.endswith(".json"):
            text = z.read(name).decode().replace(
                '"/api/_definitions.json#', f'"file://{out.resolve()}/_definitions.json#')
            (out / name[len(prefix):]).write_text(text)
PY
  rm -rf "$tmp"
fi
