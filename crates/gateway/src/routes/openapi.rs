//! `GET /api/v1/openapi.json`: the OpenAPI description of the operations the gateway
//! serves (crates/gateway/openapi.json, compiled in).
//!
//! The document is derived from Mastodon's by `deploy/dev/openapi-subset.py` (the list
//! of served operations is `deploy/dev/openapi-operations.txt`; Rookery's differences
//! are the script's documented overrides) and fuzzed against a live stack by
//! `deploy/dev/api-fuzz.sh` (`make api-fuzz`). The tests below fail when the router and
//! the document disagree: a route missing from the document, or a documented operation
//! the gateway does not serve.

use std::sync::LazyLock;

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

/// The document, as committed.
pub const DOCUMENT: &[u8] = include_bytes!("../../openapi.json");

/// Clients may reuse it for a while and revalidate it for free after that.
const CACHE_CONTROL: &str = "public, max-age=300";

/// A strong validator: the first 128 bits of the document's SHA-256.
static ETAG: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(DOCUMENT);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
});

/// True when `If-None-Match` names the current document (or `*`).
fn not_modified(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == ETAG.as_str())
}

/// `GET /api/v1/openapi.json` (public).
pub async fn document(headers: HeaderMap) -> Response {
    let mut common = HeaderMap::new();
    common.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if let Ok(tag) = HeaderValue::from_str(&ETAG) {
        common.insert(header::ETAG, tag);
    }
    if not_modified(&headers) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    common.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (common, Body::from(DOCUMENT)).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::{BTreeMap, BTreeSet};

    use axum::{Router, extract::Request};
    use http::Method;
    use serde_json::Value;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use super::*;

    /// What a request no route matches answers (the app's fallback is a 404).
    const UNMATCHED: StatusCode = StatusCode::MISDIRECTED_REQUEST;
    /// The methods the API uses; HEAD comes with GET.
    const METHODS: [Method; 5] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];

    fn document_json() -> Value {
        serde_json::from_slice(DOCUMENT).expect("crates/gateway/openapi.json is not JSON")
    }

    /// Documented operations: path → methods (upper case).
    fn documented() -> BTreeMap<String, BTreeSet<String>> {
        let doc = document_json();
        let paths = doc["paths"].as_object().expect("no paths");
        paths
            .iter()
            .map(|(path, item)| {
                let methods = item
                    .as_object()
                    .expect("a path item is an object")
                    .keys()
                    .filter(|k| METHODS.iter().any(|m| m.as_str().eq_ignore_ascii_case(k)))
                    .map(|k| k.to_ascii_uppercase())
                    .collect();
                (path.clone(), methods)
            })
            .collect()
    }

    /// `path` with each `{param}` replaced by `fill`.
    fn fill_params(path: &str, fill: &str) -> String {
        let mut out = String::with_capacity(path.len());
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str(fill);
                }
                '}' => in_param = false,
                _ if !in_param => out.push(c),
                _ => {}
            }
        }
        out
    }

    /// `/a/{id}/b`, `/a/{account_id}/b` and `/a/{*key}` alike: parameters unnamed.
    fn shape(path: &str) -> String {
        fill_params(path, "{}")
    }

    /// A concrete request path for a documented template.
    fn concrete(path: &str) -> String {
        // A wildcard (`/system/media/{*key}`) takes slashes too.
        let value = if path.starts_with("/system/media/") {
            "a/b/c.png"
        } else {
            "1"
        };
        fill_params(path, value)
    }

    /// Every route of the app (ops endpoints aside); unmatched requests answer
    /// [`UNMATCHED`].
    fn app() -> Router {
        let config = crate::Config::for_tests(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
            &rookery_kit::testing::redis_url(),
            &rookery_kit::testing::redis_prefix(),
        );
        let shutdown = CancellationToken::new();
        let state = crate::state(config, &shutdown).expect("state");
        super::super::router()
            .merge(crate::streaming::router())
            .merge(super::super::media::upload_router())
            .fallback(|| async { UNMATCHED })
            .with_state(state)
    }

    /// The methods served on `path` (a concrete path), `None` when no route matches it.
    /// Asked with TRACE, which no route serves: the matching route answers 405 with the
    /// methods it has in `Allow`, and no handler runs.
    async fn served_methods(app: &Router, path: &str) -> Option<BTreeSet<String>> {
        let req = Request::builder()
            .method(Method::TRACE)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        match res.status() {
            UNMATCHED => None,
            StatusCode::METHOD_NOT_ALLOWED => Some(
                res.headers()
                    .get(header::ALLOW)
                    .map(|v| v.to_str().unwrap())
                    .unwrap_or("")
                    .split(',')
                    .map(|m| m.trim().to_ascii_uppercase())
                    .filter(|m| METHODS.iter().any(|known| known.as_str() == m))
                    .collect(),
            ),
            other => panic!("TRACE {path}: {other}, expected 405 (or no route)"),
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_unique_operation_ids() {
        let doc = document_json();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
                assert!(ids.insert(id.to_owned()), "operationId {id} used twice");
            }
        }
    }

    /// Each documented path reaches a route that serves exactly the documented methods.
    #[tokio::test]
    async fn every_documented_operation_is_served_and_no_other_method() {
        let app = app();
        let mut problems = Vec::new();
        for (path, documented) in documented() {
            let uri = concrete(&path);
            match served_methods(&app, &uri).await {
                None => problems.push(format!("{path} is documented but no route matches {uri}")),
                Some(served) => {
                    for m in documented.difference(&served) {
                        problems.push(format!("{m} {path} is documented but not served"));
                    }
                    for m in served.difference(&documented) {
                        problems.push(format!("{m} {path} is served but not documented"));
                    }
                }
            }
        }
        assert!(
            problems.is_empty(),
            "crates/gateway/openapi.json and the router disagree (update \
             deploy/dev/openapi-operations.txt and rerun deploy/dev/openapi-subset.py):\n  {}",
            problems.join("\n  ")
        );
    }

    /// The route paths written in the gateway's sources (`.route("…"`).
    fn source_routes() -> BTreeSet<String> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut routes = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let mut rest = text.as_str();
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + ".route(".len()..];
                let literal = rest.trim_start();
                // Only a path literal (it starts with a slash) names a route.
                if let Some(body) = literal.strip_prefix("\"/") {
                    let end = body.find('"').unwrap();
                    routes.insert(format!("/{}", &body[..end]));
                }
            }
        }
        routes
    }

    /// Every path routed in the sources is documented, and every documented path is
    /// routed in the sources: together with the test above, the document's (method,
    /// path) set is the router's.
    #[test]
    fn every_route_in_the_sources_is_documented() {
        let routes = source_routes();
        assert!(routes.len() > 50, "the source scan found only {routes:?}");
        let routed: BTreeSet<String> = routes.iter().map(|p| shape(p)).collect();
        let documented: BTreeSet<String> = documented().keys().map(|p| shape(p)).collect();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "routed but not documented: {missing:?}; documented but not routed: {extra:?} \
             (update deploy/dev/openapi-operations.txt and rerun deploy/dev/openapi-subset.py)"
        );
    }

    #[tokio::test]
    async fn the_document_is_served_as_cacheable_json() {
        let res = document(HeaderMap::new()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(res.headers()[header::CACHE_CONTROL], CACHE_CONTROL);
        let tag = res.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, tag);
        let res = document(headers).await;
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    }
}
