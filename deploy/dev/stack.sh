#!/usr/bin/env bash
# Builds and runs the whole Rookery stack (rookery-users, rookery-timeline,
# rookery-notifications, rookery-media, rookery-gateway) locally.
#
#   stack.sh run        foreground (make run): logs on the terminal, Ctrl-C stops the
#                       services and whichever of Postgres/Redis this run started
#   stack.sh start-bg   background (tests): returns once the gateway is ready; pids in
#                       .data/run/stack-<GATEWAY_PORT>.pids, logs in .data/log/*-<port>.log
#   stack.sh stop-bg    stops the background stack of GATEWAY_PORT
#   stack.sh pid SVC    prints the pid of one process of that stack (users, timeline,
#                       notifications, media or gateway)
#   stack.sh kill-one SVC [SIGNAL]
#                       sends SIGNAL (KILL) to it and waits until it is gone
#   stack.sh start-one SVC
#                       starts it again (same binary, environment and log) when it is not
#                       running; returns once its /ready answers 200
#   stack.sh restart-one SVC
#                       graceful stop (TERM, 10 s, then KILL), then start-one
#
# Env: PROFILE (debug|release|<cargo profile>), CARGO_TARGET_DIR, GATEWAY_PORT (8080),
# USERS_GRPC_PORT (50051), USERS_HTTP_PORT (9101), TIMELINE_GRPC_PORT (USERS_GRPC_PORT + 1),
# TIMELINE_HTTP_PORT (USERS_HTTP_PORT + 1), NOTIFICATIONS_GRPC_PORT (USERS_GRPC_PORT + 2),
# NOTIFICATIONS_HTTP_PORT (USERS_HTTP_PORT + 2), MEDIA_GRPC_PORT (USERS_GRPC_PORT + 3),
# MEDIA_HTTP_PORT (USERS_HTTP_PORT + 3), MEDIA_LOCAL_DIR (.data/media, or
# .data/media-<db> for another database), ROOKERY_DB (rookery; start-bg drops and
# recreates any other name, unless KEEP_DB=1), ROOKERY_DOMAIN, ROOKERY_BASE_URL, READY_TIMEOUT (60 s),
# NO_BUILD (set: skip the cargo build, use the binaries there are),
# GATEWAY_{USERS,TIMELINE,NOTIFICATIONS,MEDIA}_URL (where the gateway reaches each service;
# default its gRPC port, e.g. a fault proxy in between). Any other variable in the
# environment (GATEWAY_REQUEST_TIMEOUT_MS, REDIS_TIMEOUT_MS, ...) reaches every process.
set -euo pipefail

# shellcheck source=deploy/dev/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

DEPS="$ROOT/deploy/dev/deps.sh"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
USERS_GRPC_PORT="${USERS_GRPC_PORT:-50051}"
USERS_HTTP_PORT="${USERS_HTTP_PORT:-9101}"
TIMELINE_GRPC_PORT="${TIMELINE_GRPC_PORT:-$((USERS_GRPC_PORT + 1))}"
TIMELINE_HTTP_PORT="${TIMELINE_HTTP_PORT:-$((USERS_HTTP_PORT + 1))}"
NOTIFICATIONS_GRPC_PORT="${NOTIFICATIONS_GRPC_PORT:-$((USERS_GRPC_PORT + 2))}"
NOTIFICATIONS_HTTP_PORT="${NOTIFICATIONS_HTTP_PORT:-$((USERS_HTTP_PORT + 2))}"
MEDIA_GRPC_PORT="${MEDIA_GRPC_PORT:-$((USERS_GRPC_PORT + 3))}"
MEDIA_HTTP_PORT="${MEDIA_HTTP_PORT:-$((USERS_HTTP_PORT + 3))}"
READY_TIMEOUT="${READY_TIMEOUT:-60}"
GATEWAY_URL="http://127.0.0.1:${GATEWAY_PORT}"
PIDFILE="$RUN_DIR/stack-${GATEWAY_PORT}.pids"

# ---------------------------------------------------------------- build

case "${PROFILE:-debug}" in
debug | dev) PROFILE_DIR=debug CARGO_PROFILE_FLAG="" ;;
release) PROFILE_DIR=release CARGO_PROFILE_FLAG="--release" ;;
*) PROFILE_DIR="$PROFILE" CARGO_PROFILE_FLAG="--profile $PROFILE" ;;
esac
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR" # cargo resolves it from the cwd (= ROOT)
BIN_DIR="$TARGET_DIR/$PROFILE_DIR"

