"""The social graph through the real Mastodon.py client: follows and their options,
relationships, followers/following lists with cursor pagination, follow requests of a
locked account, blocks, mutes, account search, and the errors a client sees.

Fixtures (Recorder `rec`, `new_client`, `register`) are in conftest.py. Every test
registers its own accounts (unique usernames), so tests are independent of each other
and of the order they run in.

Notes on the pinned Mastodon.py 2.3.3 behaviour these tests rely on (read from its
source):
  * Under version_check_mode="created" every method used here needs at most Mastodon
    3.5.0 (account_remove_from_followers); the server reports 4.5.0.
  * Booleans go out as "1"/"0" (account_follow(reblogs=False) posts reblogs=0, and it
    always sends reblogs and notify); lists go out as `name[]` repeated
    (account_relationships([a, b]) -> ?id[]=a&id[]=b, a single id -> ?id=a).
  * Cursor pagination: for a list response with a Link header it regex-extracts `max_id`
    from rel="next" and `min_id` (or the pre-2.6 `since_id`) from rel="prev"; the other
    query parameters of the first call (here `limit`) are reused, not the link's URL.
    fetch_next/fetch_previous return None when the page had no such link;
    fetch_remaining follows fetch_next until None or an empty page and returns a plain
    list including the first page. get_pagination_info() exposes what it parsed.
  * account_search uses offset pagination and always sends resolve=0; following=False
    is left out of the query.
  * Errors: 404 -> MastodonNotFoundError, 401 -> MastodonUnauthorizedError, any other
    4xx (403, 422, ...) -> plain MastodonAPIError; 429 -> MastodonRatelimitError (with
    ratelimit_method="throw"). The exception's args are
    ("Mastodon API returned error", status, reason, error message).
"""

import re
import secrets
import string
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from mastodon import MastodonAPIError, MastodonNotFoundError

