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
            format!("{base_url}{}?{}", escape_path(uri.path()), query.finish())
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

/// `path` with every byte that is not an RFC 3986 path character percent-encoded.
/// hyper and `http::Uri` accept raw UTF-8 and `"`, `\`, `{`, `}`, `|`, `^` in a request
/// path (a hashtag's): copied as they were, they made a `Link` header that is not ASCII
/// (`HeaderValue::to_str` fails on it, clients misread it) and URLs that WHATWG parsers
/// read as another path (`\` is `/` to them).
fn escape_path(path: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
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

#[cfg(test)]
mod proptests {
    //! Properties of the paging parameters: parsing never panics, `limit` always lands in
    //! `1..=max`, non-numeric ids are a 422, and the `Link` header round-trips.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    /// Strings that are often numbers, nearly numbers, or around the i64/u32 limits.
    fn param() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            any::<i64>().prop_map(|n| n.to_string()),
            (any::<i64>(), "[ \t+]{0,2}", "[ \t]{0,2}").prop_map(|(n, a, b)| format!("{a}{n}{b}")),
            "[-+]?[0-9]{1,25}",
            prop::sample::select(vec![
                "",
                " ",
                "0",
                "-0",
                "+5",
                "1e3",
                "0x10",
                "١٢",
                "9223372036854775807",
                "9223372036854775808",
                "-9223372036854775808",
                "4294967296",
                "-4294967296",
                "18446744073709551616",
                "NaN",
                "null",
                "12abc",
                " 12 ",
            ])
            .prop_map(str::to_owned),
        ]
    }

    /// One `<url>; rel="x"` entry of a `Link` header.
    fn link_entries(header: &str) -> Result<Vec<(String, String)>, String> {
        let mut entries = Vec::new();
        let mut rest = header;
        loop {
            let after = rest
                .strip_prefix('<')
                .ok_or(format!("no `<` at {rest:?}"))?;
            let (url, after) = after.split_once('>').ok_or("no `>`")?;
            let after = after
                .strip_prefix("; rel=\"")
                .ok_or(format!("no rel at {after:?}"))?;
            let (rel, after) = after.split_once('"').ok_or("unterminated rel")?;
            entries.push((url.to_owned(), rel.to_owned()));
            if after.is_empty() {
                return Ok(entries);
            }
            rest = after.strip_prefix(", ").ok_or(format!("junk {after:?}"))?;
        }
    }

    /// A request path: safe characters, percent escapes, and the odd bytes `http::Uri`
    /// lets through (it refuses `<`, `>` and `` ` ``, as hyper does).
    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9_.~-]{1,6}",
                "%[0-9A-F]{2}",
                prop::sample::select(vec![
                    "\"", "{", "}", "|", "^", "\\", ";", ",", "=", "@", "!", "$", "'", "(", ")",
                    "*", "+", ":", "[", "]", "café", "日本", "%",
                ])
                .prop_map(str::to_owned),
            ],
            0..6,
        )
        .prop_map(|segments| format!("/api/v1/{}", segments.concat()))
    }

    /// `%XX` escapes decoded (as bytes).
    fn decode_path(path: &str) -> Vec<u8> {
        let bytes = path.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }

    fn query_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
        let key = prop_oneof![
            prop::sample::select(vec![
                "max_id",
                "since_id",
                "min_id",
                "limit",
                "local",
                "any[]",
                "only_media",
                "types[]",
                "q",
                "",
            ])
            .prop_map(str::to_owned),
            any::<String>(),
        ];
        prop::collection::vec((key, prop_oneof![param(), any::<String>()]), 0..5)
    }

    /// Found by `link_header_round_trips`: the request path went into the `Link` header
    /// unescaped, so a raw UTF-8 hashtag made a header that is not ASCII and a `\` became
    /// a `/` (a different path) for clients.
    #[test]
    fn link_escapes_the_request_path() {
        let uri: Uri = r#"/api/v1/timelines/tag/café\..\x"{}|^?local=true"#
            .parse()
            .unwrap();
        let params = PageParams::default();
        let link = params
            .link_cursors("https://x.test", &uri, 20, Some(5), None)
            .unwrap();
        assert_eq!(
            link.to_str().unwrap(),
            "<https://x.test/api/v1/timelines/tag/caf%C3%A9%5C..%5Cx%22%7B%7D%7C%5E\
             ?local=true&max_id=5>; rel=\"next\""
        );
    }

    proptest! {
        #[test]
        fn numbers_parse_or_are_a_422(value in param()) {
            match number("max_id", Some(&value)) {
                Ok(None) => prop_assert!(value.trim().is_empty()),
                Ok(Some(n)) => prop_assert_eq!(value.trim().parse::<i64>().ok(), Some(n)),
                Err(e) => {
                    prop_assert_eq!(e.status, 422);
                    prop_assert!(value.trim().parse::<i64>().is_err());
                }
            }
        }

        #[test]
        fn limits_are_clamped_into_one_to_max(
            value in prop::option::of(param()),
            max in 1u32..=1000,
            default in 1u32..=1000,
        ) {
            let default = default.min(max);
            match limit(value.as_deref(), default, max) {
                Ok(l) => {
                    prop_assert!((1..=max).contains(&l), "{} not in 1..={}", l, max);
                    let n = value.as_deref().map(str::trim).filter(|v| !v.is_empty());
                    let expected = match n.map(str::parse::<i64>) {
                        None | Some(Ok(0)) => default,
                        Some(Ok(n)) => u32::try_from(n.unsigned_abs()).unwrap_or(u32::MAX).min(max),
                        Some(Err(_)) => unreachable!(),
                    };
                    prop_assert_eq!(l, expected);
                }
                Err(e) => prop_assert_eq!(e.status, 422),
            }
        }

        #[test]
        fn page_params_never_panic(
            max_id in prop::option::of(param()),
            since_id in prop::option::of(param()),
            min_id in prop::option::of(param()),
            limit in prop::option::of(param()),
        ) {
            let params = PageParams { max_id, since_id, min_id, limit };
            match params.page(20, 40) {
                Ok(page) => prop_assert!((1..=40).contains(&page.limit)),
                Err(e) => prop_assert_eq!(e.status, 422),
            }
            prop_assert_eq!(
                params.page(20, 40).map_err(|e| e.status),
                params.timeline_page(20, 40).map(|p| rookery_proto::users::v1::Page {
                    max_id: p.max_id,
                    since_id: p.since_id,
                    min_id: p.min_id,
                    limit: p.limit,
                }).map_err(|e| e.status)
            );
        }

        #[test]
        fn link_header_round_trips(
            base in prop::sample::select(vec!["https://x.test", "http://localhost:3000"]),
            path in path(),
            pairs in query_pairs(),
            request_limit in prop::option::of(any::<i64>().prop_map(|n| n.to_string())),
            next in prop::option::of(any::<i64>()),
            prev in prop::option::of(any::<i64>()),
        ) {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            let uri: Uri = match format!("{path}?{query}").parse() {
                Ok(uri) => uri,
                Err(_) => return Err(TestCaseError::reject("not a request target")),
            };
            // URL parsers resolve `.` and `..` segments (escaped or not): such a path
            // cannot come back as it was, whatever the header says.
            if decode_path(uri.path()).split(|&b| b == b'/').any(|s| s == b"." || s == b"..") {
                return Err(TestCaseError::reject("dot segments"));
            }
            let params = PageParams { limit: request_limit, ..Default::default() };
            let Ok(page) = params.page(20, 40) else {
                return Err(TestCaseError::reject("a 422 before any link"));
            };
            let header = params.link_cursors(base, &uri, page.limit, next, prev);
            prop_assert_eq!(header.is_some(), next.is_some() || prev.is_some());
            let Some(header) = header else { return Ok(()) };
            let header = header.to_str().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let entries = link_entries(header).map_err(|e| TestCaseError::fail(format!("{e}: {header}")))?;
            let expected: Vec<(&str, &str, i64)> = next
                .map(|n| ("next", "max_id", n))
                .into_iter()
                .chain(prev.map(|p| ("prev", "min_id", p)))
                .collect();
            prop_assert_eq!(entries.len(), expected.len());
            let kept: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .filter(|(k, _)| !matches!(k.as_str(), "max_id" | "min_id" | "since_id" | "limit"))
                .collect();
            for ((link, rel), (want_rel, key, cursor)) in entries.iter().zip(expected) {
                prop_assert_eq!(rel, want_rel);
                let url = url::Url::parse(link).map_err(|e| TestCaseError::fail(format!("{e}: {link}")))?;
                prop_assert_eq!(url.origin().ascii_serialization(), base);
                // The same path, modulo percent-encoding.
                prop_assert_eq!(decode_path(url.path()), decode_path(uri.path()), "{}", header);
                let got: Vec<(String, String)> = url.query_pairs().into_owned().collect();
                // The cursor once, the limit (as clamped) when the request had one, and
                // every other parameter as it was.
                let cursors: Vec<(String, String)> = got
                    .iter()
                    .filter(|(k, _)| matches!(k.as_str(), "max_id" | "min_id" | "since_id"))
                    .cloned()
                    .collect();
                prop_assert_eq!(cursors, vec![(key.to_owned(), cursor.to_string())]);
                let limits: Vec<String> =
                    got.iter().filter(|(k, _)| k == "limit").map(|(_, v)| v.clone()).collect();
                if params.limit.is_some() {
                    prop_assert_eq!(limits, vec![page.limit.to_string()]);
                } else {
                    prop_assert!(limits.is_empty());
                }
                let others: Vec<(String, String)> = got
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "max_id" | "min_id" | "since_id" | "limit"))
                    .cloned()
                    .collect();
                prop_assert_eq!(&others, &kept);
                // The linked page parses back to the cursor.
                let again: PageParams = serde_html_form::from_str(url.query().unwrap_or(""))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let again = again.page(20, 40).map_err(|e| TestCaseError::fail(e.error))?;
                let got_cursor = if key == "max_id" { again.max_id } else { again.min_id };
                prop_assert_eq!(got_cursor, Some(cursor));
                prop_assert_eq!(again.limit, page.limit);
            }
        }

        #[test]
        fn next_only_for_full_pages(
            len in 0usize..100,
            limit in 1u32..=80,
            newest in prop::option::of(any::<i64>()),
            oldest in prop::option::of(any::<i64>()),
        ) {
            let params = PageParams::default();
            let page = pb::Page { limit, ..Default::default() };
            let uri: Uri = "/api/v1/favourites".parse().unwrap();
            let header = params.link("https://x.test", &uri, &page, len, newest, oldest);
            let rels: Vec<String> = header
                .map(|h| link_entries(h.to_str().unwrap()).unwrap())
                .unwrap_or_default()
                .into_iter()
                .map(|(_, rel)| rel)
                .collect();
            let mut expected = Vec::new();
            if oldest.is_some() && len >= limit as usize {
                expected.push("next");
            }
            if newest.is_some() {
                expected.push("prev");
            }
            prop_assert_eq!(rels, expected);
        }
    }
}
