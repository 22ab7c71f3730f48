//! The chaos suite's private stack: its own Postgres cluster, its own redis-server and the six
//! binaries on their own ports, configured as `scripts/run.sh` configures them. Every process can
//! be killed with SIGKILL and started again with the same command and environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio::time::{sleep, Instant};
use uuid::Uuid;

/// One of the six binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Svc {
    Auth,
    Registry,
    Scan,
    Billing,
    Stats,
    Gateway,
}

impl Svc {
    /// In start order (each after what it calls).
    pub const ALL: [Svc; 6] = [
        Svc::Auth,
        Svc::Registry,
        Svc::Scan,
        Svc::Billing,
        Svc::Stats,
        Svc::Gateway,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Svc::Auth => "auth",
            Svc::Registry => "bag-registry",
            Svc::Scan => "scan",
            Svc::Billing => "billing",
            Svc::Stats => "stats",
            Svc::Gateway => "gateway",
        }
    }

    fn binary(self) -> String {
        format!("tracetrack-{}", self.name())
    }

    /// The database role (and schema) of the service; the gateway has none.
    fn role(self) -> Option<(&'static str, &'static str)> {
        match self {
            Svc::Auth => Some(("tt_auth", "auth")),
            Svc::Registry => Some(("tt_registry", "registry")),
            Svc::Scan => Some(("tt_scan", "scan")),
            Svc::Billing => Some(("tt_billing", "billing")),
            Svc::Stats => Some(("tt_stats", "stats")),
            Svc::Gateway => None,
        }
    }

    fn offset(self) -> u16 {
        match self {
            Svc::Auth => 1,
            Svc::Registry => 2,
            Svc::Scan => 3,
            Svc::Billing => 4,
            Svc::Stats => 5,
            Svc::Gateway => 6,
        }
    }
}

/// The ports, from one base: gRPC base+1…+5, admin base+11…+16, gateway HTTP base+30,
/// Postgres base+40, Redis base+41.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub base: u16,
}

impl Ports {
    pub fn grpc(self, s: Svc) -> u16 {
        self.base + s.offset()
    }
    pub fn admin(self, s: Svc) -> u16 {
        self.base + 10 + s.offset()
    }
    pub fn gateway(self) -> u16 {
        self.base + 30
    }
    pub fn pg(self) -> u16 {
        self.base + 40
    }
    pub fn redis(self) -> u16 {
        self.base + 41
    }
    pub fn all(self) -> Vec<u16> {
        let mut v: Vec<u16> = Svc::ALL
            .iter()
            .flat_map(|s| [self.grpc(*s), self.admin(*s)])
            .filter(|p| *p != self.grpc(Svc::Gateway))
            .collect();
        v.extend([self.gateway(), self.pg(), self.redis()]);
        v
    }
}

/// Fails when something answers on one of the ports.
pub async fn ensure_ports_free(ports: Ports) -> anyhow::Result<()> {
    for p in ports.all() {
        if tokio::net::TcpStream::connect(("127.0.0.1", p))
            .await
            .is_ok()
        {
            anyhow::bail!(
                "port {p} is in use (another chaos run?); choose another base (CHAOS_PORT_BASE)"
            );
        }
    }
    Ok(())
}

/// Tokens and the first admin's password, made fresh for each run.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub admin_password: String,
    tokens: BTreeMap<&'static str, String>,
}

impl Secrets {
    pub fn new() -> Self {
        let rnd = || Uuid::new_v4().simple().to_string();
        let tokens = ["gateway", "bag-registry", "scan", "billing", "stats"]
            .into_iter()
            .map(|s| (s, format!("svc-{}{}", rnd(), rnd())))
            .collect();
        Self {
            admin_password: format!("Tt-{}-7a", &rnd()[..12]),
            tokens,
        }
    }

    fn token(&self, svc: &str) -> &str {
        self.tokens.get(svc).map_or("", String::as_str)
    }
}

/// The Postgres cluster (run as `user` when given: Postgres refuses root).
pub struct Pg {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub user: Option<String>,
    pub port: u16,
    pub db: String,
}

