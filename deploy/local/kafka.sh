#!/usr/bin/env bash
# Single-node KRaft Kafka broker for local development (no Docker).
# The broker jars are resolved from Maven Central via kafka-pom.xml and cached
# outside the repository; all runtime state lives under $EBBTIDE_STATE_DIR/kafka.
set -euo pipefail
# The broker's data (every message of every topic, personal data included), its log and its
# settings are for this user only: files 0600, directories 0700, also those the broker makes.
umask 077

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
PROG=$(basename -- "$0")
# shellcheck source=common.sh
. "$SCRIPT_DIR/common.sh"

usage() {
    cat <<EOF
Usage: $PROG <fetch|start|stop|status>

Runs a single-node Apache Kafka broker (KRaft mode, broker+controller) bound
to 127.0.0.1 only, with four listeners:
  PLAINTEXT      \$EBBTIDE_KAFKA_PORT             no authentication: every client is
                 User:ANONYMOUS, a super user of this development broker. The door
                 the pipeline, the demo and the tests use. A production broker must
                 not expose such a listener: anyone who reaches it may do anything.
  SASL_PLAINTEXT \$EBBTIDE_KAFKA_SASL_PORT        SASL/PLAIN users (below); each is
                 User:<name>, allowed only what Kafka ACLs grant it (StandardAuthorizer,
                 nothing without an ACL; 'ebbtide acls apply' grants the pipeline's).
                 User:admin is a super user.
  SASL_SSL       \$EBBTIDE_KAFKA_SASL_SSL_PORT    TLS with the stack's own CA, then SASL
                 SCRAM-SHA-512 (or PLAIN) as the same users, under the same ACLs: the
                 listener a production client connects to (docs/security.md).
  CONTROLLER     \$EBBTIDE_KAFKA_CONTROLLER_PORT  KRaft controller (the broker itself).

SASL users: admin plus \$EBBTIDE_KAFKA_SASL_USERS. Each gets a random password at
the first start that needs it, kept in \$EBBTIDE_STATE_DIR/kafka/sasl-passwords (mode
600, NAME=PASSWORD lines, never printed). On SASL_PLAINTEXT, PLAIN: the users live in
the broker's generated settings, so a state dir formatted by an older kafka.sh gets
them at its next start without reformatting. PLAIN sends the password in clear:
fine on 127.0.0.1; a production SASL listener must be SASL_SSL (TLS), whether its
mechanism is PLAIN or SCRAM. Each user's password is also in a file of its own,
\$EBBTIDE_STATE_DIR/kafka/users/<name> (mode 600): EBBTIDE_KAFKA_SASL_PASSWORD_FILE.

The SASL_SSL listener: at the first start (and when its certificate is less than a
day from expiry) openssl makes a CA and a broker certificate for 127.0.0.1 and
localhost signed by it, under \$EBBTIDE_STATE_DIR/kafka/tls (mode 700, keys 600);
later starts reuse them. Clients trust tls/ca.pem (EBBTIDE_KAFKA_SSL_CAFILE). The
SCRAM-SHA-512 credentials of the SASL users are made with Kafka's own tools and
kept in the broker's metadata: by kafka-storage format --add-scram when the state
dir is new, else (a state dir formatted by an older kafka.sh, a user added since) by
kafka-configs --add-config-file over the PLAINTEXT listener after the start. The
passwords reach either tool in a mode-600 file, never on a command line.

Commands:
  fetch    Download the broker jars (Maven) into the cache, unless already cached.
  start    Fetch if needed, format storage on first use, start the broker in the
           background and wait until it is ready (timeout \${EBBTIDE_KAFKA_START_TIMEOUT:-90}s).
           Succeeds without doing anything if our broker is already running.
  stop     Stop our broker (SIGTERM, SIGKILL after 60 s). Succeeds if not running.
  status   Print running/stopped and the bootstrap addresses (PLAINTEXT, SASL, SASL_SSL).
           Exit status: 0 running, 3 stopped.

Environment (defaults in brackets):
  EBBTIDE_STATE_DIR              [<repo>/.state]  runtime state; Kafka uses ./kafka
  EBBTIDE_KAFKA_PORT             [9092]           client (PLAINTEXT) listener port
  EBBTIDE_KAFKA_CONTROLLER_PORT  [9093]           KRaft controller listener port
  EBBTIDE_KAFKA_SASL_PORT        [9094]           SASL_PLAINTEXT (PLAIN) listener port
  EBBTIDE_KAFKA_SASL_SSL_PORT    [9095]           SASL_SSL (SCRAM-SHA-512, PLAIN) listener port
  EBBTIDE_KAFKA_SASL_USERS       [worker sink clock producer]  SASL users besides admin
                                                  (names: a-z, then a-z 0-9 _ -)
  EBBTIDE_KAFKA_HEAP             [512m]           JVM -Xmx
  EBBTIDE_CACHE_DIR              [\${XDG_CACHE_HOME:-\$HOME/.cache}/ebbtide]  jar cache
  EBBTIDE_KAFKA_START_TIMEOUT    [90]             seconds to wait for readiness
  JAVA_HOME                      [unset]          java from \$JAVA_HOME/bin if set

Files:
  \$EBBTIDE_STATE_DIR/kafka/                   mode 700, and so is everything in it
                                              (umask 077: the data is every message)
  \$EBBTIDE_STATE_DIR/kafka/server.properties  generated on every start (holds the SASL users)
  \$EBBTIDE_STATE_DIR/kafka/sasl-passwords     NAME=PASSWORD per SASL user, mode 600; made
                                              at first start, kept across restarts
  \$EBBTIDE_STATE_DIR/kafka/users/<name>       that user's password alone, mode 600
  \$EBBTIDE_STATE_DIR/kafka/tls/               ca.pem, ca.key, broker.pem, broker.key and
                                              broker-keystore.pem (key + chain), mode 600
  \$EBBTIDE_STATE_DIR/kafka/scram-users        the users whose SCRAM credentials are made
  \$EBBTIDE_STATE_DIR/kafka/kafka.log          broker log (stdout/stderr)
  \$EBBTIDE_STATE_DIR/kafka/kafka.pid          pid of the running broker
  \$EBBTIDE_STATE_DIR/env                      EBBTIDE_KAFKA_BOOTSTRAP (PLAINTEXT) and, for
                                              the secured listeners (not settings of the
                                              pipeline, which stays on PLAINTEXT):
                                              EBBTIDE_LOCAL_KAFKA_SASL_BOOTSTRAP (SASL_PLAINTEXT),
                                              EBBTIDE_LOCAL_KAFKA_SASL_MECHANISM (PLAIN),
                                              EBBTIDE_LOCAL_KAFKA_SASL_PASSWORDS (the file above),
                                              EBBTIDE_LOCAL_KAFKA_SASL_SSL_BOOTSTRAP (SASL_SSL),
                                              EBBTIDE_LOCAL_KAFKA_SSL_CAFILE (tls/ca.pem),
                                              EBBTIDE_LOCAL_KAFKA_USERS_DIR (users/)
EOF
}

info() { printf 'kafka: %s\n' "$*"; }

# ---------------------------------------------------------------- settings
STATE_DIR=$(abspath "${EBBTIDE_STATE_DIR:-$REPO_ROOT/.state}")
KAFKA_PORT=${EBBTIDE_KAFKA_PORT:-9092}
CONTROLLER_PORT=${EBBTIDE_KAFKA_CONTROLLER_PORT:-9093}
SASL_PORT=${EBBTIDE_KAFKA_SASL_PORT:-9094}
SASL_SSL_PORT=${EBBTIDE_KAFKA_SASL_SSL_PORT:-9095}
SASL_USERS_SETTING=${EBBTIDE_KAFKA_SASL_USERS:-worker sink clock producer}
SASL_ADMIN=admin
HEAP=${EBBTIDE_KAFKA_HEAP:-512m}
START_TIMEOUT=${EBBTIDE_KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=60
HOST=127.0.0.1
POM=$SCRIPT_DIR/kafka-pom.xml
LOG4J_CONFIG=$SCRIPT_DIR/log4j2.yaml
# shellcheck source=local-ca.sh
. "$SCRIPT_DIR/local-ca.sh"
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

KAFKA_DIR=$STATE_DIR/kafka
DATA_DIR=$KAFKA_DIR/data
PROPS=$KAFKA_DIR/server.properties
LOG_FILE=$KAFKA_DIR/kafka.log
PID_FILE=$KAFKA_DIR/kafka.pid
PASSWORDS_FILE=$KAFKA_DIR/sasl-passwords
USERS_DIR=$KAFKA_DIR/users
TLS_DIR=$KAFKA_DIR/tls
CA_CERT=$TLS_DIR/ca.pem
KEYSTORE=$TLS_DIR/broker-keystore.pem
SCRAM_DONE=$KAFKA_DIR/scram-users
ENV_FILE=$STATE_DIR/env
READY_MSG='Kafka Server started'

validate_port() { # name value
    if ! [[ $2 =~ ^[0-9]+$ ]] || ((10#$2 < 1 || 10#$2 > 65535)); then
        die "$1 must be a TCP port number (1-65535), got '$2'"
    fi
}

validate_settings() {
    validate_port EBBTIDE_KAFKA_PORT "$KAFKA_PORT"
    validate_port EBBTIDE_KAFKA_CONTROLLER_PORT "$CONTROLLER_PORT"
    validate_port EBBTIDE_KAFKA_SASL_PORT "$SASL_PORT"
    ((10#$KAFKA_PORT != 10#$CONTROLLER_PORT)) ||
        die "EBBTIDE_KAFKA_PORT and EBBTIDE_KAFKA_CONTROLLER_PORT must differ (both are $KAFKA_PORT)"
    ((10#$SASL_PORT != 10#$KAFKA_PORT && 10#$SASL_PORT != 10#$CONTROLLER_PORT)) ||
        die "EBBTIDE_KAFKA_SASL_PORT ($SASL_PORT) must differ from EBBTIDE_KAFKA_PORT and EBBTIDE_KAFKA_CONTROLLER_PORT"
    validate_port EBBTIDE_KAFKA_SASL_SSL_PORT "$SASL_SSL_PORT"
    ((10#$SASL_SSL_PORT != 10#$KAFKA_PORT && 10#$SASL_SSL_PORT != 10#$CONTROLLER_PORT && 10#$SASL_SSL_PORT != 10#$SASL_PORT)) ||
        die "EBBTIDE_KAFKA_SASL_SSL_PORT ($SASL_SSL_PORT) must differ from the other three listener ports"
    # The users' names become JAAS option names (user_<name>="..."): keep them to safe words.
    local user names=()
    IFS=$', \t\n' read -r -a names <<<"$SASL_USERS_SETTING" || true
    SASL_USERS=("$SASL_ADMIN")
    for user in "${names[@]}"; do
        [[ $user =~ ^[a-z][a-z0-9_-]{0,63}$ ]] ||
            die "EBBTIDE_KAFKA_SASL_USERS: '$user' is not a user name (a-z first, then a-z 0-9 _ -; at most 64)"
        [[ " ${SASL_USERS[*]} " == *" $user "* ]] || SASL_USERS+=("$user")
    done
    [[ $HEAP =~ ^[0-9]+[kKmMgG]$ ]] ||
        die "EBBTIDE_KAFKA_HEAP must look like 384m or 1g, got '$HEAP'"
    if ! [[ $START_TIMEOUT =~ ^[0-9]+$ ]] || ((10#$START_TIMEOUT == 0)); then
        die "EBBTIDE_KAFKA_START_TIMEOUT must be a positive number of seconds, got '$START_TIMEOUT'"
    fi
    START_TIMEOUT=$((10#$START_TIMEOUT))
}

kafka_version() {
    [[ -r $POM ]] || die "cannot read $POM"
    local v
    v=$(sed -n 's:.*<kafka\.version>[[:space:]]*\([^<[:space:]]*\)[[:space:]]*</kafka\.version>.*:\1:p' "$POM" | head -n 1)
    [[ -n $v ]] || die "no <kafka.version> property found in $POM"
    printf '%s\n' "$v"
}

cache_paths() {
    local cache_root
    cache_root=$(abspath "${EBBTIDE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:?HOME is not set; set EBBTIDE_CACHE_DIR}/.cache}/ebbtide}")
    VERSION=$(kafka_version)
    KAFKA_HOME=$cache_root/kafka-$VERSION
    LIBS=$KAFKA_HOME/libs
    MARKER=$KAFKA_HOME/libs.complete
}

# ---------------------------------------------------------------- helpers

# env_update KEY VALUE [KEY VALUE ...]: replace only these keys in $ENV_FILE.
# The file is plain KEY=value lines so both bash `source` and make `include` read it.
env_update() {
    ensure_state_dir
    local tmp args=("$@")
    (
        flock -w 30 9 || die "timed out waiting for lock $ENV_FILE.lock"
        tmp=$(mktemp "$ENV_FILE.XXXXXX")
        {
            local i keep
            keep=$(
                [[ -f $ENV_FILE ]] || exit 0
                pattern='^#'
                for ((i = 0; i < ${#args[@]}; i += 2)); do pattern+="|^${args[i]}="; done
                grep -Ev -- "$pattern" "$ENV_FILE" || true
            )
            for ((i = 0; i < ${#args[@]}; i += 2)); do
                keep+=${keep:+$'\n'}${args[i]}=${args[i + 1]}
            done
            printf '# Generated by deploy/local/{postgres,kafka,stack}.sh; plain KEY=value lines\n'
            printf '# (readable by bash "source" and GNU make "include"). Do not edit.\n'
            printf '# EBBTIDE_LOCAL_*: the secured listeners of the local stack (Kafka SASL_PLAINTEXT and\n'
            printf '# SASL_SSL, PostgreSQL TLS; docs/security.md), not settings of Ebbtide processes.\n'
            sort <<<"$keep"
        } >"$tmp"
        chmod 600 "$tmp"
        mv -f -- "$tmp" "$ENV_FILE"
    ) 9>"$ENV_FILE.lock"
}

# env_drop KEY...: remove these keys from $ENV_FILE (settings of a listener that is not there).
env_drop() {
    [[ -f $ENV_FILE ]] || return 0
    local tmp pattern='^(' key
    for key in "$@"; do pattern+="$key|"; done
    pattern="${pattern%|})="
    grep -qE -- "$pattern" "$ENV_FILE" || return 0
    (
        flock -w 30 9 || die "timed out waiting for lock $ENV_FILE.lock"
        tmp=$(mktemp "$ENV_FILE.XXXXXX")
        grep -Ev -- "$pattern" "$ENV_FILE" >"$tmp" || true
        chmod 600 "$tmp"
        mv -f -- "$tmp" "$ENV_FILE"
    ) 9>"$ENV_FILE.lock"
}

# Alive and not a zombie (PID 1 in some containers never reaps orphans).
# True if pid runs kafka.Kafka with exactly our properties file.
is_our_broker() { runs_broker_of "$1" "$PROPS"; }

# Prints the pid of our running broker, or fails. Re-adopts our broker if the
# pid file was lost (only a process whose command line names our own
# server.properties can match, so this never touches anyone else's broker).
running_pid() {
    local pid="" p
    if [[ -f $PID_FILE ]]; then
        pid=$(<"$PID_FILE")
        if [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" && is_our_broker "$pid"; then
            printf '%s\n' "$pid"
            return 0
        fi
    fi
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        if is_our_broker "$p" && pid_alive "$p"; then
            printf '%s\n' "$p" >"$PID_FILE"
            printf 'kafka: re-adopted running broker pid %s (pid file was missing or stale)\n' "$p" >&2
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

# Port configured in the server.properties the running broker was started with.
configured_port() {
    sed -n "s#^listeners=PLAINTEXT://$HOST:\([0-9]*\),.*#\1#p" "$PROPS" 2>/dev/null | head -n 1
}

# Its SASL port; empty for a broker an older kafka.sh started (no SASL listener).
configured_sasl_port() {
    sed -n "s#^listeners=.*SASL_PLAINTEXT://$HOST:\([0-9]*\).*#\1#p" "$PROPS" 2>/dev/null | head -n 1
}

# Its SASL_SSL port; empty for a broker an older kafka.sh started (no SASL_SSL listener).
configured_sasl_ssl_port() {
    sed -n "s#^listeners=.*SASL_SSL://$HOST:\([0-9]*\).*#\1#p" "$PROPS" 2>/dev/null | head -n 1
}

heap_mib() { # 384m -> 384, 1g -> 1024, 512k -> 0
    local n=${HEAP%?} u=${HEAP: -1}
    case $u in
        k | K) echo $((10#$n / 1024)) ;;
        m | M) echo $((10#$n)) ;;
        g | G) echo $((10#$n * 1024)) ;;
    esac
}

check_java() {
    command -v "$JAVA" >/dev/null 2>&1 ||
        die "java not found (need Java 17+; install e.g. openjdk-17-jre-headless or set JAVA_HOME)"
    local spec
    spec=$("$JAVA" -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java\.specification\.version = //p' | head -n 1)
    if ! [[ $spec =~ ^[0-9]+$ ]] || ((spec < 17)); then
        die "Kafka 4.x needs Java 17 or newer; '$JAVA' reports specification version '${spec:-unknown}'"
    fi
}

# ---------------------------------------------------------------- commands
is_fetched() {
    local want
    want=$(sha256sum "$POM" | cut -d ' ' -f 1)
    [[ -f $MARKER && -d $LIBS && $(<"$MARKER") == "$want" ]]
}

cmd_fetch() {
    cache_paths
    if is_fetched; then
        info "jars for Kafka $VERSION already cached in $LIBS"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn (Maven) not found; install it (apt-get install maven)"
    mkdir -p -- "$KAFKA_HOME"
    (
        flock -w 900 8 || die "timed out waiting for another fetch (lock $KAFKA_HOME/.lock)"
        if is_fetched; then # another process finished the fetch while we waited
            exit 0
        fi
        # Leftovers of interrupted fetches; we hold the lock, so none is in progress.
        rm -rf -- "$KAFKA_HOME"/libs.tmp.* "$MARKER"
        tmp=$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")
        trap 'rm -rf -- "$tmp"' EXIT
        info "fetching Kafka $VERSION jars from Maven into $LIBS ..."
        if ! mvn -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
            -DoutputDirectory="$tmp" -DincludeScope=runtime >"$KAFKA_HOME/fetch.log" 2>&1; then
            echo "---- last lines of $KAFKA_HOME/fetch.log ----" >&2
            grep -E '\[(ERROR|WARNING)\]' "$KAFKA_HOME/fetch.log" | tail -n 30 >&2 || true
            die "maven could not fetch the Kafka jars; nothing was cached. Full output: $KAFKA_HOME/fetch.log"
        fi
        [[ -f $tmp/kafka_2.13-$VERSION.jar ]] ||
            die "maven finished but kafka_2.13-$VERSION.jar is missing from the result; nothing was cached"
        chmod 755 "$tmp"
        rm -rf -- "$LIBS"
        mv -- "$tmp" "$LIBS"
        sha256sum "$POM" | cut -d ' ' -f 1 >"$MARKER.tmp"
        mv -f -- "$MARKER.tmp" "$MARKER"
        info "cached $(find "$LIBS" -maxdepth 1 -name '*.jar' | wc -l) jars for Kafka $VERSION"
    ) 8>"$KAFKA_HOME/.lock"
}

# The SASL users' passwords: kept from $PASSWORDS_FILE, a new random one (192 bits, hex) for a
# user that has none. Only this file and server.properties (both 0600) ever hold them.
declare -A SASL_PASSWORD=()
ensure_sasl_passwords() {
    local line name password made=() n=0 tmp
    SASL_PASSWORD=()
    if [[ -e $PASSWORDS_FILE ]]; then
        while IFS= read -r line || [[ -n $line ]]; do
            n=$((n + 1))
            [[ -z $line || $line == \#* ]] && continue
            name=${line%%=*}
            password=${line#*=}
            # Quoted in a JAAS option: the generated alphabet only, no quote or backslash.
            [[ $line == *=* && $name =~ ^[a-z][a-z0-9_-]{0,63}$ && $password =~ ^[A-Za-z0-9]{16,256}$ ]] ||
                die "$PASSWORDS_FILE: line $n is not NAME=PASSWORD (a name of a-z 0-9 _ -, a password of 16 to 256 letters and digits); fix or delete that line"
            SASL_PASSWORD[$name]=$password
        done <"$PASSWORDS_FILE"
    fi
    for name in "${SASL_USERS[@]}"; do
        if [[ -z ${SASL_PASSWORD[$name]:-} ]]; then
            SASL_PASSWORD[$name]=$(od -An -v -tx1 -N24 /dev/urandom | tr -d ' \n')
            [[ ${SASL_PASSWORD[$name]} =~ ^[0-9a-f]{48}$ ]] || die "could not read 24 random bytes from /dev/urandom"
            made+=("$name")
        fi
    done
    ((${#made[@]})) || {
        chmod 600 -- "$PASSWORDS_FILE"
        write_user_files
        return 0
    }
    tmp=$(mktemp "$PASSWORDS_FILE.XXXXXX")
    {
        printf '# SASL/PLAIN users of the broker deploy/local/kafka.sh runs: NAME=PASSWORD (mode 600).\n'
        printf '# Made by kafka.sh; a user listed here keeps its password across restarts.\n'
        for name in $(printf '%s\n' "${!SASL_PASSWORD[@]}" | sort); do
            printf '%s=%s\n' "$name" "${SASL_PASSWORD[$name]}"
        done
    } >"$tmp"
    chmod 600 -- "$tmp"
    mv -f -- "$tmp" "$PASSWORDS_FILE"
    info "made a password for SASL user(s) ${made[*]} in $PASSWORDS_FILE"
    write_user_files
}

# users/<name>: each user's password alone (what EBBTIDE_KAFKA_SASL_PASSWORD_FILE names), 0600.
write_user_files() {
    local name
    mkdir -p -- "$USERS_DIR"
    chmod 700 -- "$USERS_DIR"
    for name in "${SASL_USERS[@]}"; do
        if [[ ! -f $USERS_DIR/$name || $(<"$USERS_DIR/$name") != "${SASL_PASSWORD[$name]}" ]]; then
            printf '%s\n' "${SASL_PASSWORD[$name]}" >"$USERS_DIR/$name.tmp"
            chmod 600 -- "$USERS_DIR/$name.tmp"
            mv -f -- "$USERS_DIR/$name.tmp" "$USERS_DIR/$name"
        fi
    done
}

# The SASL_SSL listener's CA and broker certificate (for 127.0.0.1 and localhost), made with
# openssl at the first start and again only when the broker's is within a day of expiring.
ensure_tls() {
    if [[ -f $KEYSTORE && -f $CA_CERT ]] && tls_current "$TLS_DIR/broker.pem"; then
        return 0
    fi
    mkdir -p -- "$TLS_DIR"
    chmod 700 -- "$TLS_DIR"
    local out
    out=$(tls_make "$TLS_DIR" "$CA_CERT" "Ebbtide local development CA" broker) ||
        die "openssl could not make the SASL_SSL listener's certificates:"$'\n'"$out"
    cat -- "$TLS_DIR/broker.key" "$TLS_DIR/broker.pem" "$CA_CERT" >"$KEYSTORE"
    chmod 600 -- "$TLS_DIR"/*
    info "made a CA and a broker certificate for the SASL_SSL listener in $TLS_DIR"
}

# The JAAS entry of the SASL listener: one user_<name>="<password>" option per user of
# $EBBTIDE_KAFKA_SASL_USERS (and admin); users only in the passwords file are not let in.
plain_jaas() {
    local name out='org.apache.kafka.common.security.plain.PlainLoginModule required'
    for name in "${SASL_USERS[@]}"; do
        out+=" user_$name=\"${SASL_PASSWORD[$name]}\""
    done
    printf '%s;\n' "$out"
}

write_properties() {
    local tmp
    tmp=$(mktemp "$PROPS.XXXXXX")
    cat >"$tmp" <<EOF
# Generated by deploy/local/kafka.sh on every start; edits will be overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT,SASL_PLAINTEXT://$HOST:$SASL_PORT,SASL_SSL://$HOST:$SASL_SSL_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT,SASL_PLAINTEXT://$HOST:$SASL_PORT,SASL_SSL://$HOST:$SASL_SSL_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=PLAINTEXT
# Kafka ACLs (KRaft's StandardAuthorizer): a principal may do only what an ACL allows it.
# PLAINTEXT and CONTROLLER clients are User:ANONYMOUS (the broker itself, and every client of the
# unauthenticated development listener): a super user here, which no production broker may have.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:$SASL_ADMIN
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=$(plain_jaas)
# SASL_SSL: TLS with the stack's own CA (tls/), then SCRAM-SHA-512 (credentials in the metadata
# log, made by kafka-configs) or PLAIN (the same users and passwords as above).
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=$(plain_jaas)
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$KEYSTORE
log.dirs=$DATA_DIR
num.partitions=4
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
    chmod 600 "$tmp"
    mv -f -- "$tmp" "$PROPS"
}

# A new state dir is formatted with the SCRAM-SHA-512 credentials of every SASL user (storage
# tool --add-scram), so its first start runs no kafka-configs. The tool's arguments, passwords
# included, go in a mode-600 argument file (java @file), never on a command line.
format_storage() {
    [[ -f $DATA_DIR/meta.properties ]] && return 0
    local cluster_id out args name
    # A cluster id as Kafka makes one (kafka-storage random-uuid): 16 random bytes, URL-safe
    # base64 without padding, not starting with '-'; here without a JVM of its own.
    cluster_id=-
    while [[ $cluster_id == -* ]]; do
        cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    [[ $cluster_id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "could not make a cluster id from /dev/urandom"
    info "formatting storage in $DATA_DIR (cluster id $cluster_id)"
    args=$(mktemp "$KAFKA_DIR/.format-args.XXXXXX")
    {
        printf '%s\n' kafka.tools.StorageTool format -t "$cluster_id" -c "\"$PROPS\""
        for name in "${SASL_USERS[@]}"; do
            printf -- '--add-scram\n"SCRAM-SHA-512=[name=%s,password=%s]"\n' "$name" "${SASL_PASSWORD[$name]}"
        done
    } >"$args"
    out=$("$JAVA" -Dlog4j2.configurationFile="$LOG4J_CONFIG" -cp "$LIBS/*" "@$args" 2>&1) || {
        rm -f -- "$args"
        die "formatting Kafka storage in $DATA_DIR failed:"$'\n'"$out"
    }
    rm -f -- "$args"
    : >"$SCRAM_DONE"
    for name in "${SASL_USERS[@]}"; do
        scram_done "$name"
    done
}

# scram_done NAME: record in $SCRAM_DONE that NAME's SCRAM credentials hold its current password.
scram_done() {
    local digest done_list=""
    digest=$(printf '%s' "${SASL_PASSWORD[$1]}" | sha256sum | cut -d ' ' -f 1)
    [[ -f $SCRAM_DONE ]] && done_list=$(grep -v -- "^$1 " "$SCRAM_DONE" || true)
    done_list+=${done_list:+$'\n'}"$1 $digest"
    printf '%s\n' "$done_list" >"$SCRAM_DONE"
}

wait_ready() { # pid log_offset
    local pid=$1 offset=$2 deadline
    deadline=$(($(now_ms) + START_TIMEOUT * 1000))
    while :; do
        if ! pid_alive "$pid"; then
            rm -f -- "$PID_FILE"
            echo "---- last lines of $LOG_FILE ----" >&2
            tail -c +"$((offset + 1))" "$LOG_FILE" | tail -n 30 >&2 || true
            die "Kafka broker (pid $pid) exited during startup; see $LOG_FILE"
        fi
        if grep -qF -- "$READY_MSG" <(tail -c +"$((offset + 1))" "$LOG_FILE") &&
            port_open "$KAFKA_PORT" && port_open "$SASL_PORT" && port_open "$SASL_SSL_PORT"; then
            return 0
        fi
        if (($(now_ms) >= deadline)); then
            echo "---- last lines of $LOG_FILE ----" >&2
            tail -c +"$((offset + 1))" "$LOG_FILE" | tail -n 30 >&2 || true
            stop_pid "$pid" >&2 || true
            die "Kafka broker did not become ready on $HOST:$KAFKA_PORT, :$SASL_PORT and :$SASL_SSL_PORT within" \
                "${START_TIMEOUT}s (no '$READY_MSG' line and/or a port closed); it was stopped. See $LOG_FILE"
        fi
        sleep 0.25 # poll interval, not a readiness guess
    done
}

# What an older version made with the default umask becomes private (also under a running
# broker): the broker's new files are, by the umask; older ones stay behind 0700 directories.
private_files() {
    local f
    for f in "$KAFKA_DIR" "$DATA_DIR" "$TLS_DIR" "$USERS_DIR"; do
        [[ -d $f ]] && chmod 700 -- "$f"
    done
    for f in "$LOG_FILE" "$LOG_FILE.1" "$PID_FILE" "$PROPS" "$PASSWORDS_FILE" "$SCRAM_DONE"; do
        [[ -e $f ]] && chmod 600 -- "$f"
    done
    return 0
}

cmd_start() {
    validate_settings
    ensure_state_dir
    mkdir -p -- "$KAFKA_DIR"
    private_files
    (
        # Serialise concurrent start/stop invocations on the same state dir.
        flock -w 120 7 || die "timed out waiting for lock $KAFKA_DIR/.lock"
        start_locked
    ) 7>"$KAFKA_DIR/.lock"
}

# The settings clients read from $ENV_FILE: both listeners, and where the SASL passwords are.
# They are EBBTIDE_LOCAL_*, not settings of Ebbtide's processes (EBBTIDE_KAFKA_SASL_MECHANISM is
# one): sourcing the env file leaves the pipeline on PLAINTEXT. Older kafka.sh versions wrote
# EBBTIDE_KAFKA_SASL_*; those lines are dropped.
SASL_ENV_KEYS=(EBBTIDE_LOCAL_KAFKA_SASL_BOOTSTRAP EBBTIDE_LOCAL_KAFKA_SASL_MECHANISM
    EBBTIDE_LOCAL_KAFKA_SASL_PASSWORDS EBBTIDE_LOCAL_KAFKA_USERS_DIR)
SASL_SSL_ENV_KEYS=(EBBTIDE_LOCAL_KAFKA_SASL_SSL_BOOTSTRAP EBBTIDE_LOCAL_KAFKA_SSL_CAFILE)
OLD_ENV_KEYS=(EBBTIDE_KAFKA_SASL_BOOTSTRAP EBBTIDE_KAFKA_SASL_MECHANISM EBBTIDE_KAFKA_SASL_PASSWORDS)
env_write_bootstrap() {
    env_drop "${OLD_ENV_KEYS[@]}"
    env_update EBBTIDE_KAFKA_BOOTSTRAP "$HOST:$KAFKA_PORT" \
        EBBTIDE_LOCAL_KAFKA_SASL_BOOTSTRAP "$HOST:$SASL_PORT" \
        EBBTIDE_LOCAL_KAFKA_SASL_MECHANISM PLAIN \
        EBBTIDE_LOCAL_KAFKA_SASL_PASSWORDS "$PASSWORDS_FILE" \
        EBBTIDE_LOCAL_KAFKA_USERS_DIR "$USERS_DIR" \
        EBBTIDE_LOCAL_KAFKA_SASL_SSL_BOOTSTRAP "$HOST:$SASL_SSL_PORT" \
        EBBTIDE_LOCAL_KAFKA_SSL_CAFILE "$CA_CERT" \
        EBBTIDE_TOPIC_REPLICATION_FACTOR 1 EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS 1 # one broker: 1 copy
}

# SCRAM-SHA-512 credentials for the SASL users that have none yet (or whose password changed)
# on a broker formatted without them (by an older kafka.sh, or users added since): kafka-configs
# over the PLAINTEXT listener, the password in a mode-600 file. $SCRAM_DONE keeps NAME
# SHA256(PASSWORD) per user done, so a later start runs no tool (a JVM takes seconds).
ensure_scram_users() {
    local name digest tmp out
    for name in "${SASL_USERS[@]}"; do
        digest=$(printf '%s' "${SASL_PASSWORD[$name]}" | sha256sum | cut -d ' ' -f 1)
        [[ -f $SCRAM_DONE ]] && grep -qxF -- "$name $digest" "$SCRAM_DONE" && continue
        tmp=$(mktemp "$KAFKA_DIR/.scram.XXXXXX")
        printf 'SCRAM-SHA-512=password=%s\n' "${SASL_PASSWORD[$name]}" >"$tmp"
        out=$("$JAVA" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j2.configurationFile="$LOG4J_CONFIG" \
            -cp "$LIBS/*" kafka.admin.ConfigCommand --bootstrap-server "$HOST:$KAFKA_PORT" --alter \
            --entity-type users --entity-name "$name" --add-config-file "$tmp" 2>&1) || {
            rm -f -- "$tmp"
            die "kafka-configs could not make the SCRAM-SHA-512 credentials of user $name:"$'\n'"$out"
        }
        rm -f -- "$tmp"
        scram_done "$name"
        info "made the SCRAM-SHA-512 credentials of SASL user $name"
    done
}

start_locked() {
    local pid running_port running_sasl running_ssl
    if pid=$(running_pid); then
        running_port=$(configured_port)
        if [[ -n $running_port && $running_port != "$KAFKA_PORT" ]]; then
            die "our broker (pid $pid) is already running on $HOST:$running_port, but EBBTIDE_KAFKA_PORT=$KAFKA_PORT; run '$PROG stop' first"
        fi
        port_open "$KAFKA_PORT" ||
            die "our broker (pid $pid) is running but $HOST:$KAFKA_PORT does not accept connections; see $LOG_FILE"
        running_sasl=$(configured_sasl_port)
        if [[ -z $running_sasl ]]; then
            # Started by an older kafka.sh: it keeps running as it is (others may be using it).
            info "already running (pid $pid), bootstrap $HOST:$KAFKA_PORT; it has no SASL listener" \
                "(an older kafka.sh started it): '$PROG stop' and '$PROG start' to add one"
            env_update EBBTIDE_KAFKA_BOOTSTRAP "$HOST:$KAFKA_PORT" \
                EBBTIDE_TOPIC_REPLICATION_FACTOR 1 EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS 1
            env_drop "${SASL_ENV_KEYS[@]}" "${SASL_SSL_ENV_KEYS[@]}" "${OLD_ENV_KEYS[@]}"
            return 0
        fi
        if [[ $running_sasl != "$SASL_PORT" ]]; then
            die "our broker (pid $pid) has its SASL listener on $HOST:$running_sasl, but EBBTIDE_KAFKA_SASL_PORT=$SASL_PORT; run '$PROG stop' first"
        fi
        running_ssl=$(configured_sasl_ssl_port)
        if [[ -z $running_ssl ]]; then
            info "already running (pid $pid), bootstrap $HOST:$KAFKA_PORT, SASL $HOST:$SASL_PORT; it has no" \
                "SASL_SSL listener (an older kafka.sh started it): '$PROG stop' and '$PROG start' to add one"
            env_write_bootstrap
            env_drop "${SASL_SSL_ENV_KEYS[@]}"
            return 0
        fi
        if [[ $running_ssl != "$SASL_SSL_PORT" ]]; then
            die "our broker (pid $pid) has its SASL_SSL listener on $HOST:$running_ssl, but EBBTIDE_KAFKA_SASL_SSL_PORT=$SASL_SSL_PORT; run '$PROG stop' first"
        fi
        cache_paths
        ensure_sasl_passwords
        ensure_scram_users # a no-op unless an earlier start stopped before making them
        info "already running (pid $pid), bootstrap $HOST:$KAFKA_PORT, SASL $HOST:$SASL_PORT, SASL_SSL $HOST:$SASL_SSL_PORT"
        env_write_bootstrap
        return 0
    fi
    rm -f -- "$PID_FILE"

    local p
    for p in "$KAFKA_PORT" "$CONTROLLER_PORT" "$SASL_PORT" "$SASL_SSL_PORT"; do
        if port_open "$p"; then
            die "port $HOST:$p is already in use by another process (not our broker);" \
                "stop it or choose other ports via EBBTIDE_KAFKA_PORT / EBBTIDE_KAFKA_CONTROLLER_PORT / EBBTIDE_KAFKA_SASL_PORT / EBBTIDE_KAFKA_SASL_SSL_PORT"
        fi
    done
    [[ -r $LOG4J_CONFIG ]] || die "missing log4j config $LOG4J_CONFIG"

    cache_paths
    is_fetched || cmd_fetch
    is_fetched || die "Kafka jars are not cached in $LIBS after fetch"
    check_java

    mkdir -p -- "$DATA_DIR"
    private_files
    ensure_sasl_passwords
    ensure_tls
    write_properties
    format_storage

    # Keep the log from growing without bound across restarts.
    if [[ -f $LOG_FILE ]] && (($(stat -c %s "$LOG_FILE") > 20 * 1024 * 1024)); then
        mv -f -- "$LOG_FILE" "$LOG_FILE.1"
    fi
    local offset xmx_mib xms
    xmx_mib=$(heap_mib)
    xms=128m
    ((xmx_mib < 128)) && xms=$HEAP

    local start=$SECONDS
    printf '\n==== %s kafka.sh start (port %s, controller %s, SASL %s, SASL_SSL %s) ====\n' \
        "$(date '+%F %T')" "$KAFKA_PORT" "$CONTROLLER_PORT" "$SASL_PORT" "$SASL_SSL_PORT" >>"$LOG_FILE"
    offset=$(stat -c %s "$LOG_FILE")
    rm -f -- "$PID_FILE.new"
    # setsid -f: new session, no controlling terminal, reparented to init, so the
    # broker survives the calling shell. The inner shell records its own pid and
    # then execs java, so the recorded pid is the JVM's. fd 7 (our start/stop
    # lock) is closed so the broker does not hold the lock for its lifetime.
    # shellcheck disable=SC2016 # $$, $0 and $@ are expanded by the inner bash
    (
        cd -- "$KAFKA_DIR"
        setsid -f bash -c 'echo $$ >"$0.new" && mv -f "$0.new" "$0" && exec "$@"' "$PID_FILE" \
            "$JAVA" "-Xmx$HEAP" "-Xms$xms" -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
            -Djava.awt.headless=true "-Dlog4j2.configurationFile=$LOG4J_CONFIG" \
            -cp "$LIBS/*" kafka.Kafka "$PROPS" \
            </dev/null >>"$LOG_FILE" 2>&1 7>&-
    )
    local deadline
    deadline=$(($(now_ms) + 10000))
    until [[ -s $PID_FILE ]]; do
        (($(now_ms) < deadline)) || die "broker process did not record its pid in $PID_FILE; see $LOG_FILE"
        sleep 0.05
    done
    pid=$(<"$PID_FILE")
    info "starting (pid $pid), waiting up to ${START_TIMEOUT}s for readiness; log: $LOG_FILE"
    wait_ready "$pid" "$offset"
    ensure_scram_users
    info "started (pid $pid) in $((SECONDS - start))s, bootstrap $HOST:$KAFKA_PORT, SASL $HOST:$SASL_PORT, SASL_SSL $HOST:$SASL_SSL_PORT"
    env_write_bootstrap
}


cmd_stop() {
    [[ -d $KAFKA_DIR ]] || return 0
    (
        flock -w 120 7 || die "timed out waiting for lock $KAFKA_DIR/.lock"
        local pid
        if ! pid=$(running_pid); then
            rm -f -- "$PID_FILE"
            exit 0
        fi
        info "stopping (pid $pid) ..."
        stop_pid "$pid"
        info "stopped"
    ) 7>"$KAFKA_DIR/.lock"
}

cmd_status() {
    local pid port sasl ssl
    if [[ -d $KAFKA_DIR ]] && pid=$(running_pid); then
        port=$(configured_port)
        port=${port:-$KAFKA_PORT}
        sasl=$(configured_sasl_port)
        sasl=${sasl:+, SASL $HOST:$sasl}
        ssl=$(configured_sasl_ssl_port)
        [[ -z $sasl ]] || sasl+=${ssl:+, SASL_SSL $HOST:$ssl}
        if port_open "$port"; then
            echo "kafka: running (pid $pid), bootstrap $HOST:$port${sasl:-, no SASL listener (started by an older kafka.sh)}"
        else
            echo "kafka: running (pid $pid) but $HOST:$port is not accepting connections yet; log: $LOG_FILE"
        fi
        return 0
    fi
    echo "kafka: stopped (bootstrap would be $HOST:$KAFKA_PORT, SASL $HOST:$SASL_PORT, SASL_SSL $HOST:$SASL_SSL_PORT)"
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
