//! Password reset by e-mail (issue 17 §3): the one-time links (SHA-256 of the token only) and
//! the mails that carry them until sent.

use sqlx::{PgConnection, PgPool};
use tracetrack_common::AppResult;
use uuid::Uuid;

use super::{UserRow, USER_COLUMNS};

/// The active user a reset may be asked for by username or e-mail (case-insensitive), with an
/// address to send to.
pub async fn user_for_reset(pool: &PgPool, login: &str) -> AppResult<Option<UserRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"SELECT {USER_COLUMNS} FROM auth.users u
           WHERE (lower(u.username) = $1 OR (u.email <> '' AND lower(u.email) = $1))
             AND u.active AND u.email <> ''
           LIMIT 1"#
    )))
    .bind(login)
    .fetch_optional(pool)
    .await?)
}

pub async fn insert_reset(
    conn: &mut PgConnection,
    token_hash: &[u8],
    user_id: Uuid,
    secs: u64,
) -> AppResult<()> {
    sqlx::query(
        r#"INSERT INTO auth.password_resets (token_hash, user_id, expires_at)
           VALUES ($1, $2, now() + make_interval(secs => $3))"#,
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(secs as f64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn queue_reset_mail(
    conn: &mut PgConnection,
    user: &UserRow,
    link: &str,
) -> AppResult<()> {
    sqlx::query(
        r#"INSERT INTO auth.reset_mails (id, user_id, mail_to, username, link)
           VALUES ($1, $2, $3, $4, $5)"#,
    )
    .bind(Uuid::now_v7())
    .bind(user.id)
    .bind(&user.email)
    .bind(&user.username)
    .bind(link)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The user of a link that still works (unused, within its hour).
pub async fn reset_user(pool: &PgPool, token_hash: &[u8]) -> AppResult<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        r#"SELECT user_id FROM auth.password_resets
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()"#,
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?)
}

/// Uses a link once; false when it was used meanwhile or has expired. The user's other links
/// stop working with it.
pub async fn use_reset(conn: &mut PgConnection, token_hash: &[u8]) -> AppResult<bool> {
    let user: Option<Uuid> = sqlx::query_scalar(
        r#"UPDATE auth.password_resets SET used_at = now()
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
           RETURNING user_id"#,
    )
    .bind(token_hash)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(user) = user else {
        return Ok(false);
    };
    sqlx::query(
        "UPDATE auth.password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ResetMail {
    pub id: Uuid,
    pub mail_to: String,
    pub username: String,
    pub link: Option<String>,
    pub attempts: i32,
}

/// Mails due now, locked for this sender (other replicas skip them).
pub async fn due_reset_mails(conn: &mut PgConnection, limit: i64) -> AppResult<Vec<ResetMail>> {
    Ok(sqlx::query_as(
        r#"SELECT id, mail_to, username, link, attempts FROM auth.reset_mails
           WHERE sent_at IS NULL AND failed_at IS NULL AND next_at <= now()
           ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED"#,
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// Sent: the link leaves the table.
pub async fn reset_mail_sent(conn: &mut PgConnection, id: Uuid) -> AppResult<()> {
    sqlx::query("UPDATE auth.reset_mails SET sent_at = now(), link = NULL WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Not sent: tried again after 2^attempts seconds, or given up (link cleared) after `max`.
pub async fn reset_mail_failed(
    conn: &mut PgConnection,
    id: Uuid,
    permanent: bool,
    max: i32,
) -> AppResult<()> {
    sqlx::query(
        r#"UPDATE auth.reset_mails SET attempts = attempts + 1,
             next_at = now() + make_interval(secs => power(2, attempts + 1)::float8),
             failed_at = CASE WHEN $2 OR attempts + 1 >= $3 THEN now() END,
             link = CASE WHEN $2 OR attempts + 1 >= $3 THEN NULL ELSE link END
           WHERE id = $1"#,
    )
    .bind(id)
    .bind(permanent)
    .bind(max)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