impl Pg {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn cmd(&self, prog: &str) -> Command {
        let path = self.bin.join(prog);
        let mut c = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(u).arg("--").arg(path);
                c
            }
            None => Command::new(path),
        };
        c.stdin(Stdio::null());
        c
    }

    /// A superuser URL of a database of the cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL a service's role connects with (as scripts/run.sh builds it).
    fn role_url(&self, role: &str) -> String {
        format!("postgres://{role}@127.0.0.1:{}/{}", self.port, self.db)
    }

    /// initdb into an empty `<dir>/data`, with the settings of scripts/stack.sh's cluster.
    pub async fn init(&self) -> anyhow::Result<()> {
        let base = [
            "-D",
            &self.data().display().to_string(),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
        ]
        .map(str::to_owned);
        let quiet = |mut c: Command| {
            c.stdout(Stdio::null()).stderr(Stdio::piped());
            c
        };
        let mut c = quiet(self.cmd("initdb"));
        let out = c.args(&base).arg("--locale=C.UTF-8").output().await?;
        if !out.status.success() {
            let mut c = quiet(self.cmd("initdb"));
            let out2 = c.args(&base).arg("--no-locale").output().await?;
            anyhow::ensure!(
                out2.status.success(),
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out2.stderr)
            );
        }
        let run = self.dir.join("run");
        let conf = format!(
            "\n# TraceTrack chaos cluster\nlisten_addresses = '127.0.0.1'\nport = {}\n\
             unix_socket_directories = '{}'\nmax_connections = 400\nshared_buffers = 128MB\n\
             timezone = 'UTC'\nlog_min_messages = warning\n",
            self.port,
            run.display()
        );
        let path = self.data().join("postgresql.conf");
        let mut text = tokio::fs::read_to_string(&path).await?;
        text.push_str(&conf);
        tokio::fs::write(&path, text).await?;
        // The socket directory must belong to the cluster's user.
        let mut c = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(u).arg("--").arg("mkdir");
                c
            }
            None => Command::new("mkdir"),
        };
        anyhow::ensure!(
            c.arg("-p").arg(&run).status().await?.success(),
            "mkdir {}",
            run.display()
        );
        Ok(())
    }

    /// pg_ctl start, waiting until it accepts connections. After a SIGKILL of the postmaster its
    /// old backends may still hold the shared memory for a moment: start is retried then.
    pub async fn start(&self) -> anyhow::Result<()> {
        let give_up = Instant::now() + Duration::from_secs(90);
        loop {
            let out = self
                .cmd("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("postgres.log"))
                .args(["-w", "-t", "60", "start"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .await?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > give_up {
                anyhow::bail!(
                    "pg_ctl start failed: {} (see {})",
                    String::from_utf8_lossy(&out.stderr),
                    self.dir.join("postgres.log").display()
                );
            }
            sleep(Duration::from_millis(200)).await;
        }
    }

    /// The postmaster's pid, from postmaster.pid.
    pub async fn postmaster_pid(&self) -> anyhow::Result<u32> {
        let text = tokio::fs::read_to_string(self.data().join("postmaster.pid")).await?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .context("postmaster.pid has no pid")
    }

    pub async fn kill9(&self) -> anyhow::Result<()> {
        let pid = self.postmaster_pid().await?;
        signal(pid, "KILL").await
    }

    pub async fn stop(&self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }

    /// The database, and each service's role owning its schema (as scripts/run.sh makes them).
    pub async fn create_database(&self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{}\"",
            self.db
        )))
        .execute(&mut c)
        .await?;
        let mut c = sqlx::PgConnection::connect(&self.url(&self.db)).await?;
        for s in Svc::ALL {
            if let Some((role, schema)) = s.role() {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN")))
                    .execute(&mut c)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE SCHEMA {schema} AUTHORIZATION {role}"
                )))
                .execute(&mut c)
                .await?;
            }
        }
        Ok(())
    }
}

/// Sends a signal (`KILL`, `STOP`, `CONT`) to a process of ours.
pub async fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .await?
        .success();
    anyhow::ensure!(ok, "kill -{sig} {pid} failed");
    Ok(())
}

