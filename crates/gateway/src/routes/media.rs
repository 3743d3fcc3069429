//! Media: uploads (`POST /api/v2/media`, `/api/v1/media`), their state, description and
//! deletion (`/api/v1/media/:id`), and the files themselves (`/system/media/*key`).
//!
//! An upload streams through: multipart parts are cut into 256 KiB chunks and sent to
//! the media service as they arrive (client-streaming gRPC), so neither process holds a
//! whole video, and a file of the wrong type or over its limit is refused after its
//! first bytes.

use axum::{
    Router,
    body::Body,
    extract::{Multipart, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use rookery_kit::ids::parse_id;
use rookery_proto::media::v1::{self as md, upload_chunk::Part};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    auth::Auth,
    error::{ApiError, ApiResult},
    input::Params,
    mastodon::{
        json_response,
        media::{MEDIA_JSON_BYTES, attachment},
    },
    state::AppState,
};

/// Bytes per upload message.
const CHUNK: usize = 256 * 1024;

/// `Cache-Control` of stored files: their keys are never reused.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The upload routes: outside the API's body limit and request timeout, inside their
/// own (see `crate::app`).
pub fn upload_router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/media", post(upload_v2))
        .route("/api/v1/media", post(upload_v1))
}

/// An attachment id from the path: malformed ids are as unknown as missing ones.
fn media_id(id: &str) -> Result<i64, ApiError> {
    parse_id(id).map_err(|_| ApiError::not_found())
}

fn render(state: &AppState, a: &md::Attachment, status: StatusCode) -> Response {
    let mut response = json_response(
        &attachment(a, &state.config.media_base_url),
        MEDIA_JSON_BYTES,
    );
    *response.status_mut() = status;
    response
}

/// The media service's refusals, as Mastodon words them: a file over its limit is 413.
fn upload_error(s: tonic::Status) -> ApiError {
    if s.code() == tonic::Code::ResourceExhausted {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, s.message())
    } else {
        ApiError::from(s)
    }
}

