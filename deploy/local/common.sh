# shellcheck shell=bash
# Sourced by the scripts of deploy/local (each server's, and with-stack.sh): the helpers they share.
# The sourcing script sets PROG (its name, for errors) and, before calling port_open, HOST; before calling
# stop_pid, STOP_TIMEOUT (seconds) and PID_FILE, and it defines info; before calling wait_started,
# also START_TIMEOUT (seconds) and LOG_FILE; before calling ensure_state_dir, STATE_DIR.

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

abspath() {
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}

# Milliseconds since the epoch (bash 5 builtin clock; no fork). Strip the decimal separator
# whatever the locale uses.
now_ms() {
    local t=${EPOCHREALTIME//[!0-9]/}
    echo $((10#$t / 1000))
}

pid_alive() { # pid: alive and not a zombie
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ ${state:0:1} != Z ]]
}

# True if pid runs kafka.Kafka with exactly the properties file given (never anyone else's broker).
runs_broker_of() { # pid properties-file
    local arg has_main=0 has_props=0
    local -a argv
    mapfile -d '' argv 2>/dev/null <"/proc/$1/cmdline" || return 1
    for arg in "${argv[@]}"; do
        [[ $arg == kafka.Kafka ]] && has_main=1
        [[ $arg == "$2" ]] && has_props=1
    done
    ((has_main && has_props))
}

port_open() { # port (on $HOST)
    # shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

stop_pid() { # pid: SIGTERM, SIGKILL after STOP_TIMEOUT s, wait until it is gone; remove PID_FILE
    local pid=$1 deadline
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(($(now_ms) + STOP_TIMEOUT * 1000))
    while pid_alive "$pid"; do
        if (($(now_ms) >= deadline)); then
            info "pid $pid did not exit within ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$(($(now_ms) + 10000))
            while pid_alive "$pid"; do
                (($(now_ms) < deadline)) || die "pid $pid survived SIGKILL"
                sleep 0.1
            done
            break
        fi
        sleep 0.1
    done
    rm -f -- "$PID_FILE"
}

# Poll a started server until its readiness command succeeds. If the process dies, or
# START_TIMEOUT passes (it is then stopped), show the log's last lines and die naming it.
wait_started() { # pid name readiness-in-words command [args...]
    local pid=$1 name=$2 readiness=$3 deadline
    shift 3
    deadline=$(($(now_ms) + START_TIMEOUT * 1000))
    until "$@"; do
        if ! pid_alive "$pid"; then
            rm -f -- "$PID_FILE"
            tail -n 30 "$LOG_FILE" >&2 || true
            die "$name (pid $pid) exited during startup; see $LOG_FILE"
        fi
        if (($(now_ms) >= deadline)); then
            tail -n 30 "$LOG_FILE" >&2 || true
            stop_pid "$pid" >&2 || true
            die "$name did not $readiness within ${START_TIMEOUT}s; it was stopped. See $LOG_FILE"
        fi
        sleep 0.25 # poll interval, not a readiness guess
    done
}

# The state dir every server keeps its data under: made traversable (PostgreSQL's server runs as
# the OS user postgres and must reach its data under it; a default umask of 077 would hide it)
# and kept out of git even if the repo's .gitignore does not list it.
ensure_state_dir() {
    if [[ ! -d $STATE_DIR ]]; then
        mkdir -p -- "$STATE_DIR"
        chmod 755 -- "$STATE_DIR"
    fi
    [[ -e $STATE_DIR/.gitignore ]] || printf '*\n' >"$STATE_DIR/.gitignore"
}
