//! Still images: limits, orientation, metadata stripping, variants, alpha, blurhash.

mod common;

use std::time::{Duration, Instant};

use common::{TestResult, contains, decode, exif_orientation_gps, gps_latitude_bytes, jpeg, png};
use image::{DynamicImage, GenericImageView, ImageBuffer, Luma, Rgba};
use rookery_media_pipeline::{
    Container, ImageLimits, Kind, PipelineError, Processed, Variant, check_image_header,
    is_animated_gif, process, process_image, process_thumbnail, sniff,
};

fn variants(p: &Processed) -> Vec<(&'static str, &Variant)> {
    let mut all = vec![
        ("original", &p.original),
        ("small", &p.small),
        ("small_webp", &p.small_webp),
    ];
    if let Some(webp) = &p.original_webp {
        all.push(("original_webp", webp));
    }
    all
}

fn assert_lossy_webp(v: &Variant) {
    assert_eq!(v.content_type, "image/webp");
    assert_eq!(v.extension, "webp");
    assert!(v.bytes.starts_with(b"RIFF") && &v.bytes[8..12] == b"WEBP");
    assert!(contains(&v.bytes, b"VP8 "), "not lossy VP8");
    assert!(!contains(&v.bytes, b"VP8L"), "lossless VP8L");
}

/// Every variant decodes to the size it claims.
fn assert_dimensions(p: &Processed) -> TestResult {
    for (name, v) in variants(p) {
        let image = decode(&v.bytes)?;
        assert_eq!(image.dimensions(), (v.width, v.height), "{name}");
    }
    Ok(())
}

fn is_red(p: Rgba<u8>) -> bool {
    p[0] > 180 && p[1] < 80 && p[2] < 80
}

fn is_blue(p: Rgba<u8>) -> bool {
    p[0] < 80 && p[1] < 80 && p[2] > 180
}

#[test]
fn header_check_refuses_a_png_bomb_fast() -> TestResult {
    let bomb = common::png_bomb(60_000, 60_000);
    assert!(bomb.len() < 100);
    assert_eq!(sniff(&bomb), Some(Container::Png));
    let limits = ImageLimits::default();
    let start = Instant::now();
    let result = check_image_header(&bomb, Container::Png, &limits);
    let elapsed = start.elapsed();
    match result {
        Err(PipelineError::TooLarge(msg)) => {
            assert_eq!(msg, "image is 60000x60000 pixels, the limit is 33177600");
        }
        other => return Err(format!("expected TooLarge, got {other:?}").into()),
    }
    assert!(elapsed < Duration::from_millis(50), "took {elapsed:?}");
    assert!(matches!(
        process_image(&bomb, Container::Png, &limits),
        Err(PipelineError::TooLarge(_))
    ));
    Ok(())
}

