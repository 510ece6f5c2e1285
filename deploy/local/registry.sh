#!/usr/bin/env bash
# Apicurio Registry for local development (no Docker): the schema registry whose
# Confluent-compatible API (/apis/ccompat/v7) serves Confluent-framed events' schemas.
# Its distribution comes from Maven Central via registry-pom.xml and is cached outside
# the repository; its state (the schemas, in an H2 file) lives under $EBBTIDE_STATE_DIR/registry.
set -euo pipefail
umask 077

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
PROG=$(basename -- "$0")
# shellcheck source=common.sh
. "$SCRIPT_DIR/common.sh"

usage() {
    cat <<EOF
Usage: $PROG <fetch|start|stop|status>

Runs Apicurio Registry (2.6, the version that runs on Java 17) bound to 127.0.0.1,
with its schemas in an H2 database file under the state dir (kept across restarts,
so a schema id in a message on Kafka keeps its meaning). Clients use its
Confluent-compatible API: http://127.0.0.1:\$EBBTIDE_REGISTRY_PORT/apis/ccompat/v7.
No authentication: anyone on this host may register schemas (a development stack).

Commands:
  fetch    Download the registry's distribution (Maven) into the cache, unless cached.
  start    Fetch if needed, start the registry in the background and wait until
           /health/ready answers (timeout \${EBBTIDE_REGISTRY_START_TIMEOUT:-120}s).
           Succeeds without doing anything if our registry is already running.
  stop     Stop our registry (SIGTERM, SIGKILL after 30 s). Succeeds if not running.
  status   Print running/stopped and the URL. Exit 0 running, 3 stopped.

Environment (defaults in brackets):
  EBBTIDE_STATE_DIR                [<repo>/.state]  runtime state; the registry uses ./registry
  EBBTIDE_REGISTRY_PORT            [8081]           HTTP port on 127.0.0.1
  EBBTIDE_REGISTRY_HEAP            [256m]           JVM -Xmx
  EBBTIDE_REGISTRY_START_TIMEOUT   [120]            seconds to wait for readiness
  EBBTIDE_CACHE_DIR                [\${XDG_CACHE_HOME:-\$HOME/.cache}/ebbtide]  distribution cache
  JAVA_HOME                        [unset]          java from \$JAVA_HOME/bin if set

Files:
  \$EBBTIDE_STATE_DIR/registry/db.mv.db      the schemas (H2)
  \$EBBTIDE_STATE_DIR/registry/registry.log  server log
  \$EBBTIDE_STATE_DIR/registry/registry.pid  pid of the running registry
  \$EBBTIDE_STATE_DIR/env                    EBBTIDE_SCHEMA_REGISTRY_URL (the ccompat API)
EOF
}

info() { printf 'registry: %s\n' "$*"; }

STATE_DIR=$(abspath "${EBBTIDE_STATE_DIR:-$REPO_ROOT/.state}")
PORT=${EBBTIDE_REGISTRY_PORT:-8081}
HEAP=${EBBTIDE_REGISTRY_HEAP:-256m}
START_TIMEOUT=${EBBTIDE_REGISTRY_START_TIMEOUT:-120}
STOP_TIMEOUT=30
HOST=127.0.0.1
POM=$SCRIPT_DIR/registry-pom.xml
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
REG_DIR=$STATE_DIR/registry
LOG_FILE=$REG_DIR/registry.log
PID_FILE=$REG_DIR/registry.pid
ENV_FILE=$STATE_DIR/env
URL=http://$HOST:$PORT/apis/ccompat/v7

