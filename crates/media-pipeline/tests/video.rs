//! Video and gifv through ffmpeg. These need `ffmpeg` and `ffprobe`: without them they fail
//! (saying so) rather than pass unseen; CI installs ffmpeg.

mod common;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::TestResult;
use rookery_media_pipeline::{
    Container, Ffmpeg, ImageLimits, Kind, PipelineError, Processed, process, sniff,
};

fn ffmpeg() -> Result<Ffmpeg, Box<dyn Error>> {
    Ffmpeg::detect().ok_or_else(|| {
        "this test requires ffmpeg and ffprobe (apt-get install ffmpeg, or set FFMPEG_PATH and FFPROBE_PATH)"
            .into()
    })
}

/// Runs the ffmpeg CLI to make an input: a 1 s test pattern, plus `args` before the output.
fn make_input(
    dir: &Path,
    name: &str,
    size: &str,
    args: &[&str],
) -> Result<PathBuf, Box<dyn Error>> {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={size}:rate=25"))
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "1",
        ])
        .args(args)
        .arg(&path)
        .status()?;
    if !status.success() {
        return Err(format!("ffmpeg could not make {name}").into());
    }
    Ok(path)
}

/// ffprobe's JSON of a file.
fn probe(path: &Path) -> Result<serde_json::Value, Box<dyn Error>> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()?;
    if !out.status.success() {
        return Err(format!("ffprobe failed on {}", path.display()).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn stream_types(json: &serde_json::Value) -> Vec<String> {
    json["streams"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["codec_type"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the stored MP4 out to probe it.
fn stored(dir: &Path, p: &Processed) -> Result<serde_json::Value, Box<dyn Error>> {
    let path = dir.join("stored.mp4");
    std::fs::write(&path, &p.original.bytes)?;
    probe(&path)
}

fn assert_poster(p: &Processed) {
    assert!(
        p.small.bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "poster is not a JPEG"
    );
    assert_eq!(p.small.content_type, "image/jpeg");
    assert_eq!(p.small_webp.content_type, "image/webp");
    assert!(p.small.width <= 640 && p.small.height <= 640);
    assert_eq!(p.blurhash.len(), 28);
    assert!(p.original_webp.is_none());
}

#[tokio::test]
async fn mp4_with_audio_is_transcoded() -> TestResult {
    let ffmpeg = ffmpeg()?;
    let dir = tempfile::tempdir()?;
    let input = make_input(
        dir.path(),
        "in.mp4",
        "320x240",
        &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
    )?;
    let container = sniff(&std::fs::read(&input)?).ok_or("not sniffed")?;
    assert_eq!(container, Container::Mp4);
    let p = process(&input, container, &ImageLimits::default(), Some(&ffmpeg)).await?;
    assert_eq!(p.kind, Kind::Video);
    assert_eq!(p.original.content_type, "video/mp4");
    assert_eq!(p.original.extension, "mp4");
    assert_eq!((p.original.width, p.original.height), (320, 240));
    let meta = p.video.as_ref().ok_or("no video meta")?;
    assert!(
        (0.9..1.2).contains(&meta.duration),
        "duration {}",
        meta.duration
    );
    assert_eq!(meta.frame_rate, "25/1");
    assert!(meta.bitrate > 0);
    assert_poster(&p);
    assert_eq!((p.small.width, p.small.height), (320, 240));
    let json = stored(dir.path(), &p)?;
    assert_eq!(stream_types(&json), ["video", "audio"]);
    assert_eq!(json["streams"][0]["codec_name"], "h264");
    assert_eq!(json["streams"][0]["pix_fmt"], "yuv420p");
    assert_eq!(json["streams"][1]["codec_name"], "aac");
    // faststart: the index (moov) comes before the media data.
    let bytes = &p.original.bytes;
    let find = |tag: &[u8]| bytes.windows(4).position(|w| w == tag);
    assert!(find(b"moov") < find(b"mdat"), "moov is not first");
    Ok(())
}

#[tokio::test]
async fn silent_video_stays_silent() -> TestResult {
    let ffmpeg = ffmpeg()?;
    let dir = tempfile::tempdir()?;
    let input = make_input(
        dir.path(),
        "in.mp4",
        "160x120",
        &["-an", "-c:v", "libx264", "-preset", "ultrafast"],
    )?;
    let p = process(
        &input,
        Container::Mp4,
        &ImageLimits::default(),
        Some(&ffmpeg),
    )
    .await?;
    assert_eq!(stream_types(&stored(dir.path(), &p)?), ["video"]);
    Ok(())
}

#[tokio::test]
async fn mov_location_metadata_is_stripped() -> TestResult {
    let ffmpeg = ffmpeg()?;
    let dir = tempfile::tempdir()?;
    let input = make_input(
        dir.path(),
        "in.mov",
        "320x240",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-metadata",
            "location=+48.8584+002.2945/",
            "-metadata",
            "title=secret title",
            "-f",
            "mov",
        ],
    )?;
    assert_eq!(sniff(&std::fs::read(&input)?), Some(Container::Mov));
    // The input does carry it.
    assert_eq!(
        probe(&input)?["format"]["tags"]["location"],
        "+48.8584+002.2945/"
    );
    let p = process(
        &input,
        Container::Mov,
        &ImageLimits::default(),
        Some(&ffmpeg),
    )
    .await?;
    let json = stored(dir.path(), &p)?;
    assert!(
        json["format"]["tags"]["location"].is_null(),
        "{}",
        json["format"]["tags"]
    );
    assert!(json["format"]["tags"]["title"].is_null());
    assert!(!common::contains(&p.original.bytes, b"+48.8584"));
    assert!(!common::contains(&p.original.bytes, b"secret title"));
    Ok(())
}

#[tokio::test]
async fn webm_becomes_mp4() -> TestResult {
    let ffmpeg = ffmpeg()?;
    let dir = tempfile::tempdir()?;
    let input = make_input(
        dir.path(),
        "in.webm",
        "320x240",
        &[
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-b:v",
            "300k",
            "-c:a",
            "libopus",
            "-f",
            "webm",
        ],
    )?;
    assert_eq!(sniff(&std::fs::read(&input)?), Some(Container::WebM));
    let p = process(
        &input,
        Container::WebM,
        &ImageLimits::default(),
        Some(&ffmpeg),
    )
    .await?;
    assert_eq!(p.kind, Kind::Video);
    assert_eq!((p.original.width, p.original.height), (320, 240));
    let json = stored(dir.path(), &p)?;
    assert_eq!(stream_types(&json), ["video", "audio"]);
    assert_eq!(json["streams"][1]["codec_name"], "aac");
    assert_poster(&p);
    Ok(())
}

#[tokio::test]
async fn rotated_video_is_stored_upright() -> TestResult {
    let ffmpeg = ffmpeg()?;
    let dir = tempfile::tempdir()?;
    let plain = make_input(
        dir.path(),
        "plain.mp4",
        "320x240",
        &["-c:v", "libx264", "-preset", "ultrafast", "-an"],
    )?;
    // Phones store a rotation matrix rather than turned pixels.
    let rotated = dir.path().join("rotated.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y", "-i"])
        .arg(&plain)
        .args(["-c", "copy", "-metadata:s:v:0", "rotate=90"])
        .arg(&rotated)
        .status()?;
    assert!(status.success());
    let p = process(
        &rotated,
        Container::Mp4,
        &ImageLimits::default(),
        Some(&ffmpeg),
    )
    .await?;
    assert_eq!((p.original.width, p.original.height), (240, 320));
    assert_eq!((p.small.width, p.small.height), (240, 320));
    Ok(())
}

#[tokio::test]
async fn big_and_odd_videos_get_even_dimensions_within_budget() -> TestResult {
    let ffmpeg = ffmpeg()?;
    let dir = tempfile::tempdir()?;
    let big = make_input(
        dir.path(),
        "big.mp4",
        "2400x1800",
        &[
            "-t",
            "0.2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-an",
        ],
    )?;
    let p = process(&big, Container::Mp4, &ImageLimits::default(), Some(&ffmpeg)).await?;
    let (w, h) = (p.original.width, p.original.height);
    assert!(u64::from(w) * u64::from(h) <= 1920 * 1080, "{w}x{h}");
    assert!(w >= 1600 && w % 2 == 0 && h % 2 == 0, "{w}x{h}");
    assert!((f64::from(w) / f64::from(h) - 4.0 / 3.0).abs() < 0.01);

    let odd = make_input(
        dir.path(),
        "odd.mp4",
        "161x121",
        &[
            "-t",
            "0.2",
            "-c:v",
            "libx264rgb",
            "-preset",
            "ultrafast",
            "-an",
        ],
    )?;
    let p = process(&odd, Container::Mp4, &ImageLimits::default(), Some(&ffmpeg)).await?;
    assert_eq!((p.original.width, p.original.height), (160, 120));
    Ok(())
}

#[tokio::test]
async fn animated_gif_becomes_gifv() -> TestResult {
    let ffmpeg = ffmpeg()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("anim.gif");
    std::fs::write(&path, common::gif(63, 47, 2)?)?;
    let p = process(
        &path,
        Container::Gif,
        &ImageLimits::default(),
        Some(&ffmpeg),
    )
    .await?;
    assert_eq!(p.kind, Kind::Gifv);
    assert_eq!(p.original.content_type, "video/mp4");
    assert_eq!((p.original.width, p.original.height), (62, 46));
    let meta = p.video.as_ref().ok_or("no video meta")?;
    assert!(meta.duration > 0.1, "duration {}", meta.duration);
    assert_poster(&p);
    let json = stored(dir.path(), &p)?;
    assert_eq!(stream_types(&json), ["video"]);

    // A still GIF stays an image even with ffmpeg.
    let still = dir.path().join("still.gif");
    std::fs::write(&still, common::gif(20, 10, 1)?)?;
    let p = process(
        &still,
        Container::Gif,
        &ImageLimits::default(),
        Some(&ffmpeg),
    )
    .await?;
    assert_eq!(p.kind, Kind::Image);
    Ok(())
}

#[tokio::test]
async fn transparent_gif_frames_are_laid_on_white() -> TestResult {
    let ffmpeg = ffmpeg()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("clear.gif");
    let mut out = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut out);
        for _ in 0..2 {
            let frame = image::RgbaImage::from_fn(32, 32, |x, _| {
                if x < 16 {
                    image::Rgba([0, 0, 0, 0])
                } else {
                    image::Rgba([0, 0, 255, 255])
                }
            });
            encoder.encode_frame(image::Frame::new(frame))?;
        }
    }
    std::fs::write(&path, out)?;
    let p = process(
        &path,
        Container::Gif,
        &ImageLimits::default(),
        Some(&ffmpeg),
    )
    .await?;
    let poster = common::decode(&p.small.bytes)?.to_rgb8();
    let clear = poster.get_pixel(4, 16);
    assert!(
        clear.0.iter().all(|&c| c > 220),
        "transparent area is {clear:?}"
    );
    Ok(())
}

#[tokio::test]
async fn broken_video_is_corrupt() -> TestResult {
    let ffmpeg = ffmpeg()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("broken.mp4");
    let mut bytes = b"\0\0\0\x18ftypisom\0\0\x02\0isommp42".to_vec();
    bytes.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    std::fs::write(&path, bytes)?;
    let result = process(
        &path,
        Container::Mp4,
        &ImageLimits::default(),
        Some(&ffmpeg),
    )
    .await;
    assert!(
        matches!(result, Err(PipelineError::Corrupt(_))),
        "{result:?}"
    );
    // The uploader is told, but not where our files are.
    let Err(PipelineError::Corrupt(message)) = &result else {
        unreachable!()
    };
    assert!(!message.contains('/'), "{message}");

    // An HLS playlist with a video name is never handed to ffmpeg's probing: it is not
    // sniffed, and forced to the MP4 demuxer it is just broken.
    let playlist = dir.path().join("playlist.mp4");
    std::fs::write(
        &playlist,
        "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1,\nfile:///etc/passwd\n",
    )?;
    assert_eq!(sniff(&std::fs::read(&playlist)?), None);
    let result = process(
        &playlist,
        Container::Mp4,
        &ImageLimits::default(),
        Some(&ffmpeg),
    )
    .await;
    assert!(
        matches!(result, Err(PipelineError::Corrupt(_))),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn oversized_video_is_refused_before_transcoding() -> TestResult {
    let ffmpeg = ffmpeg()?;
    let dir = tempfile::tempdir()?;
    let input = make_input(
        dir.path(),
        "in.mp4",
        "320x240",
        &["-t", "0.2", "-c:v", "libx264", "-preset", "ultrafast"],
    )?;
    let limits = ImageLimits {
        max_pixels: 320 * 239,
        ..ImageLimits::default()
    };
    let result = process(&input, Container::Mp4, &limits, Some(&ffmpeg)).await;
    assert!(
        matches!(result, Err(PipelineError::TooLarge(_))),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn timeout_kills_ffmpeg() -> TestResult {
    let ffmpeg = ffmpeg()?.with_timeout(Duration::from_millis(1));
    let dir = tempfile::tempdir()?;
    let input = make_input(
        dir.path(),
        "in.mp4",
        "320x240",
        &["-c:v", "libx264", "-preset", "ultrafast"],
    )?;
    let result = process(
        &input,
        Container::Mp4,
        &ImageLimits::default(),
        Some(&ffmpeg),
    )
    .await;
    assert!(
        matches!(result, Err(PipelineError::TooLarge(_))),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn video_without_ffmpeg_is_refused() -> TestResult {
    // No ffmpeg needed: the container alone decides, before the file is read.
    for container in [Container::Mp4, Container::Mov, Container::WebM] {
        let result = process(
            Path::new("/nonexistent/video"),
            container,
            &ImageLimits::default(),
            None,
        )
        .await;
        assert!(matches!(result, Err(PipelineError::NoFfmpeg)), "{result:?}");
        assert!(!PipelineError::NoFfmpeg.is_retryable());
    }
    Ok(())
}
