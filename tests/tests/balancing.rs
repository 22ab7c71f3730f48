//! Balancing that follows the Deployment without a mesh (issue 21 §3): scan calls bag-registry
//! by a name (`http://bag-registry.test:P`, as it would a headless Service's), re-resolves it
//! every 100 ms and balances over what it resolves to. The test controls the name (the resolver
//! seam, `client::set_resolver`): registry replicas run as their own processes on 127.0.0.1,
//! 127.0.0.2 and 127.0.0.3 with the same port, since an A record carries no port. Under a
//! steady scan load the name grows from one replica to three, and each new one takes a share of
//! the calls; then one is taken out of the name and stopped, and no request fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracetrack_proto::auth::v1::Role;
use tracetrack_tests::*;

const NAME: &str = "bag-registry.test";

/// The test's DNS: `bag-registry.test` resolves to whatever `ips` holds now.
struct TestDns {
    ips: Arc<Mutex<Vec<IpAddr>>>,
}

#[async_trait::async_trait]
impl tracetrack_common::client::Resolve for TestDns {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if host != NAME {
            return Err(std::io::Error::other(format!("{host}: unknown name")));
        }
        let ips = self.ips.lock().unwrap().clone();
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }
}

/// A bag-registry replica as its own process (its own /metrics) at `ip:port`.
struct Replica(ServiceProcess);

impl Replica {
    /// `migrate`: the first replica creates the schema; the others start on it, as pods do
    /// after the migration Job (migrating beside live traffic is not what scaling does).
    async fn start(
        ip: &str,
        port: u16,
        db: &str,
        prefix: &str,
        auth: &AuthServer,
        migrate: bool,
    ) -> Self {
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let env = [
            ("TRACETRACK_DATABASE__URL", db.to_owned()),
            ("TRACETRACK_DATABASE__MAX_CONNECTIONS", "10".into()),
            ("TRACETRACK_DATABASE__ACQUIRE_TIMEOUT_MS", "3000".into()),
            ("TRACETRACK_DATABASE__MIGRATE_ON_START", migrate.to_string()),
            ("TRACETRACK_REDIS__URL", redis_url()),
            ("TRACETRACK_EVENTS__KEY_PREFIX", prefix.to_owned()),
            ("TRACETRACK_AUTH__URL", auth.url()),
            (
                "TRACETRACK_AUTH__SERVICE_TOKEN",
                service_token("bag-registry").into(),
            ),
            // On SIGTERM: NOT_SERVING, a short grace, then drain what is in flight.
            ("TRACETRACK_SHUTDOWN__GRACE_MS", "200".into()),
        ];
        let env = env.map(|(k, v)| (k.to_owned(), v)).to_vec();
        Self(ServiceProcess::start_at("tracetrack-bag-registry", env, addr).await)
    }

    fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// Registry calls this replica has answered (health checks aside).
    async fn calls(&self) -> f64 {
        http_get(self.0.admin_addr, "/metrics")
            .await
            .lines()
            .filter(|l| {
                l.starts_with("grpc_server_handled_total{") && l.contains("BagRegistryService")
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// SIGTERM, as Kubernetes stops a pod; returns once it has exited.
    async fn terminate(mut self) {
        self.0.terminate().await;
    }
}

/// Waits until each of `replicas` has answered at least `more` calls beyond `from`.
async fn each_takes_a_share(replicas: &[&Replica], from: &[f64], more: f64) {
    for (r, base) in replicas.iter().zip(from) {
        eventually(
            Duration::from_secs(30),
            &format!("{} answering calls", r.addr()),
            || async { r.calls().await >= base + more },
        )
        .await;
    }
}

#[tokio::test]
async fn callers_follow_bag_registry_growing_from_one_replica_to_three_and_shrinking() {
    let ips = Arc::new(Mutex::new(vec!["127.0.0.1".parse::<IpAddr>().unwrap()]));
    tracetrack_common::client::set_resolver(Arc::new(TestDns { ips: ips.clone() }));

    let db = fresh_database().await;
    let prefix = unique_prefix();
    let auth = AuthServer::start(auth_settings(&db, &redis_url(), &prefix)).await;
    let port = free_port();
    let first = Replica::start("127.0.0.1", port, &db, &prefix, &auth, true).await;
    let mut settings = scan_settings(
        &db,
        &redis_url(),
        &prefix,
        &auth,
        &format!("http://{NAME}:{port}"),
    );
    settings.common.upstreams.resolve_interval_ms = 100;
    let scan = start_scan(settings).await;
    let admin = auth.admin_token().await;
    let (_, token) = auth
        .create_user(&admin, "loader", Role::Dispatcher, "lucknow")
        .await;

    // The load: four workers scanning new parents (each scan is one registry call) until told
    // to stop; every failure is counted.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
            let (url, token) = (scan.url(), token.clone());
            tokio::spawn(async move {
                let mut client =
                    tracetrack_proto::scan::v1::scan_service_client::ScanServiceClient::new(
                        tonic::transport::Channel::from_shared(url)
                            .unwrap()
                            .connect_lazy(),
                    );
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let qr = format!("SB{}", 10_000 + w * 20_000 + i);
                    i += 1;
                    let r = client
                        .scan_parent(authed(
                            tracetrack_proto::scan::v1::ScanParentRequest {
                                qr: qr.clone(),
                                area: String::new(),
                            },
                            &token,
                        ))
                        .await;
                    match r {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("scan {qr} failed: {e:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    each_takes_a_share(&[&first], &[0.0], 50.0).await;

    // Scale out: two more replicas, and the name resolves to all three.
    let second = Replica::start("127.0.0.2", port, &db, &prefix, &auth, false).await;
    let third = Replica::start("127.0.0.3", port, &db, &prefix, &auth, false).await;
    let before = [
        first.calls().await,
        second.calls().await,
        third.calls().await,
    ];
    *ips.lock().unwrap() = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .map(|ip| ip.parse().unwrap())
        .to_vec();
    each_takes_a_share(&[&first, &second, &third], &before, 50.0).await;

    // Scale in: the third leaves the name (as a terminating pod leaves a headless Service's
    // answer); once scan has dropped it, it is stopped as Kubernetes stops a pod.
    *ips.lock().unwrap() = ["127.0.0.1", "127.0.0.2"]
        .map(|ip| ip.parse().unwrap())
        .to_vec();
    let gauge = format!("grpc_client_endpoints{{upstream=\"{NAME}:{port}\"}}");
    eventually(
        Duration::from_secs(10),
        "scan following the name to two",
        || {
            let gauge = gauge.clone();
            let admin = scan.admin_addr;
            async move { metric(admin, &gauge).await == 2.0 }
        },
    )
    .await;
    third.terminate().await;
    let before = [first.calls().await, second.calls().await];
    each_takes_a_share(&[&first, &second], &before, 50.0).await;

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(done.load(Ordering::Relaxed) > 0);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "scans failed while bag-registry scaled"
    );
    // Not even retried: no call met a replica that was gone.
    assert_eq!(
        metric(scan.admin_addr, "grpc_client_transport_retries_total").await,
        0.0
    );
}
