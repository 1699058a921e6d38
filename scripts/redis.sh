#!/usr/bin/env bash
# Start or stop a throwaway local redis broker: redis.sh start|stop DIR [--json] (see broker.sh).
exec "$(dirname "${BASH_SOURCE[0]}")/broker.sh" redis "$@"
