//! Build, then run: listeners bound at build (port 0 works), then serve until shutdown with a
//! graceful drain; the admin port serves /metrics; one task holds the live-scan stream.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tracetrack_base::app_tls;

use crate::config::Settings;
use crate::state::AppState;

pub struct Application {
    state: AppState,
    http: TcpListener,
    /// HTTPS (`http.tls`), the certificate re-read when its files change.
    http_tls: Option<tokio_rustls::TlsAcceptor>,
    admin: TcpListener,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        tracetrack_base::metrics::handle();
        tracetrack_base::metrics::zero(&[
            "gateway_shed_total",
            "gateway_timed_out_total",
            "gateway_rate_limited_total",
            "gateway_rate_limit_local_total",
            "gateway_bad_tokens_total",
            "grpc_client_transport_retries_total",
        ]);
        metrics::gauge!("gateway_redis_circuit_open").set(0.0);
        let http_tls = match &settings.http.tls {
            Some(t) => Some(app_tls::acceptor(
                app_tls::ReloadingCert::new(&t.cert_file, &t.key_file)?,
                app_tls::ALPN_HTTP,
            )?),
            None => None,
        };
        let http = TcpListener::bind(&settings.http_addr).await?;
        let admin = TcpListener::bind(&settings.admin_addr).await?;
        Ok(Self {
            http_addr: http.local_addr()?,
            admin_addr: admin.local_addr()?,
            state: AppState::new(settings)?,
            http,
            http_tls,
            admin,
        })
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let admin = tokio::spawn(tracetrack_base::metrics::serve_admin(self.admin, {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }));
        let pump = tokio::spawn(crate::routes::scans::pump_live_scans(
            self.state.clone(),
            stop_rx.clone(),
        ));
        let pump_dashboard = tokio::spawn(crate::routes::stats::pump_live_dashboard(
            self.state.clone(),
            stop_rx.clone(),
        ));
        let stopping = self.state.0.stopping.clone();
        let grace = Duration::from_millis(self.state.0.settings.shutdown.grace_ms);
        let drain = Duration::from_millis(self.state.0.settings.shutdown.drain_timeout_ms);
        let app = crate::app::router(self.state);
        let tls = self.http_tls.is_some();
        tracing::info!(http = %self.http_addr, admin = %self.admin_addr, tls, "gateway serving");
        let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
        let graceful = async move {
            shutdown.await;
            // Not ready any more, live streams end; requests are still served during the grace.
            let _ = stopping.send(true);
            tracing::info!(
                ?grace,
                "shutting down: not ready, serving out the grace period"
            );
            tokio::time::sleep(grace).await;
            let _ = stop_tx.send(true);
            let _ = draining_tx.send(());
        };
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let serve: std::pin::Pin<
            Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>,
        > = match self.http_tls {
            Some(acceptor) => {
                // tap_io: what gives a listener of our own `ConnectInfo<SocketAddr>`.
                let listener = axum::serve::ListenerExt::tap_io(
                    app_tls::TlsListener::new(self.http, acceptor)?,
                    |_| {},
                );
                Box::pin(std::future::IntoFuture::into_future(
                    axum::serve(listener, app).with_graceful_shutdown(graceful),
                ))
            }
            None => Box::pin(std::future::IntoFuture::into_future(
                axum::serve(self.http, app).with_graceful_shutdown(graceful),
            )),
        };
        let result = tokio::select! {
            r = serve => r,
            () = async {
                if draining_rx.await.is_ok() {
                    tokio::time::sleep(drain).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(?drain, "in-flight requests did not finish in time; stopping");
                Ok(())
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), pump_dashboard).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
        tracetrack_base::telemetry::shutdown();
        Ok(result?)
    }
}
