#!/usr/bin/env bash
# Project-local Postgres 15 + Redis for development and tests, kept under .data/.
#
#   deps.sh [start] [postgres|redis|redis-cluster]...
#                                         start (default: Postgres and Redis), bootstrap
#                                         roles/schemas, then print `export ...` lines
#   deps.sh stop [postgres|redis|redis-cluster]...
#                                         stop what is running (default: all)
#   deps.sh status                        say what is running
#   deps.sh env                           only print the export lines
#   deps.sh tools                         install test-only tools (promtool) when missing
#   deps.sh fault-tools                   install the fault suite's tools (wrk, slowhttptest)
#   deps.sh pg-stop-immediate             stop Postgres at once (pg_ctl stop -m immediate: a
#                                         crash as far as clients and WAL are concerned)
#   deps.sh pg-restart-immediate [SECS]   pg_ctl restart -m immediate, staying down SECS (0)
#   deps.sh drop-test-dbs                 drop leftover rookery_test_* databases
#   deps.sh reset-db NAME                 drop and recreate database NAME with service schemas
#
# Everything is idempotent: starting what runs, or stopping what is stopped, is a no-op.
# ROOKERY_DATA_DIR, ROOKERY_PG_PORT and ROOKERY_REDIS_PORT make a second, private pair
# (lib.sh); ROOKERY_PG_OPTIONS adds server settings to the pg_ctl command line
# (e.g. "-c synchronous_commit=on").
set -euo pipefail

# shellcheck source=deploy/dev/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_LOG="$LOG_DIR/postgres.log"
# pg_stat_statements, for the tests that count the statements a request runs
# (rookery_kit::testing::StatementCounter). Passed on the pg_ctl command line rather than
# written to postgresql.conf, so a cluster initialised before they existed gets them too.
# max: every test database adds its own entries, and an evicted entry loses its count.
# track=top: statements run inside functions and triggers (the counter triggers of the
# graph tables) belong to the statement that fired them, not counted on their own.
PG_STAT_STATEMENTS_MAX=20000
PG_STAT_STATEMENTS_TRACK=top
PG_SERVER_OPTIONS="-c shared_preload_libraries=pg_stat_statements"
PG_SERVER_OPTIONS+=" -c pg_stat_statements.max=$PG_STAT_STATEMENTS_MAX"
PG_SERVER_OPTIONS+=" -c pg_stat_statements.track=$PG_STAT_STATEMENTS_TRACK"
[[ -z ${ROOKERY_PG_OPTIONS:-} ]] || PG_SERVER_OPTIONS+=" $ROOKERY_PG_OPTIONS"
REDIS_PIDFILE="$RUN_DIR/redis.pid"
REDIS_LOG="$LOG_DIR/redis.log"

# ---------------------------------------------------------------- packages

# A concurrent apt/dpkg run (e.g. another process installing redis-server) holds these
# locks; wait for it instead of failing, and re-check afterwards: it may install what we need.
wait_for_apt() {
    command -v fuser >/dev/null 2>&1 || return 0
    local waited=0
    while fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock >/dev/null 2>&1; do
        ((waited == 0)) && log "waiting for another apt/dpkg run to finish..."
        ((waited >= 600)) && die "apt/dpkg still locked after ${waited}s"
        sleep 2
        waited=$((waited + 2))
    done
}

apt_install() {
    local pkg=$1
    ((EUID == 0)) || die "package '$pkg' is missing; install it with: sudo apt-get install -y $pkg"
    command -v apt-get >/dev/null 2>&1 || die "package '$pkg' is missing and apt-get is not available; install it by hand"
    log "installing $pkg (apt-get)"
    local apt=(apt-get -o DPkg::Lock::Timeout=300 -y -q)
    wait_for_apt
    # The package lists may be empty or stale (fresh containers): update once and retry.
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$pkg" >&2 ||
        { "${apt[@]}" update >&2 && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$pkg" >&2; } ||
        die "could not install $pkg"
}

have_pg_binaries() { [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl && -x $PG_BIN/postgres ]] && command -v psql >/dev/null 2>&1; }
have_redis_binaries() { command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; }