# Relationship fields of "no relationship at all", as Mastodon serialises them.
NO_RELATIONSHIP = dict(
    following=False,
    showing_reblogs=False,
    notifying=False,
    followed_by=False,
    blocking=False,
    blocked_by=False,
    muting=False,
    muting_notifications=False,
    requested=False,
    requested_by=False,
    domain_blocking=False,
    endorsed=False,
)
UNKNOWN_ID = "9" * 18


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def letters(n=8):
    """A random lowercase word: display-name words must not be split by the search
    tokenizer (digits next to letters can be)."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(n))


def assert_relationship(rel, target, **expected):
    """`rel` is the relationship with `target`, every flag as in NO_RELATIONSHIP except
    `expected`."""
    assert str(rel.id) == str(target.id)
    want = {**NO_RELATIONSHIP, **expected}
    got = {key: rel.get(key) for key in want}
    assert got == want, f"relationship with {target.username}: got {got}, want {want}"


def relationship(viewer, target):
    """The one relationship of `viewer` with `target`, via account_relationships."""
    rels = viewer.api.account_relationships(target.id)
    assert len(rels) == 1, rels
    return rels[0]


def assert_counts(user, followers, following, seen_by=None):
    """`user`'s counters as the user sees them (verify_credentials) and as `seen_by` sees
    them (GET /api/v1/accounts/:id): both must be exact at once."""
    me = user.api.me()
    assert (me.followers_count, me.following_count) == (followers, following), (
        f"{user.username} (own view): followers/following "
        f"{me.followers_count}/{me.following_count}, want {followers}/{following}"
    )
    if seen_by is not None:
        other = seen_by.api.account(user.id)
        assert (other.followers_count, other.following_count) == (followers, following), (
            f"{user.username} seen by {seen_by.username}: followers/following "
            f"{other.followers_count}/{other.following_count}, want {followers}/{following}"
        )


def ids(accounts):
    return [str(a.id) for a in accounts]


def api_error(excinfo):
    """(status, error message) of a MastodonAPIError raised by Mastodon.py."""
    args = excinfo.value.args
    assert len(args) == 4, args
    return args[1], args[3]


LINK_ENTRY = re.compile(r'<([^<>]+)>;\s*rel="(next|prev)"')


def parse_link(header):
    """The Link header as {rel: url}, insisting on Mastodon's exact shape:
    `<url>; rel="next", <url>; rel="prev"` (each rel at most once, nothing else)."""
    entries = [e.strip() for e in header.split(",")]
    links = {}
    for entry in entries:
        m = LINK_ENTRY.fullmatch(entry)
        assert m, f"malformed Link entry {entry!r} in {header!r}"
        assert m.group(2) not in links, f"rel={m.group(2)} twice in {header!r}"
        links[m.group(2)] = m.group(1)
    # The reference parser (what Mastodon.py feeds its regexes from) agrees.
    parsed = requests.utils.parse_header_links(header)
    assert {p["rel"]: p["url"] for p in parsed} == links, parsed
    return links


# --------------------------------------------------------------------------
# follow, re-follow, unfollow, remove_from_followers
# --------------------------------------------------------------------------
def test_follow_options_unfollow_and_counters(register, rec):
    alice, bob = register("fa"), register("fb")
    assert_counts(alice, 0, 0, seen_by=bob)
    assert_counts(bob, 0, 0, seen_by=alice)
    assert_relationship(relationship(alice, bob), bob)

    rel = alice.api.account_follow(bob.id)
    ex = rec.last("POST", f"/api/v1/accounts/{bob.id}/follow")
    assert ex["status"] == 200, ex["text"]
    assert ex["json"]["languages"] is None, "Mastodon: languages is null when following in all languages"
    assert_relationship(rel, bob, following=True, showing_reblogs=True)
    assert rel.languages is None
    assert_relationship(relationship(alice, bob), bob, following=True, showing_reblogs=True)
    assert_relationship(relationship(bob, alice), alice, followed_by=True)
    assert_counts(alice, 0, 1, seen_by=bob)
    assert_counts(bob, 1, 0, seen_by=alice)

    # Following again only changes the options of the follow, not the counters.
    rel = alice.api.account_follow(bob.id, reblogs=False, notify=True)
    assert "reblogs=0" in rec.last("POST", f"/api/v1/accounts/{bob.id}/follow")["req_body"]
    assert_relationship(rel, bob, following=True, showing_reblogs=False, notifying=True)
    assert_relationship(relationship(alice, bob), bob, following=True, showing_reblogs=False, notifying=True)
    assert_counts(alice, 0, 1, seen_by=bob)
    assert_counts(bob, 1, 0, seen_by=alice)
    rel = alice.api.account_follow(bob.id)  # Mastodon.py sends reblogs=1, notify=0
    assert_relationship(rel, bob, following=True, showing_reblogs=True)
    assert_counts(bob, 1, 0, seen_by=alice)

    rel = alice.api.account_unfollow(bob.id)
    assert_relationship(rel, bob)
    assert_relationship(relationship(bob, alice), alice)
    assert_counts(alice, 0, 0, seen_by=bob)
    assert_counts(bob, 0, 0, seen_by=alice)
    # Unfollowing someone one does not follow is a no-op, not an error.
    assert_relationship(alice.api.account_unfollow(bob.id), bob)
    assert_counts(bob, 0, 0, seen_by=alice)

    # A follow after an unfollow starts from the defaults again; then both follow each other.
    assert_relationship(alice.api.account_follow(bob.id), bob, following=True, showing_reblogs=True)
    rel = bob.api.account_follow(alice.id)
    assert_relationship(rel, alice, following=True, showing_reblogs=True, followed_by=True)
    assert_counts(alice, 1, 1, seen_by=bob)
    assert_counts(bob, 1, 1, seen_by=alice)

    # Bob removes Alice from his followers: her follow is gone, his stays.
    rel = bob.api.account_remove_from_followers(alice.id)
    assert_relationship(rel, alice, following=True, showing_reblogs=True)
    assert_relationship(relationship(alice, bob), bob, followed_by=True)
    assert_counts(alice, 1, 0, seen_by=bob)
    assert_counts(bob, 0, 1, seen_by=alice)
    assert ids(bob.api.account_followers(bob.id)) == []
    assert ids(alice.api.account_following(alice.id)) == []
    assert ids(alice.api.account_followers(alice.id)) == [str(bob.id)]


def test_relationships_of_several_accounts(register, rec):
    me = register("ra")
    followed, follower, muted, blocked, stranger = (register(p) for p in ("rb", "rc", "rd", "re", "rf"))
    me.api.account_follow(followed.id, reblogs=False)
    follower.api.account_follow(me.id)
    me.api.account_mute(muted.id)
    me.api.account_block(blocked.id)

    order = [stranger, blocked, followed, muted, follower]
    # Account objects are accepted too; an unknown id is left out (Mastodon does the same).
    rels = me.api.account_relationships([stranger.me, blocked.id, followed.id, UNKNOWN_ID, muted.id, follower.id])
    ex = rec.last("GET", "/api/v1/accounts/relationships")
    assert parse_qs(urlsplit(ex["url"]).query)["id[]"] == [
        str(a) for a in (stranger.id, blocked.id, followed.id, UNKNOWN_ID, muted.id, follower.id)
    ]
    assert ex["status"] == 200, ex["text"]
    for raw in ex["json"]:
        assert isinstance(raw["id"], str), raw
        assert set(NO_RELATIONSHIP) | {"id", "languages", "note"} <= set(raw), sorted(raw)

    assert ids(rels) == ids(order), "relationships must come back in the order asked for"
    assert_relationship(rels[0], stranger)
    assert_relationship(rels[1], blocked, blocking=True)
    assert_relationship(rels[2], followed, following=True)  # showing_reblogs=False
    assert_relationship(rels[3], muted, muting=True, muting_notifications=True)
    assert_relationship(rels[4], follower, followed_by=True)

    # And from the other side.
    assert_relationship(relationship(blocked, me), me, blocked_by=True)
    assert_relationship(relationship(followed, me), me, followed_by=True)
    assert_relationship(relationship(muted, me), me)  # a mute is private to the muter
    assert_relationship(relationship(follower, me), me, following=True, showing_reblogs=True)

    # The reverse order gives the reverse list.
    rels = me.api.account_relationships([a.id for a in reversed(order)])
    assert ids(rels) == ids(reversed(order))


# --------------------------------------------------------------------------
# followers / following lists and their pagination
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def five_followers(register):
    """An account followed by five others, one after the other (oldest first)."""
    target = register("pt")
    followers = []
    for i in range(5):
        f = register(f"p{i}")
        f.api.account_follow(target.id)
        followers.append(f)
    return target, followers


def test_followers_pagination_walk(five_followers, new_client):
    target, followers = five_followers
    newest_first = ids(reversed(followers))
    api = followers[0].api
    assert_counts(target, 5, 0, seen_by=followers[0])

    page = api.account_followers(target.id, limit=2)
    pages = []
    while page is not None:
        pages.append(ids(page))
        assert len(pages) <= 5, f"fetch_next does not end: {pages}"
        page = api.fetch_next(page)
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]

    # Everyone at once (default limit 40), and without a token (the list is public).
    assert ids(api.account_followers(target.id)) == newest_first
    anonymous = new_client()
    assert ids(anonymous.account_followers(target.id)) == newest_first

    # The entries are full accounts with their counters.
    first = api.account_followers(target.id, limit=1)[0]
    assert first.username == followers[-1].username
    assert (first.followers_count, first.following_count) == (0, 1)

    # Each follower follows exactly the target.
    for f in followers:
        assert ids(api.account_following(f.id)) == [str(target.id)]


def test_followers_fetch_remaining_and_previous(five_followers):
    target, followers = five_followers
    newest_first = ids(reversed(followers))
    api = target.api

    first = api.account_followers(target.id, limit=2)
    everyone = api.fetch_remaining(first)
    assert ids(everyone) == newest_first
    assert ids(first) == newest_first[:2], "fetch_remaining must not change the first page"

    second = api.fetch_next(first)
    assert ids(second) == newest_first[2:4]
    back = api.fetch_previous(second)
    assert ids(back) == newest_first[:2], "fetch_previous from page 2 must give page 1"
    third = api.fetch_next(second)
    assert ids(third) == newest_first[4:]
    assert api.fetch_next(third) is None
    assert ids(api.fetch_previous(third)) == newest_first[2:4]
    # Nothing is newer than the first page.
    newer = api.fetch_previous(first)
    assert newer is None or ids(newer) == []

    # A larger page than the list: everything, and no next page.
    whole = api.account_followers(target.id, limit=80)
    assert ids(whole) == newest_first
    assert api.fetch_next(whole) is None


def test_followers_link_header(five_followers, rec, base_url):
    target, followers = five_followers
    api = followers[2].api
    path = f"/api/v1/accounts/{target.id}/followers"

    first = api.account_followers(target.id, limit=2)
    ex = rec.last("GET", path)
    assert ex["status"] == 200, ex["text"]
    assert "Link" in ex["resp_headers"], f"no Link header on a full page: {ex['resp_headers']}"
    links = parse_link(ex["resp_headers"]["Link"])
    assert set(links) == {"next", "prev"}, links
    for rel, cursor_key in (("next", "max_id"), ("prev", "min_id")):
        url = urlsplit(links[rel])
        assert f"{url.scheme}://{url.netloc}" == base_url, f"{rel} link {links[rel]!r} is not on {base_url}"
        assert url.path == path, links[rel]
        query = parse_qs(url.query, keep_blank_values=True)
        assert set(query) == {"limit", cursor_key}, f"{rel} link query: {query}"
        assert query["limit"] == ["2"]
        assert re.fullmatch(r"[0-9]+", query[cursor_key][0]), links[rel]

    # What Mastodon.py understood from the header, and what it sent for the next page.
    next_info = api.get_pagination_info(first, "next")
    prev_info = api.get_pagination_info(first, "previous")
    max_id = parse_qs(urlsplit(links["next"]).query)["max_id"][0]
    min_id = parse_qs(urlsplit(links["prev"]).query)["min_id"][0]
    assert str(next_info["max_id"]) == max_id
    assert str(prev_info["min_id"]) == min_id
    api.fetch_next(first)
    sent = parse_qs(urlsplit(rec.last("GET", path)["url"]).query)
    assert sent == {"limit": ["2"], "max_id": [max_id]}, sent

    # The link itself works when followed by hand (a client may use it verbatim).
    by_hand = requests.get(links["next"], timeout=30)
    assert by_hand.status_code == 200, by_hand.text
    assert [a["id"] for a in by_hand.json()] == ids(reversed(followers))[2:4]

    # The last (partial) page links only back; an empty page has no Link at all.
    last = api.account_followers(target.id, limit=2, max_id=max_id)
    last = api.fetch_next(last)
    assert len(last) == 1
    links = parse_link(rec.last("GET", path)["resp_headers"]["Link"])
    assert set(links) == {"prev"}, links
    lonely = followers[0]
    assert api.account_followers(lonely.id) == []
    assert not rec.last("GET", f"/api/v1/accounts/{lonely.id}/followers")["resp_headers"].get("Link")

    # Without `limit` the links carry none either (Mastodon copies only the given limit).
    api.account_following(followers[1].id)
    ex = rec.last("GET", f"/api/v1/accounts/{followers[1].id}/following")
    links = parse_link(ex["resp_headers"]["Link"])
    assert set(links) == {"prev"}, links
    assert set(parse_qs(urlsplit(links["prev"]).query)) == {"min_id"}


def test_following_pagination(register):
    me = register("fo")
    followed = [register(f"f{i}") for i in range(3)]
    for f in followed:
        me.api.account_follow(f.id)
    assert_counts(me, 0, 3)
    newest_first = ids(reversed(followed))
    page = me.api.account_following(me.id, limit=2)
    assert ids(page) == newest_first[:2]
    assert ids(me.api.fetch_remaining(page)) == newest_first
    # Unfollowing the middle one leaves the others in order.
    me.api.account_unfollow(followed[1].id)
    assert ids(me.api.account_following(me.id)) == [newest_first[0], newest_first[2]]
    assert_counts(me, 0, 2, seen_by=followed[0])
    assert_counts(followed[1], 0, 0, seen_by=me)


def test_lists_hidden_from_those_the_owner_blocks(register, new_client):
    owner, fan, nosy = register("ho"), register("hf"), register("hn")
    fan.api.account_follow(owner.id)
    owner.api.account_follow(fan.id)
    owner.api.account_block(nosy.id)
    # Mastodon (hide_results?): an account's network is hidden from those it blocks...
    assert ids(nosy.api.account_followers(owner.id)) == []
    assert ids(nosy.api.account_following(owner.id)) == []
    # ...but not from anyone else, signed in or not.
    assert ids(fan.api.account_followers(owner.id)) == [str(fan.id)]
    assert ids(new_client().account_following(owner.id)) == [str(fan.id)]


def test_lists_leave_out_accounts_the_viewer_blocks_or_mutes(register, new_client):
    """Mastodon 4.x (Api::V1::Accounts::FollowerAccountsController and
    FollowingAccountsController#load_accounts): for a signed-in viewer other than the
    owner, `scope.not_excluded_by_account(current_account)` drops the accounts the viewer
    blocks, is blocked by, or mutes (Account#excluded_from_timeline_account_ids)."""
    owner, viewer = register("xo"), register("xv")
    blocked, blocker, muted, plain = (register(p) for p in ("xb", "xc", "xm", "xp"))
    for other in (blocked, blocker, muted, plain):
        other.api.account_follow(owner.id)
        owner.api.account_follow(other.id)
    viewer.api.account_block(blocked.id)
    blocker.api.account_block(viewer.id)
    viewer.api.account_mute(muted.id)
    everyone = ids([plain, muted, blocker, blocked])  # newest first

    # The owner and anonymous clients see everyone.
    assert ids(owner.api.account_followers(owner.id)) == everyone
    assert ids(new_client().account_followers(owner.id)) == everyone
    assert_counts(owner, 4, 4, seen_by=viewer)  # counters are not filtered

    assert ids(viewer.api.account_followers(owner.id)) == [str(plain.id)], (
        "followers seen by an account that blocks/is blocked by/mutes some of them"
    )
    assert ids(viewer.api.account_following(owner.id)) == [str(plain.id)], (
        "following seen by an account that blocks/is blocked by/mutes some of them"
    )


# --------------------------------------------------------------------------
# locked accounts and follow requests
# --------------------------------------------------------------------------
def test_locked_account_follow_requests(register, rec):
    owner = register("lk")
    owner.api.account_update_credentials(locked=True)
    assert owner.api.me().locked is True
    first, second = register("lq"), register("lr")

    # A request shows the options it was made with (Mastodon: showing_reblogs/notifying
    # come from the follow, else from the request).
    rel = first.api.account_follow(owner.id, reblogs=False)
    assert_relationship(rel, owner, requested=True)
    rel = second.api.account_follow(owner.id)
    assert_relationship(rel, owner, requested=True, showing_reblogs=True)
    assert_relationship(relationship(first, owner), owner, requested=True)
    # A pending request counts for nobody.
    assert_counts(owner, 0, 0, seen_by=first)
    assert_counts(first, 0, 0, seen_by=owner)
    assert_relationship(relationship(owner, first), first, requested_by=True)
    assert ids(owner.api.account_followers(owner.id)) == []

    requests_ = owner.api.follow_requests()
    assert ids(requests_) == [str(second.id), str(first.id)], "follow requests, newest first"
    assert requests_[1].username == first.username
    me = owner.api.me()
    assert me.source.follow_requests_count == 2
    assert rec.last("GET", "/api/v1/accounts/verify_credentials")["json"]["source"]["follow_requests_count"] == 2
    # Only the owner sees their requests.
    assert ids(first.api.follow_requests()) == []

    rel = owner.api.follow_request_authorize(first.id)
    assert_relationship(rel, first, followed_by=True)
    # The options given with the request hold for the follow it became.
    assert_relationship(relationship(first, owner), owner, following=True, showing_reblogs=False)
    assert_counts(owner, 1, 0, seen_by=second)
    assert_counts(first, 0, 1, seen_by=owner)
    assert ids(owner.api.follow_requests()) == [str(second.id)]

    rel = owner.api.follow_request_reject(second.id)
    assert_relationship(rel, second)
    assert_relationship(relationship(second, owner), owner)
    assert ids(owner.api.follow_requests()) == []
    assert owner.api.me().source.follow_requests_count == 0
    assert_counts(owner, 1, 0, seen_by=second)
    assert_counts(second, 0, 0, seen_by=owner)
    assert ids(owner.api.account_followers(owner.id)) == [str(first.id)]

    # No request (any more): authorize and reject are 404s.
    with pytest.raises(MastodonNotFoundError):
        owner.api.follow_request_authorize(second.id)
    with pytest.raises(MastodonNotFoundError):
        owner.api.follow_request_reject(second.id)

    # A withdrawn request disappears from the list.
    rel = second.api.account_follow(owner.id, notify=True)
    assert_relationship(rel, owner, requested=True, showing_reblogs=True, notifying=True)
    assert ids(owner.api.follow_requests()) == [str(second.id)]
    assert_relationship(second.api.account_unfollow(owner.id), owner)
    assert ids(owner.api.follow_requests()) == []


# --------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------
def test_block_severs_follows_and_forbids_following(register, rec):
    alice, bob, carol = register("ba"), register("bb"), register("bc")
    alice.api.account_follow(bob.id)
    bob.api.account_follow(alice.id)
    carol.api.account_follow(alice.id)
    assert_counts(alice, 2, 1, seen_by=bob)
    assert_counts(bob, 1, 1, seen_by=alice)

    rel = alice.api.account_block(bob.id)
    assert_relationship(rel, bob, blocking=True)
    assert_relationship(relationship(alice, bob), bob, blocking=True)
    assert_relationship(relationship(bob, alice), alice, blocked_by=True)
    # Both follows are gone, Carol's is untouched.
    assert_counts(alice, 1, 0, seen_by=carol)
    assert_counts(bob, 0, 0, seen_by=carol)
    assert ids(alice.api.account_followers(alice.id)) == [str(carol.id)]
    assert ids(bob.api.account_following(bob.id)) == []

    # Neither side can follow the other while the block stands: 403, not 404.
    for follower, followee in ((bob, alice), (alice, bob)):
        with pytest.raises(MastodonAPIError) as err:
            follower.api.account_follow(followee.id)
        assert not isinstance(err.value, MastodonNotFoundError), err.value
        status, message = api_error(err)
        assert status == 403, (status, message)
        assert message, "a 403 needs an error message"
        ex = rec.last("POST", f"/api/v1/accounts/{followee.id}/follow")
        assert ex["status"] == 403 and isinstance(ex["json"], dict) and ex["json"].get("error"), ex["text"]
    assert_counts(alice, 1, 0)
    assert_counts(bob, 0, 0)

    # Blocking again is idempotent; blocks() lists it, newest first, with pagination.
    assert_relationship(alice.api.account_block(bob.id), bob, blocking=True)
    alice.api.account_block(carol.id)
    assert_counts(alice, 0, 0)  # Carol's follow went with the second block
    assert ids(alice.api.blocks()) == [str(carol.id), str(bob.id)]
    page = alice.api.blocks(limit=1)
    assert ids(page) == [str(carol.id)]
    assert ids(alice.api.fetch_next(page)) == [str(bob.id)]
    assert ids(bob.api.blocks()) == [], "being blocked is not blocking"

    rel = alice.api.account_unblock(bob.id)
    assert_relationship(rel, bob)  # the old follows do not come back
    assert_relationship(relationship(bob, alice), alice)
    assert ids(alice.api.blocks()) == [str(carol.id)]
    assert_relationship(bob.api.account_follow(alice.id), alice, following=True, showing_reblogs=True)
    assert_counts(alice, 1, 0, seen_by=bob)
    assert_counts(bob, 0, 1, seen_by=alice)
    # Unblocking someone not blocked is a no-op.
    assert_relationship(alice.api.account_unblock(bob.id), bob, followed_by=True)


# --------------------------------------------------------------------------
# mutes
# --------------------------------------------------------------------------
def test_mute_with_duration_and_notifications(register, rec):
    me, loud, quiet = register("ma"), register("mb"), register("mc")
    me.api.account_follow(loud.id)

    before = datetime.now(timezone.utc)
    rel = me.api.account_mute(loud.id, notifications=False, duration=3600)
    after = datetime.now(timezone.utc)
    ex = rec.last("POST", f"/api/v1/accounts/{loud.id}/mute")
    assert ex["status"] == 200, ex["text"]
    assert parse_qs(ex["req_body"]) == {"notifications": ["0"], "duration": ["3600"]}, ex["req_body"]
    # Muting does not touch the follow.
    assert_relationship(rel, loud, following=True, showing_reblogs=True, muting=True, muting_notifications=False)
    raw_expiry = ex["json"].get("muting_expires_at")
    assert isinstance(raw_expiry, str), f"muting_expires_at: {raw_expiry!r}"
    expires = rel.muting_expires_at
    assert isinstance(expires, datetime) and expires.tzinfo is not None, raw_expiry
    slack = timedelta(seconds=60)
    assert before + timedelta(seconds=3600) - slack <= expires <= after + timedelta(seconds=3600) + slack, expires

    rel = relationship(me, loud)
    assert_relationship(rel, loud, following=True, showing_reblogs=True, muting=True, muting_notifications=False)
    assert abs(rel.muting_expires_at - expires) < timedelta(seconds=1)
    assert_counts(loud, 1, 0, seen_by=me)

    # An indefinite mute that also hides notifications.
    rel = me.api.account_mute(quiet.id)
    assert_relationship(rel, quiet, muting=True, muting_notifications=True)
    assert rel.muting_expires_at is None

    muted = me.api.mutes()
    assert ids(muted) == [str(quiet.id), str(loud.id)], "mutes, newest first"
    by_id = {str(a.id): a for a in muted}
    assert by_id[str(quiet.id)].mute_expires_at is None
    assert abs(by_id[str(loud.id)].mute_expires_at - expires) < timedelta(seconds=1)
    raw = {a["id"]: a for a in rec.last("GET", "/api/v1/mutes")["json"]}
    assert "mute_expires_at" in raw[str(quiet.id)] and raw[str(quiet.id)]["mute_expires_at"] is None
    assert ids(loud.api.mutes()) == [], "a mute is private to the muter"

    # Muting again replaces the options: now indefinite, notifications hidden.
    rel = me.api.account_mute(loud.id)
    assert_relationship(rel, loud, following=True, showing_reblogs=True, muting=True, muting_notifications=True)
    assert rel.muting_expires_at is None

    rel = me.api.account_unmute(loud.id)
    assert_relationship(rel, loud, following=True, showing_reblogs=True)
    assert rel.muting_expires_at is None
    assert ids(me.api.mutes()) == [str(quiet.id)]
    assert_relationship(me.api.account_unmute(quiet.id), quiet)
    assert ids(me.api.mutes()) == []
    # Unmuting someone not muted is a no-op.
    assert_relationship(me.api.account_unmute(quiet.id), quiet)


# --------------------------------------------------------------------------
# account search
# --------------------------------------------------------------------------
def test_account_search(register, rec):
    word = letters(10)
    prefix = "s" + letters(6)  # no other account's username starts with it
    viewer = register("sv")
    first = register(prefix, display_name=f"Velvet {word.capitalize()} Otter")
    second = register(prefix, display_name="Someone Else")

    # Username prefix: both, the searcher follows neither.
    found = viewer.api.account_search(prefix)
    ex = rec.last("GET", "/api/v1/accounts/search")
    assert ex["status"] == 200, ex["text"]
    assert sorted(ids(found)) == sorted(ids([first, second]))
    assert {a.username for a in found} == {first.username, second.username}
    # The exact username comes first.
    assert ids(viewer.api.account_search(second.username))[0] == str(second.id)
    assert ids(viewer.api.account_search("@" + first.username))[0] == str(first.id)

    # A display-name word prefix, whatever its case; a word inside the name counts.
    assert ids(viewer.api.account_search(word[:6])) == [str(first.id)]
    assert ids(viewer.api.account_search(word[:6].upper())) == [str(first.id)]
    assert ids(viewer.api.account_search(f"velvet {word[:4]}")) == [str(first.id)]
    # Not a prefix of any word or username.
    assert ids(viewer.api.account_search(word[2:])) == []
    assert ids(viewer.api.account_search(letters(12))) == []

    # limit, and following=True restricts to accounts the searcher follows.
    assert len(viewer.api.account_search(prefix, limit=1)) == 1
    viewer.api.account_follow(second.id)
    assert ids(viewer.api.account_search(prefix, following=True)) == [str(second.id)]
    assert parse_qs(urlsplit(rec.last("GET", "/api/v1/accounts/search")["url"]).query)["following"] == ["1"]
    assert sorted(ids(viewer.api.account_search(prefix))) == sorted(ids([first, second]))


# --------------------------------------------------------------------------
# bad input through the client
# --------------------------------------------------------------------------
def test_graph_errors(register, rec):
    me, other = register("ea"), register("eb")

    # Following oneself: a 422 with a message, and nothing changes. (This server's
    # contract. Mastodon itself answers 404 "Record not found" here, from
    # FollowService#following_not_possible?; for Mastodon.py both are MastodonAPIError,
    # the 404 being the MastodonNotFoundError subclass.)
    with pytest.raises(MastodonAPIError) as err:
        me.api.account_follow(me.id)
    status, message = api_error(err)
    assert status == 422, (status, message)
    assert message
    assert_counts(me, 0, 0)

    # Unknown and malformed account ids are 404s for every graph call.
    for bad in (UNKNOWN_ID, "abc"):
        calls = [
            lambda: me.api.account_follow(bad),
            lambda: me.api.account_unfollow(bad),
            lambda: me.api.account_remove_from_followers(bad),
            lambda: me.api.account_block(bad),
            lambda: me.api.account_unblock(bad),
            lambda: me.api.account_mute(bad),
            lambda: me.api.account_unmute(bad),
            lambda: me.api.account_followers(bad),
            lambda: me.api.account_following(bad),
            lambda: me.api.follow_request_authorize(bad),
            lambda: me.api.follow_request_reject(bad),
        ]
        for call in calls:
            with pytest.raises(MastodonNotFoundError):
                call()
            ex = rec.exchanges[-1]
            assert ex["status"] == 404, (ex["method"], ex["url"], ex["text"])
            assert isinstance(ex["json"], dict) and ex["json"].get("error"), ex["text"]
    assert me.api.account_relationships(UNKNOWN_ID) == []

    # A follow request that does not exist cannot be authorized.
    with pytest.raises(MastodonNotFoundError):
        me.api.follow_request_authorize(other.id)
    assert_relationship(relationship(me, other), other)
    assert_counts(me, 0, 0, seen_by=other)