/// `POST /api/v2/media`: 200 when processed in the request (small images), 202 while
/// it is processed in the background.
async fn upload_v2(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    multipart: Multipart,
) -> ApiResult<Response> {
    let a = upload(&state, &auth, &headers, multipart, true).await?;
    let status = if a.state() == md::State::Ready {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(render(&state, &a, status))
}

/// `POST /api/v1/media` (older clients): answers once processed, whatever it takes.
async fn upload_v1(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    multipart: Multipart,
) -> ApiResult<Response> {
    let a = upload(&state, &auth, &headers, multipart, false).await?;
    Ok(render(&state, &a, StatusCode::OK))
}

async fn upload(
    state: &AppState,
    auth: &Auth,
    headers: &HeaderMap,
    multipart: Multipart,
    allow_async: bool,
) -> ApiResult<md::Attachment> {
    auth.require(&["write:media"])?;
    let me = auth.account()?;
    let declared_size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (tx, rx) = mpsc::channel(4);
    let meta = md::UploadMeta {
        account_id: me.0,
        allow_async,
        declared_size,
        ..Default::default()
    };
    tx.send(md::UploadChunk {
        part: Some(Part::Meta(meta)),
    })
    .await
    .map_err(|_| ApiError::from(tonic::Status::internal("upload channel closed")))?;
    let mut client = state.media_uploads.clone();
    let call = client.upload(ReceiverStream::new(rx));
    let pump = pump(multipart, tx);
    // Both run together: the service may refuse early (wrong type, too large), which
    // closes the channel and stops the pump.
    let (called, pumped) = tokio::join!(call, pump);
    match (called, pumped) {
        (Ok(a), Ok(())) => Ok(a.into_inner()),
        // The form broke (or the client went away): the service saw no end and dropped
        // the upload; the form's error is the one to report.
        (_, Err(PumpError::Form(e))) => Err(e),
        (Err(s), _) => Err(upload_error(s)),
        (Ok(_), Err(PumpError::Closed)) => Err(ApiError::from(tonic::Status::internal(
            "the media service answered before the upload ended",
        ))),
    }
}

enum PumpError {
    /// The multipart body was malformed or cut.
    Form(ApiError),
    /// The service stopped listening (it answered already).
    Closed,
}

/// Sends the form's parts to the service: `file` and `thumbnail` in chunks, then the
/// text fields, then the end marker.
async fn pump(
    mut multipart: Multipart,
    tx: mpsc::Sender<md::UploadChunk>,
) -> Result<(), PumpError> {
    let form = |e: axum::extract::multipart::MultipartError| {
        PumpError::Form(ApiError::new(e.status(), e.body_text()))
    };
    let send = |part: Part| {
        let tx = tx.clone();
        async move {
            tx.send(md::UploadChunk { part: Some(part) })
                .await
                .map_err(|_| PumpError::Closed)
        }
    };
    let mut late = md::UploadMeta::default();
    let mut saw_file = false;
    while let Some(mut field) = multipart.next_field().await.map_err(form)? {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "file" | "thumbnail" => {
                let is_file = name == "file";
                // A browser's file input left empty sends a part with no filename and no
                // bytes: that is no file. An empty part with a filename is an empty file,
                // refused below (found by schemathesis: an empty thumbnail was ignored).
                let named = field.file_name().is_some_and(|f| !f.is_empty());
                let wrap = |b: Bytes| {
                    if is_file {
                        Part::File(b)
                    } else {
                        Part::Thumbnail(b)
                    }
                };
                let mut buf = BytesMut::with_capacity(CHUNK);
                let mut size = 0;
                while let Some(bytes) = field.chunk().await.map_err(form)? {
                    size += bytes.len();
                    buf.extend_from_slice(&bytes);
                    if buf.len() >= CHUNK {
                        send(wrap(buf.split().freeze())).await?;
                    }
                }
                if !buf.is_empty() {
                    send(wrap(buf.freeze())).await?;
                }
                if size == 0 && named {
                    return Err(PumpError::Form(ApiError::unprocessable(if is_file {
                        "Validation failed: File can't be blank"
                    } else {
                        "Validation failed: Thumbnail can't be blank"
                    })));
                }
                saw_file |= is_file && size > 0;
            }
            "description" => late.description = field.text().await.map_err(form)?,
            "focus" => late.focus = field.text().await.map_err(form)?,
            // Other fields are ignored, as Rails ignores unpermitted parameters.
            _ => {}
        }
    }
    if !saw_file {
        return Err(PumpError::Form(ApiError::unprocessable(
            "Validation failed: File can't be blank",
        )));
    }
    if !late.description.is_empty() || !late.focus.is_empty() {
        send(Part::Meta(late)).await?;
    }
    send(Part::End(true)).await
}

/// `GET /api/v1/media/:id`: 200 when processed, 206 while processing, 422 when
/// processing failed.
pub async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require(&["write:media"])?;
    let me = auth.account()?;
    let a = state
        .media()
        .get(md::AttachmentRequest {
            account_id: me.0,
            id: media_id(&id)?,
        })
        .await?
        .into_inner();
    match a.state() {
        md::State::Ready => Ok(render(&state, &a, StatusCode::OK)),
        md::State::Failed => Err(ApiError::unprocessable(if a.failure.is_empty() {
            "There was an error processing the media attachment"
        } else {
            a.failure.as_str()
        })),
        _ => Ok(render(&state, &a, StatusCode::PARTIAL_CONTENT)),
    }
}

#[derive(Deserialize)]
pub struct UpdateParams {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    focus: Option<String>,
}

/// `PUT /api/v1/media/:id`: description and focus of an upload not yet attached.
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Params(p): Params<UpdateParams>,
) -> ApiResult<Response> {
    auth.require(&["write:media"])?;
    let me = auth.account()?;
    let a = state
        .media()
        .update(md::UpdateRequest {
            account_id: me.0,
            id: media_id(&id)?,
            description: p.description,
            focus: p.focus,
        })
        .await?
        .into_inner();
    Ok(render(&state, &a, StatusCode::OK))
}

