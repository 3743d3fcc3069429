//! Server metadata documents: `GET /api/v1/instance` (Mastodon `V1::Instance`),
//! `GET /api/v2/instance` (Mastodon `Instance`), `GET /.well-known/nodeinfo` and
//! `GET /nodeinfo/2.0`.
//!
//! Clients fetch these before anything else and decide from them which features to use and
//! which limits to enforce in their compose screens. Several of them (Mastodon.py, Ivory,
//! masto.js' typed entities) decode the documents strictly, so every property of the entities
//! is present, optional ones included, with `null` only where Mastodon itself sends `null`.
//! The reference is the Mastodon 4.7 OpenAPI description (`V1Instance`, `Instance`, `Rule`,
//! `InstanceIcon`) plus what a stock Mastodon 4.5 server really returns (`configuration.vapid`
//! is not in the description but is read by clients that register for push).
//!
//! The builders are pure functions of [`InstanceInfo`]: no I/O, so the handlers can cache the
//! result and the tests can check the documents without a server.

use super::escape_html;
use serde_json::{Value, json};

/// The Mastodon release whose client API Rookery claims to speak.
///
/// 4.5 is the release that added quote posts (`quoted_status_id`, `quote_approval_policy`,
/// `GET /api/v1/statuses/:id/quotes`), which are in Rookery's scope; clients (Mastodon.py,
/// Phanpy, Elk, Ivory) only offer quoting to servers reporting 4.5 or later. Claiming 4.5
/// also lets them use what they gate on older releases (grouped notifications from 4.3,
/// filters v2 from 4.0), so those endpoints must exist too.
const MASTODON_COMPAT_VERSION: &str = "4.5.0";

/// `api_versions.mastodon` as Mastodon 4.5 reports it: the OpenAPI version histories tag
/// 4.5.0 additions with "`mastodon` API version 7" (4.3 was 2, 4.4 went up to 6, 4.6 starts at 8).
const MASTODON_API_VERSION: u32 = 7;

/// The `rel` naming a NodeInfo 2.0 document in the discovery document.
const NODEINFO_2_0_REL: &str = "http://nodeinfo.diaspora.software/ns/schema/2.0";

/// The canonical software name in NodeInfo (the schema wants `^[a-z0-9-]+$`).
const NODEINFO_SOFTWARE_NAME: &str = "rookery";

/// The federation protocols announced in NodeInfo.
///
/// Empty on purpose: Rookery does not speak ActivityPub (federation is out of scope), and
/// crawlers such as FediDB or fediverse.observer take `"activitypub"` as an invitation to
/// WebFinger and deliver to the server, which would only produce errors. The NodeInfo 2.0
/// JSON schema says `minItems: 1` for this array, so a strict validator flags the empty list;
/// that is the honest trade-off until Rookery federates.
const NODEINFO_PROTOCOLS: &[&str] = &[];

/// Primary languages of the server and its staff.
const LANGUAGES: &[&str] = &["en"];

/// Featured hashtags per account (Mastodon `FeaturedTag::LIMIT`).
const MAX_FEATURED_TAGS: u32 = 10;
/// Pinned statuses per account (Mastodon `StatusPinValidator` limit).
const MAX_PINNED_STATUSES: u32 = 5;
/// Characters in a display name (Mastodon `Account::DISPLAY_NAME_LENGTH_LIMIT`).
const MAX_DISPLAY_NAME_LENGTH: u32 = 30;
/// Characters in a profile bio (Mastodon `Account::NOTE_LENGTH_LIMIT`).
const MAX_NOTE_LENGTH: u32 = 500;
/// Custom profile fields per account (Mastodon `Account::DEFAULT_FIELDS_SIZE`).
const MAX_PROFILE_FIELDS: u32 = 4;
/// Characters in a profile field name and in a profile field value.
const PROFILE_FIELD_LIMIT: u32 = 255;
/// Characters in the alt text of an avatar, a header or a media attachment
/// (Mastodon `MediaAttachment::MAX_DESCRIPTION_LENGTH`).
const DESCRIPTION_LIMIT: u32 = 1_500;

/// Characters every URL counts for in a status, whatever its real length.
const CHARACTERS_RESERVED_PER_URL: u32 = 23;

