#!/usr/bin/env bash
# make bench: brings the stack up as `make run` does (release builds, own ports and
# database), seeds a deterministic instance, runs the load harness's scenarios and prints
# one report (also in .data/bench/report.md and report.json). Stops what it started.
#
#   deploy/dev/bench.sh          the full bench (about 15 minutes on 2 cores)
#   deploy/dev/bench.sh smoke    a few seconds on a tiny instance, debug builds; fails on
#                                any error (part of make test, so the harness cannot rot)
#
# Env (defaults in brackets): ACCOUNTS [10000], STATUSES [100000], FAVOURITES [200000],
# MEAN_FOLLOWS [20], SEED [42], RATE [scenario 1 and 4: 1000 req/s], CONNECTIONS [1000],
# CROWD_RATE [scenario 2: 1000 req/s], CROWD_CONNECTIONS [10000], DURATION [60 s],
# MIX [the harness's default], SCENARIOS [profile,mixed,crowd,saturation,cold].
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/dev/lib.sh
source deploy/dev/lib.sh

MODE="${1:-full}"
if [[ $MODE == smoke ]]; then
    : "${PROFILE:=debug}" "${ACCOUNTS:=200}" "${STATUSES:=2000}" "${FAVOURITES:=2000}" "${MEDIA:=2}"
    : "${API_ACTIONS:=60}" "${RATE:=100}" "${CONNECTIONS:=20}" "${CROWD_RATE:=100}"
    : "${CROWD_CONNECTIONS:=200}" "${DURATION:=4}" "${PROFILE_DURATION:=1}"
    : "${SCENARIOS:=profile,mixed,crowd}" "${GATEWAY_PORT:=18580}" "${USERS_GRPC_PORT:=15580}"
    : "${USERS_HTTP_PORT:=19580}" "${BASELINE_PORT:=18599}"
    CHECK=(--check)
else
    [[ $MODE == full ]] || die "usage: bench.sh [smoke]"
    CHECK=()
fi
export PROFILE="${PROFILE:-release}"
export ROOKERY_DB="rookery_bench_${MODE}"
export GATEWAY_PORT="${GATEWAY_PORT:-18480}" USERS_GRPC_PORT="${USERS_GRPC_PORT:-15480}"
export USERS_HTTP_PORT="${USERS_HTTP_PORT:-19480}"
export REDIS_PREFIX="rk-bench-${MODE}"
# Scenario 3 times the push to every live feed: the author (10 000 followers) stays under
# the celebrity threshold, above which statuses are merged at read time instead.
export TIMELINE_CELEBRITY_FOLLOWERS="${TIMELINE_CELEBRITY_FOLLOWERS:-20000}"
BASELINE_PORT="${BASELINE_PORT:-18499}"
OUT="$DATA/bench"
mkdir -p "$OUT"

# 10 000 connections need as many descriptors in the harness and in the gateway (the
# services inherit this limit from here).
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > ${CROWD_CONNECTIONS:-10000} + 500)) ||
    log "warning: open files limited to $(ulimit -n); scenario 2 may fail to connect"

# stack.sh builds every binary of the workspace, rookery-loadgen included (building a
# subset of packages would resolve other features and rebuild half the tree).
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/$([[ $PROFILE == release ]] && echo release || echo debug)"

BASELINE_PID=""
cleanup() {
    [[ -z $BASELINE_PID ]] || kill "$BASELINE_PID" 2>/dev/null || true
    deploy/dev/stack.sh stop-bg >/dev/null 2>&1 || true
}
trap cleanup EXIT
deploy/dev/stack.sh start-bg
"$TARGET/rookery-loadgen" baseline --listen "127.0.0.1:$BASELINE_PORT" --grpc "http://127.0.0.1:$USERS_GRPC_PORT" &
BASELINE_PID=$!

GATEWAY="127.0.0.1:$GATEWAY_PORT"
"$TARGET/rookery-loadgen" seed \
    --users-db "$(service_db_url users)" --timeline-db "$(service_db_url timeline)" \
    --gateway "$GATEWAY" --domain "$GATEWAY" --base-url "http://$GATEWAY" \
    --seed "${SEED:-42}" --accounts "${ACCOUNTS:-10000}" --statuses "${STATUSES:-100000}" \
    --favourites "${FAVOURITES:-200000}" --mean-follows "${MEAN_FOLLOWS:-20}" \
    --media "${MEDIA:-24}" --api-actions "${API_ACTIONS:-2000}" --out "$OUT/dataset-$MODE.json"

PORT_ENV="GATEWAY_PORT=$GATEWAY_PORT USERS_GRPC_PORT=$USERS_GRPC_PORT USERS_HTTP_PORT=$USERS_HTTP_PORT"
"$TARGET/rookery-loadgen" bench "${CHECK[@]}" \
    --dataset "$OUT/dataset-$MODE.json" --gateway "$GATEWAY" --baseline "127.0.0.1:$BASELINE_PORT" \
    --metrics "gateway=$GATEWAY" \
    --metrics "users=127.0.0.1:$USERS_HTTP_PORT" \
    --metrics "timeline=127.0.0.1:$((USERS_HTTP_PORT + 1))" \
    --metrics "notifications=127.0.0.1:$((USERS_HTTP_PORT + 2))" \
    --metrics "media=127.0.0.1:$((USERS_HTTP_PORT + 3))" \
    --pidfile "$RUN_DIR/stack-$GATEWAY_PORT.pids" \
    --admin-db "$ROOKERY_TEST_ADMIN_URL" --database "$ROOKERY_DB" \
    --redis-url "$REDIS_URL" --redis-prefix "$REDIS_PREFIX" \
    --rate "${RATE:-1000}" --connections "${CONNECTIONS:-1000}" \
    --crowd-rate "${CROWD_RATE:-1000}" --crowd-connections "${CROWD_CONNECTIONS:-10000}" \
    --duration "${DURATION:-60}" --profile-duration "${PROFILE_DURATION:-5}" \
    ${MIX:+--mix "$MIX"} --scenarios "${SCENARIOS:-profile,mixed,crowd,saturation,cold}" \
    --stop-cmd "$PORT_ENV deploy/dev/stack.sh stop-bg" \
    --start-cmd "$PORT_ENV KEEP_DB=1 deploy/dev/stack.sh start-bg" \
    --json "$OUT/report-$MODE.json" | tee "$OUT/report-$MODE.md"