#[test]
fn a_lying_header_cannot_blow_memory() -> TestResult {
    // Pixels allowed, memory not: 60000×60000 RGB needs 10.8 GB.
    let limits = ImageLimits {
        max_pixels: u64::MAX,
        ..ImageLimits::default()
    };
    let bomb = common::png_bomb(60_000, 60_000);
    let start = Instant::now();
    let result = process_image(&bomb, Container::Png, &limits);
    assert!(
        matches!(result, Err(PipelineError::TooLarge(_))),
        "{result:?}"
    );
    assert!(start.elapsed() < Duration::from_millis(200));
    // Allowed by both, but the data is not there: the decoder fails, nothing panics.
    let small_bomb = common::png_bomb(2000, 2000);
    let result = process_image(&small_bomb, Container::Png, &ImageLimits::default());
    assert!(
        matches!(result, Err(PipelineError::Corrupt(_))),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn header_check_reads_dimensions() -> TestResult {
    let limits = ImageLimits::default();
    let photo = jpeg(300, 200, 80, |x, _| [x as u8, 0, 0])?;
    assert_eq!(
        check_image_header(&photo, Container::Jpeg, &limits)?,
        (300, 200)
    );
    let gif = common::gif(7, 5, 1)?;
    assert_eq!(check_image_header(&gif, Container::Gif, &limits)?, (7, 5));
    // A GIF canvas of 65535×65535 is refused from its 13-byte header.
    let mut huge_gif = gif.clone();
    huge_gif[6..10].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    assert!(matches!(
        check_image_header(&huge_gif, Container::Gif, &limits),
        Err(PipelineError::TooLarge(_))
    ));
    let zero = common::png_bomb(0, 10);
    assert!(matches!(
        check_image_header(&zero, Container::Png, &limits),
        Err(PipelineError::Corrupt(_))
    ));
    assert!(matches!(
        check_image_header(b"\xFF\xD8\xFF\xE0garbage", Container::Jpeg, &limits),
        Err(PipelineError::Corrupt(_))
    ));
    assert!(matches!(
        check_image_header(&photo, Container::Mp4, &limits),
        Err(PipelineError::Unsupported(_))
    ));
    Ok(())
}

#[test]
fn damaged_jpegs_fail_cleanly() -> TestResult {
    let limits = ImageLimits::default();
    let garbage: Vec<u8> = [0xFF, 0xD8, 0xFF]
        .into_iter()
        .chain((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8))
        .collect();
    let result = process_image(&garbage, Container::Jpeg, &limits);
    assert!(
        matches!(result, Err(PipelineError::Corrupt(_))),
        "{result:?}"
    );

    let photo = jpeg(256, 256, 90, |x, y| {
        [(x * 7 + y) as u8, (y * 3) as u8, (x ^ y) as u8]
    })?;
    // An EXIF thumbnail is a whole JPEG (SOS and EOI included) inside APP1: it must not make
    // a truncated main image look complete.
    let thumbnail = jpeg(8, 8, 50, |_, _| [1, 2, 3])?;
    let mut exif = exif_orientation_gps(1);
    exif.extend_from_slice(&thumbnail);
    let photo = common::with_exif(&photo, &exif)?;
    assert!(process_image(&photo, Container::Jpeg, &limits).is_ok());
    // The decoder alone would paint what is missing grey and succeed.
    for cut in [20, 200, photo.len() / 2, photo.len() - 2, photo.len() - 1] {
        let result = process_image(&photo[..cut], Container::Jpeg, &limits);
        assert!(
            matches!(result, Err(PipelineError::Corrupt(_))),
            "cut at {cut}: {result:?}"
        );
    }
    // Data after the end (motion photos append their video there) is no damage.
    let mut motion = photo.clone();
    motion.extend_from_slice(b"\0\0\0\x18ftypmp42 and a video");
    assert!(process_image(&motion, Container::Jpeg, &limits).is_ok());
    // A PNG body in a file sniffed as JPEG.
    let png_bytes = png(&DynamicImage::new_rgb8(4, 4))?;
    assert!(matches!(
        process_image(&png_bytes, Container::Jpeg, &limits),
        Err(PipelineError::Corrupt(_))
    ));
    Ok(())
}

#[test]
fn exif_orientation_is_applied_and_metadata_stripped() -> TestResult {
    // 64×32, red left half, blue right half; Orientation 6 = rotate 90° clockwise to view,
    // which puts the left half on top.
    let stored = jpeg(
        64,
        32,
        95,
        |x, _| if x < 32 { [255, 0, 0] } else { [0, 0, 255] },
    )?;
    let tiff = exif_orientation_gps(6);
    let photo = common::with_exif(&stored, &tiff)?;
    assert!(contains(&photo, b"Exif") && contains(&photo, &gps_latitude_bytes()));

    let processed = process_image(&photo, Container::Jpeg, &ImageLimits::default())?;
    assert_eq!(processed.kind, Kind::Image);
    assert!(processed.video.is_none());
    for (name, v) in variants(&processed) {
        assert_eq!((v.width, v.height), (32, 64), "{name}");
        assert!(!contains(&v.bytes, b"Exif"), "{name} has EXIF");
        assert!(
            !contains(&v.bytes, &gps_latitude_bytes()),
            "{name} has the GPS IFD"
        );
        let image = decode(&v.bytes)?;
        assert_eq!(image.dimensions(), (32, 64), "{name}");
        assert!(
            is_red(image.get_pixel(16, 8)),
            "{name}: top is {:?}",
            image.get_pixel(16, 8)
        );
        assert!(
            is_blue(image.get_pixel(16, 56)),
            "{name}: bottom is {:?}",
            image.get_pixel(16, 56)
        );
    }
    assert_eq!(processed.original.content_type, "image/jpeg");
    assert_eq!(processed.original.extension, "jpg");
    Ok(())
}

#[test]
fn variants_are_within_the_caps() -> TestResult {
    let photo = jpeg(5000, 4000, 80, |x, y| {
        [(x / 20) as u8, (y / 16) as u8, ((x + y) / 36) as u8]
    })?;
    let limits = ImageLimits {
        original_max_pixels: 2_000_000,
        ..ImageLimits::default()
    };
    let p = process_image(&photo, Container::Jpeg, &limits)?;
    let o = &p.original;
    assert!(
        u64::from(o.width) * u64::from(o.height) <= 2_000_000,
        "{}x{}",
        o.width,
        o.height
    );
    assert!(
        o.width >= 1550,
        "{}x{} wastes the budget",
        o.width,
        o.height
    );
    assert!((f64::from(o.width) / f64::from(o.height) - 1.25).abs() < 0.01);
    let ow = p.original_webp.as_ref().ok_or("no original_webp")?;
    assert_eq!((ow.width, ow.height), (o.width, o.height));
    assert_eq!((p.small.width, p.small.height), (640, 512));
    assert_eq!((p.small_webp.width, p.small_webp.height), (640, 512));
    assert_eq!(p.small.content_type, "image/jpeg");
    assert!(p.small.bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
    assert_lossy_webp(ow);
    assert_lossy_webp(&p.small_webp);
    assert_dimensions(&p)
}

#[test]
fn small_images_are_never_upscaled() -> TestResult {
    let photo = jpeg(100, 80, 90, |x, y| [x as u8, y as u8, 0])?;
    let p = process_image(&photo, Container::Jpeg, &ImageLimits::default())?;
    for (name, v) in variants(&p) {
        assert_eq!((v.width, v.height), (100, 80), "{name}");
    }
    // A panorama within the pixel cap still fits the small box by its long side.
    let panorama = jpeg(2000, 50, 90, |x, _| [(x / 8) as u8, 0, 0])?;
    let p = process_image(&panorama, Container::Jpeg, &ImageLimits::default())?;
    assert_eq!((p.original.width, p.original.height), (2000, 50));
    assert_eq!((p.small.width, p.small.height), (640, 16));
    assert_dimensions(&p)
}

#[test]
fn png_alpha_survives_in_png_and_webp() -> TestResult {
    // Opaque red on the left, fully transparent on the right.
    let source = common::png_rgba(800, 400, |x, _| {
        if x < 400 {
            [255, 0, 0, 255]
        } else {
            [0, 0, 0, 0]
        }
    })?;
    let p = process_image(&source, Container::Png, &ImageLimits::default())?;
    assert_eq!(p.original.content_type, "image/png");
    assert_eq!(p.small.content_type, "image/png");
    assert_eq!((p.small.width, p.small.height), (640, 320));
    for (name, v) in variants(&p) {
        let image = decode(&v.bytes)?;
        assert!(image.color().has_alpha(), "{name} lost its alpha");
        let (w, h) = image.dimensions();
        assert_eq!(
            image.get_pixel(w - 4, h / 2)[3],
            0,
            "{name}: right is not transparent"
        );
        let left = image.get_pixel(4, h / 2);
        assert!(left[3] == 255 && is_red(left), "{name}: left is {left:?}");
    }
    let webp = p.original_webp.as_ref().ok_or("no original_webp")?;
    assert_lossy_webp(webp);
    assert!(contains(&webp.bytes, b"ALPH"));
    assert_lossy_webp(&p.small_webp);
    // PNG outputs carry no text or metadata chunks.
    for v in [&p.original, &p.small] {
        for chunk in [b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"] {
            assert!(!contains(&v.bytes, chunk));
        }
    }
    Ok(())
}

#[test]
fn webp_source_is_stored_as_lossy_webp() -> TestResult {
    // Make a WebP input through the pipeline itself (it only writes lossy WebP).
    let photo = jpeg(300, 200, 90, |x, y| [x as u8, y as u8, 128])?;
    let from_jpeg = process_image(&photo, Container::Jpeg, &ImageLimits::default())?;
    let source = from_jpeg.original_webp.ok_or("no original_webp")?.bytes;
    assert_eq!(sniff(&source), Some(Container::Webp));
    let p = process_image(&source, Container::Webp, &ImageLimits::default())?;
    for (name, v) in variants(&p) {
        assert_lossy_webp(v);
        assert_eq!((v.width, v.height), (300, 200), "{name}");
    }
    assert_dimensions(&p)
}

#[test]
fn unusual_layouts_are_converted() -> TestResult {
    let limits = ImageLimits::default();
    let gray = DynamicImage::ImageLuma8(ImageBuffer::from_fn(40, 30, |x, _| Luma([x as u8 * 6])));
    let p = process_image(&png(&gray)?, Container::Png, &limits)?;
    assert_dimensions(&p)?;

    let deep = DynamicImage::ImageRgba16(ImageBuffer::from_fn(40, 30, |x, y| {
        Rgba([x as u16 * 1600, y as u16 * 2100, 30_000, 65_535])
    }));
    let p = process_image(&png(&deep)?, Container::Png, &limits)?;
    assert_dimensions(&p)?;

    let gray_jpeg = {
        let mut out = Vec::new();
        gray.write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )?;
        out
    };
    let p = process_image(&gray_jpeg, Container::Jpeg, &limits)?;
    assert_eq!(p.original.content_type, "image/jpeg");
    assert_dimensions(&p)?;

    // A CMYK JPEG (as print workflows export) made with libvips.
    let cmyk = include_bytes!("data/cmyk-16x8.jpg");
    let p = process_image(cmyk, Container::Jpeg, &limits)?;
    assert_eq!((p.original.width, p.original.height), (16, 8));
    assert_dimensions(&p)
}

#[test]
fn a_still_gif_becomes_png() -> TestResult {
    let still = common::gif(30, 20, 1)?;
    assert!(!is_animated_gif(&still));
    let p = process_image(&still, Container::Gif, &ImageLimits::default())?;
    assert_eq!(p.kind, Kind::Image);
    assert_eq!(p.original.content_type, "image/png");
    assert_eq!(p.small.extension, "png");
    assert_lossy_webp(&p.small_webp);
    assert_dimensions(&p)
}

#[test]
fn animated_gif_is_detected() -> TestResult {
    assert!(is_animated_gif(&common::gif(16, 16, 2)?));
    assert!(is_animated_gif(&common::gif(16, 16, 5)?));
    assert!(!is_animated_gif(&common::gif(16, 16, 1)?));
    assert!(!is_animated_gif(b"GIF89a"));
    assert!(!is_animated_gif(&jpeg(8, 8, 80, |_, _| [0, 0, 0])?));
    Ok(())
}

#[tokio::test]
async fn without_ffmpeg_an_animated_gif_is_a_still_image() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("anim.gif");
    std::fs::write(&path, common::gif(24, 12, 3)?)?;
    let p = process(&path, Container::Gif, &ImageLimits::default(), None).await?;
    assert_eq!(p.kind, Kind::Image);
    assert_eq!(p.original.content_type, "image/png");
    assert_eq!((p.original.width, p.original.height), (24, 12));
    Ok(())
}

#[tokio::test]
async fn process_reads_images_from_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("upload");
    std::fs::write(&path, jpeg(120, 90, 85, |x, y| [x as u8, y as u8, 9])?)?;
    let p = process(&path, Container::Jpeg, &ImageLimits::default(), None).await?;
    assert_eq!((p.original.width, p.original.height), (120, 90));
    let missing = process(
        &dir.path().join("gone"),
        Container::Jpeg,
        &ImageLimits::default(),
        None,
    )
    .await;
    assert!(
        matches!(missing, Err(PipelineError::Internal(_))),
        "{missing:?}"
    );
    Ok(())
}