ensure_pg_binaries() {
    have_pg_binaries && return 0
    wait_for_apt
    have_pg_binaries || apt_install postgresql-15
    have_pg_binaries || die "Postgres 15 binaries not found in $PG_BIN after installing postgresql-15"
}

# ensure_optional CMD PACKAGE CONSEQUENCE: installs PACKAGE when CMD is missing, and only
# warns (saying CONSEQUENCE) when it cannot: the stack runs without these tools.
ensure_optional() {
    local cmd=$1 pkg=$2 consequence=$3
    command -v "$cmd" >/dev/null 2>&1 && return 0
    wait_for_apt
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
        (apt_install "$pkg") || log "warning: $pkg could not be installed; $consequence"
    else
        log "warning: $cmd is missing (apt-get install $pkg); $consequence"
    fi
}

# ffmpeg: the media service transcodes video and animated GIFs with it (ffprobe comes in
# the same package). Without it video uploads are refused with a clear 422 and images
# still work.
ensure_ffmpeg() { ensure_optional ffprobe ffmpeg "video uploads will be refused"; }

# promtool (Debian package prometheus) checks the alert rules and the scrape config in
# make test; without it those checks are skipped with a notice.
ensure_promtool() { ensure_optional promtool prometheus "rule checks will be skipped"; }

# The fault-injection suite (deploy/dev/faults.sh) drives overload with wrk and slow
# clients with slowhttptest; the scenarios that need a missing one fail and say so.
ensure_fault_tools() {
    ensure_optional wrk wrk "the overload scenario will fail"
    ensure_optional slowhttptest slowhttptest "the slow-client scenario will fail"
}

ensure_redis_binaries() {
    have_redis_binaries && return 0
    wait_for_apt
    have_redis_binaries || apt_install redis-server
    have_redis_binaries || die "redis-server/redis-cli not found after installing redis-server"
}

# ---------------------------------------------------------------- Postgres OS user

# initdb/pg_ctl refuse to run as root. As root we use the owner of an existing cluster,
# else the `postgres` OS user, else a system user `rookery` created on the fly.
# Not root: the current user.
PG_OS_USER=""
pg_os_user() {
    if [[ -n $PG_OS_USER ]]; then
        :
    elif ((EUID != 0)); then
        PG_OS_USER="$(id -un)"
    elif [[ -d $PG_DATA ]] && [[ "$(stat -c %U "$PG_DATA")" != root ]] && [[ "$(stat -c %U "$PG_DATA")" != UNKNOWN ]]; then
        PG_OS_USER="$(stat -c %U "$PG_DATA")"
    elif id -u postgres >/dev/null 2>&1; then
        PG_OS_USER=postgres
    else
        if ! id -u rookery >/dev/null 2>&1; then
            log "creating system user 'rookery' to run Postgres (initdb refuses root)"
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin rookery
        fi
        PG_OS_USER=rookery
    fi
    printf '%s' "$PG_OS_USER"
}

# Runs a command as the Postgres OS user, from a directory that user can enter.
as_pg() {
    local user
    user="$(pg_os_user)"
    if ((EUID == 0)); then
        (cd "$DATA" && runuser -u "$user" -- "$@")
    else
        (cd "$DATA" && "$@")
    fi
}

# Directories Postgres writes to must belong to its OS user when we are root.
own_for_pg() {
    ((EUID == 0)) || return 0
    local user
    user="$(pg_os_user)"
    chown "$user:" "$@"
}

# ---------------------------------------------------------------- Postgres

