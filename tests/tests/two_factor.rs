//! Two-factor sign-in (issue 17 §1) through real gRPC: enrolment, login with a challenge
//! completed by a code or a recovery code, replay and skew, the shared lockout, disabling one's
//! own, an admin's reset (audited), and `require_2fa_for_admins`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tracetrack_auth::second_factor::{code_at_step, secret_from_base32, step_of, STEP_SECS};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;
use tracetrack_tests::*;

async fn auth_with(require_2fa_for_admins: bool) -> AuthServer {
    let db = fresh_database().await;
    let mut s = auth_settings(&db, &redis_url(), &unique_prefix());
    s.require_2fa_for_admins = require_2fa_for_admins;
    AuthServer::start(s).await
}

fn now_step() -> i64 {
    step_of(chrono::Utc::now().timestamp())
}

/// Waits (on the clock, not on a service) until at least 10 s of the current 30 s step are left,
/// so the steps a test computes are the ones the service sees. Returns that step.
async fn fresh_step() -> i64 {
    while chrono::Utc::now().timestamp().rem_euclid(STEP_SECS as i64) > 20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    now_step()
}

fn as_gateway<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("x-service-token", service_token("gateway").parse().unwrap());
    req
}

async fn complete(
    auth: &AuthServer,
    challenge: &str,
    code: &str,
    recovery_code: &str,
) -> Result<pb::LoginResponse, AppError> {
    answer(
        auth.auth()
            .complete_login(as_gateway(pb::CompleteLoginRequest {
                challenge: challenge.into(),
                code: code.into(),
                recovery_code: recovery_code.into(),
            })),
    )
    .await
}

/// Enrols the holder of `token`: the secret and the recovery codes. Confirms with the code of
/// `step + confirm_offset`.
async fn enrol(
    auth: &AuthServer,
    token: &str,
    step: i64,
    confirm_offset: i64,
) -> (Vec<u8>, Vec<String>) {
    let begun = answer(
        auth.auth()
            .begin_two_factor_enrolment(authed(pb::BeginTwoFactorEnrolmentRequest {}, token)),
    )
    .await
    .unwrap();
    assert!(
        begun
            .otpauth_url
            .starts_with("otpauth://totp/TraceTrack%3A")
            && begun
                .otpauth_url
                .contains(&format!("secret={}", begun.secret)),
        "{}",
        begun.otpauth_url
    );
    let secret = secret_from_base32(&begun.secret).unwrap();
    assert_eq!(secret.len(), 20);
    let code = code_at_step(&secret, step + confirm_offset).unwrap();
    let done = answer(auth.auth().confirm_two_factor_enrolment(authed(
        pb::ConfirmTwoFactorEnrolmentRequest { code },
        token,
    )))
    .await
    .unwrap();
    assert!(done.user.unwrap().two_factor_enabled);
    (secret, done.recovery_codes)
}

async fn challenge(auth: &AuthServer, username: &str) -> String {
    let r = auth.login(username, USER_PASSWORD).await.unwrap();
    assert!(r.token.is_empty(), "no session before the second factor");
    assert!(r.challenge.starts_with("ttc_"));
    assert!(r.challenge_expires_at.is_some());
    r.challenge
}

/// A user enrolled on a fresh auth (no second factor required of admins).
struct Enrolled {
    auth: AuthServer,
    admin: String,
    user: pb::User,
    token: String,
    /// The step the enrolment was confirmed at (plus its offset).
    step: i64,
    secret: Vec<u8>,
    codes: Vec<String>,
}

/// `name` (`role`, `area`) created on a fresh auth and enrolled, confirmed with the code of a
/// fresh step plus `confirm_offset`.
async fn enrolled(name: &str, role: pb::Role, area: &str, confirm_offset: i64) -> Enrolled {
    let auth = auth_with(false).await;
    let admin = auth.admin_token().await;
    let (user, token) = auth.create_user(&admin, name, role, area).await;
    let step = fresh_step().await;
    let (secret, codes) = enrol(&auth, &token, step, confirm_offset).await;
    Enrolled {
        auth,
        admin,
        user,
        token,
        step,
        secret,
        codes,
    }
}

