"""Statuses and timelines through the real Mastodon.py client: posting (visibility,
spoiler, sensitivity, language, mentions, hashtags), replies and threads, favourites,
reblogs, bookmarks, pins, edits with their history, deletion; the home, public, local,
hashtag and account timelines with Link-header paging; search, hashtags (follow,
trends); the errors a client sees; and the shape of every Status on the wire.

Fixtures (Recorder `rec`, `new_client`, `register`) are in conftest.py. Every test
registers its own accounts and uses its own random words and hashtags, so tests are
independent of each other and of the order they run in.

Behaviour of the server these tests wait for:
  * Home timelines are filled asynchronously (fan-out runs on events): after a post, the
    follower's home is polled for up to HOME_WAIT seconds. A home feed is kept up to date
    only once its owner has read it (the first read rebuilds it from Postgres), so a
    follower reads its home before the author posts.
  * Counters of an account (statuses_count) move when the users service applies the
    timeline's events: polled too.

Notes on the pinned Mastodon.py 2.3.3 behaviour these tests rely on (read from its
source):
  * Under version_check_mode="created" the newest methods used here need Mastodon 4.3.0
    (statuses) or 4.0.0 (tag, tag_follow, followed_tags); the server reports 4.5.0.
  * timeline_public/local/hashtag first look at instance v2
    configuration.timelines_access and issue a MastodonWarning if the timeline looks
    unavailable: warnings of that class fail these tests (pytestmark below).
  * timeline_local() is GET /api/v1/timelines/public?local=1; booleans go out as 1/0.
  * status_reply(to_status, text) prepends "@acct " of the author (and of the other
    mentioned accounts), keeps the visibility and spoiler_text of the status replied to,
    and fetches verify_credentials once to know who "self" is.
  * Parsing is permissive: an id becomes a MaybeSnowflakeIdType (a str subclass), a
    timestamp a datetime (None if unparseable), a missing key None. Hence the wire-level
    checks of every recorded Status (the autouse fixture `statuses_on_the_wire`).
  * fetch_next/fetch_previous regex-extract max_id (rel="next") and min_id
    (rel="prev") from the Link header and reuse the other parameters of the first call;
    they return None when the page had no such link.
  * Errors: 404 -> MastodonNotFoundError, other 4xx -> MastodonAPIError with args
    ("Mastodon API returned error", status, reason, error message). For endpoints typed
    as lists (status_history, status_favourited_by) it reports "Endpoint not found." as
    the message of a 404 whatever the body said.
"""

import html
import re
import secrets
import string
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from mastodon import MastodonAPIError, MastodonNotFoundError
from mastodon.return_types import Account, Status, StatusEdit, Tag

pytestmark = pytest.mark.filterwarnings("error::mastodon.errors.MastodonWarning")

UNKNOWN_ID = "9" * 18
HOME_WAIT = 10.0
VISIBILITIES = ("public", "unlisted", "private", "direct")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)")
DIGITS = re.compile(r"[0-9]+")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def letters(n=10):
    """A random lowercase word (no digits: the search tokenizer may split at them)."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(n))


def new_tag():
    return "tl" + letters(10)


def ids(statuses):
    return [str(s.id) for s in statuses]


def api_error(excinfo):
    """(status, error message) of a MastodonAPIError raised by Mastodon.py."""
    args = excinfo.value.args
    assert len(args) == 4, args
    return args[1], args[3]


def poll(fetch, done, timeout=HOME_WAIT, interval=0.2):
    """Calls `fetch` until `done(result)` or `timeout` seconds; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result) or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def home_ids(user, **kwargs):
    return ids(user.api.timeline_home(**kwargs))


def wait_home(user, want_in=(), want_out=(), **kwargs):
    """Polls `user`'s home until every id of `want_in` is there and none of `want_out`;
    returns the last list of ids (the caller asserts)."""
    want_in = [str(i) for i in want_in]
    want_out = [str(i) for i in want_out]
    return poll(
        lambda: home_ids(user, **kwargs),
        lambda got: all(i in got for i in want_in) and not any(i in got for i in want_out),
    )


def wait_statuses_count(user, count):
    me = poll(lambda: user.api.me(), lambda me: me.statuses_count == count)
    assert me.statuses_count == count, f"{user.username}: statuses_count {me.statuses_count}, want {count}"


def plain_text(html_fragment):
    return html.unescape(re.sub(r"<[^>]+>", "", html_fragment or ""))


LINK_ENTRY = re.compile(r'<([^<>]+)>;\s*rel="(next|prev)"')


def parse_link(header):
    """The Link header as {rel: url}, in Mastodon's exact shape."""
    links = {}
    for entry in (e.strip() for e in header.split(",")):
        m = LINK_ENTRY.fullmatch(entry)
        assert m, f"malformed Link entry {entry!r} in {header!r}"
        assert m.group(2) not in links, f"rel={m.group(2)} twice in {header!r}"
        links[m.group(2)] = m.group(1)
    return links


def link_cursor(url, key):
    return parse_qs(urlsplit(url).query)[key][0]


# --------------------------------------------------------------------------
# entity checks: as Mastodon.py parsed it, and as it was on the wire
# --------------------------------------------------------------------------
def check_parsed(st, nested=False):
    """A Status as Mastodon.py parsed it has what clients use, with the right types."""
    assert isinstance(st, Status), f"not parsed as a Status: {type(st)}"
    assert DIGITS.fullmatch(str(st.id)), st.id
    assert isinstance(st.created_at, datetime) and st.created_at.tzinfo is not None, st.created_at
    assert isinstance(st.account, Account) and DIGITS.fullmatch(str(st.account.id)), st.account
    assert isinstance(st.account.acct, str) and st.account.acct
    assert isinstance(st.content, str)
    assert st.visibility in VISIBILITIES, st.visibility
    assert isinstance(st.uri, str) and st.uri.startswith(("http://", "https://")), st.uri
    assert isinstance(st.url, str) and st.url.startswith(("http://", "https://")), st.url
    for key in ("media_attachments", "mentions", "tags", "emojis"):
        assert isinstance(st[key], list), (key, st[key])
    for key in ("replies_count", "reblogs_count", "favourites_count"):
        assert isinstance(st[key], int) and not isinstance(st[key], bool) and st[key] >= 0, (key, st[key])
    assert isinstance(st.sensitive, bool)
    assert isinstance(st.spoiler_text, str)
    assert st.language is None or isinstance(st.language, str)
    assert st.edited_at is None or (isinstance(st.edited_at, datetime) and st.edited_at.tzinfo is not None)
    assert st.application is None or isinstance(st.application.name, str)
    for m in st.mentions:
        assert DIGITS.fullmatch(str(m.id)) and m.username and m.acct and m.url, m
    for t in st.tags:
        assert t.name and t.url.startswith(("http://", "https://")), t
    if st.reblog is not None:
        assert not nested, "a reblog of a reblog"
        check_parsed(st.reblog, nested=True)
    st.to_json()  # Mastodon.py can serialise what it parsed


