#!/usr/bin/env bash
# Apache Kafka broker + tools jars (for tests and bench), collected from Maven Central into
# $CONTROLPLANE_CACHE/kafka/<version>/libs. Idempotent: skips when the jars are there.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${CONTROLPLANE_CACHE:-$HOME/.cache/controlplane}"
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
DEST="$CACHE/kafka/$VERSION/libs"
# Java 17 runs the brokers and Kafka's tools; Maven collects the jars.
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ -f "$DEST/.complete" ]; then
  echo "kafka $VERSION jars present in $DEST"
  exit 0
fi
mkdir -p "$DEST"
mvn -q -B -f scripts/kafka/pom.xml -Dmaven.repo.local="$CACHE/m2" \
  -Dstyle.color=never dependency:copy-dependencies -DoutputDirectory="$DEST" -DincludeScope=runtime
touch "$DEST/.complete"
echo "kafka $VERSION jars in $DEST"
