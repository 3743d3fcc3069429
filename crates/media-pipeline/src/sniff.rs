//! What a file is, from its first bytes. The client's file name and `Content-Type` are never
//! trusted: a `.jpg` holding an HTML page or an HLS playlist must not reach a decoder or ffmpeg
//! (ffmpeg's own probing would happily follow a playlist to local files or URLs).

/// How many leading bytes [`sniff`] looks at; shorter input is fine (it is the whole file).
pub const SNIFF_LEN: usize = 64;

/// A container format we accept, as its magic bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (the 8-byte PNG signature).
    Png,
    /// GIF (`GIF87a` / `GIF89a`), still or animated.
    Gif,
    /// WebP (`RIFF....WEBP`).
    Webp,
    /// ISO base media file with an MP4 brand (`ftyp` box, brands `isom`, `mp42`, ...).
    Mp4,
    /// QuickTime (`ftyp` box with major brand `qt  `).
    Mov,
    /// WebM, or Matroska (EBML header whose DocType is `webm` or `matroska`).
    WebM,
}

impl Container {
    /// Whether the file is a video (processed with ffmpeg).
    pub fn is_video(self) -> bool {
        matches!(self, Container::Mp4 | Container::Mov | Container::WebM)
    }

    /// The MIME type of the container.
    pub fn mime_type(self) -> &'static str {
        match self {
            Container::Jpeg => "image/jpeg",
            Container::Png => "image/png",
            Container::Gif => "image/gif",
            Container::Webp => "image/webp",
            Container::Mp4 => "video/mp4",
            Container::Mov => "video/quicktime",
            Container::WebM => "video/webm",
        }
    }

    /// The usual file name extension of the container, without a dot.
    pub fn extension(self) -> &'static str {
        match self {
            Container::Jpeg => "jpg",
            Container::Png => "png",
            Container::Gif => "gif",
            Container::Webp => "webp",
            Container::Mp4 => "mp4",
            Container::Mov => "mov",
            Container::WebM => "webm",
        }
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const EBML_MAGIC: &[u8] = &[0x1A, 0x45, 0xDF, 0xA3];

/// ISO-BMFF brands of video files. An allow-list rather than "any `ftyp`": HEIF/AVIF images
/// (`heic`, `mif1`, `avif`) and M4A audio share the box structure but are not videos.
const MP4_BRANDS: &[&[u8; 4]] = &[
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9", b"mp41",
    b"mp42", b"mp71", b"avc1", b"M4V ", b"M4VH", b"M4VP", b"dash", b"msnv", b"MSNV", b"3gp4",
    b"3gp5", b"3gp6", b"3g2a", b"mmp4", b"XAVC", b"f4v ", b"NDAS", b"hvc1",
];
const QUICKTIME_BRAND: &[u8; 4] = b"qt  ";
/// Brands that make a file something else even when a video brand is listed as compatible.
const NOT_VIDEO_BRANDS: &[&[u8; 4]] = &[
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis",
    b"M4A ", b"M4B ", b"M4P ", b"jp2 ",
];

/// The container of a file from its first bytes (at most [`SNIFF_LEN`] are read), or `None`
/// when it is not a type we take.
pub fn sniff(head: &[u8]) -> Option<Container> {
    let head = &head[..head.len().min(SNIFF_LEN)];
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Container::Jpeg)
    } else if head.starts_with(PNG_SIGNATURE) {
        Some(Container::Png)
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some(Container::Gif)
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some(Container::Webp)
    } else if head.len() >= 12 && &head[4..8] == b"ftyp" {
        sniff_ftyp(head)
    } else if head.starts_with(EBML_MAGIC) {
        sniff_ebml(head)
    } else {
        None
    }
}

/// An `ftyp` box: size (4), `ftyp`, major brand (4), minor version (4), compatible brands.
fn sniff_ftyp(head: &[u8]) -> Option<Container> {
    let major = brand_at(head, 8)?;
    if NOT_VIDEO_BRANDS.contains(&major) {
        return None;
    }
    if major == QUICKTIME_BRAND {
        return Some(Container::Mov);
    }
    if MP4_BRANDS.contains(&major) {
        return Some(Container::Mp4);
    }
    // Some recorders write a vendor major brand and list the standard ones as compatible.
    let box_size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let end = box_size.min(head.len());
    let compatible: Vec<&[u8; 4]> = (16..end.saturating_sub(3))
        .step_by(4)
        .filter_map(|at| brand_at(head, at))
        .collect();
    if compatible.iter().any(|b| NOT_VIDEO_BRANDS.contains(b)) {
        None
    } else if compatible.contains(&QUICKTIME_BRAND) {
        Some(Container::Mov)
    } else if compatible.iter().any(|b| MP4_BRANDS.contains(b)) {
        Some(Container::Mp4)
    } else {
        None
    }
}