#[tokio::test]
async fn enrol_then_log_in_with_a_code_once_within_one_step_of_skew() {
    // Confirmed with the previous step's code: -1 step of skew is accepted.
    let Enrolled {
        auth,
        token,
        step,
        secret,
        codes,
        ..
    } = enrolled("bina", pb::Role::Biller, "", -1).await;
    assert_eq!(codes.len(), 10);
    // The secret is stored encrypted, never in clear.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_encrypted FROM auth.second_factors")
        .fetch_one(&auth.pool)
        .await
        .unwrap();
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_slice()));
    // Enrolling again while on is refused.
    let again = answer(
        auth.auth()
            .begin_two_factor_enrolment(authed(pb::BeginTwoFactorEnrolmentRequest {}, &token)),
    )
    .await
    .unwrap_err();
    assert_eq!(again.code, ErrorCode::TwoFactorEnrolled);

    let ch = challenge(&auth, "bina").await;
    // The confirmation's code cannot be used again (no replay within its window).
    let replay = code_at_step(&secret, step - 1).unwrap();
    let e = complete(&auth, &ch, &replay, "").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidCredentials);
    // Two steps off either way: refused.
    for d in [2, -2] {
        let e = complete(&auth, &ch, &code_at_step(&secret, step + d).unwrap(), "")
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidCredentials, "step {d:+}");
    }
    // One step ahead: accepted, a session.
    let ahead = code_at_step(&secret, step + 1).unwrap();
    let r = complete(&auth, &ch, &ahead, "").await.unwrap();
    assert!(r.token.starts_with("tt_"));
    assert!(r.user.unwrap().two_factor_enabled);
    answer(auth.auth().who_am_i(authed(pb::WhoAmIRequest {}, &r.token)))
        .await
        .unwrap();
    // The challenge is spent.
    let e = complete(&auth, &ch, &ahead, "").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LoginChallengeExpired);
    // The same code on a new login: a replay, refused; so is the current step's (older).
    let ch = challenge(&auth, "bina").await;
    for code in [ahead, code_at_step(&secret, step).unwrap()] {
        let e = complete(&auth, &ch, &code, "").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidCredentials);
    }
    // An unknown challenge.
    let e = complete(&auth, "ttc_nope", "123456", "").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LoginChallengeExpired);
    // Both or neither of code and recovery code.
    let e = complete(&auth, &ch, "123456", "abcd-efgh")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn a_recovery_code_works_once() {
    let Enrolled { auth, codes, .. } = enrolled("ravi", pb::Role::Dispatcher, "lucknow", 0).await;
    let ch = challenge(&auth, "ravi").await;
    let r = complete(&auth, &ch, "", &codes[3]).await.unwrap();
    assert!(r.token.starts_with("tt_"));
    let ch = challenge(&auth, "ravi").await;
    let e = complete(&auth, &ch, "", &codes[3]).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidCredentials);
    // Typed in capitals with spaces for dashes: the same code.
    let typed = codes[4].to_uppercase().replace('-', " ");
    complete(&auth, &ch, "", &typed).await.unwrap();
    let used = db_i64(
        &auth.pool,
        "SELECT count(*) FROM auth.outbox WHERE event_type = 'auth.recovery_code_used'",
    )
    .await;
    assert_eq!(used, 2);
}

