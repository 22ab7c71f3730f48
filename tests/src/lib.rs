//! Test harness: real services on port 0 against the local Postgres and Redis started by
//! `scripts/stack.sh` (via `make test`), each test in its own database and Redis key prefix.
//! Readiness is polled through gRPC health, never slept on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod model;
pub mod pki;
pub mod proxy;
pub mod redis_server;
pub mod smtp;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;
use tracetrack_proto::billing::v1 as billing_pb;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_proto::scan::v1 as scan_pb;

pub use tracetrack_common::AppError;

/// The bootstrap admin's password in tests.
pub const ADMIN_PASSWORD: &str = "Kisan-Root-2024!";
/// The second-factor encryption key of every test auth (32 bytes, base64; tests only).
pub const TEST_2FA_KEY: &str = "dGVzdC1vbmx5LXNlY29uZC1mYWN0b3Ita2V5LTMyYiE=";
/// The password `AuthServer::create_user` gives every user.
pub const USER_PASSWORD: &str = "Green-Seed-42x";
/// Service tokens every test auth knows.
pub const SERVICE_TOKENS: &[(&str, &str)] = &[
    ("gateway", "svc-token-gateway-0123456789"),
    ("scan", "svc-token-scan-0123456789"),
    ("billing", "svc-token-billing-0123456789"),
    ("bag-registry", "svc-token-registry-0123456789"),
    ("stats", "svc-token-stats-0123456789"),
];

pub fn service_token(name: &str) -> &'static str {
    SERVICE_TOKENS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap()
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `make test` (it starts Postgres and Redis)")
    })
}

pub fn pg_admin_url() -> String {
    env("TRACETRACK_TEST_PG")
}

pub fn redis_url() -> String {
    env("TRACETRACK_TEST_REDIS")
}

/// A fresh database on the test cluster; its URL. It is dropped when the test is over (see
/// [`Databases`]), unless the test failed: then it is kept for looking into, and its name is
/// printed (`make test` drops what the last run kept).
pub async fn fresh_database() -> String {
    let admin = pg_admin_url();
    let name = format!("tt_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    note_panics();
    DATABASES.with(|d| d.0.borrow_mut().push(name.clone()));
    with_database(&admin, &name)
}

thread_local! {
    /// The databases this thread made. libtest runs each test on a thread of its own and joins
    /// it before going on, so they are dropped when the test is over: after its runtime, its
    /// in-process services and their pools are gone.
    static DATABASES: Databases = const { Databases(std::cell::RefCell::new(Vec::new())) };
    /// Whether this thread panicked: a failed assertion (a panic in a task of a current-thread
    /// runtime counts too), so its databases are kept.
    static PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the panicking thread in [`PANICKED`], then reports the panic as before.
fn note_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = PANICKED.try_with(|p| p.set(true));
            previous(info);
        }));
    });
}

/// A test thread's databases, dropped (`WITH (FORCE)`: a connection left over is ended) when
/// the thread ends, or kept when it panicked. Runs in a thread destructor, so it never panics:
/// a failure is printed.
struct Databases(std::cell::RefCell<Vec<String>>);

impl Drop for Databases {
    fn drop(&mut self) {
        let names = std::mem::take(self.0.get_mut());
        if names.is_empty() {
            return;
        }
        if PANICKED.try_with(std::cell::Cell::get).unwrap_or(true) {
            say(&format!(
                "the test failed; its database kept: {}",
                names.join(", ")
            ));
            return;
        }
        let Ok(admin) = std::env::var("TRACETRACK_TEST_PG") else {
            return;
        };
        // A thread of its own, with its own runtime: this thread's are being torn down.
        let dropping = std::thread::Builder::new()
            .name("drop-test-databases".into())
            .spawn(move || drop_databases(&admin, &names));
        match dropping.map(std::thread::JoinHandle::join) {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => say(&format!("dropping the test's database failed: {e}")),
            Ok(Err(_)) | Err(_) => say("dropping the test's database failed"),
        }
    }
}

/// A line on stderr, ignoring a failure to write it (`eprintln!` would panic, and a panic in a
/// thread destructor aborts).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn drop_databases(admin: &str, names: &[String]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin).await?;
        for name in names {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await?;
        }
        anyhow::Ok(())
    })
}

/// The same server URL, another database.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{db}")
}

pub fn unique_prefix() -> String {
    format!("tt-test-{}", uuid::Uuid::new_v4().simple())
}