/// The private redis-server, keeping its snapshot (written only by SAVE) in `dir`.
pub struct Redis {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub fn new(port: u16, dir: PathBuf) -> Self {
        Self {
            port,
            dir,
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn snapshot(&self) -> PathBuf {
        self.dir.join("dump.rdb")
    }

    /// Starts it empty, or from its snapshot; returns once it answers PING.
    pub async fn start(&mut self, empty: bool, pids: &Path) -> anyhow::Result<()> {
        if empty {
            let _ = tokio::fs::remove_file(self.snapshot()).await;
        }
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--maxclients", "2000"])
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (scripts/stack.sh install installs it)")?;
        if let Some(pid) = child.id() {
            tokio::fs::write(pids.join("redis.pid"), pid.to_string()).await?;
        }
        self.child = Some(child);
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            if self.ping().await {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < give_up, "redis-server did not answer");
            sleep(Duration::from_millis(20)).await;
        }
    }

    async fn conn(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        Ok(tokio::time::timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection(),
        )
        .await??)
    }

    async fn ping(&self) -> bool {
        match self.conn().await {
            Ok(mut c) => redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }

    /// SAVE: a snapshot of what it holds now.
    pub async fn save(&self) -> anyhow::Result<()> {
        let mut c = self.conn().await?;
        redis::cmd("SAVE").query_async::<()>(&mut c).await?;
        Ok(())
    }

    /// A service's event stream: the publish sequence of its last entry, and how far the
    /// stats consumer group has been delivered (SPEC §2: entry ids are `<seq>-0`).
    pub async fn stream(&self, service: &str) -> anyhow::Result<(i64, Option<i64>)> {
        let mut c = self.conn().await?;
        let key = format!("tracetrack:events-v2:{service}");
        let info: redis::streams::StreamInfoStreamReply = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&key)
            .query_async(&mut c)
            .await?;
        let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(&mut c)
            .await?;
        let delivered = groups
            .groups
            .iter()
            .find(|g| g.name == "stats")
            .map(|g| seq_of(&g.last_delivered_id));
        Ok((seq_of(&info.last_generated_id), delivered))
    }

    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }
}

