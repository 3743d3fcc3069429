//! The object store behind the service: a local directory by default, an S3-compatible
//! bucket in production (`object_store` does both), and the naming of stored files.
//!
//! Every processed file lives under a random, unguessable 128-bit prefix and never
//! changes once written, so it can be served with an immutable `Cache-Control`. Uploads
//! as received (with their metadata: EXIF GPS!) live under `incoming/`, which is never
//! served.

use std::{ops::Range, sync::Arc};

pub use object_store::GetRange;

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use object_store::{
    GetOptions, ObjectStore, ObjectStoreExt, PutPayload, aws::AmazonS3Builder, buffered::BufWriter,
    local::LocalFileSystem, path::Path,
};
use tokio::io::AsyncWriteExt;

use crate::{Error, Result, config::StoreConfig};

/// Where uploads wait for processing.
const INCOMING: &str = "incoming/";

/// The object store and the service's rules for keys.
#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
}

/// A stored file (or a range of it) being read.
pub struct Reading {
    /// Size of the whole object.
    pub size: u64,
    /// The bytes sent.
    pub range: Range<u64>,
    /// MIME type, from the key's extension.
    pub content_type: &'static str,
    /// The range asked for lies outside the file (nothing is sent).
    pub unsatisfiable: bool,
    /// The bytes, in chunks.
    pub body: BoxStream<'static, Result<Bytes>>,
}

/// A random, unguessable prefix for one attachment's files.
pub fn new_prefix() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where an upload waits (`suffix`: `file` or `thumbnail`).
pub fn incoming_key(prefix: &str, suffix: &str) -> String {
    format!("{INCOMING}{prefix}-{suffix}")
}

/// The key of a processed variant (`original`, `small`) with its extension.
pub fn variant_key(prefix: &str, variant: &str, extension: &str) -> String {
    format!("{prefix}/{variant}.{extension}")
}

/// The WebP sibling of an image variant's key (`…/small.jpg` → `…/small.webp`), when
/// the variant is a JPEG or PNG (those always have one).
pub fn webp_sibling(key: &str) -> Option<String> {
    let stem = key
        .strip_suffix(".jpg")
        .or_else(|| key.strip_suffix(".png"))?;
    Some(format!("{stem}.webp"))
}

/// MIME type of a stored file, from its extension.
fn content_type(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, ext)| ext) {
        Some("jpg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("mp4") => "video/mp4",
        _ => "application/octet-stream",
    }
}

/// Whether `key` names a servable file: a processed variant, never an upload as
/// received, never anything a crafted path could reach outside the store.
pub fn is_public_key(key: &str) -> bool {
    let Some((prefix, file)) = key.split_once('/') else {
        return false;
    };
    prefix.len() == 32
        && prefix.bytes().all(|b| b.is_ascii_hexdigit())
        && !file.is_empty()
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !file.starts_with('.')
}

impl Storage {
    /// Opens the configured store (creating the local directory when needed).
    pub fn open(config: &StoreConfig) -> Result<Self> {
        let store: Arc<dyn ObjectStore> = match config {
            StoreConfig::Local(dir) => {
                std::fs::create_dir_all(dir)?;
                Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true))
            }
            StoreConfig::S3 {
                bucket,
                endpoint,
                region,
                credentials,
            } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(region);
                if let Some((id, secret)) = credentials {
                    builder = builder
                        .with_access_key_id(id)
                        .with_secret_access_key(secret);
                }
                if let Some(endpoint) = endpoint {
                    // S3-compatible servers (MinIO, Ceph, moto) want path-style
                    // requests; plain http only where the operator said so.
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                Arc::new(builder.build()?)
            }
        };
        Ok(Self { store })
    }

    /// Writes a whole file.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// A writer that streams a large file into the store (multipart for S3).
    pub fn writer(&self, key: &str) -> Writer {
        Writer(BufWriter::new(self.store.clone(), Path::from(key)))
    }

    /// Reads a whole file (uploads are bounded by the upload limits).
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        Ok(self.store.get(&Path::from(key)).await?.bytes().await?)
    }

    /// Copies a file into `file` (a video on its way to ffmpeg).
    pub async fn download(&self, key: &str, file: &mut tokio::fs::File) -> Result<()> {
        let mut stream = self.store.get(&Path::from(key)).await?.into_stream();
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?).await?;
        }
        file.flush().await?;
        Ok(())
    }

    /// Reads `key`, or the bytes `range` of it (clamped to the file). A range that
    /// starts past the end reads nothing and says so (HTTP 416).
    pub async fn read(&self, key: &str, range: Option<GetRange>) -> Result<Reading> {
        let location = Path::from(key);
        if let Some(r) = &range {
            // object_store rejects such a range with a generic error; the client must
            // learn the size instead (416 with `Content-Range: bytes */size`).
            let size = self.store.head(&location).await?.size;
            let outside = match r {
                GetRange::Bounded(b) => b.start >= size || b.start >= b.end,
                GetRange::Offset(o) => *o >= size,
                GetRange::Suffix(n) => *n == 0 || size == 0,
            };
            if outside {
                return Ok(Reading {
                    size,
                    range: 0..0,
                    content_type: content_type(key),
                    unsatisfiable: true,
                    body: futures::stream::empty().boxed(),
                });
            }
        }
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        let got = self.store.get_opts(&location, options).await?;
        Ok(Reading {
            size: got.meta.size,
            range: got.range.clone(),
            content_type: content_type(key),
            unsatisfiable: false,
            body: got.into_stream().map(|c| c.map_err(Error::from)).boxed(),
        })
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `key`; a missing file counts as deleted.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A file being streamed into the store; [`Writer::finish`] commits it.
pub struct Writer(BufWriter);

impl Writer {
    /// Appends bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.0.write_all(bytes).await?;
        Ok(())
    }

    /// Completes the file.
    pub async fn finish(mut self) -> Result<()> {
        self.0.shutdown().await?;
        Ok(())
    }

    /// Abandons the file (an S3 multipart upload is aborted).
    pub async fn abort(mut self) {
        if let Err(e) = self.0.abort().await {
            tracing::warn!(error = %e, "abandoning a partial upload failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_processed_variants_are_public() {
        let prefix = "0123456789abcdef0123456789abcdef";
        assert!(is_public_key(&variant_key(prefix, "small", "jpg")));
        assert!(!is_public_key(&incoming_key(prefix, "file")));
        assert!(!is_public_key(&format!("{prefix}/../incoming/x")));
        assert!(!is_public_key(&format!("{prefix}/")));
        assert!(!is_public_key(&format!("{prefix}/.hidden")));
        assert!(!is_public_key(&format!("{prefix}/a/b.jpg")));
        assert!(!is_public_key("short/small.jpg"));
        assert!(!is_public_key(&format!("{prefix}x/small.jpg")));
    }

    #[test]
    fn webp_siblings_of_jpeg_and_png_only() {
        assert_eq!(webp_sibling("p/small.jpg").as_deref(), Some("p/small.webp"));
        assert_eq!(
            webp_sibling("p/original.png").as_deref(),
            Some("p/original.webp")
        );
        assert_eq!(webp_sibling("p/original.mp4"), None);
        assert_eq!(webp_sibling("p/original.webp"), None);
    }

    #[test]
    fn prefixes_are_random_hex() {
        let (a, b) = (new_prefix(), new_prefix());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(is_public_key(&variant_key(&a, "original", "mp4")));
    }
}
