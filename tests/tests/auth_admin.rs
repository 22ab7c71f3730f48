//! User administration: the role matrix, self and last-admin rules, password rules, unique
//! names, idempotent replay, and the caller checks other services rely on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tonic::metadata::MetadataMap;
use tracetrack_common::caller::{CallerResolver, RemoteVerifier, TokenVerifier};
use tracetrack_common::config::AuthClientSettings;
use tracetrack_domain::{ErrorCode, Role};
use tracetrack_proto::auth::v1 as pb;
use tracetrack_tests::*;

fn with_key<T>(message: T, token: &str, key: &str) -> tonic::Request<T> {
    tracetrack_common::client::request(message, Some(token), Some(key))
}

/// Every user-admin RPC: only admins; others get permission_denied, no token unauthenticated.
#[tokio::test]
async fn role_matrix_over_every_user_admin_rpc() {
    let auth = AuthServer::fresh().await;
    let admin = auth.admin_token().await;
    let (target, _) = auth
        .create_user(&admin, "target", pb::Role::Biller, "")
        .await;
    let (_, biller) = auth.create_user(&admin, "bina", pb::Role::Biller, "").await;
    let (_, dispatcher) = auth
        .create_user(&admin, "dev", pb::Role::Dispatcher, "indore")
        .await;

    async fn call(
        auth: &AuthServer,
        rpc: usize,
        token: Option<&str>,
        id: &str,
    ) -> Result<(), tonic::Status> {
        let mut c = auth.users();
        fn req<T>(m: T, token: Option<&str>) -> tonic::Request<T> {
            tracetrack_common::client::request(m, token, None)
        }
        let id = id.to_owned();
        match rpc {
            0 => c
                .create_user(req(
                    pb::CreateUserRequest {
                        username: format!("new{}", uuid::Uuid::new_v4().simple())
                            .chars()
                            .take(20)
                            .collect(),
                        email: String::new(),
                        password: "Fresh-Sack-77".into(),
                        role: pb::Role::Biller as i32,
                        dispatch_area: String::new(),
                    },
                    token,
                ))
                .await
                .map(drop),
            1 => c
                .get_user(req(pb::GetUserRequest { id }, token))
                .await
                .map(drop),
            2 => c
                .list_users(req(pb::ListUsersRequest::default(), token))
                .await
                .map(drop),
            3 => c
                .update_user(req(
                    pb::UpdateUserRequest {
                        id,
                        email: Some("t@example.in".into()),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            4 => c
                .deactivate_user(req(pb::DeactivateUserRequest { id }, token))
                .await
                .map(drop),
            5 => c
                .unlock_user(req(pb::UnlockUserRequest { id }, token))
                .await
                .map(drop),
            6 => c
                .unlock_all_users(req(pb::UnlockAllUsersRequest {}, token))
                .await
                .map(drop),
            7 => c
                .reset_password(req(
                    pb::ResetPasswordRequest {
                        id,
                        temporary_password: "Temp-Sack-55".into(),
                    },
                    token,
                ))
                .await
                .map(drop),
            _ => unreachable!(),
        }
    }

    for rpc in 0..8 {
        for (who, token) in [("biller", &biller), ("dispatcher", &dispatcher)] {
            let code = code_of(call(&auth, rpc, Some(token), &target.id).await);
            assert_eq!(code, ErrorCode::PermissionDenied, "rpc {rpc} as {who}");
        }
        let code = code_of(call(&auth, rpc, None, &target.id).await);
        assert_eq!(code, ErrorCode::Unauthenticated, "rpc {rpc} anonymous");
    }
    // Deactivation (4) last: it ends the target's sessions but the admin goes on.
    for rpc in [0, 1, 2, 3, 5, 6, 7, 4] {
        call(&auth, rpc, Some(&admin), &target.id)
            .await
            .unwrap_or_else(|e| panic!("rpc {rpc} as admin: {e:?}"));
    }
}

#[tokio::test]
async fn nobody_changes_their_own_role_or_deactivates_themselves() {
    let auth = AuthServer::fresh().await;
    let admin = auth.admin_token().await;
    let me = auth
        .auth()
        .who_am_i(authed(pb::WhoAmIRequest {}, &admin))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let demote = pb::UpdateUserRequest {
        id: me.id.clone(),
        role: Some(pb::Role::Biller as i32),
        ..Default::default()
    };
    assert_eq!(
        code_of(auth.users().update_user(authed(demote, &admin)).await),
        ErrorCode::SelfChangeForbidden
    );
    let off = pb::DeactivateUserRequest { id: me.id.clone() };
    assert_eq!(
        code_of(auth.users().deactivate_user(authed(off, &admin)).await),
        ErrorCode::SelfChangeForbidden
    );
    // Editing one's own email is fine.
    let email = pb::UpdateUserRequest {
        id: me.id,
        email: Some("boss@example.in".into()),
        ..Default::default()
    };
    auth.users()
        .update_user(authed(email, &admin))
        .await
        .unwrap();
}

/// Two admins demoting each other at once: the changes serialise on the admin lock, so exactly
/// one wins and the other gets `last_admin`. The test holds the lock until both wait on it.
#[tokio::test]
async fn two_admins_demoting_each_other_leave_one_admin() {
    let auth = AuthServer::fresh().await;
    let a = auth.admin_token().await;
    let a_user = auth
        .auth()
        .who_am_i(authed(pb::WhoAmIRequest {}, &a))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let (b_user, b) = auth
        .create_user(&a, "second-admin", pb::Role::Admin, "")
        .await;

    let mut lock = auth.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tracetrack.auth.admins'))")
        .execute(&mut *lock)
        .await
        .unwrap();
    let demote = |token: String, id: String| {
        let mut c = auth.users();
        async move {
            c.update_user(authed(
                pb::UpdateUserRequest {
                    id,
                    role: Some(pb::Role::Biller as i32),
                    ..Default::default()
                },
                &token,
            ))
            .await
        }
    };
    let first = tokio::spawn(demote(a.clone(), b_user.id.clone()));
    let second = tokio::spawn(demote(b.clone(), a_user.id.clone()));
    let pool = auth.pool.clone();
    eventually(Duration::from_secs(10), "both demotions wait on the admin lock", || {
        let pool = pool.clone();
        async move {
            let waiting = db_i64(&pool, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").await;
            waiting == 2
        }
    })
    .await;
    lock.commit().await.unwrap();
    let results = [first.await.unwrap(), second.await.unwrap()];
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    let loser = results.into_iter().find(|r| r.is_err()).unwrap();
    assert_eq!(code_of(loser), ErrorCode::LastAdmin);
    let admins = db_i64(
        &auth.pool,
        "SELECT count(*) FROM auth.users WHERE role = 'admin' AND active",
    )
    .await;
    assert_eq!(admins, 1);
}

#[tokio::test]
async fn each_password_rule_and_forced_change_after_reset() {
    let auth = AuthServer::fresh().await;
    let admin = auth.admin_token().await;
    for (password, reason) in [
        ("Ab1!", "too_short"),
        ("alllowercase1", "too_simple"),
        ("Kishan-Seeds-1", "contains_username"),
        ("Password1", "too_common"),
    ] {
        let r = auth
            .users()
            .create_user(authed(
                pb::CreateUserRequest {
                    username: "kishan".into(),
                    email: String::new(),
                    password: password.into(),
                    role: pb::Role::Biller as i32,
                    dispatch_area: String::new(),
                },
                &admin,
            ))
            .await;
        let e = AppError::from_status(&r.unwrap_err());
        assert_eq!(e.code, ErrorCode::WeakPassword, "{password}");
        assert_eq!(e.detail("reason"), Some(reason), "{password}");
    }

    let (user, token) = auth
        .create_user(&admin, "kishan", pb::Role::Biller, "")
        .await;
    // Change own password: wrong current, weak new, then right.
    let change = |cur: &str, new: &str| pb::ChangePasswordRequest {
        current_password: cur.into(),
        new_password: new.into(),
    };
    let e = code_of(
        auth.auth()
            .change_password(authed(change("wrong", "Better-Sack-88"), &token))
            .await,
    );
    assert_eq!(e, ErrorCode::InvalidCredentials);
    let e = code_of(
        auth.auth()
            .change_password(authed(change(USER_PASSWORD, "short"), &token))
            .await,
    );
    assert_eq!(e, ErrorCode::WeakPassword);
    auth.auth()
        .change_password(authed(change(USER_PASSWORD, "Better-Sack-88"), &token))
        .await
        .unwrap();
    auth.login("kishan", "Better-Sack-88").await.unwrap();

    // Admin reset: a temporary password, sessions ended, a change forced at next login.
    let weak = pb::ResetPasswordRequest {
        id: user.id.clone(),
        temporary_password: "temp".into(),
    };
    assert_eq!(
        code_of(auth.users().reset_password(authed(weak, &admin)).await),
        ErrorCode::WeakPassword
    );
    let reset = pb::ResetPasswordRequest {
        id: user.id.clone(),
        temporary_password: "Temp-Sack-55".into(),
    };
    auth.users()
        .reset_password(authed(reset, &admin))
        .await
        .unwrap();
    assert_eq!(
        code_of(
            auth.auth()
                .who_am_i(authed(pb::WhoAmIRequest {}, &token))
                .await
        ),
        ErrorCode::Unauthenticated
    );
    let r = auth.login("kishan", "Temp-Sack-55").await.unwrap();
    assert!(r.must_change_password);

    // A service resolving this session sees the pending change and refuses other work.
    let resolver = CallerResolver::new(Arc::new(remote(&auth, "scan", 1)));
    let mut md = MetadataMap::new();
    md.insert(
        "authorization",
        format!("Bearer {}", r.token).parse().unwrap(),
    );
    let caller = resolver.resolve(&md).await.unwrap();
    assert_eq!(
        caller.user().unwrap_err().code,
        ErrorCode::PasswordChangeRequired
    );
    assert!(caller.user_pending_password_ok().is_ok());

    auth.auth()
        .change_password(authed(change("Temp-Sack-55", "Own-Sack-Pass-3"), &r.token))
        .await
        .unwrap();
    let me = auth
        .auth()
        .who_am_i(authed(pb::WhoAmIRequest {}, &r.token))
        .await
        .unwrap()
        .into_inner();
    assert!(!me.user.unwrap().must_change_password);
}

#[tokio::test]
async fn names_areas_and_validation() {
    let auth = AuthServer::fresh().await;
    let admin = auth.admin_token().await;
    let create = |username: &str, email: &str, role: pb::Role, area: &str| {
        let mut c = auth.users();
        let req = pb::CreateUserRequest {
            username: username.into(),
            email: email.into(),
            password: "Fresh-Sack-77".into(),
            role: role as i32,
            dispatch_area: area.into(),
        };
        let admin = admin.clone();
        async move { c.create_user(authed(req, &admin)).await }
    };
    create("meena", "meena@example.in", pb::Role::Dispatcher, "jaipur")
        .await
        .unwrap();
    assert_eq!(
        code_of(create("MEENA", "other@example.in", pb::Role::Biller, "").await),
        ErrorCode::UsernameTaken
    );
    assert_eq!(
        code_of(create("meena2", "MEENA@example.in", pb::Role::Biller, "").await),
        ErrorCode::EmailTaken
    );
    assert_eq!(
        code_of(create("raju", "", pb::Role::Dispatcher, "").await),
        ErrorCode::AreaRequired
    );
    assert_eq!(
        code_of(create("raju", "", pb::Role::Dispatcher, "mumbai").await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code_of(create("a b", "", pb::Role::Biller, "").await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code_of(create("raju", "not-an-email", pb::Role::Biller, "").await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code_of(create("raju", "", pb::Role::Unspecified, "").await),
        ErrorCode::InvalidArgument
    );
    // A biller made a dispatcher needs an area; one made a biller loses it.
    let (u, _) = auth
        .create_user(&admin, "sunil", pb::Role::Biller, "")
        .await;
    let to_dispatcher = pb::UpdateUserRequest {
        id: u.id.clone(),
        role: Some(pb::Role::Dispatcher as i32),
        ..Default::default()
    };
    assert_eq!(
        code_of(
            auth.users()
                .update_user(authed(to_dispatcher.clone(), &admin))
                .await
        ),
        ErrorCode::AreaRequired
    );
    let with_area = pb::UpdateUserRequest {
        dispatch_area: Some("akola".into()),
        ..to_dispatcher
    };
    let u2 = auth
        .users()
        .update_user(authed(with_area, &admin))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(u2.dispatch_area, "akola");
    let back = pb::UpdateUserRequest {
        id: u.id,
        role: Some(pb::Role::Biller as i32),
        ..Default::default()
    };
    let u3 = auth
        .users()
        .update_user(authed(back, &admin))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(u3.dispatch_area, "");
    // Listing with a prefix and keyset pages.
    let page = auth
        .users()
        .list_users(authed(
            pb::ListUsersRequest {
                page_size: 1,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.users.len(), 1);
    assert!(!page.next_page_token.is_empty());
    let next = auth
        .users()
        .list_users(authed(
            pb::ListUsersRequest {
                page_size: 200,
                page_token: page.next_page_token,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.users.len(), 2);
    assert!(next.next_page_token.is_empty());
    let m = auth
        .users()
        .list_users(authed(
            pb::ListUsersRequest {
                query: "ME".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        m.users
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>(),
        ["meena"]
    );
}

#[tokio::test]
async fn idempotent_replay_returns_the_first_answer_and_reuse_is_refused() {
    let auth = AuthServer::fresh().await;
    let admin = auth.admin_token().await;
    let req = pb::CreateUserRequest {
        username: "asha".into(),
        email: "asha@example.in".into(),
        password: "Fresh-Sack-77".into(),
        role: pb::Role::Biller as i32,
        dispatch_area: String::new(),
    };
    let first = auth
        .users()
        .create_user(with_key(req.clone(), &admin, "k-1"))
        .await
        .unwrap()
        .into_inner();
    let again = auth
        .users()
        .create_user(with_key(req.clone(), &admin, "k-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let other = pb::CreateUserRequest {
        username: "asha2".into(),
        email: String::new(),
        ..req.clone()
    };
    let e = code_of(
        auth.users()
            .create_user(with_key(other, &admin, "k-1"))
            .await,
    );
    assert_eq!(e, ErrorCode::IdempotencyKeyReused);
    // Without a key the same request is a new one, and the name is taken.
    assert_eq!(
        code_of(auth.users().create_user(authed(req, &admin)).await),
        ErrorCode::UsernameTaken
    );
    let n = db_i64(
        &auth.pool,
        "SELECT count(*) FROM auth.users WHERE username = 'asha'",
    )
    .await;
    assert_eq!(n, 1);
}

fn remote(auth: &AuthServer, service: &str, ttl: u64) -> RemoteVerifier {
    RemoteVerifier::new(&AuthClientSettings {
        url: auth.url(),
        service_token: Some(SecretString::from(service_token(service))),
        cache_ttl_secs: ttl,
        timeout_ms: 2000,
    })
    .unwrap()
}

/// Other services verify through auth with a local cache: logout, deactivation and role changes
/// reach them once the cache entry expires (here 2 s; at most 30 s in production).
#[tokio::test]
async fn logout_deactivation_and_role_change_take_effect_through_the_cache() {
    let auth = AuthServer::fresh().await;
    let admin = auth.admin_token().await;
    let verifier = remote(&auth, "scan", 2);
    let window = Duration::from_secs(6);

    // Logout.
    let (_, t1) = auth
        .create_user(&admin, "lata", pb::Role::Dispatcher, "hisar")
        .await;
    assert!(verifier.verify_user(&t1).await.unwrap().is_some());
    auth.auth()
        .logout(authed(pb::LogoutRequest {}, &t1))
        .await
        .unwrap();
    assert!(
        verifier.verify_user(&t1).await.unwrap().is_some(),
        "still cached right after logout"
    );
    eventually(window, "logout reaches the service", || async {
        verifier.verify_user(&t1).await.unwrap().is_none()
    })
    .await;

    // Role change.
    let (u, t2) = auth
        .create_user(&admin, "mohan", pb::Role::Dispatcher, "hisar")
        .await;
    assert_eq!(
        verifier.verify_user(&t2).await.unwrap().unwrap().role,
        Role::Dispatcher
    );
    let up = pb::UpdateUserRequest {
        id: u.id.clone(),
        role: Some(pb::Role::Biller as i32),
        ..Default::default()
    };
    auth.users().update_user(authed(up, &admin)).await.unwrap();
    eventually(window, "role change reaches the service", || async {
        verifier
            .verify_user(&t2)
            .await
            .unwrap()
            .is_some_and(|i| i.role == Role::Biller && i.area.is_none())
    })
    .await;

    // Deactivation.
    assert!(verifier.verify_user(&t2).await.unwrap().is_some());
    auth.users()
        .deactivate_user(authed(pb::DeactivateUserRequest { id: u.id }, &admin))
        .await
        .unwrap();
    eventually(window, "deactivation reaches the service", || async {
        verifier.verify_user(&t2).await.unwrap().is_none()
    })
    .await;
    assert_eq!(
        auth.login("mohan", USER_PASSWORD).await.unwrap_err().code,
        ErrorCode::InvalidCredentials
    );
}

/// RPCs that exist for one service refuse every other caller; Authenticate is for services only.
#[tokio::test]
async fn caller_service_checks() {
    let auth = AuthServer::fresh().await;
    let resolver = CallerResolver::new(Arc::new(remote(&auth, "scan", 30)));
    let caller_with = |token: &str| {
        let mut md = MetadataMap::new();
        md.insert("x-service-token", token.parse().unwrap());
        let resolver = resolver.clone();
        async move { resolver.resolve(&md).await }
    };
    let scan = caller_with(service_token("scan")).await.unwrap();
    assert_eq!(scan.service.as_deref(), Some("scan"));
    assert_eq!(
        scan.require_service(&["billing"]).unwrap_err().code,
        ErrorCode::CallerNotAllowed
    );
    assert!(scan.require_service(&["scan"]).is_ok());
    let billing = caller_with(service_token("billing")).await.unwrap();
    assert!(billing.require_service(&["billing"]).is_ok());
    assert_eq!(
        caller_with("forged-token").await.unwrap_err().code,
        ErrorCode::Unauthenticated
    );
    // No service token at all: not a service.
    let nobody = resolver.resolve(&MetadataMap::new()).await.unwrap();
    assert_eq!(
        nobody.require_service(&["billing"]).unwrap_err().code,
        ErrorCode::CallerNotAllowed
    );

    // Authenticate itself: refused without a service token, and with a forged one.
    let req = pb::AuthenticateRequest {
        user_token: "x".into(),
        service_token: String::new(),
    };
    assert_eq!(
        code_of(auth.auth().authenticate(req.clone()).await),
        ErrorCode::CallerNotAllowed
    );
    let mut forged = tonic::Request::new(req);
    forged
        .metadata_mut()
        .insert("x-service-token", "forged".parse().unwrap());
    assert_eq!(
        code_of(auth.auth().authenticate(forged).await),
        ErrorCode::Unauthenticated
    );
}
