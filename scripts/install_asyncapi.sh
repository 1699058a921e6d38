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
command -v npm >/dev/null || { echo "install_asyncapi.sh: npm not found (scripts/install_system_deps.sh installs it)" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch "$stamp"