# Socket paths are limited to ~107 bytes; with a very deep checkout fall back to TCP only.
pg_socket_dir() {
    if ((${#PG_SOCKET_DIR} + 20 > 107)); then
        printf ''
    else
        printf '%s' "$PG_SOCKET_DIR"
    fi
}

init_cluster() {
    local user pwfile
    user="$(pg_os_user)"
    log "initialising Postgres cluster in $PG_DATA (OS user $user)"
    mkdir -p "$PG_DATA"
    chmod 700 "$PG_DATA"
    own_for_pg "$PG_DATA"
    if ! as_pg test -w "$PG_DATA"; then
        die "OS user '$user' cannot write $PG_DATA: every parent directory of the repo must be traversable (o+x)"
    fi

    # initdb reads the superuser password from a file only that user may read.
    pwfile="$(mktemp "$RUN_DIR/pgpass.XXXXXX")"
    printf '%s\n' "$PG_ADMIN_PASSWORD" >"$pwfile"
    chmod 600 "$pwfile"
    own_for_pg "$pwfile"
    # C collation (--no-locale) + UTF8: identical on every machine, no locale packages needed.
    if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_ADMIN_USER" --pwfile="$pwfile" \
        -E UTF8 --no-locale --auth-local=scram-sha-256 --auth-host=scram-sha-256 >"$LOG_DIR/initdb.log" 2>&1; then
        rm -f "$pwfile"
        cat "$LOG_DIR/initdb.log" >&2
        die "initdb failed"
    fi
    rm -f "$pwfile"

    # Password auth everywhere; only loopback TCP is listened on anyway.
    cat >"$PG_DATA/pg_hba.conf" <<'EOF'
# Rookery dev cluster (deploy/dev/deps.sh). DEV ONLY.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  scram-sha-256
host    all       all   127.0.0.1/32   scram-sha-256
EOF
    cat >>"$PG_DATA/postgresql.conf" <<EOF

# ---- Rookery dev settings (deploy/dev/deps.sh). DEV ONLY. ----
# port and unix_socket_directories are also passed on the pg_ctl command line, so
# ROOKERY_PG_PORT and a moved checkout keep working; so are shared_preload_libraries and
# pg_stat_statements.* (PG_SERVER_OPTIONS in deps.sh), which override anything set here.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$(pg_socket_dir)'
max_connections = 300
password_encryption = 'scram-sha-256'
# Tests create and drop many databases: trade crash safety for speed. A host crash may
# corrupt this throwaway cluster; then just \`make clean-data\`.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    own_for_pg "$PG_DATA/pg_hba.conf" "$PG_DATA/postgresql.conf"
}

wait_pg_ready() {
    local i
    for ((i = 0; i < 60; i++)); do
        pg_is_up && return 0
        sleep 1
    done
    return 1
}

# True when the server on our port runs pg_stat_statements with PG_SERVER_OPTIONS'
# settings. They need a restart to change, so a server started by an older deps.sh (or
# by hand) lacks them until restarted.
pg_has_server_options() {
    local ok
    ok="$(admin_psql -d postgres -tA <<<"
SELECT 'pg_stat_statements' = ANY (string_to_array(
           replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
   AND current_setting('pg_stat_statements.max', true) = '$PG_STAT_STATEMENTS_MAX'
   AND current_setting('pg_stat_statements.track', true) = '$PG_STAT_STATEMENTS_TRACK'" 2>/dev/null)" ||
        return 1
    [[ $ok == t ]]
}

start_postgres() {
    if pg_is_up; then
        if pg_has_server_options; then
            log "Postgres already running on $PG_HOST:$PG_PORT"
            return 0
        fi
        if ! pg_pid_alive; then
            log "warning: the Postgres on $PG_HOST:$PG_PORT (not $PG_DATA) lacks pg_stat_statements" \
                "($PG_SERVER_OPTIONS); tests that count statements will fail"
            return 0
        fi
        # Clients connected now (a running stack or tests) lose their connections.
        log "Postgres runs without the pg_stat_statements settings ($PG_SERVER_OPTIONS): restarting it"
        stop_postgres
    fi
    if pg_pid_alive; then
        log "Postgres is starting up, waiting..."
        wait_pg_ready || die "Postgres (pid file $PG_DATA/postmaster.pid) is alive but not accepting connections; see $PG_LOG"
        return 0
    fi
    ensure_pg_binaries

    mkdir -p "$DATA" "$LOG_DIR" "$RUN_DIR"
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        [[ "$(cat "$PG_DATA/PG_VERSION")" == 15 ]] ||
            die "$PG_DATA holds a Postgres $(cat "$PG_DATA/PG_VERSION") cluster, expected 15; remove it (make clean-data)"
    elif [[ -d $PG_DATA && -n "$(ls -A "$PG_DATA")" ]]; then
        die "$PG_DATA exists but is not a Postgres cluster; remove it (make clean-data)"
    else
        init_cluster
    fi

    local sock
    sock="$(pg_socket_dir)"
    if [[ -n $sock ]]; then
        mkdir -p "$sock"
        chmod 700 "$sock"
        own_for_pg "$sock"
    else
        log "warning: checkout path too long for a unix socket, Postgres listens on TCP only"
    fi
    touch "$PG_LOG"
    own_for_pg "$PG_LOG"

    log "starting Postgres on $PG_HOST:$PG_PORT (log: $PG_LOG)"
    # pg_ctl hands -o to a shell: single-quote the socket path.
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k '$sock' $PG_SERVER_OPTIONS" start >&2; then
        tail -n 30 "$PG_LOG" >&2 || true
        die "Postgres did not start (port $PG_PORT busy?); see $PG_LOG"
    fi
    wait_pg_ready || die "Postgres started but does not accept connections; see $PG_LOG"
}

# An immediate stop: the postmaster SIGQUITs every backend, no checkpoint; the next start
# runs crash recovery. Only our own cluster (never whatever else listens on the port).
stop_postgres_immediate() {
    pg_pid_alive || die "Postgres of $PG_DATA is not running"
    log "stopping Postgres (immediate)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 60 stop >&2
}

stop_postgres() {
    if pg_pid_alive; then
        log "stopping Postgres"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >&2
    elif pg_is_up; then
        log "something else listens on $PG_HOST:$PG_PORT (not $PG_DATA); leaving it alone"
    else
        log "Postgres not running"
    fi
}

# ---------------------------------------------------------------- Redis

start_redis() {
    local i
    if redis_is_up; then
        log "Redis already running on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    if redis_pid_alive; then
        # Possibly still loading; a pid file that never answers is stale (pid reused).
        for ((i = 0; i < 25; i++)); do
            redis_is_up && return 0
            sleep 0.2
        done
        log "ignoring stale $REDIS_PIDFILE"
    fi
    ensure_redis_binaries
    mkdir -p "$REDIS_DIR" "$LOG_DIR" "$RUN_DIR"
    log "starting Redis on 127.0.0.1:$REDIS_PORT (log: $REDIS_LOG)"
    # A cache + event bus in dev: no RDB snapshots, no AOF.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" \
        --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" \
        --save '' --appendonly no >&2
    for ((i = 0; i < 50; i++)); do
        redis_is_up && return 0
        sleep 0.2
    done
    tail -n 20 "$REDIS_LOG" >&2 || true
    die "Redis did not start (port $REDIS_PORT busy?); see $REDIS_LOG"
}

stop_redis() {
    if redis_is_up; then
        log "stopping Redis"
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    elif ! redis_pid_alive; then
        log "Redis not running"
    fi
    if redis_pid_alive; then
        kill "$(head -n 1 "$REDIS_PIDFILE")" 2>/dev/null || true
    fi
    local i
    for ((i = 0; i < 50; i++)); do
        redis_pid_alive || redis_is_up || {
            rm -f "$REDIS_PIDFILE"
            return 0
        }
        sleep 0.2
    done
    die "Redis on port $REDIS_PORT did not stop"
}

# ---------------------------------------------------------------- Redis Cluster

cluster_node_up() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]; }
cluster_ok() {
    local port
    for port in $REDIS_CLUSTER_PORTS; do
        redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
}

# Three masters, no replicas, no persistence; the bus port is the client port + 100 (the
# default, + 10000, is past 65535 for these ports); nodes.conf (the slot map) survives restarts,
# so a stopped cluster comes back as the same cluster.
start_redis_cluster() {
    local port i nodes=()
    ensure_redis_binaries
    for port in $REDIS_CLUSTER_PORTS; do
        nodes+=("127.0.0.1:$port")
        cluster_node_up "$port" && continue
        mkdir -p "$REDIS_CLUSTER_DIR/$port" "$LOG_DIR" "$RUN_DIR"
        redis-server --bind 127.0.0.1 --port "$port" --dir "$REDIS_CLUSTER_DIR/$port" \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
            --cluster-port "$((port + 100))" \
            --daemonize yes --pidfile "$RUN_DIR/redis-cluster-$port.pid" \
            --logfile "$LOG_DIR/redis-cluster-$port.log" --save '' --appendonly no >&2
        for ((i = 0; i < 50; i++)); do
            cluster_node_up "$port" && break
            sleep 0.2
        done
        cluster_node_up "$port" || {
            # CI shows only our output: say why (a bind error names the busy port).
            tail -n 5 "$LOG_DIR/redis-cluster-$port.log" >&2 2>/dev/null || true
            die "Redis Cluster node $port did not start; see $LOG_DIR/redis-cluster-$port.log"
        }
    done
    if ! cluster_ok; then
        # A node that knows no other node has never been part of a cluster: create it.
        if redis-cli -h 127.0.0.1 -p "$REDIS_CLUSTER_BASE" cluster info | grep -q '^cluster_known_nodes:1\b'; then
            log "creating Redis Cluster on ${nodes[*]}"
            redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
        fi
        for ((i = 0; i < 100; i++)); do
            cluster_ok && break
            sleep 0.2
        done
        cluster_ok || die "Redis Cluster on ${nodes[*]} is not healthy (redis-cli -p $REDIS_CLUSTER_BASE cluster info)"
    fi
    log "Redis Cluster up on ${nodes[*]}"
}

stop_redis_cluster() {
    local port
    for port in $REDIS_CLUSTER_PORTS; do
        redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
}

# ---------------------------------------------------------------- main

cmd="${1:-start}"
(($# > 0)) && shift

# Components named on the command line; start defaults to Postgres and Redis, stop to all.
COMPONENTS=()
if [[ $cmd == start || $cmd == stop ]]; then
    for c in "$@"; do
        [[ $c == postgres || $c == redis || $c == redis-cluster ]] ||
            die "unknown component '$c' (postgres|redis|redis-cluster)"
        COMPONENTS+=("$c")
    done
    if ((${#COMPONENTS[@]} == 0)); then
        COMPONENTS=(postgres redis)
        [[ $cmd == stop ]] && COMPONENTS+=(redis-cluster)
    fi
fi

case "$cmd" in
start)
    for c in "${COMPONENTS[@]}"; do
        case "$c" in
        postgres)
            start_postgres
            # Every start (re)checks roles, database and schemas: cheap and self-healing.
            ensure_database rookery || die "bootstrapping database 'rookery' failed"
            if [[ $ROOKERY_DB != rookery ]]; then
                ensure_database "$ROOKERY_DB" || die "bootstrapping database '$ROOKERY_DB' failed"
            fi
            ;;
        redis) start_redis ;;
        redis-cluster) start_redis_cluster ;;
        esac
    done
    ensure_ffmpeg
    print_env
    ;;
stop)
    for c in "${COMPONENTS[@]}"; do
        case "$c" in
        postgres) stop_postgres ;;
        redis) stop_redis ;;
        redis-cluster) stop_redis_cluster ;;
        esac
    done
    ;;
