//! Passwords: argon2id off the async executor behind a semaphore, a dummy hash with the same
//! parameters for unknown users (same work either way), and the password policy.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;

use crate::config::Argon2Settings;

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Permits>,
    dummy: Arc<String>,
}

/// `max_concurrent` hashes at once and at most `max_waiting` more waiting for a slot; the rest
/// are refused at once with `overloaded`, so a burst cannot queue without bound.
struct Permits {
    slots: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// Counts one waiter while it lives (also when its future is dropped while waiting).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Permits {
    async fn acquire(&self) -> AppResult<SemaphorePermit<'_>> {
        match self.slots.try_acquire() {
            Ok(p) => return Ok(p),
            Err(TryAcquireError::Closed) => {
                return Err(AppError::internal(anyhow::anyhow!(
                    "argon2 semaphore closed"
                )))
            }
            Err(TryAcquireError::NoPermits) => {}
        }
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if before >= self.max_waiting {
            metrics::counter!("auth_password_hashes_shed_total").increment(1);
            return Err(AppError::new(
                ErrorCode::Overloaded,
                "too many password checks at once; try again in a moment",
            )
            .with_detail("retry_after_seconds", 1));
        }
        self.slots.acquire().await.map_err(AppError::internal)
    }
}

/// Which hash a verification ran against; both paths cost the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyPath {
    Stored,
    Dummy,
}

impl VerifyPath {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyPath::Stored => "stored",
            VerifyPath::Dummy => "dummy",
        }
    }
}

impl Hasher {
    pub fn new(settings: &Argon2Settings) -> anyhow::Result<Self> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let dummy_password: String = {
            use rand::Rng;
            rand::thread_rng()
                .sample_iter(&rand::distributions::Alphanumeric)
                .take(32)
                .map(char::from)
                .collect()
        };
        let dummy = hash_blocking(&params, dummy_password.as_bytes())?;
        Ok(Self {
            params,
            permits: Arc::new(Permits {
                slots: Semaphore::new(settings.max_concurrent.max(1)),
                waiting: AtomicUsize::new(0),
                max_waiting: settings.max_waiting,
            }),
            dummy: Arc::new(dummy),
        })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn dummy_hash(&self) -> &str {
        &self.dummy
    }

    pub async fn hash(&self, password: &SecretString) -> AppResult<String> {
        let _permit = self.permits.acquire().await?;
        let params = self.params.clone();
        let pw = password.expose_secret().to_owned();
        tokio::task::spawn_blocking(move || hash_blocking(&params, pw.as_bytes()))
            .await
            .map_err(AppError::internal)?
            .map_err(AppError::internal)
    }

