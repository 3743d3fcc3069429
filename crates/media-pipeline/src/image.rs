//! Still images: header check, bounded decode, orientation, variants, blurhash.
//!
//! Everything here is synchronous and CPU-bound; the service runs it on a blocking thread.

use std::borrow::Cow;
use std::io::Cursor;
use std::time::{Duration, Instant};

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::metadata::Orientation;
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageError, ImageFormat,
    ImageReader,
};

use crate::sniff::{Container, sniff};
use crate::{ImageLimits, Kind, PipelineError, Processed, Variant};

/// JPEG quality of the stored variants: the usual web trade-off, indistinguishable from the
/// source on photos at about half the size of quality 95.
const JPEG_QUALITY: u8 = 85;
/// zlib level 3: on a 2560×1440 screenshot 2% larger than the default level 6 in 60% of the
/// time, on a photo saved as PNG (noise does not compress) 2.5 times faster for the same size.
/// The fastest setting (fdeflate) makes screenshots a third larger.
const PNG_COMPRESSION: CompressionType = CompressionType::Level(3);
/// Lossy WebP quality of the `*_webp` variants.
const WEBP_QUALITY: f32 = 80.0;
/// libwebp's effort, 0 (fast) to 6 (small; 4 is libwebp's default), per variant. On a 12 MP
/// photo scaled to 8.3 MP, method 2 encodes in ~190 ms against ~500 ms for 4, for ~6% more
/// bytes at the same quality setting: the original is fetched only when a post is opened.
/// The preview is what timelines load, and cheap to encode: it gets the default effort.
const WEBP_METHOD_ORIGINAL: i32 = 2;
const WEBP_METHOD_SMALL: i32 = 4;
/// Largest side libwebp can encode (`WEBP_MAX_DIMENSION`). The original is capped to it too,
/// so that `original_webp` always holds the same pixels as `original`.
const WEBP_MAX_SIDE: u32 = 16383;
/// Blurhash components (4×3, as [`Processed::blurhash`] promises: a 28-character string).
const BLURHASH_X: u32 = 4;
const BLURHASH_Y: u32 = 3;
/// A blurhash keeps only the lowest frequencies, so a tiny copy gives the same string as the
/// full preview at a hundredth of the cost.
const BLURHASH_SIDE: u32 = 64;

/// Downscaling filter of the variants. Lanczos3 is what libvips (and so Mastodon) uses for
/// thumbnails: the sharpest of the usual kernels without visible ringing on photos. Catmull-Rom
/// would be about a third cheaper (a kernel of radius 2 instead of 3) and slightly softer; with
/// fast_image_resize's SIMD paths the resize is a small part of the whole (decode and the two
/// encoders dominate, see the benchmark), so quality wins.
const RESIZE_FILTER: FilterType = FilterType::Lanczos3;

/// How long each stage of [`process_image_timed`] took (for the benchmark example).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimes {
    /// Header check and full decode (to 8-bit RGB/RGBA).
    pub decode: Duration,
    /// Applying the EXIF orientation.
    pub orientation: Duration,
    /// Scaling the original down to the pixel cap.
    pub resize_original: Duration,
    /// Encoding the original in its output format.
    pub encode_original: Duration,
    /// Encoding the original as lossy WebP.
    pub webp_original: Duration,
    /// Resizing and encoding the preview (source format and WebP).
    pub small: Duration,
    /// The blurhash (including its own tiny downscale).
    pub blurhash: Duration,
}

impl StageTimes {
    /// The sum of the stages.
    pub fn total(&self) -> Duration {
        self.decode
            + self.orientation
            + self.resize_original
            + self.encode_original
            + self.webp_original
            + self.small
            + self.blurhash
    }
}

/// Reads an image's dimensions from its header, without decoding pixels, and checks them
/// against [`ImageLimits::max_pixels`].
///
/// This is cheap (microseconds, at most a copy of the input for JPEG), so a decompression
/// bomb, a tiny file claiming 50000×50000 pixels, is refused before anything is allocated
/// for its pixels. Errors: [`PipelineError::TooLarge`] beyond the limit,
/// [`PipelineError::Corrupt`] for an unreadable header or zero width or height,
/// [`PipelineError::Unsupported`] for a video container.
pub fn check_image_header(
    bytes: &[u8],
    container: Container,
    limits: &ImageLimits,
) -> Result<(u32, u32), PipelineError> {
    let decoder = header_decoder(bytes, container, limits)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    Ok((width, height))
}

