//! Mastodon API entities, serialised exactly as Mastodon clients expect them.

pub mod instance;
pub mod media;
pub mod status;

use chrono::{DateTime, Utc};
use rookery_proto::users::v1 as pb;
use serde::Serialize;

/// Where avatars and headers live until the media service exists.
const MISSING_AVATAR: &str = "/avatars/original/missing.png";
const MISSING_HEADER: &str = "/headers/original/missing.png";

// Entities are rendered by the thousand per second (a page of 40 accounts per list
// request), so the string fields built from parts are written straight into the JSON
// output (`collect_str`) instead of being allocated as `String`s first.

/// A string written as the concatenation of three parts.
#[derive(Clone, Copy)]
struct Concat<'a>(&'a str, &'static str, &'a str);

impl Serialize for Concat<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}{}{}", self.0, self.1, self.2))
    }
}

/// An id, as the string Mastodon sends (JavaScript loses precision past 2^53).
#[derive(Clone, Copy)]
pub struct IdStr(pub i64);

impl Serialize for IdStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A UTC date from Unix milliseconds: as `2024-01-31`, or with `midnight` as Mastodon
/// reports account creation (`2024-01-31T00:00:00.000Z`).
#[derive(Clone, Copy)]
struct Day {
    ms: i64,
    midnight: bool,
}

impl Serialize for Day {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let date = DateTime::<Utc>::from_timestamp_millis(self.ms)
            .unwrap_or_default()
            .date_naive();
        let time = if self.midnight { "T00:00:00.000Z" } else { "" };
        s.collect_str(&format_args!("{date}{time}"))
    }
}

/// A JSON response written into a buffer sized for it up front (`axum::Json` starts
/// small and grows by copying: a page of 40 accounts is about 35 KB).
pub fn json_response<T: Serialize>(value: &T, size_hint: usize) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut body = Vec::with_capacity(size_hint);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => (
            [(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "response serialisation failed");
            http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Bytes of one serialised `Account`, for [`json_response`] size hints.
pub const ACCOUNT_JSON_BYTES: usize = 1024;

/// A timestamp as Mastodon writes it (`2024-01-31T12:34:56.789Z`).
pub fn iso_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A profile field.
#[derive(Serialize)]
pub struct Field<'a> {
    name: &'a str,
    value: &'a str,
    verified_at: Option<String>,
}

/// The `Account` entity.
#[derive(Serialize)]
pub struct Account<'a> {
    id: IdStr,
    username: &'a str,
    acct: &'a str,
    url: Concat<'a>,
    uri: Concat<'a>,
    display_name: &'a str,
    note: &'a str,
    avatar: Concat<'a>,
    avatar_static: Concat<'a>,
    avatar_description: &'static str,
    header: Concat<'a>,
    header_static: Concat<'a>,
    header_description: &'static str,
    locked: bool,
    fields: Vec<Field<'a>>,
    emojis: [(); 0],
    bot: bool,
    group: bool,
    discoverable: bool,
    indexable: bool,
    hide_collections: bool,
    noindex: bool,
    memorial: bool,
    roles: [(); 0],
    show_media: bool,
    show_media_replies: bool,
    show_featured: bool,
    created_at: Day,
    last_status_at: Option<Day>,
    statuses_count: i64,
    followers_count: i64,
    following_count: i64,
    /// Only in a `CredentialAccount` (kept in this struct: `serde(flatten)` is slow).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Source<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    /// Only in the mutes list (Mastodon's `MutedAccount`): `Some(None)` is "forever".
    #[serde(skip_serializing_if = "Option::is_none")]
    mute_expires_at: Option<Option<String>>,
}