/// `DELETE /api/v1/media/:id`: an upload not attached to a status, with its files.
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require(&["write:media"])?;
    let me = auth.account()?;
    state
        .media()
        .delete(md::AttachmentRequest {
            account_id: me.0,
            id: media_id(&id)?,
        })
        .await?;
    Ok(json_response(&serde_json::json!({}), 2))
}

/// A single byte range of `Range: bytes=…`; `None` for anything else (several ranges,
/// other units, nonsense), which is served whole as RFC 9110 allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ByteRange {
    /// `a-b` (inclusive) or `a-`.
    From { start: u64, end: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        return end.parse().ok().map(ByteRange::Suffix);
    }
    let start: u64 = start.parse().ok()?;
    let end = if end.is_empty() {
        None
    } else {
        let end: u64 = end.parse().ok()?;
        if end < start {
            return None;
        }
        // The length of `0-18446744073709551615`, end - start + 1, does not fit a u64 (a
        // panic in debug builds). An end past the file means "to the end" (RFC 9110
        // §14.1.2), which `a-` says.
        (end < u64::MAX).then_some(end)
    };
    Some(ByteRange::From { start, end })
}

/// The entity tag of a file: keys are never reused, so the key is the version.
fn etag(key: &str) -> String {
    format!("\"{key}\"")
}

/// Whether the client takes WebP (`Accept: image/webp`, as every current browser sends
/// for images).
fn accepts_webp(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("image/webp")))
}

/// `GET /system/media/*key`: a stored file, immutable, with `ETag` and single byte
/// ranges (video seeking). JPEG and PNG variants are answered as WebP to clients that
/// take it (`Vary: Accept`).
pub async fn serve(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let negotiable = key.ends_with(".jpg") || key.ends_with(".png");
    let prefer_webp = negotiable && accepts_webp(&headers);
    let expected = if prefer_webp {
        format!(
            "{}.webp",
            key.rsplit_once('.').map_or(key.as_str(), |(stem, _)| stem)
        )
    } else {
        key.clone()
    };
    let mut common = HeaderMap::new();
    common.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    common.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if negotiable {
        common.insert(header::VARY, HeaderValue::from_static("Accept"));
    }
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if let Ok(tag) = HeaderValue::from_str(&etag(&expected)) {
        // The tag is known without asking anyone: a revalidation costs no call.
        if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == tag)) {
            common.insert(header::ETAG, tag);
            return Ok((StatusCode::NOT_MODIFIED, common).into_response());
        }
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let mut request = md::ReadRequest {
        key,
        prefer_webp,
        ..Default::default()
    };
    match range {
        Some(ByteRange::From { start, end }) => {
            request.offset = start;
            request.length = end.map_or(0, |e| e - start + 1);
        }
        Some(ByteRange::Suffix(n)) => {
            if n == 0 {
                return Ok(range_not_satisfiable(common, None));
            }
            request.suffix = n;
        }
        None => {}
    }
    let mut stream = state.media().read(request).await?.into_inner();
    let header = match stream.next().await {
        Some(Ok(md::ReadChunk {
            part: Some(md::read_chunk::Part::Header(h)),
        })) => h,
        Some(Err(s)) => return Err(s.into()),
        _ => {
            return Err(ApiError::from(tonic::Status::internal(
                "a file read without its header",
            )));
        }
    };
    if header.unsatisfiable {
        return Ok(range_not_satisfiable(common, Some(header.size)));
    }
    if let Ok(tag) = HeaderValue::from_str(&etag(&header.key)) {
        common.insert(header::ETAG, tag);
    }
    if let Ok(ct) = HeaderValue::from_str(&header.content_type) {
        common.insert(header::CONTENT_TYPE, ct);
    }
    common.insert(header::CONTENT_LENGTH, HeaderValue::from(header.length));
    let status = if range.is_some() {
        let last = (header.offset + header.length).saturating_sub(1);
        let content_range = format!("bytes {}-{last}/{}", header.offset, header.size);
        if let Ok(v) = HeaderValue::from_str(&content_range) {
            common.insert(header::CONTENT_RANGE, v);
        }
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    // hyper stops polling a body once Content-Length bytes are out, and dropping a gRPC
    // stream before its trailers resets it (RST_STREAM). h2 tolerates only so many
    // resets per connection (1024) before failing it, which under load failed other
    // reads with it. So the stream is read to its end as soon as the last byte is in.
    let body = futures::stream::unfold(
        (stream, header.length),
        |(mut stream, remaining)| async move {
            loop {
                if remaining == 0 {
                    while stream.next().await.is_some() {}
                    return None;
                }
                match stream.next().await? {
                    Ok(md::ReadChunk {
                        part: Some(md::read_chunk::Part::Data(bytes)),
                    }) => {
                        let remaining = remaining.saturating_sub(bytes.len() as u64);
                        if remaining == 0 {
                            while stream.next().await.is_some() {}
                        }
                        return Some((Ok(bytes), (stream, remaining)));
                    }
                    Ok(_) => {}
                    // The status line is gone already: cutting the body short is all that is left.
                    Err(s) => {
                        let e = std::io::Error::other(s.message().to_owned());
                        return Some((Err(e), (stream, 0)));
                    }
                }
            }
        },
    );
    Ok((status, common, Body::from_stream(body)).into_response())
}

