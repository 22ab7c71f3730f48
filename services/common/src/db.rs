//! One Postgres pool per service schema. Every connection's `search_path` is the service's own
//! schema (so sqlx's migration table lives there too) and carries a statement timeout. SQL in the
//! services is schema-qualified all the same.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::DatabaseSettings;
use crate::error::{AppError, AppResult};
use tracetrack_domain::ErrorCode;

/// Builds the pool without connecting: a service starts (NOT_SERVING) while its database is down
/// and comes back by itself when it answers.
pub fn pool(settings: &DatabaseSettings, schema: &str) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(settings.url.expose_secret())?
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

/// Waits (up to `deadline`) until the database answers.
pub async fn wait_until_ready(pool: &PgPool, deadline: Duration) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    loop {
        match sqlx::query("SELECT 1").execute(pool).await {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() < deadline => {
                tracing::info!(error = %e, "waiting for the database");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
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
        sqlx::raw_sql(sqlx::AssertSqlSafe(&*KIT_DDL.replace("{schema}", schema)))
            .execute(&mut *conn)
            .await?;
        migrator.run(&mut *conn).await?;
        anyhow::Ok(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock(hashtext('tracetrack.migrate'))")
        .execute(&mut *conn)
        .await?;
    result
}

/// Serialization failures and deadlocks: the transaction can simply run again.
pub fn is_retryable(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40001" || c == "40P01")
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            // No connection came free in time while the database answers health checks: every
            // connection is busy with live work, so this replica is overloaded (429, retry
            // soon). A database that cannot be reached is an outage (503) — see `db::answers`.
            sqlx::Error::PoolTimedOut if answers() => AppError::overloaded().with_source(err),
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                AppError::unavailable("the database", err)
            }
            // No connection, or the server went away under it (`terminating connection due to
            // unexpected postmaster exit`, an admin or crash shutdown, a lost connection): an
            // outage, not a bug — and the circuit opens, so the next calls do not wait for it.
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => {
                trip();
                AppError::unavailable("the database", err)
            }
            sqlx::Error::Database(db) if db.code().is_some_and(|c| connection_lost(&c)) => {
                trip();
                AppError::unavailable("the database", err)
            }
            _ if is_retryable(&err) => {
                AppError::new(ErrorCode::Conflict, "a concurrent change won, retry")
                    .with_source(err)
            }
            _ => AppError::internal(err),
        }
    }
}

/// SQLSTATEs of a connection the server ended or lost: class 08 (connection exception) and
/// 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now).
fn connection_lost(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// The constraint (or unique index) a unique violation hit, to map it to a stable code.
pub fn unique_violation(err: &sqlx::Error) -> Option<&str> {
    let db = err.as_database_error()?;
    if db.code().as_deref() == Some("23505") {
        db.constraint()
    } else {
        None
    }
}

/// The constraint a CHECK violation hit.
pub fn check_violation(err: &sqlx::Error) -> Option<&str> {
    let db = err.as_database_error()?;
    if db.code().as_deref() == Some("23514") {
        db.constraint()
    } else {
        None
    }
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

impl AppError {
    /// Maps a unique violation by constraint name through `map` (constraint, code, message);
    /// anything else as usual.
    pub fn from_unique(err: sqlx::Error, map: &[(&str, ErrorCode, &str)]) -> AppError {
        if let Some(name) = unique_violation(&err) {
            if let Some((_, code, message)) = map.iter().find(|(c, _, _)| *c == name) {
                return AppError::new(*code, *message);
            }
        }
        AppError::from(err)
    }
}

/// Whether a service's database answers, as its readiness loop last saw it — and a circuit:
/// while it does not, the service's calls are refused at once with `unavailable` (see
/// `shed::ShedLayer`) instead of each waiting out the pool's acquire timeout. A request that
/// meets a lost or refused connection opens it at once ([`trip`]) and asks the readiness loop
/// to look again now, which closes it as soon as the database answers.
#[derive(Clone, Debug)]
pub struct Health(std::sync::Arc<HealthInner>);

#[derive(Debug)]
struct HealthInner {
    answers: std::sync::atomic::AtomicBool,
    recheck: tokio::sync::Notify,
}

impl Default for Health {
    /// Answering until a check says otherwise.
    fn default() -> Self {
        Self(std::sync::Arc::new(HealthInner {
            answers: std::sync::atomic::AtomicBool::new(true),
            recheck: tokio::sync::Notify::new(),
        }))
    }
}

impl Health {
    pub fn answers(&self) -> bool {
        self.0.answers.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set(&self, ok: bool) {
        self.0
            .answers
            .store(ok, std::sync::atomic::Ordering::Relaxed);
    }

    /// A request found the database gone: refuse the next ones, and check again now.
    pub fn trip(&self) {
        if self
            .0
            .answers
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!("database connection lost: refusing calls until it answers again");
            metrics::counter!("db_circuit_trips_total").increment(1);
        }
        self.0.recheck.notify_one();
    }

    /// Resolves when a request tripped the circuit (the readiness loop then checks at once).
    pub async fn recheck_requested(&self) {
        self.0.recheck.notified().await;
    }
}

tokio::task_local! {
    /// The database health of the service whose call is being served (a process may hold
    /// several services: the tests run them side by side).
    static SERVED_DB: Option<Health>;
}

/// Runs `fut` (a call being served) with `health` as its database's: [`answers`] and [`trip`]
/// inside it speak of that database.
pub fn serving<F: std::future::Future>(
    health: Option<Health>,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    SERVED_DB.scope(health, fut)
}

/// Whether the database of the call being served answered its last health check: tells a busy
/// pool (overloaded) from an outage. Outside a call (relays, consumers): true.
pub fn answers() -> bool {
    SERVED_DB
        .try_with(|h| h.as_ref().is_none_or(Health::answers))
        .unwrap_or(true)
}

/// The call being served found its database gone (see [`Health::trip`]).
pub fn trip() {
    let _ = SERVED_DB.try_with(|h| h.as_ref().map(Health::trip));
}
