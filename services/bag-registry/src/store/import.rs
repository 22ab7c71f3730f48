//! Bulk import's SQL: a batch is COPYed into a temporary table and merged in the caller's
//! transaction (bags already present are left as they are, so a re-run changes nothing).

use sqlx::PgConnection;
use tracetrack_common::AppResult;
use uuid::Uuid;

use super::link_error;

/// One accepted row of a batch, validated and normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    /// Its index in the batch (the first of duplicates wins).
    pub index: usize,
    pub qr: String,
    /// "parent" or "child".
    pub kind: &'static str,
    pub area: String,
    /// A parent's product line.
    pub line: Option<String>,
    /// The parent a child is linked into.
    pub parent_qr: Option<String>,
}

/// What merging a batch created, with per-area counts for the dashboard's read model.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub parents: u64,
    pub children: u64,
    pub links: i64,
    pub by_area: Vec<AreaCounts>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AreaCounts {
    pub area: String,
    pub parents: i64,
    pub children: i64,
    pub unlinked: i64,
}

fn copy_field(s: &str) -> String {
    // Text COPY format: escape backslash, tab, newline, carriage return.
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// The batch in COPY's text format.
fn copy_text(rows: &[ImportRow]) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            r.index,
            copy_field(&r.qr),
            r.kind,
            copy_field(&r.area),
            r.line
                .as_deref()
                .map(copy_field)
                .unwrap_or_else(|| "\\N".to_owned()),
            r.parent_qr
                .as_deref()
                .map(copy_field)
                .unwrap_or_else(|| "\\N".to_owned()),
        ));
    }
    out
}

/// Merges a batch in the caller's transaction: parents first, then children (linked where a
/// parent is named; the trigger counts each link and refuses a full or frozen parent, which
/// fails the batch).
pub async fn merge_batch(
    conn: &mut PgConnection,
    rows: &[ImportRow],
    user: Uuid,
) -> AppResult<Merged> {
    sqlx::query(
        "CREATE TEMP TABLE import_bags (idx int, qr text COLLATE \"C\", kind text, area text, line text, parent_qr text COLLATE \"C\") ON COMMIT DROP",
    )
    .execute(&mut *conn)
    .await?;
    let mut copy = conn
        .copy_in_raw("COPY import_bags (idx, qr, kind, area, line, parent_qr) FROM STDIN")
        .await?;
    copy.send(copy_text(rows).into_bytes()).await?;
    copy.finish().await?;
    // Duplicates inside the batch: the first row wins.
    sqlx::query(
        "DELETE FROM import_bags a USING import_bags b WHERE a.qr = b.qr AND a.idx > b.idx",
    )
    .execute(&mut *conn)
    .await?;
    let parents = sqlx::query(
        r#"INSERT INTO registry.bags (qr, kind, product_line, area, capacity, parent_weight_kg, child_weight_kg, created_by)
           SELECT i.qr, 'parent', l.name, i.area, l.capacity, l.parent_weight_kg, l.child_weight_kg, $1
           FROM import_bags i JOIN registry.product_lines l ON l.name = i.line
           WHERE i.kind = 'parent' ORDER BY i.qr
           ON CONFLICT (qr) DO NOTHING"#,
    )
    .bind(user)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let children = sqlx::query(
        r#"INSERT INTO registry.bags (qr, kind, area, product_line, child_weight_kg, parent_qr, linked_by, linked_at, created_by)
           SELECT i.qr, 'child', coalesce(p.area, i.area), p.product_line, coalesce(p.child_weight_kg, 1), p.qr,
                  CASE WHEN p.qr IS NOT NULL THEN $1::uuid END, CASE WHEN p.qr IS NOT NULL THEN now() END, $1
           FROM import_bags i LEFT JOIN registry.bags p ON p.qr = i.parent_qr AND p.kind = 'parent'
           WHERE i.kind = 'child' ORDER BY i.qr
           ON CONFLICT (qr) DO NOTHING"#,
    )
    .bind(user)
    .execute(&mut *conn)
    .await
    .map_err(|e| link_error(e, "a parent in this batch"))?
    .rows_affected();
    let links: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM import_bags i JOIN registry.bags b ON b.qr = i.qr WHERE i.kind = 'child' AND b.parent_qr = i.parent_qr AND b.linked_by = $1 AND b.linked_at = now()",
    )
    .bind(user)
    .fetch_one(&mut *conn)
    .await?;
    // Per-area counts of what this batch created (rows created in this transaction carry its
    // start time).
    let by_area: Vec<AreaCounts> = sqlx::query_as(
        r#"SELECT b.area, count(*) FILTER (WHERE b.kind = 'parent') AS parents,
                  count(*) FILTER (WHERE b.kind = 'child') AS children,
                  count(*) FILTER (WHERE b.kind = 'child' AND b.parent_qr IS NULL) AS unlinked
           FROM import_bags i JOIN registry.bags b ON b.qr = i.qr
           WHERE b.created_at = now() AND b.created_by = $1 GROUP BY b.area"#,
    )
    .bind(user)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Merged {
        parents,
        children,
        links,
        by_area,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_escape_and_mark_nulls() {
        let rows = [ImportRow {
            index: 3,
            qr: "A\tB\\".into(),
            kind: "child",
            area: "north\n".into(),
            line: None,
            parent_qr: Some("P1".into()),
        }];
        assert_eq!(copy_text(&rows), "3\tA\\tB\\\\\tchild\tnorth\\n\t\\N\tP1\n");
    }
}
