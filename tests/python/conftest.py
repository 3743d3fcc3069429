"""Shared fixtures of the Mastodon.py compatibility tests (tests/python).

Everything here goes through Mastodon.py's public API or plain `requests`. A
`requests.Session` with a response hook (passed via Mastodon.py's public `session=`
argument) records each HTTP exchange: it is printed to stdout (pytest shows it for
failing tests) and used for wire-level checks that Mastodon.py's permissive parsing
would otherwise hide. See test_mastodon_py.py for the Mastodon.py 2.3.3 behaviours
these fixtures rely on (version_check_mode="created", ratelimit_method="throw",
allow_http).

Each test module gets its own Recorder, app and client factory (module scope).
"""

import glob
import os
import re
import secrets
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from mastodon import Mastodon

SCOPES = ["read", "write", "follow", "push"]
OOB = "urn:ietf:wg:oauth:2.0:oob"
TIMEOUT = 30


# Every credential the tests sent or received (tokens, client secrets, passwords), so
# that the session can check none of them reached the stack's logs.
SECRETS = set()
_FORM_PASSWORD = re.compile(r"(?:^|&)password=([^&]+)")


def _remember_secrets(req, body, parsed):
    auth = req.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        SECRETS.add(auth[len("Bearer "):].strip())
    if isinstance(parsed, dict):
        for key in ("access_token", "refresh_token", "client_secret"):
            if isinstance(parsed.get(key), str):
                SECRETS.add(parsed[key])
    if isinstance(body, str):
        SECRETS.update(m.group(1) for m in _FORM_PASSWORD.finditer(body))


@pytest.fixture(scope="session", autouse=True)
def secrets_never_logged():
    """After the whole session: no token, client secret or password any test used appears
    in the stack's logs (pytest.sh runs the stack with debug logging for our crates and
    sets ROOKERY_LOG_GLOB; against another instance there are no logs to read)."""
    yield
    pattern = os.environ.get("ROOKERY_LOG_GLOB")
    if not pattern:
        return
    files = glob.glob(pattern)
    assert files, f"no log files match {pattern}"
    secrets_used = {s for s in SECRETS if len(s) >= 8}
    assert secrets_used, "the session recorded no credentials: the check would prove nothing"
    leaks = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                leaks.extend(f"{path}:{n}" for s in secrets_used if s in line)
    assert not leaks, f"credentials found in logs at {leaks[:10]}"


# --------------------------------------------------------------------------
# HTTP recording
# --------------------------------------------------------------------------
class Recorder:
    """Records every request/response made through `self.session`."""

    def __init__(self):
        self.exchanges = []
        self.session = requests.Session()
        self.session.hooks["response"].append(self._hook)

    def _hook(self, resp, *args, **kwargs):
        req = resp.request
        body = req.body
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        try:
            parsed = resp.json()
        except ValueError:
            parsed = None
        ex = {
            "method": req.method,
            "url": req.url,
            "path": urlsplit(req.url).path,
            # Copies that stay case-insensitive, as HTTP header names are.
            "req_headers": CaseInsensitiveDict(req.headers),
            "req_body": body,
            "status": resp.status_code,
            "resp_headers": CaseInsensitiveDict(resp.headers),
            "text": resp.text,
            "json": parsed,
        }
        self.exchanges.append(ex)
        _remember_secrets(req, body, parsed)
        print(
            f">>> {req.method} {req.url}\n"
            f"    content-type: {req.headers.get('Content-Type')}\n"
            f"    authorization: {'Bearer …' if req.headers.get('Authorization') else None}\n"
            f"    body: {body!r}\n"
            f"<<< {resp.status_code} {resp.headers.get('Content-Type')}\n"
            f"    {resp.text[:2000]}"
        )
        return None

    def last(self, method, path):
        """Most recent exchange for METHOD PATH (trailing slash ignored)."""
        want = path.rstrip("/")
        for ex in reversed(self.exchanges):
            if ex["method"] == method and ex["path"].rstrip("/") == want:
                return ex
        raise AssertionError(f"no {method} {path} was recorded")


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def base_url():
    url = os.environ.get("ROOKERY_URL", "").strip()
    if not url:
        pytest.fail(
            "ROOKERY_URL is not set: point it at a running Rookery gateway, "
            "e.g. ROOKERY_URL=http://127.0.0.1:18080",
            pytrace=False,
        )
    if not url.startswith(("http://", "https://")):
        pytest.fail(f"ROOKERY_URL must start with http:// or https://, got {url!r}", pytrace=False)
    return url.rstrip("/")


