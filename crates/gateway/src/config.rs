//! Configuration of the gateway, from environment variables.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use ipnet::IpNet;

use rookery_kit::{
    Result,
    config::{RedisConfig, env_millis, env_or, env_parse},
};

/// Everything the gateway needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address: `GATEWAY_ADDR` (default `127.0.0.1:8080`).
    pub addr: SocketAddr,
    /// The users service: `USERS_URL` (default `http://127.0.0.1:50051`).
    pub users_url: String,
    /// The timeline service: `TIMELINE_URL` (default `http://127.0.0.1:50052`).
    pub timeline_url: String,
    /// The notifications service: `NOTIFICATIONS_URL` (default `http://127.0.0.1:50053`).
    pub notifications_url: String,
    /// The media service: `MEDIA_URL` (default `http://127.0.0.1:50054`).
    pub media_url: String,
    /// Where media files are served from, without a trailing slash: `MEDIA_BASE_URL`
    /// (default `{ROOKERY_BASE_URL}/system/media`, this gateway; a CDN or the bucket's
    /// public URL in production).
    pub media_base_url: String,
    /// Largest upload request body: `MEDIA_UPLOAD_MAX_BYTES` (default 116 MiB: a 99 MiB
    /// video, a 16 MiB preview and the form's framing). Larger ones get 413 from their
    /// Content-Length, before anything is read.
    pub upload_limit: usize,
    /// Deadline of an upload, processing included: `MEDIA_UPLOAD_TIMEOUT_MS` (default
    /// 10 minutes; `/api/v1/media` waits for video to be transcoded).
    pub upload_timeout: Duration,
    /// Redis (`REDIS_URL`, `REDIS_PREFIX`, `REDIS_TIMEOUT_MS`, `REDIS_POOL_SIZE`).
    pub redis: RedisConfig,
    /// Public facts about the instance.
    pub instance: InstanceConfig,
    /// Budget of a whole request: `GATEWAY_REQUEST_TIMEOUT_MS` (default 10 000).
    pub request_timeout: Duration,
    /// Budget of one gRPC call: `GRPC_CALL_TIMEOUT_MS` (default 5 000).
    pub grpc_timeout: Duration,
    /// Largest accepted request body: `GATEWAY_BODY_LIMIT_BYTES` (default 1 MiB).
    pub body_limit: usize,
    /// Lifetime of a cached token resolution: `GATEWAY_TOKEN_CACHE_TTL_MS` (default 60 000).
    /// Revocations evict at once through Redis; the TTL bounds staleness when Redis is down.
    pub token_cache_ttl: Duration,
    /// Token resolutions kept in process: `GATEWAY_TOKEN_CACHE_CAPACITY` (default 100 000).
    pub token_cache_capacity: u64,
    /// Lifetime of a cached account entity: `GATEWAY_ACCOUNT_CACHE_TTL_MS` (default 30 000).
    /// Changes evict at once through Redis; the TTL bounds staleness when Redis is down.
    pub account_cache_ttl: Duration,
    /// Account entities kept in process: `GATEWAY_ACCOUNT_CACHE_CAPACITY` (default 100 000).
    pub account_cache_capacity: u64,
    /// The streaming API.
    pub streaming: StreamingConfig,
    /// API requests handled at once; more are refused at once with 503 so that an
    /// overload sheds load instead of queueing it: `GATEWAY_MAX_IN_FLIGHT` (default 512).
    pub max_in_flight: usize,
    /// Time a client has to send a request's headers before its connection is closed
    /// (slowloris): `GATEWAY_HEADER_READ_TIMEOUT_MS` (default 75 000). hyper runs the same
    /// timer while a keep-alive connection waits for its next request, so this is also
    /// the idle timeout. It must outlast the upstream keep-alive of the proxy in front
    /// (ingress-nginx and most load balancers: 60 s); a proxy that reuses a connection
    /// the gateway is closing fails the request with a 502.
    pub header_read_timeout: Duration,
    /// On SIGTERM, time spent still serving while readiness reports draining, before the
    /// listener closes: `GATEWAY_DRAIN_DELAY_MS` (default 0; Kubernetes' preStop hook
    /// already waits for endpoints to update).
    pub drain_delay: Duration,
    /// Rate limits; `None` with `GATEWAY_RATE_LIMITS=off`.
    pub rate_limits: Option<RateLimitConfig>,
}