def check_raw(raw, signed_in, method, nested=False):
    """A Status as JSON, against the Mastodon API (openapi `Status`, required fields and
    the nullable ones clients read)."""
    assert isinstance(raw, dict), raw
    required = {
        "id", "created_at", "account", "content", "visibility", "uri", "url", "sensitive",
        "spoiler_text", "media_attachments", "mentions", "tags", "emojis", "replies_count",
        "reblogs_count", "favourites_count", "reblog", "language", "edited_at",
        "in_reply_to_id", "in_reply_to_account_id", "poll", "card",
    }  # fmt: skip
    missing = required - set(raw)
    assert not missing, f"status {raw.get('id')} lacks {sorted(missing)}"
    assert isinstance(raw["id"], str) and DIGITS.fullmatch(raw["id"]), raw["id"]
    assert isinstance(raw["created_at"], str) and ISO_TIME.fullmatch(raw["created_at"]), raw["created_at"]
    account = raw["account"]
    assert isinstance(account, dict) and isinstance(account.get("id"), str), account
    assert DIGITS.fullmatch(account["id"]) and account.get("username") and account.get("acct"), account
    assert isinstance(raw["content"], str)
    assert raw["visibility"] in VISIBILITIES, raw["visibility"]
    assert isinstance(raw["uri"], str) and raw["uri"].startswith(("http://", "https://")), raw["uri"]
    assert isinstance(raw["url"], str) and raw["url"].startswith(("http://", "https://")), raw["url"]
    assert isinstance(raw["sensitive"], bool) and isinstance(raw["spoiler_text"], str)
    for key in ("media_attachments", "mentions", "tags", "emojis"):
        assert isinstance(raw[key], list), (key, raw[key])
    for key in ("replies_count", "reblogs_count", "favourites_count"):
        value = raw[key]
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, (key, value)
    for key in ("in_reply_to_id", "in_reply_to_account_id"):
        assert raw[key] is None or (isinstance(raw[key], str) and DIGITS.fullmatch(raw[key])), (key, raw[key])
    assert raw["edited_at"] is None or ISO_TIME.fullmatch(raw["edited_at"]), raw["edited_at"]
    assert raw["language"] is None or isinstance(raw["language"], str), raw["language"]
    app = raw.get("application")
    assert app is None or (isinstance(app, dict) and isinstance(app.get("name"), str)), app
    for m in raw["mentions"]:
        assert isinstance(m.get("id"), str) and DIGITS.fullmatch(m["id"]), m
        assert m.get("username") and m.get("acct") and m.get("url"), m
    for t in raw["tags"]:
        assert isinstance(t.get("name"), str) and isinstance(t.get("url"), str), t
    # The viewer's flags: booleans for a signed-in viewer, absent for anonymous ones.
    for flag in ("favourited", "reblogged", "muted", "bookmarked"):
        if signed_in:
            assert isinstance(raw.get(flag), bool), f"{flag}={raw.get(flag)!r} for a signed-in viewer"
        else:
            assert flag not in raw, f"{flag} sent to an anonymous viewer"
    assert "pinned" not in raw or isinstance(raw["pinned"], bool), raw.get("pinned")
    # `text` (the source) only answers a deletion.
    if method != "DELETE":
        assert raw.get("text") is None, f"`text` outside a deletion: {raw.get('text')!r}"
    if raw["reblog"] is not None:
        assert not nested, "a reblog of a reblog"
        assert raw["content"] == "", "a reblog has no content of its own"
        check_raw(raw["reblog"], signed_in, method, nested=True)


SINGLE_STATUS = re.compile(
    r"/api/v1/statuses(/[^/]+(/(favourite|unfavourite|reblog|unreblog|bookmark|unbookmark|pin|unpin))?)?"
)
STATUS_LIST = re.compile(r"/api/v1/(timelines/.+|accounts/[^/]+/statuses|favourites|bookmarks|trends/statuses)")


def statuses_in(ex):
    """The Status entities of a recorded (successful) response."""
    path, body = ex["path"].rstrip("/"), ex["json"]
    if path == "/api/v1/statuses" and ex["method"] == "GET":
        return body
    if SINGLE_STATUS.fullmatch(path):
        return [body]
    if STATUS_LIST.fullmatch(path):
        return body
    if path.endswith("/context"):
        return body["ancestors"] + body["descendants"]
    if path == "/api/v2/search":
        return body["statuses"]
    return []


@pytest.fixture(autouse=True)
def statuses_on_the_wire(rec):
    """After each test: every Status any response of the test carried is well-formed."""
    start = len(rec.exchanges)
    yield
    checked = 0
    for ex in rec.exchanges[start:]:
        if not 200 <= ex["status"] < 300:
            continue
        signed_in = bool(ex["req_headers"].get("Authorization"))
        for raw in statuses_in(ex):
            try:
                check_raw(raw, signed_in, ex["method"])
            except AssertionError as e:
                raise AssertionError(f"{ex['method']} {ex['url']}: {e}") from e
            checked += 1
    print(f"wire check: {checked} statuses")


