//! The `Status` entity and its relatives (`Context`, `StatusEdit`, `Tag`), rendered from
//! a timeline `StatusPage` and the accounts it references.
//!
//! Like the account entities, these borrow from the protobuf messages and write the
//! strings built from parts (URLs, timestamps) straight into the output.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use rookery_proto::{timeline::v1 as tl, users::v1 as pb};
use serde::Serialize;

use super::{
    Account, Concat, IdStr,
    media::{MediaAttachment, MediaRefs},
};

/// Bytes of one serialised `Status` (with its account), for `json_response` size hints.
pub const STATUS_JSON_BYTES: usize = 2560;

/// What every status of one response shares.
pub struct Ctx<'a> {
    pub page: &'a tl::StatusPage,
    pub accounts: &'a HashMap<i64, pb::Account>,
    /// The attachments of the page's statuses.
    pub media: &'a MediaRefs,
    /// E.g. `https://rookery.test`.
    pub base_url: &'a str,
}

/// A timestamp as Mastodon writes it (`2024-01-31T12:34:56.789Z`, like `iso_time`).
#[derive(Clone, Copy)]
struct Time(i64);

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let time = DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or_default();
        s.collect_str(&time.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

/// Where a status lives.
#[derive(Clone, Copy)]
enum LinkKind {
    /// `{base}/users/{username}/statuses/{id}`
    Uri,
    /// `{base}/@{username}/{id}`
    Url,
    /// `{base}/users/{username}/statuses/{id}/activity`: uri and url of a reblog.
    Activity,
}

#[derive(Clone, Copy)]
struct StatusLink<'a> {
    base: &'a str,
    username: &'a str,
    id: i64,
    kind: LinkKind,
}

impl fmt::Display for StatusLink<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            base, username, id, ..
        } = self;
        match self.kind {
            LinkKind::Uri => write!(f, "{base}/users/{username}/statuses/{id}"),
            LinkKind::Url => write!(f, "{base}/@{username}/{id}"),
            LinkKind::Activity => write!(f, "{base}/users/{username}/statuses/{id}/activity"),
        }
    }
}

impl Serialize for StatusLink<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `{base}/tags/{name}`, the name percent-encoded (as Rails' `tag_url` does for
/// non-ASCII hashtags).
#[derive(Clone, Copy)]
struct TagUrl<'a> {
    base: &'a str,
    name: &'a str,
}

impl fmt::Display for TagUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base)?;
        f.write_str("/tags/")?;
        let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~');
        let mut run = 0; // start of the current run of plain bytes
        for (i, &b) in self.name.as_bytes().iter().enumerate() {
            if !plain(b) {
                // A non-empty run is ASCII that follows a whole byte: a char boundary.
                f.write_str(self.name.get(run..i).unwrap_or_default())?;
                write!(f, "%{b:02X}")?;
                run = i + 1;
            }
        }
        f.write_str(self.name.get(run..).unwrap_or_default())?;
        Ok(())
    }
}

impl Serialize for TagUrl<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `Status.Application`.
#[derive(Serialize)]
struct StatusApplication<'a> {
    name: &'a str,
    website: Option<&'a str>,
}

/// `Status.Mention`.
#[derive(Serialize)]
struct Mention<'a> {
    id: IdStr,
    username: &'a str,
    url: Concat<'a>,
    acct: &'a str,
}

/// `Status.Tag`.
#[derive(Serialize)]
struct StatusTag<'a> {
    name: &'a str,
    url: TagUrl<'a>,
}

/// `QuoteApproval`: who may quote the status, and whether the viewer may.
#[derive(Serialize)]
struct QuoteApproval {
    automatic: &'static [&'static str],
    manual: [(); 0],
    current_user: &'static str,
}

/// `Quote` (a status's own quote) or `ShallowQuote` (the quote of a quoted status).
#[derive(Serialize)]
#[serde(untagged)]
enum Quote<'a> {
    Full {
        state: &'static str,
        quoted_status: Option<Box<Status<'a>>>,
    },
    Shallow {
        state: &'static str,
        quoted_status_id: Option<IdStr>,
    },
}

