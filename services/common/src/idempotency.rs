//! Idempotency keys, stored with the answer in the same transaction as the change.
//!
//! ```text
//! let mut tx = pool.begin().await?;
//! if let Replay(answer) = idempotency::begin(&mut tx, SCHEMA, &scope, key, "Rpc", &req).await? {
//!     return Ok(answer);            // the first answer, byte for byte
//! }
//! ... the change ...
//! idempotency::finish(&mut tx, SCHEMA, &scope, key, &answer).await?;
//! tx.commit().await?;
//! ```
//! A second request with the same key waits on the first one's row lock, then sees its answer.
//! The same key with a different request is `idempotency_key_reused`. Keys live 24 hours.

use prost::Message;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use tracetrack_domain::ErrorCode;

use crate::error::{AppError, AppResult};

pub const TTL_HOURS: i32 = 24;

pub enum Begin<M> {
    /// First time: make the change and call [`finish`].
    New,
    /// Seen before with the same request: answer this.
    Replay(M),
}

pub use crate::metadata::idempotency_key as key_from;

/// The one statement that claims a key — or takes over one older than [`TTL_HOURS`] — and
/// returns a row only when it did. `values` are the SQL expressions of the scope, the key, the
/// request's hash and the stored answer (`NULL` until [`finish`]; scan stores it at once).
pub fn claim_sql(schema: &str, values: [&str; 4]) -> String {
    let [scope, key, hash, response] = values;
    claim_rows_sql(
        schema,
        &format!("VALUES ({scope}, {key}, {hash}, {response})"),
        "1",
    )
}

/// The same claim for many keys at once (a batch): `rows` is a query yielding (scope, key,
/// request hash, answer) rows with distinct keys, and the statement returns `returning` (over
/// the key row `k`) for each key it claimed.
pub fn claim_rows_sql(schema: &str, rows: &str, returning: &str) -> String {
    format!(
        r#"INSERT INTO "{schema}".idempotency_keys AS k (scope, key, request_hash, response)
           {rows}
           ON CONFLICT (scope, key) DO UPDATE
              SET request_hash = EXCLUDED.request_hash, response = EXCLUDED.response,
                  created_at = now()
              WHERE k.created_at < now() - make_interval(hours => {TTL_HOURS})
           RETURNING {returning}"#
    )
}

/// Whether an answer is stored under the caller's key: the cheap probe before [`begin`] in a
/// transaction that is rolled back (a request that only may be a replay).
pub async fn is_stored(
    executor: impl sqlx::PgExecutor<'_>,
    schema: &str,
    scope: &str,
    key: &str,
) -> AppResult<bool> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        r#"SELECT EXISTS (SELECT 1 FROM "{schema}".idempotency_keys WHERE scope = $1 AND key = $2)"#
    )))
    .bind(scope)
    .bind(key)
    .fetch_one(executor)
    .await?)
}

/// The key a service uses for its call downstream: deterministic in the caller's key, the
/// scope (who asked) and the purpose, so a retried request makes the same downstream call.
pub fn derive_key(parent_key: &str, scope: &str, purpose: &str) -> String {
    let mut h = Sha256::new();
    for part in [parent_key, scope, purpose] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("d-{}", hex::encode(&h.finalize()[..16]))
}

/// What identifies a request under a key: the RPC and the request's bytes.
pub fn request_hash(rpc: &str, request: &impl Message) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(rpc.as_bytes());
    h.update([0]);
    h.update(request.encode_to_vec());
    h.finalize().to_vec()
}

/// Claims `key` for this request inside the caller's transaction, or returns the stored answer.
pub async fn begin<M: Message + Default>(
    conn: &mut PgConnection,
    schema: &str,
    scope: &str,
    key: &str,
    rpc: &str,
    request: &impl Message,
) -> AppResult<Begin<M>> {
    let hash = request_hash(rpc, request);
    // Claim the key, or take over one older than the TTL. A concurrent first request holds the
    // row lock until it commits, so this waits and then sees its stored answer.
    let claimed: Option<(i32,)> = sqlx::query_as(sqlx::AssertSqlSafe(claim_sql(
        schema,
        ["$1", "$2", "$3", "NULL"],
    )))
    .bind(scope)
    .bind(key)
    .bind(&hash)
    .fetch_optional(&mut *conn)
    .await?;
    if claimed.is_some() {
        return Ok(Begin::New);
    }
    stored(conn, schema, scope, key, &hash)
        .await
        .map(Begin::Replay)
}

/// The answer stored under `key` by an earlier request (committed), checked against this
/// request's hash: `idempotency_key_reused` for a different request, `conflict` while the first
/// is still running.
pub async fn stored<M: Message + Default>(
    conn: &mut PgConnection,
    schema: &str,
    scope: &str,
    key: &str,
    hash: &[u8],
) -> AppResult<M> {
    let (stored_hash, response): (Vec<u8>, Option<Vec<u8>>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"SELECT request_hash, response FROM "{schema}".idempotency_keys WHERE scope = $1 AND key = $2"#
    )))
    .bind(scope)
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    if stored_hash != hash {
        return Err(AppError::new(
            ErrorCode::IdempotencyKeyReused,
            "this idempotency key was used for a different request",
        ));
    }
    let bytes = response.ok_or_else(|| {
        AppError::new(
            ErrorCode::Conflict,
            "the first request with this key is still running",
        )
    })?;
    M::decode(bytes.as_slice()).map_err(AppError::internal)
}

/// Stores the answer with the key, in the same transaction as the change.
pub async fn finish(
    conn: &mut PgConnection,
    schema: &str,
    scope: &str,
    key: &str,
    response: &impl Message,
) -> AppResult<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"UPDATE "{schema}".idempotency_keys SET response = $3 WHERE scope = $1 AND key = $2"#
    )))
    .bind(scope)
    .bind(key)
    .bind(response.encode_to_vec())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes keys past their TTL; run periodically.
pub async fn purge_expired(pool: &sqlx::PgPool, schema: &str) -> AppResult<u64> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"DELETE FROM "{schema}".idempotency_keys WHERE created_at < now() - make_interval(hours => {TTL_HOURS})"#
    )))
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_deterministic_and_separate() {
        let a = derive_key("k1", "user:1", "link");
        assert_eq!(a, derive_key("k1", "user:1", "link"));
        assert_ne!(a, derive_key("k1", "user:2", "link"));
        assert_ne!(a, derive_key("k1", "user:1", "unlink"));
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(derive_key("ab", "c", "x"), derive_key("a", "bc", "x"));
        assert!(a.len() <= crate::metadata::MAX_IDEMPOTENCY_KEY_LEN);
    }
}
