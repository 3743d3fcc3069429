//! What the simulated users do: the request mix, who does it (Zipf-chosen users), and the
//! requests themselves.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{HeaderValue, Method};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::zipf::Zipf;

/// What a request does. The order is the order of the report's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Endpoint {
    Home,
    Account,
    Post,
    Notifications,
    Favourite,
    MediaRead,
    MediaUpload,
    /// Baselines served by `rookery-loadgen baseline`, not by the gateway.
    Hello,
    Hop,
}

impl Endpoint {
    pub const WORKLOAD: [Endpoint; 7] = [
        Self::Home,
        Self::Account,
        Self::Post,
        Self::Notifications,
        Self::Favourite,
        Self::MediaRead,
        Self::MediaUpload,
    ];

    /// Name in mixes and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Home => "home",
            Self::Account => "account",
            Self::Post => "post",
            Self::Notifications => "notifications",
            Self::Favourite => "favourite",
            Self::MediaRead => "media_read",
            Self::MediaUpload => "media_upload",
            Self::Hello => "hello",
            Self::Hop => "hop",
        }
    }

    /// Method and route, as the gateway's metrics label them.
    pub fn route(self) -> (&'static str, &'static str) {
        match self {
            Self::Home => ("GET", "/api/v1/timelines/home"),
            Self::Account => ("GET", "/api/v1/accounts/{id}/statuses"),
            Self::Post => ("POST", "/api/v1/statuses"),
            Self::Notifications => ("GET", "/api/v1/notifications"),
            Self::Favourite => ("POST", "/api/v1/statuses/{id}/favourite"),
            Self::MediaRead => ("GET", "/system/media/{*key}"),
            Self::MediaUpload => ("POST", "/api/v2/media"),
            Self::Hello => ("GET", "/hello"),
            Self::Hop => ("GET", "/hop"),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Endpoint {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        [Self::Hello, Self::Hop]
            .into_iter()
            .chain(Self::WORKLOAD)
            .find(|e| e.name() == s)
            .with_context(|| format!("unknown endpoint {s:?}"))
    }
}

/// Relative weights of the endpoints, e.g. `home=60,account=30,post=10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    /// (endpoint, cumulative weight)
    cumulative: Vec<(Endpoint, u32)>,
}

/// DeathStarBench's social network mix (60% home, 30% account timelines, 10% posts)
/// with notification reads, favourites and media in the proportions clients send them.
pub const DEFAULT_MIX: &str =
    "home=500,account=250,post=80,notifications=100,favourite=50,media_read=15,media_upload=5";

impl FromStr for Mix {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut cumulative = Vec::new();
        let mut total = 0u32;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let endpoint: Endpoint = name.trim().parse()?;
            let weight: u32 = weight
                .trim()
                .parse()
                .with_context(|| format!("weight of {name} in {s:?}"))?;
            if weight == 0 {
                continue;
            }
            total = total.checked_add(weight).context("weights overflow")?;
            cumulative.push((endpoint, total));
        }
        if cumulative.is_empty() {
            bail!("mix {s:?} has no endpoint with a weight");
        }
        Ok(Self { cumulative })
    }
}

impl Mix {
    /// The mix of a single endpoint.
    pub fn only(endpoint: Endpoint) -> Self {
        Self {
            cumulative: vec![(endpoint, 1)],
        }
    }

    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Endpoint {
        let total = self.cumulative.last().map_or(1, |&(_, t)| t);
        let x = rng.random_range(0..total);
        let i = self.cumulative.partition_point(|&(_, c)| c <= x);
        self.cumulative[i.min(self.cumulative.len() - 1)].0
    }

    /// The endpoints in the mix.
    pub fn endpoints(&self) -> impl Iterator<Item = Endpoint> + '_ {
        self.cumulative.iter().map(|&(e, _)| e)
    }
}

/// One request to send.
#[derive(Clone, Debug)]
pub struct Req {
    pub endpoint: Endpoint,
    pub method: Method,
    pub path: String,
    pub auth: Option<HeaderValue>,
    /// Content type and body.
    pub body: Option<(HeaderValue, Bytes)>,
}

const WORDS: &[&str] = &[
    "the",
    "morning",
    "coffee",
    "train",
    "late",
    "again",
    "rust",
    "release",
    "garden",
    "tomatoes",
    "finally",
    "red",
    "reading",
    "a",
    "book",
    "about",
    "birds",
    "rooks",
    "are",
    "clever",
    "weekend",
    "hike",
    "rain",
    "sun",
    "cat",
    "asleep",
    "on",
    "keyboard",
    "new",
    "blog",
    "post",
    "thoughts",
    "music",
    "concert",
    "tonight",
    "bread",
    "baked",
    "sourdough",
    "city",
    "bike",
    "ride",
    "photo",
    "sunset",
    "river",
    "quiet",
    "today",
    "and",
    "with",
];