/// The password and the code count toward one lockout of 5; the attempts of a login are given
/// back only when its session is issued.
#[tokio::test]
async fn wrong_codes_count_toward_the_same_lockout() {
    let Enrolled {
        auth,
        admin,
        secret,
        ..
    } = enrolled("mohan", pb::Role::Biller, "", 0).await;

    // A right password (1) and a wrong code (2), then the right code: the run is broken.
    let ch = challenge(&auth, "mohan").await;
    complete(&auth, &ch, "000000", "").await.unwrap_err();
    let step = fresh_step().await;
    complete(&auth, &ch, &code_at_step(&secret, step + 1).unwrap(), "")
        .await
        .unwrap();
    // So 4 more failures are allowed before the lock: password accepted (1), wrong codes 2..4,
    // and the fifth failure locks.
    let ch = challenge(&auth, "mohan").await;
    for n in 2..=4 {
        let e = complete(&auth, &ch, "000000", "").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidCredentials, "failure {n}");
    }
    let e = complete(&auth, &ch, "999999", "").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::AccountLocked);
    // Locked: the right code, and the password, are refused without being checked.
    let e = complete(&auth, &ch, &code_at_step(&secret, now_step()).unwrap(), "")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AccountLocked);
    let e = auth.login("mohan", USER_PASSWORD).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::AccountLocked);
    // An admin's unlock lets the user in again.
    let mohan = user_named(&auth, &admin, "mohan").await;
    answer(
        auth.users()
            .unlock_user(authed(pb::UnlockUserRequest { id: mohan.id }, &admin)),
    )
    .await
    .unwrap();
    challenge(&auth, "mohan").await;
}

async fn user_named(auth: &AuthServer, admin: &str, name: &str) -> pb::User {
    answer(auth.users().list_users(authed(
        pb::ListUsersRequest {
            query: name.into(),
            ..Default::default()
        },
        admin,
    )))
    .await
    .unwrap()
    .users
    .into_iter()
    .find(|u| u.username == name)
    .unwrap()
}

#[tokio::test]
async fn disabling_needs_the_password_and_a_code_and_an_admin_reset_is_audited() {
    let Enrolled {
        auth,
        admin,
        user: asha,
        token,
        step,
        secret,
        codes,
    } = enrolled("asha", pb::Role::Biller, "", 0).await;
    let disable = |password: &str, code: String, recovery: &str| {
        let mut client = auth.auth();
        let req = authed(
            pb::DisableTwoFactorRequest {
                password: password.into(),
                code,
                recovery_code: recovery.into(),
            },
            &token,
        );
        async move { client.disable_two_factor(req).await }
    };
    // A right code without the password, and the password with a wrong code: refused.
    let e = answer(disable(
        "wrong-password",
        code_at_step(&secret, step + 1).unwrap(),
        "",
    ))
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidCredentials);
    let e = answer(disable(USER_PASSWORD, "000000".into(), ""))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidCredentials);
    // A login that gives a session at once (no challenge).
    let session_at_once = || async {
        let r = auth.login("asha", USER_PASSWORD).await.unwrap();
        r.token.starts_with("tt_")
    };
    // Both: off; the next login gives a session at once.
    let off = answer(disable(USER_PASSWORD, String::new(), &codes[0]))
        .await
        .unwrap();
    assert!(!off.user.unwrap().two_factor_enabled);
    assert!(session_at_once().await);

    // Enrolled again, then reset by an admin: no challenge any more, and the trail says who.
    let token = auth.login("asha", USER_PASSWORD).await.unwrap().token;
    let step = fresh_step().await;
    enrol(&auth, &token, step, 0).await;
    challenge(&auth, "asha").await;
    let reset_as = |token: &str| {
        let mut users = auth.users();
        let req = authed(
            pb::ResetTwoFactorRequest {
                id: asha.id.clone(),
            },
            token,
        );
        async move { users.reset_two_factor(req).await }
    };
    // Not by a non-admin.
    let e = answer(reset_as(&token)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    let reset = answer(reset_as(&admin)).await.unwrap();
    assert!(!reset.user.unwrap().two_factor_enabled);
    assert!(session_at_once().await);
    let (envelope, target): (Vec<u8>, String) = sqlx::query_as(
        r#"SELECT envelope, aggregate_id FROM auth.outbox
           WHERE event_type = 'auth.second_factor_reset'"#,
    )
    .fetch_one(&auth.pool)
    .await
    .unwrap();
    let envelope =
        <tracetrack_proto::events::v1::EventEnvelope as prost::Message>::decode(&envelope[..])
            .unwrap();
    assert_eq!(envelope.actor.unwrap().username, "admin");
    assert_eq!(target, asha.id);
    let gone = db_i64(&auth.pool, "SELECT count(*) FROM auth.recovery_codes").await;
    assert_eq!(gone, 0);
}