# --------------------------------------------------------------------------
# posting
# --------------------------------------------------------------------------
def test_post_with_options(register, rec, new_client):
    alice, bob = register("pa"), register("pb")
    word, tag = letters(), new_tag()
    text = f'Hello @{bob.username} <b>{word}</b> & "friends" #{tag}'

    st = alice.api.status_post(
        text, visibility="unlisted", spoiler_text="birds ahead", sensitive=True, language="de"
    )
    ex = rec.last("POST", "/api/v1/statuses")
    assert ex["status"] == 200, ex["text"]
    sent = parse_qs(ex["req_body"])
    assert sent["visibility"] == ["unlisted"] and sent["language"] == ["de"], sent
    assert sent["spoiler_text"] == ["birds ahead"] and sent["sensitive"] == ["1"], sent
    check_parsed(st)
    raw = ex["json"]

    assert str(st.account.id) == str(alice.id) and st.account.username == alice.username
    assert (st.visibility, st.spoiler_text, st.sensitive, st.language) == ("unlisted", "birds ahead", True, "de")
    assert (st.replies_count, st.reblogs_count, st.favourites_count) == (0, 0, 0)
    assert (st.favourited, st.reblogged, st.bookmarked) == (False, False, False)
    assert st.reblog is None and st.in_reply_to_id is None and st.in_reply_to_account_id is None
    assert st.edited_at is None and raw["edited_at"] is None
    assert raw["id"] in st.uri and raw["id"] in st.url
    now = datetime.now(timezone.utc)
    assert abs(st.created_at - now) < timedelta(minutes=5), (st.created_at, now)

    # The HTML is escaped, the text survives, mentions and the hashtag are linked.
    assert "<b>" not in st.content, st.content
    content = plain_text(st.content)
    assert f"<b>{word}</b>" in content and '& "friends"' in content, content
    assert [(str(m.id), m.username, m.acct) for m in st.mentions] == [(str(bob.id), bob.username, bob.username)]
    assert [t.name for t in st.tags] == [tag]
    assert urlsplit(st.tags[0].url).path == f"/tags/{tag}"

    # The same as read back by its author, by someone else, and anonymously.
    again = alice.api.status(st.id)
    check_parsed(again)
    assert (again.content, again.spoiler_text, again.visibility) == (st.content, st.spoiler_text, "unlisted")
    assert bob.api.status(st.id).content == st.content
    anonymous = new_client().status(st.id)
    assert anonymous.content == st.content
    assert "favourited" not in rec.last("GET", f"/api/v1/statuses/{st.id}")["json"]

    # Defaults: public, not sensitive, no spoiler; a language of the caller's choice is kept.
    plain = alice.api.status_post("just words")
    assert (plain.visibility, plain.sensitive, plain.spoiler_text) == ("public", False, "")
    assert parse_qs(rec.last("POST", "/api/v1/statuses")["req_body"]).get("visibility") is None
    assert alice.api.status_post("bonjour", language="fr").language == "fr"
    wait_statuses_count(alice, 3)


def test_idempotency_key_and_batch_lookup(register, rec):
    alice = register("ik")
    key = "retry-" + secrets.token_hex(8)
    first = alice.api.status_post("only once", idempotency_key=key)
    assert rec.last("POST", "/api/v1/statuses")["req_headers"]["Idempotency-Key"] == key
    second = alice.api.status_post("only once", idempotency_key=key)
    assert str(second.id) == str(first.id), "a retry with the same Idempotency-Key must not post again"
    other = alice.api.status_post("only once")
    assert str(other.id) != str(first.id)
    wait_statuses_count(alice, 2)

    # GET /api/v1/statuses?id[]=...: in the order asked for, unknown ids left out.
    got = alice.api.statuses([other.id, UNKNOWN_ID, first.id])
    assert ids(got) == [str(other.id), str(first.id)]
    for st in got:
        check_parsed(st)


# --------------------------------------------------------------------------
# replies and threads
# --------------------------------------------------------------------------
def test_reply_thread_and_context(register, rec):
    alice, bob, carol = register("ra"), register("rb"), register("rc")
    root = alice.api.status_post(f"root of a thread, cc @{carol.username}", spoiler_text="thread")

    reply = bob.api.status_reply(root, "a reply")
    check_parsed(reply)
    sent = parse_qs(rec.last("POST", "/api/v1/statuses")["req_body"])
    assert sent["in_reply_to_id"] == [str(root.id)], sent
    assert (str(reply.in_reply_to_id), str(reply.in_reply_to_account_id)) == (str(root.id), str(alice.id))
    assert reply.spoiler_text == "thread", "status_reply keeps the spoiler of the status replied to"
    assert {m.username for m in reply.mentions} == {alice.username, carol.username}

    deeper = alice.api.status_reply(reply, "a reply to the reply", untag=True)
    assert str(deeper.in_reply_to_id) == str(reply.id)
    assert str(deeper.in_reply_to_account_id) == str(bob.id)
    aside = carol.api.status_reply(root, "another branch")

    root_now = poll(lambda: alice.api.status(root.id), lambda s: s.replies_count == 2)
    assert root_now.replies_count == 2, "root: two direct replies"
    assert poll(lambda: bob.api.status(reply.id), lambda s: s.replies_count == 1).replies_count == 1

    ctx = carol.api.status_context(reply.id)
    assert ids(ctx.ancestors) == [str(root.id)]
    assert ids(ctx.descendants) == [str(deeper.id)]
    for st in ctx.ancestors + ctx.descendants:
        check_parsed(st)
    ctx = bob.api.status_context(root.id)
    assert ctx.ancestors == []
    assert sorted(ids(ctx.descendants)) == sorted(map(str, (reply.id, deeper.id, aside.id)))
    assert ids(ctx.descendants).index(str(reply.id)) < ids(ctx.descendants).index(str(deeper.id))
    ctx = alice.api.status_context(deeper.id)
    assert ids(ctx.ancestors) == [str(root.id), str(reply.id)], "ancestors, oldest first"
    assert ctx.descendants == []

    # Deleting a reply takes it out of the thread and the counter.
    carol.api.status_delete(aside.id)
    assert poll(lambda: alice.api.status(root.id), lambda s: s.replies_count == 1).replies_count == 1
    assert str(aside.id) not in ids(alice.api.status_context(root.id).descendants)

    # Replying to a status that does not exist.
    with pytest.raises(MastodonNotFoundError):
        bob.api.status_post("into the void", in_reply_to_id=UNKNOWN_ID)


