#!/usr/bin/env bash
# Supply-chain check (make deny, part of make test): cargo-deny's advisories, bans,
# licenses and sources against deny.toml, fully offline.
#
# Advisories come from a snapshot of the RustSec database. cargo-deny wants its database
# to be a git repository under a directory named after the database URL, so the snapshot
# (ADVISORY_DB_SNAPSHOT, default ../shared/advisory-db next to the checkout) is copied into
# .data/advisory-db and committed there once per snapshot. Without a snapshot the other
# three checks still run and the script says that advisories were not checked.
#
# A canary proves the database is really read: the same check against a copy holding one
# made-up advisory for a crate we use must fail, naming it.
set -euo pipefail

# shellcheck source=deploy/dev/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# Pinned: the database directory name below is derived by this version from the URL.
DENY_VERSION=0.20.2
DB_DIRNAME=advisory-db-3157b0e258782691
SNAPSHOT="${ADVISORY_DB_SNAPSHOT:-$ROOT/../shared/advisory-db}"
DB_ROOT="$DATA/advisory-db"

if ! cargo deny --version 2>/dev/null | grep -q " $DENY_VERSION\$"; then
    log "installing cargo-deny $DENY_VERSION (cargo install, a few minutes once)"
    CARGO_INCREMENTAL=0 cargo install --locked --quiet cargo-deny --version "$DENY_VERSION"
fi

# Copies the snapshot into $1/$DB_DIRNAME as a one-commit git repository.
make_db() {
    local root=$1 repo=$1/$DB_DIRNAME
    rm -rf "$repo"
    mkdir -p "$root"
    cp -r "$SNAPSHOT" "$repo"
    git -C "$repo" init -q
    git -C "$repo" add -A
    git -C "$repo" -c user.name=rookery -c user.email=rookery@localhost \
        commit -q -m "snapshot: $(head -c 200 "$SNAPSHOT/SNAPSHOT.txt" 2>/dev/null || echo unknown)"
}

if [[ ! -d $SNAPSHOT/crates ]]; then
    log "no advisory snapshot at $SNAPSHOT: checking bans, licenses and sources only (advisories NOT checked)"
    exec cargo deny --offline check bans licenses sources
fi

# Refresh the copy when the snapshot changed.
if ! cmp -s "$SNAPSHOT/SNAPSHOT.txt" "$DB_ROOT/$DB_DIRNAME/SNAPSHOT.txt" 2>/dev/null; then
    log "preparing the advisory database from $SNAPSHOT"
    make_db "$DB_ROOT"
fi
log "advisories from: $(head -1 "$DB_ROOT/$DB_DIRNAME/SNAPSHOT.txt" 2>/dev/null || echo "$SNAPSHOT")"
CARGO_DENY_ADVISORY_DB="$DB_ROOT" cargo deny --offline check

# The canary: a vulnerability in every version of a crate the gateway depends on.
canary_root=$(mktemp -d)
trap 'rm -rf "$canary_root"' EXIT
make_db "$canary_root"
mkdir -p "$canary_root/$DB_DIRNAME/crates/ipnet"
cat >"$canary_root/$DB_DIRNAME/crates/ipnet/RUSTSEC-2099-0001.md" <<'ADVISORY'
```toml
[advisory]
id = "RUSTSEC-2099-0001"
package = "ipnet"
date = "2026-01-01"

[versions]
patched = [">= 999.0.0"]
```

# Canary advisory of deploy/dev/deny.sh

Not real: proves that the advisory check reads the database.
ADVISORY
git -C "$canary_root/$DB_DIRNAME" add -A
git -C "$canary_root/$DB_DIRNAME" -c user.name=rookery -c user.email=rookery@localhost commit -q -m canary
if out=$(CARGO_DENY_ADVISORY_DB="$canary_root" cargo deny --offline check advisories 2>&1); then
    die "the canary advisory was not reported: the advisory database is not being read"
fi
grep -q "RUSTSEC-2099-0001" <<<"$out" || die "the advisory check failed, but not on the canary: $out"
log "canary advisory reported as expected: the database is read"