/// Largest accepted image upload, in bytes (16 MiB).
const IMAGE_SIZE_LIMIT: u64 = 16_777_216;
/// Largest accepted image, in pixels (7680 × 4320).
const IMAGE_MATRIX_LIMIT: u64 = 33_177_600;
/// Largest accepted video or audio upload, in bytes (99 MiB).
const VIDEO_SIZE_LIMIT: u64 = 103_809_024;
/// Highest accepted video frame rate.
const VIDEO_FRAME_RATE_LIMIT: u32 = 120;
/// Largest accepted video, in pixels (3840 × 2160).
const VIDEO_MATRIX_LIMIT: u64 = 8_294_400;

/// MIME types accepted by `POST /api/v2/media`, in Mastodon 4.5's order: images, then video,
/// then audio.
const SUPPORTED_MIME_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/heic",
    "image/heif",
    "image/webp",
    "image/avif",
    "video/webm",
    "video/mp4",
    "video/quicktime",
    "video/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wave",
    "audio/vnd.wave",
    "audio/ogg",
    "audio/vorbis",
    "audio/mpeg",
    "audio/mp3",
    "audio/webm",
    "audio/flac",
    "audio/aac",
    "audio/m4a",
    "audio/x-m4a",
    "audio/mp4",
    "audio/3gpp",
    "video/x-ms-asf",
];

/// Options per poll.
const POLL_MAX_OPTIONS: u32 = 4;
/// Characters per poll option.
const POLL_MAX_CHARACTERS_PER_OPTION: u32 = 50;
/// Shortest poll duration, in seconds (5 minutes).
const POLL_MIN_EXPIRATION: u32 = 300;
/// Longest poll duration, in seconds (one average month).
const POLL_MAX_EXPIRATION: u32 = 2_629_746;

/// Who may read the public feeds, per Mastodon 4.5's `timelines_access` vocabulary.
const FEED_ACCESS: &str = "public";

/// Facts about this server that the documents are built from.
pub struct InstanceInfo<'a> {
    /// Host name clients use, e.g. "rookery.example" or "127.0.0.1:8080".
    pub domain: &'a str,
    /// Public base URL without trailing slash, e.g. "https://rookery.example".
    pub base_url: &'a str,
    /// WebSocket streaming base URL, e.g. "wss://rookery.example".
    pub streaming_url: &'a str,
    /// Name of the server shown by clients, e.g. "Rookery".
    pub title: &'a str,
    /// Short plain-text description of the server.
    pub description: &'a str,
    /// Address people can write to about the server; may be empty.
    pub contact_email: &'a str,
    /// Whether anyone may sign up through `POST /api/v1/accounts`.
    pub registrations_open: bool,
    /// Software version of Rookery itself (CARGO_PKG_VERSION).
    pub software_version: &'a str,
    /// Characters allowed in a status.
    pub max_status_chars: u32,
    /// Media attachments allowed on a status.
    pub max_media_attachments: u32,
    /// Local accounts.
    pub user_count: i64,
    /// Local statuses.
    pub status_count: i64,
    /// Accounts active in the last 30 days.
    pub active_month: i64,
    /// Accounts active in the last 180 days.
    pub active_halfyear: i64,
    /// The contact account as a full Mastodon Account JSON value, when one is configured.
    pub contact_account: Option<Value>,
}

/// The Mastodon-compatible version string: clients parse the leading "4.x.y" to decide which API features they may use.
///
/// The rest follows the `"<mastodon> (compatible; <software> <version>)"` convention of
/// Pleroma, Akkoma and Mitra, which version parsers in clients already cut off at the first
/// space, e.g. `"4.5.0 (compatible; Rookery 0.1.0)"`.
pub fn mastodon_version(software_version: &str) -> String {
    format!("{MASTODON_COMPAT_VERSION} (compatible; Rookery {software_version})")
}

/// `GET /api/v1/instance`: the deprecated but still widely read `V1::Instance` entity.
pub fn v1(info: &InstanceInfo<'_>) -> Value {
    let base = trim_base(info.base_url);
    json!({
        "uri": info.domain,
        "title": info.title,
        "short_description": info.description,
        // The v1 `description` is HTML-permitted; ours is plain text, so escape it.
        "description": escape_html(info.description),
        "email": info.contact_email,
        "version": mastodon_version(info.software_version),
        "urls": { "streaming_api": info.streaming_url },
        "stats": {
            "user_count": count(info.user_count),
            "status_count": count(info.status_count),
            // Domains this server has seen besides itself: none, as it does not federate.
            "domain_count": 0,
        },
        "thumbnail": thumbnail_url(base),
        "languages": LANGUAGES,
        "registrations": info.registrations_open,
        "approval_required": false,
        "invites_enabled": false,
        "configuration": v1_configuration(info),
        "contact_account": contact_account(info),
        "rules": rules(),
    })
}

