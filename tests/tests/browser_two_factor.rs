//! Two-factor sign-in in a real browser (tests/browser/two_factor.test.mjs, Debian's Chromium
//! through playwright-core): enrolment with the QR code and the recovery codes, then a login with
//! the code step, at 360 px in English and Hindi, axe-core on both pages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tracetrack_proto::auth::v1::Role;
use tracetrack_tests::*;

#[tokio::test]
async fn enrolment_and_the_code_step_in_chromium() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |_| {}).await;
    stack
        .auth
        .create_user(&stack.admin, "bina", Role::Biller, "")
        .await;
    stack
        .auth
        .create_user(&stack.admin, "hema", Role::Biller, "")
        .await;
    tracetrack_tests::browser::NodeTests::new(&["two_factor.test.mjs"], gw.addr)
        .env("TT_USER_EN", "bina")
        .env("TT_USER_HI", "hema")
        .run()
        .await;
    let enrolled = db_i64(
        &stack.auth.pool,
        "SELECT count(*) FROM auth.second_factors WHERE confirmed_at IS NOT NULL",
    )
    .await;
    assert_eq!(enrolled, 2);
}
