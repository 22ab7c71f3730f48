//! TLS to Postgres and Redis (issue 21 §1): a service runs against a Postgres that accepts TLS
//! connections only and a TLS-only Redis, verifying their certificate (`verify-full`, a CA file
//! from configuration, the URL's host name), and refuses, saying why, a server whose certificate
//! does not match: signed by another CA, or not for the host name it dialled.
//!
//! The servers are private (`scripts/stack.sh tls-up`, on free loopback ports; the shared stack
//! is not touched), serving a certificate for `localhost` from a throw-away CA this test makes
//! with the openssl command-line tool (the binaries themselves hold no OpenSSL: rustls).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use redis::AsyncCommands;
use secrecy::SecretString;
use tracetrack_tests::*;

/// A throw-away CA called `name` in `dir` (`ca.crt`, `ca.key`); with `server`, also a
/// certificate for `localhost` only that it signed (`server.crt`, `server.key`).
fn make_ca(dir: &Path, name: &str, server: bool) {
    pki::make_ca(dir, name);
    if server {
        pki::make_leaf(dir, "server", "DNS:localhost");
    }
}

/// The private TLS Postgres and Redis of `scripts/stack.sh tls-up`; stopped when dropped.
struct TlsServers {
    dir: tempfile::TempDir,
    pg_port: u16,
    redis_port: u16,
}

impl TlsServers {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_ca(dir.path(), "TraceTrack throw-away test CA", true);
        let (pg_port, redis_port) = (free_port(), free_port());
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/stack.sh"))
            .args(["tls-up", &dir.path().display().to_string()])
            .args([pg_port.to_string(), redis_port.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "stack.sh tls-up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir,
            pg_port,
            redis_port,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The server's `postgres` database at `host` (the certificate names `localhost` only).
    fn pg_url(&self, host: &str, db: &str, mode: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/{db}?sslmode={mode}",
            self.pg_port
        )
    }

    fn redis_url(&self, host: &str) -> String {
        format!("rediss://{host}:{}", self.redis_port)
    }
}

impl Drop for TlsServers {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/stack.sh"))
            .args(["tls-down", &self.dir.path().display().to_string()])
            .output();
    }
}

fn path(p: &Path) -> Option<String> {
    Some(p.display().to_string())
}

