//! Sending bags to bag-registry's ImportBags (a client stream: each message is one batch, written
//! with COPY and committed on its own; bags already present are left alone and counted as
//! unchanged, so a re-run changes nothing).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tonic::transport::Channel;
use tracetrack_base::{client, AppError};
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use tracetrack_proto::registry::v1::{ImportBag, ImportBagsRequest};

use crate::{LabelImport, Problem};

/// bag-registry's limit on one ImportBags message.
pub const MAX_BATCH: usize = 50_000;
/// The batch size the tools use unless told otherwise.
pub const DEFAULT_BATCH: usize = 5_000;

pub type RegistryClient = BagRegistryServiceClient<Channel>;

/// What a bag-registry client may run over: a plain `Channel` (the tools) or one with an
/// interceptor (the gateway's upload, which adds its service token).
pub trait Transport:
    tonic::client::GrpcService<
    tonic::body::Body,
    Error: Into<tonic::codegen::StdError>,
    ResponseBody: tonic::codegen::Body<
        Data = tonic::codegen::Bytes,
        Error: Into<tonic::codegen::StdError> + Send,
    > + Send
                      + 'static,
>
{
}

impl<T> Transport for T
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
}

/// How far an import has gone: bags handed to the connection so far (the server takes a batch
/// as it finishes the previous one, so this follows its progress within a batch or two).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub sent: u64,
    pub total: u64,
    pub batches_sent: u64,
}

/// The registry's counts for the whole stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub parents_created: u64,
    pub children_created: u64,
    pub links_created: u64,
    /// Already present (or repeated within a batch): left as they were.
    pub unchanged: u64,
}

/// A bag the registry refused; `position` is its index in the list that was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub position: usize,
    pub qr: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub counts: Counts,
    pub rejected: Vec<Rejection>,
}

/// Streams `bags` (parents before their children: a child's parent must be in the same or an
/// earlier batch, or registered) as the user of `token`, `batch_size` per message.
pub async fn send_bags<T: Transport>(
    registry: &mut BagRegistryServiceClient<T>,
    token: &str,
    bags: Vec<ImportBag>,
    batch_size: usize,
    progress: impl Fn(Progress) + Send + Sync + 'static,
) -> Result<Outcome, AppError> {
    let batch_size = batch_size.clamp(1, MAX_BATCH);
    let total = bags.len() as u64;
    if bags.is_empty() {
        return Ok(Outcome::default());
    }
    let mut batches = Vec::with_capacity(bags.len().div_ceil(batch_size));
    let mut it = bags.into_iter().peekable();
    while it.peek().is_some() {
        batches.push(ImportBagsRequest {
            bags: it.by_ref().take(batch_size).collect(),
        });
    }
    let sent = Arc::new(AtomicU64::new(0));
    let batches_sent = Arc::new(AtomicU64::new(0));
    let stream = futures::stream::iter(batches.into_iter().inspect(move |b| {
        let n = sent.fetch_add(b.bags.len() as u64, Ordering::Relaxed) + b.bags.len() as u64;
        let k = batches_sent.fetch_add(1, Ordering::Relaxed) + 1;
        progress(Progress {
            sent: n,
            total,
            batches_sent: k,
        });
    }));
    let resp = registry
        .import_bags(client::request(stream, Some(token), None))
        .await
        .map_err(|s| AppError::from_status(&s))?
        .into_inner();
    let rejected = resp
        .rejected
        .into_iter()
        .map(|r| Rejection {
            position: (r.batch.saturating_sub(1) as usize) * batch_size + r.index as usize,
            qr: r.qr,
            code: r.code,
            message: r.message,
        })
        .collect();
    Ok(Outcome {
        counts: Counts {
            parents_created: resp.parents_created,
            children_created: resp.children_created,
            links_created: resp.links_created,
            unchanged: resp.unchanged,
        },
        rejected,
    })
}

/// What importing a workbook did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LabelReport {
    /// Parsed only: nothing was sent.
    pub dry_run: bool,
    pub area: String,
    /// Non-empty rows read.
    pub rows: u64,
    pub parents_in_file: u64,
    pub children_in_file: u64,
    pub counts: Counts,
    /// Every row not imported as it stands (the workbook's and the registry's), by sheet and row.
    pub problems: Vec<Problem>,
}

impl LabelReport {
    /// The report of a dry run: what the workbook holds, nothing sent.
    pub fn dry_run(area: &str, parsed: &LabelImport) -> Self {
        Self {
            dry_run: true,
            area: area.to_owned(),
            rows: parsed.rows,
            parents_in_file: parsed.parents() as u64,
            children_in_file: parsed.children() as u64,
            counts: Counts::default(),
            problems: parsed.problems.clone(),
        }
    }

    /// True when the import created nothing (everything was already there).
    pub fn nothing_new(&self) -> bool {
        self.counts.parents_created == 0
            && self.counts.children_created == 0
            && self.counts.links_created == 0
    }

    /// A plain-text report: counts, then every problem row.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let mut out = format!(
            "label import into {}: {} rows read, {} parents and {} labels to import\n",
            self.area, self.rows, self.parents_in_file, self.children_in_file,
        );
        if self.dry_run {
            out.push_str("DRY RUN: nothing was written\n");
        } else {
            out.push_str(&format!(
                "created: {} parents, {} labels, {} links; unchanged (already present): {}\n",
                c.parents_created, c.children_created, c.links_created, c.unchanged
            ));
        }
        if !self.dry_run && self.nothing_new() && c.unchanged > 0 {
            out.push_str("nothing new: every bag in the file was already registered\n");
        }
        out.push_str(&format!("rows with problems: {}\n", self.problems.len()));
        for p in &self.problems {
            out.push_str(&format!(
                "  {} row {}: {} - {}{}\n",
                p.sheet,
                p.row,
                p.code,
                p.message,
                if p.value.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", p.value)
                }
            ));
        }
        out
    }
}

/// Imports a parsed workbook into `area`; the registry's rejections are reported on their rows
/// beside the workbook's own problems.
pub async fn import_labels<T: Transport>(
    registry: &mut BagRegistryServiceClient<T>,
    token: &str,
    parsed: &LabelImport,
    area: &str,
    batch_size: usize,
    progress: impl Fn(Progress) + Send + Sync + 'static,
) -> Result<LabelReport, AppError> {
    let bags = parsed.bags.iter().map(|b| b.to_import(area)).collect();
    let outcome = send_bags(registry, token, bags, batch_size, progress).await?;
    let mut problems = parsed.problems.clone();
    for r in outcome.rejected {
        let (sheet, row) = parsed
            .bags
            .get(r.position)
            .map(|b| (b.sheet.clone(), b.row))
            .unwrap_or_default();
        problems.push(Problem {
            sheet,
            row,
            code: r.code,
            message: format!("refused by bag-registry: {}", r.message),
            value: r.qr,
            other_bill_id: None,
        });
    }
    LabelImport::sort_problems(&mut problems, &parsed.sheets);
    Ok(LabelReport {
        dry_run: false,
        area: area.to_owned(),
        rows: parsed.rows,
        parents_in_file: parsed.parents() as u64,
        children_in_file: parsed.children() as u64,
        counts: outcome.counts,
        problems,
    })
}
