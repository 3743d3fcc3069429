"""Notifications through the real Mastodon.py client: every type Rookery makes
(mention, favourite, reblog, follow, follow_request, status, update, quote), the v1 list
with its filters and pagination, a single notification, dismiss and clear, undoing the
action that caused one, blocks and mutes, grouped notifications (v2), unread counts and
markers, the errors a client sees, and the user stream (server-sent events).

Fixtures (Recorder `rec`, `new_client`, `register`) are in conftest.py. Every test
registers its own accounts, so tests are independent of each other and of their order.

Behaviour of the server these tests wait for:
  * Notifications are made asynchronously, from the timeline's and the users service's
    events: a test polls its notifications for up to WAIT seconds.
  * To show that something did NOT notify, a test makes a later action of the same kind
    (same event stream: timeline events for statuses, favourites, reblogs, mentions;
    users events for follows) that does notify, waits for that one, and only then
    checks the absence. The notifications service applies each stream's events in
    order.

Notes on the pinned Mastodon.py 2.3.3 behaviour these tests rely on (read from its
source):
  * Under version_check_mode="created" the newest methods used here need Mastodon 4.3.0
    (grouped_notifications & co, notifications_unread_count); the server reports 4.5.0.
  * notifications(types=[...], exclude_types=[...]) sends `types[]=...` and
    `exclude_types[]=...`; notifications(id=x) is GET /api/v1/notifications/x;
    fetch_next/fetch_previous take max_id (rel="next") and min_id (rel="prev") from the
    Link header and reuse the other parameters of the first call.
  * grouped_notifications() sends expand_accounts=partial_avatars unless told
    otherwise; with expand_accounts="full" every account comes in `accounts`.
  * markers_set() posts JSON ({"home": {"last_read_id": "..."}}); markers_get() sends
    `timeline[]=...`.
  * stream_user(listener, run_async=True) connects in a thread to the streaming base it
    read from /api/v1/instance (urls.streaming_api, ws:// turned into http://), using
    the client's requests session. The Recorder's response hook reads whole bodies, which
    never ends on an event stream, so the streaming client gets a plain session.
  * Errors: 404 -> MastodonNotFoundError, 401 -> MastodonUnauthorizedError, other 4xx
    -> MastodonAPIError with args ("Mastodon API returned error", status, reason,
    error message).
"""

import re
import secrets
import threading
import time
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from mastodon import MastodonAPIError, MastodonNotFoundError, MastodonUnauthorizedError, StreamListener
from mastodon.return_types import Account, Notification, Status

pytestmark = pytest.mark.filterwarnings("error::mastodon.errors.MastodonWarning")

