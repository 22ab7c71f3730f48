//! Children in parents: linked (registered or claimed in one statement), moved, unlinked, and
//! the newest link undone. Each maps the trigger's and the CHECK's refusals with
//! [`link_error`](super::link_error).

use std::collections::HashMap;

use sqlx::PgConnection;
use tracetrack_common::AppResult;
use uuid::Uuid;

use super::{link_error, BagRow, LinkedRow, BAG_COLUMNS};

/// Takes a child out of its parent; the child, or None when it is not in that parent.
pub async fn unlink(
    conn: &mut PgConnection,
    child_qr: &str,
    parent_qr: &str,
) -> AppResult<Option<BagRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH b AS (UPDATE registry.bags SET parent_qr = NULL, linked_by = NULL, linked_at = NULL
                      WHERE qr = $1 AND parent_qr = $2 RETURNING *)
           SELECT {BAG_COLUMNS} FROM b"#
    )))
    .bind(child_qr)
    .bind(parent_qr)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| link_error(e, parent_qr))
}

/// Moves a child into a parent (taking its area, line and weight). The child row is locked
/// first by this statement, then (in the trigger) both parents in QR order.
pub async fn move_child(
    conn: &mut PgConnection,
    child_qr: &str,
    parent_qr: &str,
    linked_by: Uuid,
) -> AppResult<BagRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH b AS (UPDATE registry.bags c SET parent_qr = p.qr, linked_by = $3, linked_at = now(),
                             area = p.area, product_line = p.product_line, child_weight_kg = p.child_weight_kg
                      FROM registry.bags p WHERE c.qr = $1 AND c.kind = 'child' AND p.qr = $2
                      RETURNING c.*)
           SELECT {BAG_COLUMNS} FROM b"#
    )))
    .bind(child_qr)
    .bind(parent_qr)
    .bind(linked_by)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| link_error(e, parent_qr))
}

/// The insert of a child linked into its parent (`link_into`, `link_many`), for a SELECT of the
/// new row's values.
const INSERT_CHILD: &str = "INSERT INTO registry.bags AS x (qr, kind, area, product_line, \
     child_weight_kg, parent_qr, linked_by, linked_at, created_by)";

/// An existing child is linked only when it is free; the row says whether it was created.
const CLAIM_FREE_CHILD: &str = "ON CONFLICT (qr) DO UPDATE SET parent_qr = EXCLUDED.parent_qr, \
     linked_by = EXCLUDED.linked_by, linked_at = EXCLUDED.linked_at, area = EXCLUDED.area, \
     product_line = EXCLUDED.product_line, child_weight_kg = EXCLUDED.child_weight_kg \
     WHERE x.kind = 'child' AND x.parent_qr IS NULL RETURNING *, (xmax = 0) AS inserted";

/// A row of a link statement: a parent as the statement found it, or a child it linked.
#[derive(sqlx::FromRow)]
struct LinkStatementRow {
    is_child: bool,
    #[sqlx(flatten)]
    bag: BagRow,
    inserted: Option<bool>,
    area_before: Option<String>,
}

/// What a [`LinkStatementRow`] is.
enum Found {
    Parent(BagRow),
    Linked(LinkedRow),
}

impl LinkStatementRow {
    fn split(self) -> Found {
        if self.is_child {
            Found::Linked(LinkedRow {
                bag: self.bag,
                inserted: self.inserted.unwrap_or(false),
                area_before: self.area_before,
            })
        } else {
            Found::Parent(self.bag)
        }
    }
}

/// LinkChild's read of the parent and its link in ONE statement (issue 18: a round trip less per
/// scan): the parent as it was when the statement started (`None` when no bag has that QR) and,
/// when the child was unknown or free and is now linked into it, the child's row. Nothing is
/// linked when the QR is not a parent or the parent is outside `area` (a dispatcher's), so the
/// caller's refusal is the same as before. It locks the child row first, then (the trigger)
/// the parent.
pub async fn link_into(
    conn: &mut PgConnection,
    parent_qr: &str,
    child_qr: &str,
    linked_by: Uuid,
    area: Option<&str>,
) -> AppResult<(Option<BagRow>, Option<LinkedRow>)> {
    let rows: Vec<LinkStatementRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH p AS (SELECT * FROM registry.bags WHERE qr = $2),
           old AS (SELECT area FROM registry.bags WHERE qr = $1),
           ins AS (
             {INSERT_CHILD}
             SELECT $1, 'child', p.area, p.product_line, p.child_weight_kg, p.qr, $3, now(), $3 FROM p
              WHERE p.kind = 'parent' AND ($4::text IS NULL OR p.area = $4)
             {CLAIM_FREE_CHILD})
           SELECT false AS is_child, {BAG_COLUMNS}, NULL::boolean AS inserted, NULL::text AS area_before FROM p b
           UNION ALL
           SELECT true, {BAG_COLUMNS}, b.inserted, (SELECT area FROM old) FROM ins b"#
    )))
    .bind(child_qr)
    .bind(parent_qr)
    .bind(linked_by)
    .bind(area)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| link_error(e, parent_qr))?;
    let (mut parent, mut linked) = (None, None);
    for r in rows {
        match r.split() {
            Found::Linked(child) => linked = Some(child),
            Found::Parent(p) => parent = Some(p),
        }
    }
    Ok((parent, linked))
}

