//! The consumer library with a handler of the test's own: a poison event is parked (the rest of
//! its batch applies), listed, and replayed once the handler is fixed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use sqlx::PgConnection;
use tracetrack_common::consumer::{self, ApplyError, Consumer, ConsumerSettings, Handler};
use tracetrack_proto::events::v1::EventEnvelope;
use tracetrack_tests::*;

struct Picky {
    fixed: AtomicBool,
}

#[async_trait::async_trait]
impl Handler for Picky {
    async fn apply(&self, conn: &mut PgConnection, e: &EventEnvelope) -> Result<(), ApplyError> {
        if e.payload_json.contains("odd") && !self.fixed.load(Ordering::SeqCst) {
            return Err(ApplyError::Poison(
                "odd payloads are not understood yet".into(),
            ));
        }
        sqlx::query("INSERT INTO t.seen (id) VALUES ($1)")
            .bind(&e.event_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

#[tokio::test]
async fn poison_events_are_parked_listed_and_replayed_after_a_fix() {
    let db = fresh_database().await;
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA t; CREATE TABLE t.seen (id text PRIMARY KEY); {}",
        consumer::ddl("t")
    )))
    .execute(&pool)
    .await
    .unwrap();
    let prefix = unique_prefix();
    let stream = format!("{prefix}:events:test");
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for body in ["fine", "odd", "fine again"] {
        let env = EventEnvelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            event_type: "test.thing".into(),
            payload_json: format!("{{\"body\": \"{body}\"}}"),
            ..Default::default()
        };
        ids.push(env.event_id.clone());
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("envelope")
            .arg(env.encode_to_vec())
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    // The same event twice: applied once.
    let dup = EventEnvelope {
        event_id: ids[0].clone(),
        event_type: "test.thing".into(),
        payload_json: "{}".into(),
        ..Default::default()
    };
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("envelope")
        .arg(dup.encode_to_vec())
        .query_async(&mut redis)
        .await
        .unwrap();

    let handler = Arc::new(Picky {
        fixed: AtomicBool::new(false),
    });
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let c = Consumer {
        pool: pool.clone(),
        schema: "t".into(),
        redis: tracetrack_common::config::RedisSettings {
            url: redis_url(),
            ..Default::default()
        },
        settings: ConsumerSettings {
            group: "g".into(),
            consumer: "c1".into(),
            streams: vec![stream.clone()],
            batch_size: 100,
            block_ms: 100,
            claim_idle_ms: 1000,
        },
    };
    let task = tokio::spawn(c.run(handler.clone(), stop));
    eventually(
        Duration::from_secs(10),
        "the good events applied",
        || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM t.seen")
                .fetch_one(&pool)
                .await
                .unwrap()
                == 2
        },
    )
    .await;
    let parked = consumer::list_parked(&pool, "t").await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].0.to_string(), ids[1]);
    assert!(parked[0].2.contains("not understood"));

    // Replaying before the fix keeps it parked; after the fix it applies and leaves.
    assert_eq!(
        consumer::replay_parked(&pool, "t", handler.as_ref(), None)
            .await
            .unwrap(),
        (0, 1)
    );
    handler.fixed.store(true, Ordering::SeqCst);
    assert_eq!(
        consumer::replay_parked(&pool, "t", handler.as_ref(), None)
            .await
            .unwrap(),
        (1, 0)
    );
    assert!(consumer::list_parked(&pool, "t").await.unwrap().is_empty());
    let seen = db_i64(&pool, "SELECT count(*) FROM t.seen").await;
    assert_eq!(seen, 3);
    let _ = stop_tx.send(true);
    let _ = task.await;
}
