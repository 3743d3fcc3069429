//! Stream names as clients say them (`user`, `hashtag` + `tag`, ...), what each may
//! receive, which Redis channel feeds it and the scopes it needs.

use rookery_kit::{redis::Redis, streaming};

use crate::auth::Auth;

/// The streams Rookery serves. Every status is local, so the `:local` variants carry
/// the same events as their plain ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `user`: the home timeline and notifications of the signed-in account.
    User,
    /// `user:notification`: only the notifications.
    UserNotification,
    /// `public`.
    Public,
    /// `public:local`.
    PublicLocal,
    /// `hashtag` (with a tag).
    Hashtag,
    /// `hashtag:local` (with a tag).
    HashtagLocal,
}

/// One stream a connection subscribes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stream {
    pub kind: Kind,
    /// The tag as the client wrote it (echoed back in frames, as Mastodon does); empty
    /// for streams without one.
    pub tag: String,
}

/// Why a stream cannot be subscribed, with the status Mastodon reports it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: http::StatusCode,
    pub message: &'static str,
}

impl Refusal {
    const UNKNOWN: Self = Self {
        status: http::StatusCode::BAD_REQUEST,
        message: "Unknown stream type",
    };
    const NO_TAG: Self = Self {
        status: http::StatusCode::BAD_REQUEST,
        message: "No tag for stream provided",
    };
    const SCOPES: Self = Self {
        status: http::StatusCode::UNAUTHORIZED,
        message: "Access token does not have the required scopes",
    };

    /// The WebSocket error frame: `{"error":"...","status":400}`.
    pub fn frame(&self) -> String {
        serde_json::json!({ "error": self.message, "status": self.status.as_u16() }).to_string()
    }

    /// The same refusal as an HTTP answer (SSE).
    pub fn into_api_error(self) -> crate::error::ApiError {
        crate::error::ApiError::new(self.status, self.message)
    }
}

impl Stream {
    /// Parses a stream name and its tag parameter.
    pub fn parse(name: &str, tag: Option<&str>) -> Result<Self, Refusal> {
        let kind = match name {
            "user" => Kind::User,
            "user:notification" => Kind::UserNotification,
            "public" => Kind::Public,
            "public:local" => Kind::PublicLocal,
            "hashtag" => Kind::Hashtag,
            "hashtag:local" => Kind::HashtagLocal,
            _ => return Err(Refusal::UNKNOWN),
        };
        let tag = match kind {
            Kind::Hashtag | Kind::HashtagLocal => {
                let tag = tag.map(str::trim).unwrap_or_default();
                let bare = tag.strip_prefix('#').unwrap_or(tag);
                if bare.is_empty() {
                    return Err(Refusal::NO_TAG);
                }
                tag.to_owned()
            }
            _ => String::new(),
        };
        Ok(Self { kind, tag })
    }

