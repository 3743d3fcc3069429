# shellcheck shell=bash disable=SC2034 # variables are used by the scripts that source this
# Shared environment of the local dev/test stack, sourced by deploy/dev/*.sh and by the
# Makefile. It only defines variables and functions (no side effects, no `set` changes),
# so sourcing it in any shell is safe. Every value the Rust code or the tests read is
# exported from here, so nobody has to `eval` the output of deps.sh.

# Repository root and the git-ignored data folder (cluster, redis dump dir, logs, pids).
# ROOKERY_DATA_DIR moves the whole folder (a relative path is taken from ROOT): with other
# ROOKERY_PG_PORT/ROOKERY_REDIS_PORT it makes a second, independent Postgres + Redis
# (deploy/dev/faults.sh kills and restarts its own without touching the dev ones).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA="${ROOKERY_DATA_DIR:-$ROOT/.data}"
[[ $DATA == /* ]] || DATA="$ROOT/$DATA"
PG_DATA="$DATA/postgres"
REDIS_DIR="$DATA/redis"
LOG_DIR="$DATA/log"
RUN_DIR="$DATA/run"
# Postgres gets its own socket dir (owned by the Postgres OS user when we run as root);
# it lives in the project, never in /var/run.
PG_SOCKET_DIR="$RUN_DIR/postgres"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
export ROOT DATA

# Ports are unusual on purpose so the stack never collides with a system Postgres/Redis,
# and below 32768 so they are outside Linux's ephemeral range (32768-60999): a port in it
# can be the source port of any outgoing connection (apt, psql, the cluster's own bus
# links), and a server that starts then fails to bind. That made CI fail once on 56382.
PG_HOST=127.0.0.1
PG_PORT="${ROOKERY_PG_PORT:-15432}"
REDIS_PORT="${ROOKERY_REDIS_PORT:-16379}"
export ROOKERY_PG_PORT="$PG_PORT" ROOKERY_REDIS_PORT="$REDIS_PORT"
# A three-node Redis Cluster (ports BASE..BASE+2) for the tests of cluster mode; `make run`
# does not need it.
REDIS_CLUSTER_BASE="${ROOKERY_REDIS_CLUSTER_PORT:-16380}"
REDIS_CLUSTER_PORTS="$REDIS_CLUSTER_BASE $((REDIS_CLUSTER_BASE + 1)) $((REDIS_CLUSTER_BASE + 2))"
REDIS_CLUSTER_DIR="$DATA/redis-cluster"

# DEV ONLY credentials: a loopback-only throwaway cluster. Never reuse them anywhere else.
PG_ADMIN_USER=rookery_admin
PG_ADMIN_PASSWORD=rookery_admin

# Services that own a Postgres role + schema. Adding a service is adding a word here.
SERVICES="users timeline notifications media"

# Database the services use. Background test stacks set it to something else so they do
# not pollute dev data (see stack.sh start-bg).
export ROOKERY_DB="${ROOKERY_DB:-rookery}"

# postgres://rookery_<svc>:rookery_<svc>@127.0.0.1:PORT/DB
service_db_url() {
    local svc=$1 db=${2:-$ROOKERY_DB}
    printf 'postgres://rookery_%s:rookery_%s@%s:%s/%s' "$svc" "$svc" "$PG_HOST" "$PG_PORT" "$db"
}

# One <SVC>_DATABASE_URL per service (USERS_DATABASE_URL, ...), always derived from
# ROOKERY_DB so a nested script with another ROOKERY_DB never inherits a stale URL.
for _svc in $SERVICES; do
    export "${_svc^^}_DATABASE_URL=$(service_db_url "$_svc")"
done
unset _svc
export REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"
# Seed nodes of the test cluster, in the format of REDIS_CLUSTER_NODES.
ROOKERY_TEST_REDIS_CLUSTER_NODES=""
for _port in $REDIS_CLUSTER_PORTS; do
    ROOKERY_TEST_REDIS_CLUSTER_NODES+="${ROOKERY_TEST_REDIS_CLUSTER_NODES:+,}redis://127.0.0.1:${_port}"
done
unset _port
export ROOKERY_TEST_REDIS_CLUSTER_NODES
# Superuser URL the Rust tests use to create/drop their own rookery_test_* databases.
export ROOKERY_TEST_ADMIN_URL="postgres://${PG_ADMIN_USER}:${PG_ADMIN_PASSWORD}@${PG_HOST}:${PG_PORT}/postgres"

# Machine-readable export lines (what `deps.sh start`/`deps.sh env` print on stdout).
print_env() {
    local svc var
    for svc in $SERVICES; do
        var="${svc^^}_DATABASE_URL"
        printf 'export %s=%s\n' "$var" "${!var}"
    done
    printf 'export REDIS_URL=%s\n' "$REDIS_URL"
    printf 'export ROOKERY_TEST_REDIS_CLUSTER_NODES=%s\n' "$ROOKERY_TEST_REDIS_CLUSTER_NODES"
    printf 'export ROOKERY_TEST_ADMIN_URL=%s\n' "$ROOKERY_TEST_ADMIN_URL"
}

# Logging goes to stderr so stdout stays machine-readable.
log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---------------------------------------------------------------- liveness checks

# True when the pid in file $1 (first line) is a live process.
pidfile_alive() {
    local pid
    [[ -r $1 ]] || return 1
    pid="$(head -n 1 "$1" 2>/dev/null || true)"
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

pg_isready_cmd() {
    if [[ -x $PG_BIN/pg_isready ]]; then
        "$PG_BIN/pg_isready" "$@"
    elif command -v pg_isready >/dev/null 2>&1; then
        pg_isready "$@"
    else
        return 2
    fi
}

# Accepting connections on our port (whoever runs it).
pg_is_up() { pg_isready_cmd -q -h "$PG_HOST" -p "$PG_PORT" -t 2; }
# Our cluster's postmaster is alive (it may still be starting up).
pg_pid_alive() { pidfile_alive "$PG_DATA/postmaster.pid"; }

redis_is_up() {
    command -v redis-cli >/dev/null 2>&1 &&
        [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}
redis_pid_alive() { pidfile_alive "$RUN_DIR/redis.pid"; }

# ---------------------------------------------------------------- SQL helpers

# Identifiers are interpolated into SQL, so only plain lower-case names are accepted.
valid_ident() {
    [[ $1 =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "invalid SQL identifier: '$1'"
}

# psql as the superuser over TCP (password auth, no dependency on the OS user).
admin_psql() {
    PGPASSWORD="$PG_ADMIN_PASSWORD" PGCONNECT_TIMEOUT=5 PGOPTIONS="-c client_min_messages=warning" \
        psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ADMIN_USER" "$@"
}

# ensure_database DB [recreate]
# Makes DB exist with pg_stat_statements and, for every service, the LOGIN role
# rookery_<svc> (search_path <svc>) owning schema <svc>; no role may create anything
# outside its own schema. Idempotent. With "recreate", DB is dropped first (test stacks).
# pg_stat_statements is also created in the admin database `postgres`: its view shows
# the whole cluster, and the per-test databases (copies of template1) do not have it, so
# rookery_kit::testing::StatementCounter reads it from there.
ensure_database() {
    local db=$1 recreate=${2:-} svc sql_roles="" sql_schemas=""
    valid_ident "$db"
    for svc in $SERVICES; do
        valid_ident "$svc"
        sql_roles+="
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rookery_${svc}') THEN
        CREATE ROLE rookery_${svc};
    END IF;
END \$\$;
ALTER ROLE rookery_${svc} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'rookery_${svc}';
ALTER ROLE rookery_${svc} SET search_path = ${svc};"
        sql_schemas+="
CREATE SCHEMA IF NOT EXISTS ${svc} AUTHORIZATION rookery_${svc};
ALTER SCHEMA ${svc} OWNER TO rookery_${svc};"
    done

    local sql_db=""
    if [[ $recreate == recreate ]]; then
        [[ $db != postgres && $db != template0 && $db != template1 ]] || die "refusing to drop '$db'"
        # FORCE: a crashed test stack may still hold connections.
        sql_db="DROP DATABASE IF EXISTS ${db} WITH (FORCE);"
    fi
    # CREATE DATABASE has no IF NOT EXISTS; \gexec runs it only when missing.
    sql_db+="
SELECT 'CREATE DATABASE ${db} OWNER ${PG_ADMIN_USER}'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '${db}') \\gexec"

    admin_psql -d postgres <<<"CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
${sql_roles}
${sql_db}" || return 1

    admin_psql -d "$db" <<<"
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
-- Already the default since PG15; explicit so a service role can only create in its schema.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE CREATE ON DATABASE ${db} FROM PUBLIC;
${sql_schemas}" || return 1
}

# Drops the per-test databases (rookery_test_*) the Rust tests create and may leave behind.
drop_test_databases() {
    admin_psql -d postgres <<<"
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname)
FROM pg_database WHERE datname LIKE 'rookery\\_test\\_%' \\gexec"
}
