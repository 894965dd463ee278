#!/usr/bin/env bash
# setup: background
# The Kubernetes test bed (tests/services/kube.py): kube-apiserver, kube-controller-manager,
# kube-scheduler and kubectl (restore by hand) built from k8s.io/kubernetes through the Go
# module proxy, kine (SQLite) as their storage and kwok for fake nodes, plus kwok's stage
# YAMLs. Everything lands in $CONTROLPLANE_CACHE/kube/<version>/bin; a warm run only checks
# the stamps.
set -euo pipefail
CACHE="${CONTROLPLANE_CACHE:-$HOME/.cache/controlplane}"
KUBE_VERSION=v1.34.2
STAGING_VERSION=v0.34.2   # k8s.io/<staging> modules are tagged v0.X.Y for kubernetes v1.X.Y
KINE=github.com/k3s-io/kine@v0.17.5
KWOK_MODULE=sigs.k8s.io/kwok
KWOK_VERSION=v0.8.0
DEST="$CACHE/kube/$KUBE_VERSION"
BIN="$DEST/bin"
STAGES="$DEST/kwok-stages"
mkdir -p "$BIN" "$STAGES"

# Shared with the other Go builds of setup.d: a module fetched once serves every step.
export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gobuild" GOFLAGS=-mod=mod CGO_ENABLED=0
export GOTOOLCHAIN=local

stamped() {  # stamped NAME STAMP: the binary exists and was built from STAMP
  [ -x "$BIN/$1" ] && [ "$(cat "$BIN/$1.version" 2>/dev/null)" = "$2" ]
}

build_kine() {
  stamped kine "$KINE" && return
  echo "kube: building kine from $KINE"
  GOBIN="$BIN" go install "$KINE"
  echo "$KINE" >"$BIN/kine.version"
  echo "kube: kine ready"
}

build_kwok() {
  local mod="$KWOK_MODULE/cmd/kwok@$KWOK_VERSION"
  if ! stamped kwok "$mod"; then
    echo "kube: building kwok from $mod"
    GOBIN="$BIN" go install "$mod"
    echo "$mod" >"$BIN/kwok.version"
  fi
  # kwok v0.8.0 has no built-in stages: the tests pass the module's own stage YAMLs with -c.
  if [ "$(cat "$STAGES/.version" 2>/dev/null)" != "$KWOK_VERSION" ]; then
    local dir
    dir="$(go mod download -json "$KWOK_MODULE@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    cp "$dir/kustomize/stage/node/fast/node-initialize.yaml" "$STAGES/"
    cp "$dir/kustomize/stage/node/heartbeat/node-heartbeat.yaml" "$STAGES/"
    cp "$dir/kustomize/stage/pod/fast/pod-ready.yaml" "$STAGES/"
    cp "$dir/kustomize/stage/pod/fast/pod-complete.yaml" "$STAGES/"
    cp "$dir/kustomize/stage/pod/fast/pod-delete.yaml" "$STAGES/"
    chmod 644 "$STAGES"/*.yaml
    echo "$KWOK_VERSION" >"$STAGES/.version"
  fi
  echo "kube: kwok ready"
}

build_kube() {
  local names=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local stamp="k8s.io/kubernetes@$KUBE_VERSION"
  local todo=()
  for n in "${names[@]}"; do stamped "$n" "$stamp" || todo+=("$n"); done
  [ ${#todo[@]} -eq 0 ] && return
  # k8s.io/kubernetes requires its staging modules as v0.0.0 and replaces them by local
  # directories, which a dependent module ignores: the wrapper maps each one to its tag.
  local wrap="$DEST/wrapper"
  mkdir -p "$wrap"
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  {
    echo "module controlplane.local/kubewrapper"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    grep -oE '^[[:space:]]*k8s\.io/[a-z0-9./-]+ v0\.0\.0$' "$gomod" | awk -v v="$STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}' | sort -u
    echo ")"
  } >"$wrap/go.mod"
  printf 'package kubewrapper\n' >"$wrap/doc.go"
  local pkgs=()
  for n in "${todo[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$n"); done
  echo "kube: building ${todo[*]} from k8s.io/kubernetes $KUBE_VERSION (cold: 15-40 min on 2 busy cores)"
  (cd "$wrap" && go build -trimpath -o "$BIN/" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION" "${pkgs[@]}")
  for n in "${todo[@]}"; do echo "$stamp" >"$BIN/$n.version"; done
  echo "kube: ${todo[*]} ready"
}

# kine and kwok are small: they build next to the kubernetes binaries (peak ~2 GB together).
# Each build runs as a background job so `set -e` holds inside it (it does not in `f || x`).
build_kine >"$DEST/kine-build.log" 2>&1 &
kine_pid=$!
build_kwok >"$DEST/kwok-build.log" 2>&1 &
kwok_pid=$!
build_kube &
kube_pid=$!
rc=0
wait "$kube_pid" || { echo "kube: building the kubernetes binaries failed (output above)"; rc=1; }
for pair in "kine:$kine_pid" "kwok:$kwok_pid"; do
  name=${pair%%:*}
  if wait "${pair#*:}"; then
    tail -n 1 "$DEST/$name-build.log"
  else
    echo "kube: building $name failed:"; cat "$DEST/$name-build.log"; rc=1
  fi
done
[ "$rc" -eq 0 ] || exit "$rc"
echo "kube: binaries in $BIN"
