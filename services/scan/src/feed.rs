//! The live feed behind WatchScans. One task per process reads scan's own Redis stream (which
//! every replica's outbox relay publishes to), so a subscriber on any replica sees every scan
//! recorded by any replica. Events fan out to the subscribers through a `broadcast` channel; a
//! subscriber that falls behind skips what it missed rather than failing.
//!
//! Redis is not the system of record: while it is down the feed is silent and the task
//! reconnects with backoff. When Redis restarted empty the relay re-publishes a recent window;
//! those re-published events (and any published twice) are recognised by age and event id and
//! not delivered again.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio::sync::{broadcast, watch};
use tracetrack_common::config::RedisSettings;
use tracetrack_common::outbox;
use tracetrack_proto::scan::v1 as pb;

use crate::store::ScanEventRow;

/// The outbox event type of a recorded scan attempt.
pub const EVENT_TYPE: &str = "scan.recorded";

pub type Feed = broadcast::Sender<Arc<pb::ScanEvent>>;

/// Resolves when `stop` turns true or its sender is gone.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The id of the stream's newest entry now (`0-0` for an empty stream), or `None` when Redis
/// does not answer within its timeouts. Reading from this id instead of `$` makes every event
/// published after start-up reach the subscribers, however late the reader's first XREAD runs.
pub async fn tail_id(settings: &RedisSettings, stream: &str) -> Option<String> {
    let attempt = async {
        let mut conn = tracetrack_common::redis::connect(settings).await?;
        let reply: StreamRangeReply = conn.xrevrange_count(stream, "+", "-", 1).await?;
        redis::RedisResult::Ok(
            reply
                .ids
                .first()
                .map(|e| e.id.clone())
                .unwrap_or_else(|| "0-0".to_owned()),
        )
    };
    let limit = Duration::from_millis(settings.connect_timeout_ms + settings.response_timeout_ms);
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(id)) => Some(id),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "redis unavailable at start-up; the live feed starts when it answers");
            None
        }
        Err(_) => None,
    }
}

/// Event ids delivered within the window, to drop duplicates.
struct Recent {
    window: Duration,
    order: VecDeque<(Instant, String)>,
    ids: HashSet<String>,
}

impl Recent {
    fn new(window: Duration) -> Self {
        Self {
            window,
            order: VecDeque::new(),
            ids: HashSet::new(),
        }
    }

    /// False when `id` was seen within the window.
    fn insert(&mut self, id: &str) -> bool {
        let now = Instant::now();
        while let Some((at, old)) = self.order.front() {
            if now.duration_since(*at) <= self.window {
                break;
            }
            self.ids.remove(old);
            self.order.pop_front();
        }
        if self.ids.contains(id) {
            return false;
        }
        self.ids.insert(id.to_owned());
        self.order.push_back((now, id.to_owned()));
        true
    }
}

pub struct Reader {
    pub redis: RedisSettings,
    pub stream: String,
    pub max_age: Duration,
    pub feed: Feed,
}

impl Reader {
    /// Reads the stream from `start` (or `$` when none) until `stop`, reconnecting with backoff.
    pub async fn run(self, start: Option<String>, mut stop: watch::Receiver<bool>) {
        let mut last = start.unwrap_or_else(|| "$".to_owned());
        let mut recent = Recent::new(self.max_age);
        let mut backoff = Duration::from_millis(200);
        // Shorter than the connection's response timeout, so an idle BLOCK is not an error.
        let block_ms = (self.redis.response_timeout_ms / 2).clamp(10, 1000) as usize;
        let options = StreamReadOptions::default().block(block_ms).count(500);
        loop {
            let connected = tokio::select! {
                c = tracetrack_common::redis::connect(&self.redis) => c,
                _ = stopped(&mut stop) => return,
            };
            match connected {
                Ok(mut conn) => {
                    backoff = Duration::from_millis(200);
                    loop {
                        let keys = [self.stream.as_str()];
                        let ids = [last.as_str()];
                        let read: redis::RedisResult<Option<StreamReadReply>> = tokio::select! {
                            r = conn.xread_options(&keys, &ids, &options) => r,
                            _ = stopped(&mut stop) => return,
                        };
                        match read {
                            Ok(reply) => {
                                for entry in
                                    reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids)
                                {
                                    last.clone_from(&entry.id);
                                    self.deliver(&entry, &mut recent);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "live feed lost redis; reconnecting");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "live feed: redis unavailable, retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut stop) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn deliver(&self, entry: &StreamId, recent: &mut Recent) {
        let Some(redis::Value::BulkString(bytes)) = entry.map.get("envelope") else {
            return;
        };
        let envelope = match outbox::decode_envelope(bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, id = %entry.id, "live feed: undecodable envelope");
                return;
            }
        };
        if envelope.event_type != EVENT_TYPE {
            return;
        }
        let event: ScanEventRow = match serde_json::from_str(&envelope.payload_json) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, event_id = %envelope.event_id, "live feed: bad scan payload");
                return;
            }
        };
        let age = Utc::now() - event.occurred_at;
        if age.to_std().is_ok_and(|a| a > self.max_age) {
            return;
        }
        if !recent.insert(&envelope.event_id) {
            return;
        }
        // No subscribers is not an error.
        let _ = self.feed.send(Arc::new(event.to_pb()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_drops_duplicates_within_the_window() {
        let mut r = Recent::new(Duration::from_secs(60));
        assert!(r.insert("a"));
        assert!(r.insert("b"));
        assert!(!r.insert("a"));
    }

    #[test]
    fn recent_forgets_after_the_window() {
        let mut r = Recent::new(Duration::ZERO);
        assert!(r.insert("a"));
        std::thread::sleep(Duration::from_millis(2));
        assert!(r.insert("a"));
        assert_eq!(r.ids.len(), 1);
    }
}
