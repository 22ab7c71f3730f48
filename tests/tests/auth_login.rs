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

    // Absolute: used every 300 ms (never idle), still ends after 3 s. The clock starts before
    // the login: the session's 3 s count from the login's transaction, which is later, so the
    // end can never be seen before 3 s on this clock (a clock started after the login's answer
    // arrived could read less under load).
    let start = std::time::Instant::now();
    let busy = auth.admin_token().await;
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

/// Login answers only the gateway (it rate-limits logins before they reach auth): no service
/// token, or another service's, is `caller_not_allowed`; an unknown token `unauthenticated`.
#[tokio::test]
async fn grpc_login_requires_the_gateways_service_token() {
    let auth = AuthServer::fresh().await;
    let login = |token: Option<&str>| {
        let mut req = tonic::Request::new(pb::LoginRequest {
            username: "admin".into(),
            password: ADMIN_PASSWORD.into(),
        });
        if let Some(t) = token {
            req.metadata_mut()
                .insert("x-service-token", t.parse().unwrap());
        }
        let mut c = auth.auth();
        async move { c.login(req).await }
    };
    assert_eq!(code_of(login(None).await), ErrorCode::CallerNotAllowed);
    assert_eq!(
        code_of(login(Some(service_token("scan"))).await),
        ErrorCode::CallerNotAllowed
    );
    assert_eq!(
        code_of(login(Some("svc-made-up")).await),
        ErrorCode::Unauthenticated
    );
    let r = login(Some(service_token("gateway")))
        .await
        .unwrap()
        .into_inner();
    assert!(r.token.starts_with("tt_"));
    // The refused calls verified no password and counted nothing.
    let failures: Option<i32> =
        sqlx::query_scalar("SELECT failures FROM auth.login_failures WHERE account = 'admin'")
            .fetch_optional(&auth.pool)
            .await
            .unwrap();
    assert_eq!(failures, None);
}

/// Auth with room for 64 hashes at once, so nothing serialises a burst but the lockout itself.
async fn wide_auth() -> AuthServer {
    let db = fresh_database().await;
    let mut s = auth_settings(&db, &redis_url(), &unique_prefix());
    s.argon2.max_concurrent = 64;
    s.argon2.max_waiting = 64;
    AuthServer::start(s).await
}

const STORED: &str = "auth_password_verifications_total{path=\"stored\"}";

/// 50 parallel wrong passwords with argon2 free to run 50 at once: each attempt is counted
/// before it is verified, so exactly 5 are verified (the 5th sets the lock and is still
/// checked), 4 answer `invalid_credentials` and 46 `account_locked`; the right password is then
/// locked out too. (Before, all 50 were read as unlocked and verified: 50 guesses.)
#[tokio::test]
async fn a_parallel_burst_gets_exactly_max_verifications() {
    let auth = wide_auth().await;
    let before = auth.metric(STORED).await;
    let answers = futures::future::join_all((0..50).map(|i| {
        let auth = &auth;
        async move { auth.login("admin", &format!("Wrong-Guess-{i}")).await }
    }))
    .await;
    let count = |code: ErrorCode| {
        answers
            .iter()
            .filter(|a| matches!(a, Err(e) if e.code == code))
            .count()
    };
    assert_eq!(count(ErrorCode::InvalidCredentials), 4, "{answers:?}");
    assert_eq!(count(ErrorCode::AccountLocked), 46, "{answers:?}");
    assert_eq!(
        auth.metric(STORED).await - before,
        5.0,
        "only the admitted attempts are verified"
    );
    let e = auth.login("admin", ADMIN_PASSWORD).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::AccountLocked);
    assert_eq!(auth.metric(STORED).await - before, 5.0);
}

/// The right password in a burst of wrong ones no longer wipes the count the others made: at
/// most `max` guesses are verified before it succeeds and `max - 1` after (not 50).
#[tokio::test]
async fn a_right_password_in_a_burst_does_not_reset_the_others() {
    let auth = wide_auth().await;
    let before = auth.metric(STORED).await;
    let answers = futures::future::join_all((0..50).map(|i| {
        let auth = &auth;
        async move {
            let pw = if i == 2 {
                ADMIN_PASSWORD.to_owned()
            } else {
                format!("Wrong-Guess-{i}")
            };
            auth.login("admin", &pw).await
        }
    }))
    .await;
    // At most 5 admitted before the success (it among them or not) and, since it lifts the lock
    // only by what it takes back, at most 5 more after it.
    let verified = auth.metric(STORED).await - before;
    assert!((5.0..=10.0).contains(&verified), "{verified} verifications");
    let wrong_checked = answers
        .iter()
        .filter(|a| matches!(a, Err(e) if e.code == ErrorCode::InvalidCredentials))
        .count();
    assert!(wrong_checked <= 8, "{wrong_checked}: {answers:?}");
    assert!(answers.iter().filter(|a| a.is_ok()).count() <= 1);
}