fn brand_at(head: &[u8], at: usize) -> Option<&[u8; 4]> {
    head.get(at..at + 4)?.try_into().ok()
}

/// The EBML header is itself an element holding small elements; one of them (ID `42 82`) is
/// the DocType. Walking them, rather than searching for the string, keeps a `webm` that
/// happens to sit in some other element's payload from counting.
fn sniff_ebml(head: &[u8]) -> Option<Container> {
    let mut at = EBML_MAGIC.len();
    let (header_size, len) = read_vint(head.get(at..)?, true)?;
    at += len;
    let header_end = at.saturating_add(usize::try_from(header_size).ok()?);
    while at < header_end.min(head.len()) {
        let (id, id_len) = read_vint(&head[at..], false)?;
        at += id_len;
        let (size, size_len) = read_vint(head.get(at..)?, true)?;
        at += size_len;
        let size = usize::try_from(size).ok()?;
        if id == 0x4282 {
            let doc_type = head.get(at..at.checked_add(size)?)?;
            // The string may be NUL-padded.
            let doc_type = doc_type.split(|&b| b == 0).next().unwrap_or_default();
            return matches!(doc_type, b"webm" | b"matroska").then_some(Container::WebM);
        }
        at = at.checked_add(size)?;
    }
    None
}

/// An EBML variable-length integer: the count of leading zero bits of the first byte is the
/// number of extra bytes. Element IDs keep the length marker bit, sizes drop it.
fn read_vint(bytes: &[u8], strip_marker: bool) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    if first == 0 {
        return None;
    }
    let len = first.leading_zeros() as usize + 1;
    let raw = bytes.get(..len)?;
    let mut value = u64::from(if strip_marker {
        // An 8-byte vint (first byte 0x01) has no value bits in its first byte; a plain
        // `0xFF >> 8` overflows the u8 (a panic in debug builds, the marker kept in release).
        first & u8::MAX.checked_shr(first.leading_zeros() + 1).unwrap_or(0)
    } else {
        first
    });
    for &b in &raw[1..] {
        value = (value << 8) | u64::from(b);
    }
    Some((value, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len();
        let mut v = (size as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b"ftyp");
        v.extend_from_slice(major);
        v.extend_from_slice(&[0, 0, 2, 0]);
        for b in compatible {
            v.extend_from_slice(*b);
        }
        v.extend_from_slice(b"\0\0\0\x08free");
        v
    }

    /// The EBML header as ffmpeg writes it.
    fn ebml(doc_type: &[u8]) -> Vec<u8> {
        let mut body = vec![0x42, 0x86, 0x81, 0x01, 0x42, 0xF7, 0x81, 0x01];
        body.extend_from_slice(&[0x42, 0xF2, 0x81, 0x04, 0x42, 0xF3, 0x81, 0x08]);
        body.extend_from_slice(&[0x42, 0x82, 0x80 | doc_type.len() as u8]);
        body.extend_from_slice(doc_type);
        body.extend_from_slice(&[0x42, 0x87, 0x81, 0x04, 0x42, 0x85, 0x81, 0x02]);
        let mut v = EBML_MAGIC.to_vec();
        v.push(0x80 | body.len() as u8);
        v.extend_from_slice(&body);
        v.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0x01]);
        v
    }

    #[test]
    fn images() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J']),
            Some(Container::Jpeg)
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(Container::Png)
        );
        assert_eq!(sniff(b"GIF87a\x01\0\x01\0"), Some(Container::Gif));
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), Some(Container::Gif));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some(Container::Webp));
    }

    #[test]
    fn iso_bmff() {
        assert_eq!(
            sniff(&ftyp(b"isom", &[b"isom", b"iso2", b"avc1", b"mp41"])),
            Some(Container::Mp4)
        );
        assert_eq!(
            sniff(&ftyp(b"mp42", &[b"mp42", b"isom"])),
            Some(Container::Mp4)
        );
        assert_eq!(
            sniff(&ftyp(b"M4V ", &[b"M4V ", b"M4A "])),
            Some(Container::Mp4)
        );
        assert_eq!(sniff(&ftyp(b"qt  ", &[b"qt  "])), Some(Container::Mov));
        // A vendor brand, standard brands as compatible.
        assert_eq!(
            sniff(&ftyp(b"XYZW", &[b"isom", b"mp42"])),
            Some(Container::Mp4)
        );
        assert_eq!(sniff(&ftyp(b"XYZW", &[b"qt  "])), Some(Container::Mov));
        // Images and audio in the same box structure.
        assert_eq!(sniff(&ftyp(b"heic", &[b"mif1", b"heic"])), None);
        assert_eq!(sniff(&ftyp(b"avif", &[b"avif", b"mif1", b"miaf"])), None);
        assert_eq!(sniff(&ftyp(b"mif1", &[b"mif1", b"isom"])), None);
        assert_eq!(sniff(&ftyp(b"M4A ", &[b"M4A ", b"mp42", b"isom"])), None);
        assert_eq!(sniff(&ftyp(b"XYZW", &[b"XYZV"])), None);
        assert_eq!(sniff(b"\0\0\0\x14ftyp"), None);
    }

    #[test]
    fn ebml_doc_types() {
        assert_eq!(sniff(&ebml(b"webm")), Some(Container::WebM));
        assert_eq!(sniff(&ebml(b"matroska")), Some(Container::WebM));
        assert_eq!(sniff(&ebml(b"webm\0\0")), Some(Container::WebM));
        assert_eq!(sniff(&ebml(b"mkvx")), None);
        assert_eq!(sniff(EBML_MAGIC), None);
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x00, 0x00]), None);
        // "webm" in the payload of another element is not a DocType.
        let mut fake = EBML_MAGIC.to_vec();
        fake.extend_from_slice(&[0x88, 0x42, 0x86, 0x84, b'w', b'e', b'b', b'm']);
        assert_eq!(sniff(&fake), None);
    }

    #[test]
    fn rejects_other_files() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(&[0xFF]), None);
        assert_eq!(sniff(&[0xFF, 0xD8]), None);
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"RIFF"), None);
        assert_eq!(sniff(b"GIF88a"), None);
        assert_eq!(sniff(b"#EXTM3U\n#EXT-X-VERSION:3\n"), None);
        assert_eq!(sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"), None);
        assert_eq!(sniff(&[0x42, 0x4D, 0x3A, 0, 0, 0]), None); // BMP
        let garbage: Vec<u8> = (0..200u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert_eq!(sniff(&garbage), None);
    }

    #[test]
    fn a_text_file_named_jpg_is_not_a_jpeg() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("photo.jpg");
        std::fs::write(&path, "this is not a photo, just some text\n")?;
        assert_eq!(sniff(&std::fs::read(&path)?), None);
        Ok(())
    }

    #[test]
    fn only_the_first_bytes_count() {
        let mut late = vec![b' '; SNIFF_LEN];
        late.extend_from_slice(&[0xFF, 0xD8, 0xFF]);
        assert_eq!(sniff(&late), None);
    }

    #[test]
    fn video_and_mime() {
        for (c, video, mime) in [
            (Container::Jpeg, false, "image/jpeg"),
            (Container::Png, false, "image/png"),
            (Container::Gif, false, "image/gif"),
            (Container::Webp, false, "image/webp"),
            (Container::Mp4, true, "video/mp4"),
            (Container::Mov, true, "video/quicktime"),
            (Container::WebM, true, "video/webm"),
        ] {
            assert_eq!(c.is_video(), video, "{c:?}");
            assert_eq!(c.mime_type(), mime, "{c:?}");
        }
    }
}

