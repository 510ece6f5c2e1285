#!/usr/bin/env bash
# A local 3-broker KRaft Kafka cluster on 127.0.0.1 (no Docker): each node is broker and
# controller, the three form the controller quorum. It runs the jars deploy/local/kafka.sh
# fetches (`kafka.sh fetch`); all runtime state lives under $EBBTIDE_STATE_DIR/kafka-cluster.
set -euo pipefail
# Every message of every topic is in the brokers' data: this user's only (as kafka.sh does).
umask 077

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
PROG=$(basename -- "$0")
# shellcheck source=common.sh
. "$SCRIPT_DIR/common.sh"

usage() {
    cat <<EOF
Usage: $PROG <start|stop|kill> [NODE...] | $PROG status

Runs a KRaft Kafka cluster of three nodes (node ids 1 2 3), each a broker and a
controller (a 3-voter quorum), bound to 127.0.0.1 only, for trying Ebbtide on a
real cluster and for the failover test. One PLAINTEXT listener per node, no
authentication and no ACLs: a development cluster, not a production one.

Durability settings of the cluster: default.replication.factor=3 and
min.insync.replicas=2 (also for the consumer offsets and transaction state), so a
topic created without its own settings survives the loss of one node. Failover is
quick on loopback: a node that stops heart-beating is fenced after 6 s.

Commands:
  start [NODE...]  Fetch the jars if needed (kafka.sh fetch), format each node's
                   storage on first use, start the nodes (all by default) in the
                   background and wait until each is ready (timeout
                   \${EBBTIDE_KAFKA_START_TIMEOUT:-120}s; a first start of the whole
                   cluster needs two of the three nodes up to form the quorum).
                   A node already running is left as it is.
  stop [NODE...]   Stop the nodes (all by default): SIGTERM, SIGKILL after
                   \${EBBTIDE_KAFKA_STOP_TIMEOUT:-60}s. Succeeds if none is running.
  kill [NODE...]   SIGKILL the nodes (all by default), as a crashed machine would
                   leave them, and wait until they are gone; their data stays.
  status           One line per node; exit status 0 if every node runs, 3 if not.

Environment (defaults in brackets):
  EBBTIDE_STATE_DIR                      [<repo>/.state]  state in ./kafka-cluster
  EBBTIDE_KAFKA_CLUSTER_PORTS            [9192 9292 9392]  client ports of nodes 1 2 3
  EBBTIDE_KAFKA_CLUSTER_CONTROLLER_PORTS [9193 9293 9393]  controller ports of nodes 1 2 3
  EBBTIDE_KAFKA_HEAP                     [384m]  JVM -Xmx of each node
  EBBTIDE_KAFKA_START_TIMEOUT            [120]   seconds to wait for readiness
  EBBTIDE_KAFKA_STOP_TIMEOUT             [60]    seconds from SIGTERM to SIGKILL
  EBBTIDE_CACHE_DIR, JAVA_HOME           as for kafka.sh (where its jars are cached)

Files (under \$EBBTIDE_STATE_DIR/kafka-cluster, mode 700):
  env                       EBBTIDE_KAFKA_BOOTSTRAP of the cluster (all three nodes) and
                            EBBTIDE_TOPIC_REPLICATION_FACTOR=3, _MIN_INSYNC_REPLICAS=2;
                            'set -a; . FILE; set +a' points Ebbtide's clients at it
  node-N/server.properties  generated on every start of node N
  node-N/kafka.log          its log; node-N/kafka.pid its pid while it runs
EOF
}

info() { printf 'kafka-cluster: %s\n' "$*"; }

