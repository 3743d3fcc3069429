"""Drive a running Rookery with the real Mastodon.py client library.

Usage:
    python3 -m venv /tmp/rookery-py
    /tmp/rookery-py/bin/pip install -r tests/python/requirements.txt
    ROOKERY_URL=http://127.0.0.1:18080 /tmp/rookery-py/bin/pytest -v tests/python

Everything below goes through Mastodon.py's public API. A `requests.Session`
with a response hook (the Recorder of conftest.py, passed via the public
`session=` argument) records each HTTP exchange: it is printed to stdout (pytest
shows it for failing tests) and used for a few wire-level checks that
Mastodon.py's permissive parsing would otherwise hide (e.g. it turns an integer
`id` into a str, and an unparseable `created_at` into None, without complaint).
The social graph (follows, blocks, mutes, lists, search) is in test_graph.py.

Notes on the pinned Mastodon.py 2.3.3 behaviour this test relies on:
  * Its default `version_check_mode` is "none". We pass "created" so that the
    constructor GETs /api/v1/instance/ and /api/v2/instance/ (with a trailing
    slash) and every call checks the server's version against the Mastodon
    version that introduced the endpoint.
  * `ratelimit_method="throw"`: the default "wait" would sleep (up to 5 min)
    and retry on a 429 instead of failing.
  * `allow_http=True` on log_in/revoke_access_token for http:// base URLs:
    if the server publishes /.well-known/oauth-authorization-server with
    http:// endpoints, Mastodon.py refuses them unless told otherwise.
"""

import html
import json
import re
import secrets
import warnings
from datetime import datetime

import pytest

from conftest import OOB, SCOPES  # the Recorder and the client fixtures live in conftest.py
from mastodon import (
    MastodonAPIError,
    MastodonIllegalArgumentError,
    MastodonNotFoundError,
    MastodonUnauthorizedError,
)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def account(new_client, rec):
    """Registers a fresh account via create_account() and snapshots it."""
    username = "py" + secrets.token_hex(6)  # 14 chars: [a-z0-9]
    email = f"{username}@example.com"
    # '+', '&', '=', '%' and a space: exercises form-urlencoded decoding.
    password = "Pw+" + secrets.token_hex(8) + " &=%!"
    api = new_client()
    start = len(rec.exchanges)
    token = api.create_account(username, password, email, agreement=True, locale="en")
    registration = rec.exchanges[start:]
    initial = api.account_verify_credentials()
    initial_raw = rec.last("GET", "/api/v1/accounts/verify_credentials")["json"]
    return {
        "registration": registration,
        "username": username,
        "email": email,
        "password": password,
        "token": token,
        "api": api,
        "initial": initial,
        "initial_raw": initial_raw,
    }


def plain_text(html_fragment):
    return html.unescape(re.sub(r"<[^>]+>", "", html_fragment or ""))


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------
def test_create_app(app, rec):
    assert isinstance(app["client_id"], str) and app["client_id"]
    assert isinstance(app["client_secret"], str) and app["client_secret"]
    ex = rec.last("POST", "/api/v1/apps")
    assert ex["status"] == 200, ex["text"]
    body = ex["json"]
    assert body["name"] == "rookery-mastodon-py-test"
    assert body["redirect_uri"] == OOB


def test_create_account_token(account):
    # create_account first did a client_credentials grant, then used that
    # app token as Bearer for POST /api/v1/accounts.
    grant, reg = account["registration"]
    assert (grant["method"], grant["path"]) == ("POST", "/oauth/token")
    assert "grant_type=client_credentials" in grant["req_body"]
    assert grant["status"] == 200, grant["text"]
    assert (reg["method"], reg["path"]) == ("POST", "/api/v1/accounts")
    assert reg["status"] == 200, reg["text"]
    assert reg["req_headers"].get("Authorization") == "Bearer " + grant["json"]["access_token"]
    assert reg["json"]["token_type"].lower() == "bearer"
    assert set(SCOPES) <= set(reg["json"]["scope"].split(" "))

    assert isinstance(account["token"], str) and account["token"]
    assert account["api"].access_token == account["token"]


def test_log_in_password_grant(account, new_client, rec, allow_http):
    second = new_client()
    token = second.log_in(account["email"], account["password"], scopes=SCOPES, allow_http=allow_http)
    assert isinstance(token, str) and token
    assert token != account["token"], "a second grant must issue a distinct token"
    ex = rec.last("POST", "/oauth/token")
    assert ex["status"] == 200, ex["text"]
    assert set(SCOPES) <= set(ex["json"]["scope"].split(" "))

    # Both tokens are valid and belong to the same account.
    me_reg = account["api"].account_verify_credentials()
    me_login = second.account_verify_credentials()
    assert me_reg.id == me_login.id
    assert me_login.username == account["username"]


