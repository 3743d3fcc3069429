//! The route table of the public API.

pub mod accounts;
pub mod graph;
pub mod instance;
pub mod oauth;

use axum::{
    Router,
    routing::{get, patch, post},
};

use crate::state::AppState;
use graph::PairAction;

/// Every route the gateway serves (ops endpoints are added in [`crate::app`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/apps", post(oauth::create_app))
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route(
            "/oauth/authorize",
            get(oauth::authorize_form).post(oauth::authorize),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata),
        )
        .route("/api/v1/accounts", post(accounts::register))
        .route(
            "/api/v1/accounts/verify_credentials",
            get(accounts::verify_credentials),
        )
        .route(
            "/api/v1/accounts/update_credentials",
            patch(accounts::update_credentials),
        )
        .route("/api/v1/accounts/lookup", get(accounts::lookup))
        .route("/api/v1/accounts/search", get(graph::search))
        .route("/api/v1/accounts/relationships", get(graph::relationships))
        .route("/api/v1/accounts/{id}", get(accounts::show))
        .route("/api/v1/accounts/{id}/follow", post(graph::follow))
        .route(
            "/api/v1/accounts/{id}/unfollow",
            graph::pair_route(PairAction::Unfollow),
        )
        .route(
            "/api/v1/accounts/{id}/remove_from_followers",
            graph::pair_route(PairAction::RemoveFromFollowers),
        )
        .route(
            "/api/v1/accounts/{id}/block",
            graph::pair_route(PairAction::Block),
        )
        .route(
            "/api/v1/accounts/{id}/unblock",
            graph::pair_route(PairAction::Unblock),
        )
        .route("/api/v1/accounts/{id}/mute", post(graph::mute))
        .route(
            "/api/v1/accounts/{id}/unmute",
            graph::pair_route(PairAction::Unmute),
        )
        .route("/api/v1/accounts/{id}/followers", get(graph::followers))
        .route("/api/v1/accounts/{id}/following", get(graph::following))
        .route("/api/v1/follow_requests", get(graph::follow_requests))
        .route(
            "/api/v1/follow_requests/{id}/authorize",
            graph::pair_route(PairAction::Authorize),
        )
        .route(
            "/api/v1/follow_requests/{id}/reject",
            graph::pair_route(PairAction::Reject),
        )
        .route("/api/v1/blocks", get(graph::blocks))
        .route("/api/v1/mutes", get(graph::mutes))
        // Mastodon.py asks for the instance documents with a trailing slash.
        .route("/api/v1/instance", get(instance::v1))
        .route("/api/v1/instance/", get(instance::v1))
        .route("/api/v2/instance", get(instance::v2))
        .route("/api/v2/instance/", get(instance::v2))
        .route("/.well-known/nodeinfo", get(instance::nodeinfo_discovery))
        .route("/nodeinfo/2.0", get(instance::nodeinfo))
        .route(
            "/avatars/original/missing.png",
            get(instance::missing_image),
        )
        .route(
            "/headers/original/missing.png",
            get(instance::missing_image),
        )
}
