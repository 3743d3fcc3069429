//! Hostile input: every supported image format cut at every point, polyglots, and files
//! whose headers claim more pixels than memory should hold. Each goes through the same
//! steps as an upload in the media service (sniff, header check, full processing) and
//! must come out as a clean refusal: no panic, no picture made of what is missing.

mod common;

use std::time::{Duration, Instant};

use common::{TestResult, contains, gif, jpeg, png_rgba};
use image::{ImageEncoder, codecs::webp::WebPEncoder};
use rookery_media_pipeline::{
    Container, ImageLimits, PipelineError, Processed, check_image_header, process_image, sniff,
};

/// What the media service does with an uploaded image: refuse an unknown type, refuse
/// from the header, then process.
fn as_uploaded(bytes: &[u8]) -> Result<Processed, PipelineError> {
    let limits = ImageLimits::default();
    let container = sniff(bytes)
        .filter(|c| !c.is_video())
        .ok_or_else(|| PipelineError::Unsupported("not an image".into()))?;
    check_image_header(bytes, container, &limits)?;
    process_image(bytes, container, &limits)
}

/// Named files.
type Samples = Vec<(&'static str, Vec<u8>)>;

/// The valid images of the sweep, by name: noisy enough that every cut loses pixels.
fn samples() -> Result<Samples, Box<dyn std::error::Error>> {
    let noise = |x: u32, y: u32| {
        let v = x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503);
        [(v >> 3) as u8, (v >> 11) as u8, (v >> 19) as u8]
    };
    let jpeg = jpeg(48, 40, 85, noise)?;
    let png = png_rgba(48, 40, |x, y| {
        let [r, g, b] = noise(x, y);
        [r, g, b, 255]
    })?;
    let mut webp_lossless = Vec::new();
    let pixels: Vec<u8> = (0..40u32)
        .flat_map(|y| (0..48u32).flat_map(move |x| noise(x, y)))
        .collect();
    WebPEncoder::new_lossless(&mut webp_lossless).write_image(
        &pixels,
        48,
        40,
        image::ExtendedColorType::Rgb8,
    )?;
    // Lossy WebP, as the pipeline itself writes it; a larger one too, whose last bytes
    // hold macroblocks (in a tiny one they are the bool decoder's slack).
    let lossy = |source: &[u8]| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        Ok(
            process_image(source, Container::Jpeg, &ImageLimits::default())?
                .original_webp
                .ok_or("no WebP variant")?
                .bytes,
        )
    };
    let webp_lossy = lossy(&jpeg)?;
    let webp_lossy_large = lossy(&common::jpeg(320, 240, 85, noise)?)?;
    Ok(vec![
        ("jpeg", jpeg),
        ("png", png),
        ("gif", gif(48, 40, 1)?),
        ("webp-lossless", webp_lossless),
        ("webp-lossy", webp_lossy),
        ("webp-lossy-large", webp_lossy_large),
    ])
}

