//! The benchmark's users: dispatchers, billers and admins named `bench-d0001`, `bench-b0001`,
//! `bench-a0001`, … created through `POST /api/v1/users` as the admin, each logging in with its own
//! session, so the gateway's per-user rate limit applies to each virtual user as it would to a
//! person.
//!
//! Their password is derived from the admin's (SHA-256), so nobody without the admin password can
//! log in as them. Sessions are kept in a cache file (mode 0600, `.local/` is git-ignored) and
//! re-used while `GET /api/v1/auth/me` accepts them: logins cost an argon2 hash each and the
//! gateway allows 600 per minute per address, so a 1,000-user run would otherwise spend two
//! minutes logging in.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tracetrack_domain::DEFAULT_AREAS;

use crate::api::{enc, Api};
use crate::report::{count, rate};

/// How long set-up calls wait out 429s.
const PATIENCE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Dispatcher,
    Biller,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Dispatcher => "dispatcher",
            Role::Biller => "biller",
            Role::Admin => "admin",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Role::Dispatcher => "bench-d",
            Role::Biller => "bench-b",
            Role::Admin => "bench-a",
        }
    }

    /// The `k`-th (0-based) benchmark user of this role.
    pub fn username(self, k: usize) -> String {
        format!("{}{:04}", self.prefix(), k + 1)
    }

    /// A dispatcher's area: the default areas in turn.
    pub fn area(self, k: usize) -> Option<&'static str> {
        (self == Role::Dispatcher).then(|| DEFAULT_AREAS[k % DEFAULT_AREAS.len()])
    }
}

/// The benchmark users' password: strong by auth's policy, derived from the admin's.
pub fn bench_password(admin_password: &str) -> String {
    let digest = Sha256::digest(format!("tracetrack-bench:{admin_password}").as_bytes());
    format!("Bn7-{}", &hex::encode(digest)[..24])
}

