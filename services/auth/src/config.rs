//! Auth's settings: the common ones plus sessions, lockout, argon2, the bootstrap admin and the
//! service accounts.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;
use tracetrack_common::config::CommonSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    #[serde(flatten)]
    pub common: CommonSettings,
    pub session: SessionSettings,
    pub lockout: LockoutSettings,
    pub argon2: Argon2Settings,
    pub purge: PurgeSettings,
    /// Creates the user `admin` with this password once, when no such user exists; never
    /// overwrites. No default exists in code.
    pub bootstrap_admin_password: Option<SecretString>,
    /// Service-account name → its token (`TRACETRACK_SERVICE_TOKENS__SCAN=…`). Only hashes are
    /// stored; accounts missing here are removed at start-up.
    pub service_tokens: BTreeMap<String, SecretString>,
    /// Dispatch areas a dispatcher may belong to.
    pub areas: Vec<String>,
    /// Admins must have a second factor: one without it may do nothing but enrol (on in the prod
    /// overlay; off for `make run` and the tests).
    pub require_2fa_for_admins: bool,
    pub second_factor: SecondFactorSettings,
    /// Where links in mail point (the web client's address as users reach it).
    pub public_base_url: String,
    /// The shared SMTP settings (`TRACETRACK_SMTP__…`); without a host, password reset by e-mail
    /// is off (`feature_disabled`).
    pub smtp: tracetrack_common::mail::SmtpSettings,
    pub password_reset: PasswordResetSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            common: CommonSettings::default(),
            session: SessionSettings::default(),
            lockout: LockoutSettings::default(),
            argon2: Argon2Settings::default(),
            purge: PurgeSettings::default(),
            bootstrap_admin_password: None,
            service_tokens: BTreeMap::new(),
            areas: default_areas(),
            require_2fa_for_admins: false,
            second_factor: SecondFactorSettings::default(),
            public_base_url: "http://127.0.0.1:8080".into(),
            smtp: tracetrack_common::mail::SmtpSettings::default(),
            password_reset: PasswordResetSettings::default(),
        }
    }
}

pub fn default_areas() -> Vec<String> {
    tracetrack_domain::DEFAULT_AREAS
        .iter()
        .map(|a| (*a).to_owned())
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SessionSettings {
    pub idle_timeout_secs: u64,
    pub absolute_timeout_secs: u64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 30 * 60,
            absolute_timeout_secs: 12 * 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LockoutSettings {
    /// Failures in a row that lock an account name.
    pub max_failures: i32,
    pub lock_secs: u64,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        Self {
            max_failures: 5,
            lock_secs: 15 * 60,
        }
    }
}

/// The purge of rows nobody needs any more (ended sessions, stale failure counters).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PurgeSettings {
    /// Seconds between purges; 0 turns the purge off.
    pub interval_secs: u64,
    /// Sessions are kept this long after they ended or expired (for the audit of who was in).
    pub keep_sessions_secs: u64,
}

impl Default for PurgeSettings {
    fn default() -> Self {
        Self {
            interval_secs: 10 * 60,
            keep_sessions_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Argon2Settings {
    /// OWASP minimum for argon2id: m = 19 MiB, t = 2, p = 1.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes computed at once (each holds `memory_kib`); the rest wait.
    pub max_concurrent: usize,
    /// Hashes that may wait for one of those slots; past it the call answers `overloaded`
    /// (RESOURCE_EXHAUSTED, HTTP 429) instead of queueing without bound.
    pub max_waiting: usize,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 2,
            max_waiting: 64,
        }
    }
}

/// TOTP second factor (issue 17 §1).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SecondFactorSettings {
    /// 32 bytes, base64: encrypts the TOTP secrets at rest (a secret). Without it nobody can
    /// enrol (`second_factor_unavailable`) and `require_2fa_for_admins` refuses to start.
    pub encryption_key: Option<SecretString>,
    /// The issuer authenticator apps show beside the account name.
    pub issuer: String,
    /// How long a password login's challenge waits for its code.
    pub challenge_secs: u64,
}

impl Default for SecondFactorSettings {
    fn default() -> Self {
        Self {
            encryption_key: None,
            issuer: "TraceTrack".to_owned(),
            challenge_secs: 5 * 60,
        }
    }
}

/// Password reset by e-mail (issue 17 §3).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PasswordResetSettings {
    /// How long a link works.
    pub link_secs: u64,
    /// How often the sender looks for mail to send.
    pub poll_interval_ms: u64,
    /// Tries per mail before it is given up (backing off 2^n seconds).
    pub max_attempts: i32,
    /// Every RequestPasswordReset answers this long after it came (known account or not), so
    /// its time tells nothing; above the lookup and the queueing's usual time.
    pub answer_ms: u64,
}

impl Default for PasswordResetSettings {
    fn default() -> Self {
        Self {
            link_secs: 3600,
            poll_interval_ms: 1000,
            max_attempts: 5,
            answer_ms: 300,
        }
    }
}

/// Defaults of a local run: fixed ports.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("grpc_addr", "127.0.0.1:50051"),
    ("admin_addr", "127.0.0.1:9101"),
];
