//! Notification types and group keys.

use rookery_proto::notifications::v1::NotificationType as Type;

/// A group never spans more than this: later notifications start a new group (as
/// Mastodon's `MAXIMUM_GROUP_SPAN_HOURS`).
pub const MAX_GROUP_SPAN_HOURS: i64 = 12;

/// Accounts shown per group (Mastodon's `SAMPLE_ACCOUNTS_SIZE`).
pub const SAMPLE_ACCOUNTS: usize = 8;

/// Types that group (Mastodon 4.3: favourites and reblogs of one status, follows).
pub const GROUPABLE: [Type; 3] = [Type::Favourite, Type::Reblog, Type::Follow];

/// The stored number of a type (the proto enum's, checked by the table).
pub fn stored(t: Type) -> i16 {
    t as i16
}

/// The type of a stored number.
pub fn from_stored(n: i16) -> Type {
    Type::try_from(i32::from(n)).unwrap_or(Type::Unspecified)
}

/// The stable part of a groupable notification's key (`favourite-{status}`,
/// `reblog-{status}`, `follow`); None for types that never group.
pub fn group_prefix(t: Type, status: Option<i64>) -> Option<String> {
    match (t, status) {
        (Type::Favourite, Some(s)) => Some(format!("favourite-{s}")),
        (Type::Reblog, Some(s)) => Some(format!("reblog-{s}")),
        (Type::Follow, _) => Some("follow".to_owned()),
        _ => None,
    }
}

/// The hour bucket of a timestamp.
pub fn hour_bucket(created_at_ms: i64) -> i64 {
    created_at_ms.div_euclid(3_600_000)
}

/// The bucket a new notification joins, given the bucket of the group its prefix last
/// used: the same group while it is younger than [`MAX_GROUP_SPAN_HOURS`].
pub fn join_bucket(bucket: i64, previous: Option<i64>) -> i64 {
    match previous {
        Some(p) if bucket >= p && bucket < p + MAX_GROUP_SPAN_HOURS => p,
        _ => bucket,
    }
}

/// The key of an ungrouped notification (what clients may assume, per the API docs).
pub fn ungrouped_key(id: i64) -> String {
    format!("ungrouped-{id}")
}

/// The group key a notification is listed under when `groupable` types may group:
/// its stored key, or its own key when its type is not one of them.
pub fn effective_key(t: Type, stored_key: &str, id: i64, groupable: &[Type]) -> String {
    if groupable.contains(&t) {
        stored_key.to_owned()
    } else {
        ungrouped_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_span_at_most_twelve_hours() {
        assert_eq!(join_bucket(100, None), 100);
        assert_eq!(join_bucket(100, Some(100)), 100);
        assert_eq!(join_bucket(111, Some(100)), 100);
        assert_eq!(join_bucket(112, Some(100)), 112);
        // A clock that went back does not join a group from the future.
        assert_eq!(join_bucket(99, Some(100)), 99);
    }

    #[test]
    fn only_favourites_reblogs_and_follows_group() {
        assert_eq!(
            group_prefix(Type::Favourite, Some(5)).as_deref(),
            Some("favourite-5")
        );
        assert_eq!(
            group_prefix(Type::Reblog, Some(5)).as_deref(),
            Some("reblog-5")
        );
        assert_eq!(group_prefix(Type::Follow, None).as_deref(), Some("follow"));
        assert_eq!(group_prefix(Type::Mention, Some(5)), None);
        assert_eq!(group_prefix(Type::FollowRequest, None), None);
        assert_eq!(
            effective_key(Type::Favourite, "favourite-5-1", 9, &[Type::Reblog]),
            "ungrouped-9"
        );
        assert_eq!(
            effective_key(Type::Favourite, "favourite-5-1", 9, &GROUPABLE),
            "favourite-5-1"
        );
    }

    #[test]
    fn stored_numbers_round_trip() {
        for t in [
            Type::Mention,
            Type::Status,
            Type::Reblog,
            Type::Follow,
            Type::FollowRequest,
            Type::Favourite,
            Type::Update,
            Type::Quote,
        ] {
            assert_eq!(from_stored(stored(t)), t);
        }
        assert_eq!(from_stored(99), Type::Unspecified);
    }
}
