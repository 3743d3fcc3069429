//! `GET /api/v1/streaming/{user,user/notification,public,public/local,hashtag,
//! hashtag/local}`: one stream per response, as server-sent events
//! (`event: update` / `data: <JSON>`), with a `:thump` comment every heartbeat.
//!
//! A client too slow to keep up is unsubscribed at once (its memory stays bounded) and
//! its response ends as soon as the server can write to it again. On shutdown every
//! response ends, so the server's graceful shutdown can complete.

use std::convert::Infallible;

use axum::{
    extract::{Query, State},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::StreamExt;
use http::HeaderMap;

use super::{
    Params, authenticate,
    session::{Next, Session},
    stream::Stream,
};
use crate::{error::ApiError, state::AppState};

/// Answers with the events of stream `name`.
async fn serve(
    state: AppState,
    params: Params,
    headers: HeaderMap,
    name: &str,
) -> Result<Response, ApiError> {
    let (auth, token) = authenticate(&state, &headers, &params, false).await?;
    let stream = Stream::parse(name, params.tag.as_deref()).map_err(|r| r.into_api_error())?;
    stream.authorize(&auth).map_err(|r| r.into_api_error())?;
    let mut session = Session::open(&state, auth, token).await?;
    session
        .subscribe(stream)
        .await
        .map_err(|r| r.into_api_error())?;
    let heartbeat = session.heartbeat();
    let events = futures::stream::unfold(session, |mut session| async move {
        match session.next().await {
            Next::Event(_, event) => {
                let frame = Event::default()
                    .event(event.event.as_str())
                    .data(&event.payload);
                Some((Ok::<_, Infallible>(frame), session))
            }
            Next::End(_) => None,
        }
    });
    // Mastodon opens every event stream with this comment; it also gets the headers
    // through proxies that wait for a first byte.
    let hello = futures::stream::once(async { Ok(Event::default().comment(")")) });
    Ok(Sse::new(hello.chain(events))
        .keep_alive(KeepAlive::new().interval(heartbeat).text("thump"))
        .into_response())
}

/// `GET /api/v1/streaming/user`.
pub async fn user(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, params, headers, "user").await
}

/// `GET /api/v1/streaming/user/notification`.
pub async fn user_notification(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, params, headers, "user:notification").await
}

/// `GET /api/v1/streaming/public`.
pub async fn public(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, params, headers, "public").await
}

/// `GET /api/v1/streaming/public/local`.
pub async fn public_local(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, params, headers, "public:local").await
}

/// `GET /api/v1/streaming/hashtag?tag=`.
pub async fn hashtag(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, params, headers, "hashtag").await
}

/// `GET /api/v1/streaming/hashtag/local?tag=`.
pub async fn hashtag_local(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, params, headers, "hashtag:local").await
}
