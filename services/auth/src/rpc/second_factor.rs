//! The second factor (issue 17 §1): a password login of a user who has one answers a challenge
//! that CompleteLogin finishes with a code or a recovery code; enrolment (begin, confirm with a
//! code, 10 recovery codes shown once); disabling one's own (password and code); an admin's reset
//! of a user's (audited).
//!
//! Every code or recovery code tried at login counts toward the account name's lockout, like a
//! password; the attempts of one login are refunded only when its session is issued.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;
use tonic::Request;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;
use tracetrack_proto::events::v1::Actor;
use uuid::Uuid;

use crate::convert::{self_actor, to_pb, ts};
use crate::rules::{invalid_credentials, locked, parse_id, random_token};
use crate::second_factor::{self as sf, Proof};
use crate::state::{Auth, MUTATIONS};
use crate::store::{self, UserRow};

fn expired() -> AppError {
    AppError::new(
        ErrorCode::LoginChallengeExpired,
        "this sign-in has expired; log in again",
    )
}

fn wrong_code() -> AppError {
    AppError::new(ErrorCode::InvalidCredentials, "wrong or already used code")
}

impl Auth {
    fn secret_box(&self) -> AppResult<&sf::SecretBox> {
        self.0.secret_box.as_ref().ok_or_else(sf::unavailable)
    }

    /// The password step of a user with a second factor: no session yet, a challenge instead.
    /// The attempt stays counted (no refund) until CompleteLogin issues the session.
    pub(crate) async fn challenge(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        user: &UserRow,
        locked_until: Option<DateTime<Utc>>,
        actor: Actor,
        ip: Option<String>,
    ) -> AppResult<pb::LoginResponse> {
        let actor = Actor {
            user_id: user.id.to_string(),
            ..actor
        };
        if let Some(until) = locked_until {
            // This attempt reached the limit: nothing more can follow it.
            self.audit(
                &mut tx,
                actor,
                "auth.login_locked",
                &user.id.to_string(),
                json!({"account": user.username.to_lowercase(), "locked_until": until}),
            )
            .await?;
            tx.commit().await?;
            return Err(locked(until));
        }
        let challenge = format!("ttc_{}", random_token(32));
        let expires_at = store::insert_challenge(
            &mut tx,
            &store::token_hash(&challenge),
            user.id,
            self.0.settings.second_factor.challenge_secs,
            ip.as_deref(),
        )
        .await?;
        self.audit(
            &mut tx,
            actor,
            "auth.login_password_accepted",
            &user.id.to_string(),
            json!({"second_factor": "totp"}),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::LoginResponse {
            challenge,
            challenge_expires_at: Some(ts(expires_at)),
            ..pb::LoginResponse::default()
        })
    }

    /// Checks a code or a recovery code of a user with a confirmed second factor and takes it
    /// (a code's step, or the recovery code, is used once) in `tx`. False for a wrong or used one.
    async fn take_proof(
        &self,
        tx: &mut sqlx::PgConnection,
        user_id: Uuid,
        proof: &Proof,
    ) -> AppResult<bool> {
        match proof {
            Proof::Code(code) => {
                let Some(row) = store::second_factor(tx, user_id).await? else {
                    return Ok(false);
                };
                if row.confirmed_at.is_none() {
                    return Ok(false);
                }
                let secret = self.secret_box()?.open(&row.secret_encrypted)?;
                match sf::matching_step(&secret, code, sf::step_of(Utc::now().timestamp()))? {
                    Some(step) => store::use_step(tx, user_id, step).await,
                    None => Ok(false),
                }
            }
            Proof::Recovery(code) => {
                if code.is_empty() {
                    return Ok(false);
                }
                store::use_recovery_code(tx, user_id, &store::token_hash(code)).await
            }
        }
    }

