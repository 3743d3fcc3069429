//! The media service's rules: receiving an upload, processing it (in the request for
//! small images, by the workers otherwise), the reads, and the attachment of uploads to
//! statuses (from the timeline's events).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rookery_kit::cache::TieredCache;
use rookery_media_pipeline::{self as pipeline, Container, Ffmpeg, PipelineError};
use rookery_proto::media::v1 as pb;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    Config, Error, Result,
    storage::{self, GetRange, Storage, Writer},
    store::{self, Row, Store},
};

/// Name of the attachment cache (Redis keys, metrics); the gateway's copy shares it, so
/// invalidations reach it.
pub const CACHE: &str = rookery_kit::cache::names::MEDIA;

/// Most characters of a description (Mastodon's).
pub const MAX_DESCRIPTION: usize = 1500;

/// Longest wait between two attempts of a failing job.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The parts the service is built from.
pub struct Parts {
    pub store: Store,
    pub storage: Storage,
    pub cache: TieredCache<pb::Attachment>,
    pub ffmpeg: Option<Ffmpeg>,
    pub config: Arc<Config>,
}

/// The media service.
pub struct Media {
    store: Store,
    storage: Storage,
    cache: TieredCache<pb::Attachment>,
    ffmpeg: Option<Ffmpeg>,
    config: Arc<Config>,
    /// Wakes an idle worker when a job is queued by this process.
    wake: Notify,
    /// Bounds the files processed at once, in requests and workers together: a
    /// 33-megapixel image needs about 250 MB while it is decoded, and ffmpeg uses every
    /// core on its own.
    processing: tokio::sync::Semaphore,
}

/// The stored name of a container.
fn container_name(c: Container) -> &'static str {
    match c {
        Container::Jpeg => "jpeg",
        Container::Png => "png",
        Container::Gif => "gif",
        Container::Webp => "webp",
        Container::Mp4 => "mp4",
        Container::Mov => "mov",
        Container::WebM => "webm",
    }
}

fn parse_container(name: &str) -> Option<Container> {
    Some(match name {
        "jpeg" => Container::Jpeg,
        "png" => Container::Png,
        "gif" => Container::Gif,
        "webp" => Container::Webp,
        "mp4" => Container::Mp4,
        "mov" => Container::Mov,
        "webm" => Container::WebM,
        _ => return None,
    })
}

/// Mastodon's focal point: `"x,y"`, both in [-1, 1]; empty is none.
pub fn parse_focus(raw: &str) -> Result<Option<(f64, f64)>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || {
        Error::InvalidArgument(format!(
            "focus: {raw:?} is not \"x,y\" with both in [-1, 1]"
        ))
    };
    let (x, y) = raw.split_once(',').ok_or_else(bad)?;
    let x: f64 = x.trim().parse().map_err(|_| bad())?;
    let y: f64 = y.trim().parse().map_err(|_| bad())?;
    if !(-1.0..=1.0).contains(&x) || !(-1.0..=1.0).contains(&y) {
        return Err(bad());
    }
    Ok(Some((x, y)))
}

fn check_description(d: &str) -> Result<()> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Error::InvalidArgument(format!(
            "Validation failed: Description is too long (maximum is {MAX_DESCRIPTION} characters)"
        )));
    }
    Ok(())
}

fn too_large(limit: u64) -> Error {
    Error::TooLarge(format!(
        "Validation failed: File must be less than {} MB",
        limit / (1024 * 1024)
    ))
}