/// A number of actions per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Actions allowed per window.
    pub count: u64,
    /// The window.
    pub window: Duration,
}

impl Limit {
    const fn new(count: u64, window_secs: u64) -> Self {
        Self {
            count,
            window: Duration::from_secs(window_secs),
        }
    }
}

/// `COUNT/SECONDS`, e.g. `300/300`.
impl FromStr for Limit {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        let (count, secs) = s.split_once('/').ok_or(())?;
        let count = count.trim().parse().map_err(|_| ())?;
        let secs: u64 = secs.trim().parse().map_err(|_| ())?;
        if secs == 0 {
            return Err(());
        }
        Ok(Self::new(count, secs))
    }
}

/// Mastodon's limits (docs: "Rate limits"), each `GATEWAY_RATE_LIMIT_<NAME>=COUNT/SECONDS`.
#[derive(Clone, Debug)]
pub struct RateLimitConfig {
    /// Requests per token: `…_API` (300 per 5 minutes).
    pub api: Limit,
    /// Requests without a token, per IP: `…_UNAUTHENTICATED` (300 per 5 minutes).
    pub unauthenticated: Limit,
    /// Media uploads per token: `…_MEDIA` (30 per 30 minutes).
    pub media: Limit,
    /// Status deletes and un-reblogs per token: `…_DELETES` (30 per 30 minutes).
    pub deletes: Limit,
    /// Sign-ups per IP: `…_SIGN_UPS` (5 per 30 minutes).
    pub sign_ups: Limit,
    /// Token requests and sign-in forms per IP: `…_LOGINS` (25 per 5 minutes, Mastodon's
    /// login throttle; the users service also limits failed logins per account).
    pub logins: Limit,
    /// Clients never limited: `GATEWAY_RATE_LIMIT_SAFELIST` (default loopback, as
    /// Mastodon safelists localhost; `none` limits everyone).
    pub safelist: Vec<IpNet>,
    /// Proxies whose `X-Forwarded-For` is believed: `GATEWAY_TRUSTED_PROXIES` (default
    /// loopback and the private ranges, where ingress controllers live).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let nets = |list: &str| parse_nets(list).unwrap_or_default();
        Self {
            api: Limit::new(300, 300),
            unauthenticated: Limit::new(300, 300),
            media: Limit::new(30, 1800),
            deletes: Limit::new(30, 1800),
            sign_ups: Limit::new(5, 1800),
            logins: Limit::new(25, 300),
            safelist: nets(DEFAULT_SAFELIST),
            trusted_proxies: nets(DEFAULT_TRUSTED_PROXIES),
        }
    }
}

const DEFAULT_SAFELIST: &str = "127.0.0.0/8,::1/128";
const DEFAULT_TRUSTED_PROXIES: &str =
    "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

/// A comma-separated list of networks (a bare address is a /32 or /128); `none` is the
/// empty list (an empty variable means "the default").
fn parse_nets(list: &str) -> std::result::Result<Vec<IpNet>, String> {
    if list.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("not a network: {s}"))
        })
        .collect()
}