#[test]
fn blurhash_is_valid() -> TestResult {
    let photo = jpeg(900, 600, 85, |x, y| {
        [(x / 4) as u8, (y / 3) as u8, if x > 450 { 200 } else { 20 }]
    })?;
    let p = process_image(&photo, Container::Jpeg, &ImageLimits::default())?;
    assert_eq!(p.blurhash.len(), 28, "{}", p.blurhash);
    let pixels = blurhash::decode(&p.blurhash, 32, 32, 1.0)?;
    assert_eq!(pixels.len(), 32 * 32 * 4);
    // Dark-blue left, bright-blue right: the decoded hash agrees.
    assert!(pixels[(16 * 32 + 2) * 4 + 2] < pixels[(16 * 32 + 29) * 4 + 2]);
    Ok(())
}

#[test]
fn custom_thumbnails() -> TestResult {
    let limits = ImageLimits::default();
    let thumb = jpeg(1280, 720, 85, |x, _| [(x / 5) as u8, 50, 50])?;
    let (small, small_webp, hash) = process_thumbnail(&thumb, &limits)?;
    assert_eq!((small.width, small.height), (640, 360));
    assert_eq!(small.content_type, "image/jpeg");
    assert_lossy_webp(&small_webp);
    assert_eq!(hash.len(), 28);

    let with_alpha = common::png_rgba(50, 50, |_, y| [0, 0, 255, if y < 25 { 255 } else { 0 }])?;
    let (small, _, _) = process_thumbnail(&with_alpha, &limits)?;
    assert_eq!(small.content_type, "image/png");
    assert!(decode(&small.bytes)?.color().has_alpha());

    assert!(matches!(
        process_thumbnail(b"<html>not an image</html>", &limits),
        Err(PipelineError::Unsupported(_))
    ));
    let mut mp4 = b"\0\0\0\x18ftypisom\0\0\x02\0isommp42".to_vec();
    mp4.extend_from_slice(&[0; 64]);
    assert!(matches!(
        process_thumbnail(&mp4, &limits),
        Err(PipelineError::Unsupported(_))
    ));
    assert!(matches!(
        process_thumbnail(&common::png_bomb(60_000, 60_000), &limits),
        Err(PipelineError::TooLarge(_))
    ));
    Ok(())
}
