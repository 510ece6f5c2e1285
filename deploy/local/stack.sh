#!/usr/bin/env bash
# Local Ebbtide stack: private PostgreSQL cluster + single-node Kafka broker + a Kafka Connect
# worker with Debezium, all bound to 127.0.0.1. Thin wrapper around postgres.sh and kafka.sh.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
PROG=$(basename -- "$0")

usage() {
    cat <<EOF
Usage: $PROG <up|down|status>

Commands:
  up      Start PostgreSQL, then Kafka, then the schema registry, then Kafka Connect
          with Debezium (unless EBBTIDE_STACK_CONNECT=0; each is a no-op if already running),
          and write \$EBBTIDE_STATE_DIR/env with the settings:
            EBBTIDE_KAFKA_BOOTSTRAP, EBBTIDE_PG_DSN, EBBTIDE_PG_TEST_DSN,
            EBBTIDE_SCHEMA_REGISTRY_URL (Apicurio's Confluent-compatible API), and, for
            the secured listeners (EBBTIDE_LOCAL_*: not settings of the pipeline,
            which stays on PLAINTEXT): Kafka's SASL_PLAINTEXT listener
            EBBTIDE_LOCAL_KAFKA_SASL_BOOTSTRAP, _SASL_MECHANISM, _SASL_PASSWORDS (the
            file of its users' passwords), its SASL_SSL listener (SCRAM-SHA-512 or
            PLAIN, TLS with the stack's own CA) EBBTIDE_LOCAL_KAFKA_SASL_SSL_BOOTSTRAP,
            EBBTIDE_LOCAL_KAFKA_SSL_CAFILE, EBBTIDE_LOCAL_KAFKA_USERS_DIR (one password
            file per user), and PostgreSQL's TLS root certificate
            EBBTIDE_LOCAL_PG_SSLROOTCERT (docs/security.md)
          (plain KEY=value lines: 'source' it in bash, 'include' it in make).
  down    Stop Kafka Connect, the registry, Kafka and PostgreSQL (only what this project started).
  status  Show each. Exit 0 if all are running (Kafka Connect is not counted with
          EBBTIDE_STACK_CONNECT=0), 3 otherwise.

Environment (defaults in brackets):
  EBBTIDE_STATE_DIR              [<repo>/.state]
  EBBTIDE_KAFKA_PORT             [9092]
  EBBTIDE_KAFKA_CONTROLLER_PORT  [9093]
  EBBTIDE_KAFKA_SASL_PORT        [9094]
  EBBTIDE_KAFKA_SASL_SSL_PORT    [9095]
  EBBTIDE_PG_PORT                [5433]
  EBBTIDE_KAFKA_HEAP             [512m]
  EBBTIDE_REGISTRY_PORT          [8081]
  EBBTIDE_CONNECT_PORT           [8083]   Kafka Connect's REST API (connect.sh: Debezium)
  EBBTIDE_STACK_CONNECT          [1]      0: up starts no Kafka Connect
  EBBTIDE_CACHE_DIR              [\${XDG_CACHE_HOME:-\$HOME/.cache}/ebbtide]

See '$SCRIPT_DIR/kafka.sh --help', '$SCRIPT_DIR/postgres.sh --help', '$SCRIPT_DIR/registry.sh --help'
and '$SCRIPT_DIR/connect.sh --help'.
EOF
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

STATE_DIR=${EBBTIDE_STATE_DIR:-$REPO_ROOT/.state}
case $STATE_DIR in
    /*) ;;
    *) STATE_DIR=$PWD/$STATE_DIR ;;
esac
# Resolve once so both sub-scripts see the same absolute state dir.
export EBBTIDE_STATE_DIR=$STATE_DIR
ENV_FILE=$STATE_DIR/env

cmd_up() {
    local start=$SECONDS
    "$SCRIPT_DIR/postgres.sh" start || die "PostgreSQL failed to start (see messages above)"
    "$SCRIPT_DIR/kafka.sh" start || die "Kafka failed to start (see messages above); PostgreSQL was left running"
    "$SCRIPT_DIR/registry.sh" start || die "the schema registry failed to start (see messages above); the rest was left running"
    if [[ ${EBBTIDE_STACK_CONNECT:-1} == 1 ]]; then # Debezium (CDC); EBBTIDE_STACK_CONNECT=0: without it
        "$SCRIPT_DIR/connect.sh" start || die "Kafka Connect failed to start (see messages above); Kafka and PostgreSQL were left running"
    fi
    local key keys=(EBBTIDE_KAFKA_BOOTSTRAP EBBTIDE_PG_DSN EBBTIDE_PG_TEST_DSN EBBTIDE_SCHEMA_REGISTRY_URL)
    [[ ${EBBTIDE_STACK_CONNECT:-1} == 1 ]] && keys+=(EBBTIDE_CONNECT_URL EBBTIDE_CDC_DSN)
    for key in "${keys[@]}"; do
        grep -q "^$key=" "$ENV_FILE" 2>/dev/null || die "$ENV_FILE lacks $key; this is a bug in deploy/local"
    done
    echo
    echo "Ebbtide local stack is up ($((SECONDS - start))s):"
    # Show the settings with the password masked.
    sed -n 's#^\(EBBTIDE_[A-Z_]*\)=\(postgresql://[^:]*:\)[^@]*@#\1=\2****@#; /^EBBTIDE_/s/^/  /p' "$ENV_FILE"
    echo "Settings (with password) in $ENV_FILE; use: set -a; . $ENV_FILE; set +a"
}

cmd_down() {
    local rc=0
    "$SCRIPT_DIR/connect.sh" stop || rc=1
    "$SCRIPT_DIR/registry.sh" stop || rc=1
    "$SCRIPT_DIR/kafka.sh" stop || rc=1
    "$SCRIPT_DIR/postgres.sh" stop || rc=1
    ((rc == 0)) || die "could not stop everything (see messages above)"
    echo "Ebbtide local stack is down."
}

cmd_status() {
    local rc=0
    "$SCRIPT_DIR/postgres.sh" status || rc=3
    "$SCRIPT_DIR/kafka.sh" status || rc=3
    "$SCRIPT_DIR/registry.sh" status || rc=3
    "$SCRIPT_DIR/connect.sh" status || [[ ${EBBTIDE_STACK_CONNECT:-1} == 0 ]] || rc=3
    return "$rc"
}

main() {
    if (($# != 1)); then
        usage >&2
        exit 2
    fi
    case $1 in
        -h | --help | help) usage ;;
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        *)
            printf '%s: unknown command: %s\n\n' "$PROG" "$1" >&2
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