    /// Verifies against `stored`, or against the dummy hash when there is none, so an unknown
    /// user costs the same as a wrong password.
    pub async fn verify(&self, password: &SecretString, stored: Option<&str>) -> AppResult<bool> {
        let path = if stored.is_some() {
            VerifyPath::Stored
        } else {
            VerifyPath::Dummy
        };
        let hash = stored.unwrap_or(&self.dummy).to_owned();
        let pw = password.expose_secret().to_owned();
        let _permit = self.permits.acquire().await?;
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(pw.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(AppError::internal)?;
        metrics::counter!("auth_password_verifications_total", "path" => path.as_str())
            .increment(1);
        Ok(ok && path == VerifyPath::Stored)
    }
}

fn hash_blocking(params: &Params, password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// The 10,000 most common passwords (from the zxcvbn frequency lists), lower-cased.
fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        include_str!("../data/common-passwords.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    })
}

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 256;

/// SPEC §1: at least 8 characters, 3 of lower/upper/digit/symbol, not containing the username,
/// not one of the 10,000 most common passwords. The error carries the reason.
pub fn check_policy(username: &str, password: &str) -> AppResult<()> {
    let weak = |reason: &str, message: &str| {
        Err(AppError::new(ErrorCode::WeakPassword, message).with_detail("reason", reason))
    };
    let len = password.chars().count();
    if len < MIN_LEN {
        return weak("too_short", "use at least 8 characters");
    }
    if len > MAX_LEN {
        return weak("too_long", "use at most 256 characters");
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if classes < 3 {
        return weak(
            "too_simple",
            "use at least three of: lower-case letters, upper-case letters, digits, symbols",
        );
    }
    let lower = password.to_lowercase();
    let user = username.trim().to_lowercase();
    if !user.is_empty() && lower.contains(&user) {
        return weak(
            "contains_username",
            "the password must not contain the username",
        );
    }
    if common_passwords().contains(lower.as_str()) {
        return weak("too_common", "that password is one of the most common ones");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: AppResult<()>) -> Option<String> {
        r.err().and_then(|e| e.detail("reason").map(str::to_owned))
    }

    #[test]
    fn policy_rules() {
        assert_eq!(
            reason(check_policy("ravi", "Ab1!")),
            Some("too_short".into())
        );
        assert_eq!(
            reason(check_policy("ravi", "abcdefgh1")),
            Some("too_simple".into())
        );
        assert_eq!(
            reason(check_policy("ravi", "xxRavi-2024")),
            Some("contains_username".into())
        );
        // In the common list, and mixed enough to pass the class rule.
        assert_eq!(
            reason(check_policy("ravi", "Password1")),
            Some("too_common".into())
        );
        assert_eq!(reason(check_policy("ravi", "Seed-Sack-42")), None);
    }

    #[test]
    fn the_list_has_ten_thousand_entries() {
        assert_eq!(common_passwords().len(), 10_000);
        assert!(common_passwords().contains("password1"));
    }

    /// With every slot taken, `max_waiting` calls wait and the next is refused at once with
    /// `overloaded` (retry after 1 s); the waiting ones finish once a slot frees up.
    #[tokio::test]
    async fn the_wait_queue_is_bounded() {
        let settings = Argon2Settings {
            max_concurrent: 1,
            max_waiting: 2,
            ..Argon2Settings::default()
        };
        let h = Hasher::new(&settings).unwrap();
        let held = h.permits.slots.acquire().await.unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.verify(&SecretString::from("x"), None).await })
            })
            .collect();
        while h.permits.waiting.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        let e = h.verify(&SecretString::from("x"), None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Overloaded);
        assert_eq!(e.detail("retry_after_seconds"), Some("1"));
        let e = h
            .hash(&SecretString::from("Seed-Sack-42"))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Overloaded);
        assert_eq!(
            h.permits.waiting.load(Ordering::SeqCst),
            2,
            "the refused left"
        );

        drop(held);
        for w in waiters {
            assert!(!w.await.unwrap().unwrap());
        }
        assert_eq!(h.permits.waiting.load(Ordering::SeqCst), 0);
        // Free again: calls go through.
        assert!(!h.verify(&SecretString::from("x"), None).await.unwrap());
    }

    #[tokio::test]
    async fn dummy_hash_costs_the_same_as_a_real_one() {
        let h = Hasher::new(&Argon2Settings::default()).unwrap();
        let real = h.hash(&SecretString::from("Seed-Sack-42")).await.unwrap();
        let params_of = |s: &str| {
            let p = PasswordHash::new(s).unwrap();
            (p.algorithm.to_string(), Params::try_from(&p).unwrap())
        };
        let (alg_real, p_real) = params_of(&real);
        let (alg_dummy, p_dummy) = params_of(h.dummy_hash());
        assert_eq!(alg_real, "argon2id");
        assert_eq!(alg_real, alg_dummy);
        assert_eq!(p_real.m_cost(), p_dummy.m_cost());
        assert_eq!(p_real.t_cost(), p_dummy.t_cost());
        assert_eq!(p_real.p_cost(), p_dummy.p_cost());
        assert_eq!(p_real.m_cost(), 19 * 1024);
        assert!(h
            .verify(&SecretString::from("Seed-Sack-42"), Some(&real))
            .await
            .unwrap());
        assert!(!h
            .verify(&SecretString::from("Seed-Sack-43"), Some(&real))
            .await
            .unwrap());
        assert!(!h
            .verify(&SecretString::from("anything"), None)
            .await
            .unwrap());
    }
}
