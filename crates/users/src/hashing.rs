//! Password hashing (argon2id) on a small pool of dedicated threads.
//!
//! Each argon2 hash holds 19 MiB of working memory. On tokio's blocking pool every
//! concurrent sign-in got a thread of its own, and glibc keeps a freed 19 MiB block in
//! that thread's arena: 64 concurrent logins left the users service at 4.9 GB RSS. Here
//! at most `threads` hashes run at once (the CPU cannot do more anyway), so memory stays
//! at `threads` × 19 MiB, and a flood of logins waits in a bounded queue, then is refused
//! as overload instead of exhausting memory.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
    mpsc,
};

use crate::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of hashing threads with a bounded queue.
pub struct Hasher {
    jobs: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
    max_queued: usize,
}

impl Hasher {
    /// Starts `threads` hashing threads (at least one); at most `max_queued` jobs wait.
    pub fn new(threads: usize, max_queued: usize) -> Result<Self> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads.max(1) {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("hasher-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking a job, not while running it.
                        let job = match receiver.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            // Every sender is gone: the service is shutting down.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| Error::Internal(format!("hashing thread: {e}")))?;
        }
        Ok(Self {
            jobs,
            queued: Arc::new(AtomicUsize::new(0)),
            max_queued,
        })
    }

    /// Runs `f` on a hashing thread. `Overloaded` when the queue is full.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Overloaded);
        }
        let (done, result) = tokio::sync::oneshot::channel();
        let queued = Arc::clone(&self.queued);
        let job: Job = Box::new(move || {
            queued.fetch_sub(1, Ordering::SeqCst);
            // The caller may have given up (deadline); then nobody waits for the result.
            let _ = done.send(f());
        });
        if self.jobs.send(job).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Internal("hashing threads are gone".into()));
        }
        result
            .await
            .map_err(|_| Error::Internal("hashing job dropped".into()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_refuses_past_the_queue_bound() {
        let hasher = Hasher::new(1, 1).unwrap();
        assert_eq!(hasher.run(|| 21 * 2).await.unwrap(), 42);

        // Occupy the only thread...
        let (started, is_started) = tokio::sync::oneshot::channel();
        let (release, wait) = mpsc::channel::<()>();
        let blocker = hasher.run(move || {
            let _ = started.send(());
            wait.recv().is_ok()
        });
        tokio::pin!(blocker);
        tokio::select! {
            _ = &mut blocker => panic!("the blocker finished early"),
            r = is_started => r.unwrap(),
        }
        // ...fill the queue (one poll enqueues the job)...
        let queued = hasher.run(|| true);
        tokio::pin!(queued);
        tokio::select! {
            biased;
            _ = &mut queued => panic!("a queued job ran while the thread was busy"),
            () = std::future::ready(()) => {}
        }
        // ...and the next job is refused at once.
        assert!(matches!(hasher.run(|| true).await, Err(Error::Overloaded)));

        release.send(()).unwrap();
        assert!(blocker.await.unwrap());
        assert!(queued.await.unwrap());
        assert!(hasher.run(|| true).await.unwrap());
    }
}
