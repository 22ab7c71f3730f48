//! Users: read, created, listed, changed, and the admin lock.

use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use tracetrack_common::{AppError, AppResult};
use uuid::Uuid;

use super::{UserRow, USER_COLUMNS, USER_UNIQUES};

pub async fn user_by_username(pool: &PgPool, account: &str) -> AppResult<Option<UserRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM auth.users u WHERE lower(u.username) = $1"
    )))
    .bind(account)
    .fetch_optional(pool)
    .await?)
}

pub async fn user_by_id(
    conn: &mut PgConnection,
    id: Uuid,
    for_update: bool,
) -> AppResult<Option<UserRow>> {
    let lock = if for_update { "FOR UPDATE OF u" } else { "" };
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM auth.users u WHERE u.id = $1 {lock}"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Serialises every change that can reduce the number of active admins.
pub async fn lock_admins(conn: &mut PgConnection) -> AppResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tracetrack.auth.admins'))")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn other_active_admins(conn: &mut PgConnection, except: Uuid) -> AppResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM auth.users WHERE role = 'admin' AND active AND id <> $1",
    )
    .bind(except)
    .fetch_one(&mut *conn)
    .await?)
}

/// A new user, as CreateUser gives it.
pub struct NewUser<'a> {
    pub id: Uuid,
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub dispatch_area: Option<&'a str>,
}

/// Inserts a user; `username_taken` or `email_taken` when one is.
pub async fn insert_user(conn: &mut PgConnection, u: &NewUser<'_>) -> AppResult<()> {
    sqlx::query(
        r#"INSERT INTO auth.users (id, username, email, password_hash, role, dispatch_area)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
    )
    .bind(u.id)
    .bind(u.username)
    .bind(u.email)
    .bind(u.password_hash)
    .bind(u.role)
    .bind(u.dispatch_area)
    .execute(&mut *conn)
    .await
    .map_err(|e| AppError::from_unique(e, USER_UNIQUES))?;
    Ok(())
}

/// Creates an admin (the bootstrap and the `create-admin` command) unless the name is taken;
/// whether one was created.
pub async fn insert_admin(
    pool: &PgPool,
    username: &str,
    password_hash: &str,
    must_change_password: bool,
) -> AppResult<bool> {
    let r = sqlx::query(
        r#"INSERT INTO auth.users (id, username, password_hash, role, must_change_password)
           VALUES ($1, $2, $3, 'admin', $4) ON CONFLICT DO NOTHING"#,
    )
    .bind(Uuid::now_v7())
    .bind(username)
    .bind(password_hash)
    .bind(must_change_password)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// What ListUsers asks for.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Keyset: usernames (lower-cased) strictly after this one.
    pub after: Option<String>,
    /// A lower-cased username prefix, matched literally.
    pub prefix: String,
    pub role: Option<&'static str>,
    pub include_inactive: bool,
    pub limit: i64,
}

/// Users in (lower-cased) username order.
pub async fn list_users(pool: &PgPool, f: &UserFilter) -> AppResult<Vec<UserRow>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {USER_COLUMNS} FROM auth.users u WHERE true"
    ));
    if let Some(after) = &f.after {
        q.push(" AND lower(u.username) > ").push_bind(after.clone());
    }
    q.push(" AND lower(u.username) LIKE ")
        .push_bind(escape_like(&f.prefix))
        .push(" || '%'");
    if let Some(role) = f.role {
        q.push(" AND u.role = ").push_bind(role);
    }
    if !f.include_inactive {
        q.push(" AND u.active");
    }
    q.push(" ORDER BY lower(u.username) LIMIT ")
        .push_bind(f.limit);
    Ok(q.build_query_as().fetch_all(pool).await?)
}

/// A prefix with LIKE's wildcards escaped.
fn escape_like(prefix: &str) -> String {
    prefix
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A user's email, role, area and active flag; `email_taken` when the email is.
pub struct UserChange<'a> {
    pub email: &'a str,
    pub role: &'a str,
    pub dispatch_area: Option<&'a str>,
    pub active: bool,
}

pub async fn update_user(conn: &mut PgConnection, id: Uuid, c: &UserChange<'_>) -> AppResult<()> {
    sqlx::query(
        r#"UPDATE auth.users SET email = $2, role = $3, dispatch_area = $4, active = $5, updated_at = now()
           WHERE id = $1"#,
    )
    .bind(id)
    .bind(c.email)
    .bind(c.role)
    .bind(c.dispatch_area)
    .bind(c.active)
    .execute(&mut *conn)
    .await
    .map_err(|e| AppError::from_unique(e, USER_UNIQUES))?;
    Ok(())
}

/// Sets a user's password hash; `must_change` when it is a temporary one (a reset).
pub async fn set_password(
    conn: &mut PgConnection,
    id: Uuid,
    password_hash: &str,
    must_change: bool,
) -> AppResult<()> {
    let sql = if must_change {
        "UPDATE auth.users SET password_hash = $2, must_change_password = true, updated_at = now() WHERE id = $1"
    } else {
        "UPDATE auth.users SET password_hash = $2, must_change_password = false, updated_at = now() WHERE id = $1"
    };
    sqlx::query(sql)
        .bind(id)
        .bind(password_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn touch_last_login(conn: &mut PgConnection, id: Uuid) -> AppResult<()> {
    sqlx::query("UPDATE auth.users SET last_login_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