# --------------------------------------------------------------------------
# favourites, reblogs, bookmarks, pins
# --------------------------------------------------------------------------
def test_favourite(register, rec, new_client):
    alice, bob, carol = register("fa"), register("fb"), register("fc")
    st = alice.api.status_post("favourite me")

    fav = bob.api.status_favourite(st.id)
    check_parsed(fav)
    assert str(fav.id) == str(st.id)
    assert (fav.favourited, fav.favourites_count, fav.reblogged) == (True, 1, False)
    # Again: no change (idempotent).
    fav = bob.api.status_favourite(st.id)
    assert (fav.favourited, fav.favourites_count) == (True, 1)
    carol.api.status_favourite(st.id)

    seen = alice.api.status(st.id)
    assert (seen.favourited, seen.favourites_count) == (False, 2), "the author has not favourited it"
    assert new_client().status(st.id).favourites_count == 2

    assert ids(alice.api.status_favourited_by(st.id)) == [str(carol.id), str(bob.id)]
    assert ids(new_client().status_favourited_by(st.id)) == [str(carol.id), str(bob.id)]
    assert ids(bob.api.favourites()) == [str(st.id)]
    assert bob.api.favourites()[0].favourited is True

    # favourites pages with Link headers (cursors are favourites, not statuses).
    other = alice.api.status_post("favourite me too")
    bob.api.status_favourite(other.id)
    page = bob.api.favourites(limit=1)
    assert ids(page) == [str(other.id)]
    page = bob.api.fetch_next(page)
    assert ids(page) == [str(st.id)]
    page = bob.api.fetch_next(page)
    assert page is None or ids(page) == []

    unfav = bob.api.status_unfavourite(st.id)
    assert (unfav.favourited, unfav.favourites_count) == (False, 1)
    assert ids(bob.api.favourites()) == [str(other.id)]
    assert ids(alice.api.status_favourited_by(st.id)) == [str(carol.id)]
    # Unfavouriting what one has not favourited is a no-op.
    unfav = bob.api.status_unfavourite(st.id)
    assert (unfav.favourited, unfav.favourites_count) == (False, 1)
    assert carol.api.favourites()[0].favourited is True


def test_reblog(register, rec, new_client):
    alice, bob = register("ba"), register("bb")
    st = alice.api.status_post("boost me")

    boost = bob.api.status_reblog(st.id)
    ex = rec.last("POST", f"/api/v1/statuses/{st.id}/reblog")
    assert ex["status"] == 200, ex["text"]
    check_parsed(boost)
    # The reblog is a status of its own with the original nested in `reblog`.
    assert str(boost.id) != str(st.id)
    assert str(boost.account.id) == str(bob.id)
    assert isinstance(boost.reblog, Status) and str(boost.reblog.id) == str(st.id)
    assert str(boost.reblog.account.id) == str(alice.id)
    assert (boost.reblog.reblogged, boost.reblog.reblogs_count) == (True, 1)
    assert boost.reblog.content == st.content and ex["json"]["content"] == ""
    assert boost.visibility == "public"
    # Reblogging again answers the same reblog.
    assert str(bob.api.status_reblog(st.id).id) == str(boost.id)

    seen = alice.api.status(st.id)
    assert (seen.reblogged, seen.reblogs_count) == (False, 1)
    seen = bob.api.status(st.id)
    assert (seen.reblogged, seen.reblogs_count) == (True, 1)
    # The reblog itself can be fetched by id, and shows up on the reblogger's profile.
    by_id = new_client().status(boost.id)
    assert str(by_id.reblog.id) == str(st.id)
    mine = bob.api.account_statuses(bob.id)
    assert ids(mine) == [str(boost.id)] and str(mine[0].reblog.id) == str(st.id)
    assert ids(bob.api.account_statuses(bob.id, exclude_reblogs=True)) == []
    assert ids(alice.api.status_reblogged_by(st.id)) == [str(bob.id)]
    assert ids(new_client().status_reblogged_by(st.id)) == [str(bob.id)]

    # unreblog answers the original, no longer reblogged.
    undone = bob.api.status_unreblog(st.id)
    check_parsed(undone)
    assert str(undone.id) == str(st.id) and undone.reblog is None
    assert (undone.reblogged, undone.reblogs_count) == (False, 0)
    assert alice.api.status_reblogged_by(st.id) == []
    assert ids(bob.api.account_statuses(bob.id)) == []
    with pytest.raises(MastodonNotFoundError):
        bob.api.status(boost.id)

    # A reblog with its own visibility.
    quiet = bob.api.status_reblog(st.id, visibility="unlisted")
    assert quiet.visibility == "unlisted" and str(quiet.reblog.id) == str(st.id)
    assert parse_qs(rec.last("POST", f"/api/v1/statuses/{st.id}/reblog")["req_body"])["visibility"] == ["unlisted"]


def test_bookmarks(register, rec):
    alice, bob = register("ka"), register("kb")
    first, second = alice.api.status_post("keep me"), alice.api.status_post("keep me too")

    marked = bob.api.status_bookmark(first.id)
    check_parsed(marked)
    assert marked.bookmarked is True and str(marked.id) == str(first.id)
    assert bob.api.status(first.id).bookmarked is True
    assert alice.api.status(first.id).bookmarked is False, "bookmarks are private to the bookmarker"
    bob.api.status_bookmark(second.id)
    bob.api.status_bookmark(second.id)  # idempotent

    assert ids(bob.api.bookmarks()) == [str(second.id), str(first.id)], "newest bookmark first"
    assert all(s.bookmarked for s in bob.api.bookmarks())
    assert alice.api.bookmarks() == []
    page = bob.api.bookmarks(limit=1)
    assert ids(page) == [str(second.id)]
    assert ids(bob.api.fetch_next(page)) == [str(first.id)]

    unmarked = bob.api.status_unbookmark(second.id)
    assert unmarked.bookmarked is False
    assert ids(bob.api.bookmarks()) == [str(first.id)]
    bob.api.status_unbookmark(first.id)
    assert bob.api.bookmarks() == []


