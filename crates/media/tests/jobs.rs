//! The job queue against real Postgres: a job whose worker died is taken over once its
//! lease lapses; a file that cannot be processed fails for good with its reason; the
//! clean-up deletes unattached uploads and their files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use rookery_kit::{cache::CacheHub, db::Db, testing};
use rookery_media::{Config, jobs, service::Media, storage, store::NewUpload};
use tokio_util::sync::CancellationToken;

const JPEG: &[u8] = include_bytes!("../../../tests/fixtures/exif-gps-rotated.jpg");

struct Env {
    media: Arc<Media>,
    _dir: tempfile::TempDir,
    _db: testing::TestDatabase,
}

async fn env(configure: impl FnOnce(&mut Config)) -> Env {
    let db = testing::database("media").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(
        &db.url,
        &testing::redis_url(),
        &testing::redis_prefix(),
        dir.path().to_owned(),
    );
    configure(&mut config);
    rookery_media::migrate(&config).await.unwrap();
    let pool = Db::connect_lazy(&config.database).unwrap();
    let media = rookery_media::build(&config, pool, &CacheHub::new(None)).unwrap();
    Env {
        media,
        _dir: dir,
        _db: db,
    }
}

/// Stores `bytes` as an upload waiting to be processed; `claimed`: as if a worker had
/// taken it (and died).
async fn queue(media: &Media, bytes: &[u8], container: &str, claimed: bool) -> (i64, String) {
    let prefix = storage::new_prefix();
    let key = storage::incoming_key(&prefix, "file");
    media
        .storage()
        .put(&key, Bytes::copy_from_slice(bytes))
        .await
        .unwrap();
    let row = media
        .store()
        .insert(&NewUpload {
            account_id: 1,
            kind: Some("image"),
            container,
            incoming_key: &key,
            thumbnail_key: None,
            file_prefix: &prefix,
            description: "",
            focus: None,
            claim: claimed.then_some(media.config().job_lease),
        })
        .await
        .unwrap();
    (row.id, key)
}

async fn wait_state(media: &Media, id: i64, state: &str) -> rookery_media::store::Row {
    for _ in 0..200 {
        let row = media.store().get(id).await.unwrap().unwrap();
        if row.state == state {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} never became {state}");
}

#[tokio::test]
async fn a_dead_workers_job_is_taken_over_when_its_lease_lapses() {
    let env = env(|c| c.job_lease = Duration::from_millis(1500)).await;
    let (id, incoming) = queue(&env.media, JPEG, "jpeg", true).await;
    let shutdown = CancellationToken::new();
    jobs::spawn_workers(env.media.clone(), 1, shutdown.clone());
    // Leased: nobody touches it yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        env.media.store().get(id).await.unwrap().unwrap().state,
        "processing"
    );
    let row = wait_state(&env.media, id, "ready").await;
    assert_eq!(
        row.attempts, 2,
        "the dead worker's attempt and the live one's"
    );
    assert_eq!(
        (row.original_width, row.original_height),
        (Some(32), Some(64))
    );
    assert!(row.incoming_key.is_none());
    assert!(!env.media.storage().exists(&incoming).await.unwrap());
    assert!(
        env.media
            .storage()
            .exists(row.original_key.as_deref().unwrap())
            .await
            .unwrap()
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_file_that_cannot_be_processed_fails_for_good_with_its_reason() {
    let env = env(|_| {}).await;
    // A JPEG signature over garbage: accepted as an upload, refused by the decoder.
    let mut broken = JPEG[..20].to_vec();
    broken.extend(std::iter::repeat_n(0x55, 4000));
    let (id, incoming) = queue(&env.media, &broken, "jpeg", false).await;
    let shutdown = CancellationToken::new();
    jobs::spawn_workers(env.media.clone(), 1, shutdown.clone());
    let row = wait_state(&env.media, id, "failed").await;
    assert_eq!(row.attempts, 1, "a corrupt file is not retried");
    assert!(!row.failure.unwrap_or_default().is_empty());
    // The upload as received goes right after (never served, no use any more).
    let mut deleted = false;
    for _ in 0..100 {
        if !env.media.storage().exists(&incoming).await.unwrap() {
            deleted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(deleted, "the failed upload's file was kept");
    shutdown.cancel();
}

#[tokio::test]
async fn the_clean_up_deletes_unattached_uploads_and_their_files() {
    let env = env(|c| c.unattached_ttl = Duration::ZERO).await;
    let (kept, _) = queue(&env.media, JPEG, "jpeg", false).await;
    let (gone, _) = queue(&env.media, JPEG, "jpeg", false).await;
    let shutdown = CancellationToken::new();
    jobs::spawn_workers(env.media.clone(), 1, shutdown.clone());
    let kept_row = wait_state(&env.media, kept, "ready").await;
    let gone_row = wait_state(&env.media, gone, "ready").await;
    shutdown.cancel();
    env.media.attach(99, 1, &[kept]).await.unwrap();
    let (expired, files) = env.media.clean_up().await.unwrap();
    assert_eq!(expired, 1);
    assert_eq!(files, 4, "original, small and their WebP siblings");
    assert!(env.media.store().get(gone).await.unwrap().is_none());
    for key in [gone_row.original_key, gone_row.small_key]
        .into_iter()
        .flatten()
    {
        assert!(!env.media.storage().exists(&key).await.unwrap(), "{key}");
    }
    let kept_now = env.media.store().get(kept).await.unwrap().unwrap();
    assert_eq!(kept_now.status_id, Some(99));
    assert!(
        env.media
            .storage()
            .exists(kept_row.original_key.as_deref().unwrap())
            .await
            .unwrap()
    );
}