/// Every prefix of every sample is refused as damaged (or, cut inside the magic bytes,
/// as not an image), without a panic. The only cuts taken are the ones that lose no
/// pixel (the end of a PNG's IEND chunk, a GIF's trailer, a WebP's padding byte): they
/// must make exactly the pictures of the whole file.
#[test]
fn every_truncation_is_refused() -> TestResult {
    for (name, whole) in samples()? {
        let expected = as_uploaded(&whole)?;
        let mut accepted = Vec::new();
        let start = Instant::now();
        // Every cut of a small file; of a large one, its head, its tail and a sample between.
        let len = whole.len();
        let mut cuts: Vec<usize> = (0..len.min(2048))
            .chain(len.saturating_sub(512)..len)
            .chain((0..len).step_by(len / 97 + 1))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        for &cut in &cuts {
            let result = std::panic::catch_unwind(|| as_uploaded(&whole[..cut]));
            match result {
                Err(_) => return Err(format!("{name} cut at {cut}: panicked").into()),
                Ok(Ok(p)) => {
                    accepted.push(cut);
                    assert!(
                        p.original.bytes == expected.original.bytes,
                        "{name} cut at {cut} of {}: accepted, and its pixels are not the whole file's",
                        whole.len()
                    );
                }
                Ok(Err(PipelineError::Internal(e))) => {
                    return Err(format!("{name} cut at {cut}: internal error {e}").into());
                }
                Ok(Err(_)) => {}
            }
        }
        let elapsed = start.elapsed();
        eprintln!(
            "{name}: {len} bytes, {} cuts refused in {elapsed:?}, all but {accepted:?}",
            cuts.len()
        );
        // What may go without losing a pixel: a PNG's IEND chunk (12 bytes), a GIF's last
        // block terminator and trailer, a WebP's final pad byte; nothing of a JPEG.
        let slack = match name {
            "png" => 12,
            "gif" => 2,
            "jpeg" => 0,
            _ => 1,
        };
        assert!(
            accepted.iter().all(|cut| len - cut <= slack),
            "{name}: cuts accepted more than {slack} bytes from the end: {accepted:?}"
        );
    }
    Ok(())
}

/// A file that is a valid image header followed by something else (HTML, script, a ZIP)
/// is refused; a whole image followed by something else is a valid image (Mastodon takes
/// it; phones append videos to JPEGs) and is stored re-encoded, so no stored file carries
/// the passenger.
#[test]
fn polyglots_are_refused_or_defused() -> TestResult {
    let html = b"<html><body><script>alert(document.cookie)</script></body></html>";
    let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00payload.jsPK\x05\x06\x00\x00\x00\x00";
    let headers: [&[u8]; 4] = [
        b"GIF89a",
        b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00",
        b"\x89PNG\r\n\x1a\n",
        b"RIFF\x40\x00\x00\x00WEBPVP8 ",
    ];
    for header in headers {
        for passenger in [&html[..], &zip[..]] {
            let mut polyglot = header.to_vec();
            polyglot.extend_from_slice(passenger);
            let result = as_uploaded(&polyglot);
            // Refused: as damaged, or as too large when the passenger's first bytes sit
            // where the header keeps its dimensions.
            assert!(
                matches!(
                    result,
                    Err(PipelineError::Corrupt(_)
                        | PipelineError::Unsupported(_)
                        | PipelineError::TooLarge(_))
                ),
                "{:?}: {result:?}",
                String::from_utf8_lossy(&polyglot[..12])
            );
        }
    }
    // The classic GIF/JavaScript polyglot: `GIF89a=...;` parses as script, and its
    // "dimensions" are the bytes of `/*` and `*/`.
    let gifjs = b"GIF89a/*\x00\x00\x00\x00\x00*/=1;alert(1);//\x3b";
    assert!(matches!(
        as_uploaded(gifjs),
        Err(PipelineError::Corrupt(_) | PipelineError::TooLarge(_))
    ));
    // No image at all, whatever the client calls it.
    for text in [
        &html[..],
        b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>",
        b"%PDF-1.7\n",
        &zip[..],
        b"",
    ] {
        assert!(matches!(
            as_uploaded(text),
            Err(PipelineError::Unsupported(_))
        ));
    }

    let noise = |x: u32, y: u32| [(x * 5) as u8, (y * 7) as u8, (x ^ y) as u8];
    for (name, image) in [
        ("jpeg", jpeg(32, 24, 85, noise)?),
        ("png", png_rgba(32, 24, |x, y| [x as u8, y as u8, 9, 255])?),
        ("gif", gif(32, 24, 1)?),
    ] {
        let mut polyglot = image;
        polyglot.extend_from_slice(html);
        polyglot.extend_from_slice(zip);
        let p = as_uploaded(&polyglot).map_err(|e| format!("{name} with a passenger: {e}"))?;
        for v in [&p.original, &p.small, &p.small_webp] {
            assert!(
                !contains(&v.bytes, b"<script"),
                "{name}: the HTML is stored"
            );
            assert!(
                !contains(&v.bytes, b"PK\x03\x04"),
                "{name}: the ZIP is stored"
            );
        }
    }
    Ok(())
}

