//! The second factor's primitives (issue 17 §1): TOTP codes (RFC 6238: HMAC-SHA-1, 6 digits,
//! 30 s steps, ±1 step of skew) through `totp-rs`, the secrets' encryption at rest
//! (ChaCha20-Poly1305 under the configured key), the otpauth URL an authenticator app scans, and
//! the one-time recovery codes.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use rand::RngCore;
use secrecy::ExposeSecret;
use totp_rs::{Algorithm, Secret, TOTP};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;

use crate::config::SecondFactorSettings;

/// Seconds per TOTP step.
pub const STEP_SECS: u64 = 30;
/// Steps either side of the current one that are still accepted.
pub const SKEW_STEPS: i64 = 1;
pub const DIGITS: usize = 6;
/// Bytes of a new TOTP secret (160 bits, as RFC 4226 recommends).
const SECRET_BYTES: usize = 20;
const NONCE_BYTES: usize = 12;
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// Seals and opens TOTP secrets with the configured key; stored as `nonce || ciphertext`.
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl SecretBox {
    /// `None` when no key is configured (nobody can enrol then).
    pub fn from_settings(settings: &SecondFactorSettings) -> anyhow::Result<Option<Self>> {
        let Some(key) = &settings.encryption_key else {
            return Ok(None);
        };
        let key = key.expose_secret().trim();
        if key.is_empty() {
            return Ok(None);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| anyhow::anyhow!("second_factor.encryption_key is not base64"))?;
        anyhow::ensure!(
            bytes.len() == 32,
            "second_factor.encryption_key must be 32 bytes (base64), not {}",
            bytes.len()
        );
        Ok(Some(Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
        }))
    }

    pub fn seal(&self, plain: &[u8]) -> AppResult<Vec<u8>> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .map_err(|_| AppError::internal(anyhow::anyhow!("could not encrypt a secret")))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    pub fn open(&self, stored: &[u8]) -> AppResult<Vec<u8>> {
        if stored.len() <= NONCE_BYTES {
            return Err(AppError::internal(anyhow::anyhow!(
                "a sealed secret is too short"
            )));
        }
        let (nonce, sealed) = stored.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| {
                AppError::internal(anyhow::anyhow!(
                    "a TOTP secret does not open with the configured key (was the key changed?)"
                ))
            })
    }
}

pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// The secret as authenticator apps take it typed in: base32 without padding.
pub fn secret_base32(secret: &[u8]) -> String {
    match Secret::Raw(secret.to_vec()).to_encoded() {
        Secret::Encoded(s) => s.trim_end_matches('=').to_owned(),
        Secret::Raw(_) => String::new(),
    }
}

/// The bytes of a base32 secret as [`secret_base32`] gives it (authenticator apps and tests).
pub fn secret_from_base32(b32: &str) -> Option<Vec<u8>> {
    Secret::Encoded(b32.trim().to_uppercase()).to_bytes().ok()
}

fn totp(secret: &[u8]) -> AppResult<TOTP> {
    TOTP::new(Algorithm::SHA1, DIGITS, 0, STEP_SECS, secret.to_vec())
        .map_err(|e| AppError::internal(anyhow::anyhow!("TOTP parameters: {e:?}")))
}

/// The code of one time step.
pub fn code_at_step(secret: &[u8], step: i64) -> AppResult<String> {
    Ok(totp(secret)?.generate(step.max(0) as u64 * STEP_SECS))
}

/// The time step of `unix_secs`.
pub fn step_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS as i64)
}

