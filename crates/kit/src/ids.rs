//! 64-bit, time-ordered ids: `milliseconds since the Unix epoch << 16 | sequence`.
//!
//! Ids are generated in Postgres (each schema has a `next_id()` function, see the
//! service migrations), so every replica of a service draws from one sequence. Time order
//! makes cursors (`max_id`, `since_id`, `min_id`) plain comparisons. In JSON they are
//! strings, as Mastodon sends them, because JavaScript numbers lose precision past 2^53.

/// Bits of an id below the millisecond timestamp.
pub const SEQUENCE_BITS: u32 = 16;

/// The smallest id that can have been created at or after `unix_millis`: turns a time into
/// a cursor bound.
pub fn floor_for_millis(unix_millis: i64) -> i64 {
    unix_millis << SEQUENCE_BITS
}

/// The creation time of an id, in milliseconds since the Unix epoch.
pub fn millis_of(id: i64) -> i64 {
    id >> SEQUENCE_BITS
}

/// Declares a newtype id: `Copy`, ordered, stored as `bigint`, written as a decimal string
/// in JSON and parsed from a string (or a number, which some clients send).
#[macro_export]
macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ids::InvalidId;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s.parse::<i64>() {
                    Ok(v) if v > 0 => Ok(Self(v)),
                    _ => Err($crate::ids::InvalidId),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                #[derive(::serde::Deserialize)]
                #[serde(untagged)]
                enum Repr<'a> {
                    Num(i64),
                    Str(::std::borrow::Cow<'a, str>),
                }
                match Repr::deserialize(d)? {
                    Repr::Num(n) if n > 0 => Ok(Self(n)),
                    Repr::Num(_) => Err(::serde::de::Error::custom($crate::ids::InvalidId)),
                    Repr::Str(s) => s.parse().map_err(::serde::de::Error::custom),
                }
            }
        }
    };
}

/// An id that is not a positive 64-bit integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct InvalidId;

define_id!(
    /// An account, owned by the users service and referenced by every other service.
    AccountId
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_strings_in_json_and_parse_back() {
        let id = AccountId(112_233_445_566_778_899);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"112233445566778899\"");
        assert_eq!(serde_json::from_str::<AccountId>(&json).unwrap(), id);
        assert_eq!(serde_json::from_str::<AccountId>("112233445566778899").unwrap(), id);
        assert!(serde_json::from_str::<AccountId>("\"x1\"").is_err());
    }

    #[test]
    fn garbage_and_non_positive_ids_are_rejected() {
        assert!("abc".parse::<AccountId>().is_err());
        assert!("0".parse::<AccountId>().is_err());
        assert!("-5".parse::<AccountId>().is_err());
        assert!("99999999999999999999".parse::<AccountId>().is_err());
    }

    #[test]
    fn time_bounds_round_trip() {
        let t = 1_790_000_000_000;
        assert_eq!(millis_of(floor_for_millis(t) + 65_535), t);
        assert!(floor_for_millis(t + 1) > floor_for_millis(t) + 65_535);
    }

}
