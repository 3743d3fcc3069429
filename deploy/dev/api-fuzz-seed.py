#!/usr/bin/env python3
"""Seeds a fresh Rookery stack for deploy/dev/api-fuzz.sh, so the fuzzer meets real ids.

    api-fuzz-seed.py BASE_URL OUT_DIR

Registers three accounts (fuzzer, friend, stranger) through the API, as a client would
(app, client-credentials token, POST /api/v1/accounts), then makes a little of
everything: statuses with a hashtag, a reply, a mention, an attachment, follows both
ways, a pending follow request, favourites, a reblog, a bookmark, a pin, a followed tag,
notifications, markers. Writes to OUT_DIR:
  token        the fuzzer's access token (scopes "read write follow push")
  ids.toml     schemathesis dictionaries of the ids made (account_ids, status_ids, ...)
Only talks to BASE_URL (the background stack on 127.0.0.1). Needs `requests` (.venv).
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import requests

SCOPES = "read write follow push"
TIMEOUT = 30
PNG = Path(__file__).resolve().parents[2] / "crates/gateway/assets/missing.png"


def main() -> int:
    base, out = sys.argv[1].rstrip("/"), Path(sys.argv[2])
    s = requests.Session()

    def call(method: str, path: str, token: str | None = None, ok=(200,), **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = s.request(method, base + path, headers=headers, timeout=TIMEOUT, **kw)
        if r.status_code not in ok:
            sys.exit(f"seed: {method} {path} -> {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    app = call(
        "POST",
        "/api/v1/apps",
        json={"client_name": "rookery-api-fuzz", "redirect_uris": ["urn:ietf:wg:oauth:2.0:oob"], "scopes": SCOPES},
    )
    app_token = call(
        "POST",
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "scope": SCOPES,
        },
    )["access_token"]

    def register(prefix: str) -> tuple[str, str, str]:
        username = prefix + secrets.token_hex(4)
        token = call(
            "POST",
            "/api/v1/accounts",
            app_token,
            data={
                "username": username,
                "email": f"{username}@example.com",
                "password": "Pw-" + secrets.token_hex(8),
                "agreement": "true",
                "locale": "en",
            },
        )["access_token"]
        me = call("GET", "/api/v1/accounts/verify_credentials", token)
        return token, me["id"], username

    fuzzer, fuzzer_id, fuzzer_name = register("fuzzer")
    friend, friend_id, _ = register("friend")
    stranger, stranger_id, _ = register("stranger")

    # The fuzzer's statuses: one with an attachment and a hashtag, a reply, a pinned one.
    media = call("POST", "/api/v2/media", fuzzer, ok=(200, 202), files={"file": ("a.png", PNG.read_bytes(), "image/png")})
    call("PUT", f"/api/v1/media/{media['id']}", fuzzer, data={"description": "A grey square"})
    first = call(
        "POST",
        "/api/v1/statuses",
        fuzzer,
        json={"status": "Fuzzing #fuzz with a picture", "media_ids": [media["id"]], "visibility": "public"},
    )
    reply = call("POST", "/api/v1/statuses", fuzzer, json={"status": "And a reply", "in_reply_to_id": first["id"]})
    call("PUT", f"/api/v1/statuses/{reply['id']}", fuzzer, json={"status": "And an edited reply"})
    call("POST", f"/api/v1/statuses/{first['id']}/pin", fuzzer)
    # An upload left unattached, for /api/v1/media/{id}.
    loose = call("POST", "/api/v2/media", fuzzer, ok=(200, 202), files={"file": ("b.png", PNG.read_bytes(), "image/png")})

    # The friend: follows both ways, a mention, interactions with the fuzzer's status.
    call("POST", f"/api/v1/accounts/{fuzzer_id}/follow", friend)
    call("POST", f"/api/v1/accounts/{friend_id}/follow", fuzzer)
    mention = call("POST", "/api/v1/statuses", friend, json={"status": f"Hello @{fuzzer_name} #fuzz"})
    call("POST", f"/api/v1/statuses/{first['id']}/favourite", friend)
    call("POST", f"/api/v1/statuses/{first['id']}/reblog", friend)
    call("POST", f"/api/v1/statuses/{mention['id']}/favourite", fuzzer)
    call("POST", f"/api/v1/statuses/{mention['id']}/bookmark", fuzzer)
    call("POST", "/api/v1/tags/fuzz/follow", fuzzer)

    # The stranger asks to follow the (then locked) fuzzer: a pending follow request.
    call("PATCH", "/api/v1/accounts/update_credentials", fuzzer, data={"locked": "true"})
    call("POST", f"/api/v1/accounts/{fuzzer_id}/follow", stranger)
    call("PATCH", "/api/v1/accounts/update_credentials", fuzzer, data={"locked": "false"})

    notifications = call("GET", "/api/v1/notifications", fuzzer)
    groups = call("GET", "/api/v2/notifications", fuzzer)
    call("POST", "/api/v1/markers", fuzzer, json={"home": {"last_read_id": first["id"]}})

    dictionaries = {
        # Not the fuzzer's own id: following, blocking, muting... oneself is a 422 that
        # no schema can describe.
        "account_ids": [friend_id, stranger_id],
        "status_ids": [first["id"], reply["id"], mention["id"]],
        # Only the unattached upload: an attachment in use is a 422 to PUT and DELETE.
        "media_ids": [loose["id"]],
        "notification_ids": [n["id"] for n in notifications][:10] or ["1"],
        "group_keys": [g["group_key"] for g in groups.get("notification_groups", [])][:10] or ["1"],
        "tags": ["fuzz"],
        "accts": [fuzzer_name],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "token").write_text(fuzzer)
    (out / "ids.toml").write_text(
        "".join(
            f"\n[dictionaries.{name}]\nvalues = {json.dumps([str(v) for v in values])}\n"
            for name, values in dictionaries.items()
        )
    )
    print(
        f"seeded: accounts {dictionaries['account_ids']}, statuses {dictionaries['status_ids']}, "
        f"{len(notifications)} notifications",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