/// The step (within ±[`SKEW_STEPS`] of `now_step`) whose code `code` is, if any. Every step is
/// compared, in constant time, so the answer's time does not say which one matched.
pub fn matching_step(secret: &[u8], code: &str, now_step: i64) -> AppResult<Option<i64>> {
    let code = code.trim().replace(' ', "");
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let mut found = None;
    for step in now_step - SKEW_STEPS..=now_step + SKEW_STEPS {
        let expected = code_at_step(secret, step)?;
        let same = expected
            .bytes()
            .zip(code.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if same && found.is_none() {
            found = Some(step);
        }
    }
    Ok(found)
}

/// `otpauth://totp/Issuer:account?secret=…&issuer=…` (the Key Uri Format every app reads).
pub fn otpauth_url(issuer: &str, account: &str, secret_b32: &str) -> String {
    let label = format!("{issuer}:{account}");
    format!(
        "otpauth://totp/{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        utf8_percent_encode(&label, NON_ALPHANUMERIC),
        utf8_percent_encode(issuer, NON_ALPHANUMERIC),
    )
}

/// Ten fresh recovery codes, `xxxx-xxxx-xxxx-xxxx` of base32 (80 random bits each).
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut raw = [0u8; 10];
            rand::rngs::OsRng.fill_bytes(&mut raw);
            let b32 = secret_base32(&raw).to_lowercase();
            b32.as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// A recovery code as typed (any case, with or without dashes and spaces), as it was hashed.
pub fn normalize_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What a second-factor answer was: a code of `step`, or a recovery code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    Code(String),
    Recovery(String),
}

impl Proof {
    /// Exactly one of a code or a recovery code.
    pub fn from_parts(code: &str, recovery_code: &str) -> AppResult<Self> {
        match (code.trim().is_empty(), recovery_code.trim().is_empty()) {
            (false, true) => Ok(Self::Code(code.to_owned())),
            (true, false) => Ok(Self::Recovery(normalize_recovery_code(recovery_code))),
            _ => Err(AppError::invalid(
                "give either a code from the authenticator or a recovery code",
            )),
        }
    }
}

pub(crate) fn unavailable() -> AppError {
    AppError::new(
        ErrorCode::FeatureDisabled,
        "two-factor sign-in is not configured on this server",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 (8 digits there; the last 6 of them here).
    #[test]
    fn rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(code_at_step(secret, step_of(t)).unwrap(), code, "{t}");
        }
    }

    #[test]
    fn skew_is_one_step_either_side() {
        let secret = new_secret();
        let now = 1_000_000;
        for d in -1..=1 {
            let code = code_at_step(&secret, now + d).unwrap();
            assert_eq!(matching_step(&secret, &code, now).unwrap(), Some(now + d));
        }
        for d in [-2, 2] {
            let code = code_at_step(&secret, now + d).unwrap();
            let found = matching_step(&secret, &code, now).unwrap();
            // A code two steps off may equal one within the window only by chance (1 in 10^6).
            assert!(found.is_none() || found != Some(now + d));
        }
    }

    #[test]
    fn secrets_are_sealed_and_opened_with_the_key() {
        let settings = SecondFactorSettings {
            encryption_key: Some(
                base64::engine::general_purpose::STANDARD
                    .encode([7u8; 32])
                    .into(),
            ),
            ..SecondFactorSettings::default()
        };
        let b = SecretBox::from_settings(&settings).unwrap().unwrap();
        let secret = new_secret();
        let sealed = b.seal(&secret).unwrap();
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()));
        assert_eq!(b.open(&sealed).unwrap(), secret);
        let other = SecondFactorSettings {
            encryption_key: Some(
                base64::engine::general_purpose::STANDARD
                    .encode([8u8; 32])
                    .into(),
            ),
            ..SecondFactorSettings::default()
        };
        let o = SecretBox::from_settings(&other).unwrap().unwrap();
        assert!(o.open(&sealed).is_err());
    }

    #[test]
    fn recovery_codes_are_ten_distinct_and_normalize() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let set: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(set.len(), 10);
        let c = &codes[0];
        assert_eq!(c.len(), 19, "{c}");
        assert_eq!(
            normalize_recovery_code(&c.to_uppercase().replace('-', " ")),
            c.replace('-', "")
        );
    }
}