/// Headers claiming more pixels than the limit, in every format, are refused from the
/// header alone: fast, whatever the decoder would need.
#[test]
fn huge_dimensions_are_refused_from_the_header() -> TestResult {
    // JPEG: SOI, a baseline SOF0 of 65500×65500 with three components, an SOS, EOI.
    let mut jpeg_huge = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    jpeg_huge.extend_from_slice(&65_500u16.to_be_bytes());
    jpeg_huge.extend_from_slice(&65_500u16.to_be_bytes());
    jpeg_huge.extend_from_slice(&[0x03, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
    jpeg_huge.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x0C, 0x03, 1, 0, 2, 0x11, 3, 0x11]);
    jpeg_huge.extend_from_slice(&[0x00, 0x3F, 0x00, 0xFF, 0xD9]);
    // GIF: a still GIF whose logical screen is 65535×65535.
    let mut gif_huge = gif(8, 8, 1)?;
    gif_huge[6..10].copy_from_slice(&[0xFF; 4]);
    // WebP: a lossless image whose VP8L header says 16000×16000 (16384, the format's
    // largest, reads as 0 in image-webp: `(1 + bits) & 0x3FFF`).
    let mut webp_huge = Vec::new();
    let pixels = vec![90u8; 8 * 8 * 3];
    WebPEncoder::new_lossless(&mut webp_huge).write_image(
        &pixels,
        8,
        8,
        image::ExtendedColorType::Rgb8,
    )?;
    assert_eq!(&webp_huge[12..16], b"VP8L");
    let bits = u32::from_le_bytes(webp_huge[21..25].try_into()?);
    let bits = (bits & !0x0FFF_FFFF) | 15_999 | (15_999 << 14);
    webp_huge[21..25].copy_from_slice(&bits.to_le_bytes());
    // WebP: an extended (VP8X) canvas of 16384×16384 around that small image.
    let mut vp8x = b"VP8X\x0a\x00\x00\x00\x00\x00\x00\x00".to_vec();
    vp8x.extend_from_slice(&16_383u32.to_le_bytes()[..3]);
    vp8x.extend_from_slice(&16_383u32.to_le_bytes()[..3]);
    let mut webp_canvas = b"RIFF\0\0\0\0WEBP".to_vec();
    webp_canvas.extend_from_slice(&vp8x);
    let mut small = Vec::new();
    WebPEncoder::new_lossless(&mut small).write_image(
        &pixels,
        8,
        8,
        image::ExtendedColorType::Rgb8,
    )?;
    webp_canvas.extend_from_slice(&small[12..]);
    let riff = u32::try_from(webp_canvas.len() - 8)?;
    webp_canvas[4..8].copy_from_slice(&riff.to_le_bytes());

    for (name, bytes) in [
        ("png 100000x100000", common::png_bomb(100_000, 100_000)),
        ("png 1x4294967295", common::png_bomb(1, u32::MAX)),
        ("jpeg 65500x65500", jpeg_huge),
        ("gif 65535x65535", gif_huge),
        ("webp vp8l 16000x16000", webp_huge),
        ("webp vp8x 16384x16384", webp_canvas),
    ] {
        let start = Instant::now();
        let result = as_uploaded(&bytes);
        let elapsed = start.elapsed();
        eprintln!("{name}: {} bytes, {elapsed:?}: {result:?}", bytes.len());
        assert!(
            matches!(result, Err(PipelineError::TooLarge(_))),
            "{name}: {result:?}"
        );
        assert!(elapsed < Duration::from_millis(100), "{name}: {elapsed:?}");
    }
    // No pixels at all is no image either.
    for (w, h) in [(0, 1), (1, 0), (0, 0)] {
        assert!(matches!(
            as_uploaded(&common::png_bomb(w, h)),
            Err(PipelineError::Corrupt(_))
        ));
    }
    Ok(())
}