/// What every service's test settings share: the database (migrated at start, a small pool with
/// more patience than production's default, since races put dozens of requests on it), Redis and
/// this test's key prefix, a quick outbox relay.
pub fn common_settings(
    c: &mut tracetrack_common::config::CommonSettings,
    db_url: &str,
    redis_url: &str,
    prefix: &str,
    max_connections: u32,
) {
    c.database.url = SecretString::from(db_url.to_owned());
    c.database.max_connections = max_connections;
    c.database.migrate_on_start = true;
    c.database.acquire_timeout_ms = 3000;
    c.redis.url = redis_url.to_owned();
    c.events.key_prefix = prefix.to_owned();
    c.events.poll_interval_ms = 20;
}

/// [`common_settings`] for a service that calls `auth` with its own service token.
fn service_common(
    c: &mut tracetrack_common::config::CommonSettings,
    db_url: &str,
    redis_url: &str,
    prefix: &str,
    auth: &AuthServer,
    service: &str,
    max_connections: u32,
) {
    common_settings(c, db_url, redis_url, prefix, max_connections);
    c.auth.url = auth.url();
    c.auth.service_token = Some(SecretString::from(service_token(service)));
}

/// Auth settings for a test: port 0, migrations at start, small pool, known service tokens.
pub fn auth_settings(db_url: &str, redis_url: &str, prefix: &str) -> tracetrack_auth::Settings {
    let mut s = tracetrack_auth::Settings::default();
    common_settings(&mut s.common, db_url, redis_url, prefix, 5);
    s.common.shutdown.drain_timeout_ms = 5000;
    s.bootstrap_admin_password = Some(SecretString::from(ADMIN_PASSWORD));
    // A dev key, so tests can enrol a second factor (require_2fa_for_admins stays off).
    s.second_factor.encryption_key = Some(SecretString::from(TEST_2FA_KEY));
    s.service_tokens = SERVICE_TOKENS
        .iter()
        .map(|(n, t)| ((*n).to_owned(), SecretString::from(*t)))
        .collect();
    s
}

/// Runs a built service `Application` on a task until stopped; returns once it reports SERVING.
macro_rules! running {
    ($app:expr) => {{
        let app = $app;
        let (addr, admin_addr, pool) = (app.grpc_addr(), app.admin_addr(), app.pool());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        wait_serving(addr, "").await;
        Running {
            addr,
            admin_addr,
            pool,
            stop: Some(tx),
            task: Some(task),
        }
    }};
}

/// A running auth service: a [`Running`] with auth's own helpers.
pub struct AuthServer(Running);

impl std::ops::Deref for AuthServer {
    type Target = Running;

    fn deref(&self) -> &Running {
        &self.0
    }
}

impl AuthServer {
    pub async fn start(settings: tracetrack_auth::Settings) -> Self {
        let _ = tracetrack_common::telemetry::init("test", &settings.common.telemetry);
        Self(running!(tracetrack_auth::Application::build(settings)
            .await
            .unwrap()))
    }

    /// A fresh database, the shared Redis with a unique prefix, default settings.
    pub async fn fresh() -> Self {
        let db = fresh_database().await;
        Self::start(auth_settings(&db, &redis_url(), &unique_prefix())).await
    }

    pub fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect_lazy()
    }

    pub fn auth(&self) -> pb::auth_service_client::AuthServiceClient<Channel> {
        pb::auth_service_client::AuthServiceClient::new(self.channel())
    }

    pub fn users(&self) -> pb::user_admin_service_client::UserAdminServiceClient<Channel> {
        pb::user_admin_service_client::UserAdminServiceClient::new(self.channel())
    }

    pub async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<pb::LoginResponse, AppError> {
        // Login is for the gateway only: tests call it as the gateway does.
        let mut req = tonic::Request::new(pb::LoginRequest {
            username: username.into(),
            password: password.into(),
        });
        req.metadata_mut()
            .insert("x-service-token", service_token("gateway").parse().unwrap());
        self.auth()
            .login(req)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| AppError::from_status(&s))
    }

    pub async fn admin_token(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await.unwrap().token
    }

    /// Creates a user through the API as `admin_token`; returns (user, token after login).
    pub async fn create_user(
        &self,
        admin_token: &str,
        username: &str,
        role: pb::Role,
        area: &str,
    ) -> (pb::User, String) {
        let password = USER_PASSWORD.to_owned();
        let user = self
            .users()
            .create_user(authed(
                pb::CreateUserRequest {
                    username: username.into(),
                    email: format!("{username}@example.in"),
                    password: password.clone(),
                    role: role as i32,
                    dispatch_area: area.into(),
                },
                admin_token,
            ))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        let token = self.login(username, &password).await.unwrap().token;
        (user, token)
    }

    /// Scrapes the admin port's /metrics and returns the value of one series (0 if absent).
    pub async fn metric(&self, series: &str) -> f64 {
        metric(self.admin_addr, series).await
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.0.stop().await
    }
}

