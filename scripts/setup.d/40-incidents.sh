#!/usr/bin/env bash
# Incidents: the dashboard acknowledge test drives a headless chromium through playwright.
# Everything else (Slack/Jira fakes, Sentry endpoint) is pure Python and needs nothing here.
set -euo pipefail
if ! dpkg -s chromium >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