build() {
    if [[ -n ${NO_BUILD:-} ]]; then
        log "NO_BUILD set: using the binaries already in $BIN_DIR"
    else
        log "building (cargo build --workspace --bins${CARGO_PROFILE_FLAG:+ $CARGO_PROFILE_FLAG})"
        # shellcheck disable=SC2086 # the flag is empty or words on purpose
        cargo build --workspace --bins ${CARGO_PROFILE_FLAG}
    fi
    local bin
    for bin in rookery-users rookery-timeline rookery-notifications rookery-media rookery-gateway; do
        [[ -x $BIN_DIR/$bin ]] || die "$BIN_DIR/$bin not found after the build"
    done
}

# ---------------------------------------------------------------- services

# Environment of each process; the same in both modes, only ports and database differ.
# Both processes must agree on the domain (acct lookups) and on the Redis prefix (cache
# invalidations and token revocations travel under it); each stack gets its own prefix so
# a test stack never hears the dev stack's events.
DOMAIN="${ROOKERY_DOMAIN:-127.0.0.1:${GATEWAY_PORT}}"
PREFIX="${REDIS_PREFIX:-rk}"
[[ $ROOKERY_DB == rookery ]] || PREFIX="${REDIS_PREFIX:-rk-$ROOKERY_DB}"
users_env=(
    USERS_DATABASE_URL="$USERS_DATABASE_URL"
    REDIS_URL="$REDIS_URL"
    REDIS_PREFIX="$PREFIX"
    ROOKERY_DOMAIN="$DOMAIN"
    USERS_GRPC_ADDR="127.0.0.1:${USERS_GRPC_PORT}"
    USERS_HTTP_ADDR="127.0.0.1:${USERS_HTTP_PORT}"
)
timeline_env=(
    TIMELINE_DATABASE_URL="$TIMELINE_DATABASE_URL"
    REDIS_URL="$REDIS_URL"
    REDIS_PREFIX="$PREFIX"
    ROOKERY_DOMAIN="$DOMAIN"
    ROOKERY_BASE_URL="${ROOKERY_BASE_URL:-${GATEWAY_URL}}"
    USERS_URL="http://127.0.0.1:${USERS_GRPC_PORT}"
    TIMELINE_GRPC_ADDR="127.0.0.1:${TIMELINE_GRPC_PORT}"
    TIMELINE_HTTP_ADDR="127.0.0.1:${TIMELINE_HTTP_PORT}"
)
notifications_env=(
    NOTIFICATIONS_DATABASE_URL="$NOTIFICATIONS_DATABASE_URL"
    REDIS_URL="$REDIS_URL"
    REDIS_PREFIX="$PREFIX"
    USERS_URL="http://127.0.0.1:${USERS_GRPC_PORT}"
    TIMELINE_URL="http://127.0.0.1:${TIMELINE_GRPC_PORT}"
    NOTIFICATIONS_GRPC_ADDR="127.0.0.1:${NOTIFICATIONS_GRPC_PORT}"
    NOTIFICATIONS_HTTP_ADDR="127.0.0.1:${NOTIFICATIONS_HTTP_PORT}"
)
MEDIA_DIR="${MEDIA_LOCAL_DIR:-$DATA/media}"
[[ $ROOKERY_DB == rookery ]] || MEDIA_DIR="${MEDIA_LOCAL_DIR:-$DATA/media-$ROOKERY_DB}"
media_env=(
    MEDIA_DATABASE_URL="$MEDIA_DATABASE_URL"
    REDIS_URL="$REDIS_URL"
    REDIS_PREFIX="$PREFIX"
    MEDIA_LOCAL_DIR="$MEDIA_DIR"
    MEDIA_GRPC_ADDR="127.0.0.1:${MEDIA_GRPC_PORT}"
    MEDIA_HTTP_ADDR="127.0.0.1:${MEDIA_HTTP_PORT}"
)
gateway_env=(
    GATEWAY_ADDR="127.0.0.1:${GATEWAY_PORT}"
    USERS_URL="${GATEWAY_USERS_URL:-http://127.0.0.1:${USERS_GRPC_PORT}}"
    TIMELINE_URL="${GATEWAY_TIMELINE_URL:-http://127.0.0.1:${TIMELINE_GRPC_PORT}}"
    NOTIFICATIONS_URL="${GATEWAY_NOTIFICATIONS_URL:-http://127.0.0.1:${NOTIFICATIONS_GRPC_PORT}}"
    MEDIA_URL="${GATEWAY_MEDIA_URL:-http://127.0.0.1:${MEDIA_GRPC_PORT}}"
    REDIS_URL="$REDIS_URL"
    REDIS_PREFIX="$PREFIX"
    ROOKERY_DOMAIN="$DOMAIN"
    ROOKERY_BASE_URL="${ROOKERY_BASE_URL:-${GATEWAY_URL}}"
)

