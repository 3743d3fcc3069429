//! Instance documents (`/api/v1/instance`, `/api/v2/instance`), NodeInfo, and the static
//! images they and account entities point at.

use axum::{
    Json,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use serde_json::Value;

use crate::{
    mastodon::instance::{self, InstanceInfo},
    state::AppState,
};

const MISSING_PNG: &[u8] = include_bytes!("../../assets/missing.png");

async fn info<R>(state: &AppState, build: impl FnOnce(&InstanceInfo<'_>) -> R) -> R {
    let stats = state.stats().await;
    let c = &state.config.instance;
    build(&InstanceInfo {
        domain: &c.domain,
        base_url: &c.base_url,
        streaming_url: &c.streaming_url,
        title: &c.title,
        description: &c.description,
        contact_email: &c.contact_email,
        registrations_open: c.registrations_open,
        software_version: env!("CARGO_PKG_VERSION"),
        max_status_chars: 500,
        max_media_attachments: 4,
        user_count: stats.user_count,
        status_count: 0,
        active_month: stats.active_month,
        active_halfyear: stats.active_halfyear,
        contact_account: None,
    })
}

/// Public documents change slowly: let clients and proxies reuse them for a minute.
fn cached(body: Value) -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=60")], Json(body)).into_response()
}

/// `GET /api/v1/instance`
pub async fn v1(State(state): State<AppState>) -> Response {
    cached(info(&state, instance::v1).await)
}

/// `GET /api/v2/instance`
pub async fn v2(State(state): State<AppState>) -> Response {
    cached(info(&state, instance::v2).await)
}

/// `GET /.well-known/nodeinfo`
pub async fn nodeinfo_discovery(State(state): State<AppState>) -> Response {
    cached(instance::nodeinfo_discovery(
        &state.config.instance.base_url,
    ))
}

/// `GET /nodeinfo/2.0`
pub async fn nodeinfo(State(state): State<AppState>) -> Response {
    let body = info(&state, instance::nodeinfo).await;
    (
        [
            (
                header::CONTENT_TYPE,
                "application/json; profile=\"http://nodeinfo.diaspora.software/ns/schema/2.0#\"",
            ),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The default avatar/header/icon image (immutable).
pub async fn missing_image() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        MISSING_PNG,
    )
        .into_response()
}
