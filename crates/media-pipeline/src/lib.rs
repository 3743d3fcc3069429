//! Rookery's media processing pipeline: what a file is (from its magic bytes), whether it is within
//! limits (from its header, before decoding), and its stored variants.
//!
//! Pure functions over bytes and files: no database, no object store. The service
//! decides where the bytes come from and where the variants go.

#![forbid(unsafe_code)]

mod ffmpeg;
mod image;
mod sniff;

use std::path::Path;

pub use ffmpeg::Ffmpeg;
#[doc(hidden)]
pub use image::{StageTimes, process_image_timed};
pub use image::{check_image_header, is_animated_gif, process_image, process_thumbnail};
pub use sniff::{Container, SNIFF_LEN, sniff};

/// What a stored attachment is, as Mastodon's `type` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A still image.
    Image,
    /// An animated GIF, stored as a silent looping MP4.
    Gifv,
    /// A video, stored as H.264/AAC MP4.
    Video,
}

impl Kind {
    /// Mastodon's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Gifv => "gifv",
            Kind::Video => "video",
        }
    }

    /// The inverse of [`Kind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "image" => Some(Kind::Image),
            "gifv" => Some(Kind::Gifv),
            "video" => Some(Kind::Video),
            _ => None,
        }
    }
}

/// Size limits of images; the defaults are Mastodon's.
#[derive(Clone, Debug)]
pub struct ImageLimits {
    /// Largest accepted source image, in pixels (Mastodon: 33,177,600 = 7680×4320).
    pub max_pixels: u64,
    /// The stored original is scaled down to at most this many pixels (3840×2160).
    pub original_max_pixels: u64,
    /// The preview fits in a square of this side (640).
    pub small_box: u32,
    /// Most bytes a decoder may allocate (`image::Limits::max_alloc`).
    pub max_alloc: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_pixels: 33_177_600,
            original_max_pixels: 3840 * 2160,
            small_box: 640,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

/// One stored file.
#[derive(Clone, Debug)]
pub struct Variant {
    /// The encoded file.
    pub bytes: Vec<u8>,
    /// Its MIME type (`image/jpeg`, `image/webp`, `video/mp4`, ...).
    pub content_type: &'static str,
    /// The file name extension without a dot (`jpg`, `webp`, `mp4`, ...).
    pub extension: &'static str,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Video facts, as Mastodon's `meta.original` shows them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VideoMeta {
    /// Seconds.
    pub duration: f64,
    /// Frames per second as ffprobe gives it (`"30/1"`, `"30000/1001"`).
    pub frame_rate: String,
    /// Bits per second of the stored file.
    pub bitrate: u64,
}

/// Everything the pipeline makes from one upload.
#[derive(Clone, Debug)]
pub struct Processed {
    /// Image, gifv or video.
    pub kind: Kind,
    /// The stored original: the re-encoded image (metadata stripped, orientation applied,
    /// scaled to the pixel cap) in its source format (a still GIF becomes PNG), or the MP4.
    pub original: Variant,
    /// The original as lossy WebP (images only).
    pub original_webp: Option<Variant>,
    /// The preview, fitting [`ImageLimits::small_box`], in the source image format
    /// (JPEG for gifv and video: their poster frame).
    pub small: Variant,
    /// The preview as lossy WebP.
    pub small_webp: Variant,
    /// Blurhash of the preview (4×3 components).
    pub blurhash: String,
    /// Video facts (gifv and video only).
    pub video: Option<VideoMeta>,
}

/// Why a file was not processed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Not a type we take (the client sees 422).
    #[error("{0}")]
    Unsupported(String),
    /// Beyond a size limit (the client sees 422).
    #[error("{0}")]
    TooLarge(String),
    /// Damaged or truncated (the client sees 422).
    #[error("{0}")]
    Corrupt(String),
    /// Video needs ffmpeg and this machine has none (the client sees 422).
    #[error("video uploads are not supported here: ffmpeg is not installed")]
    NoFfmpeg,
    /// Our fault (I/O, an ffmpeg crash on a valid file): retried.
    #[error("internal: {0}")]
    Internal(String),
}

impl PipelineError {
    /// Whether retrying can help (only for [`PipelineError::Internal`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, PipelineError::Internal(_))
    }
}

/// Processes one uploaded file whose type [`sniff`] found: images through
/// [`process_image`] on a blocking thread, videos (and animated GIFs, as gifv) through
/// ffmpeg.
///
/// Without ffmpeg a video is refused with [`PipelineError::NoFfmpeg`] and an animated GIF is
/// stored as a still image of its first frame. The file is read whole; the service bounds
/// its size before.
pub async fn process(
    input: &Path,
    container: Container,
    limits: &ImageLimits,
    ffmpeg: Option<&Ffmpeg>,
) -> Result<Processed, PipelineError> {
    if container.is_video() {
        let ffmpeg = ffmpeg.ok_or(PipelineError::NoFfmpeg)?;
        return ffmpeg.process_video(input, container, limits).await;
    }
    let bytes = read_file(input).await?;
    if container == Container::Gif
        && let Some(ffmpeg) = ffmpeg
        && is_animated_gif(&bytes)
    {
        // The canvas size bounds ffmpeg's frame buffers as it bounds our decoder's.
        check_image_header(&bytes, container, limits)?;
        return ffmpeg.process_gifv(input, limits).await;
    }
    let limits = limits.clone();
    tokio::task::spawn_blocking(move || process_image(&bytes, container, &limits))
        .await
        .map_err(join_error)?
}

/// Reads a whole file on a blocking thread (the workspace's tokio has no `fs` feature).
pub(crate) async fn read_file(path: &Path) -> Result<Vec<u8>, PipelineError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::read(owned))
        .await
        .map_err(join_error)?
        .map_err(|e| PipelineError::Internal(format!("cannot read {}: {e}", path.display())))
}

pub(crate) fn join_error(error: tokio::task::JoinError) -> PipelineError {
    PipelineError::Internal(format!("processing task failed: {error}"))
}