/// Makes the stored variants of a still image (for a GIF: of its first frame).
///
/// The header is checked first; the decoder runs under [`image::Limits`] (the header's
/// dimensions and [`ImageLimits::max_alloc`]) so a header that lies cannot blow memory.
/// The EXIF orientation is applied, and all metadata (EXIF with GPS, XMP, ICC, text chunks)
/// is dropped by re-encoding. The original is scaled down to
/// [`ImageLimits::original_max_pixels`] (never up) in its source format (a GIF becomes PNG),
/// the preview fits [`ImageLimits::small_box`]; both also as lossy WebP.
///
/// Synchronous and CPU-bound (tens to hundreds of milliseconds for a photo): call it from a
/// blocking thread.
pub fn process_image(
    bytes: &[u8],
    container: Container,
    limits: &ImageLimits,
) -> Result<Processed, PipelineError> {
    process_image_timed(bytes, container, limits).map(|(processed, _)| processed)
}

/// [`process_image`], also telling how long each stage took (for the benchmark example).
#[doc(hidden)]
pub fn process_image_timed(
    bytes: &[u8],
    container: Container,
    limits: &ImageLimits,
) -> Result<(Processed, StageTimes), PipelineError> {
    let mut times = StageTimes::default();
    let output = Output::for_source(container);
    let source = decode(bytes, container, limits, output.keeps_alpha(), &mut times)?;
    let mut resizer = Resizer::new();

    let start = Instant::now();
    let (width, height) = cap_pixels(
        source.width,
        source.height,
        limits.original_max_pixels,
        WEBP_MAX_SIDE,
    );
    let original_pixels = if (width, height) == (source.width, source.height) {
        source
    } else {
        let resized = resize(&mut resizer, &source, width, height)?;
        // The full-size pixels (100 MB for 33 MP) are not needed by the encoders below.
        drop(source);
        resized
    };
    times.resize_original = start.elapsed();

    let start = Instant::now();
    let original = encode(&original_pixels, output, WEBP_METHOD_ORIGINAL)?;
    times.encode_original = start.elapsed();

    let start = Instant::now();
    // A WebP source is already stored as lossy WebP: the same encode would give the same bytes.
    let original_webp = match output {
        Output::Webp => original.clone(),
        _ => encode_webp(&original_pixels, WEBP_METHOD_ORIGINAL)?,
    };
    times.webp_original = start.elapsed();

    let start = Instant::now();
    let (small, small_webp, small_pixels) =
        small_variants(&mut resizer, &original_pixels, output, limits)?;
    times.small = start.elapsed();

    let start = Instant::now();
    let blurhash = blurhash(&mut resizer, &small_pixels)?;
    times.blurhash = start.elapsed();

    let processed = Processed {
        kind: Kind::Image,
        original,
        original_webp: Some(original_webp),
        small,
        small_webp,
        blurhash,
        video: None,
    };
    Ok((processed, times))
}

/// Makes the preview of a client-supplied custom thumbnail (it must be a JPEG, PNG, GIF or
/// WebP image; its type is sniffed from its bytes): `(small, small_webp, blurhash)`, with the
/// same limits, orientation and metadata stripping as [`process_image`]. Synchronous and
/// CPU-bound.
pub fn process_thumbnail(
    bytes: &[u8],
    limits: &ImageLimits,
) -> Result<(Variant, Variant, String), PipelineError> {
    let container = sniff(bytes).filter(|c| !c.is_video()).ok_or_else(|| {
        PipelineError::Unsupported("a thumbnail must be a JPEG, PNG, GIF or WebP image".into())
    })?;
    preview(bytes, container, Output::for_source(container), limits)
}

/// The preview variants of an image in `output`'s format (JPEG for a video's poster frame).
pub(crate) fn preview(
    bytes: &[u8],
    container: Container,
    output: Output,
    limits: &ImageLimits,
) -> Result<(Variant, Variant, String), PipelineError> {
    let mut times = StageTimes::default();
    let source = decode(bytes, container, limits, output.keeps_alpha(), &mut times)?;
    let mut resizer = Resizer::new();
    let (small, small_webp, small_pixels) = small_variants(&mut resizer, &source, output, limits)?;
    let blurhash = blurhash(&mut resizer, &small_pixels)?;
    Ok((small, small_webp, blurhash))
}