def test_pins(register, rec):
    alice, bob = register("na"), register("nb")
    older, newer = alice.api.status_post("pin me"), alice.api.status_post("pin me too")
    alice.api.status_post("not pinned")

    pinned = alice.api.status_pin(older.id)
    check_parsed(pinned)
    assert pinned.pinned is True and str(pinned.id) == str(older.id)
    alice.api.status_pin(newer.id)
    assert alice.api.status(older.id).pinned is True

    listed = bob.api.account_statuses(alice.id, pinned=True)
    assert parse_qs(urlsplit(rec.last("GET", f"/api/v1/accounts/{alice.id}/statuses")["url"]).query)["pinned"] == ["1"]
    assert sorted(ids(listed)) == sorted([str(older.id), str(newer.id)])
    assert all(s.pinned for s in alice.api.account_statuses(alice.id, pinned=True))

    # Only one's own statuses can be pinned.
    with pytest.raises(MastodonAPIError) as err:
        bob.api.status_pin(older.id)
    assert api_error(err)[0] == 422, api_error(err)

    unpinned = alice.api.status_unpin(older.id)
    assert not unpinned.pinned
    assert ids(bob.api.account_statuses(alice.id, pinned=True)) == [str(newer.id)]
    alice.api.status_unpin(newer.id)
    assert bob.api.account_statuses(alice.id, pinned=True) == []


# --------------------------------------------------------------------------
# edit, history, delete
# --------------------------------------------------------------------------
def test_edit_and_history(register, rec):
    alice, bob = register("ea"), register("eb")
    st = alice.api.status_post("first version")

    edited = alice.api.status_update(st.id, "second version", spoiler_text="now with a cw", sensitive=True)
    ex = rec.last("PUT", f"/api/v1/statuses/{st.id}")
    assert ex["status"] == 200, ex["text"]
    check_parsed(edited)
    assert str(edited.id) == str(st.id)
    assert plain_text(edited.content) == "second version"
    assert (edited.spoiler_text, edited.sensitive) == ("now with a cw", True)
    assert isinstance(edited.edited_at, datetime) and edited.edited_at >= edited.created_at
    assert edited.created_at == st.created_at
    seen = bob.api.status(st.id)
    assert plain_text(seen.content) == "second version" and seen.edited_at == edited.edited_at

    alice.api.status_update(st.id, "third version")
    history = bob.api.status_history(st.id)
    assert [plain_text(v.content) for v in history] == ["first version", "second version", "third version"]
    for version in history:
        assert isinstance(version, StatusEdit)
        assert isinstance(version.created_at, datetime) and version.created_at.tzinfo is not None
        assert str(version.account.id) == str(alice.id)
        assert isinstance(version.media_attachments, list) and isinstance(version.emojis, list)
    assert [v.spoiler_text for v in history] == ["", "now with a cw", ""]
    assert [v.sensitive for v in history] == [False, True, False]
    assert history[0].created_at <= history[1].created_at <= history[2].created_at

    source = alice.api.status_source(st.id)
    assert (source.text, source.spoiler_text) == ("third version", "")

    # An unedited status has a history of one version.
    fresh = alice.api.status_post("never edited")
    assert [plain_text(v.content) for v in alice.api.status_history(fresh.id)] == ["never edited"]

    # Only the author can edit; for others the status "does not exist" (Mastodon: 404).
    with pytest.raises(MastodonNotFoundError):
        bob.api.status_update(st.id, "hijacked")
    assert plain_text(alice.api.status(st.id).content) == "third version"


def test_delete_returns_source(register, rec):
    alice, bob = register("da"), register("db")
    text = f"delete & redraft @{bob.username} #{new_tag()} <3"
    st = alice.api.status_post(text, spoiler_text="careful")
    wait_statuses_count(alice, 1)

    deleted = alice.api.status_delete(st.id)
    ex = rec.last("DELETE", f"/api/v1/statuses/{st.id}")
    assert ex["status"] == 200, ex["text"]
    check_parsed(deleted)
    assert ex["json"]["text"] == text, "DELETE answers the source text for delete-and-redraft"
    assert deleted.text == text
    assert str(deleted.id) == str(st.id) and deleted.spoiler_text == "careful"
    assert deleted.sensitive is True, "a status with a content warning is sensitive (Mastodon)"
    assert deleted.content == st.content

    for api in (alice.api, bob.api):
        with pytest.raises(MastodonNotFoundError):
            api.status(st.id)
    with pytest.raises(MastodonNotFoundError):
        alice.api.status_delete(st.id)
    wait_statuses_count(alice, 0)


# --------------------------------------------------------------------------
# home timeline
# --------------------------------------------------------------------------
def test_home_timeline_fan_out(register, rec):
    author, follower, other = register("ha"), register("hf"), register("ho")
    assert home_ids(follower) == []  # the first read starts maintaining the feed
    follower.api.account_follow(author.id)

    public = author.api.status_post("public to the world")
    unlisted = author.api.status_post("unlisted", visibility="unlisted")
    private = author.api.status_post("followers only", visibility="private")
    direct = author.api.status_post(f"@{other.username} just for you", visibility="direct")
    by_other = other.api.status_post("not followed")
    own = follower.api.status_post("my own")

    want = [own, private, unlisted, public]
    got = wait_home(follower, want_in=[s.id for s in want])
    assert got[: len(want)] == ids(want), f"home (newest first) {got}, want {ids(want)}"
    assert str(direct.id) not in got, "a direct status reaches only mentioned followers"
    assert str(by_other.id) not in got, "statuses of accounts not followed"
    for st in follower.api.timeline_home():
        check_parsed(st)

    # A reblog by a followed account arrives as the reblog.
    boost = author.api.status_reblog(by_other.id)
    got = wait_home(follower, want_in=[boost.id])
    assert got[0] == str(boost.id), got
    assert str(follower.api.timeline_home(limit=1)[0].reblog.id) == str(by_other.id)

    # A deleted status leaves the feed.
    author.api.status_delete(unlisted.id)
    got = wait_home(follower, want_out=[unlisted.id])
    assert str(unlisted.id) not in got, "deleted status still in the home timeline"

    # After an unfollow the author's statuses leave it; one's own stay.
    follower.api.account_unfollow(author.id)
    gone = [public.id, private.id, boost.id]
    got = wait_home(follower, want_out=gone)
    assert got == [str(own.id)], f"home after unfollow: {got}"