/// The lockout's bookkeeping: a success takes back itself and the attempts admitted before it,
/// never those admitted after; the lock lifts once the count is below the limit.
#[tokio::test]
async fn a_success_refunds_only_its_own_run() {
    use tracetrack_auth::store::{self, Attempt};
    let auth = AuthServer::fresh().await;
    let pool = &auth.pool;
    let reserve = || store::reserve_attempt(pool, "meera", 5, 900);
    let failures = |a: Attempt| match a {
        Attempt::Admitted { failures, .. } => failures,
        Attempt::Locked(_) => panic!("locked"),
    };
    let row = || async {
        sqlx::query_as::<_, (i32, Option<chrono::DateTime<chrono::Utc>>)>(
            "SELECT failures, locked_until FROM auth.login_failures WHERE account = 'meera'",
        )
        .fetch_optional(pool)
        .await
        .unwrap()
    };
    let refund = |n: i32| async move {
        let mut conn = pool.acquire().await.unwrap();
        store::refund_attempt(&mut conn, "meera", n, 5)
            .await
            .unwrap();
    };

    // Three in flight; the second succeeds: the first and second go, the third stays.
    assert_eq!(failures(reserve().await.unwrap()), 1);
    assert_eq!(failures(reserve().await.unwrap()), 2);
    assert_eq!(failures(reserve().await.unwrap()), 3);
    refund(2).await;
    assert_eq!(row().await.unwrap().0, 1);

    // Up to the limit: the 5th is admitted and sets the lock; the 6th is refused.
    for want in 2..=4 {
        assert_eq!(failures(reserve().await.unwrap()), want);
    }
    let fifth = reserve().await.unwrap();
    assert!(matches!(
        fifth,
        Attempt::Admitted {
            failures: 5,
            locked_until: Some(_)
        }
    ));
    assert!(matches!(reserve().await.unwrap(), Attempt::Locked(_)));
    assert_eq!(
        row().await.unwrap().0,
        5,
        "a refused attempt is not counted"
    );

    // The 2nd of those five succeeds: 3 admitted after it stay, the lock lifts.
    refund(2).await;
    assert_eq!(row().await.unwrap(), (3, None));
    // An attempt that was never verified gives back only itself.
    assert_eq!(failures(reserve().await.unwrap()), 4);
    refund(1).await;
    assert_eq!(row().await.unwrap(), (3, None));
    // The last success of a run clears it: no row left.
    refund(3).await;
    assert_eq!(row().await, None);
}

