//! API keys in a real browser (tests/browser/api_keys.test.mjs, Debian's Chromium through
//! playwright-core): an admin makes a key on the API keys page in Hindi at 360 px, sees its token
//! once, a script uses it (Bearer) to read an export, the admin revokes it and the list shows it
//! revoked; axe-core on the page. The gateway's token cache is 1 s here, so the revoked key's
//! refusal is seen at once (polled).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tracetrack_tests::*;

#[tokio::test]
async fn an_admin_makes_shows_once_and_revokes_a_key_in_chromium() {
    let stack = Stack::start(1).await;
    let gw = Gateway::start(&stack, |s| s.auth.cache_ttl_secs = 1).await;
    tracetrack_tests::browser::NodeTests::new(&["api_keys.test.mjs"], gw.addr)
        .run()
        .await;
    let (live, revoked): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE revoked_at IS NULL), count(*) FILTER (WHERE revoked_at IS NOT NULL)
         FROM auth.api_keys WHERE name = 'erp-hindi'",
    )
    .fetch_one(&stack.auth.pool)
    .await
    .unwrap();
    assert_eq!(
        (live, revoked),
        (0, 1),
        "one key made (the retried name refused), revoked"
    );
}
