//! Streaming exports (ExportBags, ExportBills, ExportScans): every page of one export reads the
//! same snapshot (a read-only REPEATABLE READ transaction), page by page by keyset, each page
//! fetched only when the caller has taken the previous one. So an export has no row cap, holds
//! at most one page in memory, and each statement stays far below the statement timeout however
//! large the result. A client that stalls for longer than the idle-in-transaction timeout (60 s)
//! loses its export (the stream ends with an error).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::AppResult;

/// How many exports may run at once in one replica (each holds a pool connection and a snapshot
/// for its whole length). Past it an export is refused at once with `overloaded`, so a dozen
/// admins exporting cannot take the connections the scan path needs.
#[derive(Clone)]
pub struct Limiter(Arc<Semaphore>);

/// A running export's place; held by its stream until the stream ends or is dropped.
pub struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Limiter {
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max.max(1))))
    }

    pub fn acquire(&self) -> AppResult<Permit> {
        match self.0.clone().try_acquire_owned() {
            Ok(p) => Ok(Permit(p)),
            Err(_) => {
                metrics::counter!("export_refused_total").increment(1);
                Err(crate::AppError::new(
                    tracetrack_domain::ErrorCode::Overloaded,
                    "too many exports are running; try again in a minute",
                )
                .with_detail("retry_after_seconds", 10))
            }
        }
    }
}

/// What a streaming export RPC answers: chunks of rows, or the error that ended it.
pub type ExportStream<T> = BoxStream<'static, Result<T, tonic::Status>>;

/// Rows per chunk when the request says 0.
pub const DEFAULT_CHUNK: u32 = 1_000;
/// Most rows per chunk.
pub const MAX_CHUNK: u32 = 5_000;

/// The page size an export request asks for (0: [`DEFAULT_CHUNK`]; at most [`MAX_CHUNK`]).
pub fn chunk_size(requested: u32) -> i64 {
    i64::from(match requested {
        0 => DEFAULT_CHUNK,
        n => n.min(MAX_CHUNK),
    })
}

/// Opens the export's snapshot: a read-only REPEATABLE READ transaction.
pub async fn snapshot(pool: &PgPool) -> AppResult<Transaction<'static, Postgres>> {
    Ok(pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?)
}

struct Pages<T, K, F> {
    _permit: Permit,
    tx: Option<Transaction<'static, Postgres>>,
    first: Option<Vec<T>>,
    cursor: Option<K>,
    next: F,
}

/// The pages of an export: `first` (already read, so errors come before the stream starts), then
/// `next(conn, key(last row of the previous page))` while pages come back full (`limit` rows).
/// An empty page ends the stream without being sent. `metric` names the export in
/// `export_rows_total{export}`.
pub fn pages<T, K, F>(
    permit: Permit,
    tx: Transaction<'static, Postgres>,
    first: Vec<T>,
    limit: i64,
    key: fn(&T) -> K,
    next: F,
    metric: &'static str,
) -> BoxStream<'static, AppResult<Vec<T>>>
where
    T: Send + 'static,
    K: Send + 'static,
    F: for<'c> Fn(&'c mut PgConnection, K) -> BoxFuture<'c, AppResult<Vec<T>>> + Send + 'static,
{
    let state = Pages {
        _permit: permit,
        tx: Some(tx),
        first: Some(first),
        cursor: None,
        next,
    };
    futures::stream::try_unfold(state, move |mut st| async move {
        let page = match (st.first.take(), st.cursor.take(), st.tx.as_mut()) {
            (Some(first), _, _) => first,
            (None, Some(k), Some(tx)) => (st.next)(tx, k).await?,
            _ => Vec::new(),
        };
        if page.is_empty() {
            if let Some(tx) = st.tx.take() {
                tx.rollback().await?;
            }
            return Ok(None);
        }
        if page.len() as i64 >= limit {
            st.cursor = page.last().map(key);
        }
        metrics::counter!("export_rows_total", "export" => metric).increment(page.len() as u64);
        Ok(Some((page, st)))
    })
    .boxed()
}