/// Whether a GIF has more than one frame.
///
/// Walks the GIF block structure (block lengths only), so it costs next to nothing and
/// allocates nothing: counting frames with a decoder would LZW-decode and composite a full
/// RGBA canvas per frame, and a GIF canvas may claim 65535×65535 pixels. A damaged file reads
/// as not animated; the still-image path then reports it.
pub fn is_animated_gif(bytes: &[u8]) -> bool {
    gif_frames(bytes, 2).unwrap_or(0) >= 2
}

/// Counts image descriptors up to `stop_at`; `None` when the structure is broken before then.
fn gif_frames(bytes: &[u8], stop_at: usize) -> Option<usize> {
    if !(bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a")) {
        return None;
    }
    let screen_flags = *bytes.get(10)?;
    let mut at = 13 + color_table_len(screen_flags);
    let mut frames = 0;
    loop {
        match *bytes.get(at)? {
            // Image descriptor: separator, 4 × u16 geometry, flags; then an optional local
            // color table, the LZW minimum code size and the data sub-blocks.
            0x2C => {
                frames += 1;
                if frames >= stop_at {
                    return Some(frames);
                }
                let flags = *bytes.get(at + 9)?;
                at = skip_sub_blocks(bytes, at + 10 + color_table_len(flags) + 1)?;
            }
            // Extension: introducer, label, sub-blocks.
            0x21 => at = skip_sub_blocks(bytes, at + 2)?,
            // Trailer, or anything else: no more frames we can trust.
            _ => return Some(frames),
        }
    }
}

fn color_table_len(flags: u8) -> usize {
    if flags & 0x80 == 0 {
        0
    } else {
        3 << ((flags & 0x07) + 1)
    }
}

fn skip_sub_blocks(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = usize::from(*bytes.get(at)?);
        at += 1;
        if len == 0 {
            return Some(at);
        }
        at += len;
    }
}

/// The encoding of a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    Jpeg,
    Png,
    Webp,
}

impl Output {
    /// Stored images keep their format, except GIF: a still GIF is a palette image and would
    /// be requantised by a GIF encoder, PNG keeps its pixels.
    fn for_source(container: Container) -> Output {
        match container {
            Container::Png | Container::Gif => Output::Png,
            Container::Webp => Output::Webp,
            Container::Jpeg | Container::Mp4 | Container::Mov | Container::WebM => Output::Jpeg,
        }
    }

    fn keeps_alpha(self) -> bool {
        self != Output::Jpeg
    }
}

/// Decoded 8-bit pixels, RGB or RGBA, rows packed.
#[derive(Clone)]
struct Pixels {
    data: Vec<u8>,
    width: u32,
    height: u32,
    alpha: bool,
}

impl Pixels {
    fn pixel_type(&self) -> PixelType {
        if self.alpha {
            PixelType::U8x4
        } else {
            PixelType::U8x3
        }
    }

    fn channels(&self) -> usize {
        if self.alpha { 4 } else { 3 }
    }

    fn color_type(&self) -> ExtendedColorType {
        if self.alpha {
            ExtendedColorType::Rgba8
        } else {
            ExtendedColorType::Rgb8
        }
    }

    /// The buffer, checked against the dimensions: the WebP binding panics on a short one.
    fn checked_data(&self) -> Result<&[u8], PipelineError> {
        let expected = self.width as usize * self.height as usize * self.channels();
        if self.data.len() == expected && self.width > 0 && self.height > 0 {
            Ok(&self.data)
        } else {
            Err(PipelineError::Internal(format!(
                "pixel buffer of {} bytes does not match {}x{}",
                self.data.len(),
                self.width,
                self.height
            )))
        }
    }

    /// Converts any decoded layout (grayscale, 16-bit, CMYK already turned to RGB by the JPEG
    /// decoder) to 8-bit RGB, or RGBA when the image has alpha and the output can keep it.
    fn from_image(image: DynamicImage, keep_alpha: bool) -> Pixels {
        let (width, height) = (image.width(), image.height());
        let alpha = keep_alpha && image.color().has_alpha();
        let data = match (image, alpha) {
            (DynamicImage::ImageRgb8(buffer), false) => buffer.into_raw(),
            (DynamicImage::ImageRgba8(buffer), true) => buffer.into_raw(),
            (image, true) => image.into_rgba8().into_raw(),
            (image, false) => image.into_rgb8().into_raw(),
        };
        Pixels {
            data,
            width,
            height,
            alpha,
        }
    }
}

