//! Times the still-image pipeline on one photo (see deploy/dev/bench-media.sh).
//!
//! ```text
//! pipeline_bench --generate PATH [--size WxH] write a photo-like JPEG (quality 90),
//!                                             4000x3000 (12 MP) unless told
//! pipeline_bench IMAGE [--runs N]             N runs on one thread: median/min per stage
//! pipeline_bench IMAGE --threads T [--seconds S]
//!                                             T threads in a loop for S s: images/s
//! ```
//! Lines starting with `RESULT` are for scripts.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use image::ExtendedColorType;
use image::ImageEncoder;
use image::codecs::jpeg::JpegEncoder;
use rookery_media_pipeline::{ImageLimits, StageTimes, process_image_timed, sniff};

struct Args {
    generate: Option<String>,
    size: (u32, u32),
    image: Option<String>,
    runs: usize,
    threads: usize,
    seconds: f64,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        generate: None,
        size: (4000, 3000),
        image: None,
        runs: 15,
        threads: 1,
        seconds: 10.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--generate" => args.generate = Some(value()?),
            "--size" => {
                let size = value()?;
                let (w, h) = size.split_once('x').ok_or("--size takes WxH")?;
                args.size = (w.parse()?, h.parse()?);
            }
            "--runs" => args.runs = value()?.parse()?,
            "--threads" => args.threads = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "-h" | "--help" => {
                println!(
                    "usage: pipeline_bench --generate PATH [--size WxH] | IMAGE [--runs N] [--threads T --seconds S]"
                );
                std::process::exit(0);
            }
            _ if args.image.is_none() && !arg.starts_with('-') => args.image = Some(arg),
            _ => return Err(format!("unexpected argument {arg}").into()),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    if let Some(path) = &args.generate {
        let start = Instant::now();
        let (width, height) = args.size;
        let jpeg = photo_like_jpeg(width, height)?;
        std::fs::write(path, &jpeg)?;
        println!(
            "wrote {path}: {width}x{height}, {:.1} MB, in {:.1} s",
            jpeg.len() as f64 / 1e6,
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let path = args
        .image
        .as_deref()
        .ok_or("give an image path or --generate PATH")?;
    let bytes = std::fs::read(path)?;
    let container = sniff(&bytes).ok_or("not an image we take")?;
    let limits = ImageLimits::default();

    if args.threads > 1 {
        return throughput(&bytes, container, &limits, args.threads, args.seconds);
    }

    // One warm-up run (page faults of the first big allocations, lazy CPU feature checks).
    let (processed, _) = process_image_timed(&bytes, container, &limits)?;
    println!(
        "{path}: {:?}, {} bytes; original {}x{} {} ({} KB), original_webp {} KB, small {}x{} ({} KB), small_webp {} KB",
        container,
        bytes.len(),
        processed.original.width,
        processed.original.height,
        processed.original.content_type,
        processed.original.bytes.len() / 1024,
        processed
            .original_webp
            .as_ref()
            .map_or(0, |v| v.bytes.len() / 1024),
        processed.small.width,
        processed.small.height,
        processed.small.bytes.len() / 1024,
        processed.small_webp.bytes.len() / 1024,
    );

    let mut walls = Vec::with_capacity(args.runs);
    let mut stages: Vec<StageTimes> = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let start = Instant::now();
        let (_, times) = process_image_timed(&bytes, container, &limits)?;
        walls.push(start.elapsed());
        stages.push(times);
    }
    println!("{} runs on one thread (ms):", args.runs);
    println!("{:<22} {:>9} {:>9}", "stage", "median", "min");
    type Stage = fn(&StageTimes) -> Duration;
    let rows: [(&str, &str, Stage); 7] = [
        ("decode", "decode", |t| t.decode),
        ("orientation", "orientation", |t| t.orientation),
        ("resize original", "resize_original", |t| t.resize_original),
        ("encode original", "encode_original", |t| t.encode_original),
        ("webp original", "webp_original", |t| t.webp_original),
        ("small + small webp", "small", |t| t.small),
        ("blurhash", "blurhash", |t| t.blurhash),
    ];
    for (label, key, get) in rows {
        let values: Vec<Duration> = stages.iter().map(get).collect();
        println!(
            "{label:<22} {:>9.1} {:>9.1}",
            ms(median(&values)),
            ms(min(&values))
        );
        println!("RESULT stage_{key}_ms={:.1}", ms(median(&values)));
    }
    println!(
        "{:<22} {:>9.1} {:>9.1}",
        "whole pipeline",
        ms(median(&walls)),
        ms(min(&walls))
    );
    println!("RESULT pipeline_median_ms={:.1}", ms(median(&walls)));
    println!("RESULT pipeline_min_ms={:.1}", ms(min(&walls)));
    Ok(())
}

fn throughput(
    bytes: &[u8],
    container: rookery_media_pipeline::Container,
    limits: &ImageLimits,
    threads: usize,
    seconds: f64,
) -> Result<(), Box<dyn Error>> {
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while Instant::now() < deadline {
                    match process_image_timed(bytes, container, limits) {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let done = done.load(Ordering::Relaxed);
    if failed.load(Ordering::Relaxed) > 0 {
        return Err("some runs failed".into());
    }
    let rate = done as f64 / elapsed;
    println!("{threads} threads, {elapsed:.1} s: {done} images, {rate:.2} images/s");
    println!("RESULT images_per_s={rate:.2}");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn min(values: &[Duration]) -> Duration {
    values.iter().min().copied().unwrap_or_default()
}

/// A synthetic photo: smooth gradients (sky, hills) for the large areas, mid-frequency
/// texture and per-pixel sensor-like noise so that it compresses like a camera JPEG
/// (a few MB at quality 90) rather than like a flat test pattern.
fn photo_like_jpeg(width: u32, height: u32) -> Result<Vec<u8>, Box<dyn Error>> {
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    let mut seed: u32 = 0x9E37_79B9;
    let mut noise = move || {
        // xorshift32: cheap, deterministic.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed >> 24) as f32 / 255.0 - 0.5
    };
    let (w, h) = (width as f32, height as f32);
    for y in 0..height {
        let fy = y as f32 / h;
        for x in 0..width {
            let fx = x as f32 / w;
            let horizon = 0.45 + 0.08 * (fx * 9.0).sin() + 0.04 * (fx * 23.0 + 1.0).sin();
            let (mut r, mut g, mut b) = if fy < horizon {
                // Sky: blue at the top, paler towards the horizon, a soft sun glow.
                let t = fy / horizon;
                let glow = (-((fx - 0.7).powi(2) + (fy - 0.2).powi(2)) * 30.0).exp();
                (
                    90.0 + 120.0 * t + 120.0 * glow,
                    140.0 + 90.0 * t + 100.0 * glow,
                    230.0 - 20.0 * t + 20.0 * glow,
                )
            } else {
                // Ground: greens and browns with grass-like texture.
                let t = (fy - horizon) / (1.0 - horizon);
                let texture = 18.0 * (x as f32 * 0.31).sin() * (y as f32 * 0.17).cos()
                    + 10.0 * (x as f32 * 0.053 + y as f32 * 0.071).sin();
                (
                    70.0 + 60.0 * t + texture,
                    110.0 - 30.0 * t + texture,
                    40.0 + 10.0 * t + texture * 0.5,
                )
            };
            let n = noise() * 14.0;
            r += n;
            g += n + noise() * 4.0;
            b += n + noise() * 4.0;
            rgb.extend_from_slice(&[
                r.clamp(0.0, 255.0) as u8,
                g.clamp(0.0, 255.0) as u8,
                b.clamp(0.0, 255.0) as u8,
            ]);
        }
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90).write_image(
        &rgb,
        width,
        height,
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}