def test_home_timeline_paging(register, rec, base_url):
    author, follower = register("pa"), register("pf")
    assert home_ids(follower) == []
    follower.api.account_follow(author.id)
    posted = [author.api.status_post(f"number {i}") for i in range(5)]
    newest_first = ids(reversed(posted))
    got = wait_home(follower, want_in=newest_first)
    assert got == newest_first, f"home {got}, want {newest_first}"

    api = follower.api
    first = api.timeline_home(limit=2)
    assert ids(first) == newest_first[0:2]
    links = parse_link(rec.last("GET", "/api/v1/timelines/home")["resp_headers"]["Link"])
    assert set(links) == {"next", "prev"}, links
    for rel, key, cursor in (("next", "max_id", newest_first[1]), ("prev", "min_id", newest_first[0])):
        url = urlsplit(links[rel])
        assert f"{url.scheme}://{url.netloc}{url.path}" == base_url + "/api/v1/timelines/home", links[rel]
        assert parse_qs(url.query) == {"limit": ["2"], key: [cursor]}, links[rel]

    second = api.fetch_next(first)
    sent = parse_qs(urlsplit(rec.last("GET", "/api/v1/timelines/home")["url"]).query)
    assert sent == {"limit": ["2"], "max_id": [newest_first[1]]}, sent
    assert ids(second) == newest_first[2:4]
    third = api.fetch_next(second)
    assert ids(third) == newest_first[4:5]
    assert api.fetch_next(third) is None, "a partial last page has no next link"

    # And back again.
    back = api.fetch_previous(third)
    assert ids(back) == newest_first[2:4]
    back = api.fetch_previous(back)
    assert ids(back) == newest_first[0:2]
    newer = api.fetch_previous(back)
    assert newer is None or ids(newer) == []

    # Newer statuses show up through fetch_previous of the first page.
    later = author.api.status_post("number 5")
    wait_home(follower, want_in=[later.id])
    newer = api.fetch_previous(first)
    assert ids(newer) == [str(later.id)]

    # max_id / since_id / min_id by hand.
    assert ids(api.timeline_home(max_id=newest_first[0], limit=3)) == newest_first[1:4]
    assert ids(api.timeline_home(since_id=newest_first[2])) == [str(later.id)] + newest_first[0:2]
    assert ids(api.timeline_home(min_id=newest_first[4], limit=2)) == newest_first[2:4]


# --------------------------------------------------------------------------
# public, local, hashtag and account timelines
# --------------------------------------------------------------------------
def test_public_and_local_timelines(register, rec, new_client):
    alice = register("ua")
    anonymous = new_client()
    public = [alice.api.status_post(f"public {i}") for i in range(3)]
    hidden = [
        alice.api.status_post("unlisted", visibility="unlisted"),
        alice.api.status_post("private", visibility="private"),
        alice.api.status_post("direct", visibility="direct"),
    ]
    want = ids(reversed(public))

    def mine(statuses):
        return [i for i in ids(statuses) if i in want or i in ids(hidden)]

    for name, fetch in (
        ("public, anonymous", lambda: anonymous.timeline_public(limit=40)),
        ("public, signed in", lambda: alice.api.timeline_public(limit=40)),
        ("local, anonymous", lambda: anonymous.timeline_local(limit=40)),
        ("local, signed in", lambda: alice.api.timeline_local(limit=40)),
        ("public?local=1", lambda: anonymous.timeline_public(local=True, limit=40)),
    ):
        got = poll(fetch, lambda page: mine(page) == want)
        assert mine(got) == want, f"{name}: {mine(got)}, want only the public ones {want}"
    sent = parse_qs(urlsplit(rec.last("GET", "/api/v1/timelines/public")["url"]).query)
    assert sent["local"] == ["1"], sent
    for st in anonymous.timeline_public(limit=5):
        check_parsed(st)
    # Every status here is local: the remote-only timeline is empty.
    assert anonymous.timeline_public(remote=True) == []

    # Paging: consecutive pages without overlap or gap.
    whole = ids(anonymous.timeline_public(limit=6))
    first = anonymous.timeline_public(limit=2)
    second = anonymous.fetch_next(first)
    third = anonymous.fetch_next(second)
    assert ids(first) + ids(second) + ids(third) == whole
    assert ids(anonymous.fetch_previous(third)) == ids(second)
    local = alice.api.timeline_local(limit=2)
    assert ids(local) + ids(alice.api.fetch_next(local)) == whole[:4]
    assert parse_qs(urlsplit(rec.last("GET", "/api/v1/timelines/public")["url"]).query)["local"] == ["1"]


def test_public_timelines_leave_out_replies_to_others(register, new_client):
    """Mastodon (PublicFeed#get, with_replies unset for /api/v1/timelines/public):
    `Status.without_replies` keeps statuses that are no reply or reply to their own
    author, so replies to other accounts are not on the public and local timelines.
    Mastodon.py documents timeline_public/timeline_local as "not including replies"."""
    alice, bob = register("wa"), register("wb")
    anonymous = new_client()
    root = alice.api.status_post("a public root")
    threaded = alice.api.status_reply(root, "continuing my own thread")
    answer = bob.api.status_reply(root, "a reply to someone else", visibility="public")
    back = alice.api.status_reply(answer, "and a reply back", visibility="public")
    ours = [str(s.id) for s in (root, threaded, answer, back)]
    want = [str(threaded.id), str(root.id)]

    for name, fetch in (
        ("public", lambda: anonymous.timeline_public(limit=40)),
        ("local", lambda: anonymous.timeline_local(limit=40)),
    ):
        got = [i for i in ids(poll(fetch, lambda p: str(threaded.id) in ids(p))) if i in ours]
        assert got == want, (
            f"{name} timeline has {got}; want only the root and the self-reply {want} "
            f"(replies to others: {answer.id}, {back.id})"
        )
    # On the author's profile they are all there (exclude_replies leaves out the others).
    assert ids(anonymous.account_statuses(alice.id)) == [str(back.id), str(threaded.id), str(root.id)]
    assert ids(anonymous.account_statuses(alice.id, exclude_replies=True)) == want