/// Hashtags of the instance; a Zipf pick makes a few of them trend.
pub const TAGS: &[&str] = &[
    "rust",
    "photography",
    "caturday",
    "gardening",
    "music",
    "books",
    "birds",
    "cycling",
    "coffee",
    "baking",
    "hiking",
    "news",
    "art",
    "science",
    "fediverse",
    "introductions",
];

/// A status text of 6–30 words, sometimes with a hashtag or a link; `reply_to` (a
/// username) starts it with a mention, as clients write replies.
pub fn compose<R: Rng + ?Sized>(rng: &mut R, tags: &Zipf, reply_to: Option<&str>) -> String {
    let mut text = String::with_capacity(200);
    if let Some(user) = reply_to {
        text.push('@');
        text.push_str(user);
        text.push(' ');
    }
    let words = rng.random_range(6..=30);
    for i in 0..words {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    if rng.random_bool(0.3) {
        text.push_str(" #");
        text.push_str(TAGS[tags.sample(rng)]);
    }
    if rng.random_bool(0.1) {
        text.push_str(" https://example.com/");
        text.push_str(&rng.random_range(0..10_000u32).to_string());
    }
    text
}

/// A 320×240 PNG (a gradient with a `variant`-dependent pattern, so uploads differ) of
/// the size phones send as thumbnails: small enough to be processed in the request.
pub fn png(variant: u32) -> anyhow::Result<Vec<u8>> {
    let img = image::RgbImage::from_fn(320, 240, |x, y| {
        let v = variant.wrapping_mul(2_654_435_761);
        image::Rgb([
            (x * 255 / 320) as u8,
            (y * 255 / 240) as u8,
            ((x ^ y).wrapping_add(v) & 0xff) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// Generates the requests of the simulated users from a seeded dataset.
pub struct Workload {
    data: Arc<Dataset>,
    mix: Mix,
    /// Who acts: rank in `data.by_activity`.
    users: Zipf,
    /// Whose profile is viewed: rank in `data.by_followers`.
    profiles: Zipf,
    /// Which status is favourited or replied to: index in `data.statuses`.
    statuses: Zipf,
    tags: Zipf,
    media: Zipf,
    bearer: Vec<HeaderValue>,
    upload: (HeaderValue, Bytes),
}

const BOUNDARY: &str = "rookery-loadgen-8f3a1c";
/// `HeaderValue::from_static` needs a literal: the same boundary (checked by a test).
const MULTIPART: &str = "multipart/form-data; boundary=rookery-loadgen-8f3a1c";

/// The multipart body (and its content type) of a media upload of `png`.
pub fn upload_body(png: &[u8]) -> (HeaderValue, Bytes) {
    let mut body = Vec::with_capacity(png.len() + 512);
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(png);
    body.extend_from_slice(
        format!(
            "\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n\
             A gradient, uploaded by the load harness\r\n--{BOUNDARY}--\r\n"
        )
        .as_bytes(),
    );
    (HeaderValue::from_static(MULTIPART), Bytes::from(body))
}

impl Workload {
    /// `upload_png` is the image each media upload sends.
    pub fn new(data: Arc<Dataset>, mix: Mix, upload_png: &[u8]) -> anyhow::Result<Self> {
        if data.accounts.is_empty() || data.statuses.is_empty() {
            bail!("the dataset has no accounts or no statuses");
        }
        let bearer = data
            .accounts
            .iter()
            .map(|a| HeaderValue::from_str(&format!("Bearer {}", a.token)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            users: Zipf::new(data.by_activity.len(), 1.0),
            profiles: Zipf::new(data.by_followers.len(), 1.0),
            statuses: Zipf::new(data.statuses.len(), 1.0),
            tags: Zipf::new(TAGS.len(), 1.0),
            media: Zipf::new(data.media.len(), 1.0),
            bearer,
            upload: upload_body(upload_png),
            data,
            mix,
        })
    }

    pub fn mix(&self) -> &Mix {
        &self.mix
    }

    /// The next request of the run.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> Req {
        let endpoint = self.mix.pick(rng);
        let user = self.data.by_activity[self.users.sample(rng)] as usize;
        let auth = Some(self.bearer[user].clone());
        let get = |path: String| Req {
            endpoint,
            method: Method::GET,
            path,
            auth: auth.clone(),
            body: None,
        };
        match endpoint {
            Endpoint::Home => get("/api/v1/timelines/home".into()),
            Endpoint::Notifications => get("/api/v1/notifications".into()),
            Endpoint::Account => {
                let target = self.data.by_followers[self.profiles.sample(rng)] as usize;
                get(format!(
                    "/api/v1/accounts/{}/statuses",
                    self.data.accounts[target].id
                ))
            }
            Endpoint::Favourite => {
                let status = self.data.statuses[self.statuses.sample(rng)].id;
                Req {
                    method: Method::POST,
                    ..get(format!("/api/v1/statuses/{status}/favourite"))
                }
            }
            Endpoint::Post => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                // One post in five replies to a popular status.
                if rng.random_bool(0.2) {
                    let parent = self.data.statuses[self.statuses.sample(rng)];
                    form.append_pair("in_reply_to_id", &parent.id.to_string());
                    let author = &self.data.accounts[parent.author as usize].username;
                    let text = compose(rng, &self.tags, Some(author));
                    form.append_pair("status", &text);
                } else {
                    form.append_pair("status", &compose(rng, &self.tags, None));
                }
                form.append_pair("visibility", "public");
                Req {
                    endpoint,
                    method: Method::POST,
                    path: "/api/v1/statuses".into(),
                    auth,
                    body: Some((
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                        Bytes::from(form.finish()),
                    )),
                }
            }
            Endpoint::MediaRead => match self.data.media.get(self.media.sample(rng)) {
                // Media files are public: browsers fetch them without a token.
                Some(path) => Req {
                    auth: None,
                    ..get(path.clone())
                },
                None => get("/api/v1/timelines/home".into()),
            },
            Endpoint::MediaUpload => Req {
                endpoint,
                method: Method::POST,
                path: "/api/v2/media".into(),
                auth,
                body: Some(self.upload.clone()),
            },
            Endpoint::Hello => Req {
                auth: None,
                ..get("/hello".into())
            },
            Endpoint::Hop => Req {
                auth: None,
                ..get("/hop".into())
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;

    use super::*;

    #[test]
    fn mix_picks_in_proportion_to_weights() -> anyhow::Result<()> {
        let mix: Mix = "home=60, account=30,post=10,favourite=0".parse()?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut counts: HashMap<Endpoint, u32> = HashMap::new();
        for _ in 0..100_000 {
            *counts.entry(mix.pick(&mut rng)).or_default() += 1;
        }
        let share = |e| f64::from(counts.get(&e).copied().unwrap_or(0)) / 100_000.0;
        assert!((share(Endpoint::Home) - 0.6).abs() < 0.01);
        assert!((share(Endpoint::Account) - 0.3).abs() < 0.01);
        assert!((share(Endpoint::Post) - 0.1).abs() < 0.01);
        assert_eq!(share(Endpoint::Favourite), 0.0);
        assert_eq!(mix.endpoints().count(), 3);
        Ok(())
    }

    #[test]
    fn bad_mixes_are_refused_with_the_reason() {
        let err = |s: &str| {
            s.parse::<Mix>()
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        assert!(err("home=60,timeline=40").contains("unknown endpoint \"timeline\""));
        assert!(err("home=lots").contains("weight of home"));
        assert!(err("home=0").contains("no endpoint"));
        assert!(DEFAULT_MIX.parse::<Mix>().is_ok());
    }

    #[test]
    fn upload_body_is_multipart_with_the_declared_boundary() -> anyhow::Result<()> {
        let png = png(1)?;
        assert!(png.starts_with(b"\x89PNG"));
        assert_ne!(png, super::png(2)?, "variants differ");
        let (content_type, body) = upload_body(&png);
        assert_eq!(
            content_type.to_str()?,
            format!("multipart/form-data; boundary={BOUNDARY}")
        );
        assert!(body.starts_with(format!("--{BOUNDARY}\r\n").as_bytes()));
        assert!(body.ends_with(format!("\r\n--{BOUNDARY}--\r\n").as_bytes()));
        Ok(())
    }

    #[test]
    fn composed_statuses_fit_the_limit_and_replies_mention_the_author() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let tags = Zipf::new(TAGS.len(), 1.0);
        for _ in 0..1_000 {
            let text = compose(&mut rng, &tags, Some("alice"));
            assert!(text.starts_with("@alice "));
            assert!(rookery_timeline::text::length(&text) <= rookery_timeline::text::MAX_CHARS);
        }
    }
}
