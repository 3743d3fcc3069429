//! Domain types of the timeline service: ids, visibility, paging bounds.

use rookery_proto::timeline::v1 as pb;

use crate::{Error, Result};

rookery_kit::define_id!(
    /// A status (post, reply, reblog or quote).
    StatusId
);

/// Most pinned statuses per account (Mastodon's).
pub const MAX_PINS: i64 = 5;
/// Default and largest page of a timeline (Mastodon's).
pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 40;

/// Visibility as stored (the proto enum's numbers; a lower number is seen by more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Visibility {
    Public = 1,
    Unlisted = 2,
    Private = 3,
    Direct = 4,
}

impl Visibility {
    /// From the wire; unspecified means `default`.
    pub fn from_proto(v: i32, default: Visibility) -> Result<Self> {
        match pb::Visibility::try_from(v) {
            Ok(pb::Visibility::Unspecified) => Ok(default),
            Ok(pb::Visibility::Public) => Ok(Self::Public),
            Ok(pb::Visibility::Unlisted) => Ok(Self::Unlisted),
            Ok(pb::Visibility::Private) => Ok(Self::Private),
            Ok(pb::Visibility::Direct) => Ok(Self::Direct),
            Err(_) => Err(Error::InvalidArgument("unknown visibility".into())),
        }
    }

    /// From a stored or cached status (unknown numbers are treated as the most private).
    pub fn of(status: &pb::Status) -> Self {
        match status.visibility {
            1 => Self::Public,
            2 => Self::Unlisted,
            3 => Self::Private,
            _ => Self::Direct,
        }
    }

    pub fn stored(self) -> i16 {
        self as i16
    }
}

/// Keyset bounds from Mastodon's paging parameters: `min_id` wins over `since_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Exclusive upper bound (`max_id`).
    pub below: i64,
    /// Exclusive lower bound (`min_id` or `since_id`).
    pub above: i64,
    /// `min_id` pages start right after it: read oldest first, answer newest first.
    pub oldest_first: bool,
    pub limit: i64,
}

impl Bounds {
    pub fn new(page: Option<&pb::Page>, default: u32, max: u32) -> Self {
        let page = page.cloned().unwrap_or_default();
        let limit = match page.limit {
            0 => default,
            n => n.min(max),
        };
        Self {
            below: page.max_id.unwrap_or(i64::MAX),
            above: page.min_id.or(page.since_id).unwrap_or(0),
            oldest_first: page.min_id.is_some(),
            limit: i64::from(limit),
        }
    }

    /// A timeline page's bounds (default 20, at most 40).
    pub fn timeline(page: Option<&pb::Page>) -> Self {
        Self::new(page, DEFAULT_PAGE, MAX_PAGE)
    }

    /// Rows read in the query's order, newest first.
    pub fn newest_first<T>(&self, mut rows: Vec<T>) -> Vec<T> {
        if self.oldest_first {
            rows.reverse();
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn min_id_wins_and_limits_clamp() {
        let page = pb::Page {
            max_id: Some(90),
            since_id: Some(10),
            min_id: Some(20),
            limit: 500,
        };
        let b = Bounds::timeline(Some(&page));
        assert_eq!(
            (b.below, b.above, b.oldest_first, b.limit),
            (90, 20, true, 40)
        );
        let b = Bounds::timeline(None);
        assert_eq!(
            (b.below, b.above, b.oldest_first, b.limit),
            (i64::MAX, 0, false, 20)
        );
        assert_eq!(b.newest_first(vec![3, 2]), vec![3, 2]);
    }

    #[test]
    fn visibility_order_is_audience_size() {
        assert!(Visibility::Public < Visibility::Private);
        assert_eq!(
            Visibility::from_proto(0, Visibility::Unlisted).unwrap(),
            Visibility::Unlisted
        );
        assert!(Visibility::from_proto(9, Visibility::Public).is_err());
    }
}