/// The `Status` entity.
#[derive(Serialize)]
pub struct Status<'a> {
    id: IdStr,
    created_at: Time,
    in_reply_to_id: Option<IdStr>,
    in_reply_to_account_id: Option<IdStr>,
    sensitive: bool,
    spoiler_text: &'a str,
    visibility: &'static str,
    language: Option<&'a str>,
    uri: StatusLink<'a>,
    url: StatusLink<'a>,
    replies_count: i64,
    reblogs_count: i64,
    favourites_count: i64,
    quotes_count: i64,
    edited_at: Option<Time>,
    // The viewer's flags: absent for anonymous viewers.
    #[serde(skip_serializing_if = "Option::is_none")]
    favourited: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reblogged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    muted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bookmarked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned: Option<bool>,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    filtered: Option<[(); 0]>,
    reblog: Option<Box<Status<'a>>>,
    application: Option<StatusApplication<'a>>,
    account: Account<'a>,
    media_attachments: Vec<MediaAttachment<'a>>,
    mentions: Vec<Mention<'a>>,
    tags: Vec<StatusTag<'a>>,
    emojis: [(); 0],
    quote: Option<Quote<'a>>,
    /// Always null (no link previews yet).
    card: (),
    /// Always null (no polls yet).
    poll: (),
    quote_approval: QuoteApproval,
    /// The source text: only in the response to a deletion.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip)]
    source: &'a str,
}

impl<'a> Status<'a> {
    /// Adds `text` (the source, as typed): Mastodon sends it only in the response to
    /// `DELETE /api/v1/statuses/:id`, for "delete and redraft".
    pub fn with_source(mut self) -> Self {
        self.text = Some(self.source);
        self
    }
}

/// How deep a status is nested in the one rendered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    /// A status of the page: may be a reblog, its quote is a full `Quote`.
    Top,
    /// The original inside a reblog: not a reblog itself, full `Quote`.
    Reblogged,
    /// A quoted status: its own quote is a `ShallowQuote`.
    Quoted,
}

/// The `Status` entity of `ctx.page.statuses[id]`; `None` when the status, its author or
/// (for a reblog) the original is missing, so callers can `filter_map`.
///
/// A reblog renders as Mastodon does: its own id, account and dates with empty content,
/// and the original (with its counters and the viewer's flags for it) in `reblog`. The
/// viewer's flags come from `page.viewer`; a page without any (an anonymous viewer)
/// renders without `favourited`, `reblogged`, `muted`, `bookmarked`, `pinned`, `filtered`.
/// `pinned` appears only on a status the viewer pinned (the page does not say who the
/// viewer is; Mastodon also sends `pinned: false` on the viewer's own unpinned ones).
pub fn status<'a>(ctx: &Ctx<'a>, id: i64) -> Option<Status<'a>> {
    render(ctx, id, Nesting::Top)
}

/// Every entry of `ctx.page.ids`, in order, leaving out those [`status`] cannot render.
pub fn statuses<'a>(ctx: &Ctx<'a>) -> Vec<Status<'a>> {
    ctx.page
        .ids
        .iter()
        .filter_map(|&id| status(ctx, id))
        .collect()
}

