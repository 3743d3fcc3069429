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
/// in JSON and parsed from a string (or a number, which some clients send). The
/// declaring crate needs no serde or sqlx dependency of its own.
#[macro_export]
macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ids::InvalidId;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                $crate::ids::parse_id(s).map(Self)
            }
        }

        impl $crate::ids::__private::serde::Serialize for $name {
            fn serialize<S>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error>
            where
                S: $crate::ids::__private::serde::Serializer,
            {
                s.collect_str(&self.0)
            }
        }

        impl<'de> $crate::ids::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D>(d: D) -> ::std::result::Result<Self, D::Error>
            where
                D: $crate::ids::__private::serde::Deserializer<'de>,
            {
                $crate::ids::deserialize_id(d).map(Self)
            }
        }

        impl $crate::ids::__private::sqlx::Type<$crate::ids::__private::sqlx::Postgres> for $name {
            fn type_info() -> $crate::ids::__private::sqlx::postgres::PgTypeInfo {
                <i64 as $crate::ids::__private::sqlx::Type<$crate::ids::__private::sqlx::Postgres>>::type_info()
            }
        }

        impl<'q> $crate::ids::__private::sqlx::Encode<'q, $crate::ids::__private::sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut $crate::ids::__private::sqlx::postgres::PgArgumentBuffer,
            ) -> ::std::result::Result<$crate::ids::__private::sqlx::encode::IsNull, $crate::ids::__private::sqlx::error::BoxDynError> {
                <i64 as $crate::ids::__private::sqlx::Encode<'q, $crate::ids::__private::sqlx::Postgres>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r> $crate::ids::__private::sqlx::Decode<'r, $crate::ids::__private::sqlx::Postgres> for $name {
            fn decode(
                value: $crate::ids::__private::sqlx::postgres::PgValueRef<'r>,
            ) -> ::std::result::Result<Self, $crate::ids::__private::sqlx::error::BoxDynError> {
                <i64 as $crate::ids::__private::sqlx::Decode<'r, $crate::ids::__private::sqlx::Postgres>>::decode(value).map(Self)
            }
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use sqlx;
}

/// Parses a positive decimal id.
pub fn parse_id(s: &str) -> Result<i64, InvalidId> {
    match s.trim().parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(InvalidId),
    }
}

/// Reads an id written as a string or as a number.
pub fn deserialize_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct IdVisitor;
    impl serde::de::Visitor<'_> for IdVisitor {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a positive integer id, as a string or a number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<i64, E> {
            parse_id(v).map_err(E::custom)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            if v > 0 {
                Ok(v)
            } else {
                Err(E::custom(InvalidId))
            }
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v)
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| E::custom(InvalidId))
        }
    }
    d.deserialize_any(IdVisitor)
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
        assert_eq!(
            serde_json::from_str::<AccountId>("112233445566778899").unwrap(),
            id
        );
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
