#!/usr/bin/env bash
# Kafka Connect (distributed mode, one worker) with Debezium's PostgreSQL connector on its plugin
# path, for local development (no Docker). Its jars are resolved from Maven Central via
# connect-pom.xml and debezium-pom.xml and cached outside the repository; its state is in the
# stack's broker (three topics) and its log under $EBBTIDE_STATE_DIR/connect.
set -euo pipefail
umask 077 # its settings name the broker; its log may quote a connector's configuration

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
PROG=$(basename -- "$0")
# shellcheck source=common.sh
. "$SCRIPT_DIR/common.sh"

usage() {
    cat <<EOF
Usage: $PROG <fetch|start|stop|status>

Runs one Kafka Connect worker in distributed mode, its REST API bound to 127.0.0.1, with
Debezium's PostgreSQL connector on its plugin path. Its configurations, offsets and statuses
are kept in the topics ebbtide-connect-{configs,offsets,status} of the stack's broker
(\$EBBTIDE_KAFKA_BOOTSTRAP from the env file, else 127.0.0.1:\$EBBTIDE_KAFKA_PORT), so start
Kafka first. 'ebbtide cdc connect' registers Ebbtide's connector (docs/cdc.md).

Commands:
  fetch    Download the Connect and Debezium jars (Maven) into the cache, unless cached.
  start    Fetch if needed, start the worker in the background and wait until its REST API
           lists the Debezium PostgreSQL connector (timeout \${EBBTIDE_CONNECT_START_TIMEOUT:-120}s).
           Writes EBBTIDE_CONNECT_URL to the env file. A no-op if our worker is running.
  stop     Stop our worker (SIGTERM, SIGKILL after 60 s). Succeeds if not running.
  status   Print running/stopped and the REST address. Exit status: 0 running, 3 stopped.

Environment (defaults in brackets):
  EBBTIDE_STATE_DIR              [<repo>/.state]  Connect uses ./connect
  EBBTIDE_CONNECT_PORT           [8083]           REST API port (127.0.0.1)
  EBBTIDE_CONNECT_HEAP           [256m]           JVM -Xmx
  EBBTIDE_CONNECT_START_TIMEOUT  [120]            seconds to wait for readiness
  EBBTIDE_KAFKA_PORT             [9092]           the broker, if the env file names none
  EBBTIDE_CACHE_DIR              [\${XDG_CACHE_HOME:-\$HOME/.cache}/ebbtide]  jar cache
EOF
}

info() { printf 'connect: %s\n' "$*"; }

STATE_DIR=$(abspath "${EBBTIDE_STATE_DIR:-$REPO_ROOT/.state}")
PORT=${EBBTIDE_CONNECT_PORT:-8083}
HEAP=${EBBTIDE_CONNECT_HEAP:-256m}
START_TIMEOUT=${EBBTIDE_CONNECT_START_TIMEOUT:-120}
STOP_TIMEOUT=60
HOST=127.0.0.1
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
CONNECT_POM=$SCRIPT_DIR/connect-pom.xml
DEBEZIUM_POM=$SCRIPT_DIR/debezium-pom.xml
LOG4J_CONFIG=$SCRIPT_DIR/log4j2.yaml
CONNECT_DIR=$STATE_DIR/connect
PROPS=$CONNECT_DIR/connect-distributed.properties
LOG_FILE=$CONNECT_DIR/connect.log
PID_FILE=$CONNECT_DIR/connect.pid
ENV_FILE=$STATE_DIR/env
MAIN_CLASS=org.apache.kafka.connect.cli.ConnectDistributed
PLUGIN_CLASS=io.debezium.connector.postgresql.PostgresConnector