fn render<'a>(ctx: &Ctx<'a>, id: i64, nesting: Nesting) -> Option<Status<'a>> {
    let s = ctx.page.statuses.get(&id)?;
    let author = ctx.accounts.get(&s.account_id)?;
    let base = ctx.base_url;
    let reblog = match s.reblog_of_id {
        None => None,
        Some(original) if nesting == Nesting::Top => {
            Some(Box::new(render(ctx, original, Nesting::Reblogged)?))
        }
        // Reblogs of reblogs (and quoted reblogs) do not exist.
        Some(_) => return None,
    };
    let signed_in = !ctx.page.viewer.is_empty();
    let flags = ctx.page.viewer.get(&id).copied().unwrap_or_default();
    let flag = |f: bool| signed_in.then_some(f);
    let visibility = s.visibility();
    let link = |kind| StatusLink {
        base,
        username: &author.username,
        id,
        kind,
    };
    let (uri, url) = if reblog.is_some() {
        (link(LinkKind::Activity), link(LinkKind::Activity))
    } else {
        (link(LinkKind::Uri), link(LinkKind::Url))
    };
    let quotable = reblog.is_none()
        && matches!(
            visibility,
            tl::Visibility::Public | tl::Visibility::Unlisted | tl::Visibility::Unspecified
        );
    Some(Status {
        id: IdStr(id),
        created_at: Time(s.created_at_ms),
        in_reply_to_id: s.in_reply_to_id.map(IdStr),
        in_reply_to_account_id: s.in_reply_to_account_id.map(IdStr),
        sensitive: s.sensitive,
        spoiler_text: &s.spoiler_text,
        visibility: visibility_name(visibility),
        language: Some(s.language.as_str()).filter(|l| !l.is_empty()),
        uri,
        url,
        replies_count: s.replies_count,
        reblogs_count: s.reblogs_count,
        favourites_count: s.favourites_count,
        quotes_count: 0,
        edited_at: s.edited_at_ms.map(Time),
        favourited: flag(flags.favourited),
        reblogged: flag(flags.reblogged),
        muted: flag(flags.muted),
        bookmarked: flag(flags.bookmarked),
        pinned: (signed_in && flags.pinned && reblog.is_none()).then_some(true),
        content: &s.content,
        filtered: signed_in.then_some([]),
        reblog,
        application: (!s.application.is_empty()).then(|| StatusApplication {
            name: &s.application,
            website: None,
        }),
        account: Account::new(author, base),
        media_attachments: ctx.media.render(&s.media_ids),
        mentions: s
            .mention_ids
            .iter()
            .filter_map(|id| ctx.accounts.get(id))
            .map(|a| Mention {
                id: IdStr(a.id),
                username: &a.username,
                url: Concat(base, "/@", &a.username),
                acct: &a.username,
            })
            .collect(),
        tags: s
            .tags
            .iter()
            .map(|name| StatusTag {
                name,
                url: TagUrl { base, name },
            })
            .collect(),
        emojis: [],
        quote: s.quote_of_id.map(|q| quote(ctx, q, nesting)),
        card: (),
        poll: (),
        quote_approval: QuoteApproval {
            automatic: if quotable { &["public"] } else { &[] },
            manual: [],
            current_user: if quotable && signed_in {
                "automatic"
            } else {
                "denied"
            },
        },
        text: None,
        source: &s.text,
    })
}

/// The quote of a status at `nesting`, quoting `quoted`.
fn quote<'a>(ctx: &Ctx<'a>, quoted: i64, nesting: Nesting) -> Quote<'a> {
    let hidden = ctx.page.hidden_quotes.contains(&quoted);
    if nesting == Nesting::Quoted {
        // The page carries bodies one quote deep: a missing body here says nothing.
        return Quote::Shallow {
            state: if hidden { "unauthorized" } else { "accepted" },
            quoted_status_id: (!hidden).then_some(IdStr(quoted)),
        };
    }
    if hidden {
        return Quote::Full {
            state: "unauthorized",
            quoted_status: None,
        };
    }
    match render(ctx, quoted, Nesting::Quoted) {
        Some(s) => Quote::Full {
            state: "accepted",
            quoted_status: Some(Box::new(s)),
        },
        None => Quote::Full {
            state: "deleted",
            quoted_status: None,
        },
    }
}

fn visibility_name(v: tl::Visibility) -> &'static str {
    match v {
        tl::Visibility::Public | tl::Visibility::Unspecified => "public",
        tl::Visibility::Unlisted => "unlisted",
        tl::Visibility::Private => "private",
        tl::Visibility::Direct => "direct",
    }
}

/// The `Context` entity.
#[derive(Serialize)]
pub struct Context<'a> {
    ancestors: Vec<Status<'a>>,
    descendants: Vec<Status<'a>>,
}

/// The `Context` entity of a status: its ancestors and descendants, in the service's order.
pub fn context<'a>(
    resp: &'a tl::ContextResponse,
    accounts: &'a HashMap<i64, pb::Account>,
    media: &'a MediaRefs,
    base_url: &'a str,
) -> Context<'a> {
    let Some(page) = resp.statuses.as_ref() else {
        return Context {
            ancestors: Vec::new(),
            descendants: Vec::new(),
        };
    };
    let ctx = Ctx {
        page,
        accounts,
        media,
        base_url,
    };
    let pick = |ids: &[i64]| ids.iter().filter_map(|&id| status(&ctx, id)).collect();
    Context {
        ancestors: pick(&resp.ancestors),
        descendants: pick(&resp.descendants),
    }
}

/// The `StatusEdit` entity.
#[derive(Serialize)]
pub struct StatusEdit<'a> {
    content: &'a str,
    spoiler_text: &'a str,
    sensitive: bool,
    created_at: Time,
    account: Account<'a>,
    media_attachments: Vec<MediaAttachment<'a>>,
    emojis: [(); 0],
}