/// The publish sequence of a stream entry id (`<seq>-<n>`); 0 for anything else.
pub fn seq_of(id: &str) -> i64 {
    id.split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A running binary.
struct Proc {
    child: Child,
}

/// Everything the chaos run started.
pub struct Stack {
    pub ports: Ports,
    pub secrets: Secrets,
    pub pg: Pg,
    pub redis: Redis,
    bin_dir: PathBuf,
    logs: PathBuf,
    pids: PathBuf,
    procs: BTreeMap<Svc, Proc>,
}

impl Stack {
    pub fn new(ports: Ports, pg: Pg, bin_dir: PathBuf, state: &Path) -> Self {
        Self {
            ports,
            secrets: Secrets::new(),
            pg,
            redis: Redis::new(ports.redis(), state.join("redis")),
            bin_dir,
            logs: state.join("logs"),
            pids: state.join("pids"),
            procs: BTreeMap::new(),
        }
    }

    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.gateway())
    }

    pub fn grpc_url(&self, s: Svc) -> String {
        format!("http://127.0.0.1:{}", self.ports.grpc(s))
    }

    pub fn log_path(&self, s: Svc) -> PathBuf {
        self.logs.join(format!("{}.log", s.name()))
    }

    /// Postgres (initialised), Redis, then every binary in order, each once healthy.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for d in [&self.logs, &self.pids, &self.redis.dir] {
            tokio::fs::create_dir_all(d).await?;
        }
        self.pg.init().await?;
        self.pg.start().await?;
        self.pg.create_database().await?;
        self.redis.start(true, &self.pids).await?;
        for s in Svc::ALL {
            self.start(s).await?;
        }
        Ok(())
    }

    /// The environment scripts/run.sh gives the service.
    fn env(&self, s: Svc) -> Vec<(String, String)> {
        let p = self.ports;
        let mut env: Vec<(String, String)> = vec![
            ("TRACETRACK_REDIS__URL".into(), self.redis.url()),
            (
                "TRACETRACK_DATABASE__MIGRATE_ON_START".into(),
                "true".into(),
            ),
        ];
        let mut set = |k: &str, v: String| env.push((k.to_owned(), v));
        if s != Svc::Auth {
            set("TRACETRACK_AUTH__URL", self.grpc_url(Svc::Auth));
        }
        let token = |name: &str| self.secrets.token(name).to_owned();
        match s {
            Svc::Gateway => {
                set("TRACETRACK_HTTP_ADDR", format!("127.0.0.1:{}", p.gateway()));
                set("TRACETRACK_ADMIN_ADDR", format!("127.0.0.1:{}", p.admin(s)));
                set("TRACETRACK_AUTH__SERVICE_TOKEN", token("gateway"));
                set("TRACETRACK_REGISTRY_URL", self.grpc_url(Svc::Registry));
                set("TRACETRACK_SCAN_URL", self.grpc_url(Svc::Scan));
                set("TRACETRACK_STATS_URL", self.grpc_url(Svc::Stats));
                set("TRACETRACK_BILLING_URL", self.grpc_url(Svc::Billing));
            }
            _ => {
                let (role, _) = s.role().unwrap_or_default();
                set("TRACETRACK_GRPC_ADDR", format!("127.0.0.1:{}", p.grpc(s)));
                set("TRACETRACK_ADMIN_ADDR", format!("127.0.0.1:{}", p.admin(s)));
                set("TRACETRACK_DATABASE__URL", self.pg.role_url(role));
                match s {
                    Svc::Auth => {
                        set(
                            "TRACETRACK_BOOTSTRAP_ADMIN_PASSWORD",
                            self.secrets.admin_password.clone(),
                        );
                        for name in ["gateway", "bag-registry", "scan", "billing", "stats"] {
                            set(
                                &format!("TRACETRACK_SERVICE_TOKENS__{}", name.to_uppercase()),
                                token(name),
                            );
                        }
                    }
                    Svc::Registry => set("TRACETRACK_AUTH__SERVICE_TOKEN", token("bag-registry")),
                    _ => {
                        set("TRACETRACK_AUTH__SERVICE_TOKEN", token(s.name()));
                        set("TRACETRACK_REGISTRY_URL", self.grpc_url(Svc::Registry));
                    }
                }
            }
        }
        env
    }

    /// Starts one binary and waits (polling its health) until it serves.
    pub async fn start(&mut self, s: Svc) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(s))?;
        let child = Command::new(self.bin_dir.join(s.binary()))
            .envs(self.env(s))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", s.binary()))?;
        if let Some(pid) = child.id() {
            tokio::fs::write(self.pids.join(format!("{}.pid", s.name())), pid.to_string()).await?;
        }
        self.procs.insert(s, Proc { child });
        self.wait_healthy(s).await
    }

    async fn wait_healthy(&mut self, s: Svc) -> anyhow::Result<()> {
        let port = if s == Svc::Gateway {
            self.ports.gateway()
        } else {
            self.ports.grpc(s)
        };
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            let ok = Command::new(self.bin_dir.join(s.binary()))
                .args(["health", "--addr", &format!("127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|st| st.success());
            if ok {
                return Ok(());
            }
            if let Some(p) = self.procs.get_mut(&s) {
                if let Some(st) = p.child.try_wait()? {
                    anyhow::bail!(
                        "{} exited ({st}); see {}",
                        s.name(),
                        self.log_path(s).display()
                    );
                }
            }
            anyhow::ensure!(
                Instant::now() < give_up,
                "{} did not become healthy in 120 s; see {}",
                s.name(),
                self.log_path(s).display()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self, s: Svc) -> Option<u32> {
        self.procs.get(&s).and_then(|p| p.child.id())
    }

    /// SIGKILL, and reap it.
    pub async fn kill9(&mut self, s: Svc) -> anyhow::Result<()> {
        if let Some(mut p) = self.procs.remove(&s) {
            p.child.start_kill()?;
            p.child.wait().await?;
        }
        Ok(())
    }

    /// Is every binary still running (none exited by itself)?
    pub fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for (s, p) in &mut self.procs {
            if let Ok(Some(st)) = p.child.try_wait() {
                out.push(format!("{} exited by itself ({st})", s.name()));
            }
        }
        out
    }

    /// Stops everything: SIGTERM to the binaries (SIGKILL after 10 s), Redis, Postgres.
    pub async fn stop_all(&mut self) {
        for p in self.procs.values() {
            if let Some(pid) = p.child.id() {
                let _ = signal(pid, "CONT").await;
                let _ = signal(pid, "TERM").await;
            }
        }
        for (_, mut p) in std::mem::take(&mut self.procs) {
            if tokio::time::timeout(Duration::from_secs(10), p.child.wait())
                .await
                .is_err()
            {
                let _ = p.child.start_kill();
                let _ = p.child.wait().await;
            }
        }
        let _ = self.redis.kill9().await;
        self.pg.stop().await;
    }
}