@pytest.fixture(scope="session")
def allow_http(base_url):
    return base_url.startswith("http://")


@pytest.fixture(scope="session")
def preflight(base_url):
    """Plain-HTTP checks of what Mastodon.py needs before it can work at all.

    Without them a broken instance endpoint surfaces as a RecursionError deep
    inside Mastodon.py 2.3.3 (retrieve_mastodon_version -> verify_minimum_version
    -> retrieve_mastodon_version ...), and an incomplete OAuth metadata document
    as a TypeError inside log_in().
    """
    problems = []
    for path in ("/api/v1/instance/", "/api/v2/instance/"):  # Mastodon.py's exact paths
        try:
            r = requests.get(base_url + path, timeout=TIMEOUT)
        except requests.RequestException as e:
            pytest.fail(f"cannot reach Rookery at {base_url}: {e}", pytrace=False)
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if r.status_code != 200 or not isinstance(doc, dict):
            problems.append(f"GET {path} -> {r.status_code} {r.text[:200]!r} (need 200 JSON)")
            continue
        if not re.match(r"\d+\.\d+\.\d+", str(doc.get("version", ""))):
            problems.append(f"GET {path}: version {doc.get('version')!r} must start with X.Y.Z")
    r = requests.get(base_url + "/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    try:
        meta = r.json() if r.ok else None
    except ValueError:
        meta = None  # Mastodon.py ignores a non-JSON answer
    if isinstance(meta, dict):
        for key in ("token_endpoint", "revocation_endpoint"):
            if not isinstance(meta.get(key), str):
                problems.append(f"oauth-authorization-server: {key} missing (Mastodon.py then posts to None)")
        if not isinstance(meta.get("grant_types_supported"), list) or "password" not in meta["grant_types_supported"]:
            problems.append("oauth-authorization-server: grant_types_supported must list 'password'")
    if problems:
        pytest.fail("Rookery is not usable by Mastodon.py:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def rec():
    return Recorder()


@pytest.fixture(scope="module")
def app(base_url, rec, preflight):
    client_id, client_secret = Mastodon.create_app(
        "rookery-mastodon-py-test",
        scopes=SCOPES,
        redirect_uris=OOB,
        website="https://example.com/rookery-tests",
        api_base_url=base_url,
        request_timeout=TIMEOUT,
        session=rec.session,
    )
    return {"client_id": client_id, "client_secret": client_secret}


@pytest.fixture(scope="module")
def new_client(base_url, rec, app):
    """Factory for Mastodon objects bound to our app (version check on)."""

    def make(**kwargs):
        opts = dict(
            client_id=app["client_id"],
            client_secret=app["client_secret"],
            api_base_url=base_url,
            version_check_mode="created",
            ratelimit_method="throw",
            request_timeout=TIMEOUT,
            session=rec.session,
        )
        opts.update(kwargs)
        return Mastodon(**opts)

    return make


@pytest.fixture(scope="module")
def register(new_client):
    """Factory: registers a fresh account (unique username) and returns a namespace with
    `api` (a Mastodon client logged in as it), `id`, `username` and `me` (the account as
    verify_credentials returned it after any update)."""

    def make(prefix="g", display_name=None, locked=None):
        username = prefix + secrets.token_hex(5)
        api = new_client()
        api.create_account(
            username, "Pw-" + secrets.token_hex(8), f"{username}@example.com", agreement=True, locale="en"
        )
        if display_name is not None or locked is not None:
            api.account_update_credentials(display_name=display_name, locked=locked)
        me = api.me()
        assert me.username == username
        return SimpleNamespace(api=api, id=me.id, username=username, me=me)

    return make
