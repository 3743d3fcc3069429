//! Video and animated GIF, through the `ffmpeg` and `ffprobe` programs.
//!
//! The input's demuxer is always forced from the sniffed container (`-f mov`, `-f matroska`,
//! `-f gif`) and only the `file` protocol is allowed: ffmpeg's own format probing would
//! otherwise accept an HLS playlist or a concat script disguised as a video and read local
//! files or URLs from it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;
use tokio::time::Instant;

use crate::image::{Output, preview};
use crate::sniff::Container;
use crate::{
    ImageLimits, Kind, PipelineError, Processed, Variant, VideoMeta, join_error, read_file,
};

/// How long one upload may keep ffmpeg busy, all runs together.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How much of ffmpeg's stderr an error message keeps (the end says what failed).
const STDERR_TAIL: usize = 2048;
/// Pixel budget of a stored video: 1920×1080 in either orientation, so a portrait phone
/// video keeps 1080×1920 instead of being squeezed into a landscape box.
const VIDEO_MAX_PIXELS: u64 = 1920 * 1080;
/// x264 settings: `veryfast` is a good size/speed trade-off for a server transcoding on
/// upload, CRF 23 is x264's default quality.
const X264_PRESET: &str = "veryfast";
const X264_CRF: &str = "23";
const AUDIO_BITRATE: &str = "128k";

/// Where the `ffmpeg` and `ffprobe` programs are, and how long they may run per upload.
#[derive(Clone, Debug)]
pub struct Ffmpeg {
    ffmpeg: PathBuf,
    ffprobe: PathBuf,
    timeout: Duration,
}

