//! Group commit of LinkChild (issue 18, direction 2). Concurrent links are gathered — whatever
//! is waiting when a worker is free, up to `link_batch.max`, never waiting for more — into ONE
//! transaction: one statement links every child ([`store::link_many`]), one reads the parents'
//! counts after, one claims every idempotency key with its answer and writes the events
//! ([`Mutations::claim_answers`](tracetrack_common::mutation::Mutations::claim_answers)), and
//! one commit (one WAL flush) answers them all.
//!
//! A batch answers exactly as serial execution in arrival order would, because the rules stay in
//! the database and the batch only falls back when it cannot be sure:
//! - a child or an idempotency key seen twice goes to the next batch (it then sees the first
//!   one committed: `already_linked`, or the first answer);
//! - each answer's `child_count` is the parent's count after its own link (the count after the
//!   batch less the batch's later links into that parent);
//! - a parent frozen or full when the statement starts is skipped and refused, as alone; a parent
//!   filled *within* the batch fails the statement (the capacity CHECK), and then every link of
//!   the batch runs alone, in arrival order, so one refusal never fails the others;
//! - a refusal of a request with an idempotency key, and a key held by an earlier request, run
//!   alone after the batch commits (the earlier answer, as alone);
//! - a job sealed into a batch commits even if its caller has gone (the worker owns it).

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use serde_json::json;
use tracetrack_common::batch::{self, Batched};
use tracetrack_common::caller::Caller;
use tracetrack_common::idempotency;
use tracetrack_common::mutation::BatchAnswer;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::registry::v1 as pb;
use uuid::Uuid;

use crate::state::{Inner, Registry, MUTATIONS};
use crate::store::{self, BagRow, LinkArgs};

/// One LinkChild, checked and normalised, waiting for its batch.
pub struct LinkJob {
    pub caller: Caller,
    pub req: pb::LinkChildRequest,
    pub parent_id: String,
    pub child_id: String,
    pub user_id: Uuid,
    /// The dispatcher's area (links only within it); None for roles that are not area-scoped.
    pub area: Option<String>,
}

/// A job and where its answer goes.
type Waiting = batch::Waiting<LinkJob, pb::LinkChildResponse>;

impl Batched for Inner {
    type Job = LinkJob;
    type Answer = pb::LinkChildResponse;

    /// A child, or an idempotency key, seen twice waits for the next batch.
    fn keys(job: &LinkJob) -> Vec<String> {
        let mut keys = vec![format!("child:{}", job.child_id)];
        if let Some(k) = &job.caller.idempotency_key {
            keys.push(format!("key:{}:{k}", job.caller.scope()));
        }
        keys
    }

    async fn run(self: Arc<Self>, jobs: Vec<Waiting>) {
        Registry(self).run_batch(jobs).await
    }
}

/// What the batch did for one job.
enum Outcome {
    Done(Box<AppResult<pb::LinkChildResponse>>),
    /// Run it alone once the batch has committed.
    Alone,
}

