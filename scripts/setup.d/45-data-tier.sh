#!/usr/bin/env bash
# Servers the data-tier checks are tested against (docs/rabbitmq.md, docs/clickhouse.md):
# Debian's rabbitmq-server 3.10 (with the management plugin it ships) and clickhouse-server
# 18.16, and Dovecot 2.3 (IMAP + LMTP) as the mailbox the smtp canary must reach
# (docs/smtp.md, tests/services/imap.py). Debian's packaging tries to start them as
# services; the tests start their own instances on loopback ports instead. Idempotent: installs only what is missing.
# The Python side (pika, boto3, moto[server], aiosmtpd) comes from pyproject.toml.
set -euo pipefail
PKGS=(rabbitmq-server clickhouse-server clickhouse-client erlang-base dovecot-imapd dovecot-lmtpd)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