/// The `StatusEdit` entities of `GET /api/v1/statuses/:id/history` (oldest first);
/// `account` is the status's author.
pub fn history<'a>(
    resp: &'a tl::HistoryResponse,
    account: &'a pb::Account,
    media: &'a MediaRefs,
    base_url: &'a str,
) -> Vec<StatusEdit<'a>> {
    resp.versions
        .iter()
        .map(|v| StatusEdit {
            content: &v.content,
            spoiler_text: &v.spoiler_text,
            sensitive: v.sensitive,
            created_at: Time(v.created_at_ms),
            account: Account::new(account, base_url),
            media_attachments: media.render(&v.media_ids),
            emojis: [],
        })
        .collect()
}

/// One day of `Tag.history`: Mastodon sends the three numbers as strings.
#[derive(Serialize)]
struct TagHistory {
    day: IdStr,
    uses: IdStr,
    accounts: IdStr,
}

/// The `Tag` entity.
#[derive(Serialize)]
pub struct Tag<'a> {
    id: IdStr,
    name: &'a str,
    url: TagUrl<'a>,
    history: Vec<TagHistory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    following: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    featuring: Option<bool>,
}

/// The `Tag` entity of `t`; `following` (and `featuring`) only for a signed-in viewer.
pub fn tag<'a>(t: &'a tl::Tag, base_url: &'a str, signed_in: bool) -> Tag<'a> {
    Tag {
        id: IdStr(t.id),
        name: &t.name,
        url: TagUrl {
            base: base_url,
            name: &t.name,
        },
        history: t
            .history
            .iter()
            .map(|d| TagHistory {
                day: IdStr(d.day),
                uses: IdStr(d.uses),
                accounts: IdStr(d.accounts),
            })
            .collect(),
        following: signed_in.then_some(t.following),
        // Featured hashtags do not exist yet.
        featuring: signed_in.then_some(false),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mastodon::iso_time;
    use serde_json::{Value, json};

    const BASE: &str = "https://rookery.test";
    const ALICE: i64 = 117_657_528_981_454_860;
    const BOB: i64 = 2;
    const CAROL: i64 = 3;
    const ORIGINAL: i64 = 117_657_528_981_454_900;
    const REBLOG: i64 = 1001;
    const QUOTING: i64 = 1002;
    const QUOTING_DELETED: i64 = 1003;
    const QUOTING_HIDDEN: i64 = 1004;
    const HIDDEN: i64 = 1005;
    const QUOTED_QUOTE: i64 = 1006;
    const NOWHERE: i64 = 1007;

    fn account(id: i64, username: &str) -> pb::Account {
        pb::Account {
            id,
            username: username.into(),
            display_name: format!("{username} the tester"),
            note_html: "<p>Posting about birds and the occasional bug in my code.</p>".into(),
            created_at_ms: 1_706_704_496_789,
            last_status_at_ms: Some(1_706_704_496_789),
            statuses_count: 1234,
            followers_count: 567,
            following_count: 89,
            ..Default::default()
        }
    }

    fn accounts() -> HashMap<i64, pb::Account> {
        [
            account(ALICE, "alice"),
            account(BOB, "bob"),
            account(CAROL, "carol"),
        ]
        .into_iter()
        .map(|a| (a.id, a))
        .collect()
    }

    fn original() -> tl::Status {
        tl::Status {
            id: ORIGINAL,
            account_id: ALICE,
            content: "<p>Hello <span class=\"h-card\"><a href=\"https://rookery.test/@bob\" \
                      class=\"u-url mention\">@<span>bob</span></a></span>, look at this \
                      <a href=\"https://rookery.test/tags/rust\" class=\"mention hashtag\" \
                      rel=\"tag\">#<span>rust</span></a> thing I wrote today!</p>"
                .into(),
            text: "Hello @bob, look at this #rust thing I wrote today!".into(),
            visibility: tl::Visibility::Public.into(),
            language: "en".into(),
            in_reply_to_id: Some(900),
            in_reply_to_account_id: Some(CAROL),
            mention_ids: vec![BOB, 999],
            tags: vec!["rust".into()],
            replies_count: 3,
            reblogs_count: 5,
            favourites_count: 7,
            created_at_ms: 1_706_704_496_789,
            edited_at_ms: Some(1_706_704_500_000),
            application: "Rookery Web".into(),
            ..Default::default()
        }
    }

    fn by(id: i64, account_id: i64) -> tl::Status {
        tl::Status {
            id,
            account_id,
            content: "<p>hm</p>".into(),
            visibility: tl::Visibility::Unlisted.into(),
            created_at_ms: 1_706_704_600_000,
            ..Default::default()
        }
    }

    fn page() -> tl::StatusPage {
        let reblog = tl::Status {
            content: String::new(),
            reblog_of_id: Some(ORIGINAL),
            visibility: tl::Visibility::Public.into(),
            ..by(REBLOG, BOB)
        };
        let quoting = |id, of| tl::Status {
            quote_of_id: Some(of),
            ..by(id, CAROL)
        };
        let statuses = [
            original(),
            reblog,
            quoting(QUOTING, ORIGINAL),
            quoting(QUOTING_DELETED, NOWHERE),
            quoting(QUOTING_HIDDEN, HIDDEN),
            quoting(QUOTED_QUOTE, QUOTING),
        ];
        let viewer = [
            (
                ORIGINAL,
                tl::ViewerState {
                    favourited: true,
                    reblogged: true,
                    ..Default::default()
                },
            ),
            (REBLOG, tl::ViewerState::default()),
            (
                QUOTING,
                tl::ViewerState {
                    bookmarked: true,
                    pinned: true,
                    ..Default::default()
                },
            ),
        ];
        tl::StatusPage {
            ids: vec![REBLOG, 404, QUOTING, ORIGINAL],
            statuses: statuses.into_iter().map(|s| (s.id, s)).collect(),
            viewer: viewer.into_iter().collect(),
            hidden_quotes: vec![HIDDEN],
            ..Default::default()
        }
    }

    fn render(page: &tl::StatusPage, id: i64) -> Value {
        let accounts = accounts();
        let ctx = Ctx {
            page,
            accounts: &accounts,
            media: &MediaRefs::default(),
            base_url: BASE,
        };
        serde_json::to_value(status(&ctx, id).unwrap()).unwrap()
    }

    #[test]
    fn status_fields_render_like_mastodon() {
        let json = render(&page(), ORIGINAL);
        assert_eq!(json["id"], "117657528981454900");
        assert_eq!(
            json["uri"],
            "https://rookery.test/users/alice/statuses/117657528981454900"
        );
        assert_eq!(
            json["url"],
            "https://rookery.test/@alice/117657528981454900"
        );
        assert_eq!(json["created_at"], "2024-01-31T12:34:56.789Z");
        assert_eq!(json["created_at"], iso_time(1_706_704_496_789).as_str());
        assert_eq!(json["edited_at"], "2024-01-31T12:35:00.000Z");
        assert_eq!(json["account"]["id"], "117657528981454860");
        assert_eq!(json["account"]["acct"], "alice");
        assert_eq!(json["visibility"], "public");
        assert_eq!(json["language"], "en");
        assert_eq!(json["in_reply_to_id"], "900");
        assert_eq!(json["in_reply_to_account_id"], "3");
        assert_eq!(
            json["application"],
            json!({"name": "Rookery Web", "website": null})
        );
        // The unknown mention (999) is left out.
        assert_eq!(
            json["mentions"],
            json!([{"id": "2", "username": "bob", "url": "https://rookery.test/@bob", "acct": "bob"}])
        );
        assert_eq!(
            json["tags"],
            json!([{"name": "rust", "url": "https://rookery.test/tags/rust"}])
        );
        for empty in ["media_attachments", "emojis", "filtered"] {
            assert_eq!(json[empty], json!([]), "{empty}");
        }
        for null in ["reblog", "poll", "card", "quote"] {
            assert_eq!(json.get(null), Some(&Value::Null), "{null}");
        }
        assert_eq!(
            (json["favourited"].clone(), json["reblogged"].clone()),
            (json!(true), json!(true))
        );
        assert_eq!(json["muted"], false);
        assert_eq!(json["bookmarked"], false);
        assert!(json.get("pinned").is_none());
        assert_eq!(
            (json["replies_count"].clone(), json["reblogs_count"].clone()),
            (json!(3), json!(5))
        );
        assert_eq!(json["favourites_count"], 7);
        assert_eq!(json["quotes_count"], 0);
        assert_eq!(
            json["quote_approval"],
            json!({"automatic": ["public"], "manual": [], "current_user": "automatic"})
        );
        assert!(json.get("text").is_none());
        assert!(json["content"].as_str().unwrap().starts_with("<p>Hello"));
    }

    #[test]
    fn reblog_nests_the_original() {
        let json = render(&page(), REBLOG);
        assert_eq!(json["id"], "1001");
        assert_eq!(json["account"]["username"], "bob");
        assert_eq!(json["content"], "");
        assert_eq!(json["reblogs_count"], 0);
        assert_eq!(json["favourited"], false);
        assert_eq!(
            json["uri"],
            "https://rookery.test/users/bob/statuses/1001/activity"
        );
        assert_eq!(json["quote_approval"]["current_user"], "denied");
        let original = &json["reblog"];
        assert_eq!(original["id"], "117657528981454900");
        assert_eq!(original["account"]["username"], "alice");
        assert_eq!(original["reblogs_count"], 5);
        assert_eq!(original["favourites_count"], 7);
        assert_eq!(original["favourited"], true);
        assert_eq!(original["reblog"], Value::Null);
        // A reblog without its original is not rendered.
        let mut page = page();
        page.statuses.remove(&ORIGINAL);
        let accounts = accounts();
        let ctx = Ctx {
            page: &page,
            accounts: &accounts,
            media: &MediaRefs::default(),
            base_url: BASE,
        };
        assert!(status(&ctx, REBLOG).is_none());
    }

    #[test]
    fn anonymous_viewers_get_no_flags() {
        let mut page = page();
        page.viewer.clear();
        let json = render(&page, QUOTING);
        for absent in [
            "favourited",
            "reblogged",
            "muted",
            "bookmarked",
            "pinned",
            "filtered",
        ] {
            assert!(json.get(absent).is_none(), "{absent}");
        }
        assert_eq!(json["quote"]["quoted_status"].get("favourited"), None);
        assert_eq!(json["quote_approval"]["current_user"], "denied");
        // Signed in: flags even for statuses without an entry.
        let json = render(&self::page(), QUOTED_QUOTE);
        assert_eq!(json["favourited"], false);
    }

    #[test]
    fn quotes_render_their_state() {
        let page = page();
        let json = render(&page, QUOTING);
        assert_eq!(json["visibility"], "unlisted");
        assert_eq!(json["language"], Value::Null);
        assert_eq!(json["application"], Value::Null);
        assert_eq!(json["in_reply_to_id"], Value::Null);
        assert_eq!(json["edited_at"], Value::Null);
        assert_eq!(json["bookmarked"], true);
        assert_eq!(json["pinned"], true);
        assert_eq!(json["quote"]["state"], "accepted");
        let quoted = &json["quote"]["quoted_status"];
        assert_eq!(quoted["id"], "117657528981454900");
        assert_eq!(quoted["favourited"], true);
        assert_eq!(
            render(&page, QUOTING_DELETED)["quote"],
            json!({"state": "deleted", "quoted_status": null})
        );
        assert_eq!(
            render(&page, QUOTING_HIDDEN)["quote"],
            json!({"state": "unauthorized", "quoted_status": null})
        );
        // The quote of a quoted status is shallow.
        let json = render(&page, QUOTED_QUOTE);
        assert_eq!(json["quote"]["quoted_status"]["id"], "1002");
        assert_eq!(
            json["quote"]["quoted_status"]["quote"],
            json!({"state": "accepted", "quoted_status_id": "117657528981454900"})
        );
        // A quoted status whose author is missing counts as deleted.
        let mut accounts = accounts();
        accounts.remove(&ALICE);
        let ctx = Ctx {
            page: &page,
            accounts: &accounts,
            media: &MediaRefs::default(),
            base_url: BASE,
        };
        let json = serde_json::to_value(status(&ctx, QUOTING).unwrap()).unwrap();
        assert_eq!(json["quote"]["state"], "deleted");
    }

    #[test]
    fn pages_skip_what_cannot_render() {
        let page = page();
        let accounts = accounts();
        let ctx = Ctx {
            page: &page,
            accounts: &accounts,
            media: &MediaRefs::default(),
            base_url: BASE,
        };
        let json = serde_json::to_value(statuses(&ctx)).unwrap();
        let ids: Vec<_> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["1001", "1002", "117657528981454900"]);
    }

    #[test]
    fn source_only_when_asked() {
        let page = page();
        let accounts = accounts();
        let ctx = Ctx {
            page: &page,
            accounts: &accounts,
            media: &MediaRefs::default(),
            base_url: BASE,
        };
        let deleted = status(&ctx, ORIGINAL).unwrap().with_source();
        let json = serde_json::to_value(deleted).unwrap();
        assert_eq!(
            json["text"],
            "Hello @bob, look at this #rust thing I wrote today!"
        );
        assert!(json["content"].is_string());
    }

    #[test]
    fn context_and_history() {
        let resp = tl::ContextResponse {
            statuses: Some(page()),
            ancestors: vec![ORIGINAL, 404],
            descendants: vec![QUOTING],
        };
        let accounts = accounts();
        let json =
            serde_json::to_value(context(&resp, &accounts, &MediaRefs::default(), BASE)).unwrap();
        assert_eq!(json["ancestors"][0]["id"], "117657528981454900");
        assert_eq!(json["ancestors"].as_array().unwrap().len(), 1);
        assert_eq!(json["descendants"][0]["id"], "1002");
        let empty = tl::ContextResponse::default();
        let json =
            serde_json::to_value(context(&empty, &accounts, &MediaRefs::default(), BASE)).unwrap();
        assert_eq!(json, json!({"ancestors": [], "descendants": []}));

        let resp = tl::HistoryResponse {
            account_id: ALICE,
            versions: vec![
                tl::StatusEdit {
                    content: "<p>v1</p>".into(),
                    created_at_ms: 1_706_704_496_789,
                    ..Default::default()
                },
                tl::StatusEdit {
                    content: "<p>v2</p>".into(),
                    spoiler_text: "cw".into(),
                    sensitive: true,
                    created_at_ms: 1_706_704_500_000,
                    ..Default::default()
                },
            ],
        };
        let json = serde_json::to_value(history(
            &resp,
            &accounts[&ALICE],
            &MediaRefs::default(),
            BASE,
        ))
        .unwrap();
        assert_eq!(json[0]["content"], "<p>v1</p>");
        assert_eq!(json[1]["created_at"], "2024-01-31T12:35:00.000Z");
        assert_eq!(json[1]["spoiler_text"], "cw");
        assert_eq!(json[1]["sensitive"], true);
        assert_eq!(json[1]["account"]["id"], "117657528981454860");
        assert_eq!(json[1]["media_attachments"], json!([]));
        assert_eq!(json[1]["emojis"], json!([]));
    }

    #[test]
    fn tags_render_history_as_strings() {
        let t = tl::Tag {
            id: 42,
            name: "rust".into(),
            history: vec![tl::TagDay {
                day: 1_706_659_200,
                uses: 12,
                accounts: 3,
            }],
            following: true,
        };
        let json = serde_json::to_value(tag(&t, BASE, true)).unwrap();
        assert_eq!(
            json,
            json!({
                "id": "42",
                "name": "rust",
                "url": "https://rookery.test/tags/rust",
                "history": [{"day": "1706659200", "uses": "12", "accounts": "3"}],
                "following": true,
                "featuring": false,
            })
        );
        let json = serde_json::to_value(tag(&t, BASE, false)).unwrap();
        assert!(json.get("following").is_none());
        let t = tl::Tag {
            name: "日本語_ok".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(tag(&t, BASE, false)).unwrap()["url"],
            "https://rookery.test/tags/%E6%97%A5%E6%9C%AC%E8%AA%9E_ok"
        );
    }

    #[test]
    fn size_hint_covers_a_typical_status() {
        let mut page = page();
        page.statuses.retain(|&id, _| id == ORIGINAL);
        let accounts = accounts();
        let ctx = Ctx {
            page: &page,
            accounts: &accounts,
            media: &MediaRefs::default(),
            base_url: BASE,
        };
        let bytes = serde_json::to_vec(&status(&ctx, ORIGINAL).unwrap()).unwrap();
        assert!(
            bytes.len() < STATUS_JSON_BYTES,
            "{} >= {STATUS_JSON_BYTES}",
            bytes.len()
        );
        assert!(bytes.len() > STATUS_JSON_BYTES / 2, "{}", bytes.len());
    }
}
