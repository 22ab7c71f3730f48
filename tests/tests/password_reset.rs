//! Password reset by e-mail (issue 17 §3) through real gRPC and a real SMTP server on loopback:
//! the link arrives, works once, sets the password under the policy, ends the user's sessions and
//! clears the lockout; an unknown account gets the same answer and no mail; a link expires.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;
use tracetrack_tests::smtp::SmtpServer;
use tracetrack_tests::*;

fn as_gateway<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("x-service-token", service_token("gateway").parse().unwrap());
    req
}

async fn auth_with_smtp(smtp: &SmtpServer) -> AuthServer {
    let db = fresh_database().await;
    let mut s = auth_settings(&db, &redis_url(), &unique_prefix());
    s.smtp.host = "127.0.0.1".into();
    s.smtp.port = smtp.port;
    s.smtp.starttls = tracetrack_common::mail::StartTls::None;
    s.smtp.from = "TraceTrack <auth@example.in>".into();
    s.public_base_url = "https://tt.example.in/".into();
    s.password_reset.poll_interval_ms = 50;
    AuthServer::start(s).await
}

async fn ask(auth: &AuthServer, login: &str) -> Result<pb::RequestPasswordResetResponse, AppError> {
    answer(
        auth.auth()
            .request_password_reset(as_gateway(pb::RequestPasswordResetRequest {
                login: login.into(),
            })),
    )
    .await
}

async fn complete(auth: &AuthServer, token: &str, password: &str) -> Result<(), AppError> {
    answer(
        auth.auth()
            .complete_password_reset(as_gateway(pb::CompletePasswordResetRequest {
                token: token.into(),
                new_password: password.into(),
            })),
    )
    .await
    .map(|_| ())
}

fn token_of(text: &str) -> String {
    let at = text
        .find("https://tt.example.in/#/reset?token=")
        .expect("the link on public_base_url");
    text[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .rsplit_once("token=")
        .unwrap()
        .1
        .to_owned()
}

#[tokio::test]
async fn a_reset_mail_arrives_and_its_link_works_once() {
    let smtp = SmtpServer::start().await;
    let auth = auth_with_smtp(&smtp).await;
    let admin = auth.admin_token().await;
    let (_, session) = auth.create_user(&admin, "sita", pb::Role::Biller, "").await;
    // Locked out by failures first: the reset clears that too.
    for _ in 0..5 {
        auth.login("sita", "Wrong-Pass-1").await.unwrap_err();
    }
    assert_eq!(
        auth.login("sita", USER_PASSWORD).await.unwrap_err().code,
        ErrorCode::AccountLocked
    );

    // Known (by e-mail, any case) and unknown accounts: the same answer.
    let known = ask(&auth, "SITA@example.in").await.unwrap();
    let unknown = ask(&auth, "nobody@example.in").await.unwrap();
    assert_eq!(known, unknown);
    let got = smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, vec!["sita@example.in".to_string()]);
    let token = token_of(&got[0].text);
    assert!(got[0].html.contains(&token));
    // Only the token's hash is kept; the mail row let go of the link once sent.
    let links = db_i64(
        &auth.pool,
        "SELECT count(*) FROM auth.reset_mails WHERE link IS NOT NULL",
    )
    .await;
    assert_eq!(links, 0);

    // The policy holds.
    let e = complete(&auth, &token, "short").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::WeakPassword);
    complete(&auth, &token, "Monsoon-Field-88").await.unwrap();
    // Once only.
    let e = complete(&auth, &token, "Monsoon-Field-99")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ResetLinkInvalid);
    // The old session ended, the lock is gone, the new password works.
    let e = answer(auth.auth().who_am_i(authed(pb::WhoAmIRequest {}, &session)))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthenticated);
    auth.login("sita", "Monsoon-Field-88").await.unwrap();
    // Nothing went to the unknown address.
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test]
async fn a_link_expires_and_without_smtp_the_feature_is_off() {
    let smtp = SmtpServer::start().await;
    let auth = auth_with_smtp(&smtp).await;
    let admin = auth.admin_token().await;
    auth.create_user(&admin, "gita", pb::Role::Biller, "").await;
    ask(&auth, "gita").await.unwrap();
    let got = smtp.wait_for(1, Duration::from_secs(30)).await;
    let token = token_of(&got[0].text);
    // An hour later (moved in the database rather than waited for).
    sqlx::query("UPDATE auth.password_resets SET expires_at = now() - interval '1 second'")
        .execute(&auth.pool)
        .await
        .unwrap();
    let e = complete(&auth, &token, "Monsoon-Field-88")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ResetLinkInvalid);
    let e = complete(&auth, "ttr_made-up", "Monsoon-Field-88")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ResetLinkInvalid);
    // Only the gateway may ask.
    let e = answer(auth.auth().request_password_reset(tonic::Request::new(
        pb::RequestPasswordResetRequest {
            login: "gita".into(),
        },
    )))
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::CallerNotAllowed);

    let plain = AuthServer::fresh().await;
    let e = ask(&plain, "admin").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::FeatureDisabled);
}

/// Over HTTP as the login page does it: `GET /api/v1/config` says the feature is on (off on a
/// gateway whose auth has no SMTP), 202 for a known and an unknown account alike, the link's token
/// sets the password once (then `reset_link_invalid`, 409), and the routes are in the document.
#[tokio::test]
async fn over_http_forgot_password_and_the_public_config() {
    let smtp = SmtpServer::start().await;
    let stack = Stack::start(1).await;
    let plain = Gateway::start(&stack, |_| {}).await;
    let auth = auth_with_smtp(&smtp).await;
    let url = auth.url();
    let gw = Gateway::start(&stack, |s| s.auth.url = url.clone()).await;
    let http = reqwest::Client::new();
    let admin = auth.admin_token().await;
    auth.create_user(&admin, "lata", pb::Role::Biller, "").await;

    assert_eq!(
        public_json(&http, gw.url("/api/v1/config")).await["password_reset"],
        true
    );
    assert_eq!(
        public_json(&http, plain.url("/api/v1/config")).await["password_reset"],
        false
    );

    let forgot = |login: &str| {
        http.post(gw.url("/api/v1/auth/password-reset"))
            .json(&serde_json::json!({"login": login}))
            .send()
    };
    let known = forgot("lata").await.unwrap();
    let unknown = forgot("nobody-at-all").await.unwrap();
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());
    let got = smtp.wait_for(1, Duration::from_secs(30)).await;
    let token = token_of(&got[0].text);
    let set = |password: &str| {
        http.post(gw.url("/api/v1/auth/password-reset/complete"))
            .json(&serde_json::json!({"token": token, "new_password": password}))
            .send()
    };
    problem(set("short").await.unwrap(), 400, "weak_password").await;
    assert_eq!(set("Monsoon-Field-88").await.unwrap().status(), 204);
    problem(
        set("Monsoon-Field-99").await.unwrap(),
        409,
        "reset_link_invalid",
    )
    .await;
    http_token(&http, &gw, "lata", "Monsoon-Field-88").await;

    let doc = gw.openapi().await;
    for (p, m) in [
        ("/api/v1/auth/password-reset", "post"),
        ("/api/v1/auth/password-reset/complete", "post"),
        ("/api/v1/config", "get"),
    ] {
        assert!(
            doc["paths"][p][m].is_object(),
            "{p} in the OpenAPI document"
        );
    }
}
