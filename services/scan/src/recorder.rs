//! Group commit of recorded scans (issue 18, direction 2): every scan ends by recording its
//! event, outbox row and idempotency answer; concurrent records share ONE statement and one
//! commit ([`store::record_many`]) through the common [`Batcher`]. A key seen twice waits for
//! the next batch (then finds the first answer, as alone); a batch whose statement fails is
//! recorded one by one, so one bad row never fails the others.

use std::sync::Arc;

use tracetrack_common::batch::{self, Batched, Batcher};
use tracetrack_common::AppResult;

use crate::state::{Inner, Scan};
use crate::store::{self, Record};

/// The queue scan's records go through.
pub type Recorder = Batcher<Inner>;

impl Batched for Inner {
    type Job = Record;
    type Answer = bool;

    fn keys(job: &Record) -> Vec<String> {
        job.claim
            .iter()
            .map(|c| format!("{}:{}", c.scope, c.key))
            .collect()
    }

    async fn run(self: Arc<Self>, jobs: Vec<batch::Waiting<Record, bool>>) {
        metrics::histogram!("scan_record_batch_size").record(jobs.len() as f64);
        let pool = &self.pool;
        let (records, replies): (Vec<Record>, Vec<_>) = jobs.into_iter().unzip();
        let batched = match records.len() {
            1 => None,
            n => match store::record_many(pool, &records).await {
                Ok(done) => Some(done),
                Err(e) => {
                    tracing::debug!(error = %e, records = n, "record batch ran one by one");
                    metrics::counter!("scan_record_batches_serial_total").increment(1);
                    None
                }
            },
        };
        match batched {
            Some(done) => {
                for (reply, done) in replies.into_iter().zip(done) {
                    let _ = reply.send(Ok(done));
                }
            }
            None => {
                for (record, reply) in records.into_iter().zip(replies) {
                    let _ = reply.send(record.alone(pool).await);
                }
            }
        }
        tracetrack_common::outbox::wake(crate::state::SCHEMA);
    }
}

impl Scan {
    /// Records a scan (in a batch when batching is on): whether it was recorded (false: an
    /// earlier request holds its key).
    pub(crate) async fn record(&self, record: Record) -> AppResult<bool> {
        match self.0.recorder.submit(record).await {
            Ok(done) => done,
            Err(record) => {
                let done = record.alone(self.pool()).await;
                tracetrack_common::outbox::wake(crate::state::SCHEMA);
                done
            }
        }
    }
}