#[tokio::test]
async fn a_service_runs_over_verified_tls_and_refuses_a_certificate_that_does_not_match() {
    let servers = TlsServers::start();
    let other = tempfile::tempdir().unwrap();
    make_ca(other.path(), "Another throw-away CA", false);
    let other_ca = other.path().join("ca.crt");

    // A database of the test's on the TLS server (the superuser over a verified connection).
    let db = format!("tt_{}", uuid::Uuid::new_v4().simple());
    {
        let admin = sqlx::postgres::PgConnectOptions::from_str(&servers.pg_url(
            "localhost",
            "postgres",
            "verify-full",
        ))
        .unwrap()
        .ssl_root_cert(servers.ca());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(&admin)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    // auth over TLS to both, as a deployment on RDS would be configured: the URL says
    // verify-full, the CA bundle is a mounted file named by the settings.
    let prefix = unique_prefix();
    let tls_settings = |ca: &Path, host: &str| {
        let mut s = auth_settings(
            &servers.pg_url(host, &db, "verify-full"),
            &servers.redis_url(host),
            &prefix,
        );
        s.common.database.ca_file = path(ca);
        s.common.redis.ca_file = path(ca);
        s
    };
    let auth = AuthServer::start(tls_settings(&servers.ca(), "localhost")).await;
    // SERVING means its database answered; its connections are encrypted (the server refuses
    // any other) and a login reads and writes through them.
    auth.login("admin", ADMIN_PASSWORD).await.unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&auth.pool)
            .await
            .unwrap();
    assert!(encrypted);
    // Its outbox reaches the TLS-only Redis: the login's event is in the stream there.
    let redis_settings = tracetrack_common::config::RedisSettings {
        url: servers.redis_url("localhost"),
        ca_file: path(&servers.ca()),
        ..Default::default()
    };
    let redis = tracetrack_common::redis::connect(&redis_settings)
        .await
        .unwrap();
    let stream = tracetrack_common::outbox::stream_key(&prefix, "auth");
    eventually(
        Duration::from_secs(10),
        "the login event in the TLS Redis",
        || {
            let (mut redis, stream) = (redis.clone(), stream.clone());
            async move {
                let entries: redis::streams::StreamRangeReply =
                    redis.xrange_all(&stream).await.unwrap();
                entries
                    .ids
                    .iter()
                    .any(|e| e.get::<String>("type").as_deref() == Some("auth.login_succeeded"))
            }
        },
    )
    .await;
    auth.stop().await.unwrap();

    // A certificate from a CA the service does not trust: it does not start, and says why.
    let err = tracetrack_auth::Application::build(tls_settings(&other_ca, "localhost"))
        .await
        .err()
        .expect("a database with an untrusted certificate was accepted")
        .to_string();
    assert!(err.contains("not signed by a CA we trust"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");

    // The right CA, but dialled by an address the certificate does not name: verify-full
    // refuses it, naming the host; verify-ca (the chain only) accepts it.
    let err = tracetrack_auth::Application::build(tls_settings(&servers.ca(), "127.0.0.1"))
        .await
        .err()
        .expect("a certificate for another host name was accepted")
        .to_string();
    assert!(err.contains("does not name the host"), "{err}");
    assert!(err.contains("127.0.0.1"), "{err}");
    let verify_ca = tracetrack_common::config::DatabaseSettings {
        url: SecretString::from(servers.pg_url("127.0.0.1", &db, "verify-ca")),
        ca_file: path(&servers.ca()),
        ..Default::default()
    };
    let pool = tracetrack_common::db::pool(&verify_ca, "auth").unwrap();
    tracetrack_common::db::wait_until_ready(&pool, Duration::from_secs(10))
        .await
        .unwrap();

    // Without a CA file the webpki roots are all there is, and they do not know this CA.
    let public_only = tracetrack_common::config::DatabaseSettings {
        url: SecretString::from(servers.pg_url("localhost", &db, "verify-full")),
        ..Default::default()
    };
    let pool = tracetrack_common::db::pool(&public_only, "auth").unwrap();
    let err = tracetrack_common::db::wait_until_ready(&pool, Duration::from_secs(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not signed by a CA we trust"), "{err}");

    // A CA file with a mode that would ignore it is a configuration error, not a silent downgrade.
    let ignored = tracetrack_common::config::DatabaseSettings {
        url: SecretString::from(servers.pg_url("localhost", &db, "prefer")),
        ca_file: path(&servers.ca()),
        ..Default::default()
    };
    let err = tracetrack_common::db::pool(&ignored, "auth")
        .expect_err("a CA file with sslmode=prefer was accepted")
        .to_string();
    assert!(err.contains("does not verify"), "{err}");

    // Redis likewise: another CA, another host name.
    for (settings, says) in [
        (
            tracetrack_common::config::RedisSettings {
                url: servers.redis_url("localhost"),
                ca_file: path(&other_ca),
                ..Default::default()
            },
            "not signed by a CA we trust",
        ),
        (
            tracetrack_common::config::RedisSettings {
                url: servers.redis_url("127.0.0.1"),
                ca_file: path(&servers.ca()),
                ..Default::default()
            },
            "does not name the host",
        ),
        (
            tracetrack_common::config::RedisSettings {
                url: format!("redis://localhost:{}", servers.redis_port),
                ca_file: path(&servers.ca()),
                ..Default::default()
            },
            "not rediss://",
        ),
    ] {
        let err = tracetrack_common::redis::connect(&settings)
            .await
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", settings.url));
        let said = tracetrack_common::redis::explain(&err);
        assert!(said.contains(says), "{}: {said}", settings.url);
    }
}
