//! Running a service: listeners bound at build time (port 0 works), a lazily connected pool,
//! migrations when configured, then `serve`: health (NOT_SERVING until the database answers),
//! reflection, trace-context extraction, RED metrics, the admin port, the outbox relay, and a
//! graceful shutdown (NOT_SERVING → drain in-flight RPCs → bounded stop → flush telemetry).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower::layer::util::{Identity, Stack};

use crate::config::{CommonSettings, LimitSettings};
use crate::metrics::RedLayer;
use crate::outbox::Relay;
use crate::shed::ShedLayer;

pub struct ServiceRuntime {
    /// Short name: "auth", "bag-registry", …
    pub service: &'static str,
    /// The Postgres schema the service owns.
    pub schema: &'static str,
    pub settings: CommonSettings,
    pub pool: PgPool,
    grpc_listener: TcpListener,
    admin_listener: TcpListener,
    /// gRPC over TLS (`tls.grpc`), the certificate re-read when its files change.
    grpc_tls: Option<tokio_rustls::TlsAcceptor>,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

impl ServiceRuntime {
    pub async fn build(
        service: &'static str,
        schema: &'static str,
        settings: CommonSettings,
        migrator: &Migrator,
    ) -> anyhow::Result<Self> {
        crate::metrics::handle();
        crate::metrics::zero(&[
            "grpc_server_shed_total",
            "grpc_server_timed_out_total",
            "grpc_server_database_down_total",
            "grpc_client_transport_retries_total",
            "db_circuit_trips_total",
            "db_pool_acquire_timeouts_total",
        ]);
        crate::client::set_resolve_interval(Duration::from_millis(
            settings.upstreams.resolve_interval_ms,
        ));
        crate::app_tls::set_client_tls_from(&settings.tls)?;
        let grpc_tls = grpc_acceptor(&settings.tls)?;
        let pool = crate::db::pool(&settings.database, schema)?;
        if settings.database.migrate_on_start {
            crate::db::wait_until_ready(&pool, Duration::from_secs(60)).await?;
            crate::db::migrate(&pool, schema, migrator).await?;
        }
        let grpc_listener = TcpListener::bind(&settings.grpc_addr).await?;
        let admin_listener = TcpListener::bind(&settings.admin_addr).await?;
        Ok(Self {
            service,
            schema,
            grpc_addr: grpc_listener.local_addr()?,
            admin_addr: admin_listener.local_addr()?,
            settings,
            pool,
            grpc_listener,
            admin_listener,
            grpc_tls,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// Serves `routes` (plus health and reflection) until `shutdown` resolves, then drains.
    /// `service_names` are the fully qualified gRPC names whose health follows the database.
    pub async fn serve(
        self,
        routes: Routes,
        service_names: &[&str],
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let mut names: Vec<String> = vec![String::new()];
        names.extend(service_names.iter().map(|s| (*s).to_owned()));
        set_all(&reporter, &names, ServingStatus::NotServing).await;

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tracetrack_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tracetrack_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let routes = routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let (stop_tx, stop_rx) = watch::channel(false);
        let admin = tokio::spawn(crate::metrics::serve_admin(self.admin_listener, {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }));
        let database = crate::db::Health::default();
        let readiness = tokio::spawn(readiness_loop(
            self.service,
            self.pool.clone(),
            database.clone(),
            reporter.clone(),
            names.clone(),
            stop_rx.clone(),
        ));
        let relay = self.settings.events.relay_enabled.then(|| {
            tokio::spawn(
                Relay {
                    pool: self.pool.clone(),
                    schema: self.schema.to_owned(),
                    service: self.service.to_owned(),
                    events: self.settings.events.clone(),
                    redis: self.settings.redis.clone(),
                }
                .run(stop_rx.clone()),
            )
        });

        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
        let router =
            grpc_server_with(ShedLayer::new(&self.settings.limits).with_database(database))
                .add_routes(routes);
        let drained = async {
            let _ = drain_rx.await;
        };
        let tls = self.grpc_tls.is_some();
        let mut server: std::pin::Pin<
            Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send + '_>,
        > = match self.grpc_tls {
            Some(acceptor) => {
                let incoming = tokio_stream::wrappers::ReceiverStream::new(
                    crate::app_tls::incoming(self.grpc_listener, acceptor),
                );
                let incoming =
                    tokio_stream::StreamExt::map(incoming, |(tls, _)| Ok::<_, std::io::Error>(tls));
                Box::pin(router.serve_with_incoming_shutdown(incoming, drained))
            }
            None => {
                let incoming = TcpIncoming::from(self.grpc_listener).with_nodelay(Some(true));
                Box::pin(router.serve_with_incoming_shutdown(incoming, drained))
            }
        };
        tracing::info!(service = self.service, grpc = %self.grpc_addr, admin = %self.admin_addr, tls, "serving");

        let result = tokio::select! {
            r = &mut server => r.map_err(anyhow::Error::from),
            _ = shutdown => {
                // Stop the readiness loop first so it cannot flip us back to SERVING.
                let _ = stop_tx.send(true);
                let _ = readiness.await;
                set_all(&reporter, &names, ServingStatus::NotServing).await;
                tokio::time::sleep(Duration::from_millis(self.settings.shutdown.grace_ms)).await;
                let _ = drain_tx.send(());
                let drain = Duration::from_millis(self.settings.shutdown.drain_timeout_ms);
                match tokio::time::timeout(drain, &mut server).await {
                    Ok(r) => r.map_err(anyhow::Error::from),
                    Err(_) => {
                        tracing::warn!(?drain, "in-flight RPCs did not finish in time; stopping");
                        Ok(())
                    }
                }
            }
        };
        let _ = stop_tx.send(true);
        if let Some(relay) = relay {
            let _ = tokio::time::timeout(Duration::from_secs(5), relay).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
        self.pool.close().await;
        crate::telemetry::shutdown();
        tracing::info!(service = self.service, "stopped");
        result
    }
}

/// The tonic server every service uses: each request runs in a span parented to the caller's
/// W3C trace context, RED metrics are recorded per RPC (refused calls included), and overload is
/// shed (`crate::shed`).
pub fn grpc_server(
    limits: &LimitSettings,
) -> tonic::transport::Server<Stack<ShedLayer, Stack<RedLayer, Identity>>> {
    grpc_server_with(ShedLayer::new(limits))
}

fn grpc_server_with(
    shed: ShedLayer,
) -> tonic::transport::Server<Stack<ShedLayer, Stack<RedLayer, Identity>>> {
    tonic::transport::Server::builder()
        // h2 answers more than 20 streams reset before they were accepted with GOAWAY (its
        // rapid-reset guard), which fails every other call on that connection. Our callers are
        // our own services, multiplexing many users on one connection: when hundreds of their
        // users give up at once (phones dropping under overload), that is not an attack.
        .http2_max_pending_accept_reset_streams(Some(4096))
        .http2_max_local_error_reset_streams(Some(4096))
        .trace_fn(crate::telemetry::grpc_request_span)
        .layer(RedLayer)
        .layer(shed)
}

async fn set_all(reporter: &HealthReporter, names: &[String], status: ServingStatus) {
    for n in names {
        reporter.set_service_status(n, status).await;
    }
}

/// The pool as `/metrics` shows it, per service (a test process holds several):
/// `db_pool_connections{service,state="idle"|"in_use"}` and `db_pool_max_connections{service}`.
/// Set by the readiness loop, so at most a second old. (A pool that could not hand out a
/// connection in time counts in `db_pool_acquire_timeouts_total`.)
fn record_pool(service: &'static str, pool: &PgPool) {
    let size = pool.size();
    let idle = pool.num_idle() as u32;
    metrics::gauge!("db_pool_connections", "service" => service, "state" => "idle")
        .set(f64::from(idle));
    metrics::gauge!("db_pool_connections", "service" => service, "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
    metrics::gauge!("db_pool_max_connections", "service" => service)
        .set(f64::from(pool.options().get_max_connections()));
}

/// SERVING exactly while the database answers within a second.
async fn readiness_loop(
    service: &'static str,
    pool: PgPool,
    database: crate::db::Health,
    reporter: HealthReporter,
    names: Vec<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last: Option<bool> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let answered = tokio::time::timeout(
            Duration::from_secs(1),
            sqlx::query("SELECT 1").execute(&pool),
        )
        .await;
        // No connection free within the second because every one is busy with live work: the
        // database answers, this replica is just loaded (requests get `overloaded`, 429) — not
        // an outage to take it out of rotation for.
        let busy = pool.size() >= pool.options().get_max_connections() && pool.num_idle() == 0;
        record_pool(service, &pool);
        let (ok, why) = match &answered {
            Ok(Ok(_)) => (true, None),
            Ok(Err(sqlx::Error::PoolTimedOut)) | Err(_) => (busy, None),
            Ok(Err(e)) => (false, Some(crate::db::explain(e))),
        };
        if *stop.borrow() {
            return;
        }
        database.set(ok);
        if last != Some(ok) {
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if !ok {
                match why {
                    Some(why) => {
                        tracing::warn!(error = %why, "database not answering: NOT_SERVING")
                    }
                    None => tracing::warn!("database not answering: NOT_SERVING"),
                }
            } else {
                tracing::info!("database answering: SERVING");
            }
            set_all(&reporter, &names, status).await;
            last = Some(ok);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(if ok { 1000 } else { 250 })) => {}
            _ = database.recheck_requested() => {}
            _ = stop.changed() => {}
        }
    }
}

/// The TLS acceptor of the gRPC port when `tls.grpc` is set (its certificate and key must be).
fn grpc_acceptor(
    tls: &crate::config::TlsSettings,
) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let Some(grpc) = &tls.grpc else {
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&grpc.cert_file, &grpc.key_file) else {
        anyhow::bail!("tls.grpc is set: a service needs tls.grpc.cert_file and tls.grpc.key_file");
    };
    let cert = crate::app_tls::ReloadingCert::new(cert, key)?;
    Ok(Some(crate::app_tls::acceptor(
        cert,
        crate::app_tls::ALPN_GRPC,
    )?))
}

/// Asks a service's gRPC health endpoint; true when SERVING. For scripts, probes and
/// container health checks (`<binary> health`). An `https://` URL is dialled with the process's
/// gRPC TLS (`tls.grpc`), or `verifier` when given.
pub async fn probe(url: &str, service: &str) -> anyhow::Result<bool> {
    probe_with(url, service, None).await
}

/// [`probe`] verifying the server with `verifier` (`<binary> health` with `tls.grpc`: the
/// certificate in its own `cert_file`).
pub async fn probe_with(
    url: &str,
    service: &str,
    verifier: Option<std::sync::Arc<dyn rustls::client::danger::ServerCertVerifier>>,
) -> anyhow::Result<bool> {
    let endpoint = match verifier {
        Some(v) => tonic::transport::Endpoint::from_shared(url.to_owned())?
            .tls_config_with_verifier(tonic::transport::ClientTlsConfig::new(), v)?,
        None => crate::app_tls::endpoint(url, None)?,
    };
    let channel = endpoint
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let resp = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(resp.into_inner().status
        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
}

/// A service's background tasks (a sweeper, the live feed's reader, partition upkeep), stopped
/// together with the service: [`Background::stopped`] gives a task its stop signal,
/// [`Background::spawn`] starts it, [`Background::serve`] serves and stops them.
#[derive(Debug)]
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Default for Background {
    fn default() -> Self {
        Self {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }
}

impl Background {
    /// Turns `true` when the service stops.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Serves `routes` on `runtime` until `shutdown`; the tasks are told to stop as soon as
    /// shutdown begins (so draining in-flight RPCs does not wait for open streams), then each
    /// gets up to `grace` to finish.
    pub async fn serve(
        self,
        runtime: ServiceRuntime,
        routes: Routes,
        service_names: &[&str],
        shutdown: impl Future<Output = ()> + Send,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let stop = self.stop;
        let result = runtime
            .serve(routes, service_names, async {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await;
        let _ = stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(grace, task).await;
        }
        result
    }
}

/// A service's `Application` (holding its [`ServiceRuntime`] in a field `runtime`) derefs to
/// the runtime, for its addresses and pool: `tracetrack_common::derefs_to_runtime!(Application);`.
#[macro_export]
macro_rules! derefs_to_runtime {
    ($app:ty) => {
        impl ::std::ops::Deref for $app {
            type Target = $crate::server::ServiceRuntime;
            fn deref(&self) -> &Self::Target {
                &self.runtime
            }
        }
    };
}
