#!/usr/bin/env bash
# Python client test: runs tests/python against a background stack on its own ports and
# its own database (rookery_pytest), so it never touches the dev stack or dev data.
# The stack is always stopped afterwards; the exit code is pytest's (or the start-up's).
set -euo pipefail

# shellcheck source=deploy/dev/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

"$ROOT/deploy/dev/pyenv.sh"

export ROOKERY_DB=rookery_pytest GATEWAY_PORT=18080 USERS_GRPC_PORT=15051 USERS_HTTP_PORT=19101
unset ROOKERY_DOMAIN ROOKERY_BASE_URL # derived from GATEWAY_PORT by stack.sh

# Our crates log at debug level here, and the tests check that no credential they used
# reached the logs (conftest.py, secrets_never_logged).
export RUST_LOG="${RUST_LOG:-info,rookery_gateway=debug,rookery_users=debug,rookery_kit=debug,rookery_timeline=debug,rookery_notifications=debug,rookery_media=debug}"
export ROOKERY_LOG_GLOB="$LOG_DIR/*-${GATEWAY_PORT}.log"

# EXIT traps keep the script's exit status, so a pytest failure still fails the target.
trap 'deploy/dev/stack.sh stop-bg || true' EXIT
deploy/dev/stack.sh start-bg

# No .pytest_cache in the checkout.
ROOKERY_URL="http://127.0.0.1:${GATEWAY_PORT}" .venv/bin/python -m pytest -q -p no:cacheprovider tests/python
