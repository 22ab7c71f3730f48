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

#[derive(Debug, Clone, Default)]
pub struct LegacyUser {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub role: Option<String>,
    pub dispatch_area: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LegacyBag {
    pub id: i64,
    pub qr_id: String,
    pub kind: Option<String>,
    pub dispatch_area: Option<String>,
    pub user_id: Option<i64>,
}

/// A row of `link`, in link order (created_at, then id).
#[derive(Debug, Clone, Default)]
pub struct LegacyLink {
    pub id: i64,
    pub parent_bag_id: i64,
    pub child_bag_id: i64,
}

#[derive(Debug, Clone, Default)]
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
#[derive(Debug, Clone, Default)]
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
/// snapshot, even while the old system is still running).
#[allow(clippy::type_complexity)]
pub async fn read(url: &str) -> anyhow::Result<LegacyData> {
    let mut conn = PgConnection::connect(url).await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let users: Vec<(
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    )> = sqlx::query_as(
        r#"SELECT id::int8, username::text, email::text, role::text, dispatch_area::text
               FROM "user" ORDER BY id"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    let bags: Vec<(
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    )> = sqlx::query_as(
        r#"SELECT id::int8, qr_id::text, type::text, dispatch_area::text, user_id::int8
               FROM bag ORDER BY id"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    let links: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
        r#"SELECT id::int8, parent_bag_id::int8, child_bag_id::int8
           FROM link ORDER BY created_at NULLS LAST, id"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    let bills: Vec<(
        i64,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    )> = sqlx::query_as(
        r#"SELECT id::int8, bill_id::text, description::text, parent_bag_count::int8,
                  linked_parent_count::int8, total_child_bags::int8, status::text,
                  destination::text, vehicle_number::text
           FROM bill ORDER BY id"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    let bill_bags: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
        r#"SELECT id::int8, bill_id::int8, bag_id::int8
           FROM bill_bag ORDER BY created_at NULLS LAST, id"#,
    )
    .fetch_all(&mut *tx)
    .await?;
    let scans = count_if_exists(&mut tx, "scan").await?;
    let audit_log = count_if_exists(&mut tx, "audit_log").await?;
    tx.rollback().await?;
    Ok(LegacyData {
        users: users
            .into_iter()
            .map(|(id, username, email, role, dispatch_area)| LegacyUser {
                id,
                username: username.unwrap_or_default(),
                email,
                role,
                dispatch_area,
            })
            .collect(),
        bags: bags
            .into_iter()
            .map(|(id, qr_id, kind, dispatch_area, user_id)| LegacyBag {
                id,
                qr_id: qr_id.unwrap_or_default(),
                kind,
                dispatch_area,
                user_id,
            })
            .collect(),
        links: links
            .into_iter()
            .map(|(id, p, c)| LegacyLink {
                id,
                parent_bag_id: p.unwrap_or(-1),
                child_bag_id: c.unwrap_or(-1),
            })
            .collect(),
        bills: bills
            .into_iter()
            .map(
                |(id, bill_id, description, cap, linked, children, status, dest, vehicle)| {
                    LegacyBill {
                        id,
                        bill_id: bill_id.unwrap_or_default(),
                        description,
                        parent_bag_count: cap,
                        linked_parent_count: linked,
                        total_child_bags: children,
                        status,
                        destination: dest,
                        vehicle_number: vehicle,
                    }
                },
            )
            .collect(),
        bill_bags: bill_bags
            .into_iter()
            .map(|(id, bill, bag)| LegacyBillBag {
                id,
                bill_id: bill.unwrap_or(-1),
                bag_id: bag.unwrap_or(-1),
            })
            .collect(),
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