/// ChangePassword: a wrong current password counts toward the login lockout (both ways), a
/// locked account is refused without verifying, and a change ends the user's other sessions.
#[tokio::test]
async fn change_password_shares_the_lockout_and_ends_other_sessions() {
    let auth = AuthServer::fresh().await;
    let admin = auth.admin_token().await;
    let (user, token) = auth
        .create_user(&admin, "Kishan", pb::Role::Biller, "")
        .await;
    let other = auth.login("kishan", USER_PASSWORD).await.unwrap().token;
    let change = |cur: &str, new: &str, token: &str| {
        let req = authed(
            pb::ChangePasswordRequest {
                current_password: cur.into(),
                new_password: new.into(),
            },
            token,
        );
        let mut c = auth.auth();
        async move { c.change_password(req).await }
    };

    // 3 wrong logins, then wrong current passwords: the 4th failure is still wrong, the 5th locks.
    for _ in 0..3 {
        auth.login("KISHAN", "Wrong-Guess-1").await.unwrap_err();
    }
    assert_eq!(
        code_of(change("Wrong-Guess-2", "Better-Sack-88", &token).await),
        ErrorCode::InvalidCredentials
    );
    assert_eq!(
        code_of(change("Wrong-Guess-3", "Better-Sack-88", &token).await),
        ErrorCode::AccountLocked
    );
    // Locked: the right current password is refused without a verification, and so is a login.
    let before = auth.metric(STORED).await;
    assert_eq!(
        code_of(change(USER_PASSWORD, "Better-Sack-88", &token).await),
        ErrorCode::AccountLocked
    );
    assert_eq!(
        auth.login("kishan", USER_PASSWORD).await.unwrap_err().code,
        ErrorCode::AccountLocked
    );
    assert_eq!(auth.metric(STORED).await, before);

    auth.users()
        .unlock_user(authed(
            pb::UnlockUserRequest {
                id: user.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    // A wrong one, then the right one: the success clears the run.
    assert_eq!(
        code_of(change("Wrong-Guess-4", "Better-Sack-88", &token).await),
        ErrorCode::InvalidCredentials
    );
    change(USER_PASSWORD, "Better-Sack-88", &token)
        .await
        .unwrap();
    let failures: Option<i32> =
        sqlx::query_scalar("SELECT failures FROM auth.login_failures WHERE account = 'kishan'")
            .fetch_optional(&auth.pool)
            .await
            .unwrap();
    assert_eq!(failures, None);

    // The other session ended (auth reads its database, no cache); this one goes on.
    let who = |t: &str| {
        let req = authed(pb::WhoAmIRequest {}, t);
        let mut c = auth.auth();
        async move { c.who_am_i(req).await }
    };
    assert_eq!(code_of(who(&other).await), ErrorCode::Unauthenticated);
    who(&token).await.unwrap();
    let mut authenticate = tonic::Request::new(pb::AuthenticateRequest {
        user_token: other.clone(),
        ..Default::default()
    });
    authenticate
        .metadata_mut()
        .insert("x-service-token", service_token("scan").parse().unwrap());
    let r = auth
        .auth()
        .authenticate(authenticate)
        .await
        .unwrap()
        .into_inner();
    assert!(r.user.is_none(), "the ended session still resolves: {r:?}");
    let ended: Option<String> = sqlx::query_scalar(
        "SELECT ended_reason FROM auth.sessions s JOIN auth.users u ON u.id = s.user_id \
         WHERE u.username = 'Kishan' AND s.ended_at IS NOT NULL LIMIT 1",
    )
    .fetch_optional(&auth.pool)
    .await
    .unwrap();
    assert_eq!(ended.as_deref(), Some("password_changed"));
    auth.login("kishan", "Better-Sack-88").await.unwrap();
}

/// The purge keeps what is still needed and deletes the rest: sessions over for more than a
/// day (ended, expired or idle), failure counters older than the lock window and not locked.
#[tokio::test]
async fn the_purge_deletes_old_sessions_and_stale_failure_counters() {
    let auth = AuthServer::fresh().await;
    let live = auth.admin_token().await;
    let admin_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM auth.users WHERE username = 'admin'")
            .fetch_one(&auth.pool)
            .await
            .unwrap();
    // (name, ended_at, expires_at, last_seen_at) as SQL offsets from now.
    let sessions = [
        ("ended-2d", Some("-2 days"), "-1 day", "-2 days"),
        ("ended-1h", Some("-1 hour"), "+11 hours", "-1 hour"),
        ("expired-2d", None, "-2 days", "-2 days"),
        ("expired-2h", None, "-2 hours", "-2 hours"),
        ("idle-2d", None, "+1 hour", "-2 days"),
        ("idle-1h", None, "+1 hour", "-1 hour"),
        ("open", None, "+11 hours", "-1 minute"),
    ];
    for (name, ended, expires, seen) in sessions {
        sqlx::query(
            r#"INSERT INTO auth.sessions (id, user_id, token_hash, csrf_token, created_at,
                 last_seen_at, expires_at, ended_at, ended_reason)
               VALUES ($1, $2, sha256(convert_to($3, 'UTF8')), $3, now() - interval '3 days',
                 now() + $4::interval, now() + $5::interval, now() + $6::interval,
                 CASE WHEN $6::interval IS NOT NULL THEN 'logout' END)"#,
        )
        .bind(uuid::Uuid::new_v4())
        .bind(admin_id)
        .bind(name)
        .bind(seen)
        .bind(expires)
        .bind(ended)
        .execute(&auth.pool)
        .await
        .unwrap();
    }
    // (account, locked_until, last_failure_at) as offsets; the lock window is 15 minutes.
    let failures = [
        ("old", None, "-1 hour"),
        ("old-lock-over", Some("-30 minutes"), "-1 hour"),
        ("old-but-locked", Some("+10 minutes"), "-1 hour"),
        ("recent", None, "-1 minute"),
        ("recent-lock-over", Some("-1 second"), "-5 minutes"),
    ];
    for (account, locked, last) in failures {
        sqlx::query(
            r#"INSERT INTO auth.login_failures (account, failures, locked_until, last_failure_at)
               VALUES ($1, 3, now() + $2::interval, now() + $3::interval)"#,
        )
        .bind(account)
        .bind(locked)
        .bind(last)
        .execute(&auth.pool)
        .await
        .unwrap();
    }

    let purged = tracetrack_auth::store::purge(&auth.pool, 24 * 3600, 30 * 60, 15 * 60)
        .await
        .unwrap();
    assert_eq!(purged.sessions, 3, "{purged:?}");
    assert_eq!(purged.login_failures, 2, "{purged:?}");
    let names: Vec<&str> = sessions.iter().map(|s| s.0).collect();
    let kept: Vec<String> = sqlx::query_scalar(
        "SELECT csrf_token FROM auth.sessions WHERE csrf_token = ANY($1) ORDER BY csrf_token",
    )
    .bind(&names)
    .fetch_all(&auth.pool)
    .await
    .unwrap();
    assert_eq!(kept, ["ended-1h", "expired-2h", "idle-1h", "open"]);
    let accounts: Vec<String> =
        sqlx::query_scalar("SELECT account FROM auth.login_failures ORDER BY account")
            .fetch_all(&auth.pool)
            .await
            .unwrap();
    assert_eq!(accounts, ["old-but-locked", "recent", "recent-lock-over"]);
    // The real session is untouched and still works.
    auth.auth()
        .who_am_i(authed(pb::WhoAmIRequest {}, &live))
        .await
        .unwrap();
    // Nothing left to purge.
    let again = tracetrack_auth::store::purge(&auth.pool, 24 * 3600, 30 * 60, 15 * 60)
        .await
        .unwrap();
    assert_eq!(again, Default::default());
}