validate_settings() {
    if ! [[ $PORT =~ ^[0-9]+$ ]] || ((10#$PORT < 1 || 10#$PORT > 65535)); then
        die "EBBTIDE_REGISTRY_PORT must be a TCP port number (1-65535), got '$PORT'"
    fi
    [[ $HEAP =~ ^[0-9]+[kKmMgG]$ ]] || die "EBBTIDE_REGISTRY_HEAP must look like 256m or 1g, got '$HEAP'"
    if ! [[ $START_TIMEOUT =~ ^[0-9]+$ ]] || ((10#$START_TIMEOUT == 0)); then
        die "EBBTIDE_REGISTRY_START_TIMEOUT must be a positive number of seconds, got '$START_TIMEOUT'"
    fi
}

cache_paths() {
    local cache_root version
    cache_root=$(abspath "${EBBTIDE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:?HOME is not set; set EBBTIDE_CACHE_DIR}/.cache}/ebbtide}")
    version=$(sed -n 's:.*<apicurio\.version>\([^<]*\)</apicurio\.version>.*:\1:p' "$POM" | head -n 1)
    [[ -n $version ]] || die "no <apicurio.version> property found in $POM"
    VERSION=$version
    HOME_DIR=$cache_root/apicurio-registry-$VERSION
    RUNNER=$HOME_DIR/dist/apicurio-registry-app-$VERSION-runner.jar
    MARKER=$HOME_DIR/dist.complete
}

is_fetched() { [[ -f $MARKER && -f $RUNNER && $(<"$MARKER") == "$(sha256sum "$POM" | cut -d ' ' -f 1)" ]]; }

cmd_fetch() {
    cache_paths
    is_fetched && return 0
    command -v mvn >/dev/null 2>&1 || die "mvn (Maven) not found; install it (apt-get install maven)"
    mkdir -p -- "$HOME_DIR"
    (
        flock -w 900 8 || die "timed out waiting for another fetch (lock $HOME_DIR/.lock)"
        is_fetched && exit 0
        rm -rf -- "$HOME_DIR"/dist.tmp.* "$MARKER"
        tmp=$(mktemp -d "$HOME_DIR/dist.tmp.XXXXXX")
        trap 'rm -rf -- "$tmp"' EXIT
        info "fetching Apicurio Registry $VERSION from Maven into $HOME_DIR ..."
        if ! mvn -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
            -DoutputDirectory="$tmp/download" >"$HOME_DIR/fetch.log" 2>&1; then
            grep -E '\[(ERROR|WARNING)\]' "$HOME_DIR/fetch.log" | tail -n 20 >&2 || true
            die "maven could not fetch Apicurio Registry $VERSION; nothing was cached. Full output: $HOME_DIR/fetch.log"
        fi
        mkdir -p -- "$tmp/dist"
        tar -xzf "$tmp/download/apicurio-registry-app-$VERSION-all.tar.gz" -C "$tmp/dist" ||
            die "could not unpack the Apicurio Registry $VERSION distribution; nothing was cached"
        [[ -f $tmp/dist/apicurio-registry-app-$VERSION-runner.jar ]] ||
            die "the Apicurio Registry $VERSION distribution has no runner jar; nothing was cached"
        chmod -R go+rX "$tmp/dist"
        rm -rf -- "$HOME_DIR/dist"
        mv -- "$tmp/dist" "$HOME_DIR/dist"
        sha256sum "$POM" | cut -d ' ' -f 1 >"$MARKER"
        info "cached in $HOME_DIR/dist"
    ) 8>"$HOME_DIR/.lock"
}

# True if pid runs the registry with our state dir (never anyone else's java).
is_ours() {
    local arg
    local -a argv
    mapfile -d '' argv 2>/dev/null <"/proc/$1/cmdline" || return 1
    for arg in "${argv[@]}"; do [[ $arg == "-Debbtide.registry=$REG_DIR" ]] && return 0; done
    return 1
}

running_pid() {
    [[ -f $PID_FILE ]] || return 1
    local pid
    pid=$(<"$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" && is_ours "$pid" && printf '%s\n' "$pid"
}

ready() { # /health/ready answers 200
    local status
    # shellcheck disable=SC2016 # expanded by the inner bash
    status=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "GET /health/ready HTTP/1.0\r\nHost: %s\r\n\r\n" "$0" >&3 && head -n 1 <&3' "$HOST" "$PORT" 2>/dev/null) || return 1
    [[ $status == "HTTP/1."?" 200"* ]]
}

env_update() { # the registry's one line in $ENV_FILE (the other scripts keep theirs)
    (
        flock -w 30 9 || die "timed out waiting for lock $ENV_FILE.lock"
        local tmp
        tmp=$(mktemp "$ENV_FILE.XXXXXX")
        { grep -v '^EBBTIDE_SCHEMA_REGISTRY_URL=' "$ENV_FILE" 2>/dev/null || true; } >"$tmp"
        printf 'EBBTIDE_SCHEMA_REGISTRY_URL=%s\n' "$URL" >>"$tmp"
        chmod 600 "$tmp"
        mv -f -- "$tmp" "$ENV_FILE"
    ) 9>"$ENV_FILE.lock"
}



start_locked() {
    local pid start=$SECONDS
    if pid=$(running_pid); then
        ready || die "our registry (pid $pid) is running but $HOST:$PORT does not answer; see $LOG_FILE"
        info "already running (pid $pid), $URL"
        env_update
        return 0
    fi
    port_open "$PORT" && die "port $HOST:$PORT is already in use by another process; choose another with EBBTIDE_REGISTRY_PORT"
    cache_paths
    is_fetched || cmd_fetch
    command -v "$JAVA" >/dev/null 2>&1 || die "java not found (need Java 17+; install openjdk-17-jre-headless or set JAVA_HOME)"
    if [[ -f $LOG_FILE ]] && (($(stat -c %s "$LOG_FILE") > 20 * 1024 * 1024)); then
        mv -f -- "$LOG_FILE" "$LOG_FILE.1"
    fi
    printf '\n==== %s registry.sh start (port %s) ====\n' "$(date '+%F %T')" "$PORT" >>"$LOG_FILE"
    rm -f -- "$PID_FILE.new"
    # Quarkus settings as system properties: loopback only, this port, the schemas in an H2 file
    # (the app's in-memory storage, on a file), a small pool; a schema is looked up by its
    # canonical form, as Confluent's registry does (a serializer sends it reformatted); C1 only and
    # a serial GC start it faster on a small machine. setsid -f: it outlives this shell (kafka.sh).
    # shellcheck disable=SC2016 # $$, $0 and $@ are expanded by the inner bash
    (
        cd -- "$REG_DIR"
        setsid -f bash -c 'echo $$ >"$0.new" && mv -f "$0.new" "$0" && exec "$@"' "$PID_FILE" \
            env "REGISTRY_DATASOURCE_URL=jdbc:h2:file:$REG_DIR/db" ENABLE_CCOMPAT_CANONICAL_HASH_MODE=true "$JAVA" "-Xmx$HEAP" -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError \
            "-Debbtide.registry=$REG_DIR" "-Dquarkus.http.host=$HOST" "-Dquarkus.http.port=$PORT" \
            -Dquarkus.datasource.jdbc.min-size=1 -Dquarkus.datasource.jdbc.initial-size=1 \
            -Dregistry.ui.features.readOnly=true -Djava.io.tmpdir="$REG_DIR" \
            -jar "$RUNNER" </dev/null >>"$LOG_FILE" 2>&1 7>&-
    )
    local deadline=$(($(now_ms) + 10000))
    until [[ -s $PID_FILE ]]; do
        (($(now_ms) < deadline)) || die "the registry did not record its pid in $PID_FILE; see $LOG_FILE"
        sleep 0.05
    done
    pid=$(<"$PID_FILE")
    info "starting (pid $pid), waiting up to ${START_TIMEOUT}s for readiness; log: $LOG_FILE"
    wait_started "$pid" "Apicurio Registry" "become ready on $HOST:$PORT" ready
    info "started (pid $pid) in $((SECONDS - start))s, $URL"
    env_update
}

cmd_start() {
    validate_settings
    ensure_state_dir
    mkdir -p -- "$REG_DIR"
    chmod 700 -- "$REG_DIR"
    (
        flock -w 120 7 || die "timed out waiting for lock $REG_DIR/.lock"
        start_locked
    ) 7>"$REG_DIR/.lock"
}

cmd_stop() {
    [[ -d $REG_DIR ]] || return 0
    (
        flock -w 120 7 || die "timed out waiting for lock $REG_DIR/.lock"
        local pid
        pid=$(running_pid) || {
            rm -f -- "$PID_FILE"
            exit 0
        }
        info "stopping (pid $pid) ..."
        stop_pid "$pid"
        info "stopped"
    ) 7>"$REG_DIR/.lock"
}

cmd_status() {
    local pid
    if [[ -d $REG_DIR ]] && pid=$(running_pid); then
        if ready; then
            echo "registry: running (pid $pid), $URL"
        else
            echo "registry: running (pid $pid) but not ready yet; log: $LOG_FILE"
        fi
        return 0
    fi
    echo "registry: stopped (would be $URL)"
    return 3
}

main() {
    if (($# != 1)); then
        usage >&2
        exit 2
    fi
    case $1 in
        -h | --help | help) usage ;;
        fetch) cmd_fetch ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        *)
            printf '%s: unknown command: %s\n\n' "$PROG" "$1" >&2
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