log_file() { printf '%s/%s%s.log' "$LOG_DIR" "$1" "$LOG_SUFFIX"; }

migrate() {
    log "migrating database '$ROOKERY_DB' (rookery-{users,timeline,notifications,media} migrate)"
    env "${users_env[@]}" "$BIN_DIR/rookery-users" migrate
    env "${timeline_env[@]}" "$BIN_DIR/rookery-timeline" migrate
    env "${notifications_env[@]}" "$BIN_DIR/rookery-notifications" migrate
    env "${media_env[@]}" "$BIN_DIR/rookery-media" migrate
}

# start_service NAME ENV... -- sets LAST_PID. In the foreground mode the output goes to
# the terminal prefixed with [NAME] and is also appended to the log file; in the
# background mode only to the log file.
LAST_PID=""
start_service() {
    local name=$1 log
    shift
    log="$(log_file "$name")"
    if [[ $MODE == run ]]; then
        # The prefixer ignores INT/TERM so it prints the services' shutdown logs too; it
        # exits when the service closes its output.
        env "$@" "$BIN_DIR/rookery-$name" > >(
            trap '' INT TERM
            tee -a "$log" | sed -u "s/^/[$name] /"
        ) 2>&1 &
    else
        nohup env "$@" "$BIN_DIR/rookery-$name" >>"$log" 2>&1 </dev/null &
    fi
    LAST_PID=$!
    echo "$LAST_PID" >>"$PIDFILE"
    log "started rookery-$name (pid $LAST_PID, log $log)"
}

# Only signal pids that still are our binaries (a stale pid file may name a reused pid).
is_ours() {
    local comm
    comm="$(cat "/proc/$1/comm" 2>/dev/null || true)"
    [[ $comm == rookery-* ]]
}