fn image_format(container: Container) -> Result<ImageFormat, PipelineError> {
    match container {
        Container::Jpeg => Ok(ImageFormat::Jpeg),
        Container::Png => Ok(ImageFormat::Png),
        Container::Gif => Ok(ImageFormat::Gif),
        Container::Webp => Ok(ImageFormat::WebP),
        Container::Mp4 | Container::Mov | Container::WebM => Err(PipelineError::Unsupported(
            format!("{} is a video, not an image", container.mime_type()),
        )),
    }
}

/// A decoder that has read the header only. Its limits bound what the header parsing itself
/// may allocate (text and ICC chunks); the dimension limits come after the check.
fn header_decoder<'a>(
    bytes: &'a [u8],
    container: Container,
    limits: &ImageLimits,
) -> Result<impl ImageDecoder + 'a, PipelineError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format(container)?);
    let mut header_limits = image::Limits::default();
    header_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(header_limits);
    reader.into_decoder().map_err(decode_error)
}

fn check_pixels(width: u32, height: u32, limits: &ImageLimits) -> Result<(), PipelineError> {
    if width == 0 || height == 0 {
        return Err(PipelineError::Corrupt(format!(
            "image is {width}x{height} pixels: it has no pixels"
        )));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(PipelineError::TooLarge(format!(
            "image is {width}x{height} pixels, the limit is {}",
            limits.max_pixels
        )));
    }
    Ok(())
}

/// Header check, bounded decode, orientation.
fn decode(
    bytes: &[u8],
    container: Container,
    limits: &ImageLimits,
    keep_alpha: bool,
    times: &mut StageTimes,
) -> Result<Pixels, PipelineError> {
    let start = Instant::now();
    let mut decoder = header_decoder(bytes, container, limits)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    // The JPEG decoder is lenient: it paints what is missing grey and reports success, so a
    // file cut at 2% would be stored as a grey picture.
    if container == Container::Jpeg && !jpeg_is_complete(bytes) {
        return Err(PipelineError::Corrupt(
            "the JPEG is truncated: it has no end-of-image marker".into(),
        ));
    }
    // The VP8 decoder is lenient the same way: a lossy WebP cut a few bytes short decodes
    // "successfully", its last macroblocks made up.
    if container == Container::Webp && !webp_is_complete(bytes) {
        return Err(PipelineError::Corrupt(
            "the WebP is truncated: a chunk ends past the end of the file".into(),
        ));
    }
    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(width);
    decode_limits.max_image_height = Some(height);
    decode_limits.max_alloc = Some(limits.max_alloc);
    decoder.set_limits(decode_limits).map_err(decode_error)?;
    // `ImageReader::decode` makes this check; going through the decoder (for its orientation)
    // means making it here.
    if decoder.total_bytes() > limits.max_alloc {
        return Err(PipelineError::TooLarge(format!(
            "image is {width}x{height} pixels of {:?}: decoding needs {} bytes, the limit is {}",
            decoder.color_type(),
            decoder.total_bytes(),
            limits.max_alloc
        )));
    }
    // Unreadable EXIF is no reason to refuse the pixels; they are shown as stored then.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    if (image.width(), image.height()) != (width, height) {
        return Err(PipelineError::Corrupt(format!(
            "image decoded to {}x{} but its header says {width}x{height}",
            image.width(),
            image.height()
        )));
    }
    times.decode = start.elapsed();

    let start = Instant::now();
    image.apply_orientation(orientation);
    let pixels = Pixels::from_image(image, keep_alpha);
    times.orientation = start.elapsed();
    Ok(pixels)
}

/// Whether a JPEG has its end-of-image marker after its first scan.
///
/// Almost every file ends with it; otherwise the segments are walked (an EXIF thumbnail is a
/// whole JPEG, EOI included, inside APP1) up to the first scan, whose entropy-coded data
/// cannot contain `FF D9` (a data `FF` is always followed by `00` or a restart marker). Data
/// after the EOI (motion photos append a video there) is fine.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    const EOI: [u8; 2] = [0xFF, 0xD9];
    if bytes.ends_with(&EOI) {
        return true;
    }
    let mut at = 2;
    loop {
        // Stray bytes between segments are skipped, as libjpeg does.
        while bytes.get(at).is_some_and(|&b| b != 0xFF) {
            at += 1;
        }
        let Some(&marker) = bytes.get(at + 1) else {
            return false;
        };
        match marker {
            // Fill byte before a marker.
            0xFF => at += 1,
            0xD9 => return true,
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => at += 2,
            0xDA => {
                let Some(length) = segment_length(bytes, at) else {
                    return false;
                };
                let data = bytes.get(at + 2 + length..).unwrap_or_default();
                return data.windows(2).any(|w| w == EOI);
            }
            _ => match segment_length(bytes, at) {
                Some(length) => at += 2 + length,
                None => return false,
            },
        }
    }
}