impl<'a> Account<'a> {
    /// The entity of `a`, with URLs under `base_url`.
    pub fn new(a: &'a pb::Account, base_url: &'a str) -> Self {
        let avatar = Concat(base_url, MISSING_AVATAR, "");
        let header = Concat(base_url, MISSING_HEADER, "");
        Self {
            id: IdStr(a.id),
            username: &a.username,
            acct: &a.username,
            url: Concat(base_url, "/@", &a.username),
            uri: Concat(base_url, "/users/", &a.username),
            display_name: &a.display_name,
            note: &a.note_html,
            avatar_static: avatar,
            avatar,
            avatar_description: "",
            header_static: header,
            header,
            header_description: "",
            locked: a.locked,
            fields: account_fields(a),
            emojis: [],
            bot: a.bot,
            group: false,
            discoverable: a.discoverable,
            indexable: a.indexable,
            hide_collections: a.hide_collections,
            noindex: !a.indexable,
            memorial: false,
            roles: [],
            show_media: true,
            show_media_replies: true,
            show_featured: true,
            created_at: Day {
                ms: a.created_at_ms,
                midnight: true,
            },
            last_status_at: a.last_status_at_ms.map(|ms| Day {
                ms,
                midnight: false,
            }),
            statuses_count: a.statuses_count,
            followers_count: a.followers_count,
            following_count: a.following_count,
            source: None,
            role: None,
            mute_expires_at: None,
        }
    }

    /// The `MutedAccount` entity of an entry of the mutes list.
    pub fn muted(a: &'a pb::Account, base_url: &'a str, expires_at_ms: Option<i64>) -> Self {
        let mut account = Self::new(a, base_url);
        account.mute_expires_at = Some(expires_at_ms.map(iso_time));
        account
    }
}

/// The `Relationship` entity.
#[derive(Serialize)]
pub struct Relationship<'a> {
    id: IdStr,
    following: bool,
    showing_reblogs: bool,
    notifying: bool,
    languages: Option<&'a [String]>,
    followed_by: bool,
    blocking: bool,
    blocked_by: bool,
    muting: bool,
    muting_notifications: bool,
    muting_expires_at: Option<String>,
    requested: bool,
    requested_by: bool,
    domain_blocking: bool,
    endorsed: bool,
    note: &'static str,
}

impl<'a> Relationship<'a> {
    /// The entity of `r`.
    pub fn new(r: &'a pb::Relationship) -> Self {
        Self {
            id: IdStr(r.id),
            following: r.following,
            showing_reblogs: r.showing_reblogs,
            notifying: r.notifying,
            // Mastodon: null when following in every language.
            languages: (!r.languages.is_empty()).then_some(r.languages.as_slice()),
            followed_by: r.followed_by,
            blocking: r.blocking,
            blocked_by: r.blocked_by,
            muting: r.muting,
            muting_notifications: r.muting_notifications,
            muting_expires_at: r.muting_expires_at_ms.map(iso_time),
            requested: r.requested,
            requested_by: r.requested_by,
            domain_blocking: false,
            endorsed: false,
            note: "",
        }
    }
}

/// `source` of a `CredentialAccount`.
#[derive(Serialize)]
struct Source<'a> {
    privacy: &'a str,
    sensitive: bool,
    language: Option<&'a str>,
    note: &'a str,
    fields: Vec<Field<'a>>,
    follow_requests_count: i64,
    hide_collections: bool,
    discoverable: bool,
    indexable: bool,
    attribution_domains: [(); 0],
    quote_policy: &'static str,
}

/// `role` of a `CredentialAccount` (no staff roles yet: Mastodon's everyone-role).
#[derive(Serialize)]
struct Role {
    id: &'static str,
    name: &'static str,
    permissions: &'static str,
    color: &'static str,
    highlighted: bool,
}

/// The `CredentialAccount` entity: the account plus its private settings.
#[derive(Serialize)]
#[serde(transparent)]
pub struct CredentialAccount<'a>(Account<'a>);

