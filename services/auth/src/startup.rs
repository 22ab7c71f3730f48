//! Build, then run: `Application::build` binds the listeners (port 0 works), prepares the pool,
//! migrates when configured, syncs service accounts and the bootstrap admin; `run_until_stopped`
//! serves until the shutdown future resolves. Tests use the same entry.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tonic::service::Routes;
use tracetrack_common::caller::CallerResolver;
use tracetrack_common::server::ServiceRuntime;
use tracetrack_proto::auth::v1 as pb;

use crate::config::Settings;
use crate::password::{self, Hasher};
use crate::second_factor::SecretBox;
use crate::state::{Auth, Inner, LocalVerifier, SCHEMA, SERVICE};
use crate::store;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/auth");

pub struct Application {
    runtime: ServiceRuntime,
    auth: Auth,
}

// The runtime's addresses and pool: `grpc_addr()`, `admin_addr()`, `pool()`.
tracetrack_common::derefs_to_runtime!(Application);

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let runtime =
            ServiceRuntime::build(SERVICE, SCHEMA, settings.common.clone(), &MIGRATOR).await?;
        let pool = runtime.pool.clone();
        if settings.common.database.migrate_on_start {
            // The database answered during migration: set up what start-up owns.
            prepare(&pool, &settings).await?;
        } else {
            let pool = pool.clone();
            let settings = settings.clone();
            // Production: the schema comes from the migrate Job; retry until the database answers.
            tokio::spawn(async move {
                loop {
                    match prepare(&pool, &settings).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "start-up preparation failed, retrying");
                            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                        }
                    }
                }
            });
        }
        let hasher = Hasher::new(&settings.argon2)?;
        let secret_box = SecretBox::from_settings(&settings.second_factor)?;
        anyhow::ensure!(
            secret_box.is_some() || !settings.require_2fa_for_admins,
            "require_2fa_for_admins needs second_factor.encryption_key"
        );
        let verifier = LocalVerifier {
            pool: pool.clone(),
            idle_secs: settings.session.idle_timeout_secs,
            require_2fa_for_admins: settings.require_2fa_for_admins,
        };
        let auth = Auth(Arc::new(Inner {
            pool,
            hasher,
            callers: CallerResolver::new(Arc::new(verifier)),
            secret_box,
            mailer: tracetrack_common::mail::Mailer::new(&settings.smtp)?,
            settings,
        }));
        Ok(Self { runtime, auth })
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let purge = tokio::spawn(purge_loop(self.auth.clone(), stop_rx.clone()));
        let mails = tokio::spawn(reset_mail_loop(self.auth.clone(), stop_rx));
        let routes = Routes::new(pb::auth_service_server::AuthServiceServer::new(
            self.auth.clone(),
        ))
        .add_service(pb::user_admin_service_server::UserAdminServiceServer::new(
            self.auth,
        ));
        let result = self
            .runtime
            .serve(
                routes,
                &[
                    "tracetrack.auth.v1.AuthService",
                    "tracetrack.auth.v1.UserAdminService",
                ],
                shutdown,
            )
            .await;
        let _ = stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), purge).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), mails).await;
        result
    }
}

/// Every `purge.interval_secs` (0: never), deletes the sessions and failure counters nobody
/// needs any more, so neither table only grows. Every replica runs it; the deletes are
/// idempotent.
async fn purge_loop(auth: Auth, mut stop: tokio::sync::watch::Receiver<bool>) {
    let settings = &auth.0.settings;
    if settings.purge.interval_secs == 0 {
        return;
    }
    let every = std::time::Duration::from_secs(settings.purge.interval_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match store::purge(
            &auth.0.pool,
            settings.purge.keep_sessions_secs,
            settings.session.idle_timeout_secs,
            settings.lockout.lock_secs,
        )
        .await
        {
            Ok(p) => {
                metrics::counter!("auth_purged_rows_total", "table" => "sessions")
                    .increment(p.sessions);
                metrics::counter!("auth_purged_rows_total", "table" => "login_failures")
                    .increment(p.login_failures);
                if p != store::Purged::default() {
                    tracing::info!(
                        sessions = p.sessions,
                        login_failures = p.login_failures,
                        "purged ended sessions and stale login failures"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "purge failed; retrying next round"),
        }
        if let Err(e) = store::purge_challenges(&auth.0.pool).await {
            tracing::warn!(error = %e, "purge of login challenges failed; retrying next round");
        }
    }
}

/// Sends the password-reset mails (issue 17 §3) from their table, every
/// `password_reset.poll_interval_ms`, while SMTP is configured.
async fn reset_mail_loop(auth: Auth, mut stop: tokio::sync::watch::Receiver<bool>) {
    if auth.0.mailer.is_none() {
        return;
    }
    let every =
        std::time::Duration::from_millis(auth.0.settings.password_reset.poll_interval_ms.max(50));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match crate::rpc::reset::send_reset_mails(&auth).await {
            Ok(n) if n > 0 => {
                metrics::counter!("auth_reset_mails_sent_total").increment(n as u64);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sending password-reset mail failed; retrying"),
        }
    }
}

/// Service accounts from configuration, and the bootstrap admin.
async fn prepare(pool: &PgPool, settings: &Settings) -> anyhow::Result<()> {
    let accounts: Vec<(String, Vec<u8>)> = settings
        .service_tokens
        .iter()
        .filter(|(_, t)| !t.expose_secret().is_empty())
        .map(|(name, t)| (name.clone(), store::token_hash(t.expose_secret())))
        .collect();
    store::sync_service_accounts(pool, &accounts).await?;
    if let Some(pw) = &settings.bootstrap_admin_password {
        if !pw.expose_secret().is_empty() {
            let hasher = Hasher::new(&settings.argon2)?;
            create_admin(pool, &hasher, "admin", pw, false).await?;
        }
    }
    Ok(())
}

/// Creates an admin once; an existing user of that name is never touched. Returns whether one
/// was created.
pub async fn create_admin(
    pool: &PgPool,
    hasher: &Hasher,
    username: &str,
    password: &SecretString,
    must_change_password: bool,
) -> anyhow::Result<bool> {
    password::check_policy(username, password.expose_secret())
        .map_err(|e| anyhow::anyhow!("the admin password is too weak: {}", e.message))?;
    if store::user_by_username(pool, &username.to_lowercase())
        .await?
        .is_some()
    {
        return Ok(false);
    }
    let hash = hasher.hash(password).await?;
    let created = store::insert_admin(pool, username, &hash, must_change_password).await?;
    if created {
        tracing::info!(username, "created admin user");
    }
    Ok(created)
}
