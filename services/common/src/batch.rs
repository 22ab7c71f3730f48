//! Group commit's queue (issue 18, direction 2): requests hand a job to a [`Batcher`] and wait
//! for its answer; a worker takes whatever jobs are waiting when it is free — up to `max`, never
//! waiting for more, so an idle service adds no latency and a busy one shares each commit among
//! many requests — and runs them as one batch. A job whose [`Batched::keys`] repeat a key of an
//! earlier job in the same take waits for the next batch (it then sees the first committed, as
//! serial execution would). A job sealed into a batch runs even if its caller has gone: the
//! worker owns it. Each service runs its batch in one transaction ([`Batched::run`]).

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Weak};

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::error::{AppError, AppResult};
use tracetrack_domain::ErrorCode;

/// How a service batches one kind of write.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BatchSettings {
    /// The most jobs in one batch; ≤ 1 turns batching off (every job runs alone).
    pub max: usize,
    /// Batches in flight at once (each holds one connection while it runs).
    pub workers: usize,
    /// Tests only: a batch closes when it has `max` jobs (by count, never by a timer).
    pub fill: bool,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max: 64,
            workers: 4,
            fill: false,
        }
    }
}

/// A job and where its answer goes.
pub type Waiting<J, A> = (J, oneshot::Sender<AppResult<A>>);

/// What runs a service's batches (held weakly by the workers: they end with it).
pub trait Batched: Send + Sync + 'static {
    type Job: Send + 'static;
    type Answer: Send + 'static;
    /// What must not repeat within one batch (children, idempotency keys).
    fn keys(job: &Self::Job) -> Vec<String>;
    /// Runs one batch and sends every job its answer.
    fn run(
        self: Arc<Self>,
        jobs: Vec<Waiting<Self::Job, Self::Answer>>,
    ) -> impl Future<Output = ()> + Send;
}

pub struct Batcher<B: Batched> {
    tx: Option<mpsc::UnboundedSender<Waiting<B::Job, B::Answer>>>,
}

impl<B: Batched> Batcher<B> {
    /// Starts `settings.workers` workers over `runner`.
    pub fn start(runner: Weak<B>, settings: &BatchSettings) -> Self {
        if settings.max <= 1 || settings.workers == 0 {
            return Self { tx: None };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..settings.workers {
            tokio::spawn(work(
                rx.clone(),
                runner.clone(),
                settings.max,
                settings.fill,
            ));
        }
        Self { tx: Some(tx) }
    }

    /// Runs `job` in a batch and answers it; `Err(job)` when batching is off (run it alone).
    pub async fn submit(&self, job: B::Job) -> Result<AppResult<B::Answer>, Box<B::Job>> {
        let Some(tx) = &self.tx else {
            return Err(Box::new(job));
        };
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError((job, _))) = tx.send((job, reply)) {
            return Err(Box::new(job));
        }
        Ok(answer.await.unwrap_or_else(|_| {
            Err(AppError::new(
                ErrorCode::Unavailable,
                "the request was interrupted, retry",
            ))
        }))
    }
}

type Queue<B> =
    Arc<Mutex<mpsc::UnboundedReceiver<Waiting<<B as Batched>::Job, <B as Batched>::Answer>>>>;

async fn work<B: Batched>(rx: Queue<B>, runner: Weak<B>, max: usize, fill: bool) {
    let mut carried = Vec::new();
    loop {
        let mut jobs = std::mem::take(&mut carried);
        if jobs.is_empty() {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            jobs.push(first);
            while jobs.len() < max {
                let next = if fill {
                    rx.recv().await
                } else {
                    rx.try_recv().ok()
                };
                match next {
                    Some(j) => jobs.push(j),
                    None => break,
                }
            }
        }
        let Some(runner) = runner.upgrade() else {
            return;
        };
        let (batch, later) = split::<B>(jobs);
        carried = later;
        runner.run(batch).await;
    }
}

/// The jobs that can share a batch (no repeated key), in arrival order, and those that wait.
#[allow(clippy::type_complexity)]
fn split<B: Batched>(
    jobs: Vec<Waiting<B::Job, B::Answer>>,
) -> (
    Vec<Waiting<B::Job, B::Answer>>,
    Vec<Waiting<B::Job, B::Answer>>,
) {
    let mut seen = HashSet::new();
    let (mut now, mut later) = (Vec::new(), Vec::new());
    for j in jobs {
        let keys = B::keys(&j.0);
        if keys.iter().any(|k| seen.contains(k)) {
            later.push(j);
        } else {
            seen.extend(keys);
            now.push(j);
        }
    }
    (now, later)
}
