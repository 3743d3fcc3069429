#!/usr/bin/env bash
# Measures the timeline's hot paths on this machine (release builds, own ports and
# database; stops everything it started):
#  1. GET /api/v1/timelines/home (20 statuses, warm caches) with wrk at 64 and at 1000
#     connections, next to a bare axum "hello" and a bare REST -> gRPC hop (one health
#     check call to the users service) measured in the same run;
#  2. fan-out: POST /api/v1/statuses by an author with 10 000 active followers (live
#     feeds), until the status is in every follower's home feed in Redis;
#  3. a cold home timeline (feed rebuilt from Postgres): statements and latency.
#   deploy/dev/bench-timeline.sh [duration, default 15s]    ROUNDS=n (default 1)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/dev/lib.sh
source deploy/dev/lib.sh

DURATION="${1:-15s}"
ROUNDS="${ROUNDS:-1}"
FOLLOWERS="${FOLLOWERS:-10000}"
command -v wrk >/dev/null || { [[ $EUID -eq 0 ]] && apt-get install -y -qq wrk >/dev/null; } || die "install wrk (apt-get install wrk)"
command -v jq >/dev/null || { [[ $EUID -eq 0 ]] && apt-get install -y -qq jq >/dev/null; } || die "install jq"
command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install redis-tools)"
# 1000 connections need as many descriptors in wrk and in the gateway.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

export PROFILE=release ROOKERY_DB=rookery_bench GATEWAY_PORT=18280 USERS_GRPC_PORT=15280 USERS_HTTP_PORT=19280
export REDIS_PREFIX=rk-bench-timeline
# The fan-out measured is the push to every follower: keep the author under the
# celebrity threshold (whose statuses are merged at read time instead).
export TIMELINE_CELEBRITY_FOLLOWERS="${TIMELINE_CELEBRITY_FOLLOWERS:-$((FOLLOWERS * 2))}"
HELLO_PORT=18299
TIMELINE_HTTP_PORT=$((USERS_HTTP_PORT + 1))
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
cargo build --release -q --workspace --bins
"$TARGET/rookery-loadgen" baseline --listen "127.0.0.1:$HELLO_PORT" --grpc "http://127.0.0.1:$USERS_GRPC_PORT" &
HELLO_PID=$!
trap 'kill $HELLO_PID 2>/dev/null || true; deploy/dev/stack.sh stop-bg >/dev/null 2>&1 || true' EXIT
B="http://127.0.0.1:$GATEWAY_PORT"
REDIS=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
sql() { admin_psql -d "$ROOKERY_DB" -At "$@"; }
sqlpg() { admin_psql -d postgres -At "$@"; }

deploy/dev/stack.sh start-bg
"${REDIS[@]}" --scan --pattern "$REDIS_PREFIX:*" | xargs -r -n 1000 "${REDIS[@]}" unlink >/dev/null

app=$(curl -fsS -X POST "$B/api/v1/apps" -d client_name=bench -d redirect_uris=urn:ietf:wg:oauth:2.0:oob -d 'scopes=read write follow')
cid=$(jq -r .client_id <<<"$app")
secret=$(jq -r .client_secret <<<"$app")
APP_TOKEN=$(curl -fsS -X POST "$B/oauth/token" -d grant_type=client_credentials -d "client_id=$cid" \
    -d "client_secret=$secret" -d 'scope=read write follow' | jq -r .access_token)
register() {
    curl -fsS -X POST "$B/api/v1/accounts" -H "Authorization: Bearer $APP_TOKEN" \
        -d "username=$1" -d "email=$1@example.com" -d 'password=correct horse' -d agreement=1 | jq -r .access_token
}
account_id() { curl -fsS "$B/api/v1/accounts/verify_credentials" -H "Authorization: Bearer $1" | jq -r .id; }
post() { curl -fsS -X POST "$B/api/v1/statuses" -H "Authorization: Bearer $1" --data-urlencode "status=$2" | jq -r .id; }
home_len() { curl -fsS "$B/api/v1/timelines/home?limit=${2:-20}" -H "Authorization: Bearer $1" | jq length; }

run() { # name url connections
    local out rps p50 p99
    out=$(wrk -t2 -c"$3" -d"$DURATION" --timeout 10s --latency -H "Authorization: Bearer $VIEWER" "$2")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    grep -q "Socket errors" <<<"$out" && log "$1: $(grep 'Socket errors' <<<"$out")"
    printf '%-44s c=%-5s %10s req/s   p50 %-9s p99 %-9s non-2xx %s\n' "$1" "$3" "$rps" "$p50" "$p99" "${errors:-0}" >&2
}

# ---------------------------------------------------------------- 1. home timeline
log "seeding: a viewer following 20 authors with 2 statuses each"
VIEWER=$(register viewer)
[[ $(home_len "$VIEWER") == 0 ]] || die "fresh home not empty" # makes the feed live
for i in $(seq 1 20); do
    t=$(register "author$i")
    curl -fsS -X POST "$B/api/v1/accounts/$(account_id "$t")/follow" -H "Authorization: Bearer $VIEWER" >/dev/null
    post "$t" "status one of author $i #bench" >/dev/null
    post "$t" "status two of author $i, https://example.com/$i" >/dev/null
