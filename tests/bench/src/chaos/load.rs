//! The chaos load: dispatchers scanning through the gateway the way the phone's offline queue
//! sends, and an admin reading the dashboard and the bills.
//!
//! Each dispatcher "scans" at a steady pace into its own queue (a parent, then its 30 children,
//! then the next parent), each item with the idempotency key made when it was scanned. A sender
//! sends the queue strictly in order and drops an item only on success (2xx) or a definitive
//! refusal (a problem document with `retryable: false`); transport failures, retryable problems
//! and 5xx are retried with the same key after `Retry-After` or a backoff, and a 401 after
//! logging in again. Every answer is recorded with its times; every acknowledged scan is kept
//! for the SQL checks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::{sleep, Instant};
use uuid::Uuid;

use crate::api::{Answer, Api};

/// Children of one mustard parent (its capacity): every parent is filled exactly.
pub const CHILDREN_PER_PARENT: u32 = 30;

/// One answer (or the lack of one), as the client saw it.
#[derive(Debug, Clone)]
pub struct Record {
    pub op: &'static str,
    pub start: Duration,
    pub end: Duration,
    /// 0: no answer (transport failure or timeout).
    pub status: u16,
    pub code: String,
}

impl Record {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// An acknowledged scan.
#[derive(Debug, Clone)]
pub struct Ack {
    pub parent: String,
    /// None: a parent scan.
    pub child: Option<String>,
    pub key: String,
}

/// A scan the server refused definitively.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub what: String,
    pub status: u16,
    pub code: String,
}

#[derive(Debug, Clone)]
struct Item {
    parent: String,
    child: Option<String>,
    key: String,
}

/// What every client shares.
pub struct Shared {
    pub t0: Instant,
    pub api: Api,
    pub records: Mutex<Vec<Record>>,
    pub acks: Mutex<Vec<Ack>>,
    pub refusals: Mutex<Vec<Refusal>>,
    /// Dispatchers add scans to their queues while this is set.
    pub producing: AtomicBool,
    /// Everything ends (after the queues are drained).
    pub stop: AtomicBool,
    /// Time between one dispatcher's scans.
    pub scan_interval: Duration,
}

impl Shared {
    pub fn new(api: Api, scan_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            t0: Instant::now(),
            api,
            records: Mutex::new(Vec::new()),
            acks: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            producing: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            scan_interval,
        })
    }

    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn record(&self, op: &'static str, start: Duration, a: &Answer) {
        let r = Record {
            op,
            start,
            end: self.now(),
            status: a.status,
            code: if a.ok() { String::new() } else { a.code() },
        };
        if let Ok(mut v) = self.records.lock() {
            v.push(r);
        }
    }

    /// Logs in until it works (waiting out refusals and outages); the session token.
    async fn login(&self, username: &str, password: &str) -> String {
        let body = json!({ "username": username, "password": password });
        let mut attempt = 0;
        loop {
            let start = self.now();
            let (a, retry_after) = self
                .api
                .send_keyed(Method::POST, "/api/v1/auth/login", None, Some(&body), None)
                .await;
            self.record("login", start, &a);
            if a.ok() {
                if let Some(t) = a.value().get("token").and_then(Value::as_str) {
                    return t.to_owned();
                }
            }
            sleep(retry_after.unwrap_or_else(|| backoff(attempt))).await;
            attempt += 1;
        }
    }
}

/// 100 ms doubling to 2 s, with ±50 % jitter.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(5)).min(2000);
    let ms = base as f64 * rand::thread_rng().gen_range(0.5..1.5);
    Duration::from_millis(ms as u64)
}

/// Is a failed answer worth retrying? The problem document says (`retryable`); without one, a
/// missing answer, a 5xx, a 408 or a 429 is.
fn retryable(a: &Answer) -> bool {
    if a.status == 0 {
        return true;
    }
    match a.value().get("retryable").and_then(Value::as_bool) {
        Some(r) => r,
        None => a.status >= 500 || a.status == 408 || a.status == 429,
    }
}

/// A logged-in user whose session is renewed on 401.
pub struct User {
    pub username: String,
    password: String,
    token: Mutex<String>,
}

impl User {
    pub fn new(username: String, password: String, token: String) -> Self {
        Self {
            username,
            password,
            token: Mutex::new(token),
        }
    }

    pub fn token(&self) -> String {
        self.token.lock().map(|t| t.clone()).unwrap_or_default()
    }

    async fn relogin(&self, shared: &Shared) {
        let t = shared.login(&self.username, &self.password).await;
        if let Ok(mut mine) = self.token.lock() {
            *mine = t;
        }
    }
}

/// One dispatcher: a producer filling the queue and a sender emptying it.
pub struct Dispatcher {
    pub user: User,
    index: usize,
    /// Children `CX<dd><nnnnn>` below this number were imported (unlinked) before the run;
    /// the rest (`CY…`) are new bags the scan registers.
    seeded: u32,
    queue: Mutex<VecDeque<Item>>,
    notify: Notify,
}

impl Dispatcher {
    pub fn new(index: usize, user: User, seeded: u32) -> Arc<Self> {
        Arc::new(Self {
            user,
            index,
            seeded,
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
        })
    }

    /// The QR of this dispatcher's `n`-th parent (mustard, numbers 80000 up: never seeded).
    fn parent_qr(&self, n: u32) -> String {
        format!("SB{}", 80_000 + self.index as u32 * 1000 + n)
    }