validate_settings() {
    if ! [[ $PORT =~ ^[0-9]+$ ]] || ((10#$PORT < 1 || 10#$PORT > 65535)); then
        die "EBBTIDE_CONNECT_PORT must be a TCP port number (1-65535), got '$PORT'"
    fi
    [[ $HEAP =~ ^[0-9]+[kKmMgG]$ ]] || die "EBBTIDE_CONNECT_HEAP must look like 256m or 1g, got '$HEAP'"
    if ! [[ $START_TIMEOUT =~ ^[0-9]+$ ]] || ((10#$START_TIMEOUT == 0)); then
        die "EBBTIDE_CONNECT_START_TIMEOUT must be a positive number of seconds, got '$START_TIMEOUT'"
    fi
}

pom_property() { # pom name
    sed -n "s:.*<$2>[[:space:]]*\([^<[:space:]]*\)[[:space:]]*</$2>.*:\1:p" "$1" | head -n 1
}

cache_paths() {
    local cache_root
    cache_root=$(abspath "${EBBTIDE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:?HOME is not set; set EBBTIDE_CACHE_DIR}/.cache}/ebbtide}")
    KAFKA_VERSION=$(pom_property "$CONNECT_POM" kafka.version)
    DEBEZIUM_VERSION=$(pom_property "$DEBEZIUM_POM" debezium.version)
    [[ -n $KAFKA_VERSION && -n $DEBEZIUM_VERSION ]] || die "no kafka.version or debezium.version in the poms"
    local broker
    broker=$(pom_property "$SCRIPT_DIR/kafka-pom.xml" kafka.version)
    [[ $broker == "$KAFKA_VERSION" ]] ||
        die "connect-pom.xml has Kafka $KAFKA_VERSION but kafka-pom.xml $broker: make them equal"
    CONNECT_HOME=$cache_root/connect-$KAFKA_VERSION-debezium-$DEBEZIUM_VERSION
    LIBS=$CONNECT_HOME/libs
    PLUGINS=$CONNECT_HOME/plugins
    MARKER=$CONNECT_HOME/libs.complete
}

poms_digest() { cat "$CONNECT_POM" "$DEBEZIUM_POM" | sha256sum | cut -d ' ' -f 1; }
is_fetched() { [[ -f $MARKER && -d $LIBS && -d $PLUGINS && $(<"$MARKER") == "$(poms_digest)" ]]; }

mvn_copy() { # pom out-dir log extra-args...
    local pom=$1 out=$2 log=$3
    shift 3
    if ! mvn -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DoutputDirectory="$out" \
        -DincludeScope=runtime "$@" >"$log" 2>&1; then
        echo "---- last lines of $log ----" >&2
        grep -E '\[(ERROR|WARNING)\]' "$log" | tail -n 30 >&2 || true
        die "maven could not fetch the jars of $(basename -- "$pom"); nothing was cached. Full output: $log"
    fi
}

cmd_fetch() {
    cache_paths
    if is_fetched; then
        info "Connect $KAFKA_VERSION and Debezium $DEBEZIUM_VERSION already cached in $CONNECT_HOME"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn (Maven) not found; install it (apt-get install maven)"
    mkdir -p -- "$CONNECT_HOME"
    (
        flock -w 900 8 || die "timed out waiting for another fetch (lock $CONNECT_HOME/.lock)"
        is_fetched && exit 0
        local tmp
        tmp=$(mktemp -d "$CONNECT_HOME/fetch.tmp.XXXXXX")
        trap 'rm -rf -- "$tmp"' EXIT
        info "fetching Kafka Connect $KAFKA_VERSION and Debezium $DEBEZIUM_VERSION jars from Maven ..."
        mvn_copy "$CONNECT_POM" "$tmp/libs" "$CONNECT_HOME/fetch.log"
        # The plugin gets its own class loader; Connect's API and the Kafka client come from the worker.
        mvn_copy "$DEBEZIUM_POM" "$tmp/plugins/debezium-postgres" "$CONNECT_HOME/fetch-debezium.log" \
            -DexcludeGroupIds=org.apache.kafka,org.slf4j
        [[ -f $tmp/libs/connect-runtime-$KAFKA_VERSION.jar ]] ||
            die "maven finished but connect-runtime-$KAFKA_VERSION.jar is missing; nothing was cached"
        [[ -f $tmp/plugins/debezium-postgres/debezium-connector-postgres-$DEBEZIUM_VERSION.jar ]] ||
            die "maven finished but debezium-connector-postgres-$DEBEZIUM_VERSION.jar is missing; nothing was cached"
        chmod -R go+rX "$tmp"
        rm -rf -- "$LIBS" "$PLUGINS"
        mv -- "$tmp/libs" "$LIBS"
        mv -- "$tmp/plugins" "$PLUGINS"
        poms_digest >"$MARKER.tmp"
        mv -f -- "$MARKER.tmp" "$MARKER"
        info "cached $(find "$LIBS" "$PLUGINS" -name '*.jar' | wc -l) jars in $CONNECT_HOME"
    ) 8>"$CONNECT_HOME/.lock"
}

# True if pid runs Connect's distributed worker with exactly our properties file.
is_our_worker() {
    local arg has_main=0 has_props=0
    local -a argv
    mapfile -d '' argv 2>/dev/null <"/proc/$1/cmdline" || return 1
    for arg in "${argv[@]}"; do
        [[ $arg == "$MAIN_CLASS" ]] && has_main=1
        [[ $arg == "$PROPS" ]] && has_props=1
    done
    ((has_main && has_props))
}

running_pid() {
    [[ -f $PID_FILE ]] || return 1
    local pid
    pid=$(<"$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" && is_our_worker "$pid" && printf '%s\n' "$pid"
}

bootstrap() {
    local b=""
    [[ -f $ENV_FILE ]] && b=$(sed -n 's/^EBBTIDE_KAFKA_BOOTSTRAP=//p' "$ENV_FILE" | tail -n 1)
    printf '%s\n' "${b:-$HOST:${EBBTIDE_KAFKA_PORT:-9092}}"
}

write_properties() {
    cat >"$PROPS.tmp" <<EOF
# Generated by deploy/local/connect.sh on every start; edits will be overwritten.
bootstrap.servers=$(bootstrap)
group.id=ebbtide-connect
config.storage.topic=ebbtide-connect-configs
offset.storage.topic=ebbtide-connect-offsets
status.storage.topic=ebbtide-connect-status
# One broker in the local stack: one copy of each.
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=1
status.storage.partitions=1
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter.schemas.enable=false
listeners=http://$HOST:$PORT
rest.advertised.host.name=$HOST
rest.advertised.port=$PORT
plugin.path=$PLUGINS
# Plugins are found through their ServiceLoader manifests, not by scanning every class (faster).
plugin.discovery=service_load
# Offsets are committed every second: a restarted connector resends little.
offset.flush.interval.ms=1000
EOF
    mv -f -- "$PROPS.tmp" "$PROPS"
}

rest() { curl -fsS --max-time 5 "http://$HOST:$PORT$1" 2>/dev/null; }

plugin_listed() { rest /connector-plugins | grep -qF "$PLUGIN_CLASS"; }

env_write() {
    (
        flock -w 30 9 || die "timed out waiting for lock $ENV_FILE.lock"
        local tmp
        tmp=$(mktemp "$ENV_FILE.XXXXXX")
        { grep -v '^EBBTIDE_CONNECT_URL=' "$ENV_FILE" 2>/dev/null || true; } >"$tmp"
        printf 'EBBTIDE_CONNECT_URL=http://%s:%s\n' "$HOST" "$PORT" >>"$tmp"
        chmod 600 "$tmp"
        mv -f -- "$tmp" "$ENV_FILE"
    ) 9>"$ENV_FILE.lock"
}

start_locked() {
    local pid
    if pid=$(running_pid); then
        grep -qxF "listeners=http://$HOST:$PORT" "$PROPS" ||
            die "our Connect worker (pid $pid) runs on another port than EBBTIDE_CONNECT_PORT=$PORT; run '$PROG stop' first"
        info "already running (pid $pid), REST http://$HOST:$PORT"
        env_write
        return 0
    fi
    rm -f -- "$PID_FILE"
    port_open "$PORT" && die "port $HOST:$PORT is already in use by another process; set EBBTIDE_CONNECT_PORT"
    local kafka
    kafka=$(bootstrap)
    HOST=${kafka%:*} port_open "${kafka##*:}" ||
        die "no Kafka broker at $kafka: start it first (deploy/local/kafka.sh start)"
    cache_paths
    is_fetched || cmd_fetch
    command -v "$JAVA" >/dev/null 2>&1 || die "java not found (need Java 17+, as for Kafka)"
    write_properties
    if [[ -f $LOG_FILE ]] && (($(stat -c %s "$LOG_FILE") > 20 * 1024 * 1024)); then
        mv -f -- "$LOG_FILE" "$LOG_FILE.1"
    fi
    local start=$SECONDS deadline
    printf '\n==== %s connect.sh start (port %s) ====\n' "$(date '+%F %T')" "$PORT" >>"$LOG_FILE"
    # shellcheck disable=SC2016 # $$, $0 and $@ are expanded by the inner bash
    (
        cd -- "$CONNECT_DIR"
        setsid -f bash -c 'echo $$ >"$0.new" && mv -f "$0.new" "$0" && exec "$@"' "$PID_FILE" \
            "$JAVA" "-Xmx$HEAP" -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError \
            -Djava.awt.headless=true "-Dlog4j2.configurationFile=$LOG4J_CONFIG" \
            -cp "$LIBS/*" "$MAIN_CLASS" "$PROPS" </dev/null >>"$LOG_FILE" 2>&1 7>&-
    )
    deadline=$(($(now_ms) + 10000))
    until [[ -s $PID_FILE ]]; do
        (($(now_ms) < deadline)) || die "Connect did not record its pid in $PID_FILE; see $LOG_FILE"
        sleep 0.05
    done
    pid=$(<"$PID_FILE")
    info "starting (pid $pid), waiting up to ${START_TIMEOUT}s for readiness; log: $LOG_FILE"
    wait_started "$pid" "Kafka Connect" "list $PLUGIN_CLASS on $HOST:$PORT" plugin_listed
    info "started (pid $pid) in $((SECONDS - start))s, REST http://$HOST:$PORT"
    env_write
}


with_lock() {
    ensure_state_dir
    mkdir -p -- "$CONNECT_DIR"
    chmod 700 -- "$CONNECT_DIR"
    (
        flock -w 120 7 || die "timed out waiting for lock $CONNECT_DIR/.lock"
        "$@"
    ) 7>"$CONNECT_DIR/.lock"
}

stop_locked() {
    local pid
    pid=$(running_pid) || {
        rm -f -- "$PID_FILE"
        return 0
    }
    info "stopping (pid $pid) ..."
    stop_pid "$pid"
    info "stopped"
}

cmd_status() {
    local pid
    if pid=$(running_pid); then
        echo "connect: running (pid $pid), REST http://$HOST:$PORT"
        return 0
    fi
    echo "connect: stopped (REST would be http://$HOST:$PORT)"
    return 3
}

main() {
    if (($# != 1)); then
        usage >&2
        exit 2
    fi
    validate_settings
    case $1 in
        -h | --help | help) usage ;;
        fetch) cmd_fetch ;;
        start) with_lock start_locked ;;
        stop) if [[ -d $CONNECT_DIR ]]; then with_lock stop_locked; fi ;;
        status) cmd_status ;;
        *)
            printf '%s: unknown command: %s\n\n' "$PROG" "$1" >&2
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
