#!/usr/bin/env bash
# The AsyncAPI reference parser and the official JSON Schemas (npm, pinned by
# tools/asyncapi/package-lock.json): the tests validate generated documents with them.
# Idempotent and quiet when already installed.
set -euo pipefail
cd "$(dirname "$0")/../tools/asyncapi"
stamp=node_modules/.eventscope-installed
if [[ -f $stamp && $stamp -nt package-lock.json ]]; then
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "installing nodejs and npm from Debian (AsyncAPI validation in the tests)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch "$stamp"