/// Whether every chunk of a WebP file is whole: after `RIFF`, the file size and `WEBP`, chunks
/// of a FourCC, a little-endian size, the data and a pad byte when the size is odd. Only the
/// final pad byte may be missing (it holds nothing); bytes past the RIFF size are ignored,
/// chunks the RIFF size promises must be there.
fn webp_is_complete(bytes: &[u8]) -> bool {
    let Some(riff) = bytes.get(4..8) else {
        return false;
    };
    let riff_size = u32::from_le_bytes([riff[0], riff[1], riff[2], riff[3]]);
    let end = 8 + riff_size as usize;
    let mut at = 12;
    while at < end {
        let Some(header) = bytes.get(at..at + 8) else {
            return false;
        };
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let data_end = at + 8 + size;
        if data_end > bytes.len() {
            return false;
        }
        at = data_end + (size & 1);
    }
    true
}

/// The length field of the segment whose marker is at `at` (it counts itself).
fn segment_length(bytes: &[u8], at: usize) -> Option<usize> {
    let high = *bytes.get(at + 2)?;
    let low = *bytes.get(at + 3)?;
    Some(usize::from(u16::from_be_bytes([high, low])))
}

fn decode_error(error: ImageError) -> PipelineError {
    match error {
        ImageError::Limits(e) => {
            PipelineError::TooLarge(format!("image is beyond a decoding limit: {e}"))
        }
        ImageError::Unsupported(e) => PipelineError::Unsupported(format!("unsupported image: {e}")),
        e => PipelineError::Corrupt(format!("damaged image: {e}")),
    }
}

fn encode_error(error: ImageError) -> PipelineError {
    PipelineError::Internal(format!("encoding failed: {error}"))
}

/// The largest size within `max_pixels` and `max_side` with the aspect ratio kept, never
/// larger than the source.
fn cap_pixels(width: u32, height: u32, max_pixels: u64, max_side: u32) -> (u32, u32) {
    let max_pixels = max_pixels.max(1);
    let pixels = u64::from(width) * u64::from(height);
    let mut scale: f64 = 1.0;
    if pixels > max_pixels {
        scale = (max_pixels as f64 / pixels as f64).sqrt();
    }
    scale = scale
        .min(f64::from(max_side) / f64::from(width))
        .min(f64::from(max_side) / f64::from(height));
    if scale >= 1.0 {
        return (width, height);
    }
    let mut w = ((f64::from(width) * scale).floor() as u32).clamp(1, width);
    let mut h = ((f64::from(height) * scale).floor() as u32).clamp(1, height);
    // The square root is inexact; trim the odd pixel row or column that may be over.
    while u64::from(w) * u64::from(h) > max_pixels && (w > 1 || h > 1) {
        if w >= h {
            w -= 1;
        } else {
            h -= 1;
        }
    }
    (w, h)
}

/// The size fitting a `side`×`side` square with the aspect ratio kept, never larger.
fn fit_box(width: u32, height: u32, side: u32) -> (u32, u32) {
    let side = side.max(1);
    if width <= side && height <= side {
        return (width, height);
    }
    let scaled = |short: u32, long: u32| -> u32 {
        let v = (u64::from(short) * u64::from(side) + u64::from(long) / 2) / u64::from(long);
        u32::try_from(v).unwrap_or(side).clamp(1, side)
    };
    if width >= height {
        (side, scaled(height, width))
    } else {
        (scaled(width, height), side)
    }
}

fn resize(
    resizer: &mut Resizer,
    source: &Pixels,
    width: u32,
    height: u32,
) -> Result<Pixels, PipelineError> {
    resize_with(
        resizer,
        source,
        width,
        height,
        ResizeAlg::Convolution(RESIZE_FILTER),
    )
}

