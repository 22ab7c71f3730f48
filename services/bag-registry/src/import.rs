//! Bulk import: each streamed batch is validated, COPYed into a temporary table and merged in
//! one transaction (bags already present are left as they are, so a re-run changes nothing),
//! with one event per batch.

use serde_json::json;
use tracetrack_common::caller::Caller;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::qr;
use tracetrack_proto::registry::v1 as pb;

use crate::grpc::Registry;

/// Longest batch accepted in one message.
pub const MAX_BATCH: usize = 50_000;

fn copy_field(s: &str) -> String {
    // Text COPY format: escape backslash, tab, newline, carriage return.
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

pub async fn write_batch(
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
    let mut rows = String::new();
    let mut accepted = 0usize;
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
        rows.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            i,
            copy_field(&id),
            kind,
            copy_field(&area),
            if line.is_empty() {
                "\\N".to_owned()
            } else {
                copy_field(&line)
            },
            parent
                .map(|p| copy_field(&p))
                .unwrap_or_else(|| "\\N".to_owned()),
        ));
        accepted += 1;
    }
    if accepted == 0 {
        return Ok(());
    }
    let mut tx = registry.0.pool.begin().await?;
    sqlx::query(
        "CREATE TEMP TABLE import_bags (idx int, qr text COLLATE \"C\", kind text, area text, line text, parent_qr text COLLATE \"C\") ON COMMIT DROP",
    )
    .execute(&mut *tx)
    .await?;
    let mut copy = tx
        .copy_in_raw("COPY import_bags (idx, qr, kind, area, line, parent_qr) FROM STDIN")
        .await?;
    copy.send(rows.into_bytes()).await?;
    copy.finish().await?;
    // Duplicates inside the batch: the first row wins.
    sqlx::query(
        "DELETE FROM import_bags a USING import_bags b WHERE a.qr = b.qr AND a.idx > b.idx",
    )
    .execute(&mut *tx)
    .await?;
    let parents = sqlx::query(
        r#"INSERT INTO registry.bags (qr, kind, product_line, area, capacity, parent_weight_kg, child_weight_kg, created_by)
           SELECT i.qr, 'parent', l.name, i.area, l.capacity, l.parent_weight_kg, l.child_weight_kg, $1
           FROM import_bags i JOIN registry.product_lines l ON l.name = i.line
           WHERE i.kind = 'parent' ORDER BY i.qr
           ON CONFLICT (qr) DO NOTHING"#,
    )
    .bind(user)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Children, linked where a parent is named (the trigger counts each link and refuses a full
    // or frozen parent, which fails the batch).
    let children = sqlx::query(
        r#"INSERT INTO registry.bags (qr, kind, area, product_line, child_weight_kg, parent_qr, linked_by, linked_at, created_by)
           SELECT i.qr, 'child', coalesce(p.area, i.area), p.product_line, coalesce(p.child_weight_kg, 1), p.qr,
                  CASE WHEN p.qr IS NOT NULL THEN $1::uuid END, CASE WHEN p.qr IS NOT NULL THEN now() END, $1
           FROM import_bags i LEFT JOIN registry.bags p ON p.qr = i.parent_qr AND p.kind = 'parent'
           WHERE i.kind = 'child' ORDER BY i.qr
           ON CONFLICT (qr) DO NOTHING"#,
    )
    .bind(user)
    .execute(&mut *tx)
    .await
    .map_err(|e| crate::store::link_error(e, "a parent in this batch"))?
    .rows_affected();
    let links: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM import_bags i JOIN registry.bags b ON b.qr = i.qr WHERE i.kind = 'child' AND b.parent_qr = i.parent_qr AND b.linked_by = $1 AND b.linked_at = now()",
    )
    .bind(user)
    .fetch_one(&mut *tx)
    .await?;
    // Per-area counts of what this batch created (rows created in this transaction carry its
    // start time), for the dashboard's read model.
    let by_area: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        r#"SELECT b.area, count(*) FILTER (WHERE b.kind = 'parent'), count(*) FILTER (WHERE b.kind = 'child'),
                  count(*) FILTER (WHERE b.kind = 'child' AND b.parent_qr IS NULL)
           FROM import_bags i JOIN registry.bags b ON b.qr = i.qr
           WHERE b.created_at = now() AND b.created_by = $1 GROUP BY b.area"#,
    )
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    let by_area: Vec<serde_json::Value> = by_area
        .into_iter()
        .map(|(area, p, c, u)| json!({"area": area, "parents": p, "children": c, "unlinked": u}))
        .collect();
    let unchanged = accepted as u64 - parents - children;
    registry
        .emit(
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