/// The API shape of a row.
pub fn to_proto(r: &Row) -> pb::Attachment {
    let dims = |w: Option<i32>, h: Option<i32>| match (w, h) {
        (Some(w), Some(h)) => Some(pb::Dimensions {
            width: u32::try_from(w).unwrap_or(0),
            height: u32::try_from(h).unwrap_or(0),
        }),
        _ => None,
    };
    let state = match r.state.as_str() {
        "ready" => pb::State::Ready,
        "failed" => pb::State::Failed,
        _ => pb::State::Processing,
    };
    pb::Attachment {
        id: r.id,
        account_id: r.account_id,
        r#type: r.kind.clone().unwrap_or_else(|| "unknown".to_owned()),
        state: state.into(),
        original_key: r.original_key.clone().unwrap_or_default(),
        small_key: r.small_key.clone().unwrap_or_default(),
        original: dims(r.original_width, r.original_height),
        small: dims(r.small_width, r.small_height),
        description: r.description.clone(),
        blurhash: r.blurhash.clone().unwrap_or_default(),
        focus_x: r.focus_x,
        focus_y: r.focus_y,
        duration: r.duration.unwrap_or_default(),
        frame_rate: r.frame_rate.clone().unwrap_or_default(),
        bitrate: r
            .bitrate
            .and_then(|b| u64::try_from(b).ok())
            .unwrap_or_default(),
        status_id: r.status_id,
        failure: r.failure.clone().unwrap_or_default(),
        created_at_ms: r.created_at.timestamp_millis(),
    }
}

/// An upload being received.
#[derive(Default)]
struct Incoming {
    /// The first bytes, until the type is known.
    head: Vec<u8>,
    container: Option<Container>,
    /// An image's bytes (bounded by the image limit).
    image: Vec<u8>,
    /// A video streaming into the store, and the bytes written so far.
    video: Option<Writer>,
    size: u64,
    thumbnail: Vec<u8>,
    /// Fields that came after the file.
    description: Option<String>,
    focus: Option<String>,
}

/// A processed job's files, ready to store: their keys, and the writes (the variants'
/// bytes, moved out of `processed`, which keeps the facts for the row).
struct Files {
    processed: pipeline::Processed,
    original_key: String,
    small_key: String,
    original_webp_key: Option<String>,
    small_webp_key: String,
    writes: Vec<(String, Bytes)>,
}

impl Media {
    /// Wires the service.
    pub fn new(p: Parts) -> Self {
        Self {
            store: p.store,
            storage: p.storage,
            cache: p.cache,
            ffmpeg: p.ffmpeg,
            processing: tokio::sync::Semaphore::new(p.config.concurrency.max(1)),
            config: p.config,
            wake: Notify::new(),
        }
    }

    /// The SQL store (readiness checks, workers).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The object store.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether this process can make video (ffmpeg found, video not turned off).
    fn video(&self) -> Option<&Ffmpeg> {
        self.ffmpeg.as_ref().filter(|_| self.config.video)
    }

    // ------------------------------------------------------------------ uploads