/// With `require_2fa_for_admins`, an admin without a second factor may do nothing but enrol;
/// a temporary password comes first (restrictions in order).
#[tokio::test]
async fn an_admin_without_a_second_factor_is_sent_to_enrolment_first() {
    let auth = auth_with(true).await;
    let r = auth.login("admin", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(r.user.as_ref().unwrap().restrictions, ["enrol_2fa"]);
    let admin = r.token;
    let list = || {
        let mut client = auth.users();
        let req = authed(pb::ListUsersRequest::default(), &admin);
        async move { answer(client.list_users(req)).await }
    };
    assert_eq!(list().await.unwrap_err().code, ErrorCode::TwoFactorRequired);
    let me = answer(auth.auth().who_am_i(authed(pb::WhoAmIRequest {}, &admin)))
        .await
        .unwrap();
    assert_eq!(me.user.unwrap().restrictions, ["enrol_2fa"]);
    let step = fresh_step().await;
    let (secret, _) = enrol(&auth, &admin, step, 0).await;
    list().await.unwrap();
    let me = answer(auth.auth().who_am_i(authed(pb::WhoAmIRequest {}, &admin)))
        .await
        .unwrap();
    assert!(me.user.unwrap().restrictions.is_empty());

    // A second admin with a temporary password: change it first, then enrol.
    let temp = "Temp-Sack-55x";
    let neha = answer(auth.users().create_user(authed(
        pb::CreateUserRequest {
            username: "neha".into(),
            email: "neha@example.in".into(),
            password: USER_PASSWORD.into(),
            role: pb::Role::Admin as i32,
            dispatch_area: String::new(),
        },
        &admin,
    )))
    .await
    .unwrap()
    .user
    .unwrap();
    answer(auth.users().reset_password(authed(
        pb::ResetPasswordRequest {
            id: neha.id.clone(),
            temporary_password: temp.into(),
        },
        &admin,
    )))
    .await
    .unwrap();
    let r = auth.login("neha", temp).await.unwrap();
    assert_eq!(
        r.user.unwrap().restrictions,
        ["change_password", "enrol_2fa"]
    );
    let e = answer(
        auth.auth()
            .begin_two_factor_enrolment(authed(pb::BeginTwoFactorEnrolmentRequest {}, &r.token)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::PasswordChangeRequired);
    answer(auth.auth().change_password(authed(
        pb::ChangePasswordRequest {
            current_password: temp.into(),
            new_password: "Mustard-Field-91".into(),
        },
        &r.token,
    )))
    .await
    .unwrap();
    let e = answer(
        auth.users()
            .list_users(authed(pb::ListUsersRequest::default(), &r.token)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::TwoFactorRequired);
    answer(
        auth.auth()
            .begin_two_factor_enrolment(authed(pb::BeginTwoFactorEnrolmentRequest {}, &r.token)),
    )
    .await
    .unwrap();

    // The enrolled admin logs in with a challenge, like anyone with a second factor.
    let r = auth.login("admin", ADMIN_PASSWORD).await.unwrap();
    assert!(r.token.is_empty());
    let step = fresh_step().await;
    let done = complete(
        &auth,
        &r.challenge,
        &code_at_step(&secret, step + 1).unwrap(),
        "",
    )
    .await
    .unwrap();
    assert!(done.user.unwrap().restrictions.is_empty());
}

/// The same through the gateway, as a browser or a script does it: enrolment with the QR code
/// drawn as SVG, the login's code step (no cookie before it, the session cookie after), a wrong
/// code refused, an admin's reset, and the routes in the OpenAPI document.
#[tokio::test]
async fn over_http_enrol_log_in_with_the_code_and_an_admin_resets_it() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |_| {}).await;
    let http = reqwest::Client::new();
    let (kavya, _) = stack
        .auth
        .create_user(&stack.admin, "kavya", pb::Role::Biller, "")
        .await;
    let token = http_token(&http, &gw, "kavya", USER_PASSWORD).await;
    let post = |path: &str, token: &str, body: serde_json::Value| {
        http.post(gw.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };

    let r = post(
        "/api/v1/auth/two-factor/enrolment",
        &token,
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let begun: serde_json::Value = r.json().await.unwrap();
    assert!(begun["qr_svg"].as_str().unwrap().starts_with("<svg"));
    let secret = secret_from_base32(begun["secret"].as_str().unwrap()).unwrap();
    let step = fresh_step().await;
    let r = post(
        "/api/v1/auth/two-factor/confirm",
        &token,
        serde_json::json!({"code": code_at_step(&secret, step).unwrap()}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let done: serde_json::Value = r.json().await.unwrap();
    assert_eq!(done["recovery_codes"].as_array().unwrap().len(), 10);
    assert_eq!(done["user"]["two_factor_enabled"], true);

    // The password alone: a challenge, no session and no cookie.
    let r = http_login(&http, &gw, "kavya", USER_PASSWORD).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    let first: serde_json::Value = r.json().await.unwrap();
    assert_eq!(first["token"], "");
    let ch = first["challenge"].as_str().unwrap().to_owned();
    let complete = |code: String| {
        http.post(gw.url("/api/v1/auth/login/complete"))
            .json(&serde_json::json!({"challenge": ch, "code": code}))
            .send()
    };
    problem(
        complete("000000".into()).await.unwrap(),
        401,
        "invalid_credentials",
    )
    .await;
    // The enrolment's code again: a replay.
    problem(
        complete(code_at_step(&secret, step).unwrap())
            .await
            .unwrap(),
        401,
        "invalid_credentials",
    )
    .await;
    let r = complete(code_at_step(&secret, step + 1).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("tt_session=tt_"));
    let session: serde_json::Value = r.json().await.unwrap();
    let me = get_json(
        &http,
        gw.url("/api/v1/auth/me"),
        session["token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(me["user"]["username"], "kavya");
    assert_eq!(me["user"]["two_factor_enabled"], true);
    problem(
        complete(code_at_step(&secret, step + 1).unwrap())
            .await
            .unwrap(),
        401,
        "login_challenge_expired",
    )
    .await;

    // A biller cannot reset anyone's; an admin can, and the next login is a session at once.
    let path = format!("/api/v1/users/{}/reset-two-factor", kavya.id);
    problem(
        post(
            &path,
            session["token"].as_str().unwrap(),
            serde_json::json!({}),
        )
        .await
        .unwrap(),
        403,
        "permission_denied",
    )
    .await;
    let r = post(&path, &stack.admin, serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let user: serde_json::Value = r.json().await.unwrap();
    assert_eq!(user["two_factor_enabled"], false);
    http_token(&http, &gw, "kavya", USER_PASSWORD).await;

    let doc = gw.openapi().await;
    for p in [
        "/api/v1/auth/login/complete",
        "/api/v1/auth/two-factor/enrolment",
        "/api/v1/auth/two-factor/confirm",
        "/api/v1/auth/two-factor/disable",
        "/api/v1/users/{id}/reset-two-factor",
    ] {
        assert!(
            doc["paths"][p]["post"].is_object(),
            "{p} in the OpenAPI document"
        );
    }
}
