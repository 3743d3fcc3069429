//! Background work: the processing workers, the periodic clean-up, and the consumer of
//! the timeline's events (which statuses use which uploads).

use std::{sync::Arc, time::Duration};

use rookery_kit::{events::Event, redis::Redis};
use rookery_proto::timeline::v1 as tl;
use tokio_util::sync::CancellationToken;

use crate::{Result, service::Media};

/// The consumer group of this service on the timeline's stream.
pub const GROUP: &str = "media";

/// How long an idle worker waits before looking for due jobs again (jobs queued by
/// other replicas, retries whose backoff ended, leases that lapsed).
const POLL: Duration = Duration::from_secs(1);

/// Starts `count` workers; each processes one job at a time until `shutdown`.
pub fn spawn_workers(media: Arc<Media>, count: usize, shutdown: CancellationToken) {
    for _ in 0..count {
        let media = media.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                match media.claim().await {
                    Ok(Some(row)) => {
                        let id = row.id;
                        if let Err(e) = media.run_job(row, None, &shutdown).await {
                            tracing::debug!(id, error = %e, "job ended without a result");
                        }
                    }
                    Ok(None) => {
                        tokio::select! {
                            () = media.idle(POLL) => {}
                            () = shutdown.cancelled() => {}
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming a job failed");
                        tokio::select! {
                            () = tokio::time::sleep(POLL) => {}
                            () = shutdown.cancelled() => {}
                        }
                    }
                }
            }
        });
    }
}

/// Starts the periodic clean-up (expired uploads, queued file deletions).
pub fn spawn_cleanup(media: Arc<Media>, shutdown: CancellationToken) {
    let every = media.config().cleanup_interval;
    tokio::spawn(async move {
        loop {
            match media.clean_up().await {
                Ok((0, 0)) => {}
                Ok((expired, files)) => tracing::info!(expired, files, "media clean-up"),
                Err(e) => tracing::warn!(error = %e, "media clean-up failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
}

/// Starts the consumer of `events:timeline`; `name` must be unique per process.
pub fn spawn_consumer(media: Arc<Media>, redis: Redis, name: &str, shutdown: CancellationToken) {
    let mut consumer = rookery_kit::events::Consumer::new(redis, "timeline", GROUP, name);
    consumer.claim_idle = media.config().claim_idle;
    consumer.spawn(
        move |event| {
            let media = media.clone();
            async move { on_timeline_event(&media, &event).await }
        },
        shutdown,
    );
}

/// Applies one event of the timeline stream. Every change is idempotent, so a
/// redelivered event changes nothing more.
pub async fn on_timeline_event(media: &Media, event: &Event) -> Result<()> {
    let deleted = match event.topic.as_str() {
        "status.created" | "status.updated" => false,
        "status.deleted" => true,
        _ => return Ok(()),
    };
    let Some(e) = event.decode::<tl::StatusEvent>() else {
        return Ok(());
    };
    // Most statuses carry no media: a new one without any has nothing to attach or
    // release (an edit may have removed some, a deletion releases them).
    if event.topic == "status.created" && e.media_ids.is_empty() {
        return Ok(());
    }
    let keep: &[i64] = if deleted { &[] } else { &e.media_ids };
    media.attach(e.status_id, e.account_id, keep).await
}
