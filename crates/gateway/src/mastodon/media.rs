//! The `MediaAttachment` entity, from the media service's `Attachment`.
//!
//! URLs are `{media base}/{key}`: the gateway's own `/system/media` by default, a CDN or
//! the bucket when configured.

use std::collections::HashMap;

use rookery_proto::media::v1 as md;
use serde::Serialize;

use super::{Concat, IdStr};

/// Bytes of one serialised attachment, for `json_response` size hints.
pub const MEDIA_JSON_BYTES: usize = 768;

/// The attachments a response references, and where their files are served from.
#[derive(Debug, Default)]
pub struct MediaRefs {
    pub attachments: HashMap<i64, md::Attachment>,
    /// No trailing slash.
    pub base: String,
}

impl MediaRefs {
    /// The entities of `ids` that exist, in order.
    pub fn render<'a>(&'a self, ids: &[i64]) -> Vec<MediaAttachment<'a>> {
        ids.iter()
            .filter_map(|id| self.attachments.get(id))
            .map(|a| attachment(a, &self.base))
            .collect()
    }
}

/// `meta.original` / `meta.small` of an image (and `meta.small` of a video).
#[derive(Serialize)]
struct ImageMeta {
    width: u32,
    height: u32,
    size: String,
    aspect: f64,
}

fn image_meta(d: &md::Dimensions) -> ImageMeta {
    ImageMeta {
        width: d.width,
        height: d.height,
        size: format!("{}x{}", d.width, d.height),
        aspect: aspect(d),
    }
}

fn aspect(d: &md::Dimensions) -> f64 {
    if d.height == 0 {
        0.0
    } else {
        f64::from(d.width) / f64::from(d.height)
    }
}

/// `meta.original` of a video or gifv.
#[derive(Serialize)]
struct VideoOriginal<'a> {
    width: u32,
    height: u32,
    frame_rate: &'a str,
    duration: f64,
    bitrate: u64,
}

#[derive(Serialize)]
struct Focus {
    x: f64,
    y: f64,
}

/// `meta`: what Mastodon's Paperclip reports, for the types we make.
#[derive(Serialize)]
struct Meta<'a> {
    // Video and gifv: the summary Mastodon puts at the top level.
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect: Option<f64>,
    original: Original<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    small: Option<ImageMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    focus: Option<Focus>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Original<'a> {
    Image(ImageMeta),
    Video(VideoOriginal<'a>),
}

/// The `MediaAttachment` entity.
#[derive(Serialize)]
pub struct MediaAttachment<'a> {
    id: IdStr,
    #[serde(rename = "type")]
    kind: &'a str,
    url: Option<Concat<'a>>,
    preview_url: Option<Concat<'a>>,
    remote_url: (),
    preview_remote_url: (),
    text_url: (),
    meta: Option<Meta<'a>>,
    description: Option<&'a str>,
    blurhash: Option<&'a str>,
}

/// `0:01:28.65` from seconds, as Mastodon's `meta.length`.
fn length(seconds: f64) -> String {
    let centis = (seconds.max(0.0) * 100.0).round() as u64;
    let (h, rest) = (centis / 360_000, centis % 360_000);
    let (m, rest) = (rest / 6_000, rest % 6_000);
    format!("{h}:{m:02}:{:02}.{:02}", rest / 100, rest % 100)
}

/// Whole frames per second from ffprobe's `30000/1001`.
fn fps(rate: &str) -> Option<u32> {
    let (n, d) = rate.split_once('/').unwrap_or((rate, "1"));
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0).then(|| (n / d).round() as u32)
}

