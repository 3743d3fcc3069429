#!/usr/bin/env bash
# The project's Python environment (.venv): Mastodon.py and pytest for the client tests,
# moto's S3 server for the media service's S3 test. Idempotent and quick when current.
set -euo pipefail

# shellcheck source=deploy/dev/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

if [[ ! -x .venv/bin/python ]]; then
    log "creating .venv"
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q -r tests/python/requirements.txt