/// A call's answer, or its error as the stable code and message it carries.
pub async fn answer<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, AppError> {
    res(call.await)
}

/// [`answer`] of a call already awaited.
pub fn res<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, AppError> {
    r.map(tonic::Response::into_inner)
        .map_err(|s| AppError::from_status(&s))
}

/// The stable error code of a failed [`answer`].
pub fn code<T: std::fmt::Debug>(r: Result<T, AppError>) -> ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code,
    }
}

/// A request carrying a session token.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    tracetrack_common::client::request(message, Some(token), None)
}

/// The stable error code of a failed call.
pub fn code_of<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => AppError::from_status(&s).code,
    }
}

pub async fn health(addr: SocketAddr, service: &str) -> Option<ServingStatus> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(resp.into_inner().status).ok()
}

/// Polls gRPC health until `want` (bounded: panics after 30 s).
pub async fn wait_health(addr: SocketAddr, service: &str, want: ServingStatus) {
    let start = Instant::now();
    loop {
        if health(addr, service).await == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{addr} did not become {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn wait_serving(addr: SocketAddr, service: &str) {
    wait_health(addr, service, ServingStatus::Serving).await;
}

/// Reads one series from a Prometheus text page (exact match of name and labels).
pub async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let body = http_get(admin, "/metrics").await;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// A minimal HTTP/1.1 GET over a raw socket (the admin port speaks plain HTTP).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// Polls `check` every 50 ms until it returns true, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bag-registry client for `url` (connecting on first use).
pub fn registry_at(url: &str) -> RegistryClient {
    let channel = Channel::from_shared(url.to_owned()).unwrap().connect_lazy();
    RegistryClient::new(channel)
}

pub type RegistryClient = reg::bag_registry_service_client::BagRegistryServiceClient<Channel>;

/// `n` loose children straight into bag-registry's table (`{prefix}000001`, …; area lucknow):
/// exports long enough to outlast the HTTP/2 flow-control windows while their reader waits.
pub async fn bulk_children(db: &str, prefix: &str, n: u32) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO registry.bags (qr, kind, area) \
         SELECT $1 || lpad(g::text, 6, '0'), 'child', 'lucknow' FROM generate_series(1, $2) g",
    )
    .bind(prefix)
    .bind(i64::from(n))
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Path of a workspace binary built next to the test executable (`make test` builds them).
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first (make test does)",
        bin.display()
    );
    bin
}

pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `tests/python/validate_epcis.py` (the project venv, `scripts/venv.sh`) on `docs` against
/// GS1's EPCIS 2.0 JSON schema in `tests/fixtures/epcis`; its exit code and output.
pub fn validate_epcis(docs: &[&std::path::Path]) -> (i32, String) {
    let root = repo_root();
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/python/validate_epcis.py"))
        .arg(root.join("tests/fixtures/epcis/EPCIS-JSON-Schema.json"))
        .args(docs)
        .output()
        .expect("the project .venv (scripts/venv.sh) must exist");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// [`validate_epcis`] on `body`, written as `name` to a temporary file (removed afterwards).
pub fn validate_epcis_text(name: &str, body: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("tt-epcis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    let result = validate_epcis(&[&path]);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// An import's result workbook (sheets Summary, Done, Problems) as the gateway answered it.
pub fn result_book(bytes: Vec<u8>) -> calamine::Xlsx<std::io::Cursor<Vec<u8>>> {
    calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap()
}

/// A sheet's rows after its header, each cell as text.
pub fn result_rows(
    book: &mut calamine::Xlsx<std::io::Cursor<Vec<u8>>>,
    sheet: &str,
) -> Vec<Vec<String>> {
    use calamine::{Data, Reader};
    let range = book.worksheet_range(sheet).unwrap();
    let mut out: Vec<Vec<String>> = range
        .rows()
        .map(|r| {
            r.iter()
                .map(|c| match c {
                    Data::Float(f) => format!("{f}"),
                    Data::Int(i) => i.to_string(),
                    Data::Empty => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    out.remove(0);
    out
}

/// The value of the Summary sheet's row `what`.
pub fn result_summary(book: &mut calamine::Xlsx<std::io::Cursor<Vec<u8>>>, what: &str) -> String {
    result_rows(book, "Summary")
        .into_iter()
        .find(|r| r[0] == what)
        .unwrap_or_else(|| panic!("no {what:?} in the summary"))[1]
        .clone()
}

/// bag-registry settings for a test, calling `auth` with the registry's service token.
pub fn registry_settings(
    db_url: &str,
    redis_url: &str,
    prefix: &str,
    auth: &AuthServer,
) -> tracetrack_bag_registry::Settings {
    let mut s = tracetrack_bag_registry::Settings::default();
    service_common(
        &mut s.common,
        db_url,
        redis_url,
        prefix,
        auth,
        "bag-registry",
        10,
    );
    s
}

/// Services' URLs, comma-separated.
pub fn urls(services: &[Running]) -> String {
    services
        .iter()
        .map(Running::url)
        .collect::<Vec<_>>()
        .join(",")
}

/// A running in-process service (any of ours): its address, admin address and stop handle.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub pool: sqlx::PgPool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Ends the task abruptly, as a crash would (no drain, nothing acknowledged).
    pub fn crash(mut self) {
        self.stop.take();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn start_registry(settings: tracetrack_bag_registry::Settings) -> Running {
    running!(tracetrack_bag_registry::Application::build(settings)
        .await
        .unwrap())
}

/// auth + bag-registry (N replicas) + scan, on one fresh database and Redis prefix.
pub struct Stack {
    pub auth: AuthServer,
    pub registries: Vec<Running>,
    pub scan: Running,
    /// The bootstrap admin's session token.
    pub admin: String,
    pub db: String,
    pub prefix: String,
}

pub fn scan_settings(
    db_url: &str,
    redis_url: &str,
    prefix: &str,
    auth: &AuthServer,
    registry_urls: &str,
) -> tracetrack_scan::Settings {
    let mut s = tracetrack_scan::Settings::default();
    service_common(&mut s.common, db_url, redis_url, prefix, auth, "scan", 10);
    s.registry_url = registry_urls.to_owned();
    s
}

pub async fn start_scan(settings: tracetrack_scan::Settings) -> Running {
    running!(tracetrack_scan::Application::build(settings).await.unwrap())
}

impl Stack {
    pub async fn start(registry_replicas: usize) -> Self {
        Self::start_on(registry_replicas, &redis_url()).await
    }

    pub fn scan_client(
        &self,
    ) -> tracetrack_proto::scan::v1::scan_service_client::ScanServiceClient<Channel> {
        tracetrack_proto::scan::v1::scan_service_client::ScanServiceClient::new(
            Channel::from_shared(self.scan.url())
                .unwrap()
                .connect_lazy(),
        )
    }

    pub fn registry_client(&self) -> RegistryClient {
        registry_at(&self.registries[0].url())
    }

    /// A user of `role` (area for dispatchers) and their session token.
    pub async fn user(&self, username: &str, role: pb::Role, area: &str) -> (pb::User, String) {
        self.auth
            .create_user(&self.admin, username, role, area)
            .await
    }

    pub async fn scan_parent(
        &self,
        token: &str,
        qr: &str,
        area: &str,
    ) -> Result<scan_pb::ScanParentResponse, AppError> {
        let (qr, area) = (qr.into(), area.into());
        let req = scan_pb::ScanParentRequest { qr, area };
        answer(self.scan_client().scan_parent(authed(req, token))).await
    }

    pub async fn scan_child(
        &self,
        token: &str,
        parent: &str,
        child: &str,
    ) -> Result<scan_pb::ScanChildResponse, AppError> {
        let (parent_qr, child_qr) = (parent.into(), child.into());
        let req = scan_pb::ScanChildRequest {
            parent_qr,
            child_qr,
        };
        answer(self.scan_client().scan_child(authed(req, token))).await
    }

    pub async fn undo(
        &self,
        token: &str,
        parent: &str,
    ) -> Result<scan_pb::UndoLastChildResponse, AppError> {
        let (parent_qr, child_qr) = (parent.into(), String::new());
        let req = scan_pb::UndoLastChildRequest {
            parent_qr,
            child_qr,
        };
        answer(self.scan_client().undo_last_child(authed(req, token))).await
    }

    pub async fn bag(&self, token: &str, qr: &str) -> Result<reg::Bag, AppError> {
        let req = reg::GetBagRequest { qr: qr.into() };
        let got = answer(self.registry_client().get_bag(authed(req, token))).await;
        got.map(|r| r.bag.unwrap())
    }

    /// Registers a bag through bag-registry as `token`'s user.
    pub async fn register(
        &self,
        token: &str,
        qr: &str,
        kind: reg::BagType,
        area: &str,
    ) -> Result<reg::Bag, AppError> {
        let (qr, r#type, area) = (qr.into(), kind as i32, area.into());
        let req = reg::RegisterBagRequest { qr, r#type, area };
        let got = answer(self.registry_client().register_bag(authed(req, token))).await;
        got.map(|r| r.bag.unwrap())
    }

    /// Puts `parent` on `bill` in bag-registry, as billing does (no user behind the call).
    pub async fn claim_for_bill(
        &self,
        parent: &str,
        bill: &str,
    ) -> Result<reg::ClaimParentResponse, AppError> {
        let (parent_qr, bill_id) = (parent.into(), bill.into());
        let req = self.as_service(
            reg::ClaimParentRequest { parent_qr, bill_id },
            None,
            "billing",
        );
        answer(self.registry_client().claim_parent(req)).await
    }

    /// Takes `parent` off `bill` in bag-registry, as billing does.
    pub async fn release_from_bill(
        &self,
        parent: &str,
        bill: &str,
    ) -> Result<reg::ReleaseParentResponse, AppError> {
        let (parent_qr, bill_id) = (parent.into(), bill.into());
        let req = reg::ReleaseParentRequest { parent_qr, bill_id };
        let req = self.as_service(req, None, "billing");
        answer(self.registry_client().release_parent(req)).await
    }

    /// Freezes `bill`'s parents in bag-registry, as billing does when it completes the bill.
    pub async fn freeze_for_bill(
        &self,
        bill: &str,
    ) -> Result<reg::FreezeParentsResponse, AppError> {
        let req = reg::FreezeParentsRequest {
            bill_id: bill.into(),
        };
        let req = self.as_service(req, None, "billing");
        answer(self.registry_client().freeze_parents(req)).await
    }

    /// Unfreezes them, as billing does when it reopens the bill.
    pub async fn unfreeze_for_bill(
        &self,
        bill: &str,
    ) -> Result<reg::UnfreezeParentsResponse, AppError> {
        let req = reg::UnfreezeParentsRequest {
            bill_id: bill.into(),
        };
        let req = self.as_service(req, None, "billing");
        answer(self.registry_client().unfreeze_parents(req)).await
    }

    /// A request to bag-registry as `service` (its service token) on behalf of `token`'s user.
    pub fn as_service<T>(
        &self,
        message: T,
        token: Option<&str>,
        service: &str,
    ) -> tonic::Request<T> {
        let mut req = tracetrack_common::client::request(message, token, None);
        req.metadata_mut()
            .insert("x-service-token", service_token(service).parse().unwrap());
        req
    }
}

/// A gateway in front of a [`Stack`].
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Gateway {
    pub async fn start(
        stack: &Stack,
        configure: impl FnOnce(&mut tracetrack_gateway::Settings),
    ) -> Self {
        let mut s = tracetrack_gateway::Settings {
            http_addr: "127.0.0.1:0".into(),
            admin_addr: "127.0.0.1:0".into(),
            ..Default::default()
        };
        s.redis.url = redis_url();
        s.redis_key_prefix = stack.prefix.clone();
        s.auth.url = stack.auth.url();
        s.auth.service_token = Some(SecretString::from(service_token("gateway")));
        s.registry_url = stack.registry_urls();
        s.scan_url = stack.scan.url();
        s.sse_heartbeat_secs = 1;
        configure(&mut s);
        let app = tracetrack_gateway::Application::build(s).await.unwrap();
        let (addr, admin_addr) = (app.http_addr, app.admin_addr);
        let (tx, rx) = oneshot::channel();
        tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        let gw = Self {
            addr,
            admin_addr,
            stop: Some(tx),
        };
        let client = reqwest::Client::new();
        let start = Instant::now();
        while client
            .get(gw.url("/healthz"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .ok()
            != Some(true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "gateway did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gw
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The OpenAPI document it serves.
    pub async fn openapi(&self) -> serde_json::Value {
        public_json(&reqwest::Client::new(), self.url("/api/v1/openapi.json")).await
    }

    /// Begins the gateway's shutdown, as SIGTERM does.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn stats_settings(
    db_url: &str,
    redis_url: &str,
    prefix: &str,
    auth: &AuthServer,
) -> tracetrack_stats::Settings {
    let mut s = tracetrack_stats::Settings::default();
    service_common(&mut s.common, db_url, redis_url, prefix, auth, "stats", 5);
    s.consumer_block_ms = 200;
    s.consumer_claim_idle_ms = 1000;
    s
}

pub async fn start_stats(settings: tracetrack_stats::Settings) -> Running {
    running!(tracetrack_stats::Application::build(settings)
        .await
        .unwrap())
}

impl Stack {
    /// Like [`Stack::start`], with every service on the given Redis.
    pub async fn start_on(registry_replicas: usize, redis: &str) -> Self {
        Self::start_with(registry_replicas, redis, |_| {}).await
    }

    /// auth, `registry_replicas` bag-registries (each adjusted by `configure_registry`) and scan
    /// on a fresh database and key prefix, every service on `redis`.
    pub async fn start_with(
        registry_replicas: usize,
        redis: &str,
        configure_registry: impl Fn(&mut tracetrack_bag_registry::Settings),
    ) -> Self {
        Self::start_configured(registry_replicas, redis, configure_registry, |_| {}).await
    }

    /// [`Stack::start_with`], with scan's settings adjusted by `configure_scan` too.
    pub async fn start_configured(
        registry_replicas: usize,
        redis: &str,
        configure_registry: impl Fn(&mut tracetrack_bag_registry::Settings),
        configure_scan: impl FnOnce(&mut tracetrack_scan::Settings),
    ) -> Self {
        let db = fresh_database().await;
        let prefix = unique_prefix();
        let auth = AuthServer::start(auth_settings(&db, redis, &prefix)).await;
        let mut registries = Vec::new();
        for _ in 0..registry_replicas {
            let mut s = registry_settings(&db, redis, &prefix, &auth);
            configure_registry(&mut s);
            registries.push(start_registry(s).await);
        }
        let mut scan = scan_settings(&db, redis, &prefix, &auth, &urls(&registries));
        configure_scan(&mut scan);
        let scan = start_scan(scan).await;
        let admin = auth.admin_token().await;
        Self {
            auth,
            registries,
            scan,
            admin,
            db,
            prefix,
        }
    }

    /// The registry replicas' URLs, comma-separated (the form services take them in).
    pub fn registry_urls(&self) -> String {
        urls(&self.registries)
    }

    pub async fn start_stats(&self, redis: &str) -> Running {
        let mut s = stats_settings(&self.db, redis, &self.prefix, &self.auth);
        s.registry_url = self.registry_urls();
        start_stats(s).await
    }
}

/// The dashboard figures per area as the owning services' data says: (parents, children, unlinked)
/// from bag-registry and successful child scans from scan.
pub async fn truth(
    pool: &sqlx::PgPool,
) -> (std::collections::BTreeMap<String, (i64, i64, i64)>, i64) {
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        r#"SELECT area, count(*) FILTER (WHERE kind = 'parent'), count(*) FILTER (WHERE kind = 'child'),
                  count(*) FILTER (WHERE kind = 'child' AND parent_qr IS NULL)
           FROM registry.bags GROUP BY area"#,
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let scans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM scan.scan_events WHERE kind = 'child' AND outcome = 'ok'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (
        rows.into_iter()
            .map(|(a, p, c, u)| (a, (p, c, u)))
            .collect(),
        scans,
    )
}

pub fn dashboard_figures(
    d: &tracetrack_proto::stats::v1::Dashboard,
) -> (std::collections::BTreeMap<String, (i64, i64, i64)>, i64) {
    (
        d.areas
            .iter()
            .filter(|a| a.parents != 0 || a.children != 0 || a.unlinked_children != 0)
            .map(|a| (a.area.clone(), (a.parents, a.children, a.unlinked_children)))
            .collect(),
        d.scans_today,
    )
}

// ---------------------------------------------------------------------------------- billing

/// billing settings for a test, calling `auth` with billing's service token and bag-registry at
/// `registry_urls` (comma-separated replicas). The sweeper runs often and settles work left
/// unsettled for more than a second, so crash tests finish quickly.
pub fn billing_settings(
    db_url: &str,
    redis_url: &str,
    prefix: &str,
    auth: &AuthServer,
    registry_urls: &str,
) -> tracetrack_billing::Settings {
    let mut s = tracetrack_billing::Settings::default();
    service_common(
        &mut s.common,
        db_url,
        redis_url,
        prefix,
        auth,
        "billing",
        10,
    );
    s.registry_url = registry_urls.to_owned();
    s.sweeper_interval_ms = 100;
    s.sweeper_settle_after_ms = 1000;
    s
}

pub async fn start_billing(settings: tracetrack_billing::Settings) -> Running {
    running!(tracetrack_billing::Application::build(settings)
        .await
        .unwrap())
}

/// A [`Stack`] plus N billing replicas (each calling every registry replica).
pub struct BillingStack {
    pub stack: Stack,
    pub billings: Vec<Running>,
}

impl std::ops::Deref for BillingStack {
    type Target = Stack;

    fn deref(&self) -> &Stack {
        &self.stack
    }
}

pub type BillingClient =
    tracetrack_proto::billing::v1::billing_service_client::BillingServiceClient<Channel>;

impl BillingStack {
    pub async fn start(registry_replicas: usize, billing_replicas: usize) -> Self {
        Self::start_with(registry_replicas, billing_replicas, |_| {}, |_| {}).await
    }

    /// As [`BillingStack::start`], with a chance to adjust the registry's and billing's settings.
    pub async fn start_with(
        registry_replicas: usize,
        billing_replicas: usize,
        configure_registry: impl Fn(&mut tracetrack_bag_registry::Settings),
        configure_billing: impl Fn(&mut tracetrack_billing::Settings),
    ) -> Self {
        let stack = Stack::start_with(registry_replicas, &redis_url(), configure_registry).await;
        let mut billings = Vec::new();
        for _ in 0..billing_replicas {
            let mut s = billing_settings(
                &stack.db,
                &redis_url(),
                &stack.prefix,
                &stack.auth,
                &stack.registry_urls(),
            );
            configure_billing(&mut s);
            billings.push(start_billing(s).await);
        }
        Self { stack, billings }
    }

    /// A client of billing replica `i` (modulo the number of replicas).
    pub fn billing_at(&self, i: usize) -> BillingClient {
        let replica = &self.billings[i % self.billings.len()];
        BillingClient::new(Channel::from_shared(replica.url()).unwrap().connect_lazy())
    }

    pub fn billing(&self) -> BillingClient {
        self.billing_at(0)
    }

    /// billing's pool (its schema on the test database).
    pub fn billing_pool(&self) -> &sqlx::PgPool {
        &self.billings[0].pool
    }

    /// bag-registry's pool.
    pub fn registry_pool(&self) -> &sqlx::PgPool {
        &self.registries[0].pool
    }

    /// Creates the bill `req` as `token` and attaches `parents` to it, in order (a refusal
    /// panics).
    pub async fn open_bill(
        &self,
        token: &str,
        req: billing_pb::CreateBillRequest,
        parents: &[String],
    ) {
        let mut billing = self.billing();
        let bill_id = req.bill_id.clone();
        billing.create_bill(authed(req, token)).await.unwrap();
        for parent_qr in parents {
            let (bill_id, parent_qr) = (bill_id.clone(), parent_qr.clone());
            let req = billing_pb::AttachParentRequest { bill_id, parent_qr };
            billing.attach_parent(authed(req, token)).await.unwrap();
        }
    }

    /// Completes `bill` as `token` (a refusal panics).
    pub async fn complete_bill(&self, token: &str, bill: &str) {
        let req = billing_pb::CompleteBillRequest {
            bill_id: bill.into(),
        };
        self.billing()
            .complete_bill(authed(req, token))
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------- processes

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A service run as its own process (the binary `cargo build --bins` made), on ports fixed at
/// start, so it can be killed with SIGKILL and started again exactly as it was: same binary,
/// same environment, same ports. Killed when dropped.
pub struct ServiceProcess {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    bin: std::path::PathBuf,
    env: Vec<(String, String)>,
    child: Option<tokio::process::Child>,
}

impl ServiceProcess {
    /// Starts `bin` (a workspace binary) with `env` plus its gRPC and admin addresses on free
    /// ports; returns once it reports SERVING.
    pub async fn start(bin: &str, env: Vec<(String, String)>) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_at(bin, env, addr).await
    }

    /// [`ServiceProcess::start`] with the gRPC address `addr` (a replica on an address of its
    /// own); the admin port is a free one.
    pub async fn start_at(bin: &str, env: Vec<(String, String)>, addr: SocketAddr) -> Self {
        let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut env = env;
        env.push(("TRACETRACK_GRPC_ADDR".into(), addr.to_string()));
        env.push(("TRACETRACK_ADMIN_ADDR".into(), admin_addr.to_string()));
        let mut p = Self {
            addr,
            admin_addr,
            bin: workspace_bin(bin),
            env,
            child: None,
        };
        p.restart().await;
        p
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    /// SIGKILL, as a crash would (no drain, nothing acknowledged); returns once it has exited.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("the process is not running");
        child.kill().await.unwrap();
    }

    /// SIGTERM, as Kubernetes stops a pod; returns once it has exited, which must be cleanly.
    pub async fn terminate(&mut self) {
        let mut child = self.child.take().expect("the process is not running");
        let pid = child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exited = child.wait().await.unwrap();
        assert!(exited.success(), "{} exited with {exited}", self.addr);
    }

    /// Starts the process again with the same command and environment (same ports); returns once
    /// it reports SERVING. Panics if it exits meanwhile or is not serving within 60 s.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the process is still running");
        let mut child = tokio::process::Command::new(&self.bin)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let start = Instant::now();
        while health(self.addr, "").await != Some(ServingStatus::Serving) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{} exited before serving: {status}", self.bin.display());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} did not become SERVING on {}",
                self.bin.display(),
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
    }
}

impl Stack {
    /// scan as its own process on this stack's database, Redis prefix, auth and registries (the
    /// settings [`scan_settings`] gives the in-process one), for tests that kill it.
    pub async fn scan_process(&self) -> ServiceProcess {
        let registries = self.registry_urls();
        let env = [
            ("TRACETRACK_DATABASE__URL", self.db.clone()),
            ("TRACETRACK_DATABASE__MAX_CONNECTIONS", "10".into()),
            ("TRACETRACK_DATABASE__ACQUIRE_TIMEOUT_MS", "3000".into()),
            ("TRACETRACK_DATABASE__MIGRATE_ON_START", "true".into()),
            ("TRACETRACK_REDIS__URL", redis_url()),
            ("TRACETRACK_EVENTS__KEY_PREFIX", self.prefix.clone()),
            ("TRACETRACK_EVENTS__POLL_INTERVAL_MS", "20".into()),
            ("TRACETRACK_AUTH__URL", self.auth.url()),
            (
                "TRACETRACK_AUTH__SERVICE_TOKEN",
                service_token("scan").into(),
            ),
            ("TRACETRACK_REGISTRY_URL", registries),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec();
        ServiceProcess::start("tracetrack-scan", env).await
    }
}

// ---------------------------------------------------------------------------------- HTTP

/// `POST /api/v1/auth/login` through a gateway.
pub async fn http_login(
    client: &reqwest::Client,
    gw: &Gateway,
    username: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(gw.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

/// `GET /api/v1/auth/me` through a gateway as `token`.
pub async fn http_me(
    client: &reqwest::Client,
    gw: &Gateway,
    token: impl std::fmt::Display,
) -> reqwest::Response {
    let r = client.get(gw.url("/api/v1/auth/me")).bearer_auth(token);
    r.send().await.unwrap()
}

/// Logs in through a gateway; the session token.
pub async fn http_token(
    client: &reqwest::Client,
    gw: &Gateway,
    username: &str,
    password: &str,
) -> String {
    let r = http_login(client, gw, username, password).await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `GET url` as `token`; the JSON body.
pub async fn get_json(
    client: &reqwest::Client,
    url: String,
    token: impl std::fmt::Display,
) -> serde_json::Value {
    let r = client.get(url).bearer_auth(token).send().await.unwrap();
    r.json().await.unwrap()
}

/// One `bigint` a query answers (`SELECT count(*) …`), on a pool or a connection.
pub async fn db_i64<'e>(db: impl sqlx::PgExecutor<'e>, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

/// `GET url` with no credentials (health, readiness, the public config, the OpenAPI document);
/// the JSON body.
pub async fn public_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    let r = client.get(url).send().await.unwrap();
    r.json().await.unwrap()
}

/// `method url` as `token` with a JSON body; the response.
pub async fn send_json(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: impl std::fmt::Display,
    body: &serde_json::Value,
) -> reqwest::Response {
    let r = client.request(method, url).bearer_auth(token).json(body);
    r.send().await.unwrap()
}

/// Asserts an RFC 9457 problem document with `status` and `code` (and a request id); returns it.
pub async fn problem(r: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(r.status().as_u16(), status, "expected {status} {code}");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(
        body["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    body
}

/// An address that accepts connections and never answers: an upstream that hangs.
pub async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    format!("http://{addr}")
}

/// An address nothing listens on: an upstream that is down.
pub async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Links in bag-registry (child QR, parent QR) that no successful child scan into that parent
/// accounts for: the browser tests' check that every link the page made went through scan.
pub async fn links_without_their_scan(pool: &sqlx::PgPool) -> Vec<(String, String)> {
    sqlx::query_as(
        r#"SELECT b.qr, b.parent_qr FROM registry.bags b
           WHERE b.kind = 'child' AND b.parent_qr IS NOT NULL AND NOT EXISTS (
             SELECT 1 FROM scan.scan_events e WHERE e.kind = 'child' AND e.outcome = 'ok'
               AND e.child_qr = b.qr AND e.parent_qr = b.parent_qr)"#,
    )
    .fetch_all(pool)
    .await
    .unwrap()
}
