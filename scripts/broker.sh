#!/usr/bin/env bash
# Start or stop a throwaway local broker: broker.sh redis|kafka start|stop DIR [--json].
# "start" prints the address; DIR/<kind>.json records the PID that "stop" ends.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 3 ] || { [ "$1" != redis ] && [ "$1" != kafka ]; } || { [ "$2" != start ] && [ "$2" != stop ]; }; then
    echo "usage: $0 redis|kafka start|stop DIR [--json]" >&2
    exit 2
fi
kind="$1" action="$2" dir="$3"
shift 3
# PYTHONPATH rather than cd, so a relative DIR means the caller's directory.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "${VENV:-$root/.venv}/bin/python" -m eventscope.localbrokers "$action" "$kind" --dir "$dir" "$@"