WAIT = 10.0
STEP = 0.1
UNKNOWN_ID = "9" * 18
DIGITS = re.compile(r"[0-9]+")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)")
# Types Rookery makes; the ones that carry a status; the ones that group (Mastodon 4.3).
TYPES = {"mention", "status", "reblog", "follow", "follow_request", "favourite", "update", "quote"}
STATUS_TYPES = {"mention", "status", "reblog", "favourite", "update", "quote"}
GROUPABLE = {"favourite", "reblog", "follow"}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def poll(fetch, done, timeout=WAIT, interval=STEP):
    """Calls `fetch` until `done(result)` or `timeout` seconds; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result) or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def sid(x):
    return str(x.id if hasattr(x, "id") else x)


def summary(notifications):
    """What a failing assertion shows: (type, sender, status) of each notification."""
    return [
        (n.type, n.account.username, str(n.status.id) if n.get("status") else None) for n in notifications
    ]


def is_(kind, sender, status=None):
    """Predicate: a notification of `kind` from `sender` (about `status`, if given)."""

    def match(n):
        if n.type != kind or str(n.account.id) != str(sender.id):
            return False
        return status is None or (n.get("status") is not None and str(n.status.id) == sid(status))

    return match


def all_notifications(user, **kwargs):
    return user.api.notifications(limit=80, **kwargs)


def wait_notification(user, kind, sender, status=None, **kwargs):
    """Waits until `user` has a `kind` notification from `sender` (about `status`);
    returns it (the newest such)."""
    pred = is_(kind, sender, status)
    got = poll(lambda: all_notifications(user, **kwargs), lambda ns: any(pred(n) for n in ns))
    found = [n for n in got if pred(n)]
    assert found, (
        f"{user.username} has no {kind} notification from {sender.username}"
        f"{' about ' + sid(status) if status is not None else ''} after {WAIT}s: {summary(got)}"
    )
    return found[0]


def wait_gone(user, notification_id):
    """Waits until notification `notification_id` is no longer listed; returns the list."""
    want = str(notification_id)
    got = poll(lambda: all_notifications(user), lambda ns: want not in [str(n.id) for n in ns])
    assert want not in [str(n.id) for n in got], f"notification {want} still listed after {WAIT}s: {summary(got)}"
    return got


def wait_count(fetch, want, what):
    got = poll(fetch, lambda c: c == want)
    assert got == want, f"{what}: {got}, want {want} (after {WAIT}s)"


def mention(author, target, text="hello"):
    return author.api.status_post(f"@{target.username} {text} {secrets.token_hex(3)}")


def api_error(excinfo):
    """(status, error message) of a MastodonAPIError raised by Mastodon.py."""
    args = excinfo.value.args
    assert len(args) == 4, args
    return args[1], args[3]


LINK_ENTRY = re.compile(r'<([^<>]+)>;\s*rel="(next|prev)"')


def parse_link(header):
    links = {}
    for entry in (e.strip() for e in header.split(",")):
        m = LINK_ENTRY.fullmatch(entry)
        assert m, f"malformed Link entry {entry!r} in {header!r}"
        links[m.group(2)] = m.group(1)
    return links


def check_parsed(n):
    """A Notification as Mastodon.py parsed it has what clients use."""
    assert isinstance(n, Notification), type(n)
    assert DIGITS.fullmatch(str(n.id)), n.id
    assert n.type in TYPES, n.type
    assert isinstance(n.created_at, datetime) and n.created_at.tzinfo is not None, n.created_at
    assert isinstance(n.account, Account) and DIGITS.fullmatch(str(n.account.id)), n.account
    if n.type in STATUS_TYPES:
        assert isinstance(n.status, Status), f"{n.type} without a status"
    else:
        assert n.get("status") is None, f"{n.type} with a status"
    n.to_json()


# --------------------------------------------------------------------------
# wire checks of every Notification and notification group a test received
# --------------------------------------------------------------------------
def check_raw_status(raw):
    assert isinstance(raw, dict), raw
    assert isinstance(raw.get("id"), str) and DIGITS.fullmatch(raw["id"]), raw.get("id")
    account = raw.get("account")
    assert isinstance(account, dict) and isinstance(account.get("id"), str), account
    for key in ("content", "visibility", "uri", "created_at"):
        assert isinstance(raw.get(key), str), (key, raw.get(key))
    for key in ("mentions", "tags", "emojis", "media_attachments"):
        assert isinstance(raw.get(key), list), (key, raw.get(key))


def check_raw_notification(raw):
    """A Notification as JSON, against the Mastodon API (openapi `Notification`)."""
    assert isinstance(raw, dict), raw
    missing = {"id", "type", "created_at", "group_key", "account"} - set(raw)
    assert not missing, f"notification {raw.get('id')} lacks {sorted(missing)}"
    assert isinstance(raw["id"], str) and DIGITS.fullmatch(raw["id"]), raw["id"]
    assert raw["type"] in TYPES, raw["type"]
    assert isinstance(raw["created_at"], str) and ISO_TIME.fullmatch(raw["created_at"]), raw["created_at"]
    account = raw["account"]
    assert isinstance(account, dict) and isinstance(account.get("id"), str) and DIGITS.fullmatch(account["id"])
    assert account.get("username") and account.get("acct"), account
    # "ungrouped notifications can be assumed to have a group_key of the form
    # ungrouped-{notification_id}"
    assert isinstance(raw["group_key"], str) and raw["group_key"], raw["group_key"]
    if raw["type"] not in GROUPABLE:
        assert raw["group_key"] == f"ungrouped-{raw['id']}", (raw["type"], raw["group_key"])
    if raw["type"] in STATUS_TYPES:
        check_raw_status(raw.get("status"))
    else:
        assert raw.get("status") is None, f"{raw['type']} with a status"


def check_raw_grouped(body):
    """GroupedNotificationsResults as JSON (openapi): every group's accounts and status
    are in `accounts` / `statuses`, each once."""
    assert isinstance(body, dict), body
    for key in ("accounts", "statuses", "notification_groups"):
        assert isinstance(body.get(key), list), (key, body.get(key))
    account_ids = [a["id"] for a in body["accounts"]]
    status_ids = [s["id"] for s in body["statuses"]]
    assert len(account_ids) == len(set(account_ids)), f"an account twice in `accounts`: {account_ids}"
    assert len(status_ids) == len(set(status_ids)), f"a status twice in `statuses`: {status_ids}"
    for s in body["statuses"]:
        check_raw_status(s)
    keys = [g.get("group_key") for g in body["notification_groups"]]
    assert len(keys) == len(set(keys)), f"a group twice: {keys}"
    for g in body["notification_groups"]:
        missing = {"group_key", "most_recent_notification_id", "notifications_count", "sample_account_ids", "type"}
        missing -= set(g)
        assert not missing, f"group {g.get('group_key')} lacks {sorted(missing)}"
        assert g["type"] in TYPES, g["type"]
        assert isinstance(g["group_key"], str) and g["group_key"], g
        if g["type"] not in GROUPABLE:
            assert g["group_key"].startswith("ungrouped-"), g
        count = g["notifications_count"]
        assert isinstance(count, int) and not isinstance(count, bool) and count >= 1, g
        assert DIGITS.fullmatch(str(g["most_recent_notification_id"])), g
        samples = g["sample_account_ids"]
        assert isinstance(samples, list) and 1 <= len(samples) <= min(count, 8), g
        for a in samples:
            assert isinstance(a, str) and a in account_ids, f"sample account {a!r} not in accounts {account_ids}"
        for key in ("page_min_id", "page_max_id"):
            assert g.get(key) is None or (isinstance(g[key], str) and DIGITS.fullmatch(g[key])), (key, g)
        at = g.get("latest_page_notification_at")
        assert at is None or (isinstance(at, str) and ISO_TIME.fullmatch(at)), g
        if g["type"] in STATUS_TYPES:
            assert isinstance(g.get("status_id"), str) and g["status_id"] in status_ids, g
        else:
            assert g.get("status_id") is None, g


V1_ONE = re.compile(r"/api/v1/notifications/[0-9]+")
V2_ONE = re.compile(r"/api/v2/notifications/(?!unread_count$)[^/]+")


@pytest.fixture(autouse=True)
def notifications_on_the_wire(rec):
    """After each test: every Notification and group any response of the test carried is
    well-formed."""
    start = len(rec.exchanges)
    yield
    checked = 0
    for ex in rec.exchanges[start:]:
        if ex["method"] != "GET" or not 200 <= ex["status"] < 300:
            continue
        path = ex["path"].rstrip("/")
        try:
            if path == "/api/v1/notifications":
                assert isinstance(ex["json"], list), ex["text"]
                for raw in ex["json"]:
                    check_raw_notification(raw)
                    checked += 1
            elif V1_ONE.fullmatch(path):
                check_raw_notification(ex["json"])
                checked += 1
            elif path == "/api/v2/notifications" or V2_ONE.fullmatch(path):
                check_raw_grouped(ex["json"])
                checked += len(ex["json"]["notification_groups"])
        except AssertionError as e:
            raise AssertionError(f"{ex['method']} {ex['url']}: {e}") from e
    print(f"wire check: {checked} notifications/groups")


# --------------------------------------------------------------------------
# each type
# --------------------------------------------------------------------------
def test_mention(register, rec):
    alice, bob = register("ma"), register("mb")
    st = mention(bob, alice, "hi there")
    n = wait_notification(alice, "mention", bob, st)
    check_parsed(n)
    assert str(n.account.id) == str(bob.id) and n.account.username == bob.username
    assert str(n.status.id) == str(st.id)
    assert str(alice.id) in [str(m.id) for m in n.status.mentions]
    assert n.group_key == f"ungrouped-{n.id}"
    # The same through GET /api/v1/notifications/:id.
    one = alice.api.notifications(id=n.id)
    assert rec.last("GET", f"/api/v1/notifications/{n.id}")["status"] == 200
    check_parsed(one)
    assert (str(one.id), one.type, str(one.account.id), str(one.status.id)) == (
        str(n.id), "mention", str(bob.id), str(st.id)
    )  # fmt: skip
    # The author is not notified of their own status.
    assert all_notifications(bob) == []


def test_favourite_and_reblog(register):
    alice, bob, carol = register("fa"), register("fb"), register("fc")
    st = alice.api.status_post("worth a star")
    alice.api.status_favourite(st.id)  # one's own favourite notifies nobody
    bob.api.status_favourite(st.id)
    boost = carol.api.status_reblog(st.id)

    fav = wait_notification(alice, "favourite", bob, st)
    check_parsed(fav)
    reblog = wait_notification(alice, "reblog", carol)
    check_parsed(reblog)
    # The reblog notification is about the reblogged status, not the reblog itself.
    assert str(reblog.status.id) == str(st.id), (reblog.status.id, st.id, boost.id)
    assert reblog.status.reblog is None
    got = all_notifications(alice)
    assert [(n.type, str(n.account.id)) for n in got] == [("reblog", str(carol.id)), ("favourite", str(bob.id))], (
        summary(got)
    )
    # Favourites and reblogs group (group_key other than ungrouped-...).
    assert not fav.group_key.startswith("ungrouped-") and not reblog.group_key.startswith("ungrouped-")
    assert fav.group_key != reblog.group_key


def test_follow(register):
    alice, bob = register("wa"), register("wb")
    bob.api.account_follow(alice.id)
    n = wait_notification(alice, "follow", bob)
    check_parsed(n)
    assert n.get("status") is None
    assert n.account.username == bob.username


def test_follow_request_of_a_locked_account(register):
    alice, bob, carol = register("ra", locked=True), register("rb"), register("rc")
    assert alice.me.locked is True
    rel = bob.api.account_follow(alice.id)
    assert rel.requested is True and rel.following is False
    n = wait_notification(alice, "follow_request", bob)
    check_parsed(n)
    assert n.get("status") is None and n.group_key == f"ungrouped-{n.id}"
    assert [a.id for a in alice.api.follow_requests()] == [bob.id]

    # Authorising the request removes its notification (Mastodon: the request's
    # notification goes with it) and makes no `follow` notification.
    alice.api.follow_request_authorize(bob.id)
    wait_gone(alice, n.id)
    carol.api.account_follow(alice.id)  # same event stream, later: a marker
    from_carol = wait_notification(alice, "follow_request", carol)
    got = all_notifications(alice)
    assert [(x.type, str(x.account.id)) for x in got] == [("follow_request", str(carol.id))], summary(got)
    # Rejecting one removes it as well.
    alice.api.follow_request_reject(carol.id)
    assert wait_gone(alice, from_carol.id) == []


def test_status_of_an_account_followed_with_notify(register, rec):
    alice, bob, carol = register("sa"), register("sb"), register("sc")
    rel = bob.api.account_follow(alice.id, notify=True)
    assert rel.notifying is True
    assert parse_qs(rec.last("POST", f"/api/v1/accounts/{alice.id}/follow")["req_body"])["notify"] == ["1"]
    carol.api.account_follow(alice.id)  # follows without notify
    wait_notification(alice, "follow", carol)

    st = alice.api.status_post("news for my followers")
    n = wait_notification(bob, "status", alice, st)
    check_parsed(n)
    assert str(n.status.account.id) == str(alice.id)

    # Not for a reply to someone else (Mastodon: FeedInsertWorker#notify?), nor a reblog.
    other = carol.api.status_post("carol's")
    alice.api.status_reply(other, "a reply to carol")
    alice.api.status_reblog(other.id)
    later = alice.api.status_post("and another one")
    wait_notification(bob, "status", alice, later)
    got = all_notifications(bob)
    assert [str(x.status.id) for x in got] == [str(later.id), str(st.id)], summary(got)
    # Those who follow without notify hear nothing.
    assert [x for x in all_notifications(carol) if x.type == "status"] == []


def test_update_notifies_rebloggers(register):
    alice, bob, carol = register("ua"), register("ub"), register("uc")
    st = alice.api.status_post("first version")
    bob.api.status_reblog(st.id)
    carol.api.status_favourite(st.id)
    wait_notification(alice, "reblog", bob, st)
    wait_notification(alice, "favourite", carol, st)

    edited = alice.api.status_update(st.id, "second version")
    assert edited.edited_at is not None
    n = wait_notification(bob, "update", alice, st)
    check_parsed(n)
    assert "second version" in n.status.content, n.status.content
    assert n.status.edited_at is not None
    # Only rebloggers (Mastodon 4.x); the same event made bob's, so carol's would be
    # there by now.
    assert [x for x in all_notifications(carol) if x.type == "update"] == []
    assert [x for x in all_notifications(alice) if x.type == "update"] == []


def test_quote(register, rec):
    alice, bob = register("qa"), register("qb")
    st = alice.api.status_post("quotable")
    quoting = bob.api.status_post("look at this", quoted_status_id=st.id)
    ex = rec.last("POST", "/api/v1/statuses")
    assert ex["status"] == 200, ex["text"]
    assert parse_qs(ex["req_body"])["quoted_status_id"] == [str(st.id)]
    n = wait_notification(alice, "quote", bob)
    check_parsed(n)
    # The quoting status is attached (Mastodon 4.5).
    assert str(n.status.id) == str(quoting.id), (n.status.id, quoting.id)
    assert str(n.status.account.id) == str(bob.id)


# --------------------------------------------------------------------------
# reading: filters, pagination, one, dismiss, clear
# --------------------------------------------------------------------------
def test_filters(register, rec):
    alice, bob, carol, dave = register("ta"), register("tb"), register("tc"), register("td")
    st = alice.api.status_post("filter me")
    m = mention(bob, alice)
    carol.api.status_favourite(st.id)
    dave.api.account_follow(alice.id)
    wait_notification(alice, "mention", bob, m)
    wait_notification(alice, "favourite", carol, st)
    wait_notification(alice, "follow", dave)

    def kinds(**kwargs):
        return sorted(n.type for n in alice.api.notifications(**kwargs))

    assert kinds() == ["favourite", "follow", "mention"]
    assert kinds(types=["mention"]) == ["mention"]
    assert parse_qs(urlsplit(rec.last("GET", "/api/v1/notifications")["url"]).query)["types[]"] == ["mention"]
    assert kinds(types=["mention", "follow"]) == ["follow", "mention"]
    assert kinds(exclude_types=["favourite"]) == ["follow", "mention"]
    assert kinds(exclude_types=["favourite", "follow"]) == ["mention"]
    assert kinds(types=["mention", "follow"], exclude_types=["follow"]) == ["mention"]
    # Types this server never makes match nothing, and are ignored when excluded.
    assert kinds(types=["poll"]) == []
    assert kinds(exclude_types=["poll", "admin.sign_up"]) == ["favourite", "follow", "mention"]
    # Only what one account sent.
    got = alice.api.notifications(account_id=carol.id)
    assert [(n.type, str(n.account.id)) for n in got] == [("favourite", str(carol.id))], summary(got)
    assert alice.api.notifications(account_id=bob.id, types=["favourite"]) == []
    assert alice.api.notifications(account_id=UNKNOWN_ID) == []


def five_mentions(register, prefix):
    """An account with five mention notifications; returns it and their ids, newest
    first."""
    alice, bob = register(prefix + "a"), register(prefix + "b")
    posted = [mention(bob, alice, f"number {i}") for i in range(5)]
    got = poll(lambda: all_notifications(alice), lambda ns: len(ns) >= 5)
    assert [str(n.status.id) for n in got] == [str(s.id) for s in reversed(posted)], summary(got)
    every = [str(n.id) for n in got]
    assert every == sorted(every, key=int, reverse=True), "newest first"
    return alice, every


def test_cursors(register):
    alice, every = five_mentions(register, "c")

    def page(**kwargs):
        return [str(n.id) for n in alice.api.notifications(**kwargs)]

    assert page(max_id=every[1]) == every[2:]
    assert page(since_id=every[3]) == every[0:3]
    assert page(min_id=every[3]) == every[0:3], "min_id pages come newest first too"
    assert page(max_id=every[0], since_id=every[3]) == every[1:3]
    assert page(max_id=every[0], min_id=every[3]) == every[1:3]
    assert page(min_id=every[0]) == []
    assert page(max_id=every[4]) == []


def test_limit_and_link_pagination(register, rec):
    alice, every = five_mentions(register, "p")

    first = alice.api.notifications(limit=2)
    assert [str(n.id) for n in first] == every[0:2], "limit=2 must answer two notifications"
    links = parse_link(rec.last("GET", "/api/v1/notifications")["resp_headers"]["Link"])
    assert urlsplit(links["next"]).path == "/api/v1/notifications", links
    assert parse_qs(urlsplit(links["next"]).query)["max_id"] == [every[1]], links
    assert parse_qs(urlsplit(links["prev"]).query)["min_id"] == [every[0]], links
    second = alice.api.fetch_next(first)
    assert [str(n.id) for n in second] == every[2:4]
    third = alice.api.fetch_next(second)
    assert [str(n.id) for n in third] == every[4:5]
    assert not alice.api.fetch_next(third), "nothing older than the oldest"
    assert [str(n.id) for n in alice.api.fetch_previous(second)] == every[0:2]
    assert [str(n.id) for n in alice.api.fetch_previous(third)] == every[2:4]

    # min_id: the page right above it (newest first); since_id: the newest above it.
    assert [str(n.id) for n in alice.api.notifications(min_id=every[4], limit=2)] == every[2:4]
    assert [str(n.id) for n in alice.api.notifications(since_id=every[4], limit=2)] == every[0:2]

    # Filters survive paging (in the Link header as well).
    page = alice.api.notifications(types=["mention"], limit=3)
    links = parse_link(rec.last("GET", "/api/v1/notifications")["resp_headers"]["Link"])
    assert parse_qs(urlsplit(links["next"]).query).get("types[]") == ["mention"], links
    assert [str(n.id) for n in page + alice.api.fetch_next(page)] == every


def test_one_dismiss_and_clear(register, rec):
    alice, bob, carol = register("da"), register("db"), register("dc")
    posted = [mention(bob, alice, f"n{i}") for i in range(3)]
    got = poll(lambda: all_notifications(alice), lambda ns: len(ns) >= 3)
    assert len(got) == 3, summary(got)
    newest, middle, oldest = got

    one = alice.api.notifications(id=middle.id)
    assert (str(one.id), str(one.status.id)) == (str(middle.id), str(posted[1].id))
    # Another account's notification is not found.
    with pytest.raises(MastodonNotFoundError):
        carol.api.notifications(id=middle.id)
    with pytest.raises(MastodonNotFoundError):
        carol.api.notifications_dismiss(middle.id)

    assert alice.api.notifications_dismiss(middle.id) is None
    ex = rec.last("POST", f"/api/v1/notifications/{middle.id}/dismiss")
    assert ex["status"] == 200 and ex["json"] == {}, ex["text"]
    assert [str(n.id) for n in all_notifications(alice)] == [str(newest.id), str(oldest.id)]
    with pytest.raises(MastodonNotFoundError):
        alice.api.notifications(id=middle.id)
    with pytest.raises(MastodonNotFoundError):
        alice.api.notifications_dismiss(middle.id)

    assert alice.api.notifications_clear() is None
    ex = rec.last("POST", "/api/v1/notifications/clear")
    assert ex["status"] == 200 and ex["json"] == {}, ex["text"]
    assert all_notifications(alice) == []
    assert alice.api.notifications_unread_count().count == 0
    # New ones still come after a clear.
    again = mention(bob, alice, "after the clear")
    wait_notification(alice, "mention", bob, again)


# --------------------------------------------------------------------------
# undo, blocks, mutes
# --------------------------------------------------------------------------
def test_undo_removes_the_notification(register):
    alice, bob, carol = register("xa"), register("xb"), register("xc")
    st = alice.api.status_post("undo me")
    bob.api.status_favourite(st.id)
    carol.api.status_reblog(st.id)
    bob.api.account_follow(alice.id)
    m = mention(carol, alice)
    fav = wait_notification(alice, "favourite", bob, st)
    reblog = wait_notification(alice, "reblog", carol, st)
    follow = wait_notification(alice, "follow", bob)
    ment = wait_notification(alice, "mention", carol, m)

    bob.api.status_unfavourite(st.id)
    wait_gone(alice, fav.id)
    bob.api.account_unfollow(alice.id)
    wait_gone(alice, follow.id)
    carol.api.status_delete(m.id)
    wait_gone(alice, ment.id)
    carol.api.status_unreblog(st.id)
    got = wait_gone(alice, reblog.id)
    assert got == [], summary(got)

    # Doing it again notifies again.
    bob.api.status_favourite(st.id)
    wait_notification(alice, "favourite", bob, st)


def test_blocked_account_does_not_notify(register):
    alice, bob, carol = register("ba"), register("bb"), register("bc")
    st = alice.api.status_post("before the block")
    bob.api.status_favourite(st.id)
    fav = wait_notification(alice, "favourite", bob, st)

    alice.api.account_block(bob.id)
    # Mastodon (AfterBlockService#clear_notifications!): what bob caused goes.
    wait_gone(alice, fav.id)
    mention(bob, alice, "can you hear me")
    marker = mention(carol, alice, "after bob")
    wait_notification(alice, "mention", carol, marker)
    got = all_notifications(alice)
    assert [str(n.account.id) for n in got] == [str(carol.id)], summary(got)
    assert alice.api.notifications(account_id=bob.id) == []


def test_muted_account(register):
    alice, bob, carol, dave = register("ua"), register("ub"), register("uc"), register("ud")
    alice.api.account_mute(bob.id)  # notifications=True: its notifications are muted too
    alice.api.account_mute(dave.id, notifications=False)  # hides its posts, still notifies
    rels = {str(r.id): r for r in alice.api.account_relationships([bob.id, dave.id])}
    assert rels[str(bob.id)].muting_notifications is True
    assert rels[str(dave.id)].muting is True and rels[str(dave.id)].muting_notifications is False

    mention(bob, alice, "muted")
    from_dave = mention(dave, alice, "muted but notifying")
    wait_notification(alice, "mention", dave, from_dave)
    marker = mention(carol, alice, "a marker")
    wait_notification(alice, "mention", carol, marker)
    got = all_notifications(alice)
    assert sorted(str(n.account.id) for n in got) == sorted([str(carol.id), str(dave.id)]), summary(got)

    # Unmuted, bob notifies again.
    alice.api.account_unmute(bob.id)
    again = mention(bob, alice, "unmuted")
    wait_notification(alice, "mention", bob, again)


# --------------------------------------------------------------------------
# grouped notifications (v2)
# --------------------------------------------------------------------------
def test_grouped_notifications(register, rec):
    alice, bob, carol, dave = register("ga"), register("gb"), register("gc"), register("gd")
    st = alice.api.status_post("favourite me, all of you")
    m = mention(bob, alice, "grouped")
    wait_notification(alice, "mention", bob, m)
    for fan in (bob, carol, dave):
        fan.api.status_favourite(st.id)
    v1 = poll(lambda: all_notifications(alice), lambda ns: len(ns) >= 4)
    assert [(n.type, str(n.account.id)) for n in v1] == [
        ("favourite", str(dave.id)), ("favourite", str(carol.id)), ("favourite", str(bob.id)),
        ("mention", str(bob.id)),
    ], summary(v1)  # fmt: skip
    favs, ment = v1[:3], v1[3]
    key = favs[0].group_key
    assert all(n.group_key == key for n in favs), [n.group_key for n in favs]
    assert not key.startswith("ungrouped-"), key

    # Grouped: one favourite group of three, and the mention on its own.
    res = alice.api.grouped_notifications(expand_accounts="full")
    ex = rec.last("GET", "/api/v2/notifications")
    assert ex["status"] == 200, ex["text"]
    raw = ex["json"]
    groups = res.notification_groups
    assert [(g.type, g.group_key) for g in groups] == [("favourite", key), ("mention", f"ungrouped-{ment.id}")]
    fav_group, mention_group = groups
    assert fav_group.notifications_count == 3
    assert [str(a) for a in fav_group.sample_account_ids] == [str(dave.id), str(carol.id), str(bob.id)]
    assert str(fav_group.status_id) == str(st.id)
    assert str(raw["notification_groups"][0]["most_recent_notification_id"]) == str(favs[0].id)
    assert mention_group.notifications_count == 1
    assert [str(a) for a in mention_group.sample_account_ids] == [str(bob.id)]
    assert str(mention_group.status_id) == str(m.id)
    # Each status and account once (bob is in both groups).
    assert sorted(str(s.id) for s in res.statuses) == sorted([str(st.id), str(m.id)])
    assert sorted(str(a.id) for a in res.accounts) == sorted(str(u.id) for u in (bob, carol, dave))
    assert len(raw["accounts"]) == 3 and len(raw["statuses"]) == 2

    # A client that does not group favourites: one group per notification.
    res = alice.api.grouped_notifications(grouped_types=["reblog", "follow"], expand_accounts="full")
    ex = rec.last("GET", "/api/v2/notifications")
    assert parse_qs(urlsplit(ex["url"]).query)["grouped_types[]"] == ["reblog", "follow"]
    got = [(g.type, g.group_key, g.notifications_count) for g in res.notification_groups]
    assert got == [("favourite", f"ungrouped-{n.id}", 1) for n in favs] + [("mention", f"ungrouped-{ment.id}", 1)]
    assert [[str(a) for a in g.sample_account_ids] for g in res.notification_groups] == [
        [str(dave.id)], [str(carol.id)], [str(bob.id)], [str(bob.id)]
    ]  # fmt: skip
    assert sorted(str(s.id) for s in res.statuses) == sorted([str(st.id), str(m.id)])
    assert len(ex["json"]["accounts"]) == 3

    # Filters apply to groups as well.
    only = alice.api.grouped_notifications(types=["mention"], expand_accounts="full")
    assert [g.type for g in only.notification_groups] == ["mention"]
    assert [g.type for g in alice.api.grouped_notifications(exclude_types=["mention"]).notification_groups] == [
        "favourite"
    ]

    # One group, its accounts, unread counts.
    one = alice.api.grouped_notification(key)
    assert rec.last("GET", f"/api/v2/notifications/{key}")["status"] == 200
    assert [(g.group_key, g.type, g.notifications_count) for g in one.notification_groups] == [(key, "favourite", 3)]
    assert [str(s.id) for s in one.statuses] == [str(st.id)]
    accounts = alice.api.grouped_notification_accounts(key)
    assert [str(a.id) for a in accounts] == [str(dave.id), str(carol.id), str(bob.id)]
    single = alice.api.grouped_notification(f"ungrouped-{ment.id}")
    assert [(g.type, str(g.status_id)) for g in single.notification_groups] == [("mention", str(m.id))]
    assert [str(a.id) for a in alice.api.grouped_notification_accounts(f"ungrouped-{ment.id}")] == [str(bob.id)]
    assert alice.api.unread_grouped_notifications_count() == 2
    assert alice.api.unread_grouped_notifications_count(grouped_types=["follow"]) == 4
    assert alice.api.notifications_unread_count().count == 4
    # Other accounts cannot see the group.
    with pytest.raises(MastodonNotFoundError):
        bob.api.grouped_notification(key)

    # Dismissing the group dismisses its notifications.
    assert alice.api.dismiss_grouped_notification(key) is None
    assert rec.last("POST", f"/api/v2/notifications/{key}/dismiss")["status"] == 200
    assert [str(n.id) for n in all_notifications(alice)] == [str(ment.id)]
    with pytest.raises(MastodonNotFoundError):
        alice.api.grouped_notification(key)
    with pytest.raises(MastodonNotFoundError):
        alice.api.grouped_notification_accounts(key)
    assert [g.group_key for g in alice.api.grouped_notifications().notification_groups] == [f"ungrouped-{ment.id}"]
    assert alice.api.unread_grouped_notifications_count() == 1


def test_grouped_pagination(register, rec):
    alice, bob, carol = register("ka"), register("kb"), register("kc")
    a, b = alice.api.status_post("one"), alice.api.status_post("two")
    m = mention(carol, alice)
    wait_notification(alice, "mention", carol, m)
    for fan in (bob, carol):
        fan.api.status_favourite(a.id)
    bob.api.status_favourite(b.id)
    wait_notification(alice, "favourite", bob, b)
    wait_notification(alice, "favourite", carol, a)
    # Groups newest first: favourites of b, favourites of a (2), the mention.
    page = alice.api.grouped_notifications(limit=2, expand_accounts="full")
    assert [(g.type, str(g.status_id), g.notifications_count) for g in page.notification_groups] == [
        ("favourite", str(b.id), 1), ("favourite", str(a.id), 2)
    ]  # fmt: skip
    links = parse_link(rec.last("GET", "/api/v2/notifications")["resp_headers"]["Link"])
    assert urlsplit(links["next"]).path == "/api/v2/notifications", links
    favs_of_a = [n for n in all_notifications(alice, types=["favourite"]) if str(n.status.id) == str(a.id)]
    assert [str(n.account.id) for n in favs_of_a] == [str(carol.id), str(bob.id)]
    # Mastodon (Api::V2::NotificationsController): the next page is below the most
    # recent notification of the page's last group, so that group's older notification
    # shows again, as a group with the same key counting what is on that page.
    rest = alice.api.fetch_next(page)
    assert rest is not None, "a full page of groups has a next page"
    assert parse_qs(urlsplit(rec.last("GET", "/api/v2/notifications")["url"]).query)["max_id"] == [
        str(favs_of_a[0].id)
    ]  # fmt: skip
    got = [(g.type, str(g.status_id), g.notifications_count) for g in rest.notification_groups]
    assert got == [("favourite", str(a.id), 1), ("mention", str(m.id), 1)], got
    assert rest.notification_groups[0].group_key == page.notification_groups[1].group_key
    assert [str(x) for x in rest.notification_groups[0].sample_account_ids] == [str(bob.id)]


# --------------------------------------------------------------------------
# unread counts and markers
# --------------------------------------------------------------------------
def test_unread_count_and_markers(register, rec, base_url):
    alice, bob = register("ca"), register("cb")
    home_status = alice.api.status_post("something to mark in home")
    posted = [mention(bob, alice, f"unread {i}") for i in range(3)]
    got = poll(lambda: all_notifications(alice), lambda ns: len(ns) >= 3)
    assert [str(n.status.id) for n in got] == [str(s.id) for s in reversed(posted)], summary(got)
    newest, middle, oldest = (str(n.id) for n in got)

    # No marker yet: everything is unread.
    wait_count(lambda: alice.api.notifications_unread_count().count, 3, "unread before any marker")
    assert alice.api.markers_get(["home", "notifications"]) == {}
    # The count is capped at `limit` (Mastodon: default 100, at most 1000).
    r = rec.session.get(
        base_url + "/api/v1/notifications/unread_count",
        params={"limit": 2},
        headers={"Authorization": f"Bearer {alice.api.access_token}"},
        timeout=30,
    )
    assert r.status_code == 200 and r.json() == {"count": 2}, r.text
    assert alice.api.unread_grouped_notifications_count(limit=2) == 2
    assert alice.api.unread_grouped_notifications_count() == 3

    set_ = alice.api.markers_set("notifications", middle)
    ex = rec.last("POST", "/api/v1/markers")
    assert ex["status"] == 200, ex["text"]
    assert set(ex["json"]) == {"notifications"}, ex["json"]
    raw = ex["json"]["notifications"]
    assert raw["last_read_id"] == middle and isinstance(raw["version"], int), raw
    assert isinstance(raw["updated_at"], str) and ISO_TIME.fullmatch(raw["updated_at"]), raw
    first = set_.notifications
    assert str(first.last_read_id) == middle and isinstance(first.updated_at, datetime)

    # Only what is newer than the marker is unread.
    assert alice.api.notifications_unread_count().count == 1
    r = rec.session.get(
        base_url + "/api/v1/notifications/unread_count",
        headers={"Authorization": f"Bearer {alice.api.access_token}"},
        timeout=30,
    )
    assert r.status_code == 200 and r.json() == {"count": 1}, r.text
    assert alice.api.unread_grouped_notifications_count() == 1

    second = alice.api.markers_set("notifications", newest).notifications
    assert str(second.last_read_id) == newest
    assert second.version == first.version + 1, (first.version, second.version)
    assert alice.api.notifications_unread_count().count == 0
    assert alice.api.unread_grouped_notifications_count() == 0

    # Read back; home has no marker yet.
    got = alice.api.markers_get(["home", "notifications"])
    assert set(got) == {"notifications"}, got
    assert str(got.notifications.last_read_id) == newest and got.notifications.version == second.version
    assert parse_qs(urlsplit(rec.last("GET", "/api/v1/markers")["url"]).query)["timeline[]"] == [
        "home", "notifications"
    ]  # fmt: skip

    # Both at once; then home alone.
    both = alice.api.markers_set(["home", "notifications"], [home_status.id, newest])
    assert set(both) == {"home", "notifications"}, both
    assert str(both.home.last_read_id) == str(home_status.id)
    assert both.notifications.version == second.version + 1
    got = alice.api.markers_get("home")
    assert set(got) == {"home"} and str(got.home.last_read_id) == str(home_status.id), got
    assert set(alice.api.markers_get(["home", "notifications"])) == {"home", "notifications"}

    # A new notification is unread again; another account's markers are its own.
    later = mention(bob, alice, "one more")
    wait_notification(alice, "mention", bob, later)
    wait_count(lambda: alice.api.notifications_unread_count().count, 1, "unread after a new mention")
    assert bob.api.markers_get(["home", "notifications"]) == {}


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------
def test_errors(register, rec, new_client, base_url):
    alice = register("ea")
    auth = {"Authorization": f"Bearer {alice.api.access_token}"}

    # Unknown or malformed notification ids are 404s.
    for bad in ("abc", UNKNOWN_ID):
        with pytest.raises(MastodonNotFoundError):
            alice.api.notifications(id=bad)
        ex = rec.exchanges[-1]
        assert ex["status"] == 404 and isinstance(ex["json"], dict) and ex["json"].get("error"), ex["text"]
        with pytest.raises(MastodonNotFoundError):
            alice.api.notifications_dismiss(bad)
        assert rec.exchanges[-1]["status"] == 404
    with pytest.raises(MastodonNotFoundError):
        alice.api.grouped_notification("favourite-1-1")
    with pytest.raises(MastodonNotFoundError):
        alice.api.dismiss_grouped_notification("ungrouped-" + UNKNOWN_ID)

    # Markers: an unknown timeline is ignored; a body without any sets nothing and
    # answers the current markers, as Mastodon does.
    r = rec.session.post(
        base_url + "/api/v1/markers",
        json={"home": {"last_read_id": "12345"}, "bogus": {"last_read_id": "1"}},
        headers=auth,
        timeout=30,
    )
    assert r.status_code == 200 and set(r.json()) == {"home"}, r.text
    assert r.json()["home"]["last_read_id"] == "12345"
    for body in ({}, None):
        r = rec.session.post(base_url + "/api/v1/markers", json=body, headers=auth, timeout=30)
        assert r.status_code == 200, (body, r.status_code, r.text)
        assert r.json()["home"]["last_read_id"] == "12345", r.text
    r = rec.session.get(base_url + "/api/v1/markers", params={"timeline[]": ["bogus"]}, headers=auth, timeout=30)
    assert r.status_code == 200 and r.json() == {}, r.text

    # No token: 401 with a Mastodon-shaped error.
    anonymous = new_client()
    with pytest.raises(MastodonUnauthorizedError):
        anonymous.notifications()
    with pytest.raises(MastodonUnauthorizedError):
        anonymous.grouped_notifications()
    with pytest.raises(MastodonUnauthorizedError):
        anonymous.notifications_unread_count()
    with pytest.raises(MastodonUnauthorizedError):
        anonymous.markers_get("notifications")
    for method, path in (
        ("GET", "/api/v1/notifications"),
        ("GET", "/api/v1/notifications/1"),
        ("POST", "/api/v1/notifications/clear"),
        ("GET", "/api/v1/notifications/unread_count"),
        ("GET", "/api/v2/notifications"),
        ("GET", "/api/v2/notifications/unread_count"),
        ("GET", "/api/v1/markers"),
        ("POST", "/api/v1/markers"),
    ):
        r = rec.session.request(method, base_url + path, timeout=30)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert isinstance(r.json(), dict) and r.json().get("error"), (method, path, r.text)


# --------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------
class Listener(StreamListener):
    def __init__(self):
        self.connected = threading.Event()
        self.updates = []
        self.notifications = []
        self.errors = []
        self.events = []

    def handle_heartbeat(self):
        self.connected.set()

    def on_any_event(self, name, data=None, for_stream=None):
        self.events.append(name)

    def on_update(self, status):
        self.updates.append(status)

    def on_notification(self, notification):
        self.notifications.append(notification)

    def on_abort(self, err):
        self.errors.append(err)


def wait_until(cond, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(STEP)
    return cond()


def test_user_stream(register, rec, new_client, base_url):
    alice, bob, carol = register("la"), register("lb"), register("lc")
    alice.api.account_follow(bob.id)
    alice.api.timeline_home()  # a home feed is kept live once read

    # Mastodon.py finds the streaming server through the instance document.
    instance = requests.get(base_url + "/api/v2/instance", timeout=30).json()
    streaming = instance["configuration"]["urls"]["streaming"]
    assert urlsplit(streaming).scheme in ("ws", "wss", "http", "https"), streaming
    assert urlsplit(streaming).netloc == urlsplit(base_url).netloc, (streaming, base_url)

    client = new_client(access_token=alice.api.access_token, session=requests.Session())
    listener = Listener()
    handle = client.stream_user(listener, run_async=True, timeout=30)
    try:
        assert wait_until(listener.connected.is_set), (
            f"no stream opened within {WAIT}s (errors: {listener.errors!r}, events: {listener.events})"
        )
        st = bob.api.status_post("live from bob")
        assert wait_until(lambda: str(st.id) in [str(s.id) for s in listener.updates]), (
            f"no `update` for {st.id} within {WAIT}s: updates {[str(s.id) for s in listener.updates]}, "
            f"events {listener.events}, errors {listener.errors!r}"
        )
        update = next(s for s in listener.updates if str(s.id) == str(st.id))
        assert isinstance(update, Status) and str(update.account.id) == str(bob.id)
        assert "live from bob" in update.content

        m = mention(carol, alice, "are you streaming")
        assert wait_until(
            lambda: any(n.type == "mention" and str(n.status.id) == str(m.id) for n in listener.notifications)
        ), (
            f"no `notification` for the mention {m.id} within {WAIT}s: "
            f"{summary(listener.notifications)}, events {listener.events}, errors {listener.errors!r}"
        )
        n = next(n for n in listener.notifications if n.type == "mention")
        check_parsed(n)
        assert str(n.account.id) == str(carol.id)
        # The streamed notification is the one the REST API lists.
        listed = wait_notification(alice, "mention", carol, m)
        assert str(listed.id) == str(n.id)
        assert listener.errors == []
    finally:
        handle.close()
        handle.join(5)
