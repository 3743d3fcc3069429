//! Test inputs made on the fly: encoded images, hand-built EXIF and PNG headers, GIFs.
#![allow(dead_code)] // each test binary uses its own subset

use std::error::Error;
use std::io::Cursor;

use image::codecs::gif::{GifEncoder, Repeat};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{
    Delay, DynamicImage, ExtendedColorType, Frame, ImageEncoder, ImageFormat, Rgba, RgbaImage,
};

pub type TestResult = Result<(), Box<dyn Error>>;

/// An RGB JPEG whose pixels `color` gives.
pub fn jpeg(
    width: u32,
    height: u32,
    quality: u8,
    color: impl Fn(u32, u32) -> [u8; 3],
) -> Result<Vec<u8>, Box<dyn Error>> {
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            rgb.extend_from_slice(&color(x, y));
        }
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality).write_image(
        &rgb,
        width,
        height,
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// A PNG of any layout image can write.
pub fn png(image: &DynamicImage) -> Result<Vec<u8>, Box<dyn Error>> {
    let mut out = Vec::new();
    image.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)?;
    Ok(out)
}

/// An RGBA PNG whose pixels `color` gives.
pub fn png_rgba(
    width: u32,
    height: u32,
    color: impl Fn(u32, u32) -> [u8; 4],
) -> Result<Vec<u8>, Box<dyn Error>> {
    let image = RgbaImage::from_fn(width, height, |x, y| Rgba(color(x, y)));
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(
        image.as_raw(),
        width,
        height,
        ExtendedColorType::Rgba8,
    )?;
    Ok(out)
}

/// A GIF of `frames` frames of `width`×`height`, each a different solid colour.
pub fn gif(width: u32, height: u32, frames: u8) -> Result<Vec<u8>, Box<dyn Error>> {
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        if frames > 1 {
            encoder.set_repeat(Repeat::Infinite)?;
        }
        for i in 0..frames {
            let shade = 40 + i.wrapping_mul(90);
            let image = RgbaImage::from_pixel(width, height, Rgba([shade, 255 - shade, 80, 255]));
            encoder.encode_frame(Frame::from_parts(
                image,
                0,
                0,
                Delay::from_numer_denom_ms(100, 1),
            ))?;
        }
    }
    Ok(out)
}

/// The GPS latitude written by [`exif_orientation_gps`]: 48° 51' 29.717" as three rationals.
pub fn gps_latitude_bytes() -> Vec<u8> {
    [(48u32, 1u32), (51, 1), (29_717, 1000)]
        .iter()
        .flat_map(|(n, d)| n.to_le_bytes().into_iter().chain(d.to_le_bytes()))
        .collect()
}

/// A little-endian TIFF structure as EXIF carries it: IFD0 with Orientation and a pointer to
/// a GPS IFD holding a latitude.
pub fn exif_orientation_gps(orientation: u16) -> Vec<u8> {
    let entry = |tag: u16, kind: u16, count: u32, value: [u8; 4]| -> Vec<u8> {
        let mut e = tag.to_le_bytes().to_vec();
        e.extend_from_slice(&kind.to_le_bytes());
        e.extend_from_slice(&count.to_le_bytes());
        e.extend_from_slice(&value);
        e
    };
    const IFD0: u32 = 8;
    const GPS_IFD: u32 = IFD0 + 2 + 2 * 12 + 4;
    const LATITUDE: u32 = GPS_IFD + 2 + 2 * 12 + 4;
    let mut tiff = b"II".to_vec();
    tiff.extend_from_slice(&42u16.to_le_bytes());
    tiff.extend_from_slice(&IFD0.to_le_bytes());
    tiff.extend_from_slice(&2u16.to_le_bytes());
    let [o0, o1] = orientation.to_le_bytes();
    tiff.extend(entry(0x0112, 3, 1, [o0, o1, 0, 0])); // Orientation, SHORT
    tiff.extend(entry(0x8825, 4, 1, GPS_IFD.to_le_bytes())); // GPSInfo IFD pointer, LONG
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend(entry(0x0001, 2, 2, *b"N\0\0\0")); // GPSLatitudeRef, ASCII
    tiff.extend(entry(0x0002, 5, 3, LATITUDE.to_le_bytes())); // GPSLatitude, RATIONAL
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend(gps_latitude_bytes());
    tiff
}

/// The JPEG with an APP1 Exif segment holding `tiff` right after SOI.
pub fn with_exif(jpeg: &[u8], tiff: &[u8]) -> Result<Vec<u8>, Box<dyn Error>> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG".into());
    }
    let length = u16::try_from(2 + 6 + tiff.len())?;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(tiff);
    out.extend_from_slice(&jpeg[2..]);
    Ok(out)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    out.extend_from_slice(&typed);
    out.extend_from_slice(&crc32(&typed).to_be_bytes());
}

/// A valid PNG header (IHDR with its CRC) claiming `width`×`height` RGB pixels, followed by a
/// tiny IDAT: a decompression bomb's shape, some bytes long.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    // zlib stream of nothing: the decoder would run out of data long before the end.
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Decodes an output variant.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, Box<dyn Error>> {
    Ok(image::load_from_memory(bytes)?)
}
