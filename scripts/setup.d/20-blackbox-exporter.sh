#!/usr/bin/env bash
# Prometheus blackbox_exporter: the peer the TLS probe is compared with
# (tests/peers/test_blackbox_agreement.py). Idempotent: installs only when missing.
set -euo pipefail
PKG=prometheus-blackbox-exporter
if ! dpkg -s "$PKG" >/dev/null 2>&1; then
  if ! apt-cache show "$PKG" >/dev/null 2>&1; then
    apt-get update -qq
  fi
  # policy-rc.d-free containers: the package's service start is not needed (tests run
  # the binary themselves), so a failing start must not fail the install.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$PKG"
fi
command -v prometheus-blackbox-exporter >/dev/null