impl Registry {
    async fn run_batch(&self, jobs: Vec<Waiting>) {
        metrics::histogram!("registry_link_batch_size").record(jobs.len() as f64);
        // A batch of one, or a batch that could not be sure of its answers, runs alone.
        let outcomes = match jobs.len() {
            1 => None,
            n => match self
                .link_batch(&jobs.iter().map(|(j, _)| j).collect::<Vec<_>>())
                .await
            {
                Ok(outcomes) => Some(outcomes),
                Err(e) => {
                    tracing::debug!(error = %e, links = n, "link batch ran one by one");
                    metrics::counter!("registry_link_batches_serial_total").increment(1);
                    None
                }
            },
        };
        let outcomes = outcomes.unwrap_or_else(|| jobs.iter().map(|_| Outcome::Alone).collect());
        let mut alone = Vec::new();
        for ((job, reply), outcome) in jobs.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Done(r) => {
                    let _ = reply.send(*r);
                }
                Outcome::Alone => alone.push((job, reply)),
            }
        }
        for (job, reply) in alone {
            let _ = reply.send(self.link_alone(&job).await);
        }
    }

    /// The batch in one transaction; Err when it must run one by one instead (nothing of it
    /// was kept).
    async fn link_batch(&self, jobs: &[&LinkJob]) -> AppResult<Vec<Outcome>> {
        let mut tx = self.pool().begin().await?;
        // Sorted by parent (then arrival): parents are locked in QR order by every batch.
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by(|&a, &b| jobs[a].parent_id.cmp(&jobs[b].parent_id).then(a.cmp(&b)));
        let args: Vec<LinkArgs> = order
            .iter()
            .map(|&i| LinkArgs {
                child: &jobs[i].child_id,
                parent: &jobs[i].parent_id,
                linked_by: jobs[i].user_id,
                area: jobs[i].area.as_deref(),
            })
            .collect();
        let (before, linked) = store::link_many(&mut tx, &args).await?;
        // The parents after the batch (the trigger's counts) and the children it did not link.
        let mut qrs: Vec<String> = before.keys().cloned().collect();
        qrs.extend(
            jobs.iter()
                .filter(|j| !linked.contains_key(&j.child_id))
                .map(|j| j.child_id.clone()),
        );
        let after: HashMap<String, BagRow> = store::bags(&mut tx, &qrs)
            .await?
            .into_iter()
            .map(|b| (b.qr.clone(), b))
            .collect();
        // Each job's parent count after its own link: the final count less the later links.
        let mut count_after = vec![0; jobs.len()];
        let mut later: HashMap<&str, i32> = HashMap::new();
        for (i, j) in jobs.iter().enumerate().rev() {
            let last = after.get(&j.parent_id).map_or(0, |p| p.child_count);
            let n = later.entry(j.parent_id.as_str()).or_insert(0);
            count_after[i] = last - *n;
            if linked.contains_key(&j.child_id) {
                *n += 1;
            }
        }

        let results: Vec<_> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| self.answer_of(j, &before, &after, &linked, count_after[i]))
            .collect();
        // Every answer is stored under its key (with its event), in job order.
        let answers = jobs
            .iter()
            .zip(&results)
            .filter_map(|(j, r)| {
                let (resp, event) = r.as_ref().ok()?;
                Some(BatchAnswer {
                    caller: &j.caller,
                    request_hash: idempotency::request_hash("LinkChild", &j.req),
                    response: resp.encode_to_vec(),
                    event: event.as_ref().map(|payload| {
                        self.new_event(
                            &j.caller,
                            "registry.child_linked",
                            &j.child_id,
                            payload.clone(),
                        )
                    }),
                })
            })
            .collect();
        // Whether each stored answer got its key, in the same order.
        let mut claimed = MUTATIONS.claim_answers(&mut tx, answers).await?.into_iter();
        let mut links = 0;
        let mut outcomes = Vec::with_capacity(jobs.len());
        for (j, r) in jobs.iter().zip(results) {
            outcomes.push(match r {
                Ok((resp, event)) => {
                    if claimed.next() != Some(true) {
                        if event.is_some() {
                            // A key held by an earlier request, on a request that changed
                            // something: that change must not be kept.
                            return Err(AppError::new(
                                ErrorCode::Conflict,
                                "a key in the batch is held",
                            ));
                        }
                        Outcome::Alone
                    } else {
                        if event.is_some() {
                            links += 1;
                        }
                        Outcome::Done(Box::new(Ok(resp)))
                    }
                }
                // A refusal: with a key, alone (an earlier request's answer wins, as alone).
                Err(_) if j.caller.idempotency_key.is_some() => Outcome::Alone,
                Err(e) if e.code == ErrorCode::Conflict => Outcome::Alone,
                Err(e) => Outcome::Done(Box::new(Err(e))),
            });
        }
        tx.commit().await?;
        if links > 0 {
            tracetrack_common::outbox::wake(crate::state::SCHEMA);
        }
        metrics::counter!("registry_links_total").increment(links);
        Ok(outcomes)
    }

    /// One job's answer (and its event's payload when it linked) from what the batch's
    /// statements saw, as [`Registry::link_alone`] would answer it.
    fn answer_of(
        &self,
        j: &LinkJob,
        before: &HashMap<String, BagRow>,
        after: &HashMap<String, BagRow>,
        linked: &HashMap<String, store::LinkedRow>,
        count: i32,
    ) -> AppResult<(pb::LinkChildResponse, Option<serde_json::Value>)> {
        let parent = store::must_be_parent(before.get(&j.parent_id).cloned(), &j.parent_id)?;
        j.caller.check_area(&parent.area)?;
        let capacity = parent.capacity.unwrap_or(0);
        let mut now = after.get(&j.parent_id).cloned().unwrap_or(parent.clone());
        now.child_count = count;
        now.status = if count >= capacity { "full" } else { "open" }.to_owned();
        if let Some(l) = linked.get(&j.child_id) {
            let payload = json!({"parent_qr": j.parent_id, "child_qr": j.child_id, "area": now.area, "created": l.inserted, "area_before": l.area_before, "parent_child_count": count, "capacity": now.capacity});
            let resp = pb::LinkChildResponse {
                parent: Some(now.to_pb()),
                child: Some(l.bag.to_pb()),
                already_linked: false,
            };
            return Ok((resp, Some(payload)));
        }
        match after.get(&j.child_id) {
            Some(e) if e.is_parent() => Err(AppError::new(
                ErrorCode::QrIsParent,
                "that is a parent bag, scan a child",
            )),
            Some(e) if e.parent_qr.as_deref() == Some(j.parent_id.as_str()) => {
                let resp = pb::LinkChildResponse {
                    parent: Some(now.to_pb()),
                    child: Some(e.to_pb()),
                    already_linked: true,
                };
                Ok((resp, None))
            }
            Some(e) if e.parent_qr.is_some() => Err(AppError::new(
                ErrorCode::ChildLinkedElsewhere,
                "this child is already in another parent bag",
            )
            .with_detail(
                "other_parent_qr",
                e.parent_qr.as_deref().unwrap_or_default(),
            )),
            _ if parent.frozen => Err(store::frozen(&j.parent_id)),
            _ if parent.child_count >= capacity => Err(AppError::new(
                ErrorCode::ParentFull,
                "this parent bag is full",
            )
            .with_detail("parent_qr", &j.parent_id)),
            _ => Err(AppError::new(
                ErrorCode::Conflict,
                "the child changed, retry",
            )),
        }
    }
}
