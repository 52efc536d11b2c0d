#!/usr/bin/env bash
# Run the test suite against a fresh local stack (Kafka + Redis on free ports).
#   scripts/test.sh [pytest args...]      e.g. scripts/test.sh -m "not slow" -x
# The stack lives in .stack/test and is always stopped and wiped on exit, pass or fail.
# Exit status: pytest's; "no tests collected" (5) counts as a failure too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FS=.venv/bin/fraudstream
STACK_DIR=.stack/test
[ -x "$FS" ] || { echo "test.sh: $FS missing; run \`make setup\` first" >&2; exit 2; }

stop_stack() {
    "$FS" stack down --wipe --stack-dir "$STACK_DIR" >/dev/null ||
        echo "test.sh: warning: could not stop the stack in $STACK_DIR" >&2
}
trap stop_stack EXIT

stop_stack  # a stack left over by a killed run would hold stale data
"$FS" stack up --stack-dir "$STACK_DIR" --kafka-port 0 --redis-port 0
status=$("$FS" stack status --json --stack-dir "$STACK_DIR")
field() { .venv/bin/python -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$status" "$1"; }
FRAUDSTREAM_KAFKA_BOOTSTRAP=$(field kafka_bootstrap)
FRAUDSTREAM_REDIS_URL=$(field redis_url)
export FRAUDSTREAM_KAFKA_BOOTSTRAP FRAUDSTREAM_REDIS_URL

rc=0
.venv/bin/pytest "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
fi
exit "$rc"