    pub(crate) async fn complete_login(
        &self,
        req: Request<pb::CompleteLoginRequest>,
    ) -> AppResult<pb::LoginResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["gateway"])?;
        let ip = caller.client_ip.clone();
        let req = req.into_inner();
        let proof = Proof::from_parts(&req.code, &req.recovery_code)?;
        let challenge_hash = store::token_hash(req.challenge.trim());
        let user_id = store::challenge_user(self.pool(), &challenge_hash)
            .await?
            .ok_or_else(expired)?;
        let mut conn = self.pool().acquire().await?;
        let user = store::user_by_id(&mut conn, user_id, false)
            .await?
            .filter(|u| u.active)
            .ok_or_else(expired)?;
        drop(conn);
        let account = user.username.to_lowercase();
        let actor = self_actor(&user, ip.clone().unwrap_or_default());
        // Counted before it is checked, like a password; a locked name is refused here.
        let (failures, locked_until) = self.admit(&account, &actor).await?;
        let mut tx = self.pool().begin().await?;
        let taken = match self.take_proof(&mut tx, user.id, &proof).await {
            Ok(t) => t,
            Err(e) => {
                drop(tx);
                self.release(&account).await;
                return Err(e);
            }
        };
        if !taken {
            let (event, err) = match locked_until {
                Some(until) => ("auth.login_locked", locked(until)),
                None => ("auth.login_failed", wrong_code()),
            };
            self.audit(
                &mut tx,
                actor,
                event,
                &user.id.to_string(),
                json!({"account": account, "failures": failures, "step": "second_factor"}),
            )
            .await?;
            tx.commit().await?;
            return Err(err);
        }
        if !store::use_challenge(&mut tx, &challenge_hash).await? {
            // Completed by a concurrent request, or expired meanwhile: nothing was guessed.
            drop(tx);
            self.release(&account).await;
            return Err(expired());
        }
        if matches!(proof, Proof::Recovery(_)) {
            let left = store::recovery_codes_left(&mut tx, user.id).await?;
            self.audit(
                &mut tx,
                actor.clone(),
                "auth.recovery_code_used",
                &user.id.to_string(),
                json!({"left": left}),
            )
            .await?;
        }
        self.issue_session(tx, user, &account, failures, actor, ip)
            .await
    }

    pub(crate) async fn begin_two_factor_enrolment(
        &self,
        req: Request<pb::BeginTwoFactorEnrolmentRequest>,
    ) -> AppResult<pb::BeginTwoFactorEnrolmentResponse> {
        let caller = self.caller(&req).await?;
        let me = caller.user_pending_enrolment_ok()?.clone();
        let sealer = self.secret_box()?;
        let secret = sf::new_secret();
        let sealed = sealer.seal(&secret)?;
        let mut tx = self.pool().begin().await?;
        if !store::put_pending_secret(&mut tx, me.id, &sealed).await? {
            return Err(AppError::new(
                ErrorCode::TwoFactorEnrolled,
                "two-factor sign-in is already on; turn it off first",
            ));
        }
        tx.commit().await?;
        let b32 = sf::secret_base32(&secret);
        Ok(pb::BeginTwoFactorEnrolmentResponse {
            otpauth_url: sf::otpauth_url(&self.0.settings.second_factor.issuer, &me.username, &b32),
            secret: b32,
        })
    }

    pub(crate) async fn confirm_two_factor_enrolment(
        &self,
        req: Request<pb::ConfirmTwoFactorEnrolmentRequest>,
    ) -> AppResult<pb::ConfirmTwoFactorEnrolmentResponse> {
        let caller = self.caller(&req).await?;
        let me = caller.user_pending_enrolment_ok()?.clone();
        let code = req.into_inner().code;
        let mut tx = self.pool().begin().await?;
        let row = store::second_factor(&mut tx, me.id).await?;
        let row = match row {
            Some(r) if r.confirmed_at.is_some() => {
                return Err(AppError::new(
                    ErrorCode::TwoFactorEnrolled,
                    "two-factor sign-in is already on",
                ))
            }
            Some(r) => r,
            None => {
                return Err(AppError::new(
                    ErrorCode::TwoFactorNotEnrolled,
                    "start the enrolment first",
                ))
            }
        };
        let secret = self.secret_box()?.open(&row.secret_encrypted)?;
        let step = sf::matching_step(&secret, &code, sf::step_of(Utc::now().timestamp()))?
            .ok_or_else(wrong_code)?;
        if !store::confirm(&mut tx, me.id, step).await? {
            return Err(AppError::new(
                ErrorCode::TwoFactorEnrolled,
                "two-factor sign-in is already on",
            ));
        }
        let codes = sf::new_recovery_codes();
        let hashes: Vec<Vec<u8>> = codes
            .iter()
            .map(|c| store::token_hash(&sf::normalize_recovery_code(c)))
            .collect();
        store::replace_recovery_codes(&mut tx, me.id, &hashes).await?;
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.second_factor_enrolled",
            &me.id.to_string(),
            json!({"recovery_codes": codes.len()}),
        )
        .await?;
        let after = store::user_by_id(&mut tx, me.id, false)
            .await?
            .ok_or_else(AppError::unauthenticated)?;
        tx.commit().await?;
        Ok(pb::ConfirmTwoFactorEnrolmentResponse {
            recovery_codes: codes,
            user: Some(self.user_pb(&after)),
        })
    }

    pub(crate) async fn disable_two_factor(
        &self,
        req: Request<pb::DisableTwoFactorRequest>,
    ) -> AppResult<pb::DisableTwoFactorResponse> {
        let caller = self.caller(&req).await?;
        let me = caller.user()?.clone();
        let req = req.into_inner();
        let proof = Proof::from_parts(&req.code, &req.recovery_code)?;
        let mut conn = self.pool().acquire().await?;
        let row = store::user_by_id(&mut conn, me.id, false)
            .await?
            .ok_or_else(AppError::unauthenticated)?;
        drop(conn);
        if !row.two_factor_enabled {
            return Err(AppError::new(
                ErrorCode::TwoFactorNotEnrolled,
                "two-factor sign-in is not on",
            ));
        }
        // The password and the code are tried under the same lockout as a login.
        let account = row.username.to_lowercase();
        let (failures, locked_until) = self.admit(&account, &caller.actor()).await?;
        let password = SecretString::from(req.password);
        let verified = match self
            .0
            .hasher
            .verify(&password, Some(&row.password_hash))
            .await
        {
            Ok(v) => v,
            Err(e) => {
                self.release(&account).await;
                return Err(e);
            }
        };
        let mut tx = self.pool().begin().await?;
        let taken = verified && self.take_proof(&mut tx, me.id, &proof).await?;
        if !taken {
            drop(tx);
            return Err(match locked_until {
                Some(until) => locked(until),
                None => invalid_credentials(),
            });
        }
        store::refund_attempt(
            &mut tx,
            &account,
            failures,
            self.0.settings.lockout.max_failures,
        )
        .await?;
        store::remove_second_factor(&mut tx, me.id).await?;
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.second_factor_disabled",
            &me.id.to_string(),
            json!({}),
        )
        .await?;
        let after = store::user_by_id(&mut tx, me.id, false)
            .await?
            .ok_or_else(AppError::unauthenticated)?;
        tx.commit().await?;
        Ok(pb::DisableTwoFactorResponse {
            user: Some(self.user_pb(&after)),
        })
    }

    pub(crate) async fn reset_two_factor(
        &self,
        req: Request<pb::ResetTwoFactorRequest>,
    ) -> AppResult<pb::ResetTwoFactorResponse> {
        let caller = self.admin(&req).await?;
        let req = req.into_inner();
        let id = parse_id(&req.id)?;
        let mut tx = self.pool().begin().await?;
        if let Some(r) = MUTATIONS
            .replay(&mut tx, &caller, "ResetTwoFactor", &req)
            .await?
        {
            return Ok(r);
        }
        let row = store::user_by_id(&mut tx, id, true)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))?;
        if !store::remove_second_factor(&mut tx, id).await? {
            return Err(AppError::new(
                ErrorCode::TwoFactorNotEnrolled,
                "that user has no second factor",
            ));
        }
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.second_factor_reset",
            &id.to_string(),
            json!({"username": row.username}),
        )
        .await?;
        let resp = pb::ResetTwoFactorResponse {
            user: Some(to_pb(&UserRow {
                two_factor_enabled: false,
                ..row
            })),
        };
        MUTATIONS.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }
}
