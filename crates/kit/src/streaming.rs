//! The streaming API's Redis pub/sub contract, shared by its publishers (timeline's
//! fan-out, notifications) and its one subscriber (the gateway).
//!
//! Messages carry ids, not rendered entities: the gateway renders each one once per
//! replica, whatever the number of sockets it goes to. Channels:
//! - [`user_channel`]: one per account; home timeline `update`/`delete`/`status.update`
//!   of what its feed receives, and its `notification`s.
//! - [`public_channel`]: public, original statuses (all statuses are local here, so the
//!   `public` and `public:local` streams share it).
//! - [`hashtag_channel`]: the same, per hashtag (lowercase).

use serde::{Deserialize, Serialize};

use crate::{Result, redis::Redis};

/// What happened, as Mastodon names the streaming event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A new status (`id`: the status).
    #[serde(rename = "update")]
    Update,
    /// A status was deleted (`id`: the status).
    #[serde(rename = "delete")]
    Delete,
    /// A status was edited (`id`: the status).
    #[serde(rename = "status.update")]
    StatusUpdate,
    /// A new notification (`id`: the notification).
    #[serde(rename = "notification")]
    Notification,
}

impl Kind {
    /// The event name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::StatusUpdate => "status.update",
            Kind::Notification => "notification",
        }
    }
}

/// One pub/sub message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub event: Kind,
    /// The status or notification id.
    #[serde(with = "id_string")]
    pub id: i64,
    /// The author of the status (for `update` and `status.update`: the gateway renders
    /// the status as seen by its author, then without anyone's flags), or the recipient
    /// of the notification. 0 when unknown.
    #[serde(with = "id_string", default)]
    pub account: i64,
    /// When the status was last written (created or edited), so that a rendering cached
    /// for an earlier version is not reused.
    #[serde(default)]
    pub version_ms: i64,
}

impl Message {
    pub fn encode(&self) -> String {
        // Serialising this struct cannot fail (no maps with non-string keys, no floats).
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(raw: &[u8]) -> Option<Self> {
        serde_json::from_slice(raw).ok()
    }
}

/// Ids as JSON strings, as everywhere in the API (64-bit ids do not fit a double).
mod id_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The channel of one account's `user` stream.
pub fn user_channel(redis: &Redis, account: i64) -> String {
    redis.key(&format!("stream:user:{account}"))
}

/// The channel of the `public` and `public:local` streams.
pub fn public_channel(redis: &Redis) -> String {
    redis.key("stream:public")
}

/// The channel of the `hashtag` and `hashtag:local` streams of `tag` (any case).
pub fn hashtag_channel(redis: &Redis, tag: &str) -> String {
    redis.key(&format!("stream:hashtag:{}", tag.to_lowercase()))
}

/// Publishes `message` to every channel in one pipelined round trip.
pub async fn publish(redis: &Redis, channels: &[String], message: &Message) -> Result<()> {
    if channels.is_empty() {
        return Ok(());
    }
    let payload = message.encode();
    let mut pipe = crate::redis::pipe();
    for channel in channels {
        pipe.cmd("PUBLISH").arg(channel).arg(&payload).ignore();
    }
    redis.pipe::<()>(&pipe).await
}

/// Publishes each `(channel, message)` in one pipelined round trip.
pub async fn publish_each(redis: &Redis, messages: &[(String, Message)]) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut pipe = crate::redis::pipe();
    for (channel, message) in messages {
        pipe.cmd("PUBLISH")
            .arg(channel)
            .arg(message.encode())
            .ignore();
    }
    redis.pipe::<()>(&pipe).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_string_ids() {
        let m = Message {
            event: Kind::StatusUpdate,
            id: 113_000_000_000_000_001,
            account: 7,
            version_ms: 1_700_000_000_000,
        };
        let raw = m.encode();
        assert_eq!(
            raw,
            r#"{"event":"status.update","id":"113000000000000001","account":"7","version_ms":1700000000000}"#
        );
        assert_eq!(Message::decode(raw.as_bytes()), Some(m));
        assert_eq!(Message::decode(b"{\"event\":\"nope\",\"id\":\"1\"}"), None);
        assert_eq!(
            Message::decode(br#"{"event":"delete","id":"5"}"#),
            Some(Message {
                event: Kind::Delete,
                id: 5,
                account: 0,
                version_ms: 0
            })
        );
    }
}