impl Ffmpeg {
    /// Finds `ffmpeg` and `ffprobe`: the paths in `FFMPEG_PATH` / `FFPROBE_PATH` when set,
    /// else on `PATH`. `None` unless both exist and are executable (a set but wrong variable
    /// is not silently replaced by `PATH`; it is logged). The timeout is 10 minutes.
    pub fn detect() -> Option<Ffmpeg> {
        Some(Ffmpeg {
            ffmpeg: locate("FFMPEG_PATH", "ffmpeg")?,
            ffprobe: locate("FFPROBE_PATH", "ffprobe")?,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same programs with another limit on the time one upload may take (probe,
    /// transcode and poster frame together); beyond it ffmpeg is killed and the upload is
    /// refused as [`PipelineError::TooLarge`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Transcodes a video to H.264/AAC MP4 with its poster frame previews.
    pub(crate) async fn process_video(
        &self,
        input: &Path,
        container: Container,
        limits: &ImageLimits,
    ) -> Result<Processed, PipelineError> {
        let demuxer = match container {
            Container::Mp4 | Container::Mov => "mov",
            Container::WebM => "matroska",
            Container::Jpeg | Container::Png | Container::Gif | Container::Webp => {
                return Err(PipelineError::Unsupported(format!(
                    "{} is not a video",
                    container.mime_type()
                )));
            }
        };
        self.transcode(input, demuxer, Kind::Video, limits).await
    }

    /// Turns an animated GIF into a silent MP4 (Mastodon's gifv; clients loop it).
    pub(crate) async fn process_gifv(
        &self,
        input: &Path,
        limits: &ImageLimits,
    ) -> Result<Processed, PipelineError> {
        self.transcode(input, "gif", Kind::Gifv, limits).await
    }

    async fn transcode(
        &self,
        input: &Path,
        demuxer: &str,
        kind: Kind,
        limits: &ImageLimits,
    ) -> Result<Processed, PipelineError> {
        let deadline = Instant::now() + self.timeout;
        let source = self.probe(input, demuxer, deadline).await?;
        let pixels = u64::from(source.width) * u64::from(source.height);
        if pixels > limits.max_pixels {
            return Err(PipelineError::TooLarge(format!(
                "video is {}x{} pixels, the limit is {}",
                source.width, source.height, limits.max_pixels
            )));
        }
        tracing::debug!(
            width = source.width,
            height = source.height,
            duration = source.duration,
            audio = source.has_audio,
            "transcoding"
        );

        let work = tempfile::Builder::new()
            .prefix("rookery-media-")
            .tempdir()
            .map_err(|e| PipelineError::Internal(format!("cannot create a work directory: {e}")))?;
        let output = work.path().join("original.mp4");
        let args = transcode_args(input, demuxer, kind, &source, &output);
        self.run(&self.ffmpeg, args, deadline).await?;

        let stored = self.probe(&output, "mov", deadline).await?;
        let bytes = read_file(&output).await?;
        let poster = self
            .run(&self.ffmpeg, poster_args(&output), deadline)
            .await?;
        if poster.is_empty() {
            return Err(PipelineError::Corrupt(
                "the video has no frame to show".into(),
            ));
        }
        let preview_limits = limits.clone();
        let (small, small_webp, blurhash) = tokio::task::spawn_blocking(move || {
            preview(&poster, Container::Png, Output::Jpeg, &preview_limits)
        })
        .await
        .map_err(join_error)??;

        let bitrate = stored.bit_rate.unwrap_or_else(|| {
            if stored.duration > 0.0 {
                (bytes.len() as f64 * 8.0 / stored.duration) as u64
            } else {
                0
            }
        });
        let video = VideoMeta {
            duration: stored.duration,
            frame_rate: stored.frame_rate.clone(),
            bitrate,
        };
        Ok(Processed {
            kind,
            original: Variant {
                bytes,
                content_type: "video/mp4",
                extension: "mp4",
                width: stored.width,
                height: stored.height,
            },
            original_webp: None,
            small,
            small_webp,
            blurhash,
            video: Some(video),
        })
    }

    async fn probe(
        &self,
        input: &Path,
        demuxer: &str,
        deadline: Instant,
    ) -> Result<Probe, PipelineError> {
        let args: Vec<OsString> = [
            "-v",
            "error",
            "-protocol_whitelist",
            "file",
            "-f",
            demuxer,
            "-print_format",
            "json",
            // Only the fields used: tags are user data and need not be parsed at all.
            "-show_entries",
            "format=duration,bit_rate,size\
             :stream=codec_type,width,height,r_frame_rate,duration\
             :stream_disposition=attached_pic:stream_tags=rotate\
             :stream_side_data=side_data_type,rotation",
        ]
        .into_iter()
        .map(OsString::from)
        .chain([file_url(input)])
        .collect();
        let json = self.run(&self.ffprobe, args, deadline).await?;
        Probe::parse(&json)
    }

    /// Runs a program to completion within the deadline, killing it beyond.
    async fn run(
        &self,
        program: &Path,
        args: Vec<OsString>,
        deadline: Instant,
    ) -> Result<Vec<u8>, PipelineError> {
        let name = program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PipelineError::Internal(format!("cannot run {name}: {e}")))?;
        // On timeout the future owning the child is dropped, which kills it.
        let output = tokio::time::timeout_at(deadline, child.wait_with_output())
            .await
            .map_err(|_| {
                PipelineError::TooLarge(format!(
                    "processing took longer than {} s",
                    self.timeout.as_secs()
                ))
            })?
            .map_err(|e| PipelineError::Internal(format!("waiting for {name}: {e}")))?;
        if output.status.success() {
            return Ok(output.stdout);
        }
        let tail = stderr_tail(&output.stderr);
        match output.status.code() {
            // Out of disk or memory on our side is worth a retry; anything else ffmpeg
            // refuses is the file's fault.
            Some(_) if is_resource_error(&tail) => {
                Err(PipelineError::Internal(format!("{name} failed: {tail}")))
            }
            // The uploader sees this message: ffmpeg's words stay in our log, since
            // they name our temporary paths and build.
            Some(code) => {
                tracing::info!(program = %name, code, stderr = %tail, "media tool refused a file");
                Err(PipelineError::Corrupt(format!(
                    "the file could not be read as audio or video ({name} exit {code})"
                )))
            }
            None => Err(PipelineError::Internal(format!(
                "{name} was killed ({}): {tail}",
                output.status
            ))),
        }
    }
}

fn locate(variable: &str, program: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        if is_executable(&path) {
            return Some(path);
        }
        tracing::warn!(%variable, path = %path.display(), "not an executable file");
        return None;
    }
    let search = std::env::var_os("PATH")?;
    std::env::split_paths(&search)
        .map(|dir| dir.join(program))
        .find(|path| is_executable(path))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// `file:` keeps a path with a colon (or starting with `-`) from being read as a protocol
/// or an option.
fn file_url(path: &Path) -> OsString {
    let mut url = OsString::from("file:");
    url.push(path.as_os_str());
    url
}

fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let mut start = text.len().saturating_sub(STDERR_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

fn is_resource_error(stderr: &str) -> bool {
    [
        "No space left on device",
        "Cannot allocate memory",
        "Too many open files",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

/// The largest box within [`VIDEO_MAX_PIXELS`] with the video's aspect ratio, never larger
/// than the video.
fn video_box(width: u32, height: u32) -> (u32, u32) {
    let pixels = u64::from(width) * u64::from(height);
    if pixels <= VIDEO_MAX_PIXELS {
        return (width.max(2), height.max(2));
    }
    let scale = (VIDEO_MAX_PIXELS as f64 / pixels as f64).sqrt();
    (
        ((f64::from(width) * scale) as u32).max(2),
        ((f64::from(height) * scale) as u32).max(2),
    )
}

fn transcode_args(
    input: &Path,
    demuxer: &str,
    kind: Kind,
    source: &Probe,
    output: &Path,
) -> Vec<OsString> {
    let (box_w, box_h) = video_box(source.width, source.height);
    // `min(..., iw)` keeps a wrong guess of the display size (rotation) from upscaling;
    // `decrease` keeps the aspect ratio; H.264 4:2:0 needs even dimensions.
    let scale = format!(
        "scale=min({box_w}\\,iw):min({box_h}\\,ih):force_original_aspect_ratio=decrease,\
         scale=max(2\\,trunc(iw/2)*2):max(2\\,trunc(ih/2)*2),format=yuv420p"
    );
    let mut args = Vec::new();
    extend(
        &mut args,
        &[
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-v",
            "error",
            "-y",
            "-protocol_whitelist",
            "file",
            "-f",
            demuxer,
            "-i",
        ],
    );
    args.push(file_url(input));
    if kind == Kind::Gifv {
        // GIF transparency has no meaning in H.264: lay the frames on white, as Mastodon does.
        let graph = format!("[0:v]drawbox=t=fill:c=white[bg];[bg][0:v]overlay=format=auto,{scale}");
        extend(&mut args, &["-filter_complex", &graph, "-an"]);
    } else {
        extend(&mut args, &["-map", "0:V:0", "-vf", &scale]);
        if source.has_audio {
            extend(
                &mut args,
                &["-map", "0:a:0", "-c:a", "aac", "-b:a", AUDIO_BITRATE],
            );
        } else {
            extend(&mut args, &["-an"]);
        }
    }
    extend(
        &mut args,
        &[
            // No metadata at all: phones put GPS coordinates in MOV/MP4 tags.
            "-map_metadata",
            "-1",
            "-map_chapters",
            "-1",
            "-sn",
            "-dn",
            // Keep the source's frame timing: forcing a constant rate would duplicate frames
            // of variable-rate phone videos and of GIFs (whose nominal rate is 100 fps).
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            X264_PRESET,
            "-crf",
            X264_CRF,
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ],
    );
    args.push(file_url(output));
    args
}

fn extend(args: &mut Vec<OsString>, items: &[&str]) {
    args.extend(items.iter().map(OsString::from));
}

/// The first frame of the stored video, as PNG on stdout.
fn poster_args(video: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-v",
        "error",
        "-protocol_whitelist",
        "file,pipe",
        "-f",
        "mov",
        "-i",
    ]
    .map(OsString::from)
    .to_vec();
    args.push(file_url(video));
    args.extend(
        [
            "-map",
            "0:V:0",
            "-frames:v",
            "1",
            "-c:v",
            "png",
            "-f",
            "image2pipe",
            "pipe:1",
        ]
        .map(OsString::from),
    );
    args
}

/// What ffprobe says of a file.
#[derive(Debug)]
struct Probe {
    /// Display size: the coded size turned by the rotation side data.
    width: u32,
    height: u32,
    duration: f64,
    frame_rate: String,
    bit_rate: Option<u64>,
    has_audio: bool,
}

#[derive(Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    #[serde(default)]
    format: FormatJson,
}

#[derive(Deserialize)]
struct StreamJson {
    codec_type: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    disposition: DispositionJson,
    #[serde(default)]
    side_data_list: Vec<SideDataJson>,
    #[serde(default)]
    tags: TagsJson,
}

#[derive(Deserialize, Default)]
struct DispositionJson {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct SideDataJson {
    rotation: Option<f64>,
}

#[derive(Deserialize, Default)]
struct TagsJson {
    rotate: Option<String>,
}

#[derive(Deserialize, Default)]
struct FormatJson {
    duration: Option<String>,
    bit_rate: Option<String>,
}

impl Probe {
    fn parse(json: &[u8]) -> Result<Probe, PipelineError> {
        let parsed: ProbeJson = serde_json::from_str(&String::from_utf8_lossy(json))
            .map_err(|e| PipelineError::Internal(format!("unreadable ffprobe output: {e}")))?;
        let has_audio = parsed
            .streams
            .iter()
            .any(|s| s.codec_type.as_deref() == Some("audio"));
        // Cover art is a "video" stream of one picture; it is not the video.
        let video = parsed
            .streams
            .iter()
            .find(|s| s.codec_type.as_deref() == Some("video") && s.disposition.attached_pic == 0)
            .ok_or_else(|| PipelineError::Corrupt("the file has no video stream".into()))?;
        let (width, height) = match (video.width, video.height) {
            (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
            _ => {
                return Err(PipelineError::Corrupt(
                    "the video stream has no dimensions".into(),
                ));
            }
        };
        let rotation = video
            .side_data_list
            .iter()
            .find_map(|d| d.rotation)
            .or_else(|| {
                video
                    .tags
                    .rotate
                    .as_deref()
                    .and_then(|r| r.trim().parse().ok())
            })
            .unwrap_or(0.0);
        let quarter_turn = (rotation.round() as i64).rem_euclid(180) == 90;
        let (width, height) = if quarter_turn {
            (height, width)
        } else {
            (width, height)
        };
        let duration = parse_positive(parsed.format.duration.as_deref())
            .or_else(|| parse_positive(video.duration.as_deref()))
            .unwrap_or(0.0);
        Ok(Probe {
            width,
            height,
            duration,
            frame_rate: video.r_frame_rate.clone().unwrap_or_default(),
            bit_rate: parsed
                .format
                .bit_rate
                .as_deref()
                .and_then(|b| b.trim().parse().ok()),
            has_audio,
        })
    }
}

fn parse_positive(value: Option<&str>) -> Option<f64> {
    value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reads_rotation_and_skips_cover_art() -> Result<(), PipelineError> {
        let json = br#"{"streams": [
            {"codec_type": "video", "width": 600, "height": 600, "disposition": {"attached_pic": 1}},
            {"codec_type": "video", "width": 1920, "height": 1080, "r_frame_rate": "30000/1001",
             "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]},
            {"codec_type": "audio"}],
            "format": {"duration": "12.5", "bit_rate": "800000"}}"#;
        let probe = Probe::parse(json)?;
        assert_eq!((probe.width, probe.height), (1080, 1920));
        assert_eq!(probe.frame_rate, "30000/1001");
        assert!(probe.has_audio);
        assert_eq!(probe.bit_rate, Some(800_000));
        assert!((probe.duration - 12.5).abs() < 1e-9);
        Ok(())
    }

    #[test]
    fn probe_without_video_is_corrupt() {
        let json = br#"{"streams": [{"codec_type": "audio"}], "format": {}}"#;
        assert!(matches!(Probe::parse(json), Err(PipelineError::Corrupt(_))));
        assert!(matches!(
            Probe::parse(b"{}"),
            Err(PipelineError::Corrupt(_))
        ));
        assert!(matches!(
            Probe::parse(b"nope"),
            Err(PipelineError::Internal(_))
        ));
    }

    #[test]
    fn video_box_keeps_aspect_within_budget() {
        assert_eq!(video_box(320, 240), (320, 240));
        assert_eq!(video_box(3840, 2160), (1920, 1080));
        assert_eq!(video_box(2160, 3840), (1080, 1920));
        let (w, h) = video_box(4000, 3000);
        assert!(u64::from(w) * u64::from(h) <= VIDEO_MAX_PIXELS);
        assert_eq!(video_box(1, 1), (2, 2));
    }

    #[test]
    fn stderr_tail_keeps_the_end_on_a_char_boundary() {
        let long = format!("{}é{}", "a".repeat(3000), "b".repeat(2046));
        let tail = stderr_tail(long.as_bytes());
        assert!(tail.len() <= STDERR_TAIL);
        assert!(tail.ends_with('b'));
        assert_eq!(stderr_tail(b"  oops \n"), "oops");
    }
}
