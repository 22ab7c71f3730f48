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

/// Entries of `event_type` on `stream`.
async fn entries_of(client: &redis::Client, stream: &str, event_type: &str) -> usize {
    use redis::AsyncCommands;
    let Ok(mut r) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    let entries: Option<redis::streams::StreamRangeReply> = r.xrange_all(stream).await.ok();
    entries.map_or(0, |e| {
        e.ids
            .iter()
            .filter(|e| e.get::<String>("type").as_deref() == Some(event_type))
            .count()
    })
}

/// The group-commit paths wake their relays too: a batch of two links (bag-registry) and the
/// scans' records (scan), with both relays' polls an hour apart.
#[tokio::test]
async fn batched_links_and_scan_records_wake_their_relays() {
    let stack = Stack::start_configured(
        1,
        &redis_url(),
        |s| {
            s.common.events.poll_interval_ms = 3_600_000;
            s.link_batch.max = 2;
            s.link_batch.fill = true;
        },
        |s| s.common.events.poll_interval_ms = 3_600_000,
    )
    .await;
    let (_, ravi) = stack.user("ravi", Role::Dispatcher, "lucknow").await;
    stack.scan_parent(&ravi, "SB77002", "").await.unwrap();
    let (a, b) = tokio::join!(
        stack.scan_child(&ravi, "SB77002", "C77002"),
        stack.scan_child(&ravi, "SB77002", "C77003")
    );
    a.unwrap();
    b.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let registry = tracetrack_common::outbox::stream_key(&stack.prefix, "bag-registry");
    let scan = tracetrack_common::outbox::stream_key(&stack.prefix, "scan");
    eventually(
        Duration::from_secs(30),
        "both links and all three scans are published",
        || {
            let (client, registry, scan) = (client.clone(), registry.clone(), scan.clone());
            async move {
                entries_of(&client, &registry, "registry.child_linked").await == 2
                    && entries_of(&client, &scan, "scan.recorded").await == 3
            }
        },
    )
    .await;
}
