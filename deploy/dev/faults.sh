#!/usr/bin/env bash
# make test-faults: the fault-injection suite (tests/faults). Runs the real processes
# (stack.sh start-bg, debug builds) against a private Postgres + Redis under
# .data/faults/data (ports 15532/16479), so killing, pausing and restarting them harms
# neither the dev stack nor other tests; drives them at a steady rate from pytest, injects
# one fault per scenario and asserts the outcome. Each scenario prints a result row; the
# table is printed at the end and written to .data/faults/report.md.
#
#   deploy/dev/faults.sh [PYTEST ARGS...]      e.g. -k redis_kill, -x
#
# Env: NO_BUILD=1 runs the binaries already built (stack.sh), FAULTS_KEEP_LOGS=1 keeps the
# process logs, GATEWAY_REQUEST_TIMEOUT_MS/GRPC_CALL_TIMEOUT_MS/GATEWAY_MAX_IN_FLIGHT/
# GATEWAY_HEADER_READ_TIMEOUT_MS/REDIS_TIMEOUT_MS override the suite's settings below.
#
# Everything it started is stopped at the end, pass or fail, and the private data folder
# is deleted; the process logs are kept in .data/faults/logs only when something failed
# (or always with FAULTS_KEEP_LOGS=1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

FAULTS_DIR="$ROOT/.data/faults"
# Private Postgres/Redis (lib.sh derives every path and URL from these).
export ROOKERY_DATA_DIR="$FAULTS_DIR/data"
export ROOKERY_PG_PORT="${FAULTS_PG_PORT:-15532}" ROOKERY_REDIS_PORT="${FAULTS_REDIS_PORT:-16479}"
# Never started here; set so that nothing in this run can reach the dev Redis Cluster.
export ROOKERY_REDIS_CLUSTER_PORT=56580
# The dev cluster trades durability for speed (synchronous_commit=off): an immediate stop
# would then lose commits that were already acknowledged, which scenario 3 checks for.
# fsync stays off: a killed postmaster loses nothing the kernel already has.
export ROOKERY_PG_OPTIONS="-c synchronous_commit=on"
# The stack: own ports, database and Redis prefix.
export ROOKERY_DB=rookery_faults REDIS_PREFIX=rk-faults
export GATEWAY_PORT="${FAULTS_GATEWAY_PORT:-18380}" USERS_GRPC_PORT="${FAULTS_USERS_GRPC_PORT:-15351}"
export USERS_HTTP_PORT="${FAULTS_USERS_HTTP_PORT:-19401}"
unset ROOKERY_DOMAIN ROOKERY_BASE_URL GATEWAY_USERS_URL GATEWAY_TIMELINE_URL \
    GATEWAY_NOTIFICATIONS_URL GATEWAY_MEDIA_URL
# Deadlines and limits the scenarios are written against (the tests read them back).
export GATEWAY_REQUEST_TIMEOUT_MS="${GATEWAY_REQUEST_TIMEOUT_MS:-2000}"
export GRPC_CALL_TIMEOUT_MS="${GRPC_CALL_TIMEOUT_MS:-1500}"
export GATEWAY_MAX_IN_FLIGHT="${GATEWAY_MAX_IN_FLIGHT:-32}"
export GATEWAY_HEADER_READ_TIMEOUT_MS="${GATEWAY_HEADER_READ_TIMEOUT_MS:-3000}"
export REDIS_TIMEOUT_MS="${REDIS_TIMEOUT_MS:-100}"
# The budgets above are the production ones scaled down five times (10 s request, 2 s
# connection acquire); the acquire timeout bounds how long a write waits for Postgres
# while it is down before it fails with 503, so it is scaled with them.
export DATABASE_ACQUIRE_TIMEOUT_MS="${DATABASE_ACQUIRE_TIMEOUT_MS:-400}"
# On SIGTERM the gateway reports draining on /ready while it keeps serving this long
# (in Kubernetes the preStop hook plays this part).
export GATEWAY_DRAIN_DELAY_MS="${GATEWAY_DRAIN_DELAY_MS:-1000}"
# The load follows and unfollows all the time; the per-account daily cap (400) is not
# what is under test.
export USERS_FOLLOW_LIMIT=1000000

# shellcheck source=deploy/dev/lib.sh
source "$ROOT/deploy/dev/lib.sh"
DEPS="$ROOT/deploy/dev/deps.sh"
STACK="$ROOT/deploy/dev/stack.sh"

# 10 000 idle connections (scenario 8) need as many descriptors in pytest and in the
# gateway (the stack inherits this limit from here).
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 12000)) || log "warning: open files limited to $(ulimit -n); the idle-connection scenario will fail"

# Resumes a SIGSTOPped Redis (scenario 2 interrupted): a stopped one would hang shutdown.
resume_redis() {
    local pid
    pid="$(head -n 1 "$RUN_DIR/redis.pid" 2>/dev/null || true)"
    if [[ $pid =~ ^[0-9]+$ ]]; then
        kill -CONT "$pid" 2>/dev/null || true
    fi
}

# shellcheck disable=SC2317 # reached through the EXIT trap
teardown() {
    local status=$?
    trap - EXIT INT TERM
    log "tearing down the fault stack"
    resume_redis
    "$STACK" stop-bg >/dev/null 2>&1 || true
    "$DEPS" stop postgres redis >/dev/null 2>&1 || true
    if [[ -d $ROOKERY_DATA_DIR/log ]]; then
        rm -rf "$FAULTS_DIR/logs"
        if ((status != 0)) || [[ -n ${FAULTS_KEEP_LOGS:-} ]]; then
            mv "$ROOKERY_DATA_DIR/log" "$FAULTS_DIR/logs"
            log "process logs kept in $FAULTS_DIR/logs"
        fi
    fi
    rm -rf "$ROOKERY_DATA_DIR"
    [[ -f $FAULTS_DIR/report.md ]] && log "report: $FAULTS_DIR/report.md"
    exit "$status"
}

# A previous run that was killed may have left its stack or cluster behind: start clean.
resume_redis
"$STACK" stop-bg >/dev/null 2>&1 || true
"$DEPS" stop postgres redis >/dev/null 2>&1 || true
rm -rf "$ROOKERY_DATA_DIR" "$FAULTS_DIR/report.md"
mkdir -p "$FAULTS_DIR"

trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$DEPS" fault-tools
"$ROOT/deploy/dev/pyenv.sh"
"$DEPS" start postgres redis >/dev/null
"$STACK" start-bg

export FAULTS_DIR ROOKERY_URL="http://127.0.0.1:${GATEWAY_PORT}"
status=0
.venv/bin/python -m pytest -p no:cacheprovider -v tests/faults "$@" || status=$?
exit "$status"
