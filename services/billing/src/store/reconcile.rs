//! The reads of `reconcile`: bag-registry's bills (its database, read-only) and billing's
//! attachments.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// A small pool on bag-registry's database (its runtime role reads enough).
pub fn registry_pool(url: &str) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new().max_connections(2).connect_lazy_with(
        PgConnectOptions::from_str(url)?.application_name("tracetrack-reconcile"),
    ))
}

/// bag-registry's parents on a bill: parent → (bill, frozen).
pub async fn registry_parents_on_bills(
    registry: &PgPool,
) -> sqlx::Result<BTreeMap<String, (String, bool)>> {
    Ok(sqlx::query_as::<_, (String, String, bool)>(
        "SELECT qr, bill_id, frozen FROM registry.bags WHERE kind = 'parent' AND bill_id IS NOT NULL",
    )
    .fetch_all(registry)
    .await?
    .into_iter()
    .map(|(qr, bill, frozen)| (qr, (bill, frozen)))
    .collect())
}

/// bag-registry's frozen parents on no bill.
pub async fn registry_frozen_free(registry: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT qr FROM registry.bags WHERE kind = 'parent' AND bill_id IS NULL AND frozen",
    )
    .fetch_all(registry)
    .await
}

/// Billing's attachments: parent → (bill, state, bill status).
pub async fn attachments_with_status(
    billing: &PgPool,
) -> sqlx::Result<BTreeMap<String, (String, String, String)>> {
    Ok(sqlx::query_as::<_, (String, String, String, String)>(
        "SELECT a.parent_qr, a.bill_id, a.state, b.status \
           FROM billing.attachments a JOIN billing.bills b ON b.bill_id = a.bill_id",
    )
    .fetch_all(billing)
    .await?
    .into_iter()
    .map(|(qr, bill, state, status)| (qr, (bill, state, status)))
    .collect())
}

/// Every bill billing has.
pub async fn bill_ids(billing: &PgPool) -> sqlx::Result<BTreeSet<String>> {
    Ok(sqlx::query_scalar("SELECT bill_id FROM billing.bills")
        .fetch_all(billing)
        .await?
        .into_iter()
        .collect())
}
