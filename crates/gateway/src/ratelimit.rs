//! Mastodon's rate limits at the edge, counted in Redis so every gateway replica shares
//! them: requests per token (or per IP without one), and tighter limits on media uploads,
//! deletes, sign-ups and logins. Every limited response carries `X-RateLimit-Limit`,
//! `-Remaining` and `-Reset`; a refused one is a 429 with `Retry-After`.
//!
//! Limits fail open: when Redis is unreachable, requests go through (uncounted) rather
//! than fail, and the limiter stays out of the way for a second so an outage costs one
//! Redis timeout per second, not one per request.

use std::{
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use ipnet::IpNet;
use rookery_kit::{
    ratelimit::{Decision, RateLimit},
    redis::Redis,
};

use crate::{config::RateLimitConfig, error::ApiError, state::AppState};

/// How long the limiter stands aside after Redis failed.
const STAND_ASIDE: Duration = Duration::from_secs(1);

/// The limiters of one gateway.
pub struct RateLimits {
    config: RateLimitConfig,
    api: RateLimit,
    unauthenticated: RateLimit,
    media: RateLimit,
    deletes: RateLimit,
    signups: RateLimit,
    logins: RateLimit,
    /// Unix milliseconds until which the limiter is bypassed (Redis failed).
    bypass_until: AtomicU64,
}

/// What a request is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Any request with a token, per token.
    Api,
    /// Any request without a token, per IP.
    Unauthenticated,
    /// Media uploads, per token.
    Media,
    /// Status deletes and un-reblogs, per token.
    Deletes,
    /// Sign-ups, per IP.
    SignUps,
    /// Token requests and sign-in forms (password guessing), per IP.
    Logins,
}

impl Family {
    fn label(self) -> &'static str {
        match self {
            Family::Api => "api",
            Family::Unauthenticated => "unauthenticated",
            Family::Media => "media",
            Family::Deletes => "deletes",
            Family::SignUps => "sign_ups",
            Family::Logins => "logins",
        }
    }
}