def test_verify_credentials(account):
    me, raw = account["initial"], account["initial_raw"]
    assert me.username == account["username"]
    assert me.acct == account["username"]
    # Mastodon ids are JSON strings of digits; Mastodon.py would coerce an int.
    assert isinstance(raw["id"], str) and re.fullmatch(r"[0-9]+", raw["id"]), raw["id"]
    assert str(me.id) == raw["id"]
    assert isinstance(me.display_name, str)
    assert me.display_name in ("", account["username"])
    assert raw["locked"] is False
    assert me.locked is False
    assert raw["bot"] is False
    assert isinstance(me.created_at, datetime), f"created_at not parseable: {raw.get('created_at')!r}"
    assert me.created_at.tzinfo is not None
    assert isinstance(raw.get("source"), dict), "verify_credentials must include `source`"
    assert me.source is not None
    assert me.source.note == ""
    for key in ("privacy", "sensitive", "note", "fields"):
        assert key in raw["source"], f"source.{key} missing"


def test_update_credentials(account, rec):
    api = account["api"]
    tag = secrets.token_hex(3)
    display_name = f"Py Tëst 🦜 {tag}"
    note = f"Hello from Mastodon.py {tag} & friends <3"
    updated = api.account_update_credentials(
        display_name=display_name, note=note, locked=True, bot=True, discoverable=True
    )
    ex = rec.last("PATCH", "/api/v1/accounts/update_credentials")
    assert ex["status"] == 200, ex["text"]
    assert updated.display_name == display_name
    assert updated.locked is True

    me = api.account_verify_credentials()
    raw = rec.last("GET", "/api/v1/accounts/verify_credentials")["json"]
    assert me.display_name == display_name
    assert raw["locked"] is True and me.locked is True
    assert raw["bot"] is True and me.bot is True
    assert raw["discoverable"] is True and me.discoverable is True
    assert me.source.note == note
    assert note in plain_text(me.note), f"HTML note {me.note!r} does not contain {note!r}"
    assert "<3" not in me.note, f"note HTML is not escaped: {me.note!r}"


def test_account_and_lookup(account):
    api = account["api"]
    me = api.account_verify_credentials()
    by_id = api.account(me.id)
    by_acct = api.account_lookup(account["username"])
    assert by_id.id == me.id
    assert by_acct.id == me.id
    assert by_acct.username == account["username"]
    assert by_id.acct == account["username"]

    with pytest.raises(MastodonNotFoundError):
        api.account_lookup("nobody_" + secrets.token_hex(4))
    with pytest.raises(MastodonNotFoundError):
        api.account("9" * 18)


def test_instance(account):
    api = account["api"]
    inst = api.instance()  # >= 4.0.0 detected: GET /api/v2/instance/
    assert isinstance(inst.version, str) and inst.version
    v1 = api.instance_v1()
    assert isinstance(v1.version, str) and v1.version


def test_version_detection(new_client, base_url):
    api = new_client()  # constructor already ran the version check once
    assert api.mastodon_major >= 4, "instance version must parse as Mastodon >= 4.x"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        version = api.retrieve_mastodon_version(fail_hard=True)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", version), version
    assert api.verify_minimum_version("4.0.0", cached=True)
    assert api.mastodon_api_version >= 1, "/api/v2/instance should carry api_versions.mastodon"
    msgs = [str(w.message) for w in caught]
    assert not any("no API version found" in m for m in msgs), msgs


def test_log_in_wrong_password(account, new_client, rec, allow_http):
    api = new_client()
    with pytest.raises(MastodonIllegalArgumentError) as err:
        api.log_in(account["email"], account["password"] + "x", scopes=SCOPES, allow_http=allow_http)
    # log_in wraps the HTTP error; the original MastodonAPIError is the context.
    assert isinstance(err.value.__context__, MastodonAPIError), repr(err.value.__context__)
    ex = rec.last("POST", "/oauth/token")
    assert ex["status"] in (400, 401), ex["text"]
    assert isinstance(ex["json"], dict) and ex["json"].get("error"), ex["text"]
    assert api.access_token is None


def test_register_duplicate_username(account, new_client, rec):
    api = new_client()
    with pytest.raises(MastodonIllegalArgumentError) as err:
        api.create_account(
            account["username"], "Other-" + secrets.token_hex(8), "other." + account["email"], agreement=True
        )
    msg = str(err.value).lower()
    assert "taken" in msg and "username" in msg, str(err.value)
    ex = rec.last("POST", "/api/v1/accounts")
    assert ex["status"] == 422, ex["text"]


def test_register_duplicate_username_detailed(account, new_client):
    api = new_client()
    token, detail = api.create_account(
        account["username"],
        "Other-" + secrets.token_hex(8),
        "other2." + account["email"],
        agreement=True,
        return_detailed_error=True,
    )
    assert token is None
    assert detail.error
    assert detail.details.username, json.dumps(detail, default=str)
    assert detail.details.username[0].error == "ERR_TAKEN"


def test_revoke_access_token(account, new_client, allow_http):
    api = new_client()
    token = api.log_in(account["email"], account["password"], scopes=SCOPES, allow_http=allow_http)
    stale = new_client(access_token=token)  # built while the token is still valid
    me_id = stale.account_verify_credentials().id

    api.revoke_access_token(allow_http=allow_http)
    assert api.access_token is None  # Mastodon.py forgets the token locally...

    with pytest.raises(MastodonUnauthorizedError):  # ...so this goes out without a token
        api.account_verify_credentials()
    with pytest.raises(MastodonUnauthorizedError):  # and the revoked token is refused
        stale.account_verify_credentials()

    # Revoking one token leaves the account's other tokens alone.
    assert account["api"].account_verify_credentials().id == me_id