/// Alpha is premultiplied for the resize (fast_image_resize's default), so transparent
/// pixels' hidden colours do not bleed into the edges.
fn resize_with(
    resizer: &mut Resizer,
    source: &Pixels,
    width: u32,
    height: u32,
    algorithm: ResizeAlg,
) -> Result<Pixels, PipelineError> {
    let pixel_type = source.pixel_type();
    let view = ImageRef::new(
        source.width,
        source.height,
        source.checked_data()?,
        pixel_type,
    )
    .map_err(|e| PipelineError::Internal(format!("resize source: {e}")))?;
    let mut target = Image::new(width, height, pixel_type);
    resizer
        .resize(
            &view,
            &mut target,
            &ResizeOptions::new().resize_alg(algorithm),
        )
        .map_err(|e| PipelineError::Internal(format!("resize failed: {e}")))?;
    Ok(Pixels {
        data: target.into_vec(),
        width,
        height,
        alpha: source.alpha,
    })
}

/// The preview in `output`'s format and as WebP, and its pixels (for the blurhash).
fn small_variants<'a>(
    resizer: &mut Resizer,
    source: &'a Pixels,
    output: Output,
    limits: &ImageLimits,
) -> Result<(Variant, Variant, Cow<'a, Pixels>), PipelineError> {
    let (width, height) = fit_box(source.width, source.height, limits.small_box);
    let pixels = if (width, height) == (source.width, source.height) {
        Cow::Borrowed(source)
    } else {
        Cow::Owned(resize(resizer, source, width, height)?)
    };
    let small = encode(&pixels, output, WEBP_METHOD_SMALL)?;
    let small_webp = match output {
        Output::Webp => small.clone(),
        _ => encode_webp(&pixels, WEBP_METHOD_SMALL)?,
    };
    Ok((small, small_webp, pixels))
}

fn blurhash(resizer: &mut Resizer, small: &Pixels) -> Result<String, PipelineError> {
    let (width, height) = fit_box(small.width, small.height, BLURHASH_SIDE);
    let tiny = if (width, height) == (small.width, small.height) {
        Cow::Borrowed(small)
    } else {
        // Box averages every source pixel: what a blurhash wants, at the lowest cost.
        Cow::Owned(resize_with(
            resizer,
            small,
            width,
            height,
            ResizeAlg::Convolution(FilterType::Box),
        )?)
    };
    let rgba: Cow<'_, [u8]> = if tiny.alpha {
        Cow::Borrowed(tiny.checked_data()?)
    } else {
        let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
        for rgb in tiny.checked_data()?.chunks_exact(3) {
            rgba.extend_from_slice(rgb);
            rgba.push(u8::MAX);
        }
        Cow::Owned(rgba)
    };
    blurhash::encode(BLURHASH_X, BLURHASH_Y, width, height, &rgba)
        .map_err(|e| PipelineError::Internal(format!("blurhash failed: {e}")))
}

/// `webp_method` is used when `output` is WebP.
fn encode(pixels: &Pixels, output: Output, webp_method: i32) -> Result<Variant, PipelineError> {
    let data = pixels.checked_data()?;
    let (width, height) = (pixels.width, pixels.height);
    // A compressed image is usually well under a tenth of its raw size.
    let mut bytes = Vec::with_capacity(data.len() / 10);
    let (content_type, extension) = match output {
        Output::Jpeg => {
            let rgb = if pixels.alpha {
                Cow::Owned(flatten_on_white(data))
            } else {
                Cow::Borrowed(data)
            };
            // A fresh encoder writes a JFIF header and nothing else: no EXIF, XMP or ICC.
            JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
                .write_image(&rgb, width, height, ExtendedColorType::Rgb8)
                .map_err(encode_error)?;
            ("image/jpeg", "jpg")
        }
        Output::Png => {
            // Only IHDR, IDAT and IEND are written: no text, eXIf or iCCP chunks.
            PngEncoder::new_with_quality(&mut bytes, PNG_COMPRESSION, PngFilter::Adaptive)
                .write_image(data, width, height, pixels.color_type())
                .map_err(encode_error)?;
            ("image/png", "png")
        }
        Output::Webp => return encode_webp(pixels, webp_method),
    };
    Ok(Variant {
        bytes,
        content_type,
        extension,
        width,
        height,
    })
}