/// The extra family a route counts against besides [`Family::Api`] or
/// [`Family::Unauthenticated`] (Mastodon's `throttle_api_media`, `throttle_api_delete`,
/// `throttle_sign_up_attempts`, `throttle_login_attempts`).
pub fn route_family(method: &Method, route: &str) -> Option<Family> {
    match (method, route) {
        (&Method::POST, "/api/v1/media" | "/api/v2/media") => Some(Family::Media),
        (&Method::DELETE, "/api/v1/statuses/{id}")
        | (&Method::POST, "/api/v1/statuses/{id}/unreblog") => Some(Family::Deletes),
        (&Method::POST, "/api/v1/accounts") => Some(Family::SignUps),
        (&Method::POST, "/oauth/token" | "/oauth/authorize") => Some(Family::Logins),
        _ => None,
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the last
/// address in `X-Forwarded-For` that is not one (the rightmost entries are the ones our
/// own proxies appended; anything left of them is the client's to forge).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in forwarded.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

impl RateLimits {
    /// Limiters over `redis` with `config`'s limits.
    pub fn new(redis: &Redis, config: RateLimitConfig) -> Self {
        let limiter = |family: Family, limit: crate::config::Limit| {
            RateLimit::new(redis.clone(), family.label(), limit.count, limit.window)
        };
        Self {
            api: limiter(Family::Api, config.api),
            unauthenticated: limiter(Family::Unauthenticated, config.unauthenticated),
            media: limiter(Family::Media, config.media),
            deletes: limiter(Family::Deletes, config.deletes),
            signups: limiter(Family::SignUps, config.sign_ups),
            logins: limiter(Family::Logins, config.logins),
            bypass_until: AtomicU64::new(0),
            config,
        }
    }

    fn limiter(&self, family: Family) -> &RateLimit {
        match family {
            Family::Api => &self.api,
            Family::Unauthenticated => &self.unauthenticated,
            Family::Media => &self.media,
            Family::Deletes => &self.deletes,
            Family::SignUps => &self.signups,
            Family::Logins => &self.logins,
        }
    }

    /// Counts one request in each family it belongs to (concurrently: one Redis round
    /// trip of latency). `None` when nothing could be counted.
    async fn count(&self, hits: &[(Family, &str)]) -> Option<Vec<(Family, Decision)>> {
        let now = unix_millis();
        if now < self.bypass_until.load(Ordering::Relaxed) {
            return None;
        }
        let decisions = futures::future::join_all(
            hits.iter()
                .map(|(family, subject)| self.limiter(*family).hit(subject)),
        )
        .await;
        let mut out = Vec::with_capacity(hits.len());
        for ((family, _), decision) in hits.iter().zip(decisions) {
            match decision {
                Ok(d) => out.push((*family, d)),
                Err(e) => {
                    tracing::warn!(error = %e, "rate limits unavailable, not enforced for a moment");
                    metrics::counter!("gateway_rate_limit_errors_total").increment(1);
                    self.bypass_until
                        .store(now + STAND_ASIDE.as_millis() as u64, Ordering::Relaxed);
                    return None;
                }
            }
        }
        Some(out)
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn headers(d: &Decision, refused: bool) -> HeaderMap {
    crate::error::limit_headers(d.limit, d.remaining, d.reset_at, refused)
}

/// The middleware: counts the request, refuses it with 429 when over a limit, and adds
/// the tightest limit's headers to the response otherwise.
pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(limits) = state.rate_limits.as_ref() else {
        return next.run(req).await;
    };
    let config = &limits.config;
    // Without a peer address (an in-process test server) there is no IP to count by.
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return next.run(req).await;
    };
    let ip = client_ip(peer.ip(), req.headers(), &config.trusted_proxies);
    if config.safelist.iter().any(|net| net.contains(&ip)) {
        return next.run(req).await;
    }
    // Per token, not per account: resolving the token would cost a lookup before the
    // limiter could refuse anything. Tokens are hashed: keys never hold a credential.
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::auth::credentials(v, "Bearer"))
        .map(|t| crate::auth::token_key(t.trim()));
    let ip = ip.to_string();
    let (main, subject) = match &token {
        Some(key) => (Family::Api, key.as_str()),
        None => (Family::Unauthenticated, ip.as_str()),
    };
    let mut hits = vec![(main, subject)];
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    if let Some(family) = route.and_then(|r| route_family(req.method(), r)) {
        // Sign-ups and logins are counted per address whoever asks (an app token
        // registers accounts); uploads and deletes per token.
        let by = match family {
            Family::SignUps | Family::Logins => ip.as_str(),
            _ => subject,
        };
        hits.push((family, by));
    }
    let Some(decisions) = limits.count(&hits).await else {
        return next.run(req).await;
    };
    if let Some((family, refused)) = decisions.iter().find(|(_, d)| !d.allowed) {
        metrics::counter!("gateway_rate_limited_total", "family" => family.label()).increment(1);
        let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        error.headers = Some(Box::new(headers(refused, true)));
        return error.into_response();
    }
    let mut response = next.run(req).await;
    // The tightest limit is the one a client must pace itself by.
    if let Some((_, tightest)) = decisions.iter().min_by_key(|(_, d)| d.remaining)
        && !response.headers().contains_key("x-ratelimit-limit")
    {
        response.headers_mut().extend(headers(tightest, false));
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use axum::http::HeaderValue;

    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.0/8"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A direct client cannot claim another address.
        assert_eq!(
            client_ip(ip("203.0.113.7"), &forwarded(&["1.2.3.4"]), &trusted),
            ip("203.0.113.7")
        );
        // Behind our proxy, the rightmost untrusted hop is the client; what it put on
        // the left is ignored.
        assert_eq!(
            client_ip(
                ip("10.1.2.3"),
                &forwarded(&["1.2.3.4, 198.51.100.9", "10.9.9.9"]),
                &trusted
            ),
            ip("198.51.100.9")
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            client_ip(
                ip("10.1.2.3"),
                &forwarded(&["nonsense, 10.2.2.2"]),
                &trusted
            ),
            ip("10.2.2.2")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn routes_map_to_mastodons_families() {
        assert_eq!(
            route_family(&Method::POST, "/api/v2/media"),
            Some(Family::Media)
        );
        assert_eq!(
            route_family(&Method::DELETE, "/api/v1/statuses/{id}"),
            Some(Family::Deletes)
        );
        assert_eq!(route_family(&Method::GET, "/api/v1/statuses/{id}"), None);
        assert_eq!(
            route_family(&Method::POST, "/api/v1/accounts"),
            Some(Family::SignUps)
        );
        assert_eq!(
            route_family(&Method::POST, "/oauth/token"),
            Some(Family::Logins)
        );
    }
}