#[cfg(test)]
mod proptests {
    //! Properties of [`sniff`]: it never panics, its answer agrees with the magic bytes,
    //! and only the first [`SNIFF_LEN`] bytes count.

    use proptest::prelude::*;

    use super::*;

    /// The signatures that decide a container on their own, whatever follows.
    fn simple_magic() -> impl Strategy<Value = (Vec<u8>, Container)> {
        prop::sample::select(vec![
            (vec![0xFF, 0xD8, 0xFF], Container::Jpeg),
            (PNG_SIGNATURE.to_vec(), Container::Png),
            (b"GIF87a".to_vec(), Container::Gif),
            (b"GIF89a".to_vec(), Container::Gif),
        ])
    }

    /// Bytes that are often a magic, a piece of one, or box/EBML structure.
    fn header_like() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..8),
            prop::sample::select(vec![
                &[0xFF, 0xD8, 0xFF][..],
                PNG_SIGNATURE,
                b"GIF89a",
                b"RIFF",
                b"WEBP",
                b"ftyp",
                b"isom",
                b"qt  ",
                b"heic",
                b"mif1",
                EBML_MAGIC,
                &[0x42, 0x82],
                &[0x84, b'w', b'e', b'b', b'm'],
                &[0x88, b'm', b'a', b't', b'r', b'o', b's', b'k', b'a'],
                &[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                &[0xFF, 0xFF, 0xFF, 0xFF],
                &[0, 0, 0, 0x18],
            ])
            .prop_map(<[u8]>::to_vec),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
    }

    /// Whether the magic bytes of `bytes` say `found` (anything is allowed to be `None`).
    fn magic_agrees(bytes: &[u8], found: Option<Container>) -> bool {
        match found {
            None => true,
            Some(Container::Jpeg) => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
            Some(Container::Png) => bytes.starts_with(PNG_SIGNATURE),
            Some(Container::Gif) => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
            Some(Container::Webp) => {
                bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP")
            }
            Some(Container::Mp4 | Container::Mov) => bytes.get(4..8) == Some(b"ftyp"),
            Some(Container::WebM) => bytes.starts_with(EBML_MAGIC),
        }
    }

    /// Found by `never_panics_on_header_like_bytes`: an EBML header whose size is an 8-byte
    /// vint (`01 ...`, as some muxers write it) overflowed the marker mask's shift.
    #[test]
    fn eight_byte_vint_sizes_do_not_overflow() {
        let mut webm = EBML_MAGIC.to_vec();
        webm.extend_from_slice(&[0x01, 0, 0, 0, 0, 0, 0, 0x07]);
        webm.extend_from_slice(&[0x42, 0x82, 0x84, b'w', b'e', b'b', b'm']);
        assert_eq!(sniff(&webm), Some(Container::WebM));
        // The DocType's own size as an 8-byte vint too.
        let mut webm = EBML_MAGIC.to_vec();
        webm.extend_from_slice(&[0x8E, 0x42, 0x82, 0x01, 0, 0, 0, 0, 0, 0, 0x04]);
        webm.extend_from_slice(b"webm");
        assert_eq!(sniff(&webm), Some(Container::WebM));
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x01, 0xFF, 0xFF]), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
            let _ = sniff(&bytes);
        }

        #[test]
        fn never_panics_on_header_like_bytes(bytes in header_like()) {
            let found = sniff(&bytes);
            prop_assert!(magic_agrees(&bytes, found), "{:?}", found);
        }

        #[test]
        fn a_magic_prefix_decides_the_type(
            (magic, container) in simple_magic(),
            rest in prop::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut bytes = magic;
            bytes.extend_from_slice(&rest);
            prop_assert_eq!(sniff(&bytes), Some(container));
        }

        #[test]
        fn riff_webp_is_webp(size in any::<[u8; 4]>(), rest in prop::collection::vec(any::<u8>(), 0..80)) {
            let mut bytes = b"RIFF".to_vec();
            bytes.extend_from_slice(&size);
            bytes.extend_from_slice(b"WEBP");
            bytes.extend_from_slice(&rest);
            prop_assert_eq!(sniff(&bytes), Some(Container::Webp));
        }

        #[test]
        fn ftyp_brands_decide_mp4_or_mov(
            size in any::<u32>(),
            major in prop::sample::select(MP4_BRANDS.to_vec()),
            minor in any::<[u8; 4]>(),
            rest in prop::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut bytes = size.to_be_bytes().to_vec();
            bytes.extend_from_slice(b"ftyp");
            bytes.extend_from_slice(major);
            bytes.extend_from_slice(&minor);
            bytes.extend_from_slice(&rest);
            prop_assert_eq!(sniff(&bytes), Some(Container::Mp4));
            bytes[8..12].copy_from_slice(QUICKTIME_BRAND);
            prop_assert_eq!(sniff(&bytes), Some(Container::Mov));
            // An image or audio major brand is never a video, whatever it lists.
            bytes[8..12].copy_from_slice(b"heic");
            prop_assert_eq!(sniff(&bytes), None);
        }

        #[test]
        fn truncated_headers_are_classified_without_panicking(
            (magic, _) in simple_magic(),
            cut in 0usize..8,
        ) {
            // A cut-short signature is not the type (nor a crash); a whole one is.
            let cut = cut.min(magic.len());
            let found = sniff(&magic[..cut]);
            if cut == magic.len() {
                prop_assert!(found.is_some());
            } else {
                prop_assert_eq!(found, None);
            }
        }

        #[test]
        fn truncated_video_headers_never_panic(
            ebml in any::<bool>(),
            size in any::<[u8; 4]>(),
            body in header_like(),
            cut in 0usize..64,
        ) {
            let mut bytes = if ebml {
                EBML_MAGIC.to_vec()
            } else {
                let mut b = size.to_vec();
                b.extend_from_slice(b"ftyp");
                b
            };
            bytes.extend_from_slice(&body);
            let head = &bytes[..cut.min(bytes.len())];
            let found = sniff(head);
            prop_assert!(magic_agrees(head, found), "{:?}", found);
        }

        #[test]
        fn only_the_first_bytes_count(
            head in prop::collection::vec(any::<u8>(), SNIFF_LEN..SNIFF_LEN + 1),
            tail in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = head.clone();
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(sniff(&bytes), sniff(&head));
        }
    }
}
