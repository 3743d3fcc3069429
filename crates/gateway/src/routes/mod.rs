//! The route table of the public API.

pub mod accounts;
pub mod graph;
pub mod instance;
pub mod media;
pub mod notifications;
pub mod oauth;
pub mod openapi;
pub mod statuses;
pub mod timelines;

use axum::{
    Router,
    routing::{get, patch, post},
};
use rookery_proto::timeline::v1::Interaction;

use crate::state::AppState;
use graph::PairAction;
use statuses::interaction_route;

/// Every route the gateway serves (ops endpoints are added in [`crate::app`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/apps", post(oauth::create_app))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route(
            "/api/v1/media/{id}",
            get(media::show).put(media::update).delete(media::delete),
        )
        .route("/system/media/{*key}", get(media::serve))
        .route("/api/v1/notifications", get(notifications::list))
        .route("/api/v1/notifications/clear", post(notifications::clear))
        .route(
            "/api/v1/notifications/unread_count",
            get(notifications::unread_count_v1),
        )
        .route("/api/v1/notifications/{id}", get(notifications::show))
        .route(
            "/api/v1/notifications/{id}/dismiss",
            post(notifications::dismiss),
        )
        .route("/api/v2/notifications", get(notifications::grouped))
        .route(
            "/api/v2/notifications/unread_count",
            get(notifications::unread_count_v2),
        )
        .route(
            "/api/v2/notifications/{group_key}",
            get(notifications::group),
        )
        .route(
            "/api/v2/notifications/{group_key}/accounts",
            get(notifications::group_accounts),
        )
        .route(
            "/api/v2/notifications/{group_key}/dismiss",
            post(notifications::dismiss_group),
        )
        .route(
            "/api/v1/markers",
            get(notifications::markers).post(notifications::set_markers),
        )
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
        .route(
            "/api/v1/accounts/{id}/statuses",
            get(timelines::account_statuses),
        )
        .route(
            "/api/v1/statuses",
            post(statuses::create).get(statuses::batch),
        )
        .route(
            "/api/v1/statuses/{id}",
            get(statuses::show)
                .put(statuses::edit)
                .delete(statuses::delete),
        )
        .route("/api/v1/statuses/{id}/context", get(statuses::context))
        .route("/api/v1/statuses/{id}/history", get(statuses::history))
        .route("/api/v1/statuses/{id}/source", get(statuses::source))
        .route(
            "/api/v1/statuses/{id}/favourite",
            interaction_route(Interaction::Favourite),
        )
        .route(
            "/api/v1/statuses/{id}/unfavourite",
            interaction_route(Interaction::Unfavourite),
        )
        .route(
            "/api/v1/statuses/{id}/reblog",
            interaction_route(Interaction::Reblog),
        )
        .route(
            "/api/v1/statuses/{id}/unreblog",
            interaction_route(Interaction::Unreblog),
        )
        .route(
            "/api/v1/statuses/{id}/bookmark",
            interaction_route(Interaction::Bookmark),
        )
        .route(
            "/api/v1/statuses/{id}/unbookmark",
            interaction_route(Interaction::Unbookmark),
        )
        .route(
            "/api/v1/statuses/{id}/pin",
            interaction_route(Interaction::Pin),
        )
        .route(
            "/api/v1/statuses/{id}/unpin",
            interaction_route(Interaction::Unpin),
        )
        .route(
            "/api/v1/statuses/{id}/favourited_by",
            get(statuses::favourited_by),
        )
        .route(
            "/api/v1/statuses/{id}/reblogged_by",
            get(statuses::reblogged_by),
        )
        .route("/api/v1/favourites", get(statuses::favourites))
        .route("/api/v1/bookmarks", get(statuses::bookmarks))
        .route("/api/v1/timelines/home", get(timelines::home))
        .route("/api/v1/timelines/public", get(timelines::public))
        .route("/api/v1/timelines/tag/{hashtag}", get(timelines::tag))
        .route("/api/v1/tags/{name}", get(timelines::show_tag))
        .route("/api/v1/tags/{name}/follow", post(timelines::follow))
        .route("/api/v1/tags/{name}/unfollow", post(timelines::unfollow))
        .route("/api/v1/followed_tags", get(timelines::followed_tags))
        .route("/api/v1/trends", get(timelines::trending_tags))
        .route("/api/v1/trends/tags", get(timelines::trending_tags))
        .route("/api/v1/trends/statuses", get(timelines::trending_statuses))
        .route("/api/v2/search", get(timelines::search))
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
