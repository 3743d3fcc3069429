//! Mastodon's cursor pagination: `max_id`, `since_id`, `min_id` and `limit` in, a `Link`
//! header with the `next` (older) and `prev` (newer) pages out. Cursors are ids of the
//! listed rows (a follow, a block, ...), never offsets.

use axum::http::{HeaderValue, Uri};
use rookery_proto::{timeline::v1 as tl, users::v1 as pb};
use serde::Deserialize;

use crate::error::ApiError;

/// The paging parameters of a list endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    #[serde(default)]
    max_id: Option<String>,
    #[serde(default)]
    since_id: Option<String>,
    #[serde(default)]
    min_id: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// Parses an optional numeric parameter; blank is absent, anything else non-numeric a 422.
pub fn number(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::unprocessable(format!("{name} must be a number"))),
    }
}

/// `limit` clamped to `1..=max` (absent or 0: `default`; negative: its magnitude, as
/// Mastodon does).
pub fn limit(value: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    Ok(match number("limit", value)? {
        None | Some(0) => default,
        Some(n) => u32::try_from(n.unsigned_abs()).unwrap_or(u32::MAX).min(max),
    })
}

impl PageParams {
    /// The raw `limit` parameter (for endpoints whose limit is not a page size).
    pub fn raw_limit(&self) -> Option<&str> {
        self.limit.as_deref()
    }

    /// The page asked for, with `limit` defaulting to `default` and clamped to `max`.
    pub fn page(&self, default: u32, max: u32) -> Result<pb::Page, ApiError> {
        Ok(pb::Page {
            max_id: number("max_id", self.max_id.as_deref())?,
            since_id: number("since_id", self.since_id.as_deref())?,
            min_id: number("min_id", self.min_id.as_deref())?,
            limit: limit(self.limit.as_deref(), default, max)?,
        })
    }

    /// The page of a timeline-service list.
    pub fn timeline_page(&self, default: u32, max: u32) -> Result<tl::Page, ApiError> {
        let p = self.page(default, max)?;
        Ok(tl::Page {
            max_id: p.max_id,
            since_id: p.since_id,
            min_id: p.min_id,
            limit: p.limit,
        })
    }

    /// The `Link` header for a page of `len` entries whose cursors run from `newest` to
    /// `oldest`: `next` (older entries) when the page is full, `prev` (newer) when it is
    /// not empty.
    pub fn link(
        &self,
        base_url: &str,
        uri: &Uri,
        page: &pb::Page,
        len: usize,
        newest: Option<i64>,
        oldest: Option<i64>,
    ) -> Option<HeaderValue> {
        let next = oldest.filter(|_| len >= page.limit as usize);
        self.link_cursors(base_url, uri, page.limit, next, newest)
    }

    /// The `Link` header with explicit cursors: `next` pages to entries older than
    /// `next`, `prev` to entries newer than `prev`. The request's other parameters
    /// (`local`, `any[]`, ...) are kept, and `limit` as clamped.
    pub fn link_cursors(
        &self,
        base_url: &str,
        uri: &Uri,
        limit: u32,
        next: Option<i64>,
        prev: Option<i64>,
    ) -> Option<HeaderValue> {
        let kept: Vec<(String, String)> =
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .filter(|(k, _)| !matches!(k.as_ref(), "max_id" | "min_id" | "since_id" | "limit"))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let url = |key: &str, cursor: i64| {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            if self.limit.is_some() {
                query.append_pair("limit", &limit.to_string());
            }
            for (k, v) in &kept {
                query.append_pair(k, v);
            }
            query.append_pair(key, &cursor.to_string());
            format!("{base_url}{}?{}", uri.path(), query.finish())
        };
        let mut links = Vec::with_capacity(2);
        if let Some(next) = next {
            links.push(format!("<{}>; rel=\"next\"", url("max_id", next)));
        }
        if let Some(prev) = prev {
            links.push(format!("<{}>; rel=\"prev\"", url("min_id", prev)));
        }
        if links.is_empty() {
            return None;
        }
        HeaderValue::from_str(&links.join(", ")).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_clamp_and_ids_parse() {
        assert_eq!(limit(None, 40, 80).unwrap(), 40);
        assert_eq!(limit(Some("500"), 40, 80).unwrap(), 80);
        assert_eq!(limit(Some("-5"), 40, 80).unwrap(), 5);
        assert_eq!(limit(Some("0"), 40, 80).unwrap(), 40);
        assert_eq!(limit(Some("abc"), 40, 80).unwrap_err().status, 422);
        assert_eq!(number("max_id", Some(" 12 ")).unwrap(), Some(12));
        assert_eq!(number("max_id", Some("")).unwrap(), None);
        assert_eq!(number("max_id", Some("1e3")).unwrap_err().status, 422);
    }

    #[test]
    fn link_has_next_only_for_full_pages() {
        let params = PageParams {
            limit: Some("2".into()),
            ..Default::default()
        };
        let page = params.page(40, 80).unwrap();
        let uri: Uri = "/api/v1/accounts/7/followers?limit=2".parse().unwrap();
        let link = params
            .link("https://x.test", &uri, &page, 2, Some(9), Some(5))
            .unwrap();
        assert_eq!(
            link.to_str().unwrap(),
            "<https://x.test/api/v1/accounts/7/followers?limit=2&max_id=5>; rel=\"next\", \
             <https://x.test/api/v1/accounts/7/followers?limit=2&min_id=9>; rel=\"prev\""
        );
        let link = params
            .link("https://x.test", &uri, &page, 1, Some(9), Some(9))
            .unwrap();
        assert!(!link.to_str().unwrap().contains("next"));
        // Other parameters survive; cursors of the request are replaced.
        let uri: Uri = "/api/v1/timelines/public?local=true&max_id=3&any%5B%5D=a"
            .parse()
            .unwrap();
        let link = params
            .link_cursors("https://x.test", &uri, 2, Some(1), None)
            .unwrap();
        assert_eq!(
            link.to_str().unwrap(),
            "<https://x.test/api/v1/timelines/public?limit=2&local=true&any%5B%5D=a&max_id=1>; rel=\"next\""
        );
        assert!(
            params
                .link("https://x.test", &uri, &page, 0, None, None)
                .is_none()
        );
    }
}
