//! One Postgres pool per service schema. Every connection's `search_path` is the service's own
//! schema (so sqlx's migration table lives there too) and carries a statement timeout. SQL in the
//! services is schema-qualified all the same.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::PgPool;

use crate::config::DatabaseSettings;
use crate::error::AppResult;
use tracetrack_domain::ErrorCode;

/// Builds the pool without connecting: a service starts (NOT_SERVING) while its database is down
/// and comes back by itself when it answers.
pub fn pool(settings: &DatabaseSettings, schema: &str) -> anyhow::Result<PgPool> {
    let options = tls_options(
        PgConnectOptions::from_str(settings.url.expose_secret())?,
        settings,
    )?
    .application_name(&format!("tracetrack-{schema}"))
    .options([
        ("search_path", schema.to_owned()),
        (
            "statement_timeout",
            settings.statement_timeout_ms.to_string(),
        ),
        ("idle_in_transaction_session_timeout", "60000".to_owned()),
    ]);
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .idle_timeout(Some(Duration::from_secs(300)))
        .test_before_acquire(false)
        .connect_lazy_with(options))
}

/// TLS (rustls; the webpki roots plus `ca_file`): `ssl_mode` from the settings overrides the
/// URL's `sslmode`. A CA file needs a mode that uses it: with `require` it verifies the chain
/// (`verify-ca`, as libpq does), and with `disable`, `allow` or `prefer` it is refused rather
/// than silently ignored.
fn tls_options(
    mut options: PgConnectOptions,
    settings: &DatabaseSettings,
) -> anyhow::Result<PgConnectOptions> {
    if let Some(mode) = settings.ssl_mode.as_deref().filter(|m| !m.is_empty()) {
        options = options.ssl_mode(PgSslMode::from_str(mode).map_err(|_| {
            anyhow::anyhow!(
                "database.ssl_mode {mode:?}: expected disable, prefer, require, verify-ca or verify-full"
            )
        })?);
    }
    if let Some(ca) = settings.ca_file.as_deref().filter(|f| !f.is_empty()) {
        anyhow::ensure!(
            std::path::Path::new(ca).is_file(),
            "database.ca_file {ca}: no such file"
        );
        options = match options.get_ssl_mode() {
            PgSslMode::Require => options.ssl_mode(PgSslMode::VerifyCa),
            PgSslMode::VerifyCa | PgSslMode::VerifyFull => options,
            other => anyhow::bail!(
                "database.ca_file is set but sslmode is {other:?}, which does not verify: use \
                 sslmode=verify-full (or verify-ca) in the URL or database.ssl_mode"
            ),
        }
        .ssl_root_cert(ca);
    }
    Ok(options)
}

/// A database error in words an operator can act on: a refused TLS certificate says which check
/// failed and what to look at; anything else as sqlx said it.
pub fn explain(e: &sqlx::Error) -> String {
    tracetrack_base::tls::refusal(e, "the database", "database.ca_file (or sslrootcert)")
        .unwrap_or_else(|| e.to_string())
}

/// Whether `e` is our side refusing the server's TLS certificate: a configuration error that
/// waiting does not cure.
pub fn is_tls_refusal(e: &sqlx::Error) -> bool {
    tracetrack_base::tls::refusal(e, "", "").is_some()
}

/// Waits (up to `deadline`) until the database answers. A refused TLS certificate fails at once,
/// saying why: it is a configuration error that waiting does not cure.
pub async fn wait_until_ready(pool: &PgPool, deadline: Duration) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    loop {
        match sqlx::query("SELECT 1").execute(pool).await {
            Ok(_) => return Ok(()),
            Err(e) if is_tls_refusal(&e) => anyhow::bail!(explain(&e)),
            Err(e) if start.elapsed() < deadline => {
                tracing::info!(error = %explain(&e), "waiting for the database");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => anyhow::bail!(explain(&e)),
        }
    }
}

/// The kit's own tables (outbox, idempotency keys, applied events) in the service's schema.
const KIT_DDL: &str = include_str!("kit.sql");

/// Creates the schema, the kit's tables and runs the service's migrations, serialised across
/// replicas by an advisory lock.
pub async fn migrate(pool: &PgPool, schema: &str, migrator: &Migrator) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock(hashtext('tracetrack.migrate'))")
        .execute(&mut *conn)
        .await?;
    let result = async {
        // Only create it when missing: a runtime role that owns its schema need not be allowed
        // to create schemas in the database.
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
                .execute(&mut *conn)
                .await?;
        }
        // The kit's DDL runs only when it changed since it was last applied: `ALTER TABLE … IF NOT
        // EXISTS` and `CREATE INDEX IF NOT EXISTS` take their table locks before they look, so
        // running it on every start queued a new replica behind the live writes on the outbox
        // (and every later write behind it), or deadlocked with them.
        let ddl = KIT_DDL.replace("{schema}", schema);
        if !kit_applied(&mut conn, schema, &ddl).await? {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "{ddl}\n\
                 CREATE TABLE IF NOT EXISTS \"{schema}\".kit_applied (\
                     one boolean PRIMARY KEY DEFAULT true CHECK (one), ddl_md5 text NOT NULL);"
            )))
            .execute(&mut *conn)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO \"{schema}\".kit_applied (ddl_md5) VALUES (md5($1)) \
                 ON CONFLICT (one) DO UPDATE SET ddl_md5 = EXCLUDED.ddl_md5"
            )))
            .bind(&ddl)
            .execute(&mut *conn)
            .await?;
        }
        migrator.run(&mut *conn).await?;
        anyhow::Ok(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock(hashtext('tracetrack.migrate'))")
        .execute(&mut *conn)
        .await?;
    result
}

/// Whether the kit's tables are at `ddl` already (its md5 recorded by the last `migrate` that ran it).
async fn kit_applied(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
    schema: &str,
    ddl: &str,
) -> sqlx::Result<bool> {
    let table = format!("\"{schema}\".kit_applied");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&table)
        .fetch_one(&mut **conn)
        .await?;
    if !exists {
        return Ok(false);
    }
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM {table} WHERE ddl_md5 = md5($1))"
    )))
    .bind(ddl)
    .fetch_one(&mut **conn)
    .await
}

/// Runs `op` again (up to 5 times, with a short jittered pause) while it fails with a
/// serialization failure or deadlock (`conflict`).
pub async fn retry<T, F, Fut>(mut op: F) -> AppResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = AppResult<T>>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Err(e) if e.code == ErrorCode::Conflict && attempt < 4 => {
                attempt += 1;
                let ms = 2u64.pow(attempt) + rand::random::<u64>() % 5;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            other => return other,
        }
    }
}

pub use tracetrack_base::db_health::{answers, serving, trip, Health};
pub use tracetrack_base::sqlx_error::{check_violation, is_retryable, unique_violation};