    /// Receives an upload (see the `Upload` RPC) and answers the attachment: processed
    /// when it was processed in the request, else still processing.
    pub async fn upload<S>(&self, mut parts: S) -> Result<pb::Attachment>
    where
        S: Stream<Item = std::result::Result<pb::UploadChunk, tonic::Status>> + Unpin,
    {
        use pb::upload_chunk::Part;
        let meta = match parts.next().await {
            Some(Ok(pb::UploadChunk {
                part: Some(Part::Meta(meta)),
            })) => meta,
            Some(Err(e)) => return Err(Error::InvalidArgument(format!("upload interrupted: {e}"))),
            _ => {
                return Err(Error::InvalidArgument(
                    "an upload starts with its meta".into(),
                ));
            }
        };
        let limits = &self.config.limits;
        // The body holds the file, a preview and the form's framing.
        let largest = limits.video_bytes.max(limits.image_bytes);
        if meta.declared_size > largest + limits.image_bytes + 1024 * 1024 {
            return Err(too_large(largest));
        }
        let prefix = storage::new_prefix();
        let incoming_key = storage::incoming_key(&prefix, "file");
        let mut upload = Incoming::default();
        let received = self.receive(&mut parts, &mut upload, &incoming_key).await;
        if let Err(e) = received {
            if let Some(w) = upload.video.take() {
                w.abort().await;
            }
            return Err(e);
        }
        let description = upload.description.take().unwrap_or(meta.description);
        check_description(&description)?;
        let focus = parse_focus(upload.focus.as_deref().unwrap_or(&meta.focus))?;
        let container = upload
            .container
            .ok_or_else(|| Error::InvalidArgument("file: no file in the upload".into()))?;
        if let Some(w) = upload.video.take() {
            w.finish().await?;
        }
        let image = std::mem::take(&mut upload.image);
        let kind = if container.is_video() {
            Some("video")
        } else {
            pipeline::check_image_header(&image, container, &limits.image)?;
            let animated = container == Container::Gif && pipeline::is_animated_gif(&image);
            Some(if animated && self.video().is_some() {
                "gifv"
            } else {
                "image"
            })
        };
        let thumbnail_key = if upload.thumbnail.is_empty() {
            None
        } else {
            let sniffed = pipeline::sniff(&upload.thumbnail).filter(|c| !c.is_video());
            let c = sniffed.ok_or_else(|| {
                Error::InvalidArgument("thumbnail: not a JPEG, PNG, GIF or WebP image".into())
            })?;
            pipeline::check_image_header(&upload.thumbnail, c, &limits.image)?;
            let key = storage::incoming_key(&prefix, "thumbnail");
            self.storage
                .put(&key, Bytes::from(std::mem::take(&mut upload.thumbnail)))
                .await?;
            Some(key)
        };
        let image = Bytes::from(image);
        if !container.is_video() {
            self.storage.put(&incoming_key, image.clone()).await?;
        }
        // Small still images are done in the request, as Mastodon does with all images;
        // `/api/v1/media` waits for everything.
        let inline =
            !meta.allow_async || (kind == Some("image") && upload.size <= limits.sync_bytes);
        let row = self
            .store
            .insert(&store::NewUpload {
                account_id: meta.account_id,
                kind,
                container: container_name(container),
                incoming_key: &incoming_key,
                thumbnail_key: thumbnail_key.as_deref(),
                file_prefix: &prefix,
                description: &description,
                focus,
                claim: inline.then_some(self.config.job_lease),
            })
            .await?;
        if !inline {
            self.wake.notify_one();
            return Ok(to_proto(&row));
        }
        let local = (!container.is_video()).then_some(image);
        let done = self.run_job(row, local, &CancellationToken::new()).await?;
        if done.state == "failed" {
            return Err(Error::InvalidArgument(
                done.failure
                    .unwrap_or_else(|| "the file could not be processed".into()),
            ));
        }
        Ok(to_proto(&done))
    }

