#!/usr/bin/env bash
# API fuzzing (make api-fuzz): schemathesis runs every check ("--checks all": server
# errors, status codes, content types, response schemas and headers, negative data
# rejection, ignored auth, ...) against a background stack on its own ports and its own
# database (rookery_fuzz), driven by the gateway's OpenAPI document
# (GET /api/v1/openapi.json = crates/gateway/openapi.json). The stack is seeded first
# (deploy/dev/api-fuzz-seed.py) so the fuzzer meets real ids; per-operation settings
# and the narrow, explained exclusions are in deploy/dev/schemathesis.toml.
# Exits non-zero on any failure (a 5xx, a schema violation, ...). Only 127.0.0.1 is
# contacted. The stack, the database and its media folder are removed afterwards.
#
# About a minute of fuzzing (7000 test cases) on 2 cores, once the binaries are built.
#
# Env: FUZZ_EXAMPLES (examples per operation and phase, 50), FUZZ_SEED (20240601),
# FUZZ_WORKERS (1: with more, CPython 3.11's parser sometimes fails in Hypothesis'
# threads, "AST constructor recursion depth mismatch"), FUZZ_ARGS (more schemathesis
# arguments, e.g. "--include-path-regex statuses --phases coverage,fuzzing": the stateful
# phase needs several operations), FUZZ_REPORT_DIR (junit.xml, and
# with FUZZ_NDJSON=1 every request and response in events.ndjson; .data/api-fuzz/report).
set -euo pipefail

# shellcheck source=deploy/dev/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

"$ROOT/deploy/dev/pyenv.sh"

# One run at a time: a second one would take the same ports and drop the database under
# the first. It waits for the first to finish.
mkdir -p "$RUN_DIR"
exec 9>"$RUN_DIR/api-fuzz.lock"
flock -w 900 9 || die "another api-fuzz run holds $RUN_DIR/api-fuzz.lock"

export ROOKERY_DB=rookery_fuzz GATEWAY_PORT=18280 USERS_GRPC_PORT=15251 USERS_HTTP_PORT=19301
unset ROOKERY_DOMAIN ROOKERY_BASE_URL # derived from GATEWAY_PORT by stack.sh
BASE="http://127.0.0.1:${GATEWAY_PORT}"
WORK="$DATA/api-fuzz"
REPORT_DIR="${FUZZ_REPORT_DIR:-$WORK/report}"
# Loopback only: never through a proxy.
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"
unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy

# Hypothesis keeps its files here, not in the checkout.
export HYPOTHESIS_STORAGE_DIRECTORY="$WORK/hypothesis"

# The stack's Redis keys (prefix rk-<db>, see stack.sh): a recreated database must not
# meet the cached statuses, timelines and counters of a previous run, which name rows
# that no longer exist.
forget_redis_keys() {
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --scan --pattern "rk-${ROOKERY_DB}:*" |
        xargs -r -n 500 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" unlink >/dev/null
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local status=$?
    deploy/dev/stack.sh stop-bg || true
    admin_psql -d postgres -c "DROP DATABASE IF EXISTS ${ROOKERY_DB} WITH (FORCE)" || true
    forget_redis_keys || true
    rm -rf "$DATA/media-${ROOKERY_DB}" "$WORK/token" "$WORK/schemathesis.toml" "$WORK/hypothesis"
    exit "$status"
}
# EXIT traps keep the script's exit status, so a fuzzing failure still fails the target.
trap cleanup EXIT
"$ROOT/deploy/dev/deps.sh" start postgres redis >/dev/null
forget_redis_keys
deploy/dev/stack.sh start-bg

rm -f "$WORK/ids.toml" "$REPORT_DIR/junit.xml" "$REPORT_DIR/events.ndjson"
mkdir -p "$WORK" "$REPORT_DIR"
reports=(--report-junit-path "$REPORT_DIR/junit.xml")
[[ -z ${FUZZ_NDJSON:-} ]] || reports+=(--report-ndjson-path "$REPORT_DIR/events.ndjson")
.venv/bin/python deploy/dev/api-fuzz-seed.py "$BASE" "$WORK"
cat deploy/dev/schemathesis.toml "$WORK/ids.toml" >"$WORK/schemathesis.toml"
TOKEN="$(cat "$WORK/token")"

log "fuzzing $BASE with schemathesis $(.venv/bin/schemathesis --version | awk '{print $NF}')"
start=$SECONDS
status=0
# shellcheck disable=SC2086 # FUZZ_ARGS is words on purpose
.venv/bin/schemathesis --config-file "$WORK/schemathesis.toml" --no-color run \
    "$BASE/api/v1/openapi.json" \
    --url "$BASE" \
    --checks all \
    --max-examples "${FUZZ_EXAMPLES:-50}" \
    --seed "${FUZZ_SEED:-20240601}" \
    --workers "${FUZZ_WORKERS:-1}" \
    --header "Authorization: Bearer ${TOKEN}" \
    --request-timeout 20 \
    --max-redirects 0 \
    "${reports[@]}" \
    ${FUZZ_ARGS:-} || status=$?
log "schemathesis exited with $status after $((SECONDS - start)) s (reports in $REPORT_DIR)"
exit "$status"