status)
    if pg_is_up; then log "Postgres: up on $PG_HOST:$PG_PORT"; else log "Postgres: down"; fi
    if redis_is_up; then log "Redis: up on 127.0.0.1:$REDIS_PORT"; else log "Redis: down"; fi
    if cluster_ok; then log "Redis Cluster: up on ports $REDIS_CLUSTER_PORTS"; else log "Redis Cluster: down"; fi
    ;;
env)
    print_env
    ;;
tools)
    ensure_promtool
    ;;
fault-tools)
    ensure_fault_tools
    ;;
pg-stop-immediate)
    stop_postgres_immediate
    ;;
pg-restart-immediate)
    down="${1:-0}"
    [[ $down =~ ^[0-9]+([.][0-9]+)?$ ]] || die "usage: deps.sh pg-restart-immediate [SECONDS_DOWN]"
    stop_postgres_immediate
    sleep "$down"
    start_postgres
    ;;
drop-test-dbs)
    pg_is_up || die "Postgres is not running (deps.sh start)"
    drop_test_databases
    ;;
reset-db)
    (($# == 1)) || die "usage: deps.sh reset-db NAME"
    [[ $1 != rookery ]] || die "refusing to reset the dev database 'rookery' (make clean-data wipes everything)"
    pg_is_up || die "Postgres is not running (deps.sh start)"
    ensure_database "$1" recreate
    ;;
*)
    die "usage: deps.sh [start|stop|status|env|tools|fault-tools|pg-stop-immediate|pg-restart-immediate [SECS]|drop-test-dbs|reset-db NAME] [postgres|redis|redis-cluster]..."
    ;;
esac