def test_hashtag_timeline(register, rec, new_client):
    alice, bob = register("ta"), register("tb")
    anonymous = new_client()
    tag, other_tag = new_tag(), new_tag()
    posted = []
    for i in range(5):
        author = (alice, bob)[i % 2]
        posted.append(author.api.status_post(f"number {i} #{tag}"))
    alice.api.status_post(f"unlisted #{tag}", visibility="unlisted")
    alice.api.status_post(f"private #{tag}", visibility="private")
    bob.api.status_post(f"elsewhere #{other_tag}")
    newest_first = ids(reversed(posted))

    got = poll(lambda: ids(anonymous.timeline_hashtag(tag)), lambda got: got == newest_first)
    assert got == newest_first, "only public statuses with the hashtag, newest first"
    assert ids(alice.api.timeline_hashtag(tag)) == newest_first
    assert ids(anonymous.timeline_hashtag(tag.upper())) == newest_first, "hashtags are case-insensitive"
    assert ids(alice.api.timeline_hashtag(tag, local=True)) == newest_first
    for st in anonymous.timeline_hashtag(tag):
        check_parsed(st)
        assert tag in [t.name for t in st.tags]
    assert anonymous.timeline_hashtag(new_tag()) == [], "a hashtag nobody used"

    first = anonymous.timeline_hashtag(tag, limit=2)
    assert ids(first) == newest_first[0:2]
    links = parse_link(rec.last("GET", f"/api/v1/timelines/tag/{tag}")["resp_headers"]["Link"])
    assert urlsplit(links["next"]).path == f"/api/v1/timelines/tag/{tag}", links
    second = anonymous.fetch_next(first)
    assert ids(second) == newest_first[2:4]
    third = anonymous.fetch_next(second)
    assert ids(third) == newest_first[4:]
    assert anonymous.fetch_next(third) is None
    assert ids(anonymous.fetch_previous(third)) == newest_first[2:4]
    assert ids(anonymous.fetch_previous(second)) == newest_first[0:2]


def test_account_statuses(register, rec, new_client):
    alice, bob = register("aa"), register("ab")
    tag = new_tag()
    anonymous = new_client()
    bob_root = bob.api.status_post("bob's")
    s0 = alice.api.status_post("zero")
    s1 = alice.api.status_post(f"one #{tag}")
    reply_other = alice.api.status_reply(bob_root, "a reply to bob")
    reply_self = alice.api.status_reply(s1, "a reply to myself")
    boost = alice.api.status_reblog(bob_root.id)
    private = alice.api.status_post("followers only", visibility="private")
    everything = ids([boost, reply_self, reply_other, s1, s0])

    # Anonymous and non-followers see everything but the private one; the author all.
    assert ids(anonymous.account_statuses(alice.id)) == everything
    assert ids(bob.api.account_statuses(alice.id)) == everything
    assert ids(alice.api.account_statuses(alice.id)) == [str(private.id)] + everything
    bob.api.account_follow(alice.id)
    want = [str(private.id)] + everything
    got = poll(lambda: ids(bob.api.account_statuses(alice.id)), lambda got: got == want)
    assert got == want, "a follower sees the private status too"

    assert ids(anonymous.account_statuses(alice.id, exclude_replies=True)) == ids([boost, reply_self, s1, s0])
    assert ids(anonymous.account_statuses(alice.id, exclude_reblogs=True)) == everything[1:]
    assert ids(anonymous.account_statuses(alice.id, tagged=tag)) == [str(s1.id)]
    assert anonymous.account_statuses(alice.id, only_media=True) == []

    page = anonymous.account_statuses(alice.id, limit=2)
    seen = []
    while page:
        seen.append(ids(page))
        assert len(seen) <= 5, seen
        page = anonymous.fetch_next(page)
    assert seen == [everything[0:2], everything[2:4], everything[4:5]]

    with pytest.raises(MastodonNotFoundError):
        anonymous.account_statuses(UNKNOWN_ID)


# --------------------------------------------------------------------------
# search, hashtags, trends
# --------------------------------------------------------------------------
def test_search_v2(register, rec, new_client):
    alice, bob = register("sa"), register("sb")
    word, secret_word, tag = letters(12), letters(12), new_tag()
    st = alice.api.status_post(f"a {word.capitalize()} appears #{tag}")
    private = alice.api.status_post(f"{secret_word} for followers", visibility="private")

    found = poll(lambda: bob.api.search_v2(word, result_type="statuses"), lambda r: len(r.statuses) > 0)
    ex = rec.last("GET", "/api/v2/search")
    assert ex["status"] == 200, ex["text"]
    assert parse_qs(urlsplit(ex["url"]).query)["type"] == ["statuses"]
    assert ids(found.statuses) == [str(st.id)]
    check_parsed(found.statuses[0])
    assert found.accounts == [] and found.hashtags == []
    assert ids(bob.api.search_v2(word.upper(), result_type="statuses").statuses) == [str(st.id)]
    # Without a type: all three lists.
    found = bob.api.search_v2(word)
    assert ids(found.statuses) == [str(st.id)]
    raw = rec.last("GET", "/api/v2/search")["json"]
    assert {"accounts", "statuses", "hashtags"} <= set(raw), raw

    # A private status is found by its author, not by others; anonymous search finds no
    # statuses (Mastodon searches statuses only for signed-in users).
    assert ids(alice.api.search_v2(secret_word, result_type="statuses").statuses) == [str(private.id)]
    assert bob.api.search_v2(secret_word, result_type="statuses").statuses == []
    assert new_client().search_v2(word, result_type="statuses").statuses == []

    # Hashtags, with or without the '#'.
    for query in (tag, "#" + tag, tag[:-2]):
        hashtags = bob.api.search_v2(query, result_type="hashtags").hashtags
        assert tag in [h.name for h in hashtags], (query, hashtags)
        h = next(h for h in hashtags if h.name == tag)
        assert isinstance(h, Tag) and urlsplit(h.url).path == f"/tags/{tag}"
        assert isinstance(h.history, list)
    assert bob.api.search_v2(new_tag(), result_type="hashtags").hashtags == []

    # Accounts still work.
    found = bob.api.search_v2(alice.username, result_type="accounts")
    assert ids(found.accounts)[:1] == [str(alice.id)]
    assert found.statuses == []
    assert str(alice.id) in ids(bob.api.search_v2(alice.username).accounts)