/// `GET /api/v2/instance`: the `Instance` entity.
pub fn v2(info: &InstanceInfo<'_>) -> Value {
    let base = trim_base(info.base_url);
    // Sub-documents are built apart to keep each `json!` well inside the macro recursion limit.
    let thumbnail_src = thumbnail_url(base);
    let thumbnail = json!({
        "url": thumbnail_src,
        "blurhash": null,
        "description": null,
        "versions": { "@1x": thumbnail_src, "@2x": thumbnail_src },
    });
    let registrations = json!({
        "enabled": info.registrations_open,
        "approval_required": false,
        // Mastodon sends the admin's closed-registrations message here, null when unset.
        "message": null,
        "url": null,
        "min_age": null,
        "reason_required": false,
    });
    let contact = json!({
        "email": info.contact_email,
        "account": contact_account(info),
    });
    json!({
        "domain": info.domain,
        "title": info.title,
        "version": mastodon_version(info.software_version),
        // AGPL: where to get the code running here; the gateway answers it (or redirects).
        "source_url": format!("{base}/source"),
        "description": info.description,
        "usage": { "users": { "active_month": count(info.active_month) } },
        "thumbnail": thumbnail,
        "icon": [{ "src": format!("{base}/static/icon.png"), "size": "512x512" }],
        "languages": LANGUAGES,
        "configuration": v2_configuration(info),
        "registrations": registrations,
        "api_versions": { "mastodon": MASTODON_API_VERSION },
        "contact": contact,
        "rules": rules(),
        // No annual report campaign is running.
        "wrapstodon": null,
    })
}

/// `/.well-known/nodeinfo` (links to /nodeinfo/2.0 under base_url).
pub fn nodeinfo_discovery(base_url: &str) -> Value {
    let base = trim_base(base_url);
    json!({
        "links": [{
            "rel": NODEINFO_2_0_REL,
            "href": format!("{base}/nodeinfo/2.0"),
        }],
    })
}

/// `/nodeinfo/2.0`: the NodeInfo 2.0 document.
///
/// `software` names Rookery itself (not Mastodon); `protocols` is empty because Rookery
/// does not federate (federation is out of scope); counts are clamped at zero as the schema
/// requires.
pub fn nodeinfo(info: &InstanceInfo<'_>) -> Value {
    json!({
        "version": "2.0",
        "software": {
            "name": NODEINFO_SOFTWARE_NAME,
            "version": info.software_version,
        },
        "protocols": NODEINFO_PROTOCOLS,
        "services": { "inbound": [], "outbound": [] },
        "usage": {
            "users": {
                "total": count(info.user_count),
                "activeMonth": count(info.active_month),
                "activeHalfyear": count(info.active_halfyear),
            },
            "localPosts": count(info.status_count),
        },
        "openRegistrations": info.registrations_open,
        "metadata": {
            "nodeName": info.title,
            "nodeDescription": info.description,
        },
    })
}

/// `configuration` of the v1 entity: the four groups Mastodon's v1 serializer sends.
fn v1_configuration(info: &InstanceInfo<'_>) -> Value {
    json!({
        "accounts": { "max_featured_tags": MAX_FEATURED_TAGS },
        "statuses": statuses_configuration(info),
        "media_attachments": {
            "supported_mime_types": SUPPORTED_MIME_TYPES,
            "image_size_limit": IMAGE_SIZE_LIMIT,
            "image_matrix_limit": IMAGE_MATRIX_LIMIT,
            "video_size_limit": VIDEO_SIZE_LIMIT,
            "video_frame_rate_limit": VIDEO_FRAME_RATE_LIMIT,
            "video_matrix_limit": VIDEO_MATRIX_LIMIT,
        },
        "polls": polls_configuration(),
    })
}

