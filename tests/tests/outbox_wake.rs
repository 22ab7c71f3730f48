//! The outbox relay is woken in-process after a commit that wrote an event (issue 18,
//! direction 5): with its poll an hour apart, a link's event still reaches the stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tracetrack_proto::auth::v1::Role;
use tracetrack_tests::*;

#[tokio::test]
async fn a_link_wakes_the_relay_that_would_otherwise_poll_an_hour_later() {
    let stack = Stack::start_with(1, &redis_url(), |s| {
        s.common.events.poll_interval_ms = 3_600_000;
        // Each link alone, through Mutations::commit_answer.
        s.link_batch.max = 1;
    })
    .await;
    let stream = tracetrack_common::outbox::stream_key(&stack.prefix, "bag-registry");
    let (_, ravi) = stack.user("ravi", Role::Dispatcher, "lucknow").await;
    stack.scan_parent(&ravi, "SB77001", "").await.unwrap();
    stack.scan_child(&ravi, "SB77001", "C77001").await.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    eventually(
        Duration::from_secs(30),
        "the link's event is published",
        || {
            let client = client.clone();
            let stream = stream.clone();
            async move {
                use redis::AsyncCommands;
                let Ok(mut r) = client.get_multiplexed_async_connection().await else {
                    return false;
                };
                let entries: Option<redis::streams::StreamRangeReply> =
                    r.xrange_all(&stream).await.ok();
                entries.is_some_and(|e| {
                    e.ids.iter().any(|e| {
                        e.get::<String>("type").as_deref() == Some("registry.child_linked")
                    })
                })
            }
        },
    )
    .await;
}