/// Runs `f(0..n)` with at most `concurrency` at a time; the results in index order.
pub async fn concurrently<T, F, Fut>(n: usize, concurrency: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency.clamp(1, n.max(1)))
        .map(|_| {
            let f = f.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    out.push((i, f(i).await));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for w in workers {
        // A worker only ends by finishing its loop; a panic there is a bug worth seeing.
        match w.await {
            Ok(part) => all.extend(part),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// `{base_url: {username: token}}` on disk.
#[derive(Debug, Default)]
struct SessionCache {
    path: PathBuf,
    all: BTreeMap<String, BTreeMap<String, String>>,
}

impl SessionCache {
    fn load(path: &Path) -> Self {
        let all = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path: path.to_owned(),
            all,
        }
    }

    fn save(&self) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(&serde_json::to_vec(&self.all)?)?;
        }
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}

/// The admin's session and the benchmark users' sessions against one gateway.
pub struct Accounts {
    api: Api,
    admin_token: String,
    password: String,
    cache: Mutex<SessionCache>,
}

/// A logged-in benchmark user.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
}

impl Accounts {
    /// Logs the admin in (or re-uses a cached session).
    pub async fn open(
        api: &Api,
        admin_user: &str,
        admin_password: &str,
        cache_path: &Path,
    ) -> anyhow::Result<Self> {
        let mut cache = SessionCache::load(cache_path);
        let cached = cache
            .all
            .get(api.base())
            .and_then(|m| m.get(admin_user))
            .cloned();
        let admin_token = match cached {
            Some(t) if api.get("/api/v1/auth/me", &t).await.ok() => t,
            _ => {
                let t = login(api, admin_user, admin_password).await?;
                cache
                    .all
                    .entry(api.base().to_owned())
                    .or_default()
                    .insert(admin_user.to_owned(), t.clone());
                cache.save()?;
                t
            }
        };
        Ok(Self {
            api: api.clone(),
            admin_token,
            password: bench_password(admin_password),
            cache: Mutex::new(cache),
        })
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Usernames of this role's benchmark users that exist (active ones).
    async fn existing(&self, role: Role) -> anyhow::Result<HashSet<String>> {
        let mut names = HashSet::new();
        let mut page_token = String::new();
        loop {
            let path = format!(
                "/api/v1/users?q={}&role={}&page_size=200&page_token={}",
                role.prefix(),
                role.name(),
                enc(&page_token)
            );
            let a = self
                .api
                .send_patiently(Method::GET, &path, Some(&self.admin_token), None, PATIENCE)
                .await
                .check("listing users")?;
            let v = a.value();
            for u in v
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = u.get("username").and_then(Value::as_str) {
                    names.insert(n.to_owned());
                }
            }
            match v.get("next_page_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => page_token = t.to_owned(),
                _ => break,
            }
        }
        Ok(names)
    }

    /// Makes sure users 0..n of `role` exist; returns how many were created.
    pub async fn ensure(self: &Arc<Self>, role: Role, n: usize) -> anyhow::Result<usize> {
        if n == 0 {
            return Ok(0);
        }
        let existing = self.existing(role).await?;
        let missing: Vec<usize> = (0..n)
            .filter(|k| !existing.contains(&role.username(*k)))
            .collect();
        if missing.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let done = Arc::new(AtomicUsize::new(0));
        let total = missing.len();
        let this = self.clone();
        let missing = Arc::new(missing);
        let progress = done.clone();
        let results = concurrently(total, 8, move |i| {
            let this = this.clone();
            let missing = missing.clone();
            let done = progress.clone();
            async move {
                let k = missing[i];
                let mut body = json!({
                    "username": role.username(k),
                    "email": format!("{}@bench.tracetrack.invalid", role.username(k)),
                    "password": this.password,
                    "role": role.name(),
                });
                if let Some(area) = role.area(k) {
                    body["dispatch_area"] = json!(area);
                }
                let a = this
                    .api
                    .send_patiently(
                        Method::POST,
                        "/api/v1/users",
                        Some(&this.admin_token),
                        Some(&body),
                        PATIENCE,
                    )
                    .await;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 100 == 0 {
                    eprintln!("users: {n} / {total} {}s created", role.name());
                }
                if a.ok() || a.code() == "username_taken" {
                    Ok(())
                } else {
                    a.check(&format!("creating {}", role.username(k)))
                        .map(|_| ())
                }
            }
        })
        .await;
        for r in results {
            r?;
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "users: created {} {}s in {secs:.1} s ({} users/s)",
            count(total as u64),
            role.name(),
            rate(total as u64, secs)
        );
        Ok(total)
    }

    /// Sessions of users 0..n of `role` (which must exist): cached ones that still work, fresh
    /// logins for the rest.
    pub async fn sessions(self: &Arc<Self>, role: Role, n: usize) -> anyhow::Result<Vec<Session>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let cached: Vec<Option<String>> = {
            let cache = self.cache.lock().await;
            let m = cache.all.get(self.api.base());
            (0..n)
                .map(|k| m.and_then(|m| m.get(&role.username(k))).cloned())
                .collect()
        };
        let cached = Arc::new(cached);
        let this = self.clone();
        let checked = concurrently(n, 16, move |k| {
            let this = this.clone();
            let cached = cached.clone();
            async move {
                match &cached[k] {
                    Some(t) if this.api.get("/api/v1/auth/me", t).await.ok() => Some(t.clone()),
                    _ => None,
                }
            }
        })
        .await;
        let stale: Vec<usize> = (0..n).filter(|k| checked[*k].is_none()).collect();
        let mut tokens: Vec<Option<String>> = checked;
        if !stale.is_empty() {
            let started = Instant::now();
            let this = self.clone();
            let todo = Arc::new(stale.clone());
            let fresh = concurrently(todo.len(), 4, move |i| {
                let this = this.clone();
                let todo = todo.clone();
                async move { login(&this.api, &role.username(todo[i]), &this.password).await }
            })
            .await;
            let mut cache = self.cache.lock().await;
            let m = cache.all.entry(self.api.base().to_owned()).or_default();
            for (k, t) in stale.iter().zip(fresh) {
                let t = t?;
                m.insert(role.username(*k), t.clone());
                tokens[*k] = Some(t);
            }
            cache.save()?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "sessions: logged in {} {}s in {secs:.1} s ({} cached sessions re-used)",
                stale.len(),
                role.name(),
                n - stale.len()
            );
        }
        tokens
            .into_iter()
            .enumerate()
            .map(|(k, t)| {
                Ok(Session {
                    token: t.with_context(|| format!("no session for {}", role.username(k)))?,
                })
            })
            .collect()
    }
}

/// `POST /api/v1/auth/login`, waiting out the gateway's login rate limits; the session token.
pub async fn login(api: &Api, username: &str, password: &str) -> anyhow::Result<String> {
    let v = login_answer(api, username, password).await?;
    v.get("token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("login answered without a token")
}

/// `POST /api/v1/auth/login`'s whole answer (token, user, …); an account that must change its
/// password first is refused.
pub async fn login_answer(api: &Api, username: &str, password: &str) -> anyhow::Result<Value> {
    let body = json!({ "username": username, "password": password });
    let a = api
        .send_patiently(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&body),
            PATIENCE,
        )
        .await
        .check(&format!("logging in as {username} at {}", api.base()))?;
    let v = a.value();
    if v.get("must_change_password").and_then(Value::as_bool) == Some(true) {
        anyhow::bail!("{username} must change their password before doing anything else");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords() {
        assert_eq!(Role::Dispatcher.username(0), "bench-d0001");
        assert_eq!(Role::Biller.username(41), "bench-b0042");
        assert_eq!(Role::Dispatcher.area(1), Some(DEFAULT_AREAS[1]));
        assert_eq!(Role::Admin.area(1), None);
        let p = bench_password("secret");
        assert_eq!(p, bench_password("secret"));
        assert_ne!(p, bench_password("other"));
        assert!(p.len() >= 12 && p.chars().any(|c| c.is_ascii_uppercase()));
    }

    #[tokio::test]
    async fn concurrently_keeps_the_order() {
        let out = concurrently(50, 7, |i| async move { i * 2 }).await;
        assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>());
    }
}
