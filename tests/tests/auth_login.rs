//! Login, lockout, unlock, session expiry and revocation through real gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;
use tracetrack_tests::*;

#[tokio::test]
async fn login_ok_then_whoami_and_logout() {
    let auth = AuthServer::fresh().await;
    let r = auth.login("admin", ADMIN_PASSWORD).await.unwrap();
    assert!(r.token.starts_with("tt_"));
    assert!(!r.csrf_token.is_empty());
    assert!(!r.must_change_password);
    let user = r.user.unwrap();
    assert_eq!(user.username, "admin");
    assert_eq!(user.role, pb::Role::Admin as i32);
    // Usernames are case-insensitive.
    auth.login("ADMIN", ADMIN_PASSWORD).await.unwrap();

    let me = auth
        .auth()
        .who_am_i(authed(pb::WhoAmIRequest {}, &r.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap().username, "admin");
    assert_eq!(me.csrf_token, r.csrf_token);

    auth.auth()
        .logout(authed(pb::LogoutRequest {}, &r.token))
        .await
        .unwrap();
    let code = code_of(
        auth.auth()
            .who_am_i(authed(pb::WhoAmIRequest {}, &r.token))
            .await,
    );
    assert_eq!(code, ErrorCode::Unauthenticated);
}

/// A wrong password and an unknown user get the same answer after the same work (one argon2
/// verification each, the unknown user's against a dummy hash), and both lock after 5.
#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same_and_both_lock() {
    let auth = AuthServer::fresh().await;
    let stored = "auth_password_verifications_total{path=\"stored\"}";
    let dummy = "auth_password_verifications_total{path=\"dummy\"}";

    for attempt in 1..=5 {
        let (s0, d0) = (auth.metric(stored).await, auth.metric(dummy).await);
        let known = auth.login("admin", "Wrong-Password-1").await.unwrap_err();
        let (s1, d1) = (auth.metric(stored).await, auth.metric(dummy).await);
        assert_eq!(
            (s1 - s0, d1 - d0),
            (1.0, 0.0),
            "known user verifies its stored hash once"
        );

        let unknown = auth
            .login("nobody-here", "Wrong-Password-1")
            .await
            .unwrap_err();
        let (s2, d2) = (auth.metric(stored).await, auth.metric(dummy).await);
        assert_eq!(
            (s2 - s1, d2 - d1),
            (0.0, 1.0),
            "unknown user verifies the dummy hash once"
        );

        if attempt < 5 {
            assert_eq!(known.code, ErrorCode::InvalidCredentials);
            assert_eq!(known.message, unknown.message);
        } else {
            assert_eq!(known.code, ErrorCode::AccountLocked);
        }
        assert_eq!(known.code, unknown.code, "attempt {attempt}");
    }
    // Locked: even the right password is refused, with the seconds left, and no verification runs.
    let s0 = auth.metric(stored).await;
    let e = auth.login("admin", ADMIN_PASSWORD).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::AccountLocked);
    let secs: i64 = e.detail("seconds_left").unwrap().parse().unwrap();
    assert!((850..=900).contains(&secs), "{secs}");
    assert_eq!(auth.metric(stored).await, s0);
    let e = auth.login("nobody-here", "x").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::AccountLocked);
}

#[tokio::test]
async fn a_success_resets_the_count() {
    let auth = AuthServer::fresh().await;
    for _ in 0..4 {
        auth.login("admin", "nope").await.unwrap_err();
    }
    auth.login("admin", ADMIN_PASSWORD).await.unwrap();
    for _ in 0..4 {
        assert_eq!(
            auth.login("admin", "nope").await.unwrap_err().code,
            ErrorCode::InvalidCredentials
        );
    }
}

#[tokio::test]
async fn admin_unlocks_one_or_all() {
    let auth = AuthServer::fresh().await;
    let admin = auth.admin_token().await;
    let (ravi, _) = auth
        .create_user(&admin, "ravi", pb::Role::Dispatcher, "lucknow")
        .await;
    for name in ["ravi", "ghost1", "ghost2"] {
        for _ in 0..5 {
            auth.login(name, "bad").await.unwrap_err();
        }
        assert_eq!(
            auth.login(name, "bad").await.unwrap_err().code,
            ErrorCode::AccountLocked
        );
    }
    let got = auth
        .users()
        .get_user(authed(
            pb::GetUserRequest {
                id: ravi.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    assert!(got.into_inner().user.unwrap().locked_until.is_some());

    let u = auth
        .users()
        .unlock_user(authed(
            pb::UnlockUserRequest {
                id: ravi.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(u.user.unwrap().locked_until.is_none());
    auth.login("ravi", USER_PASSWORD).await.unwrap();
    assert_eq!(
        auth.login("ghost1", "bad").await.unwrap_err().code,
        ErrorCode::AccountLocked
    );

    let all = auth
        .users()
        .unlock_all_users(authed(pb::UnlockAllUsersRequest {}, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.unlocked, 2);
    assert_eq!(
        auth.login("ghost1", "bad").await.unwrap_err().code,
        ErrorCode::InvalidCredentials
    );
}

#[tokio::test]
async fn idle_and_absolute_expiry() {
    let db = fresh_database().await;
    let mut s = auth_settings(&db, &redis_url(), &unique_prefix());
    s.session.idle_timeout_secs = 1;
    s.session.absolute_timeout_secs = 3;
    let auth = AuthServer::start(s).await;
    let who = |t: String| {
        let mut c = auth.auth();
        async move { c.who_am_i(authed(pb::WhoAmIRequest {}, &t)).await }
    };

    // Idle: unused for longer than 1 s, the session is gone.
    let idle = auth.admin_token().await;
    who(idle.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(code_of(who(idle.clone()).await), ErrorCode::Unauthenticated);

    // Absolute: used every 300 ms (never idle), still ends after 3 s.
    let busy = auth.admin_token().await;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        who(busy.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eventually(Duration::from_secs(3), "absolute expiry", || {
        let f = who(busy.clone());
        async move { f.await.is_err() }
    })
    .await;
    assert!(start.elapsed() >= Duration::from_secs(3));
}

#[tokio::test]
async fn tampered_and_unknown_tokens_are_refused() {
    let auth = AuthServer::fresh().await;
    let token = auth.admin_token().await;
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for t in [tampered.as_str(), "tt_made-up", "", "Bearer"] {
        let code = code_of(auth.auth().who_am_i(authed(pb::WhoAmIRequest {}, t)).await);
        assert_eq!(code, ErrorCode::Unauthenticated, "{t:?}");
        let code = code_of(
            auth.users()
                .list_users(authed(pb::ListUsersRequest::default(), t))
                .await,
        );
        assert_eq!(code, ErrorCode::Unauthenticated, "{t:?}");
    }
}