# stop_pids PID...: SIGTERM, up to 10 s for a graceful drain, then SIGKILL.
stop_pids() {
    local pid live=() i
    for pid in "$@"; do
        is_ours "$pid" && live+=("$pid")
    done
    ((${#live[@]} > 0)) || return 0
    log "stopping pids ${live[*]}"
    kill -TERM "${live[@]}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        local still=()
        for pid in "${live[@]}"; do
            kill -0 "$pid" 2>/dev/null && still+=("$pid")
        done
        ((${#still[@]} > 0)) || return 0
        sleep 0.1
    done
    log "still running after 10 s, killing ${still[*]}"
    kill -KILL "${still[@]}" 2>/dev/null || true
}

# Stops whatever the pid file of this gateway port lists (a previous crashed run included).
stop_pidfile() {
    [[ -f $PIDFILE ]] || return 0
    local pids
    mapfile -t pids <"$PIDFILE"
    ((${#pids[@]} == 0)) || stop_pids "${pids[@]}"
    rm -f "$PIDFILE"
}

show_logs() {
    local name
    for name in users timeline notifications media gateway; do
        log "---- last lines of $(log_file "$name") ----"
        tail -n 40 "$(log_file "$name")" >&2 2>/dev/null || true
    done
}

# Waits for GET /ready on the gateway; fails early if a service died.
wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT)) pid
    log "waiting for $GATEWAY_URL/ready (up to ${READY_TIMEOUT}s)"
    while ((SECONDS < deadline)); do
        if curl -fsS -o /dev/null --max-time 2 "$GATEWAY_URL/ready" 2>/dev/null; then
            return 0
        fi
        for pid in "$USERS_PID" "$TIMELINE_PID" "$NOTIFICATIONS_PID" "$MEDIA_PID" "$GATEWAY_PID"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                log "a service exited during start-up (pid $pid)"
                show_logs
                return 1
            fi
        done
        sleep 0.5
    done
    log "timed out after ${READY_TIMEOUT}s waiting for $GATEWAY_URL/ready"
    show_logs
    return 1
}

# A TCP connect that succeeds means someone listens (bash's /dev/tcp, no extra tool).
port_busy() { (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# Live pids of the pid file of this gateway port.
live_pidfile_pids() {
    [[ -f $PIDFILE ]] || return 0
    local pid
    while read -r pid; do
        [[ $pid =~ ^[0-9]+$ ]] && is_ours "$pid" && echo "$pid"
    done <"$PIDFILE"
    # A dead last pid must not become the function's status (set -e callers).
    return 0
}

# Never kill another terminal's `make run`; a stack left behind by a killed script is
# stopped by stop-bg, which works for any port.
refuse_if_running() {
    local pids
    pids="$(live_pidfile_pids | xargs)"
    [[ -z $pids ]] || die "a stack already runs on port $GATEWAY_PORT (pids $pids); stop it with: GATEWAY_PORT=$GATEWAY_PORT deploy/dev/stack.sh stop-bg"
}

start_services() {
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    [[ $MODE == bg ]] || refuse_if_running
    stop_pidfile # start-bg: restart a previous background stack on the same ports
    local port
    for port in "$GATEWAY_PORT" "$USERS_GRPC_PORT" "$USERS_HTTP_PORT" "$TIMELINE_GRPC_PORT" "$TIMELINE_HTTP_PORT" \
        "$NOTIFICATIONS_GRPC_PORT" "$NOTIFICATIONS_HTTP_PORT" "$MEDIA_GRPC_PORT" "$MEDIA_HTTP_PORT"; do
        port_busy "$port" && die "port $port is already in use (another stack? try: GATEWAY_PORT=$GATEWAY_PORT deploy/dev/stack.sh stop-bg)"
    done
    : >"$(log_file users)"
    : >"$(log_file timeline)"
    : >"$(log_file notifications)"
    : >"$(log_file media)"
    : >"$(log_file gateway)"
    OWN_PIDFILE=1
    start_service users "${users_env[@]}"
    USERS_PID=$LAST_PID
    start_service timeline "${timeline_env[@]}"
    TIMELINE_PID=$LAST_PID
    start_service notifications "${notifications_env[@]}"
    NOTIFICATIONS_PID=$LAST_PID
    start_service media "${media_env[@]}"
    MEDIA_PID=$LAST_PID
    start_service gateway "${gateway_env[@]}"
    GATEWAY_PID=$LAST_PID
}

# ---------------------------------------------------------------- modes

STARTED_PG=0
STARTED_REDIS=0
USERS_PID=""
TIMELINE_PID=""
NOTIFICATIONS_PID=""
MEDIA_PID=""
GATEWAY_PID=""
CLEANED=0
OWN_PIDFILE=0

cleanup_run() {
    ((CLEANED == 0)) || return 0
    CLEANED=1
    trap - INT TERM
    # Only what this invocation started (the pid file may belong to another run).
    if [[ -n $USERS_PID || -n $TIMELINE_PID || -n $NOTIFICATIONS_PID || -n $MEDIA_PID || -n $GATEWAY_PID ]]; then
        # shellcheck disable=SC2086 # unset pids simply vanish
        stop_pids $USERS_PID $TIMELINE_PID $NOTIFICATIONS_PID $MEDIA_PID $GATEWAY_PID || true
        sleep 0.3 # let the log prefixers print the last shutdown lines
    fi
    ((OWN_PIDFILE == 0)) || rm -f "$PIDFILE"
    # Only stop the dependencies this invocation started: a `make deps` stays up.
    ((STARTED_REDIS == 0)) || "$DEPS" stop redis || true
    ((STARTED_PG == 0)) || "$DEPS" stop postgres || true
}

run() {
    MODE="run"
    LOG_SUFFIX=""
    trap cleanup_run EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    refuse_if_running # before building: fail fast
    pg_is_up || STARTED_PG=1
    redis_is_up || STARTED_REDIS=1
    # Also creates ROOKERY_DB (without dropping it) when it is not the default.
    "$DEPS" start >/dev/null

    build
    migrate
    start_services
    wait_ready || exit 1

    log "Rookery is up: $GATEWAY_URL"
    log "Try: curl -s $GATEWAY_URL/api/v1/instance   (Ctrl-C stops everything)"
    # Returns when a service exits (or on Ctrl-C, through the traps).
    local status=0
    wait -n "$USERS_PID" "$TIMELINE_PID" "$NOTIFICATIONS_PID" "$MEDIA_PID" "$GATEWAY_PID" || status=$?
    log "a service exited (status $status), shutting down"
    exit "$status"
}

start_bg() {
    MODE="bg"
    LOG_SUFFIX="-${GATEWAY_PORT}"
    ROOKERY_DB=rookery "$DEPS" start >/dev/null # ROOKERY_DB itself is recreated just below
    # KEEP_DB=1: restart on the data already there (the bench's cold start).
    if [[ $ROOKERY_DB != rookery && -z ${KEEP_DB:-} ]]; then
        log "recreating database '$ROOKERY_DB'"
        ensure_database "$ROOKERY_DB" recreate || die "cannot recreate database '$ROOKERY_DB'"
    fi
    build
    migrate
    start_services
    if ! wait_ready; then
        stop_pidfile
        exit 1
    fi
    log "Rookery is up in the background: $GATEWAY_URL (stop: GATEWAY_PORT=$GATEWAY_PORT $0 stop-bg)"
}

# ---------------------------------------------------------------- one process

SERVICE_NAMES="users timeline notifications media gateway"

check_service_name() {
    [[ " $SERVICE_NAMES " == *" $1 "* ]] || die "unknown service '$1' ($SERVICE_NAMES)"
}

# The live pid of rookery-SVC in this stack's pid file (matched on the program path: the
# kernel's comm is cut to 15 characters), or nothing.
service_pid() {
    local pid argv0
    while read -r pid; do
        argv0="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1 || true)"
        if [[ ${argv0##*/} == "rookery-$1" ]]; then
            echo "$pid"
            return 0
        fi
    done < <(live_pidfile_pids)
}

# Rewrites the pid file with only the pids that are still ours and alive.
prune_pidfile() {
    [[ -f $PIDFILE ]] || return 0
    local live
    live="$(live_pidfile_pids)"
    printf '%s\n' "$live" | sed '/^$/d' >"$PIDFILE.tmp"
    mv "$PIDFILE.tmp" "$PIDFILE"
}

ready_url() {
    case "$1" in
    gateway) printf '%s/ready' "$GATEWAY_URL" ;;
    *)
        local var="${1^^}_HTTP_PORT"
        printf 'http://127.0.0.1:%s/ready' "${!var}"
        ;;
    esac
}

kill_one() {
    local svc=$1 sig=${2:-KILL} pid i
    check_service_name "$svc"
    pid="$(service_pid "$svc")"
    [[ -n $pid ]] || die "rookery-$svc of the stack on port $GATEWAY_PORT is not running"
    log "sending SIG${sig#SIG} to rookery-$svc (pid $pid)"
    kill -s "${sig#SIG}" "$pid"
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && die "rookery-$svc (pid $pid) still runs 15 s after SIG${sig#SIG}"
    prune_pidfile
}

start_one() {
    local svc=$1 pid env_name url deadline
    check_service_name "$svc"
    [[ -f $PIDFILE ]] || die "no stack runs on port $GATEWAY_PORT (start-bg first)"
    pid="$(service_pid "$svc")"
    [[ -z $pid ]] || die "rookery-$svc already runs (pid $pid)"
    prune_pidfile
    MODE="bg"
    LOG_SUFFIX="-${GATEWAY_PORT}"
    env_name="${svc}_env[@]"
    start_service "$svc" "${!env_name}"
    pid=$LAST_PID
    url="$(ready_url "$svc")"
    deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$(log_file "$svc")" >&2 || true
            die "rookery-$svc exited during start-up"
        fi
        sleep 0.2
    done
    die "rookery-$svc not ready after ${READY_TIMEOUT}s ($url)"
}

stop_bg() {
    if [[ -f $PIDFILE ]]; then
        stop_pidfile
        log "stopped the stack on port $GATEWAY_PORT"
    else
        log "no stack running on port $GATEWAY_PORT"
    fi
}

case "${1:-run}" in
run) run ;;
start-bg) start_bg ;;
stop-bg) stop_bg ;;
pid)
    (($# == 2)) || die "usage: stack.sh pid SVC"
    check_service_name "$2"
    pid="$(service_pid "$2")"
    [[ -n $pid ]] || die "rookery-$2 of the stack on port $GATEWAY_PORT is not running"
    echo "$pid"
    ;;
kill-one)
    (($# == 2 || $# == 3)) || die "usage: stack.sh kill-one SVC [SIGNAL]"
    kill_one "$2" "${3:-KILL}"
    ;;
start-one)
    (($# == 2)) || die "usage: stack.sh start-one SVC"
    start_one "$2"
    ;;
restart-one)
    (($# == 2)) || die "usage: stack.sh restart-one SVC"
    check_service_name "$2"
    pid="$(service_pid "$2")"
    if [[ -n $pid ]]; then
        stop_pids "$pid"
        prune_pidfile
    fi
    start_one "$2"
    ;;
*) die "usage: stack.sh [run|start-bg|stop-bg|pid SVC|kill-one SVC [SIGNAL]|start-one SVC|restart-one SVC]" ;;
esac