/// Renders an attachment; `base` is where files are served from (no trailing slash).
pub fn attachment<'a>(a: &'a md::Attachment, base: &'a str) -> MediaAttachment<'a> {
    let ready = a.state() == md::State::Ready;
    let url = |key: &'a str| (ready && !key.is_empty()).then_some(Concat(base, "/", key));
    let focus = match (a.focus_x, a.focus_y) {
        (Some(x), Some(y)) => Some(Focus { x, y }),
        _ => None,
    };
    let meta = a.original.as_ref().filter(|_| ready).map(|o| {
        let video = a.r#type != "image";
        if video {
            Meta {
                length: Some(length(a.duration)),
                duration: Some(a.duration),
                fps: fps(&a.frame_rate),
                size: Some(format!("{}x{}", o.width, o.height)),
                width: Some(o.width),
                height: Some(o.height),
                aspect: Some(aspect(o)),
                original: Original::Video(VideoOriginal {
                    width: o.width,
                    height: o.height,
                    frame_rate: &a.frame_rate,
                    duration: a.duration,
                    bitrate: a.bitrate,
                }),
                small: a.small.as_ref().map(image_meta),
                focus,
            }
        } else {
            Meta {
                length: None,
                duration: None,
                fps: None,
                size: None,
                width: None,
                height: None,
                aspect: None,
                original: Original::Image(image_meta(o)),
                small: a.small.as_ref().map(image_meta),
                focus,
            }
        }
    });
    MediaAttachment {
        id: IdStr(a.id),
        kind: &a.r#type,
        url: url(&a.original_key),
        preview_url: url(&a.small_key),
        remote_url: (),
        preview_remote_url: (),
        text_url: (),
        meta,
        description: Some(a.description.as_str()).filter(|d| !d.is_empty()),
        blurhash: Some(a.blurhash.as_str()).filter(|b| !b.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> md::Attachment {
        md::Attachment {
            id: 7,
            r#type: "image".into(),
            state: md::State::Ready.into(),
            original_key: "abc/original.jpg".into(),
            small_key: "abc/small.jpg".into(),
            original: Some(md::Dimensions {
                width: 1200,
                height: 800,
            }),
            small: Some(md::Dimensions {
                width: 640,
                height: 427,
            }),
            blurhash: "LEHV6nWB2yk8pyo0adR*.7kCMdnj".into(),
            focus_x: Some(0.5),
            focus_y: Some(-0.25),
            ..Default::default()
        }
    }

    #[test]
    fn an_image_renders_as_mastodon_does() -> Result<(), serde_json::Error> {
        let a = image();
        let json = serde_json::to_value(attachment(&a, "https://cdn.test/m"))?;
        assert_eq!(json["id"], "7");
        assert_eq!(json["type"], "image");
        assert_eq!(json["url"], "https://cdn.test/m/abc/original.jpg");
        assert_eq!(json["preview_url"], "https://cdn.test/m/abc/small.jpg");
        assert_eq!(json["remote_url"], serde_json::Value::Null);
        assert_eq!(json["description"], serde_json::Value::Null);
        assert_eq!(json["meta"]["original"]["size"], "1200x800");
        assert_eq!(json["meta"]["original"]["aspect"], 1.5);
        assert_eq!(json["meta"]["small"]["width"], 640);
        assert_eq!(json["meta"]["focus"]["x"], 0.5);
        assert_eq!(json["meta"]["focus"]["y"], -0.25);
        assert!(json["meta"].get("length").is_none());
        Ok(())
    }

    #[test]
    fn processing_has_no_urls_or_meta() -> Result<(), serde_json::Error> {
        let a = md::Attachment {
            state: md::State::Processing.into(),
            r#type: "video".into(),
            ..image()
        };
        let json = serde_json::to_value(attachment(&a, "https://cdn.test/m"))?;
        assert_eq!(json["url"], serde_json::Value::Null);
        assert_eq!(json["preview_url"], serde_json::Value::Null);
        assert_eq!(json["meta"], serde_json::Value::Null);
        Ok(())
    }

    #[test]
    fn a_video_has_its_length_and_rate() -> Result<(), serde_json::Error> {
        let a = md::Attachment {
            r#type: "video".into(),
            original_key: "abc/original.mp4".into(),
            duration: 88.654,
            frame_rate: "30000/1001".into(),
            bitrate: 862_056,
            description: "a cat".into(),
            ..image()
        };
        let json = serde_json::to_value(attachment(&a, "https://cdn.test/m"))?;
        assert_eq!(json["meta"]["length"], "0:01:28.65");
        assert_eq!(json["meta"]["fps"], 30);
        assert_eq!(json["meta"]["original"]["frame_rate"], "30000/1001");
        assert_eq!(json["meta"]["original"]["bitrate"], 862_056);
        assert_eq!(json["description"], "a cat");
        Ok(())
    }

    #[test]
    fn lengths_and_rates() {
        assert_eq!(length(0.0), "0:00:00.00");
        assert_eq!(length(3725.5), "1:02:05.50");
        assert_eq!(fps("25/1"), Some(25));
        assert_eq!(fps("24"), Some(24));
        assert_eq!(fps("1/0"), None);
        assert_eq!(fps(""), None);
    }
}
