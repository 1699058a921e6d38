#!/usr/bin/env bash
# Fetch the Kafka broker jars (pinned in scripts/kafka/pom.xml) into
# .cache/kafka-<version>/libs. Idempotent and quiet when already installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pom="$root/scripts/kafka/pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
dest="$root/.cache/kafka-$version/libs"

# The directory only ever appears by the rename below, so the broker jar being
# there means the whole set is.
installed() { [ -f "$dest/kafka_2.13-$version.jar" ]; }
if installed; then
    exit 0
fi

command -v mvn >/dev/null || { echo "install_kafka.sh: mvn not found (apt-get install -y maven)" >&2; exit 1; }
command -v java >/dev/null || { echo "install_kafka.sh: java not found (apt-get install -y openjdk-17-jre-headless)" >&2; exit 1; }

mkdir -p "$(dirname "$dest")"
# Two test runs may install at once: serialize, so neither replaces jars the other's broker is loading.
exec 9>"$(dirname "$dest")/install.lock"
flock 9
if installed; then
    exit 0
fi
# Fetch into a sibling temp dir and rename, so an interrupted fetch never looks complete.
tmp="$(mktemp -d "$(dirname "$dest")/libs.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# Debian's Maven 3.8 prints stray ANSI resets even with -q: show output only on failure.
if ! out="$(mvn -q -B -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1)"; then
    printf '%s\n' "$out" >&2
    exit 1
fi
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
