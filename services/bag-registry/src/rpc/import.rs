//! ImportBags: each streamed batch is validated here, then COPYed into a temporary table and
//! merged in one transaction (`store::merge_batch`; bags already present are left as they are,
//! so a re-run changes nothing), with one event per batch.

use serde_json::json;
use tonic::{Request, Streaming};
use tracetrack_common::caller::Caller;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::{qr, Role};
use tracetrack_proto::registry::v1 as pb;

use crate::state::Registry;
use crate::store::{self, ImportRow};

/// Longest batch accepted in one message.
pub const MAX_BATCH: usize = 50_000;

impl Registry {
    pub(crate) async fn import_bags(
        &self,
        req: Request<Streaming<pb::ImportBagsRequest>>,
    ) -> AppResult<pb::ImportBagsResponse> {
        let caller = self.caller(&req).await?;
        caller.require_role(&[Role::Admin])?;
        let mut stream = req.into_inner();
        let mut resp = pb::ImportBagsResponse::default();
        let mut batch_no = 0u64;
        while let Some(batch) = stream.message().await.map_err(AppError::from)? {
            batch_no += 1;
            write_batch(self, &caller, batch_no, batch, &mut resp).await?;
        }
        Ok(resp)
    }
}

async fn write_batch(
    registry: &Registry,
    caller: &Caller,
    batch_no: u64,
    batch: pb::ImportBagsRequest,
    resp: &mut pb::ImportBagsResponse,
) -> AppResult<()> {
    if batch.bags.len() > MAX_BATCH {
        return Err(AppError::new(
            tracetrack_domain::ErrorCode::PayloadTooLarge,
            format!("at most {MAX_BATCH} bags per batch"),
        ));
    }
    let user = caller.user()?.id;
    let mut rows = Vec::new();
    for (i, bag) in batch.bags.iter().enumerate() {
        let reject = |code: &str, message: &str| pb::ImportRejection {
            batch: batch_no,
            index: i as u32,
            qr: bag.qr.clone(),
            code: code.to_owned(),
            message: message.to_owned(),
        };
        let area = bag.area.trim().to_lowercase();
        if !registry.areas().contains(&area) {
            resp.rejected
                .push(reject("invalid_argument", "unknown area"));
            continue;
        }
        let (id, kind, line) = match pb::BagType::try_from(bag.r#type) {
            Ok(pb::BagType::Parent) => match qr::parent_id(&bag.qr, registry.lines()) {
                Ok((id, line)) => (id, "parent", line.name.clone()),
                Err(e) => {
                    resp.rejected.push(reject(e.code.as_str(), e.message));
                    continue;
                }
            },
            Ok(pb::BagType::Child) => match qr::child_id(&bag.qr, registry.lines()) {
                Ok(id) => (id, "child", String::new()),
                Err(e) => {
                    resp.rejected.push(reject(e.code.as_str(), e.message));
                    continue;
                }
            },
            _ => {
                resp.rejected
                    .push(reject("invalid_argument", "type must be parent or child"));
                continue;
            }
        };
        let parent = if bag.parent_qr.trim().is_empty() || kind == "parent" {
            None
        } else {
            match qr::parent_id(&bag.parent_qr, registry.lines()) {
                Ok((p, _)) => Some(p),
                Err(e) => {
                    resp.rejected.push(reject(e.code.as_str(), e.message));
                    continue;
                }
            }
        };
        rows.push(ImportRow {
            index: i,
            qr: id,
            kind,
            area,
            line: Some(line).filter(|l| !l.is_empty()),
            parent_qr: parent,
        });
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = registry.pool().begin().await?;
    let store::Merged {
        parents,
        children,
        links,
        by_area,
    } = store::merge_batch(&mut tx, &rows, user).await?;
    let by_area: Vec<serde_json::Value> = by_area
        .into_iter()
        .map(|a| {
            json!({"area": a.area, "parents": a.parents, "children": a.children, "unlinked": a.unlinked})
        })
        .collect();
    let unchanged = rows.len() as u64 - parents - children;
    registry
        .event(
            &mut tx,
            caller,
            "registry.bags_imported",
            &format!("import-batch-{batch_no}"),
            json!({"batch": batch_no, "parents": parents, "children": children, "links": links, "unchanged": unchanged, "by_area": by_area}),
        )
        .await?;
    tx.commit().await?;
    resp.parents_created += parents;
    resp.children_created += children;
    resp.links_created += links as u64;
    resp.unchanged += unchanged;
    Ok(())
}