/// Unlinks the newest child this user linked into the parent in the last hour — only if it is
/// `named` when a child is named. The child's QR, or None when there is nothing to undo.
pub async fn undo_last_link(
    conn: &mut PgConnection,
    parent_qr: &str,
    user: Uuid,
    named: Option<&str>,
) -> AppResult<Option<String>> {
    sqlx::query_scalar(
        r#"WITH c AS (SELECT qr FROM registry.bags
                      WHERE parent_qr = $1 AND linked_by = $2 AND linked_at > now() - interval '1 hour'
                      ORDER BY linked_at DESC, qr DESC LIMIT 1 FOR UPDATE SKIP LOCKED)
           UPDATE registry.bags b SET parent_qr = NULL, linked_by = NULL, linked_at = NULL
           FROM c WHERE b.qr = c.qr AND ($3::text IS NULL OR c.qr = $3) RETURNING b.qr"#,
    )
    .bind(parent_qr)
    .bind(user)
    .bind(named)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| link_error(e, parent_qr))
}

/// One link of [`link_many`]: the child, the parent, who links it, and the dispatcher's area
/// the parent must be in (None for roles that are not area-scoped).
pub struct LinkArgs<'a> {
    pub child: &'a str,
    pub parent: &'a str,
    pub linked_by: Uuid,
    pub area: Option<&'a str>,
}

/// A batch's links in ONE statement (issue 18, group commit): [`link_into`] for many children
/// at once, in the order given — the caller sorts by parent, so the trigger locks parents in QR
/// order and two batches cannot deadlock. Children must be distinct. Parents that are frozen or
/// already full when the statement starts are skipped (the caller answers `parent_frozen` or
/// `parent_full`), so the common refusals do not fail the batch; a parent filled *within* the
/// batch fails the statement (the capacity CHECK), and the caller runs the batch one by one.
/// Answers the parents as they were when the statement started, by QR, and the linked
/// children, by QR.
pub async fn link_many(
    conn: &mut PgConnection,
    links: &[LinkArgs<'_>],
) -> AppResult<(HashMap<String, BagRow>, HashMap<String, LinkedRow>)> {
    let children: Vec<&str> = links.iter().map(|l| l.child).collect();
    let parents: Vec<&str> = links.iter().map(|l| l.parent).collect();
    let by: Vec<Uuid> = links.iter().map(|l| l.linked_by).collect();
    let areas: Vec<Option<&str>> = links.iter().map(|l| l.area).collect();
    let rows: Vec<LinkStatementRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH j AS (SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[]) WITH ORDINALITY
                      AS j(child, parent, linker, area, ord)),
           p AS (SELECT * FROM registry.bags WHERE qr IN (SELECT parent FROM j)),
           old AS (SELECT qr, area FROM registry.bags WHERE qr IN (SELECT child FROM j)),
           ins AS (
             {INSERT_CHILD}
             SELECT j.child, 'child', p.area, p.product_line, p.child_weight_kg, p.qr, j.linker, now(), j.linker
               FROM j JOIN p ON p.qr = j.parent
              WHERE p.kind = 'parent' AND NOT p.frozen AND p.child_count < p.capacity
                AND (j.area IS NULL OR p.area = j.area)
              ORDER BY j.ord
             {CLAIM_FREE_CHILD})
           SELECT false AS is_child, {BAG_COLUMNS}, NULL::boolean AS inserted, NULL::text AS area_before FROM p b
           UNION ALL
           SELECT true, {BAG_COLUMNS}, b.inserted, (SELECT area FROM old WHERE old.qr = b.qr) FROM ins b"#
    )))
    .bind(&children)
    .bind(&parents)
    .bind(&by)
    .bind(&areas)
    .fetch_all(&mut *conn)
    .await?;
    let (mut parents, mut linked) = (HashMap::new(), HashMap::new());
    for r in rows {
        match r.split() {
            Found::Linked(child) => {
                linked.insert(child.bag.qr.clone(), child);
            }
            Found::Parent(p) => {
                parents.insert(p.qr.clone(), p);
            }
        }
    }
    Ok((parents, linked))
}