    /// The name clients use.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::User => "user",
            Kind::UserNotification => "user:notification",
            Kind::Public => "public",
            Kind::PublicLocal => "public:local",
            Kind::Hashtag => "hashtag",
            Kind::HashtagLocal => "hashtag:local",
        }
    }

    /// The identity of the subscription within a connection: subscribing twice is one
    /// subscription, and tags compare as hashtags do (case-insensitively).
    pub fn key(&self) -> (Kind, String) {
        (self.kind, self.bare_tag().to_lowercase())
    }

    fn bare_tag(&self) -> &str {
        self.tag.strip_prefix('#').unwrap_or(&self.tag)
    }

    /// The `stream` field of a WebSocket frame, as JSON: `["user"]`, `["hashtag","rust"]`.
    pub fn label_json(&self) -> String {
        let label: Vec<&str> = if self.tag.is_empty() {
            vec![self.name()]
        } else {
            vec![self.name(), &self.tag]
        };
        serde_json::to_string(&label).unwrap_or_default()
    }

    /// Succeeds when `auth` may read this stream. Mastodon's rules: `read` opens every
    /// stream, `read:notifications` the notification stream, `read:statuses` the rest;
    /// the user streams need a user token. Public and hashtag streams, which Mastodon can
    /// be configured to serve anonymously, need a token here too, but no scope.
    pub fn authorize(&self, auth: &Auth) -> Result<(), Refusal> {
        let scope = match self.kind {
            Kind::Public | Kind::PublicLocal | Kind::Hashtag | Kind::HashtagLocal => {
                return Ok(());
            }
            Kind::User => "read:statuses",
            Kind::UserNotification => "read:notifications",
        };
        if auth.token.account_id.is_none() || auth.require(&[scope]).is_err() {
            return Err(Refusal::SCOPES);
        }
        Ok(())
    }

    /// The Redis channel that feeds this stream (`account`: the reader, for user streams).
    pub fn channel(&self, redis: &Redis, account: i64) -> String {
        match self.kind {
            Kind::User | Kind::UserNotification => streaming::user_channel(redis, account),
            Kind::Public | Kind::PublicLocal => streaming::public_channel(redis),
            Kind::Hashtag | Kind::HashtagLocal => {
                streaming::hashtag_channel(redis, self.bare_tag())
            }
        }
    }

    /// Whether events of `event` go to this stream: the notification stream gets only
    /// notifications; the others get whatever their channel carries.
    pub fn wants(&self, event: streaming::Kind) -> bool {
        self.kind != Kind::UserNotification || event == streaming::Kind::Notification
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use rookery_proto::users::v1 as pb;

    use super::*;

    fn auth(account: Option<i64>, scopes: &str) -> Auth {
        Auth {
            token: Arc::new(pb::Authentication {
                account_id: account,
                scopes: scopes.to_owned(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn names_parse_like_mastodon() {
        let s = Stream::parse("hashtag", Some("Rust")).unwrap();
        assert_eq!(s.label_json(), r#"["hashtag","Rust"]"#);
        assert_eq!(s.key(), (Kind::Hashtag, "rust".to_owned()));
        assert_eq!(
            Stream::parse("hashtag:local", Some("#Rust")).unwrap().key(),
            (Kind::HashtagLocal, "rust".to_owned())
        );
        assert_eq!(
            Stream::parse("user", None).unwrap().label_json(),
            r#"["user"]"#
        );
        assert_eq!(
            Stream::parse("public:local", Some("ignored"))
                .unwrap()
                .label_json(),
            r#"["public:local"]"#
        );
        assert_eq!(Stream::parse("list", None), Err(Refusal::UNKNOWN));
        assert_eq!(Stream::parse("hashtag", Some(" ")), Err(Refusal::NO_TAG));
        assert_eq!(Stream::parse("hashtag", Some("#")), Err(Refusal::NO_TAG));
        assert_eq!(
            Refusal::UNKNOWN.frame(),
            r#"{"error":"Unknown stream type","status":400}"#
        );
    }

    #[test]
    fn scopes_follow_mastodon() {
        let user = Stream::parse("user", None).unwrap();
        let notes = Stream::parse("user:notification", None).unwrap();
        let public = Stream::parse("public", None).unwrap();
        assert!(user.authorize(&auth(Some(1), "read")).is_ok());
        assert!(notes.authorize(&auth(Some(1), "read")).is_ok());
        assert!(user.authorize(&auth(Some(1), "read:statuses")).is_ok());
        assert!(notes.authorize(&auth(Some(1), "read:statuses")).is_err());
        assert!(
            notes
                .authorize(&auth(Some(1), "read:notifications"))
                .is_ok()
        );
        assert!(
            user.authorize(&auth(Some(1), "read:notifications"))
                .is_err()
        );
        assert!(user.authorize(&auth(Some(1), "write")).is_err());
        assert!(user.authorize(&auth(None, "read")).is_err());
        assert!(public.authorize(&auth(None, "write")).is_ok());
    }

    #[test]
    fn the_notification_stream_only_gets_notifications() {
        let notes = Stream::parse("user:notification", None).unwrap();
        let user = Stream::parse("user", None).unwrap();
        assert!(!notes.wants(streaming::Kind::Update));
        assert!(notes.wants(streaming::Kind::Notification));
        assert!(user.wants(streaming::Kind::Delete));
        assert!(user.wants(streaming::Kind::Notification));
    }
}
