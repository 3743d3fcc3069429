#!/usr/bin/env bash
# Measures the streaming API on this machine (release builds, own ports and database;
# stops everything it started): CONNECTIONS followers (default 10 000) of one author each
# hold a WebSocket `user` stream (one client process, on loopback); the author posts
# POSTS statuses; reported: time from the start of each POST to the `update` on every
# follower's socket (p50/p90/p99/max, missing), the gateway's RSS with every socket open,
# and its CPU while the sockets sit idle.
#   deploy/dev/bench-streaming.sh     CONNECTIONS=n POSTS=n GAP_MS=n IDLE_S=n
# The followers are bulk-loaded in SQL (accounts, follows and access tokens: registering
# 10 000 accounts through the API would spend minutes in argon2).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/dev/lib.sh
source deploy/dev/lib.sh

CONNECTIONS="${CONNECTIONS:-10000}"
POSTS="${POSTS:-20}"
GAP_MS="${GAP_MS:-500}"
IDLE_S="${IDLE_S:-10}"
command -v jq >/dev/null || { [[ $EUID -eq 0 ]] && apt-get install -y -qq jq >/dev/null; } || die "install jq"
# Every socket is a descriptor in the client and one in the gateway.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > CONNECTIONS + 1000)) || die "need more than $((CONNECTIONS + 1000)) open files (ulimit -n is $(ulimit -n))"

export PROFILE=release ROOKERY_DB=rookery_bench GATEWAY_PORT=18280 USERS_GRPC_PORT=15280 USERS_HTTP_PORT=19280
export REDIS_PREFIX=rk-bench-streaming
# The followers are fanned out to (feeds and streams), not merged at read time.
export TIMELINE_CELEBRITY_FOLLOWERS="${TIMELINE_CELEBRITY_FOLLOWERS:-$((CONNECTIONS * 2))}"
export STREAMING_MAX_CONNECTIONS=$((CONNECTIONS + 1000))
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
cargo build --release -q -p rookery-e2e --example stream_latency
trap 'deploy/dev/stack.sh stop-bg >/dev/null 2>&1 || true; rm -f "$TOKENS"' EXIT
TOKENS="$(mktemp)"
B="http://127.0.0.1:$GATEWAY_PORT"
sql() { admin_psql -d "$ROOKERY_DB" -At "$@"; }

deploy/dev/stack.sh start-bg
GATEWAY_PID=""
while read -r pid; do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == rookery-gateway ]] && GATEWAY_PID=$pid
done <"$RUN_DIR/stack-$GATEWAY_PORT.pids"
[[ -n $GATEWAY_PID ]] || die "gateway pid not found"

app=$(curl -fsS -X POST "$B/api/v1/apps" -d client_name=bench -d redirect_uris=urn:ietf:wg:oauth:2.0:oob -d 'scopes=read write follow')
cid=$(jq -r .client_id <<<"$app")
secret=$(jq -r .client_secret <<<"$app")
APP_TOKEN=$(curl -fsS -X POST "$B/oauth/token" -d grant_type=client_credentials -d "client_id=$cid" \
    -d "client_secret=$secret" -d 'scope=read write follow' | jq -r .access_token)
AUTHOR_TOKEN=$(curl -fsS -X POST "$B/api/v1/accounts" -H "Authorization: Bearer $APP_TOKEN" \
    -d "username=author$RANDOM" -d "email=author$RANDOM@example.com" -d 'password=correct horse' -d agreement=1 | jq -r .access_token)
AUTHOR=$(curl -fsS "$B/api/v1/accounts/verify_credentials" -H "Authorization: Bearer $AUTHOR_TOKEN" | jq -r .id)

log "seeding $CONNECTIONS followers of $AUTHOR with tokens"
sql -v author="$AUTHOR" -v n="$CONNECTIONS" -v cid="$cid" >"$TOKENS" <<'SQL'
WITH fans AS (
    INSERT INTO users.accounts (username)
    SELECT 'sfan' || g || '_' || :author FROM generate_series(1, :n) g RETURNING id
), creds AS (
    INSERT INTO users.credentials (account_id, email, password_hash)
    SELECT id, 'sfan' || id || '@example.com', 'x' FROM fans RETURNING account_id
), follows AS (
    INSERT INTO users.follows (account_id, target_account_id)
    SELECT account_id, :author FROM creds RETURNING account_id
), tokens AS (
    INSERT INTO users.access_tokens (app_id, account_id, token_hash, scopes)
    SELECT (SELECT id FROM users.apps WHERE client_id = :'cid'), account_id,
           sha256(convert_to('bench-stream-' || account_id, 'UTF8')), 'read write follow'
    FROM follows RETURNING account_id
)
SELECT 'bench-stream-' || account_id FROM tokens;
SQL
(($(wc -l <"$TOKENS") == CONNECTIONS)) || die "seeded $(wc -l <"$TOKENS") tokens"
sql -c "ANALYZE" >/dev/null

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)
log "gateway RSS before connections: $(rss_mb "$GATEWAY_PID") MB"

"$TARGET/examples/stream_latency" "$B" "$TOKENS" "$AUTHOR_TOKEN" "$POSTS" "$GAP_MS" "$IDLE_S" |
    while IFS= read -r line; do
        case $line in
        idle-start)
            IDLE_T0=$(cpu_ticks "$GATEWAY_PID")
            IDLE_W0=$(date +%s%N)
            printf 'gateway RSS with every socket open: %s MB\n' "$(rss_mb "$GATEWAY_PID")" >&2
            ;;
        idle-end)
            t1=$(cpu_ticks "$GATEWAY_PID")
            w1=$(date +%s%N)
            awk -v t="$((t1 - IDLE_T0))" -v hz="$TICKS" -v ns="$((w1 - IDLE_W0))" \
                'BEGIN { printf "gateway CPU while idle: %.2f%% of one core\n", 100 * (t / hz) / (ns / 1e9) }' >&2
            ;;
        *) printf '%s\n' "$line" >&2 ;;
        esac
    done
log "gateway RSS after the posts: $(rss_mb "$GATEWAY_PID") MB"
curl -fsS "$B/metrics" | grep -E '^streaming_' >&2 || true