/// `configuration` of the v2 entity.
fn v2_configuration(info: &InstanceInfo<'_>) -> Value {
    json!({
        "urls": {
            "streaming": info.streaming_url,
            // Rookery serves no web pages (no about page, status page, policy or terms);
            // null tells clients to hide those links rather than open a 404.
            "status": null,
            "about": null,
            "privacy_policy": null,
            "terms_of_service": null,
        },
        // Web Push is not offered, so there is no VAPID key to hand out. Mastodon always
        // sends this object; an empty key keeps strict decoders happy.
        "vapid": { "public_key": "" },
        "accounts": accounts_configuration(),
        "statuses": statuses_configuration(info),
        "media_attachments": {
            "supported_mime_types": SUPPORTED_MIME_TYPES,
            "description_limit": DESCRIPTION_LIMIT,
            "image_size_limit": IMAGE_SIZE_LIMIT,
            "image_matrix_limit": IMAGE_MATRIX_LIMIT,
            "video_size_limit": VIDEO_SIZE_LIMIT,
            "video_frame_rate_limit": VIDEO_FRAME_RATE_LIMIT,
            "video_matrix_limit": VIDEO_MATRIX_LIMIT,
        },
        "polls": polls_configuration(),
        "translation": { "enabled": false },
        "timelines_access": timelines_access(),
        // Mastodon's allow-list federation mode; Rookery has no federation to limit, and
        // `true` would oblige us to report `usage.users.active_month` as zero.
        "limited_federation": false,
    })
}

/// `configuration.accounts` of the v2 entity.
fn accounts_configuration() -> Value {
    json!({
        "max_featured_tags": MAX_FEATURED_TAGS,
        "max_pinned_statuses": MAX_PINNED_STATUSES,
        "max_display_name_length": MAX_DISPLAY_NAME_LENGTH,
        "max_note_length": MAX_NOTE_LENGTH,
        "max_profile_fields": MAX_PROFILE_FIELDS,
        "profile_field_name_limit": PROFILE_FIELD_LIMIT,
        "profile_field_value_limit": PROFILE_FIELD_LIMIT,
        "max_avatar_description_length": DESCRIPTION_LIMIT,
        "max_header_description_length": DESCRIPTION_LIMIT,
    })
}

/// `configuration.statuses`, the same in v1 and v2.
fn statuses_configuration(info: &InstanceInfo<'_>) -> Value {
    json!({
        "max_characters": info.max_status_chars,
        "max_media_attachments": info.max_media_attachments,
        "characters_reserved_per_url": CHARACTERS_RESERVED_PER_URL,
    })
}

/// `configuration.polls`, the same in v1 and v2.
fn polls_configuration() -> Value {
    json!({
        "max_options": POLL_MAX_OPTIONS,
        "max_characters_per_option": POLL_MAX_CHARACTERS_PER_OPTION,
        "min_expiration": POLL_MIN_EXPIRATION,
        "max_expiration": POLL_MAX_EXPIRATION,
    })
}

/// `configuration.timelines_access`: every feed is readable without a token, as on a
/// default Mastodon server. "remote" applies to nothing here but is sent for completeness.
fn timelines_access() -> Value {
    let feed = json!({ "local": FEED_ACCESS, "remote": FEED_ACCESS });
    json!({
        "live_feeds": feed,
        "hashtag_feeds": feed,
        "trending_link_feeds": feed,
    })
}

/// The server rules (`Rule` entities); none are configured.
fn rules() -> Value {
    json!([])
}

/// The contact account, or `null` when none is configured.
fn contact_account(info: &InstanceInfo<'_>) -> Value {
    info.contact_account.clone().unwrap_or(Value::Null)
}

/// The banner image shown by clients next to the server name.
fn thumbnail_url(base: &str) -> String {
    format!("{base}/static/thumbnail.png")
}