fn range_not_satisfiable(mut headers: HeaderMap, size: Option<u64>) -> Response {
    if let Some(size) = size
        && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
    {
        headers.insert(header::CONTENT_RANGE, v);
    }
    (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-99"),
            Some(ByteRange::From {
                start: 0,
                end: Some(99)
            })
        );
        assert_eq!(
            parse_range("bytes=100-"),
            Some(ByteRange::From {
                start: 100,
                end: None
            })
        );
        assert_eq!(parse_range("bytes=-500"), Some(ByteRange::Suffix(500)));
        for ignored in [
            "bytes=0-1,5-9",
            "items=0-1",
            "bytes=9-1",
            "bytes=a-b",
            "bytes=-",
            "",
        ] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn webp_only_when_accepted() {
        let mut h = HeaderMap::new();
        assert!(!accepts_webp(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("image/avif,image/webp,*/*;q=0.8"),
        );
        assert!(accepts_webp(&h));
    }
}

#[cfg(test)]
mod proptests {
    //! Properties of the `Range` and `Accept` parsing of media serving: any header is a
    //! single byte range or none (the file served whole), never a panic, and a range's
    //! length always fits.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    /// The read request `serve` makes of a range, as `serve` computes it.
    fn offset_and_length(range: ByteRange) -> (u64, u64) {
        match range {
            ByteRange::From { start, end } => (start, end.map_or(0, |e| e - start + 1)),
            ByteRange::Suffix(_) => (0, 0),
        }
    }

    /// `Range` values: mostly one `bytes=a-b`, with numbers around the u64 limits.
    fn range_like() -> impl Strategy<Value = String> {
        let num = prop_oneof![
            2 => any::<u64>().prop_map(|n| n.to_string()),
            2 => "[0-9]{0,3}",
            2 => Just(u64::MAX.to_string()),
            2 => Just("0".to_owned()),
            1 => Just("18446744073709551616".to_owned()),
            1 => "[+-]?[0-9a-f ]{0,4}",
        ];
        let unit = prop_oneof![
            4 => Just("bytes="),
            1 => prop::sample::select(vec!["Bytes=", "items=", "", " bytes= ", "bytes"]),
        ];
        let dash = prop_oneof![
            4 => Just("-"),
            1 => prop::sample::select(vec!["--", "", " - "]),
        ];
        let spec = (num.clone(), dash, num).prop_map(|(a, dash, b)| format!("{a}{dash}{b}"));
        (unit, spec.clone(), prop::option::weighted(0.2, spec)).prop_map(|(unit, spec, more)| {
            match more {
                Some(more) => format!("{unit}{spec},{more}"),
                None => format!("{unit}{spec}"),
            }
        })
    }

    /// Found by `ranges_are_sane`: `bytes=0-18446744073709551615` overflowed the length
    /// `serve` computes.
    #[test]
    fn a_range_to_u64_max_is_open_ended() {
        let range = parse_range("bytes=0-18446744073709551615").unwrap();
        assert_eq!(
            range,
            ByteRange::From {
                start: 0,
                end: None
            }
        );
        assert_eq!(offset_and_length(range), (0, 0));
        assert_eq!(
            parse_range("bytes=5-18446744073709551614"),
            Some(ByteRange::From {
                start: 5,
                end: Some(u64::MAX - 1)
            })
        );
    }

    proptest! {
        #[test]
        fn ranges_are_sane(value in prop_oneof![any::<String>(), range_like()]) {
            match parse_range(&value) {
                None => {}
                Some(range @ ByteRange::From { start, end }) => {
                    prop_assert!(value.trim().starts_with("bytes="));
                    prop_assert!(!value.contains(','));
                    if let Some(end) = end {
                        prop_assert!(end >= start);
                        prop_assert!(end.checked_sub(start).and_then(|d| d.checked_add(1)).is_some());
                    }
                    let _ = offset_and_length(range);
                }
                Some(ByteRange::Suffix(_)) => {
                    prop_assert!(value.trim().starts_with("bytes="));
                    prop_assert!(!value.contains(','));
                }
            }
        }

        #[test]
        fn valid_ranges_parse_to_their_value(
            start in any::<u64>(),
            len in prop::option::of(any::<u64>()),
            a in " {0,2}",
            b in " {0,2}",
        ) {
            let end = len.map(|l| start.saturating_add(l));
            let value = match end {
                Some(end) => format!("{a}bytes={a}{start}{b}-{b}{end}{a}"),
                None => format!("{a}bytes={start}-{b}"),
            };
            // An end of u64::MAX is "to the end" (see `a_range_to_u64_max_is_open_ended`).
            let expected = ByteRange::From {
                start,
                end: end.filter(|&e| e < u64::MAX),
            };
            prop_assert_eq!(parse_range(&value), Some(expected));
            prop_assert_eq!(parse_range(&format!("bytes=-{start}")), Some(ByteRange::Suffix(start)));
            // Backwards or several ranges: the whole file.
            if let Some(end) = end.filter(|&e| e > start) {
                prop_assert_eq!(parse_range(&format!("bytes={end}-{start}")), None);
                prop_assert_eq!(parse_range(&format!("bytes={start}-{end},0-1")), None);
            }
        }

        #[test]
        fn webp_is_taken_only_when_listed(
            types in prop::collection::vec(
                prop::sample::select(vec![
                    "image/avif", "image/webp", "image/webp;q=0.9", "image/png", "*/*;q=0.8",
                    "image/*", "text/html", "", " ", "image/web",
                ]),
                0..5,
            ),
            junk in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut h = HeaderMap::new();
            let listed = types.join(",");
            h.insert(header::ACCEPT, HeaderValue::from_str(&listed).unwrap());
            if let Ok(v) = HeaderValue::from_bytes(&junk) {
                h.append(header::ACCEPT, v);
            }
            let junk_has_webp = std::str::from_utf8(&junk)
                .is_ok_and(|j| j.split(',').any(|t| t.trim().starts_with("image/webp")));
            let expected = types.iter().any(|t| t.starts_with("image/webp")) || junk_has_webp;
            prop_assert_eq!(accepts_webp(&h), expected);
        }
    }
}