impl<'a> CredentialAccount<'a> {
    /// The entity of `a`, with URLs under `base_url`.
    pub fn new(a: &'a pb::Account, base_url: &'a str) -> Self {
        let mut account = Account::new(a, base_url);
        account.source = Some(Source {
            privacy: &a.default_privacy,
            sensitive: a.default_sensitive,
            language: Some(a.default_language.as_str()).filter(|l| !l.is_empty()),
            note: &a.note_source,
            fields: account_fields(a),
            follow_requests_count: a.follow_requests_count,
            hide_collections: a.hide_collections,
            discoverable: a.discoverable,
            indexable: a.indexable,
            attribution_domains: [],
            quote_policy: "public",
        });
        account.role = Some(Role {
            id: "-99",
            name: "",
            permissions: "0",
            color: "",
            highlighted: false,
        });
        Self(account)
    }
}

fn account_fields(a: &pb::Account) -> Vec<Field<'_>> {
    a.fields
        .iter()
        .map(|f| Field {
            name: &f.name,
            value: &f.value,
            verified_at: None,
        })
        .collect()
}

/// The `Application` entity (`client_secret` only right after creation).
#[derive(Serialize)]
pub struct Application<'a> {
    id: String,
    name: &'a str,
    website: Option<&'a str>,
    scopes: Vec<&'a str>,
    redirect_uri: String,
    redirect_uris: &'a [String],
    vapid_key: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret_expires_at: Option<i64>,
}

impl<'a> Application<'a> {
    /// The entity of `app`; credentials included when `with_credentials`.
    pub fn new(app: &'a pb::App, with_credentials: bool) -> Self {
        Self {
            id: app.id.to_string(),
            name: &app.name,
            website: Some(app.website.as_str()).filter(|w| !w.is_empty()),
            scopes: app.scopes.split(' ').filter(|s| !s.is_empty()).collect(),
            redirect_uri: app.redirect_uris.join("\n"),
            redirect_uris: &app.redirect_uris,
            vapid_key: "",
            client_id: with_credentials.then_some(app.client_id.as_str()),
            client_secret: (with_credentials && !app.client_secret.is_empty())
                .then_some(app.client_secret.as_str()),
            client_secret_expires_at: with_credentials.then_some(0),
        }
    }
}

/// The `Token` entity (OAuth token response).
#[derive(Serialize)]
pub struct Token<'a> {
    access_token: &'a str,
    token_type: &'static str,
    scope: &'a str,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

impl<'a> Token<'a> {
    /// The entity of an issued token.
    pub fn new(t: &'a pb::IssuedToken) -> Self {
        Self {
            access_token: &t.access_token,
            token_type: "Bearer",
            scope: &t.scopes,
            created_at: t.created_at_ms / 1000,
            refresh_token: Some(t.refresh_token.as_str()).filter(|r| !r.is_empty()),
        }
    }
}

/// Escapes text for an HTML context (element content or a quoted attribute).
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn account_strings_render_like_mastodon() {
        let a = pb::Account {
            id: 117_657_528_981_454_860,
            username: "alice".into(),
            display_name: "Al \"ice\"".into(),
            created_at_ms: 1_706_704_496_789, // 2024-01-31T12:34:56.789Z
            last_status_at_ms: Some(1_706_704_496_789),
            ..Default::default()
        };
        let json = serde_json::to_value(Account::new(&a, "https://x.test")).unwrap();
        assert_eq!(json["id"], "117657528981454860");
        assert_eq!(json["url"], "https://x.test/@alice");
        assert_eq!(json["uri"], "https://x.test/users/alice");
        assert_eq!(
            json["avatar"],
            "https://x.test/avatars/original/missing.png"
        );
        assert_eq!(
            json["header_static"],
            "https://x.test/headers/original/missing.png"
        );
        assert_eq!(json["display_name"], "Al \"ice\"");
        assert_eq!(json["created_at"], "2024-01-31T00:00:00.000Z");
        assert_eq!(json["last_status_at"], "2024-01-31");
        let r = pb::Relationship {
            id: 7,
            ..Default::default()
        };
        let json = serde_json::to_value(Relationship::new(&r)).unwrap();
        assert_eq!(
            (json["id"].clone(), json["languages"].clone()),
            ("7".into(), serde_json::Value::Null)
        );
    }
}