# ---------------------------------------------------------------- settings
STATE_DIR=$(abspath "${EBBTIDE_STATE_DIR:-$REPO_ROOT/.state}")
CLUSTER_DIR=$STATE_DIR/kafka-cluster
ENV_FILE=$CLUSTER_DIR/env
HEAP=${EBBTIDE_KAFKA_HEAP:-384m}
START_TIMEOUT=${EBBTIDE_KAFKA_START_TIMEOUT:-120}
STOP_TIMEOUT=${EBBTIDE_KAFKA_STOP_TIMEOUT:-60}
HOST=127.0.0.1
NODES=(1 2 3)
POM=$SCRIPT_DIR/kafka-pom.xml
LOG4J_CONFIG=$SCRIPT_DIR/log4j2.yaml
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
READY_MSG='Kafka Server started'

read_ports() { # setting-name value -> PORTS_READ
    local port
    IFS=$', \t\n' read -r -a PORTS_READ <<<"$2" || true
    ((${#PORTS_READ[@]} == ${#NODES[@]})) ||
        die "$1 must list ${#NODES[@]} ports (one per node), got '$2'"
    for port in "${PORTS_READ[@]}"; do
        if ! [[ $port =~ ^[0-9]+$ ]] || ((10#$port < 1 || 10#$port > 65535)); then
            die "$1: '$port' is not a TCP port number (1-65535)"
        fi
    done
}

validate_settings() {
    read_ports EBBTIDE_KAFKA_CLUSTER_PORTS "${EBBTIDE_KAFKA_CLUSTER_PORTS:-9192 9292 9392}"
    CLIENT_PORTS=("${PORTS_READ[@]}")
    read_ports EBBTIDE_KAFKA_CLUSTER_CONTROLLER_PORTS "${EBBTIDE_KAFKA_CLUSTER_CONTROLLER_PORTS:-9193 9293 9393}"
    CONTROLLER_PORTS=("${PORTS_READ[@]}")
    local all
    all=$(printf '%s\n' "${CLIENT_PORTS[@]}" "${CONTROLLER_PORTS[@]}" | sed 's/^0*//' | sort | uniq -d)
    [[ -z $all ]] || die "EBBTIDE_KAFKA_CLUSTER_PORTS and EBBTIDE_KAFKA_CLUSTER_CONTROLLER_PORTS" \
        "must be six different ports; repeated: $(echo $all)"
    [[ $HEAP =~ ^[0-9]+[kKmMgG]$ ]] || die "EBBTIDE_KAFKA_HEAP must look like 384m or 1g, got '$HEAP'"
    if ! [[ $START_TIMEOUT =~ ^[0-9]+$ ]] || ((10#$START_TIMEOUT == 0)); then
        die "EBBTIDE_KAFKA_START_TIMEOUT must be a positive number of seconds, got '$START_TIMEOUT'"
    fi
    if ! [[ $STOP_TIMEOUT =~ ^[0-9]+$ ]]; then
        die "EBBTIDE_KAFKA_STOP_TIMEOUT must be a number of seconds, got '$STOP_TIMEOUT'"
    fi
    START_TIMEOUT=$((10#$START_TIMEOUT))
    STOP_TIMEOUT=$((10#$STOP_TIMEOUT))
}

# The node arguments of a command (all nodes if none), each checked.
pick_nodes() {
    PICKED=()
    (($#)) || set -- "${NODES[@]}"
    local node
    for node in "$@"; do
        [[ " ${NODES[*]} " == *" $node "* ]] || die "no node '$node' (the nodes are ${NODES[*]})"
        [[ " ${PICKED[*]} " == *" $node "* ]] || PICKED+=("$node")
    done
}

node_dir() { printf '%s/node-%s\n' "$CLUSTER_DIR" "$1"; }
pid_file() { printf '%s/kafka.pid\n' "$(node_dir "$1")"; }
props_file() { printf '%s/server.properties\n' "$(node_dir "$1")"; }
log_file() { printf '%s/kafka.log\n' "$(node_dir "$1")"; }

# The jars: kafka.sh fetches them into its cache; this is the directory it uses (same pom,
# same cache root), and its marker says the fetch was complete.
libs_dir() {
    local cache_root version
    cache_root=$(abspath "${EBBTIDE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:?HOME is not set; set EBBTIDE_CACHE_DIR}/.cache}/ebbtide}")
    version=$(sed -n 's:.*<kafka\.version>[[:space:]]*\([^<[:space:]]*\)[[:space:]]*</kafka\.version>.*:\1:p' "$POM" | head -n 1)
    [[ -n $version ]] || die "no <kafka.version> property found in $POM"
    LIBS=$cache_root/kafka-$version/libs
    "$SCRIPT_DIR/kafka.sh" fetch >/dev/null || die "kafka.sh fetch failed (see above)"
    [[ -f $cache_root/kafka-$version/libs.complete && -d $LIBS ]] ||
        die "the Kafka $version jars are not in $LIBS after 'kafka.sh fetch'"
}

# True if pid runs kafka.Kafka with node N's properties file (never anyone else's broker).
is_node() { runs_broker_of "$1" "$(props_file "$2")"; } # pid node

running_pid() { # node: prints its pid, or fails
    local file pid
    file=$(pid_file "$1")
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" && is_node "$pid" "$1" || return 1
    printf '%s\n' "$pid"
}

bootstrap() {
    local i out=""
    for i in "${!NODES[@]}"; do out+=${out:+,}$HOST:${CLIENT_PORTS[i]}; done
    printf '%s\n' "$out"
}

write_properties() { # node
    local node=$1 i voters="" tmp props
    for i in "${!NODES[@]}"; do voters+=${voters:+,}${NODES[i]}@$HOST:${CONTROLLER_PORTS[i]}; done
    i=$((node - 1))
    props=$(props_file "$node")
    tmp=$(mktemp "$props.XXXXXX")
    cat >"$tmp" <<EOF
# Generated by deploy/local/kafka-cluster.sh on every start of this node; edits are overwritten.
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:${CLIENT_PORTS[i]},CONTROLLER://$HOST:${CONTROLLER_PORTS[i]}
advertised.listeners=PLAINTEXT://$HOST:${CLIENT_PORTS[i]}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$(node_dir "$node")/data
num.partitions=4
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
# Quick failover on loopback: a node silent for 6 s is fenced and its partitions move.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
# Three JVMs on a laptop: few threads each.
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
EOF
    chmod 600 "$tmp"
    mv -f -- "$tmp" "$props"
}

# A cluster id as Kafka's own `random-uuid` makes it (16 random bytes, base64url without padding,
# not starting with '-'), without a JVM start of its own.
new_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
        [[ $id =~ ^[A-Za-z0-9_][A-Za-z0-9_-]{21}$ ]] && break
    done
    printf '%s\n' "$id"
}

# The storage of each node not formatted yet, with the cluster's one id (made at the first
# start), all at once (each format is a JVM start).
format_storage() { # node...
    local node data
    local -A formats=()
    [[ -s $CLUSTER_DIR/cluster-id ]] || new_cluster_id >"$CLUSTER_DIR/cluster-id"
    for node in "$@"; do
        data=$(node_dir "$node")/data
        [[ -f $data/meta.properties ]] && continue
        "$JAVA" -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$LOG4J_CONFIG" -cp "$LIBS/*" \
            kafka.tools.StorageTool format -t "$(<"$CLUSTER_DIR/cluster-id")" -c "$(props_file "$node")" \
            >"$(node_dir "$node")/format.log" 2>&1 &
        formats[$node]=$!
    done
    for node in "${!formats[@]}"; do
        wait "${formats[$node]}" || die "formatting node $node's storage failed:"$'\n'"$(<"$(node_dir "$node")/format.log")"
    done
}

launch() { # node: start the JVM in the background; prints the log offset its start begins at
    local node=$1 dir log pid_path offset deadline
    dir=$(node_dir "$node")
    log=$(log_file "$node")
    pid_path=$(pid_file "$node")
    printf '\n==== %s kafka-cluster.sh start node %s ====\n' "$(date '+%F %T')" "$node" >>"$log"
    offset=$(stat -c %s "$log")
    rm -f -- "$pid_path" "$pid_path.new"
    # As kafka.sh: a new session (the node outlives this shell); the inner shell records its own
    # pid and execs java, so the pid file holds the JVM's. C1 only (TieredStopAtLevel=1): three
    # JVMs start much sooner on two cores, and a development broker needs no peak throughput.
    # shellcheck disable=SC2016 # $$, $0 and $@ are expanded by the inner bash
    (
        cd -- "$dir"
        setsid -f bash -c 'echo $$ >"$0.new" && mv -f "$0.new" "$0" && exec "$@"' "$pid_path" \
            "$JAVA" "-Xmx$HEAP" -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
            -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
            "-Dlog4j2.configurationFile=$LOG4J_CONFIG" -cp "$LIBS/*" kafka.Kafka "$(props_file "$node")" \
            </dev/null >>"$log" 2>&1 7>&-
    )
    deadline=$(($(now_ms) + 10000))
    until [[ -s $pid_path ]]; do
        (($(now_ms) < deadline)) || die "node $node did not record its pid in $pid_path; see $log"
        sleep 0.05
    done
    printf '%s\n' "$offset"
}

wait_ready() { # node pid log_offset deadline_ms
    local node=$1 pid=$2 offset=$3 deadline=$4 log
    log=$(log_file "$node")
    while :; do
        if ! pid_alive "$pid"; then
            tail -c +"$((offset + 1))" "$log" | tail -n 20 >&2 || true
            die "node $node (pid $pid) exited during startup; see $log"
        fi
        if grep -qF -- "$READY_MSG" <(tail -c +"$((offset + 1))" "$log") &&
            port_open "${CLIENT_PORTS[node - 1]}"; then
            return 0
        fi
        if (($(now_ms) >= deadline)); then
            tail -c +"$((offset + 1))" "$log" | tail -n 20 >&2 || true
            die "node $node (pid $pid) not ready within ${START_TIMEOUT}s (no '$READY_MSG' line" \
                "or port ${CLIENT_PORTS[node - 1]} closed); it is still running: '$PROG stop'. See $log"
        fi
        sleep 0.25 # poll interval, not a readiness guess
    done
}

cmd_start() {
    pick_nodes "$@"
    mkdir -p -- "$CLUSTER_DIR"
    chmod 700 -- "$CLUSTER_DIR"
    (
        flock -w 120 7 || die "timed out waiting for lock $CLUSTER_DIR/.lock"
        start_locked
    ) 7>"$CLUSTER_DIR/.lock"
}

start_locked() {
    local node pid port i begin=$SECONDS deadline
    local -A offsets=() pids=()
    for node in "${PICKED[@]}"; do
        if pid=$(running_pid "$node"); then
            info "node $node already running (pid $pid)"
            continue
        fi
        i=$((node - 1))
        for port in "${CLIENT_PORTS[i]}" "${CONTROLLER_PORTS[i]}"; do
            ! port_open "$port" || die "port $HOST:$port of node $node is in use by another process;" \
                "choose others with EBBTIDE_KAFKA_CLUSTER_PORTS / EBBTIDE_KAFKA_CLUSTER_CONTROLLER_PORTS"
        done
        offsets[$node]=start
    done
    ((${#offsets[@]})) || {
        write_env
        return 0
    }
    [[ -r $LOG4J_CONFIG ]] || die "missing log4j config $LOG4J_CONFIG"
    libs_dir
    for node in "${!offsets[@]}"; do
        mkdir -p -- "$(node_dir "$node")/data"
        write_properties "$node"
    done
    format_storage "${!offsets[@]}"
    for node in "${!offsets[@]}"; do
        offsets[$node]=$(launch "$node")
        pids[$node]=$(<"$(pid_file "$node")")
        info "node $node starting (pid ${pids[$node]}, port ${CLIENT_PORTS[node - 1]}); log: $(log_file "$node")"
    done
    deadline=$(($(now_ms) + START_TIMEOUT * 1000))
    for node in "${!offsets[@]}"; do
        wait_ready "$node" "${pids[$node]}" "${offsets[$node]}" "$deadline"
    done
    info "started node(s) $(printf '%s\n' "${!offsets[@]}" | sort | xargs) in $((SECONDS - begin))s;" \
        "bootstrap $(bootstrap)"
    write_env
}

write_env() {
    local tmp
    tmp=$(mktemp "$ENV_FILE.XXXXXX")
    printf '# Generated by deploy/local/kafka-cluster.sh: the cluster'"'"'s bootstrap addresses.\n' >"$tmp"
    printf 'EBBTIDE_KAFKA_BOOTSTRAP=%s\n' "$(bootstrap)" >>"$tmp"
    # the production values (over the single-node stack's 1/1 if its env was sourced first)
    printf 'EBBTIDE_TOPIC_REPLICATION_FACTOR=3\nEBBTIDE_TOPIC_MIN_INSYNC_REPLICAS=2\n' >>"$tmp"
    mv -f -- "$tmp" "$ENV_FILE"
}

wait_gone() { # seconds pid...
    local deadline=$(($(now_ms) + $1 * 1000)) pid
    shift
    for pid in "$@"; do
        while pid_alive "$pid"; do
            (($(now_ms) < deadline)) || return 1
            sleep 0.1
        done
    done
}

signal_nodes() { # signal nodes...: prints the pids signalled
    local sig=$1 node pid
    shift
    for node in "$@"; do
        if pid=$(running_pid "$node"); then
            kill "-$sig" "$pid" 2>/dev/null || true
            printf '%s\n' "$pid"
        fi
        [[ $sig == KILL ]] && rm -f -- "$(pid_file "$node")"
    done
}

cmd_stop() {
    pick_nodes "$@"
    [[ -d $CLUSTER_DIR ]] || return 0
    local -a pids
    mapfile -t pids < <(signal_nodes TERM "${PICKED[@]}")
    ((${#pids[@]})) || return 0
    info "stopping node(s) ${PICKED[*]} (pids ${pids[*]}) ..."
    if ! wait_gone "$STOP_TIMEOUT" "${pids[@]}"; then
        info "still running ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
        signal_nodes KILL "${PICKED[@]}" >/dev/null
        wait_gone 15 "${pids[@]}" || die "pid(s) ${pids[*]} survived SIGKILL"
    fi
    for node in "${PICKED[@]}"; do rm -f -- "$(pid_file "$node")"; done
    info "stopped"
}

cmd_kill() {
    pick_nodes "$@"
    [[ -d $CLUSTER_DIR ]] || return 0
    local -a pids
    mapfile -t pids < <(signal_nodes KILL "${PICKED[@]}")
    ((${#pids[@]})) || return 0
    wait_gone 15 "${pids[@]}" || die "pid(s) ${pids[*]} survived SIGKILL"
    info "killed node(s) ${PICKED[*]} (pids ${pids[*]})"
}

cmd_status() {
    local node pid rc=0 i
    for i in "${!NODES[@]}"; do
        node=${NODES[i]}
        if [[ -d $CLUSTER_DIR ]] && pid=$(running_pid "$node"); then
            echo "kafka-cluster: node $node running (pid $pid), $HOST:${CLIENT_PORTS[i]}"
        else
            echo "kafka-cluster: node $node stopped ($HOST:${CLIENT_PORTS[i]})"
            rc=3
        fi
    done
    return "$rc"
}

main() {
    (($#)) || {
        usage >&2
        exit 2
    }
    local command=$1
    shift
    case $command in
        -h | --help | help)
            usage
            return 0
            ;;
        start | stop | kill | status) ;;
        *)
            printf '%s: unknown command: %s\n\n' "$PROG" "$command" >&2
            usage >&2
            exit 2
            ;;
    esac
    validate_settings
    case $command in
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        kill) cmd_kill "$@" ;;
        status)
            (($# == 0)) || die "status takes no node"
            cmd_status
            ;;
    esac
}

main "$@"