def test_tags_follow_and_trends(register, rec):
    alice, bob, carol, fan = register("ga"), register("gb"), register("gc"), register("gf")
    tag = new_tag()
    first = alice.api.status_post(f"first use of #{tag}")

    shown = fan.api.tag(tag)
    ex = rec.last("GET", f"/api/v1/tags/{tag}")
    assert ex["status"] == 200, ex["text"]
    assert isinstance(shown, Tag) and shown.name == tag and shown.following is False
    assert urlsplit(shown.url).path == f"/tags/{tag}"
    raw = ex["json"]
    assert isinstance(raw["history"], list) and raw["history"], raw
    for day in raw["history"]:
        assert all(isinstance(day[k], str) and DIGITS.fullmatch(day[k]) for k in ("day", "uses", "accounts")), day
    assert isinstance(shown.history[0].day, datetime)

    # Following a hashtag brings its statuses to the home timeline.
    assert home_ids(fan) == []
    followed = fan.api.tag_follow(tag)
    assert followed.name == tag and followed.following is True
    assert fan.api.tag_follow(tag).following is True  # idempotent
    assert [t.name for t in fan.api.followed_tags()] == [tag]
    assert fan.api.tag(tag).following is True
    later = bob.api.status_post(f"second use of #{tag}")
    got = wait_home(fan, want_in=[later.id])
    assert str(later.id) in got, f"followed hashtag status not in home: {got}"
    assert str(first.id) not in got or got.index(str(first.id)) > got.index(str(later.id))

    unfollowed = fan.api.tag_unfollow(tag)
    assert unfollowed.following is False
    assert fan.api.followed_tags() == []
    not_followed = carol.api.status_post(f"third use of #{tag}")
    time.sleep(1.0)
    assert str(not_followed.id) not in home_ids(fan), "a hashtag no longer followed"

    # Used by three accounts just now: trending.
    trending = poll(lambda: fan.api.trending_tags(limit=20), lambda ts: tag in [t.name for t in ts])
    assert tag in [t.name for t in trending], [t.name for t in trending]
    entry = next(t for t in trending if t.name == tag)
    assert isinstance(entry, Tag) and isinstance(entry.history, list) and entry.history
    assert int(entry.history[0].uses) >= 3 and int(entry.history[0].accounts) == 3, entry.history[0]
    assert len(fan.api.trending_tags(limit=1)) <= 1


def test_tag_that_nobody_used_yet(register, rec):
    """Mastodon (Api::V1::TagsController#set_or_create_tag): any valid hashtag name is
    shown, `Tag.find_normalized(name) || Tag.new(name: ...)`; only invalid names are a
    404. Clients call GET /api/v1/tags/:name to show a follow button before anyone used
    the tag."""
    me = register("gn")
    tag = new_tag()
    shown = me.api.tag(tag)
    assert shown.name == tag and shown.following is False
    assert me.api.tag_follow(tag).following is True
    assert me.api.tag(tag).following is True


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------
def test_errors(register, rec, new_client):
    alice, bob = register("xa"), register("xb")

    # 500 characters are fine, 501 are not.
    assert len(plain_text(alice.api.status_post("a" * 500).content)) == 500
    with pytest.raises(MastodonAPIError) as err:
        alice.api.status_post("b" * 501)
    status, message = api_error(err)
    assert status == 422 and message, (status, message)
    assert not isinstance(err.value, MastodonNotFoundError)
    ex = rec.last("POST", "/api/v1/statuses")
    assert isinstance(ex["json"], dict) and ex["json"].get("error"), ex["text"]
    with pytest.raises(MastodonAPIError) as err:
        alice.api.status_post("")
    assert api_error(err)[0] == 422
    wait_statuses_count(alice, 1)

    # Unknown and malformed ids are 404s everywhere.
    st = alice.api.status_post("exists")
    for bad in (UNKNOWN_ID, "abc"):
        calls = [
            lambda: bob.api.status(bad),
            lambda: new_client().status(bad),
            lambda: bob.api.status_context(bad),
            lambda: bob.api.status_history(bad),
            lambda: bob.api.status_favourited_by(bad),
            lambda: bob.api.status_reblogged_by(bad),
            lambda: bob.api.status_favourite(bad),
            lambda: bob.api.status_unfavourite(bad),
            lambda: bob.api.status_reblog(bad),
            lambda: bob.api.status_unreblog(bad),
            lambda: bob.api.status_bookmark(bad),
            lambda: bob.api.status_unbookmark(bad),
            lambda: bob.api.status_pin(bad),
            lambda: bob.api.status_unpin(bad),
            lambda: bob.api.status_update(bad, "nope"),
            lambda: bob.api.status_delete(bad),
        ]
        for call in calls:
            with pytest.raises(MastodonNotFoundError):
                call()
            ex = rec.exchanges[-1]
            assert ex["status"] == 404, (ex["method"], ex["url"], ex["text"])
            assert isinstance(ex["json"], dict) and ex["json"].get("error"), ex["text"]

    # A private status is invisible (404) to those who may not see it.
    private = alice.api.status_post("followers only", visibility="private")
    for call in (
        lambda: bob.api.status(private.id),
        lambda: new_client().status(private.id),
        lambda: bob.api.status_favourite(private.id),
        lambda: bob.api.status_context(private.id),
    ):
        with pytest.raises(MastodonNotFoundError):
            call()
    assert alice.api.status(private.id).favourites_count == 0
    assert str(alice.api.status(st.id).id) == str(st.id)


def test_delete_of_another_accounts_status_is_not_found(register, rec):
    """Mastodon (Api::V1::StatusesController#destroy):
    `Status.where(account: current_account).find(params[:id])`, so someone else's status
    is a 404 (openapi lists 401/404/410/422/429/503 for DELETE /api/v1/statuses/{id},
    no 403), exactly like status_update."""
    alice, bob = register("ya"), register("yb")
    st = alice.api.status_post("mine, not yours")
    with pytest.raises(MastodonNotFoundError):
        bob.api.status_delete(st.id)
    assert str(bob.api.status(st.id).id) == str(st.id), "the status must survive"