impl RateLimitConfig {
    /// Reads `GATEWAY_RATE_LIMIT*`; `None` when `GATEWAY_RATE_LIMITS=off`.
    pub fn from_env() -> Result<Option<Self>> {
        if !env_parse("GATEWAY_RATE_LIMITS", Switch(true))?.0 {
            return Ok(None);
        }
        let d = Self::default();
        let nets = |name: &str, default: &str| {
            parse_nets(&env_or(name, default))
                .map_err(|e| rookery_kit::Error::Config(format!("{name}: {e}")))
        };
        Ok(Some(Self {
            api: env_parse("GATEWAY_RATE_LIMIT_API", d.api)?,
            unauthenticated: env_parse("GATEWAY_RATE_LIMIT_UNAUTHENTICATED", d.unauthenticated)?,
            media: env_parse("GATEWAY_RATE_LIMIT_MEDIA", d.media)?,
            deletes: env_parse("GATEWAY_RATE_LIMIT_DELETES", d.deletes)?,
            sign_ups: env_parse("GATEWAY_RATE_LIMIT_SIGN_UPS", d.sign_ups)?,
            logins: env_parse("GATEWAY_RATE_LIMIT_LOGINS", d.logins)?,
            safelist: nets("GATEWAY_RATE_LIMIT_SAFELIST", DEFAULT_SAFELIST)?,
            trusted_proxies: nets("GATEWAY_TRUSTED_PROXIES", DEFAULT_TRUSTED_PROXIES)?,
        }))
    }
}

/// `on`/`off` (or true/false, 1/0).
struct Switch(bool);

impl FromStr for Switch {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => Ok(Self(true)),
            "off" | "false" | "0" | "no" => Ok(Self(false)),
            _ => Err(()),
        }
    }
}

/// Limits of the streaming API.
#[derive(Clone, Debug)]
pub struct StreamingConfig {
    /// Interval of heartbeats (SSE comments, WebSocket pings):
    /// `STREAMING_HEARTBEAT_MS` (default 15 000).
    pub heartbeat: Duration,
    /// Events buffered per connection; a client that falls this far behind is
    /// disconnected: `STREAMING_BUFFER` (default 256).
    pub buffer: usize,
    /// Open streaming connections per replica; more are refused with 503:
    /// `STREAMING_MAX_CONNECTIONS` (default 20 000).
    pub max_connections: usize,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            buffer: 256,
            max_connections: 20_000,
        }
    }
}

/// What the instance documents say about this server.
#[derive(Clone, Debug)]
pub struct InstanceConfig {
    /// Host name: `ROOKERY_DOMAIN` (default `127.0.0.1:8080`).
    pub domain: String,
    /// Public base URL: `ROOKERY_BASE_URL` (default `http://{domain}`).
    pub base_url: String,
    /// Streaming base URL: `ROOKERY_STREAMING_URL` (default: base URL with ws/wss).
    pub streaming_url: String,
    /// `ROOKERY_TITLE` (default `Rookery`).
    pub title: String,
    /// `ROOKERY_DESCRIPTION`.
    pub description: String,
    /// `ROOKERY_CONTACT_EMAIL` (default empty).
    pub contact_email: String,
    /// `ROOKERY_REGISTRATIONS_OPEN` (default true).
    pub registrations_open: bool,
}

impl InstanceConfig {
    /// Defaults for `domain` served over `base_url`.
    pub fn new(domain: &str, base_url: &str) -> Self {
        let base_url = base_url.trim_end_matches('/').to_owned();
        Self {
            domain: domain.to_owned(),
            streaming_url: base_url.replacen("http", "ws", 1),
            base_url,
            title: "Rookery".to_owned(),
            description: "A fast microblogging server speaking the Mastodon client API.".to_owned(),
            contact_email: String::new(),
            registrations_open: true,
        }
    }
}

