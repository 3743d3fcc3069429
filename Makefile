# Local development and CI entry points. The shell plumbing lives in deploy/dev/.
#   make run         build and run the whole stack on http://127.0.0.1:8080 (Ctrl-C stops)
#   make deps/stop   start/stop the project-local Postgres + Redis (.data/)
#   make test        everything CI runs (.ci/run): fmt check, clippy, build, Rust + Python tests,
#                    the fault-injection suite, a smoke run of the load harness
#   make api-fuzz    schemathesis (all checks) against a seeded background stack, driven by
#                    the gateway's OpenAPI document (GET /api/v1/openapi.json)
#   make test-faults the fault-injection suite (tests/faults: Redis/Postgres/service kills,
#                    pauses, locks, overload, slow clients) on a private Postgres + Redis;
#                    report in .data/faults/report.md
#   make bench       the load harness's scenarios on release builds; prints the report
#                    (docs/PERFORMANCE.md)
#   make deny        cargo-deny (advisories offline from ../shared/advisory-db, bans, licenses,
#                    sources; deny.toml)
#   make k8s-check   render every kustomize overlay and validate it (Kubernetes 1.32 schemas)
#   make obs-check   promtool check/test of the alert rules and scrape config, dashboard JSON
#   make fmt/lint    cargo fmt / cargo clippy -D warnings
#   make clean-data  stop Postgres + Redis and delete .data/ (all local data)

# bash with errexit + pipefail: every recipe line fails its target on any error.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

DEV := deploy/dev
# Exports USERS_DATABASE_URL, REDIS_URL, ROOKERY_TEST_ADMIN_URL, ... for the next command.
WITH_ENV := source $(DEV)/lib.sh &&

.PHONY: help run deps stop test test-rust test-python api-fuzz test-faults deny bench bench-smoke k8s-check obs-check build fmt lint clean-data

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

run:
	$(DEV)/stack.sh run

deps:
	$(DEV)/deps.sh start

stop:
	$(DEV)/deps.sh stop

test:
	$(DEV)/deps.sh start postgres redis redis-cluster
	cargo fmt --all -- --check
	$(MAKE) --no-print-directory k8s-check
	$(MAKE) --no-print-directory obs-check
	$(MAKE) --no-print-directory deny
	cargo clippy --workspace --all-targets -- -D warnings
	cargo build --workspace --bins
	$(MAKE) --no-print-directory test-rust
	$(MAKE) --no-print-directory test-python
	$(MAKE) --no-print-directory api-fuzz
	$(MAKE) --no-print-directory test-faults
	$(MAKE) --no-print-directory bench-smoke

# Rust unit + integration tests against the dev Postgres/Redis (each test creates its own
# rookery_test_* database; leftovers of interrupted runs are dropped first, and a run drops
# its own afterwards, pass or fail: a few hundred of them fill gigabytes). The S3 test runs
# moto's server from .venv (pyenv.sh).
test-rust:
	$(DEV)/deps.sh start postgres redis redis-cluster >/dev/null
	$(DEV)/deps.sh drop-test-dbs
	$(DEV)/pyenv.sh
	status=0; \
	$(WITH_ENV) if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-tests=warn || status=$$?; \
	else \
		cargo test --workspace || status=$$?; \
	fi; \
	$(DEV)/deps.sh drop-test-dbs; \
	exit $$status

# Python client test against a background stack (own ports, own database).
test-python:
	$(DEV)/pytest.sh

# Fuzzes the API with schemathesis (--checks all) against a seeded background stack (own
# ports, own database rookery_fuzz; dropped afterwards). FUZZ_EXAMPLES, FUZZ_SEED,
# FUZZ_ARGS: see deploy/dev/api-fuzz.sh; settings and exclusions: deploy/dev/schemathesis.toml.
api-fuzz:
	$(DEV)/api-fuzz.sh

# Fault injection against the real processes on a private Postgres + Redis (own ports,
# .data/faults; deleted afterwards). PYTEST_ARGS selects scenarios, e.g. PYTEST_ARGS='-k redis_kill'.
test-faults:
	$(DEV)/faults.sh $(PYTEST_ARGS)

# Supply chain: known vulnerabilities (offline snapshot), duplicate versions, licences,
# sources. Installs the pinned cargo-deny when missing.
deny:
	$(DEV)/deny.sh

# Seeds an instance of 10 000 accounts and runs every scenario (about 15 minutes).
bench:
	$(DEV)/bench.sh

# A few seconds of every endpoint on a tiny instance; fails on any error.
bench-smoke:
	$(DEV)/bench.sh smoke

# The manifests under k8s/: every overlay rendered and validated (kubectl, kubernetes-validate).
k8s-check:
	deploy/k8s-check.sh

# Observability assets under deploy/observability/ (promtool installed when missing).
obs-check:
	$(DEV)/deps.sh tools
	deploy/observability/check.sh

build:
	cargo build --workspace --bins

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings

clean-data:
	$(DEV)/deps.sh stop
	rm -rf .data