    /// Reads the upload's chunks into `upload`, enforcing the type and size rules as soon
    /// as they can be known.
    async fn receive<S>(
        &self,
        parts: &mut S,
        upload: &mut Incoming,
        incoming_key: &str,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<pb::UploadChunk, tonic::Status>> + Unpin,
    {
        use pb::upload_chunk::Part;
        let limits = &self.config.limits;
        while let Some(chunk) = parts.next().await {
            let chunk =
                chunk.map_err(|e| Error::InvalidArgument(format!("upload interrupted: {e}")))?;
            match chunk.part {
                Some(Part::File(bytes)) => {
                    upload.size += bytes.len() as u64;
                    let Some(container) = upload.container else {
                        upload.head.extend_from_slice(&bytes);
                        if upload.head.len() >= pipeline::SNIFF_LEN {
                            self.identify(upload, incoming_key).await?;
                        }
                        continue;
                    };
                    let limit = if container.is_video() {
                        limits.video_bytes
                    } else {
                        limits.image_bytes
                    };
                    if upload.size > limit {
                        return Err(too_large(limit));
                    }
                    match &mut upload.video {
                        Some(w) => w.write(&bytes).await?,
                        None => upload.image.extend_from_slice(&bytes),
                    }
                }
                Some(Part::Thumbnail(bytes)) => {
                    upload.thumbnail.extend_from_slice(&bytes);
                    if upload.thumbnail.len() as u64 > limits.image_bytes {
                        return Err(too_large(limits.image_bytes));
                    }
                }
                Some(Part::Meta(late)) => {
                    if !late.description.is_empty() {
                        upload.description = Some(late.description);
                    }
                    if !late.focus.is_empty() {
                        upload.focus = Some(late.focus);
                    }
                }
                Some(Part::End(true)) => {
                    if upload.container.is_none() && !upload.head.is_empty() {
                        self.identify(upload, incoming_key).await?;
                    }
                    return Ok(());
                }
                Some(Part::End(false)) | None => {}
            }
        }
        Err(Error::InvalidArgument(
            "upload interrupted before its end".into(),
        ))
    }

    /// Decides what the upload is from its first bytes: refuses other types and video
    /// without ffmpeg before reading on.
    async fn identify(&self, upload: &mut Incoming, incoming_key: &str) -> Result<()> {
        let limits = &self.config.limits;
        let container = pipeline::sniff(&upload.head).ok_or_else(|| {
            Error::InvalidArgument(
                "Validation failed: File content type is invalid (JPEG, PNG, GIF, WebP, MP4, WebM or MOV)"
                    .into(),
            )
        })?;
        let limit = if container.is_video() {
            if self.video().is_none() {
                return Err(PipelineError::NoFfmpeg.into());
            }
            limits.video_bytes
        } else {
            limits.image_bytes
        };
        if upload.size > limit {
            return Err(too_large(limit));
        }
        let head = std::mem::take(&mut upload.head);
        if container.is_video() {
            let mut w = self.storage.writer(incoming_key);
            w.write(&head).await?;
            upload.video = Some(w);
        } else {
            upload.image = head;
        }
        upload.container = Some(container);
        Ok(())
    }

    // ------------------------------------------------------------------ processing

    /// Claims the next due job, if any.
    pub async fn claim(&self) -> Result<Option<Row>> {
        self.store.claim(self.config.job_lease).await
    }

    /// Waits until this process queued a job, or `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.wake.notified()).await;
    }