    /// This dispatcher's `n`-th child.
    pub fn child_qr(index: usize, n: u32, seeded: u32) -> String {
        let prefix = if n < seeded { "CX" } else { "CY" };
        format!("{prefix}{index:02}{n:05}")
    }

    pub fn queued(&self) -> usize {
        self.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// Scans at the shared pace while `producing` is set, until `stop`.
    pub async fn produce(self: Arc<Self>, shared: Arc<Shared>) {
        let mut tick = tokio::time::interval(shared.scan_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut parent_n, mut child_n, mut in_parent) = (0u32, 0u32, CHILDREN_PER_PARENT);
        let mut parent = String::new();
        while !shared.stop.load(Ordering::Relaxed) {
            tick.tick().await;
            if !shared.producing.load(Ordering::Relaxed) {
                continue;
            }
            let item = if in_parent == CHILDREN_PER_PARENT {
                parent = self.parent_qr(parent_n);
                parent_n += 1;
                in_parent = 0;
                Item {
                    parent: parent.clone(),
                    child: None,
                    key: format!("chaos-{}", Uuid::new_v4()),
                }
            } else {
                let child = Self::child_qr(self.index, child_n, self.seeded);
                child_n += 1;
                in_parent += 1;
                Item {
                    parent: parent.clone(),
                    child: Some(child),
                    key: format!("chaos-{}", Uuid::new_v4()),
                }
            };
            if let Ok(mut q) = self.queue.lock() {
                q.push_back(item);
            }
            self.notify.notify_one();
        }
    }

    /// Sends the queue in order until `stop` (and the queue is empty).
    pub async fn send(self: Arc<Self>, shared: Arc<Shared>) {
        loop {
            let front = self.queue.lock().ok().and_then(|q| q.front().cloned());
            let Some(item) = front else {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                let _ =
                    tokio::time::timeout(Duration::from_millis(50), self.notify.notified()).await;
                continue;
            };
            self.deliver(&shared, &item).await;
            if let Ok(mut q) = self.queue.lock() {
                q.pop_front();
            }
        }
    }

    /// Sends one scan until it is acknowledged or definitively refused.
    async fn deliver(&self, shared: &Shared, item: &Item) {
        let (op, path, body) = match &item.child {
            None => (
                "scan_parent",
                "/api/v1/scans/parent",
                json!({ "qr": item.parent }),
            ),
            Some(c) => (
                "scan_child",
                "/api/v1/scans/child",
                json!({ "parent_qr": item.parent, "child_qr": c }),
            ),
        };
        let mut attempt = 0;
        loop {
            let start = shared.now();
            let token = self.user.token();
            let (a, retry_after) = shared
                .api
                .send_keyed(
                    Method::POST,
                    path,
                    Some(&token),
                    Some(&body),
                    Some(&item.key),
                )
                .await;
            shared.record(op, start, &a);
            if a.ok() {
                if let Ok(mut acks) = shared.acks.lock() {
                    acks.push(Ack {
                        parent: item.parent.clone(),
                        child: item.child.clone(),
                        key: item.key.clone(),
                    });
                }
                return;
            }
            if a.status == 401 {
                self.user.relogin(shared).await;
                continue;
            }
            if !retryable(&a) {
                if let Ok(mut r) = shared.refusals.lock() {
                    r.push(Refusal {
                        what: format!(
                            "{op} {} {}",
                            item.parent,
                            item.child.as_deref().unwrap_or("")
                        ),
                        status: a.status,
                        code: a.code(),
                    });
                }
                return;
            }
            let wait = retry_after
                .or_else(|| a.retry_after())
                .unwrap_or_else(|| backoff(attempt));
            attempt += 1;
            sleep(wait).await;
        }
    }
}

/// The admin's reads: the dashboard and the first page of bills, about three times a second.
pub async fn reader(admin: Arc<User>, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        for (op, path) in [
            ("dashboard", "/api/v1/stats/dashboard"),
            ("bills", "/api/v1/bills?page_size=5"),
        ] {
            let start = shared.now();
            let a = shared.api.get(path, &admin.token()).await;
            shared.record(op, start, &a);
            if a.status == 401 {
                admin.relogin(&shared).await;
            }
        }
        sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
            failure: (status == 0).then_some("transport"),
        }
    }

    #[test]
    fn the_problem_document_decides() {
        assert!(retryable(&answer(0, "")));
        assert!(retryable(&answer(
            503,
            r#"{"code":"unavailable","retryable":true}"#
        )));
        assert!(retryable(&answer(
            409,
            r#"{"code":"conflict","retryable":true}"#
        )));
        assert!(!retryable(&answer(
            409,
            r#"{"code":"parent_full","retryable":false}"#
        )));
        assert!(retryable(&answer(502, "bad gateway")));
        assert!(!retryable(&answer(404, "not found")));
    }

    #[test]
    fn qrs_are_valid_and_distinct() {
        let a = Dispatcher::child_qr(3, 7, 10);
        let b = Dispatcher::child_qr(3, 17, 10);
        assert_eq!(a, "CX0300007");
        assert_eq!(b, "CY0300017");
        for qr in [a, b] {
            assert!(tracetrack_domain::qr::normalize(&qr).is_ok());
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(150));
        assert!(backoff(30) <= Duration::from_millis(3000));
    }
}
