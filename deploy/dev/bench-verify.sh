#!/usr/bin/env bash
# Measures authenticated GET /api/v1/accounts/verify_credentials through the gateway
# (warm caches) against a bare axum "hello" in the same run, with wrk at 64 connections.
# Release builds, own ports and database; stops everything it started.
#   deploy/dev/bench-verify.sh [duration, default 20s]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/dev/lib.sh
source deploy/dev/lib.sh

DURATION="${1:-20s}"
command -v wrk >/dev/null || { [[ $EUID -eq 0 ]] && apt-get install -y -qq wrk >/dev/null; } || die "install wrk (apt-get install wrk)"
command -v jq >/dev/null || { [[ $EUID -eq 0 ]] && apt-get install -y -qq jq >/dev/null; } || die "install jq"

export PROFILE=release ROOKERY_DB=rookery_bench GATEWAY_PORT=18280 USERS_GRPC_PORT=15280 USERS_HTTP_PORT=19280
HELLO_PORT=18299
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
cargo build --release -q --workspace --bins
deploy/dev/stack.sh start-bg
"$TARGET/rookery-loadgen" baseline --listen "127.0.0.1:$HELLO_PORT" &
HELLO_PID=$!
trap 'kill $HELLO_PID 2>/dev/null || true; deploy/dev/stack.sh stop-bg >/dev/null 2>&1 || true' EXIT

B="http://127.0.0.1:$GATEWAY_PORT"
app=$(curl -fsS -X POST "$B/api/v1/apps" -d client_name=bench -d redirect_uris=urn:ietf:wg:oauth:2.0:oob -d 'scopes=read write')
cid=$(jq -r .client_id <<<"$app"); secret=$(jq -r .client_secret <<<"$app")
app_token=$(curl -fsS -X POST "$B/oauth/token" -d grant_type=client_credentials -d "client_id=$cid" -d "client_secret=$secret" -d 'scope=read write' | jq -r .access_token)
token=$(curl -fsS -X POST "$B/api/v1/accounts" -H "Authorization: Bearer $app_token" \
    -d username=bench -d email=bench@example.com -d 'password=correct horse' -d agreement=1 | jq -r .access_token)
curl -fsS "$B/api/v1/accounts/verify_credentials" -H "Authorization: Bearer $token" >/dev/null # warm the caches

run() { # name url [header]
    local out
    out=$(wrk -t2 -c64 -d"$DURATION" --latency ${3:+-H "$3"} "$2")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    grep -q "Non-2xx" <<<"$out" && die "$1: non-2xx responses: $(grep Non-2xx <<<"$out")"
    printf '%-28s %12s req/s   p50 %-9s p99 %-9s\n' "$1" "$rps" "$p50" "$p99" >&2
    echo "$rps"
}
ROUNDS="${ROUNDS:-3}"
log "wrk -t2 -c64 -d$DURATION, $ROUNDS alternating rounds; gateway, users and wrk share this machine's $(nproc) cores"
hellos=(); verifies=()
for ((i = 1; i <= ROUNDS; i++)); do
    hellos+=("$(run "bare axum hello (round $i)" "http://127.0.0.1:$HELLO_PORT/hello")")
    verifies+=("$(run "verify_credentials (round $i)" "$B/api/v1/accounts/verify_credentials" "Authorization: Bearer $token")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
hello=$(median "${hellos[@]}"); verify=$(median "${verifies[@]}")
awk -v v="$verify" -v h="$hello" 'BEGIN { printf "median: hello %.0f req/s, verify_credentials %.0f req/s, ratio %.1f%%\n", h, v, 100 * v / h }' >&2