    /// Processes a claimed job: the variants are written, then the row says ready (or
    /// failed, or due again after a backoff). `local`: the upload's bytes when the
    /// caller has them. Keeps the lease alive while it works; `stop` abandons the job
    /// (shutdown), handing it back at once.
    pub async fn run_job(
        &self,
        row: Row,
        local: Option<Bytes>,
        stop: &CancellationToken,
    ) -> Result<Row> {
        let id = row.id;
        let lease = self.config.job_lease;
        let renewing = {
            let store = self.store.clone();
            async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match store.renew(id, lease).await {
                        Ok(true) => {}
                        // Finished or deleted elsewhere: nothing left to hold.
                        Ok(false) => break,
                        Err(e) => tracing::warn!(id, error = %e, "renewing a job lease failed"),
                    }
                }
                std::future::pending::<()>().await;
            }
        };
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            done = self.process(&row, local) => done,
            () = renewing => Err(Error::Internal("lease renewal stopped".into())),
            () = stop.cancelled() => {
                self.store.release(id).await?;
                return Err(Error::Internal("shutting down".into()));
            }
        };
        let obsolete: Vec<&str> = [row.incoming_key.as_deref(), row.thumbnail_key.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let result = match outcome {
            Ok(files) => self.store_files(&row, files, &obsolete).await,
            Err(e) => Err(e),
        };
        let kind = row.kind.as_deref().unwrap_or("unknown").to_owned();
        match result {
            Ok(done) => {
                metrics::counter!("media_jobs_total", "kind" => kind.clone(), "result" => "ready")
                    .increment(1);
                metrics::histogram!("media_processing_seconds", "kind" => kind)
                    .record(started.elapsed().as_secs_f64());
                Ok(done)
            }
            Err(e) => {
                let permanent =
                    matches!(e, Error::InvalidArgument(_) | Error::FailedPrecondition(_));
                let give_up = permanent || row.attempts >= self.config.job_attempts;
                let backoff =
                    Duration::from_secs(1u64 << row.attempts.clamp(0, 16)).min(MAX_BACKOFF);
                tracing::warn!(id, attempt = row.attempts, give_up, error = %e, "processing failed");
                let result = if give_up { "failed" } else { "retry" };
                metrics::counter!("media_jobs_total", "kind" => kind, "result" => result)
                    .increment(1);
                let reason = if permanent {
                    e.to_string()
                } else {
                    "Error processing the media file".to_owned()
                };
                self.store
                    .fail(id, &reason, backoff, give_up, &obsolete)
                    .await?;
                if give_up {
                    self.purge(&obsolete).await;
                }
                self.cache.invalidate(&[id.to_string()]).await;
                self.store
                    .get(id)
                    .await?
                    .ok_or(Error::NotFound("media attachment"))
            }
        }
    }

    /// Runs the pipeline on a job's files.
    async fn process(&self, row: &Row, local: Option<Bytes>) -> Result<Files> {
        let _permit = self
            .processing
            .acquire()
            .await
            .map_err(|_| Error::Internal("processing closed".into()))?;
        let container = parse_container(&row.container)
            .ok_or_else(|| Error::Internal(format!("unknown container {:?}", row.container)))?;
        let limits = self.config.limits.image.clone();
        let key = row
            .incoming_key
            .as_deref()
            .ok_or_else(|| Error::Internal("a job without its upload".into()))?;
        let mut processed = match container {
            Container::Jpeg | Container::Png | Container::Webp => {
                let bytes = match local {
                    Some(b) => b,
                    None => self.storage.get(key).await?,
                };
                let limits = limits.clone();
                tokio::task::spawn_blocking(move || {
                    pipeline::process_image(&bytes, container, &limits)
                })
                .await
                .map_err(|e| Error::Internal(format!("image worker: {e}")))??
            }
            _ => {
                let file = tempfile::NamedTempFile::new()?;
                let (std_file, path) = file.into_parts();
                let mut f = tokio::fs::File::from_std(std_file);
                match local {
                    Some(b) => tokio::io::AsyncWriteExt::write_all(&mut f, &b).await?,
                    None => self.storage.download(key, &mut f).await?,
                }
                drop(f);
                pipeline::process(&path, container, &limits, self.video()).await?
            }
        };
        if let Some(thumb) = &row.thumbnail_key {
            let bytes = self.storage.get(thumb).await?;
            let (small, small_webp, blurhash) =
                tokio::task::spawn_blocking(move || pipeline::process_thumbnail(&bytes, &limits))
                    .await
                    .map_err(|e| Error::Internal(format!("image worker: {e}")))??;
            processed.small = small;
            processed.small_webp = small_webp;
            processed.blurhash = blurhash;
        }
        let prefix = &row.file_prefix;
        let key = |variant: &str, v: &pipeline::Variant| {
            storage::variant_key(prefix, variant, v.extension)
        };
        let original_key = key("original", &processed.original);
        let small_key = key("small", &processed.small);
        let original_webp_key = processed.original_webp.as_ref().map(|w| key("original", w));
        let small_webp_key = key("small", &processed.small_webp);
        // The bytes move into the writes (a video is tens of MB); the rest stays for
        // the row.
        let take = |v: &mut pipeline::Variant| Bytes::from(std::mem::take(&mut v.bytes));
        let mut writes = vec![
            (original_key.clone(), take(&mut processed.original)),
            (small_key.clone(), take(&mut processed.small)),
        ];
        // The WebP renditions are the JPEG/PNG variants' siblings (see `webp_sibling`);
        // a WebP source's variants are WebP already: same key, one file.
        if let (Some(k), Some(w)) = (&original_webp_key, processed.original_webp.as_mut())
            && *k != original_key
        {
            writes.push((k.clone(), take(w)));
        }
        if small_webp_key != small_key {
            writes.push((small_webp_key.clone(), take(&mut processed.small_webp)));
        }
        Ok(Files {
            processed,
            original_key,
            small_key,
            original_webp_key,
            small_webp_key,
            writes,
        })
    }

    /// Writes a job's files, then marks it ready.
    async fn store_files(&self, row: &Row, files: Files, obsolete: &[&str]) -> Result<Row> {
        let writes = files
            .writes
            .iter()
            .map(|(key, bytes)| self.storage.put(key, bytes.clone()));
        futures::future::try_join_all(writes).await?;
        let p = &files.processed;
        let video = p.video.as_ref();
        let done = self
            .store
            .finish(
                row.id,
                &store::Processed {
                    kind: p.kind.as_str(),
                    original_key: &files.original_key,
                    small_key: &files.small_key,
                    original_webp_key: files.original_webp_key.as_deref(),
                    small_webp_key: &files.small_webp_key,
                    original: (p.original.width, p.original.height),
                    small: (p.small.width, p.small.height),
                    blurhash: &p.blurhash,
                    duration: video.map(|v| v.duration),
                    frame_rate: video.map(|v| v.frame_rate.as_str()),
                    bitrate: video.map(|v| v.bitrate),
                },
                obsolete,
            )
            .await?;
        self.cache.invalidate(&[row.id.to_string()]).await;
        match done {
            Some(done) => {
                self.purge(obsolete).await;
                Ok(done)
            }
            None => match self.store.get(row.id).await? {
                // Another worker finished it first (its files are these same files).
                Some(current) => Ok(current),
                // Deleted while we worked: nothing references what we wrote.
                None => {
                    let keys: Vec<&str> = files.writes.iter().map(|(k, _)| k.as_str()).collect();
                    self.purge(&keys).await;
                    Err(Error::NotFound("media attachment"))
                }
            },
        }
    }

    /// Deletes files now, best effort: what fails stays queued for the clean-up.
    async fn purge(&self, keys: &[&str]) {
        let deletions = keys.iter().map(|k| async move {
            match self.storage.delete(k).await {
                Ok(()) => Some((*k).to_owned()),
                Err(e) => {
                    tracing::warn!(key = k, error = %e, "deleting a file failed; left for the clean-up");
                    None
                }
            }
        });
        let deleted: Vec<String> = futures::future::join_all(deletions)
            .await
            .into_iter()
            .flatten()
            .collect();
        if let Err(e) = self.store.forget_doomed(&deleted).await {
            tracing::warn!(error = %e, "forgetting deleted files failed");
        }
    }

    /// One round of clean-up: uploads never attached within the TTL go, then queued
    /// files are deleted from the store. Returns (attachments, files) removed.
    pub async fn clean_up(&self) -> Result<(u64, usize)> {
        const BATCH: i64 = 500;
        let mut expired = 0;
        loop {
            let n = self
                .store
                .expire_unattached(self.config.unattached_ttl, BATCH)
                .await?;
            expired += n;
            if n < BATCH as u64 {
                break;
            }
        }
        let mut files = 0;
        loop {
            let keys = self.store.doomed(BATCH).await?;
            if keys.is_empty() {
                break;
            }
            let batch = keys.len();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            self.purge(&refs).await;
            files += batch;
            if batch < BATCH as usize {
                break;
            }
        }
        Ok((expired, files))
    }

    // ------------------------------------------------------------------ reads, edits

    /// Attachments by id through the cache, in the order asked, unknown ones left out.
    pub async fn get_many(&self, ids: &[i64]) -> Result<Vec<pb::Attachment>> {
        let keys: Vec<String> = ids.iter().map(i64::to_string).collect();
        let found = self
            .cache
            .get_many(&keys, |missing| async move {
                let ids: Vec<i64> = missing.iter().filter_map(|k| k.parse().ok()).collect();
                let rows = self.store.get_many(&ids).await?;
                Ok::<_, Error>(
                    rows.iter()
                        .map(|r| (r.id.to_string(), to_proto(r)))
                        .collect(),
                )
            })
            .await?;
        Ok(keys.iter().filter_map(|k| found.get(k).cloned()).collect())
    }

    /// One attachment of `account_id`.
    pub async fn get(&self, account_id: i64, id: i64) -> Result<pb::Attachment> {
        self.get_many(&[id])
            .await?
            .pop()
            .filter(|a| a.account_id == account_id)
            .ok_or(Error::NotFound("media attachment"))
    }

    /// Changes description and focus of an unattached upload.
    pub async fn update(&self, req: &pb::UpdateRequest) -> Result<pb::Attachment> {
        if let Some(d) = &req.description {
            check_description(d)?;
        }
        let focus = match &req.focus {
            Some(f) => parse_focus(f)?,
            None => None,
        };
        let row = self
            .store
            .update(req.account_id, req.id, req.description.as_deref(), focus)
            .await?;
        self.cache.invalidate(&[req.id.to_string()]).await;
        match row {
            Some(r) => Ok(to_proto(&r)),
            None => Err(self.why_not_mine(req.account_id, req.id).await),
        }
    }

    /// Deletes an unattached upload and its files.
    pub async fn delete(&self, account_id: i64, id: i64) -> Result<()> {
        let Some(keys) = self.store.delete(account_id, id).await? else {
            return Err(self.why_not_mine(account_id, id).await);
        };
        self.cache.invalidate(&[id.to_string()]).await;
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.purge(&keys).await;
        Ok(())
    }

    /// The error for an upload that could not be changed: unknown (or someone
    /// else's), or attached to a status.
    async fn why_not_mine(&self, account_id: i64, id: i64) -> Error {
        match self.store.get(id).await {
            Ok(Some(r)) if r.account_id == account_id => {
                Error::FailedPrecondition("Media attachment is currently used by a status".into())
            }
            Ok(_) => Error::NotFound("media attachment"),
            Err(e) => e,
        }
    }

    /// Marks `media_ids` as used by a status (created or edited) and releases the ones
    /// it no longer uses.
    pub async fn attach(&self, status_id: i64, account_id: i64, media_ids: &[i64]) -> Result<()> {
        let changed = self.store.attach(status_id, account_id, media_ids).await?;
        if !changed.is_empty() {
            let keys: Vec<String> = changed.iter().map(i64::to_string).collect();
            self.cache.invalidate(&keys).await;
        }
        Ok(())
    }

    /// Reads a stored file for serving (processed variants only).
    pub async fn read(&self, req: &pb::ReadRequest) -> Result<(String, storage::Reading)> {
        if !storage::is_public_key(&req.key) {
            return Err(Error::NotFound("file"));
        }
        let range = if req.suffix > 0 {
            Some(GetRange::Suffix(req.suffix))
        } else if req.length > 0 {
            Some(GetRange::Bounded(
                req.offset..req.offset.saturating_add(req.length),
            ))
        } else if req.offset > 0 {
            Some(GetRange::Offset(req.offset))
        } else {
            None
        };
        let preferred = req
            .prefer_webp
            .then(|| storage::webp_sibling(&req.key))
            .flatten();
        if let Some(key) = preferred {
            match self.storage.read(&key, range.clone()).await {
                Ok(r) => return Ok((key, r)),
                // Not every image has its WebP sibling (one failed to write): the
                // variant asked for is as good.
                Err(Error::Store(object_store::Error::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        match self.storage.read(&req.key, range).await {
            Ok(r) => Ok((req.key.clone(), r)),
            Err(Error::Store(object_store::Error::NotFound { .. })) => Err(Error::NotFound("file")),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focus_is_two_numbers_within_one() {
        assert_eq!(parse_focus("").ok(), Some(None));
        assert_eq!(parse_focus("0.5,-0.25").ok(), Some(Some((0.5, -0.25))));
        assert_eq!(parse_focus(" -1 , 1 ").ok(), Some(Some((-1.0, 1.0))));
        for bad in ["1.5,0", "0", "a,b", "0,0,0", "NaN,0"] {
            assert!(parse_focus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn descriptions_are_capped_in_characters() {
        assert!(check_description(&"é".repeat(MAX_DESCRIPTION)).is_ok());
        assert!(check_description(&"é".repeat(MAX_DESCRIPTION + 1)).is_err());
    }

    #[test]
    fn container_names_round_trip() {
        for c in [
            Container::Jpeg,
            Container::Png,
            Container::Gif,
            Container::Webp,
            Container::Mp4,
            Container::Mov,
            Container::WebM,
        ] {
            assert_eq!(parse_container(container_name(c)), Some(c));
        }
    }
}
