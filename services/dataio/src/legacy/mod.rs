//! Moving off the old Flask system (`../shared/LEGACY.md`): read its tables, plan what to
//! import and what to repair or reject (a pure function, so the dry run and the real run report
//! the same), then write through the services: users through auth, bags and links through
//! bag-registry's ImportBags, bills through billing.
//!
//! - [`read`]: the old tables, in one read-only snapshot.
//! - [`plan`]: the rules (repairs, rejections, reports).
//! - [`apply`]: the writes, each skipping what is already there, so a second run changes nothing.
//! - [`report`]: what the tool prints and writes to `--report FILE.json`.

pub mod apply;
pub mod plan;
pub mod report;

use serde::Serialize;
use sqlx::{Connection, PgConnection};

pub use apply::{apply, Targets};
pub use plan::{plan, Plan, PlanOptions};
pub use report::{Action, Finding, MigrationReport};

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct LegacyUser {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub role: Option<String>,
    pub dispatch_area: Option<String>,
}

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct LegacyBag {
    pub id: i64,
    pub qr_id: String,
    pub kind: Option<String>,
    pub dispatch_area: Option<String>,
    pub user_id: Option<i64>,
}

/// A row of `link`, in link order (created_at, then id).
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct LegacyLink {
    pub id: i64,
    pub parent_bag_id: i64,
    pub child_bag_id: i64,
}

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct LegacyBill {
    pub id: i64,
    pub bill_id: String,
    pub description: Option<String>,
    /// The capacity, despite its name.
    pub parent_bag_count: Option<i64>,
    pub linked_parent_count: Option<i64>,
    pub total_child_bags: Option<i64>,
    pub status: Option<String>,
    pub destination: Option<String>,
    pub vehicle_number: Option<String>,
}

/// A row of `bill_bag`, in attach order (created_at, then id).
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct LegacyBillBag {
    pub id: i64,
    pub bill_id: i64,
    pub bag_id: i64,
}

/// Everything the migration reads from the old database.
#[derive(Debug, Clone, Default)]
pub struct LegacyData {
    pub users: Vec<LegacyUser>,
    pub bags: Vec<LegacyBag>,
    pub links: Vec<LegacyLink>,
    pub bills: Vec<LegacyBill>,
    pub bill_bags: Vec<LegacyBillBag>,
    /// Rows of `scan` and `audit_log` (not carried over), when those tables exist.
    pub scans: Option<i64>,
    pub audit_log: Option<i64>,
}

/// How much the old database holds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SourceCounts {
    pub users: usize,
    pub bags: usize,
    pub links: usize,
    pub bills: usize,
    pub bill_bags: usize,
    pub scans: Option<i64>,
    pub audit_log: Option<i64>,
}

impl LegacyData {
    pub fn counts(&self) -> SourceCounts {
        SourceCounts {
            users: self.users.len(),
            bags: self.bags.len(),
            links: self.links.len(),
            bills: self.bills.len(),
            bill_bags: self.bill_bags.len(),
            scans: self.scans,
            audit_log: self.audit_log,
        }
    }
}

/// Reads the old tables in one read-only, repeatable-read transaction (one consistent
/// snapshot, even while the old system is still running). A NULL username, QR id or bill id
/// reads as empty, a NULL id in a link or bill_bag row as -1 (no row has it).
pub async fn read(url: &str) -> anyhow::Result<LegacyData> {
    let mut conn = PgConnection::connect(url).await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let users = sqlx::query_as(
        r#"SELECT id::int8 AS id, COALESCE(username::text, '') AS username, email::text AS email,
                  role::text AS role, dispatch_area::text AS dispatch_area
           FROM "user" ORDER BY id"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    let bags = sqlx::query_as(
        r#"SELECT id::int8 AS id, COALESCE(qr_id::text, '') AS qr_id, type::text AS kind,
                  dispatch_area::text AS dispatch_area, user_id::int8 AS user_id
           FROM bag ORDER BY id"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    let links = sqlx::query_as(
        r#"SELECT id::int8 AS id, COALESCE(parent_bag_id::int8, -1) AS parent_bag_id,
                  COALESCE(child_bag_id::int8, -1) AS child_bag_id
           FROM link ORDER BY created_at NULLS LAST, id"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    let bills = sqlx::query_as(
        r#"SELECT id::int8 AS id, COALESCE(bill_id::text, '') AS bill_id,
                  description::text AS description, parent_bag_count::int8 AS parent_bag_count,
                  linked_parent_count::int8 AS linked_parent_count,
                  total_child_bags::int8 AS total_child_bags, status::text AS status,
                  destination::text AS destination, vehicle_number::text AS vehicle_number
           FROM bill ORDER BY id"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    let bill_bags = sqlx::query_as(
        r#"SELECT id::int8 AS id, COALESCE(bill_id::int8, -1) AS bill_id,
                  COALESCE(bag_id::int8, -1) AS bag_id
           FROM bill_bag ORDER BY created_at NULLS LAST, id"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    let scans = count_if_exists(&mut tx, "scan").await?;
    let audit_log = count_if_exists(&mut tx, "audit_log").await?;
    tx.rollback().await?;
    Ok(LegacyData {
        users,
        bags,
        links,
        bills,
        bill_bags,
        scans,
        audit_log,
    })
}

async fn count_if_exists(conn: &mut PgConnection, table: &str) -> anyhow::Result<Option<i64>> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut *conn)
        .await?;
    Ok(Some(n))
}

/// The note every report carries about passwords (nothing secret is ever printed).
pub const PASSWORD_NOTE: &str = "password hashes cannot be carried over: every imported user must set a new password. \
Each gets a random temporary password that nobody sees, to be changed at first login; an admin resets it (any time, \
again if need be) to hand them one";

/// Reads the old database, plans, and (unless `targets` is None: a dry run) writes.
pub async fn run(
    legacy_url: &str,
    opts: &PlanOptions,
    targets: Option<&Targets>,
    progress: impl Fn(crate::import::Progress) + Send + Sync + 'static,
) -> anyhow::Result<MigrationReport> {
    let data = read(legacy_url).await?;
    let plan = plan(&data, opts);
    let mut report = MigrationReport {
        dry_run: targets.is_none(),
        source: plan.source,
        would_import: plan.would_import(),
        findings: plan.findings.clone(),
        ..Default::default()
    };
    if let Some(t) = targets {
        report.results = Some(apply(&plan, t, &mut report.findings, progress).await?);
    }
    report.notes.push(PASSWORD_NOTE.to_owned());
    if data.scans.is_some() || data.audit_log.is_some() {
        report.notes.push(format!(
            "not carried over: the scan history ({} rows) and the audit log ({} rows); the old database keeps them",
            data.scans.unwrap_or(0),
            data.audit_log.unwrap_or(0)
        ));
    }
    report.notes.push(
        "bags, links and bills are created as the migrating admin, now; the old creators and times are not kept".into(),
    );
    report.summarize();
    Ok(report)
}