impl Config {
    /// Reads the configuration; a malformed value stops the process with its name.
    pub fn from_env() -> Result<Self> {
        let addr = env_or("GATEWAY_ADDR", "127.0.0.1:8080");
        let domain = env_or("ROOKERY_DOMAIN", "127.0.0.1:8080");
        let base_url = env_or("ROOKERY_BASE_URL", &format!("http://{domain}"));
        let mut instance = InstanceConfig::new(&domain, &base_url);
        instance.streaming_url = env_or("ROOKERY_STREAMING_URL", &instance.streaming_url);
        instance.title = env_or("ROOKERY_TITLE", &instance.title);
        instance.description = env_or("ROOKERY_DESCRIPTION", &instance.description);
        instance.contact_email = env_or("ROOKERY_CONTACT_EMAIL", "");
        instance.registrations_open = env_parse("ROOKERY_REGISTRATIONS_OPEN", true)?;
        Ok(Self {
            addr: addr.parse().map_err(|_| {
                rookery_kit::Error::Config("GATEWAY_ADDR: not a socket address".into())
            })?,
            users_url: env_or("USERS_URL", "http://127.0.0.1:50051"),
            timeline_url: env_or("TIMELINE_URL", "http://127.0.0.1:50052"),
            notifications_url: env_or("NOTIFICATIONS_URL", "http://127.0.0.1:50053"),
            media_url: env_or("MEDIA_URL", "http://127.0.0.1:50054"),
            media_base_url: env_or("MEDIA_BASE_URL", &format!("{base_url}/system/media"))
                .trim_end_matches('/')
                .to_owned(),
            upload_limit: env_parse("MEDIA_UPLOAD_MAX_BYTES", 116 * 1024 * 1024)?,
            upload_timeout: env_millis("MEDIA_UPLOAD_TIMEOUT_MS", 600_000)?,
            redis: RedisConfig::from_env()?,
            instance,
            request_timeout: env_millis("GATEWAY_REQUEST_TIMEOUT_MS", 10_000)?,
            grpc_timeout: env_millis("GRPC_CALL_TIMEOUT_MS", 5_000)?,
            body_limit: env_parse("GATEWAY_BODY_LIMIT_BYTES", 1024 * 1024)?,
            token_cache_ttl: env_millis("GATEWAY_TOKEN_CACHE_TTL_MS", 60_000)?,
            token_cache_capacity: env_parse("GATEWAY_TOKEN_CACHE_CAPACITY", 100_000)?,
            account_cache_ttl: env_millis("GATEWAY_ACCOUNT_CACHE_TTL_MS", 30_000)?,
            account_cache_capacity: env_parse("GATEWAY_ACCOUNT_CACHE_CAPACITY", 100_000)?,
            streaming: StreamingConfig {
                heartbeat: env_millis("STREAMING_HEARTBEAT_MS", 15_000)?,
                buffer: env_parse("STREAMING_BUFFER", 256)?,
                max_connections: env_parse("STREAMING_MAX_CONNECTIONS", 20_000)?,
            },
            max_in_flight: env_parse("GATEWAY_MAX_IN_FLIGHT", 512)?,
            header_read_timeout: env_millis("GATEWAY_HEADER_READ_TIMEOUT_MS", 75_000)?,
            drain_delay: env_millis("GATEWAY_DRAIN_DELAY_MS", 0)?,
            rate_limits: RateLimitConfig::from_env()?,
        })
    }

    /// A configuration for tests: the given services and Redis, other values default.
    pub fn for_tests(
        users_url: &str,
        timeline_url: &str,
        redis_url: &str,
        redis_prefix: &str,
    ) -> Self {
        Self {
            addr: ([127, 0, 0, 1], 0).into(),
            users_url: users_url.to_owned(),
            timeline_url: timeline_url.to_owned(),
            notifications_url: "http://127.0.0.1:50053".to_owned(),
            media_url: "http://127.0.0.1:50054".to_owned(),
            media_base_url: "http://rookery.test/system/media".to_owned(),
            upload_limit: 116 * 1024 * 1024,
            upload_timeout: Duration::from_secs(600),
            redis: RedisConfig::for_url(redis_url, redis_prefix),
            instance: InstanceConfig::new("rookery.test", "http://rookery.test"),
            request_timeout: Duration::from_secs(10),
            grpc_timeout: Duration::from_secs(5),
            body_limit: 64 * 1024,
            token_cache_ttl: Duration::from_secs(60),
            token_cache_capacity: 10_000,
            account_cache_ttl: Duration::from_secs(30),
            account_cache_capacity: 10_000,
            streaming: StreamingConfig::default(),
            max_in_flight: 512,
            header_read_timeout: Duration::from_secs(75),
            drain_delay: Duration::ZERO,
            // Tests reach the gateway from loopback: safelisted like any local client.
            rate_limits: Some(RateLimitConfig::default()),
        }
    }
}