/// Lossy WebP (libwebp writes no metadata chunks unless asked to).
fn encode_webp(pixels: &Pixels, method: i32) -> Result<Variant, PipelineError> {
    let data = pixels.checked_data()?;
    let (width, height) = (pixels.width, pixels.height);
    let encoder = if pixels.alpha {
        webp::Encoder::from_rgba(data, width, height)
    } else {
        webp::Encoder::from_rgb(data, width, height)
    };
    let mut config = webp::WebPConfig::new()
        .map_err(|()| PipelineError::Internal("libwebp has no default config".into()))?;
    config.lossless = 0;
    config.quality = WEBP_QUALITY;
    config.method = method;
    let encoded = encoder
        .encode_advanced(&config)
        .map_err(|e| PipelineError::Internal(format!("WebP encoding failed: {e:?}")))?;
    Ok(Variant {
        bytes: encoded.to_vec(),
        content_type: "image/webp",
        extension: "webp",
        width,
        height,
    })
}

/// RGBA to RGB over a white background, for JPEG: dropping alpha instead would show whatever
/// colour the transparent pixels happen to hold (often black).
fn flatten_on_white(rgba: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let alpha = u16::from(px[3]);
        for &c in &px[..3] {
            let blended = (u16::from(c) * alpha + 255 * (255 - alpha) + 127) / 255;
            rgb.push(u8::try_from(blended).unwrap_or(u8::MAX));
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_pixels_keeps_aspect_and_never_upscales() {
        assert_eq!(cap_pixels(100, 50, 1_000_000, WEBP_MAX_SIDE), (100, 50));
        let (w, h) = cap_pixels(5000, 4000, 2_000_000, WEBP_MAX_SIDE);
        assert!(u64::from(w) * u64::from(h) <= 2_000_000);
        assert!((f64::from(w) / f64::from(h) - 1.25).abs() < 0.01);
        assert!(w >= 1575, "{w}x{h} wastes the budget");
        assert_eq!(
            cap_pixels(30000, 100, 8_294_400, WEBP_MAX_SIDE),
            (16383, 54)
        );
        assert_eq!(cap_pixels(100_000, 1, 10, WEBP_MAX_SIDE), (10, 1));
        assert_eq!(cap_pixels(7, 7, 0, WEBP_MAX_SIDE), (1, 1));
    }

    #[test]
    fn fit_box_fits() {
        assert_eq!(fit_box(640, 480, 640), (640, 480));
        assert_eq!(fit_box(4000, 3000, 640), (640, 480));
        assert_eq!(fit_box(3000, 4000, 640), (480, 640));
        assert_eq!(fit_box(10000, 3, 640), (640, 1));
        assert_eq!(fit_box(3, 10000, 640), (1, 640));
        assert_eq!(fit_box(20, 10, 640), (20, 10));
    }

    #[test]
    fn flatten_blends_on_white() {
        assert_eq!(
            flatten_on_white(&[0, 0, 0, 0, 255, 0, 0, 255, 0, 0, 0, 128]),
            vec![255, 255, 255, 255, 0, 0, 127, 127, 127]
        );
    }

    #[test]
    fn webp_completeness_walks_the_chunks() {
        // RIFF, a VP8L chunk of 3 bytes (odd: one pad byte), then junk past the RIFF size.
        let whole = b"RIFF\x10\x00\x00\x00WEBPVP8L\x03\x00\x00\x00abc\x00junk";
        assert!(webp_is_complete(whole));
        // Without the pad byte: nothing is missing.
        assert!(webp_is_complete(&whole[..23]));
        for cut in [0, 4, 12, 16, 20, 22] {
            assert!(!webp_is_complete(&whole[..cut]), "cut at {cut}");
        }
        // A chunk claiming more than there is.
        assert!(!webp_is_complete(
            b"RIFF\xff\xff\x00\x00WEBPVP8 \xff\xff\x00\x00ab"
        ));
    }

    #[test]
    fn gif_frame_walk_survives_garbage() {
        assert_eq!(gif_frames(b"GIF89a", 2), None);
        assert_eq!(gif_frames(b"PNG", 2), None);
        assert!(!is_animated_gif(b"GIF89a\x01\x00\x01\x00\xff\x00\x00"));
        // Two descriptors after a 2-colour global table, each with one data sub-block.
        let mut gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
        for _ in 0..2 {
            gif.extend_from_slice(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00");
        }
        gif.push(0x3B);
        assert_eq!(gif_frames(&gif, 5), Some(2));
        assert!(is_animated_gif(&gif));
        // Cut inside the first frame's data: not (provably) animated.
        assert!(!is_animated_gif(&gif[..30]));
    }
}
