#!/usr/bin/env bash
# Installs, from Debian, every program in scripts/system-programs.tsv that is missing
# (dot, redis-server, rabbitmq-server, chromium, java, mvn, node and npm). Idempotent and quiet when
# everything is there; run as root or with sudo. Only the binaries are needed: the project
# starts its own throwaway servers, so package services are kept from starting.
set -euo pipefail
table="$(dirname "${BASH_SOURCE[0]}")/system-programs.tsv"
missing=()
while IFS=$'\t' read -r program packages; do
    [[ -z $program || $program == \#* ]] && continue
    command -v "$program" >/dev/null || missing+=($packages)
done <"$table"
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install_system_deps.sh: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
fi
echo "installing from Debian: ${missing[*]}..." >&2
export DEBIAN_FRONTEND=noninteractive
# Package scripts must not start services: policy-rc.d exit 101 forbids it. Only create it
# when absent, and remove only what we created.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