/// The base URL without trailing slashes, so joined paths never hold `//`.
fn trim_base(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

/// A count as the documents report it: never negative.
fn count(value: i64) -> i64 {
    value.max(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The JSON type a schema property has.
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Str,
        Int,
        Bool,
        Obj,
        Arr,
    }

    use Kind::{Arr, Bool, Int, Obj, Str};

    /// A schema property: name, type, and whether the schema also allows `null`.
    type Prop = (&'static str, Kind, bool);

    /// Third column: the schema allows `null`.
    const NULL: bool = true;
    /// Third column: the schema does not allow `null`.
    const SET: bool = false;

    // Property lists copied from /work/shared/mastodon-api/openapi.json (Mastodon 4.7).
    // `*_REQUIRED` are the schemas' `required` lists; `*_OPTIONAL` are the remaining
    // properties, which Rookery sends as well because strict clients expect them.

    // V1Instance
    const V1_REQUIRED: &[Prop] = &[
        ("approval_required", Bool, SET),
        ("configuration", Obj, SET),
        ("description", Str, SET),
        ("email", Str, SET),
        ("invites_enabled", Bool, SET),
        ("languages", Arr, SET),
        ("registrations", Bool, SET),
        ("rules", Arr, SET),
        ("short_description", Str, SET),
        ("stats", Obj, SET),
        ("title", Str, SET),
        ("uri", Str, SET),
        ("urls", Obj, SET),
        ("version", Str, SET),
    ];
    const V1_OPTIONAL: &[Prop] = &[("contact_account", Obj, NULL), ("thumbnail", Str, NULL)];
    const V1_CONFIGURATION_REQUIRED: &[Prop] = &[
        ("accounts", Obj, SET),
        ("media_attachments", Obj, SET),
        ("polls", Obj, SET),
        ("statuses", Obj, SET),
    ];
    const V1_ACCOUNTS_REQUIRED: &[Prop] = &[("max_featured_tags", Int, SET)];
    const V1_STATS_REQUIRED: &[Prop] = &[
        ("domain_count", Int, SET),
        ("status_count", Int, SET),
        ("user_count", Int, SET),
    ];
    const V1_URLS_REQUIRED: &[Prop] = &[("streaming_api", Str, SET)];

    // Shared by V1Instance and Instance configuration.
    const MEDIA_ATTACHMENTS_REQUIRED: &[Prop] = &[
        ("image_matrix_limit", Int, SET),
        ("image_size_limit", Int, SET),
        ("supported_mime_types", Arr, SET),
        ("video_frame_rate_limit", Int, SET),
        ("video_matrix_limit", Int, SET),
        ("video_size_limit", Int, SET),
    ];
    const POLLS_REQUIRED: &[Prop] = &[
        ("max_characters_per_option", Int, SET),
        ("max_expiration", Int, SET),
        ("max_options", Int, SET),
        ("min_expiration", Int, SET),
    ];
    const STATUSES_REQUIRED: &[Prop] = &[
        ("characters_reserved_per_url", Int, SET),
        ("max_characters", Int, SET),
        ("max_media_attachments", Int, SET),
    ];

    // Rule (items of `rules`).
    const RULE_REQUIRED: &[Prop] = &[("hint", Str, SET), ("id", Str, SET), ("text", Str, SET)];

    // Instance
    const V2_REQUIRED: &[Prop] = &[
        ("api_versions", Obj, SET),
        ("configuration", Obj, SET),
        ("contact", Obj, SET),
        ("description", Str, SET),
        ("domain", Str, SET),
        ("icon", Arr, SET),
        ("languages", Arr, SET),
        ("registrations", Obj, SET),
        ("rules", Arr, SET),
        ("source_url", Str, SET),
        ("thumbnail", Obj, SET),
        ("title", Str, SET),
        ("usage", Obj, SET),
        ("version", Str, SET),
    ];
    const V2_OPTIONAL: &[Prop] = &[("wrapstodon", Str, NULL)];
    const API_VERSIONS_REQUIRED: &[Prop] = &[("mastodon", Int, SET)];
    const V2_CONFIGURATION_REQUIRED: &[Prop] = &[
        ("accounts", Obj, SET),
        ("media_attachments", Obj, SET),
        ("polls", Obj, SET),
        ("statuses", Obj, SET),
        ("translation", Obj, SET),
        ("urls", Obj, SET),
    ];
    const V2_CONFIGURATION_OPTIONAL: &[Prop] = &[
        ("limited_federation", Bool, NULL),
        ("timelines_access", Obj, NULL),
    ];
    const V2_ACCOUNTS_REQUIRED: &[Prop] = &[
        ("max_featured_tags", Int, SET),
        ("max_pinned_statuses", Int, SET),
    ];
    const V2_ACCOUNTS_OPTIONAL: &[Prop] = &[
        ("max_avatar_description_length", Int, NULL),
        ("max_display_name_length", Int, NULL),
        ("max_header_description_length", Int, NULL),
        ("max_note_length", Int, NULL),
        ("max_profile_fields", Int, NULL),
        ("profile_field_name_limit", Int, NULL),
        ("profile_field_value_limit", Int, NULL),
    ];
    const V2_MEDIA_ATTACHMENTS_OPTIONAL: &[Prop] = &[("description_limit", Int, NULL)];
    const TRANSLATION_REQUIRED: &[Prop] = &[("enabled", Bool, SET)];
    // `configuration.urls` has no required list in the schema.
    const V2_URLS_OPTIONAL: &[Prop] = &[
        ("about", Str, NULL),
        ("privacy_policy", Str, NULL),
        ("status", Str, NULL),
        ("streaming", Str, NULL),
        ("terms_of_service", Str, NULL),
    ];
    const TIMELINES_ACCESS_OPTIONAL: &[Prop] = &[
        ("live_feeds", Obj, NULL),
        ("hashtag_feeds", Obj, NULL),
        ("trending_link_feeds", Obj, NULL),
    ];
    const FEED_ACCESS_OPTIONAL: &[Prop] = &[("local", Str, NULL), ("remote", Str, NULL)];
    const CONTACT_REQUIRED: &[Prop] = &[("email", Str, SET)];
    const CONTACT_OPTIONAL: &[Prop] = &[("account", Obj, NULL)];
    const REGISTRATIONS_REQUIRED: &[Prop] =
        &[("approval_required", Bool, SET), ("enabled", Bool, SET)];
    const REGISTRATIONS_OPTIONAL: &[Prop] = &[
        ("message", Str, NULL),
        ("min_age", Int, NULL),
        ("reason_required", Bool, NULL),
        ("url", Str, NULL),
    ];
    const THUMBNAIL_REQUIRED: &[Prop] = &[("url", Str, SET)];
    const THUMBNAIL_OPTIONAL: &[Prop] = &[
        ("blurhash", Str, NULL),
        ("description", Str, NULL),
        ("versions", Obj, NULL),
    ];
    const THUMBNAIL_VERSIONS_OPTIONAL: &[Prop] = &[("@1x", Str, NULL), ("@2x", Str, NULL)];
    const USAGE_REQUIRED: &[Prop] = &[("users", Obj, SET)];
    const USAGE_USERS_REQUIRED: &[Prop] = &[("active_month", Int, SET)];

    // InstanceIcon (items of `icon`).
    const ICON_REQUIRED: &[Prop] = &[("size", Str, SET), ("src", Str, SET)];

    /// A configured contact account, shaped like a (trimmed) Mastodon Account.
    fn sample_account() -> Value {
        json!({
            "id": "1",
            "username": "admin",
            "acct": "admin",
            "display_name": "Admin",
        })
    }

    fn sample(contact_account: Option<Value>) -> InstanceInfo<'static> {
        InstanceInfo {
            domain: "rookery.example",
            base_url: "https://rookery.example",
            streaming_url: "wss://rookery.example",
            title: "Rookery",
            description: "Birds & <friends>",
            contact_email: "admin@rookery.example",
            registrations_open: true,
            software_version: "0.1.0",
            max_status_chars: 500,
            max_media_attachments: 4,
            user_count: 12,
            status_count: 345,
            active_month: 7,
            active_halfyear: 9,
            contact_account,
        }
    }

    /// Asserts that the object at `pointer` (a JSON pointer, "" for the root) has every
    /// property of `props`, each of the listed type or, where allowed, null.
    fn check(doc: &Value, pointer: &str, props: &[Prop]) {
        let target = doc.pointer(pointer);
        assert!(
            matches!(target, Some(Value::Object(_))),
            "`{pointer}` should be an object, got {target:?}"
        );
        let object = target.and_then(Value::as_object).unwrap();
        for &(name, kind, nullable) in props {
            let value = object.get(name);
            assert!(value.is_some(), "`{pointer}/{name}` is missing");
            let value = value.unwrap();
            let typed = match kind {
                Str => value.is_string(),
                Int => value.is_i64() || value.is_u64(),
                Bool => value.is_boolean(),
                Obj => value.is_object(),
                Arr => value.is_array(),
            };
            assert!(
                typed || (nullable && value.is_null()),
                "`{pointer}/{name}` should be {kind:?}{}, got {value}",
                if nullable { " or null" } else { "" }
            );
        }
    }

    /// Asserts [`check`] on every element of the array at `pointer`.
    fn check_items(doc: &Value, pointer: &str, props: &[Prop]) {
        let items = doc.pointer(pointer).and_then(Value::as_array);
        assert!(items.is_some(), "`{pointer}` should be an array");
        for index in 0..items.unwrap().len() {
            check(doc, &format!("{pointer}/{index}"), props);
        }
    }

    #[test]
    fn v1_has_every_schema_property_with_its_type() {
        for account in [None, Some(sample_account())] {
            let doc = v1(&sample(account));
            check(&doc, "", V1_REQUIRED);
            check(&doc, "", V1_OPTIONAL);
            check(&doc, "/configuration", V1_CONFIGURATION_REQUIRED);
            check(&doc, "/configuration/accounts", V1_ACCOUNTS_REQUIRED);
            check(
                &doc,
                "/configuration/media_attachments",
                MEDIA_ATTACHMENTS_REQUIRED,
            );
            check(&doc, "/configuration/polls", POLLS_REQUIRED);
            check(&doc, "/configuration/statuses", STATUSES_REQUIRED);
            check(&doc, "/stats", V1_STATS_REQUIRED);
            check(&doc, "/urls", V1_URLS_REQUIRED);
            check_items(&doc, "/rules", RULE_REQUIRED);
        }
    }

    #[test]
    fn v2_has_every_schema_property_with_its_type() {
        for account in [None, Some(sample_account())] {
            let doc = v2(&sample(account));
            check(&doc, "", V2_REQUIRED);
            check(&doc, "", V2_OPTIONAL);
            check(&doc, "/api_versions", API_VERSIONS_REQUIRED);
            check(&doc, "/configuration", V2_CONFIGURATION_REQUIRED);
            check(&doc, "/configuration", V2_CONFIGURATION_OPTIONAL);
            check(&doc, "/configuration/accounts", V2_ACCOUNTS_REQUIRED);
            check(&doc, "/configuration/accounts", V2_ACCOUNTS_OPTIONAL);
            check(
                &doc,
                "/configuration/media_attachments",
                MEDIA_ATTACHMENTS_REQUIRED,
            );
            check(
                &doc,
                "/configuration/media_attachments",
                V2_MEDIA_ATTACHMENTS_OPTIONAL,
            );
            check(&doc, "/configuration/polls", POLLS_REQUIRED);
            check(&doc, "/configuration/statuses", STATUSES_REQUIRED);
            check(&doc, "/configuration/translation", TRANSLATION_REQUIRED);
            check(&doc, "/configuration/urls", V2_URLS_OPTIONAL);
            check(
                &doc,
                "/configuration/timelines_access",
                TIMELINES_ACCESS_OPTIONAL,
            );
            for feed in ["live_feeds", "hashtag_feeds", "trending_link_feeds"] {
                let pointer = format!("/configuration/timelines_access/{feed}");
                check(&doc, &pointer, FEED_ACCESS_OPTIONAL);
            }
            check(&doc, "/contact", CONTACT_REQUIRED);
            check(&doc, "/contact", CONTACT_OPTIONAL);
            check(&doc, "/registrations", REGISTRATIONS_REQUIRED);
            check(&doc, "/registrations", REGISTRATIONS_OPTIONAL);
            check(&doc, "/thumbnail", THUMBNAIL_REQUIRED);
            check(&doc, "/thumbnail", THUMBNAIL_OPTIONAL);
            check(&doc, "/thumbnail/versions", THUMBNAIL_VERSIONS_OPTIONAL);
            check(&doc, "/usage", USAGE_REQUIRED);
            check(&doc, "/usage/users", USAGE_USERS_REQUIRED);
            check_items(&doc, "/icon", ICON_REQUIRED);
            check_items(&doc, "/rules", RULE_REQUIRED);
        }
    }

    #[test]
    fn v2_sends_what_real_mastodon_sends_beyond_the_schema() {
        let doc = v2(&sample(None));
        // Not in the OpenAPI description, but always sent by Mastodon 4.3+.
        check(&doc, "/configuration", &[("vapid", Obj, SET)]);
        check(&doc, "/configuration/vapid", &[("public_key", Str, SET)]);
        assert!(
            !doc["icon"].as_array().unwrap().is_empty(),
            "icon must list at least one size"
        );
    }

    #[test]
    fn documents_carry_the_configured_values() {
        let info = InstanceInfo {
            max_status_chars: 1000,
            max_media_attachments: 6,
            registrations_open: false,
            ..sample(Some(sample_account()))
        };
        let one = v1(&info);
        let two = v2(&info);

        assert_eq!(one["uri"], "rookery.example");
        assert_eq!(two["domain"], "rookery.example");
        assert_eq!(one["urls"]["streaming_api"], "wss://rookery.example");
        assert_eq!(
            two["configuration"]["urls"]["streaming"],
            "wss://rookery.example"
        );
        for doc in [&one, &two] {
            assert_eq!(doc["configuration"]["statuses"]["max_characters"], 1000);
            assert_eq!(doc["configuration"]["statuses"]["max_media_attachments"], 6);
            assert_eq!(
                doc["configuration"]["statuses"]["characters_reserved_per_url"],
                23
            );
            assert_eq!(doc["version"], "4.5.0 (compatible; Rookery 0.1.0)");
        }
        assert_eq!(one["registrations"], false);
        assert_eq!(two["registrations"]["enabled"], false);
        assert_eq!(one["contact_account"], sample_account());
        assert_eq!(two["contact"]["account"], sample_account());
        assert_eq!(one["email"], "admin@rookery.example");
        assert_eq!(two["contact"]["email"], "admin@rookery.example");
        assert_eq!(one["stats"]["user_count"], 12);
        assert_eq!(one["stats"]["status_count"], 345);
        assert_eq!(two["usage"]["users"]["active_month"], 7);
        assert_eq!(two["api_versions"]["mastodon"], 7);
        assert_eq!(
            one["thumbnail"],
            "https://rookery.example/static/thumbnail.png"
        );
        assert_eq!(
            two["thumbnail"]["url"],
            "https://rookery.example/static/thumbnail.png"
        );
        assert_eq!(
            two["icon"][0]["src"],
            "https://rookery.example/static/icon.png"
        );
    }

    #[test]
    fn contact_account_is_null_when_none_is_configured() {
        let info = sample(None);
        assert!(v1(&info)["contact_account"].is_null());
        assert!(v2(&info)["contact"]["account"].is_null());
    }

    #[test]
    fn v1_html_description_is_escaped_and_short_description_is_not() {
        let doc = v1(&sample(None));
        assert_eq!(doc["description"], "Birds &amp; &lt;friends&gt;");
        assert_eq!(doc["short_description"], "Birds & <friends>");
    }

    #[test]
    fn a_trailing_slash_on_the_base_url_does_not_double_up() {
        let info = InstanceInfo {
            base_url: "https://rookery.example/",
            ..sample(None)
        };
        assert_eq!(
            v1(&info)["thumbnail"],
            "https://rookery.example/static/thumbnail.png"
        );
        assert_eq!(
            nodeinfo_discovery(info.base_url)["links"][0]["href"],
            "https://rookery.example/nodeinfo/2.0"
        );
    }

    #[test]
    fn mastodon_version_claims_mastodon_4_and_names_rookery() {
        let version = mastodon_version("0.1.0");
        assert!(version.starts_with("4."), "{version}");
        assert!(version.contains("Rookery"), "{version}");
        assert!(version.contains("0.1.0"), "{version}");
        // Clients keep what precedes the first space and parse it as major.minor.patch.
        let numeric = version.split(' ').next().unwrap();
        let parts: Vec<u32> = numeric
            .split('.')
            .map(|part| part.parse().unwrap())
            .collect();
        assert_eq!(parts.len(), 3, "{version}");
    }

    #[test]
    fn nodeinfo_follows_schema_2_0() {
        let doc = nodeinfo(&sample(None));
        assert_eq!(doc["version"], "2.0");
        let name = doc["software"]["name"].as_str().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "software name {name:?} breaks ^[a-z0-9-]+$"
        );
        assert_eq!(doc["software"]["version"], "0.1.0");
        assert!(doc["protocols"].is_array());
        assert!(doc["services"]["inbound"].is_array());
        assert!(doc["services"]["outbound"].is_array());
        assert_eq!(doc["openRegistrations"], true);
        assert_eq!(doc["usage"]["users"]["total"], 12);
        assert_eq!(doc["usage"]["users"]["activeMonth"], 7);
        assert_eq!(doc["usage"]["users"]["activeHalfyear"], 9);
        assert_eq!(doc["usage"]["localPosts"], 345);
        assert_eq!(doc["metadata"]["nodeName"], "Rookery");
        assert!(doc["metadata"].is_object());
    }

    #[test]
    fn nodeinfo_counts_are_never_negative() {
        let info = InstanceInfo {
            user_count: -1,
            status_count: -5,
            ..sample(None)
        };
        let doc = nodeinfo(&info);
        assert_eq!(doc["usage"]["users"]["total"], 0);
        assert_eq!(doc["usage"]["localPosts"], 0);
    }

    #[test]
    fn nodeinfo_discovery_links_to_the_2_0_document() {
        let doc = nodeinfo_discovery("https://rookery.example");
        let link = &doc["links"][0];
        assert_eq!(
            link["rel"],
            "http://nodeinfo.diaspora.software/ns/schema/2.0"
        );
        let href = link["href"].as_str().unwrap();
        assert!(href.ends_with("/nodeinfo/2.0"), "{href}");
        assert!(href.starts_with("https://rookery.example"), "{href}");
    }
}
