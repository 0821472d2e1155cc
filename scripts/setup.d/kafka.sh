#!/usr/bin/env bash
# Apache Kafka, the broker of every integration test, the quickstart and the e2e benchmark,
# run in KRaft mode on loopback by kbs-testkit. Resolved from Maven Central with the small
# project in scripts/kafka/pom.xml (the broker jar, its runtime dependencies and a log4j2
# backend) into $KBS_CACHE/kafka-<version>/libs, outside the clone, so that
#   java -cp "$KBS_CACHE/kafka-<version>/libs/*" kafka.Kafka server.properties
# starts a node. Only package registries are reachable here, so there is no tarball to fetch.
# Skipped when the folder is complete (a marker written last).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
pom="$here/kafka/pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
dest="${KBS_CACHE:-$HOME/.cache/kbs}/kafka-$version"
if [ -f "$dest/.complete" ]; then
    exit 0
fi
for tool in java mvn; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "setup: $tool is required to install Apache Kafka $version (Java 17 and Maven)" >&2
        exit 1
    fi
done
echo "setup: installing Apache Kafka $version from Maven Central into $dest"
rm -rf "$dest"
mkdir -p "$dest/libs"
mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$dest/libs"
# A node must start with these jars alone: check the broker's and the format tool's classes.
java -cp "$dest/libs/*" kafka.tools.StorageTool random-uuid >/dev/null
cp "$pom" "$dest/pom.xml"
touch "$dest/.complete"