done
for _ in $(seq 1 50); do [[ $(home_len "$VIEWER") == 20 ]] && break; sleep 0.2; done
[[ $(home_len "$VIEWER") == 20 ]] || die "home timeline never reached 20 statuses"
sleep 1 # delayed cache invalidations of the authors' counters
log "wrk -t2 -d$DURATION, $ROUNDS round(s); gateway, users, timeline, Postgres, Redis and wrk share $(nproc) cores"
# HOME_ROUNDS=0 skips the wrk runs (fan-out and cold home only).
for ((r = 1; r <= ${HOME_ROUNDS:-$ROUNDS}; r++)); do
    for c in 64 1000; do
        run "bare axum hello" "http://127.0.0.1:$HELLO_PORT/hello" "$c"
        run "bare REST -> gRPC hop" "http://127.0.0.1:$HELLO_PORT/hop" "$c"
        run "home timeline, 20 statuses (warm)" "$B/api/v1/timelines/home" "$c"
    done
done

# ---------------------------------------------------------------- 2. fan-out
log "seeding: an author with $FOLLOWERS active followers, all with live home feeds"
STAR_TOKEN=$(register star)
STAR=$(account_id "$STAR_TOKEN")
mapfile -t FANS < <(sql -v star="$STAR" -v n="$FOLLOWERS" <<'SQL'
WITH fans AS (
    INSERT INTO users.accounts (username)
    SELECT 'fan' || g FROM generate_series(1, :n) g RETURNING id
), creds AS (
    INSERT INTO users.credentials (account_id, email, password_hash)
    SELECT id, 'fan' || id || '@example.com', 'x' FROM fans RETURNING account_id
)
INSERT INTO users.follows (account_id, target_account_id)
SELECT account_id, :star FROM creds RETURNING account_id;
SQL
)
((${#FANS[@]} == FOLLOWERS)) || die "seeded ${#FANS[@]} followers"
# Live feeds, as if every follower had read their home timeline recently.
for id in "${FANS[@]}"; do
    printf 'SET %s:tl:{%s}:live 1 PX 3600000\n' "$REDIS_PREFIX" "$id"
done | "${REDIS[@]}" --pipe >/dev/null
# The last follower in fan-out order (follow id order) is the last to receive it.
LAST=$(sql -v star="$STAR" <<<"SELECT account_id FROM users.follows WHERE target_account_id = :star ORDER BY id DESC LIMIT 1")
sleep 1
for round in 1 2 3; do
    start=$(date +%s%N)
    id=$(post "$STAR_TOKEN" "fan-out round $round")
    posted=$(date +%s%N)
    until [[ -n $("${REDIS[@]}" ZSCORE "$REDIS_PREFIX:tl:{$LAST}:feed" "$id") ]]; do
        (($(date +%s%N) - start < 30000000000)) || die "fan-out did not finish in 30 s"
        sleep 0.005
    done
    done_at=$(date +%s%N)
    missing=0
    for fan in "${FANS[@]}"; do printf 'ZSCORE %s:tl:{%s}:feed %s\n' "$REDIS_PREFIX" "$fan" "$id"; done |
        "${REDIS[@]}" | grep -c '^$' >/tmp/bench-fanout-missing.$$ || true
    missing=$(cat /tmp/bench-fanout-missing.$$)
    rm -f /tmp/bench-fanout-missing.$$
    printf 'fan-out to %s followers, round %s: POST answered in %s ms, in every feed %s ms after the POST began (%s feeds missing it)\n' \
        "$FOLLOWERS" "$round" $(((posted - start) / 1000000)) $(((done_at - start) / 1000000)) "$missing" >&2
done
curl -fsS "http://127.0.0.1:$TIMELINE_HTTP_PORT/metrics" | grep -E '^fanout_seconds(_sum|_count)? |^fanout_seconds\{' | head -8 >&2 || true

# ---------------------------------------------------------------- 3. cold home
log "cold home: a reader following the 20 authors whose feed was never built"
READER=$(register coldreader)
for i in $(seq 1 20); do
    aid=$(sql <<<"SELECT id FROM users.accounts WHERE username = 'author$i'")
    curl -fsS -X POST "$B/api/v1/accounts/$aid/follow" -H "Authorization: Bearer $READER" >/dev/null
done
sleep 1
sqlpg <<<"SELECT pg_stat_statements_reset()" >/dev/null
start=$(date +%s%N)
n=$(home_len "$READER")
elapsed=$((($(date +%s%N) - start) / 1000))
statements=$(sqlpg <<SQL
SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = '$ROOKERY_DB' AND s.toplevel
  AND s.query !~* '\moutbox\M|\mprocessed_events\M|pg_try_advisory_xact_lock|^\s*(begin|commit|rollback)|^\s*select\s+(1|\$1)\s*;?\s*$|pg_stat_statements'
SQL
)
printf 'cold home (rebuilt from Postgres): %s statuses in %s us, %s SQL statements (users + timeline)\n' "$n" "$elapsed" "$statements" >&2
start=$(date +%s%N)
home_len "$READER" >/dev/null
printf 'same home, warm: %s us\n' $((($(date +%s%N) - start) / 1000)) >&2
