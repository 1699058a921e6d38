#!/usr/bin/env bash
# Start or stop a throwaway local kafka broker: kafka.sh start|stop DIR [--json].
# "start" prints the address; DIR/kafka.json records the PID that "stop" ends.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 2 ] || { [ "$1" != start ] && [ "$1" != stop ]; }; then
    echo "usage: $0 start|stop DIR [--json]" >&2
    exit 2
fi
action="$1" dir="$2"
shift 2
# PYTHONPATH rather than cd, so a relative DIR means the caller's directory.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$root/.venv/bin/python" -m eventscope.localbrokers "$action" kafka --dir "$dir" "$@"
