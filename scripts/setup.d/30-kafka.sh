#!/usr/bin/env bash
# Apache Kafka broker + tools jars (for tests and bench), collected from Maven Central into
# $CONTROLPLANE_CACHE/kafka/<version>/libs. Idempotent: skips when the jars are there.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${CONTROLPLANE_CACHE:-$HOME/.cache/controlplane}"
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
DEST="$CACHE/kafka/$VERSION/libs"
if [ -f "$DEST/.complete" ]; then
  echo "kafka $VERSION jars present in $DEST"
  exit 0
fi
command -v java >/dev/null || { echo "java (17) is required: apt-get install openjdk-17-jre-headless" >&2; exit 1; }
command -v mvn >/dev/null || { echo "maven is required: apt-get install maven" >&2; exit 1; }
mkdir -p "$DEST"
mvn -q -B -f scripts/kafka/pom.xml -Dmaven.repo.local="$CACHE/m2" \
  dependency:copy-dependencies -DoutputDirectory="$DEST" -DincludeScope=runtime
touch "$DEST/.complete"
echo "kafka $VERSION jars in $DEST"
