#!/usr/bin/env bash
# Measures the social graph's hot reads through the gateway with wrk at 64 connections:
# GET /api/v1/accounts/relationships for 40 ids and a followers page of 40, with warm
# account caches and with caches that keep nothing (L1 and L2 TTLs of 1 ms), next to a
# bare axum "hello" in the same run. Release builds, own ports and database; stops
# everything it started.
#   deploy/dev/bench-graph.sh [duration, default 15s]     ROUNDS=n (default 1) repeats each
#   measurement n times, alternating, to see this shared machine's run-to-run swing
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/dev/lib.sh
source deploy/dev/lib.sh

DURATION="${1:-15s}"
command -v wrk >/dev/null || { [[ $EUID -eq 0 ]] && apt-get install -y -qq wrk >/dev/null; } || die "install wrk (apt-get install wrk)"
command -v jq >/dev/null || { [[ $EUID -eq 0 ]] && apt-get install -y -qq jq >/dev/null; } || die "install jq"

export PROFILE=release ROOKERY_DB=rookery_bench GATEWAY_PORT=18280 USERS_GRPC_PORT=15280 USERS_HTTP_PORT=19280
HELLO_PORT=18299
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
cargo build --release -q --workspace --bins
"$TARGET/rookery-loadgen" baseline --listen "127.0.0.1:$HELLO_PORT" &
HELLO_PID=$!
trap 'kill $HELLO_PID 2>/dev/null || true; deploy/dev/stack.sh stop-bg >/dev/null 2>&1 || true' EXIT
B="http://127.0.0.1:$GATEWAY_PORT"
TOKEN=""

# Registers account $1 with app token $2; prints its user token.
register() {
    curl -fsS -X POST "$B/api/v1/accounts" -H "Authorization: Bearer $2" \
        -d "username=$1" -d "email=$1@example.com" -d 'password=correct horse' -d agreement=1 | jq -r .access_token
}
account_id() { curl -fsS "$B/api/v1/accounts/verify_credentials" -H "Authorization: Bearer $1" | jq -r .id; }

# A viewer, a star and 40 fans following the star. Sets TOKEN, STAR, IDS (id[]=... x40).
seed() {
    local app cid secret app_token fan fan_token
    app=$(curl -fsS -X POST "$B/api/v1/apps" -d client_name=bench -d redirect_uris=urn:ietf:wg:oauth:2.0:oob -d 'scopes=read write follow')
    cid=$(jq -r .client_id <<<"$app"); secret=$(jq -r .client_secret <<<"$app")
    app_token=$(curl -fsS -X POST "$B/oauth/token" -d grant_type=client_credentials -d "client_id=$cid" \
        -d "client_secret=$secret" -d 'scope=read write follow' | jq -r .access_token)
    TOKEN=$(register viewer "$app_token")
    STAR=$(account_id "$(register star "$app_token")")
    IDS=""
    for i in $(seq 1 40); do
        fan_token=$(register "fan$i" "$app_token")
        fan=$(account_id "$fan_token")
        curl -fsS -X POST "$B/api/v1/accounts/$STAR/follow" -H "Authorization: Bearer $fan_token" >/dev/null
        IDS+="${IDS:+&}id[]=$fan"
    done
    sleep 1 # let the follows' delayed cache invalidations pass
}

run() { # name url
    local out rps p50 p99
    out=$(wrk -t2 -c64 -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" "$2")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    grep -q "Non-2xx" <<<"$out" && die "$1: non-2xx responses: $(grep Non-2xx <<<"$out")"
    printf '%-40s %12s req/s   p50 %-9s p99 %-9s\n' "$1" "$rps" "$p50" "$p99" >&2
}

phase() { # label
    deploy/dev/stack.sh start-bg
    seed
    local rel="$B/api/v1/accounts/relationships?$IDS" page="$B/api/v1/accounts/$STAR/followers?limit=40"
    [[ $(curl -fsS "$rel" -H "Authorization: Bearer $TOKEN" | jq length) == 40 ]] || die "relationships: expected 40"
    [[ $(curl -fsS "$page" -H "Authorization: Bearer $TOKEN" | jq length) == 40 ]] || die "followers: expected 40"
    for ((i = 1; i <= ROUNDS; i++)); do
        run "relationships x40 ($1)" "$rel"
        run "followers page of 40 ($1)" "$page"
        run "bare axum hello" "http://127.0.0.1:$HELLO_PORT/hello"
    done
    deploy/dev/stack.sh stop-bg >/dev/null
}

ROUNDS="${ROUNDS:-1}"
log "wrk -t2 -c64 -d$DURATION, $ROUNDS round(s); gateway, users, Postgres, Redis and wrk share this machine's $(nproc) cores"
phase "warm caches"
USERS_ACCOUNT_L1_TTL_MS=1 USERS_ACCOUNT_L2_TTL_MS=1 phase "no account cache"
