#!/usr/bin/env bash
# Run a command with the local stack up and its settings in the environment.
# Starts PostgreSQL, Kafka and the schema registry (and Kafka Connect with EBBTIDE_STACK_CONNECT=1)
# only if they are not already running, and stops afterwards only what it started, whatever the
# command's outcome. The command's exit code is kept.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
export EBBTIDE_STATE_DIR=${EBBTIDE_STATE_DIR:-$REPO_ROOT/.state}

if [ "$#" -eq 0 ] || [ "$1" = "--help" ] || [ "$1" = "-h" ]; then
    echo "Usage: $(basename -- "$0") COMMAND [ARGS...]"
    echo "Runs COMMAND with the local stack up (starting it if needed, stopping it after"
    echo "if this script started it) and with \$EBBTIDE_STATE_DIR/env exported."
    exit 0
fi

# Start each server that is not running, and remember it *before* starting it, so that a
# half-failed start is cleaned up too; stop only those, in reverse order, whatever happens.
started=()
# shellcheck disable=SC2317  # called by the trap
cleanup() {
    local i
    for ((i = ${#started[@]} - 1; i >= 0; i--)); do
        "$SCRIPT_DIR/${started[i]}.sh" stop || echo "with-stack: stopping ${started[i]} failed" >&2
    done
}
trap cleanup EXIT
# The state dir is made here, traversable, before anything starts in the background: the registry's
# start (umask 077) would otherwise make it private, and PostgreSQL's server (OS user postgres)
# could not reach its data under it.
# shellcheck source=common.sh
. "$SCRIPT_DIR/common.sh"
PROG=with-stack STATE_DIR=$EBBTIDE_STATE_DIR ensure_state_dir
# The schema registry needs neither server (its schemas are in a file): it starts beside them.
registry_start=""
if ! "$SCRIPT_DIR/registry.sh" status >/dev/null 2>&1; then
    started+=(registry)
    "$SCRIPT_DIR/registry.sh" start &
    registry_start=$!
fi
services=(postgres kafka)
# Kafka Connect (Debezium) only when asked: `make test` (the CDC tests) sets EBBTIDE_STACK_CONNECT=1;
# the demo, the benchmarks and the chaos run (a stack of its own) do without it.
if [[ ${EBBTIDE_STACK_CONNECT:-0} == 1 ]]; then services+=(connect); fi
for service in "${services[@]}"; do
    if ! "$SCRIPT_DIR/$service.sh" status >/dev/null 2>&1; then
        started+=("$service")
        "$SCRIPT_DIR/$service.sh" start
    fi
done
[[ -z $registry_start ]] || wait "$registry_start" # its start's exit status: set -e stops here if it failed

set -a
# shellcheck disable=SC1091
. "$EBBTIDE_STATE_DIR/env"
set +a

rc=0
"$@" || rc=$?
exit "$rc"
