#!/usr/bin/env bash
# Install redis-server from Debian if missing. Only the binary is needed: the
# project starts its own throwaway servers, so the Debian service stays off.
set -euo pipefail

if command -v redis-server >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_redis.sh: redis-server missing; run as root (or: sudo apt-get install -y redis-server)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Package scripts must not start the service: policy-rc.d exit 101 forbids it.
# Only create it when absent, and remove only what we created.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
