#!/usr/bin/env bash
# Private PostgreSQL cluster for local development (no Docker).
# Uses the Debian server binaries (/usr/lib/postgresql/<ver>/bin) but its own
# data directory under $EBBTIDE_STATE_DIR/postgres; any system cluster
# (e.g. Debian's "main" on 5432) is left untouched.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
# shellcheck source=common.sh
. "$SCRIPT_DIR/common.sh"
# shellcheck source=local-ca.sh
. "$SCRIPT_DIR/local-ca.sh"
PROG=$(basename -- "$0")

usage() {
    cat <<EOF
Usage: $PROG <install|start|stop|status|psql [psql args...]>

Runs a private PostgreSQL cluster bound to 127.0.0.1 only, with TLS: at the first
start (and when its certificate is less than a day from expiry) openssl makes a CA
and a server certificate for 127.0.0.1 and localhost signed by it; the server has
ssl=on, so a client may ask for verify-full with that CA as its root certificate
(sslmode=verify-full sslrootcert=\$EBBTIDE_STATE_DIR/postgres/tls/ca.pem). The DSNs
in env name no sslmode: libpq's default (prefer) uses TLS without verifying it.

Commands:
  install  apt-get install postgresql, unless a server (initdb) is already
           present under /usr/lib/postgresql/*/bin.
  start    Install if needed, initialise the cluster on first use (superuser
           'ebbtide_admin', random password, scram-sha-256), start it and wait
           until it accepts connections (pg_ctl -w), create the application
           role 'ebbtide' (LOGIN CREATEDB, not a superuser, may not create
           roles) and its databases ebbtide_demo and ebbtide_test if missing.
           A cluster made by an older version of this script, where 'ebbtide'
           was the superuser, is converted: 'ebbtide' is renamed
           'ebbtide_admin' and a new non-superuser 'ebbtide' (same password)
           gets the databases and what is in them. Succeeds if already running.
  stop     Stop our cluster (pg_ctl stop -m fast). Succeeds if not running.
  status   Print running/stopped and the address. Exit 0 running, 3 stopped.
  psql     Open psql on ebbtide_demo as ebbtide; further arguments are passed
           to psql (e.g. $PROG psql -c 'select 1').
  admin-psql  The same as the administrator ebbtide_admin (creating roles,
           e.g. for 'ebbtide sink-role').

Environment (defaults in brackets):
  EBBTIDE_STATE_DIR  [<repo>/.state]  runtime state; PostgreSQL uses ./postgres
  EBBTIDE_PG_PORT    [5433]           TCP port on 127.0.0.1

Files:
  \$EBBTIDE_STATE_DIR/postgres/data          cluster data directory
  \$EBBTIDE_STATE_DIR/postgres/postgres.log  server log
  \$EBBTIDE_STATE_DIR/postgres/password      password of role ebbtide (mode 600)
  \$EBBTIDE_STATE_DIR/postgres/admin-password  password of role ebbtide_admin (mode 600)
  \$EBBTIDE_STATE_DIR/postgres/cdc-password  password of role ebbtide_cdc (mode 600): Debezium's
                                            (REPLICATION, pg_read_all_data; docs/cdc.md)
  \$EBBTIDE_STATE_DIR/postgres/admin-dsn     the administrator's DSN (mode 600): for
                                            'ebbtide sink-role --admin-dsn' and the tests
                                            that create roles; not in env, so the
                                            pipeline's processes never get it
  \$EBBTIDE_STATE_DIR/postgres/tls/          ca.pem (the root certificate clients verify
                                            with), ca.key, server.pem, server.key (keys
                                            mode 600; server.key owned by the server's user)
  \$EBBTIDE_STATE_DIR/env                    EBBTIDE_PG_DSN / EBBTIDE_PG_TEST_DSN lines, and
                                            EBBTIDE_LOCAL_PG_SSLROOTCERT (tls/ca.pem), and
                                            EBBTIDE_CDC_DSN (ebbtide_cdc on ebbtide_demo)

When run as root, the server runs as the OS user 'postgres' (it refuses to run
as root); otherwise it runs as the invoking user.

The server log (mode 600) records no statement and no error message (values of
a failed statement, e.g. the keys of a failed batch, would stay in it): the
client that ran it gets the error. Startup, shutdown and FATAL lines are logged.
EOF
}

info() { printf 'postgres: %s\n' "$*"; }

# ---------------------------------------------------------------- settings
STATE_DIR=$(abspath "${EBBTIDE_STATE_DIR:-$REPO_ROOT/.state}")
PG_PORT=${EBBTIDE_PG_PORT:-5433}
HOST=127.0.0.1
PG_LIB_ROOT=/usr/lib/postgresql # Debian layout: $PG_LIB_ROOT/<major>/bin
DB_USER=ebbtide                  # the application role: not a superuser
ADMIN_USER=ebbtide_admin         # the cluster's superuser, for this script and role set-up only
CDC_USER=ebbtide_cdc             # Debezium's: REPLICATION and read-only (ensure_cdc_role)
MIGRATION_USER=ebbtide_migration # short-lived, while converting an old cluster
DATABASES=(ebbtide_demo ebbtide_test)
START_TIMEOUT=60
STOP_TIMEOUT=60

PG_DIR=$STATE_DIR/postgres
DATA_DIR=$PG_DIR/data
SOCKET_DIR=$PG_DIR/run
LOG_FILE=$PG_DIR/postgres.log
PASSWORD_FILE=$PG_DIR/password
ADMIN_PASSWORD_FILE=$PG_DIR/admin-password
CDC_PASSWORD_FILE=$PG_DIR/cdc-password
ADMIN_DSN_FILE=$PG_DIR/admin-dsn
TLS_DIR=$PG_DIR/tls
PG_CA=$TLS_DIR/ca.pem
OWNERS_PENDING=$PG_DIR/.owners-pending # ownership of old objects still to hand over
ENV_FILE=$STATE_DIR/env

if ((EUID == 0)); then
    PG_OS_USER=postgres
else
    PG_OS_USER=$(id -un)
fi

validate_settings() {
    if ! [[ $PG_PORT =~ ^[0-9]+$ ]] || ((10#$PG_PORT < 1 || 10#$PG_PORT > 65535)); then
        die "EBBTIDE_PG_PORT must be a TCP port number (1-65535), got '$PG_PORT'"
    fi
    PG_PORT=$((10#$PG_PORT))
}

# ---------------------------------------------------------------- helpers
# Run a PostgreSQL server program as the cluster owner, from a directory it can read.
as_pg() {
    if ((EUID == 0)); then
        (cd / && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}


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

# Sets PG_BIN to the server binaries to use, or fails. Prefers the major
# version the data directory was created with, else the highest installed.
find_pg_bin() {
    PG_BIN=""
    local d
    local -a found=()
    for d in "$PG_LIB_ROOT"/*/bin; do
        [[ -x $d/initdb && -x $d/pg_ctl ]] && found+=("$d")
    done
    ((${#found[@]})) || return 1
    if [[ -f $DATA_DIR/PG_VERSION ]]; then
        local v
        v=$(<"$DATA_DIR/PG_VERSION")
        [[ -x $PG_LIB_ROOT/$v/bin/pg_ctl ]] ||
            die "$DATA_DIR was created by PostgreSQL $v, but only these servers are installed: ${found[*]};" \
                "install postgresql-$v or remove $PG_DIR to start over (this deletes the data)"
        PG_BIN=$PG_LIB_ROOT/$v/bin
        return 0
    fi
    PG_BIN=$(printf '%s\n' "${found[@]}" | sort -V | tail -n 1)
}

require_pg_bin() {
    find_pg_bin || die "PostgreSQL server is not installed (no $PG_LIB_ROOT/*/bin/initdb); run '$PROG install'"
}

read_password() {
    [[ -r $PASSWORD_FILE ]] || die "password file $PASSWORD_FILE is missing"
    PASSWORD=$(<"$PASSWORD_FILE")
    [[ $PASSWORD =~ ^[0-9a-f]{16,}$ ]] || die "password file $PASSWORD_FILE does not contain a hex password"
}

read_admin_password() {
    [[ -r $ADMIN_PASSWORD_FILE ]] || die "password file $ADMIN_PASSWORD_FILE is missing"
    ADMIN_PASSWORD=$(<"$ADMIN_PASSWORD_FILE")
    [[ $ADMIN_PASSWORD =~ ^[0-9a-f]{16,}$ ]] ||
        die "password file $ADMIN_PASSWORD_FILE does not contain a hex password"
}

dsn() { # database [user password]
    printf 'postgresql://%s:%s@%s:%s/%s\n' "${2:-$DB_USER}" "${3:-$PASSWORD}" "$HOST" "$PG_PORT" "$1"
}

# psql as a role over TCP (never via the system socket / peer auth). Passwords go through the
# environment, and SQL with a password in it through stdin, never the command line.
psql_as() { # user password database psql-args...
    local user=$1 password=$2 db=$3
    shift 3
    PGPASSWORD=$password PGCONNECT_TIMEOUT=10 PGSSLMODE=disable \
        "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        -h "$HOST" -p "$PG_PORT" -U "$user" -d "$db" "$@"
}
pg_query() { psql_as "$DB_USER" "$PASSWORD" "$@"; }         # database psql-args...
pg_admin() { psql_as "$ADMIN_USER" "$ADMIN_PASSWORD" "$@"; } # database psql-args...

new_password() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# write_secret FILE VALUE: FILE (mode 600) holds VALUE, replaced atomically.
write_secret() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    chmod 600 "$tmp"
    printf '%s\n' "$2" >"$tmp"
    mv -f -- "$tmp" "$1"
}

# 0 = running, 3 = not running (pg_ctl status semantics).
server_running() {
    [[ -f $DATA_DIR/PG_VERSION ]] || return 3
    local rc=0
    as_pg "$PG_BIN/pg_ctl" status -D "$DATA_DIR" >/dev/null 2>&1 || rc=$?
    return "$rc"
}

# pid / port of the running server, from postmaster.pid (lines 1 and 4).
postmaster_field() { # line number
    sed -n "${1}p" "$DATA_DIR/postmaster.pid" 2>/dev/null | tr -d '[:space:]'
}

# Every directory from / down to $PG_DIR must be searchable by the cluster owner.
check_traversable() {
    ((EUID == 0)) || return 0
    local path=$PG_DIR bad
    local -a dirs=()
    while [[ -n $path && $path != / ]]; do
        [[ -d $path ]] && dirs=("$path" "${dirs[@]}")
        path=$(dirname -- "$path")
    done
    # shellcheck disable=SC2016 # "$@"/$d are expanded by the inner sh
    bad=$(cd / && runuser -u "$PG_OS_USER" -- sh -c \
        'for d in "$@"; do [ -x "$d" ] || { printf "%s\n" "$d"; exit 0; }; done' sh / "${dirs[@]}")
    [[ -z $bad ]] ||
        die "directory '$bad' is not traversable by the OS user '$PG_OS_USER' (mode $(stat -c %A "$bad"))," \
            "so PostgreSQL cannot reach $DATA_DIR. Run 'chmod o+x $bad' or set EBBTIDE_STATE_DIR to a" \
            "location under a world-traversable path (e.g. /var/tmp/ebbtide)."
}

ensure_password() {
    [[ -f $PASSWORD_FILE ]] && return 0
    [[ -f $DATA_DIR/PG_VERSION ]] &&
        die "$DATA_DIR is initialised but its password file $PASSWORD_FILE is missing." \
            "Restore it, or remove $PG_DIR to start over (this deletes the data)."
    write_secret "$PASSWORD_FILE" "$(new_password)"
    info "generated a new password for role $DB_USER in $PASSWORD_FILE"
}

# The administrator's password: made with a new cluster, or for an old cluster (whose superuser
# was $DB_USER) before it is converted (ensure_roles).
ensure_admin_password() {
    [[ -f $ADMIN_PASSWORD_FILE ]] && return 0
    write_secret "$ADMIN_PASSWORD_FILE" "$(new_password)"
    info "generated a new password for role $ADMIN_USER in $ADMIN_PASSWORD_FILE"
}

init_cluster() {
    if [[ -f $DATA_DIR/PG_VERSION ]]; then
        return 0
    fi
    if [[ -d $DATA_DIR ]] && [[ -n $(ls -A -- "$DATA_DIR") ]]; then
        die "$DATA_DIR is not empty but is not a PostgreSQL data directory; move it away first"
    fi
    if ((EUID == 0)); then
        install -d -o "$PG_OS_USER" -g "$(id -gn "$PG_OS_USER")" -m 700 -- "$DATA_DIR"
    else
        install -d -m 700 -- "$DATA_DIR"
    fi
    # initdb --pwfile must be readable by the cluster owner; use a short-lived copy.
    local pwtmp out rc=0
    pwtmp=$(mktemp "$PG_DIR/.initdb-pw.XXXXXX")
    trap 'rm -f -- "$pwtmp"' EXIT
    chmod 600 "$pwtmp"
    cat -- "$ADMIN_PASSWORD_FILE" >"$pwtmp"
    if ((EUID == 0)); then chown "$PG_OS_USER" "$pwtmp"; fi
    info "initialising cluster in $DATA_DIR ($("$PG_BIN/initdb" --version))"
    out=$(as_pg "$PG_BIN/initdb" -D "$DATA_DIR" -U "$ADMIN_USER" -A scram-sha-256 \
        --pwfile="$pwtmp" -E UTF8 --no-locale 2>&1) || rc=$?
    rm -f -- "$pwtmp"
    trap - EXIT
    ((rc == 0)) || die "initdb failed (exit $rc):"$'\n'"$out"
}

# The server's certificate for 127.0.0.1 and localhost, signed by a CA of its own: made with
# openssl at the first start, and again only when it is within a day of expiring.
ensure_tls() {
    if [[ -f $TLS_DIR/server.key && -f $PG_CA ]] && tls_current "$TLS_DIR/server.pem"; then
        return 0
    fi
    install -d -m 755 -- "$TLS_DIR" # the server (another OS user when run as root) reads in it
    local out
    out=$(tls_make "$TLS_DIR" "$PG_CA" "Ebbtide local PostgreSQL CA" server) ||
        die "openssl could not make the server's TLS certificate:"$'\n'"$out"
    chmod 644 -- "$PG_CA" "$TLS_DIR/server.pem"
    chmod 600 -- "$TLS_DIR/ca.key" "$TLS_DIR/server.key"
    if ((EUID == 0)); then chown "$PG_OS_USER" "$TLS_DIR/server.key" "$TLS_DIR/server.pem"; fi
    info "made a CA and a server certificate for TLS in $TLS_DIR"
}

write_config() {
    local conf=$DATA_DIR/ebbtide.conf tmp sock_path
    sock_path="$SOCKET_DIR/.s.PGSQL.$PG_PORT"
    ((${#sock_path} <= 107)) ||
        die "unix socket path '$sock_path' is longer than the 107-byte limit; use a shorter EBBTIDE_STATE_DIR"
    if ((EUID == 0)); then
        install -d -o "$PG_OS_USER" -g "$(id -gn "$PG_OS_USER")" -m 755 -- "$SOCKET_DIR"
    else
        install -d -m 755 -- "$SOCKET_DIR"
    fi
    grep -qxF "include = 'ebbtide.conf'" "$DATA_DIR/postgresql.conf" ||
        printf "\n# Added by deploy/local/postgres.sh\ninclude = 'ebbtide.conf'\n" >>"$DATA_DIR/postgresql.conf"
    tmp=$(mktemp "$conf.XXXXXX")
    cat >"$tmp" <<EOF
# Generated by deploy/local/postgres.sh on every start; edits will be overwritten.
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '${SOCKET_DIR//\'/\'\'}'
# TLS with the certificate of tls/ (signed by tls/ca.pem): clients may verify it (verify-full).
ssl = on
ssl_cert_file = '${TLS_DIR//\'/\'\'}/server.pem'
ssl_key_file = '${TLS_DIR//\'/\'\'}/server.key'
ssl_min_protocol_version = 'TLSv1.2'
# Data protection: the log is private, and holds no statement and no error text. The text of an
# error can quote a value of the failed statement (invalid input syntax for type bigint: "<key>"),
# its DETAIL a key (Key (customer_id)=(42) is still referenced ...), its STATEMENT every key of a
# batch; the client that ran it gets the whole error. Startup, shutdown, FATAL and PANIC are kept.
log_file_mode = 0600
log_min_messages = log
log_min_error_statement = panic
log_error_verbosity = terse
log_statement = none
log_min_duration_statement = -1
log_parameter_max_length = 0
log_parameter_max_length_on_error = 0
# Change data capture (Debezium, deploy/local/connect.sh): logical decoding with pgoutput. A server
# started with another wal_level needs a restart (postgres.sh stop; start) to take this.
wal_level = logical
EOF
    chmod 644 "$tmp"
    if ((EUID == 0)); then chown "$PG_OS_USER" "$tmp"; fi
    mv -f -- "$tmp" "$conf"
}

# The application role $DB_USER: LOGIN CREATEDB (the tests' scratch databases), no SUPERUSER, no
# CREATEROLE (in PostgreSQL 15 and older that could grant itself pg_execute_server_program),
# with the password of $PASSWORD_FILE. Run on every start, so the attributes are always these.
# A cluster made by an older version of this script has $DB_USER as its bootstrap superuser,
# which keeps SUPERUSER for good: it is renamed $ADMIN_USER and a new $DB_USER is made.
ensure_roles() {
    ensure_admin_password
    read_admin_password
    if ! pg_admin postgres -tAc 'select 1' >/dev/null 2>&1; then
        local bootstrap
        bootstrap=$(pg_query postgres -tAc \
            "select rolsuper and oid = 10 from pg_roles where rolname = current_user" 2>/dev/null) ||
            die "cannot connect as $ADMIN_USER (password in $ADMIN_PASSWORD_FILE) nor as $DB_USER; see $LOG_FILE"
        [[ $bootstrap == t ]] ||
            die "cannot connect as $ADMIN_USER with the password in $ADMIN_PASSWORD_FILE;" \
                "restore that file, or remove $PG_DIR to start over (this deletes the data)"
        convert_old_cluster
    fi
    pg_admin postgres <<SQL || die "could not create or alter role $DB_USER; see $LOG_FILE"
SET client_min_messages = warning;
SELECT format('%s ROLE %I', CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER')
       THEN 'ALTER' ELSE 'CREATE' END, '$DB_USER') AS verb \\gset
:verb LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS CREATEDB INHERIT PASSWORD '$PASSWORD';
DROP ROLE IF EXISTS $MIGRATION_USER;
SQL
    write_secret "$ADMIN_DSN_FILE" "$(dsn postgres "$ADMIN_USER" "$ADMIN_PASSWORD")"
    ensure_cdc_role
}

# $CDC_USER: what Debezium logs in as (docs/cdc.md): REPLICATION (a logical replication slot)
# and pg_read_all_data (its initial snapshot of the captured tables), nothing else; the
# publication of the captured tables is made by their owner ('ebbtide cdc connect').
ensure_cdc_role() {
    [[ -f $CDC_PASSWORD_FILE ]] || write_secret "$CDC_PASSWORD_FILE" "$(new_password)"
    CDC_PASSWORD=$(<"$CDC_PASSWORD_FILE")
    pg_admin postgres <<SQL || die "could not create or alter role $CDC_USER; see $LOG_FILE"
SET client_min_messages = warning;
SELECT format('%s ROLE %I', CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$CDC_USER')
       THEN 'ALTER' ELSE 'CREATE' END, '$CDC_USER') AS verb \\gset
:verb LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB REPLICATION NOBYPASSRLS PASSWORD '$CDC_PASSWORD';
GRANT pg_read_all_data TO $CDC_USER;
SQL
}

# Old cluster: $DB_USER (oid 10) is the superuser. A short-lived second superuser renames it
# $ADMIN_USER (it keeps the superuser's objects, i.e. the system's), and makes the new,
# unprivileged $DB_USER with the same password, so the DSNs in env do not change. Sessions open
# as the old role keep their rights until they end.
convert_old_cluster() {
    local temp
    temp=$(new_password)
    info "converting the cluster: role $DB_USER was its superuser; it becomes $ADMIN_USER and a new" \
        "$DB_USER without SUPERUSER gets the databases"
    : >"$OWNERS_PENDING"
    pg_query postgres <<SQL || die "could not create the temporary role $MIGRATION_USER; see $LOG_FILE"
SET client_min_messages = warning;
DROP ROLE IF EXISTS $MIGRATION_USER;
CREATE ROLE $MIGRATION_USER LOGIN SUPERUSER PASSWORD '$temp';
SQL
    psql_as "$MIGRATION_USER" "$temp" postgres <<SQL || die "could not rename role $DB_USER; see $LOG_FILE"
BEGIN;
ALTER ROLE $DB_USER RENAME TO $ADMIN_USER;
ALTER ROLE $ADMIN_USER PASSWORD '$ADMIN_PASSWORD';
CREATE ROLE $DB_USER LOGIN NOSUPERUSER NOCREATEROLE CREATEDB PASSWORD '$PASSWORD';
COMMIT;
SQL
    pg_admin postgres -c "DROP ROLE $MIGRATION_USER" || die "could not drop role $MIGRATION_USER"
}

# Databases owned by $DB_USER (made if missing; an old one is handed over).
ensure_databases() {
    local db owner
    for db in "${DATABASES[@]}"; do
        owner=$(pg_admin postgres -tAc \
            "select pg_get_userbyid(datdba) from pg_database where datname = '$db'") ||
            die "cannot query the server on $HOST:$PG_PORT as $ADMIN_USER; see $LOG_FILE"
        if [[ -z $owner ]]; then
            pg_admin postgres -c "create database $db owner $DB_USER" || die "could not create database $db"
            info "created database $db"
        elif [[ $owner != "$DB_USER" ]]; then
            pg_admin postgres -c "alter database $db owner to $DB_USER" ||
                die "could not make $DB_USER the owner of database $db"
        fi
    done
    [[ -e $OWNERS_PENDING ]] || return 0
    for db in "${DATABASES[@]}"; do
        hand_over "$db" || {
            info "warning: could not yet hand the objects of $db over to $DB_USER (busy?); the next start tries again"
            return 0
        }
    done
    rm -f -- "$OWNERS_PENDING"
    info "handed the databases' objects over to $DB_USER"
}

# hand_over DB: what $ADMIN_USER owns in DB outside the system schemas (made when it was still
# the application's role) becomes $DB_USER's, in one transaction.
hand_over() {
    pg_admin "$1" <<'SQL' >/dev/null
SET client_min_messages = warning;
SET lock_timeout = '10s';
DO $$
DECLARE
    admin oid := (SELECT oid FROM pg_roles WHERE rolname = 'ebbtide_admin');
    r record;
BEGIN
    FOR r IN SELECT n.nspname FROM pg_namespace n WHERE n.nspowner = admin
             AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema' LOOP
        EXECUTE format('ALTER SCHEMA %I OWNER TO ebbtide', r.nspname);
    END LOOP;
    FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relowner = admin AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
             AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
             AND NOT (c.relkind = 'S' AND EXISTS (  -- sequences of a column follow their table
                 SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                 AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))) LOOP
        EXECUTE format('ALTER %s %s OWNER TO ebbtide',
            CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.rel);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS routine FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.proowner = admin AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema' LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO ebbtide', r.routine);
    END LOOP;
    FOR r IN SELECT t.oid::regtype AS typ, t.typtype FROM pg_type t
             JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE t.typowner = admin AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
             AND (t.typtype IN ('d', 'e', 'r')
                  OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class c
                                                  WHERE c.oid = t.typrelid AND c.relkind = 'c'))) LOOP
        EXECUTE format('ALTER %s %s OWNER TO ebbtide',
            CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, r.typ);
    END LOOP;
END
$$;
SQL
}

# The server log holds no statements or error texts (ebbtide.conf), and is private anyway:
# PostgreSQL's log_file_mode applies to the logging collector's files only, and this log is
# pg_ctl's stderr file.
private_log() {
    local f
    for f in "$LOG_FILE" "$LOG_FILE.1"; do
        [[ -e $f ]] && chmod 600 -- "$f"
    done
    return 0
}

log_tail() {
    echo "---- last lines of $LOG_FILE ----" >&2
    tail -n 30 -- "$LOG_FILE" >&2 2>/dev/null || true
}

# ---------------------------------------------------------------- commands
cmd_install() {
    if find_pg_bin; then
        info "PostgreSQL server already installed: $PG_BIN"
        return 0
    fi
    ((EUID == 0)) ||
        die "PostgreSQL server is not installed; run as root or 'sudo apt-get install -y postgresql'"
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is not available"
    info "installing PostgreSQL with apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || die "apt-get update failed"
    apt-get install -y -q postgresql || die "apt-get install postgresql failed"
    find_pg_bin || die "apt-get install postgresql succeeded but no $PG_LIB_ROOT/*/bin/initdb was found"
    info "installed PostgreSQL server: $PG_BIN"
}

cmd_start() {
    validate_settings
    find_pg_bin || cmd_install
    require_pg_bin
    id -u "$PG_OS_USER" >/dev/null 2>&1 || die "OS user '$PG_OS_USER' does not exist"
    ensure_state_dir
    if [[ ! -d $PG_DIR ]]; then
        mkdir -p -- "$PG_DIR"
        chmod 755 -- "$PG_DIR" # traversable by the cluster owner; secrets inside are mode 600
    fi
    check_traversable
    (
        flock -w 120 7 || die "timed out waiting for lock $PG_DIR/.lock"
        start_locked
    ) 7>"$PG_DIR/.lock"
}

start_locked() {
    local rc=0 pid port
    server_running || rc=$?
    if ((rc == 0)); then
        read_password
        pid=$(postmaster_field 1)
        port=$(postmaster_field 4)
        [[ -z $port || $port == "$PG_PORT" ]] ||
            die "our cluster (pid $pid) is already running on port $port, but EBBTIDE_PG_PORT=$PG_PORT; run '$PROG stop' first"
        # Settings of this version (e.g. what the log holds, TLS) without a restart.
        ensure_tls
        write_config
        as_pg "$PG_BIN/pg_ctl" reload -D "$DATA_DIR" -s 7>&- || die "pg_ctl reload failed; see $LOG_FILE"
        private_log
        ensure_roles
        ensure_databases
        info "already running (pid $pid), $HOST:$PG_PORT"
        env_update EBBTIDE_PG_DSN "$(dsn ebbtide_demo)" EBBTIDE_PG_TEST_DSN "$(dsn ebbtide_test)" \
            EBBTIDE_LOCAL_PG_SSLROOTCERT "$PG_CA" EBBTIDE_CDC_DSN "$(dsn ebbtide_demo "$CDC_USER" "$CDC_PASSWORD")"
        return 0
    fi
    port_open "$PG_PORT" &&
        die "port $HOST:$PG_PORT is already in use by another process (not our cluster); stop it or set EBBTIDE_PG_PORT"

    ensure_password
    read_password
    [[ -f $DATA_DIR/PG_VERSION ]] || ensure_admin_password # a new cluster's superuser
    init_cluster
    ensure_tls
    write_config

    # Keep the log from growing without bound across restarts.
    if [[ -f $LOG_FILE ]] && (($(stat -c %s "$LOG_FILE") > 20 * 1024 * 1024)); then
        mv -f -- "$LOG_FILE" "$LOG_FILE.1"
    fi
    if [[ ! -e $LOG_FILE ]]; then
        (umask 077 && : >"$LOG_FILE")
        if ((EUID == 0)); then chown "$PG_OS_USER" "$LOG_FILE"; fi
    fi
    private_log

    local start=$SECONDS
    info "starting on $HOST:$PG_PORT (waiting up to ${START_TIMEOUT}s); log: $LOG_FILE"
    # -w: pg_ctl polls postmaster.pid until the server reports it accepts connections.
    # fd 7 (our start/stop lock) is closed so the server does not inherit and hold it.
    if ! as_pg "$PG_BIN/pg_ctl" start -D "$DATA_DIR" -l "$LOG_FILE" -w -t "$START_TIMEOUT" -s 7>&-; then
        log_tail
        die "PostgreSQL did not start within ${START_TIMEOUT}s; see $LOG_FILE"
    fi
    ensure_roles
    ensure_databases
    pid=$(postmaster_field 1)
    info "started (pid $pid) in $((SECONDS - start))s, $HOST:$PG_PORT (TLS: root certificate $PG_CA)"
    env_update EBBTIDE_PG_DSN "$(dsn ebbtide_demo)" EBBTIDE_PG_TEST_DSN "$(dsn ebbtide_test)" \
        EBBTIDE_LOCAL_PG_SSLROOTCERT "$PG_CA" EBBTIDE_CDC_DSN "$(dsn ebbtide_demo "$CDC_USER" "$CDC_PASSWORD")"
}

cmd_stop() {
    find_pg_bin || return 0
    [[ -d $PG_DIR ]] || return 0
    (
        flock -w 120 7 || die "timed out waiting for lock $PG_DIR/.lock"
        local rc=0
        server_running || rc=$?
        ((rc == 0)) || exit 0
        info "stopping (pid $(postmaster_field 1)) ..."
        as_pg "$PG_BIN/pg_ctl" stop -D "$DATA_DIR" -m fast -w -t "$STOP_TIMEOUT" -s ||
            die "pg_ctl stop -m fast did not finish within ${STOP_TIMEOUT}s; see $LOG_FILE" \
                "(as a last resort: runuser -u $PG_OS_USER -- $PG_BIN/pg_ctl stop -D $DATA_DIR -m immediate)"
        info "stopped"
    ) 7>"$PG_DIR/.lock"
}

cmd_status() {
    local rc=0 port
    if find_pg_bin && [[ -d $PG_DIR ]]; then
        server_running || rc=$?
    else
        rc=3
    fi
    if ((rc == 0)); then
        port=$(postmaster_field 4)
        echo "postgres: running (pid $(postmaster_field 1)), $HOST:${port:-$PG_PORT}, database ebbtide_demo, user $DB_USER"
        return 0
    fi
    echo "postgres: stopped (would listen on $HOST:$PG_PORT)"
    return 3
}

cmd_psql() {
    validate_settings
    require_pg_bin
    local rc=0
    server_running || rc=$?
    ((rc == 0)) || die "our PostgreSQL cluster is not running; run '$PROG start' first"
    read_password
    local port
    port=$(postmaster_field 4)
    PG_PORT=${port:-$PG_PORT}
    local user=$DB_USER
    if [[ ${PSQL_AS:-} == admin ]]; then
        read_admin_password
        PASSWORD=$ADMIN_PASSWORD
        user=$ADMIN_USER
    fi
    PGPASSWORD=$PASSWORD exec "$PG_BIN/psql" \
        -d "host=$HOST port=$PG_PORT user=$user dbname=ebbtide_demo sslmode=disable" "$@"
}

main() {
    (($# >= 1)) || {
        usage >&2
        exit 2
    }
    local cmd=$1
    shift
    if [[ $cmd != psql && $cmd != admin-psql ]] && (($# > 0)); then
        printf '%s: %s takes no arguments\n\n' "$PROG" "$cmd" >&2
        usage >&2
        exit 2
    fi
    case $cmd in
        -h | --help | help) usage ;;
        install) cmd_install ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        psql) cmd_psql "$@" ;;
        admin-psql) PSQL_AS=admin cmd_psql "$@" ;;
        *)
            printf '%s: unknown command: %s\n\n' "$PROG" "$cmd" >&2
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
