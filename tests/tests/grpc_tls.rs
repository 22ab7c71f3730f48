//! TLS between services and at the gateway (issue 21 §2): with `tls.grpc` every service serves
//! gRPC over TLS only and every caller dials `https://`, verifying the certificate against the
//! configured CA and the host name; the gateway serves HTTPS itself with `http.tls` (HTTP/2 and
//! HTTP/1.1 by ALPN). A login and a scan over HTTPS go gateway → scan → bag-registry → auth, all
//! over TLS. A client trusting another CA, one expecting another name, and a plaintext client are
//! refused; a certificate swapped on disk is presented on the next connection, no restart. And
//! `tracetrack-<svc> health` speaks TLS (what the Kubernetes exec probe runs).
//!
//! The certificates come from a throw-away CA this test makes with the openssl command-line tool
//! (the binaries hold no OpenSSL: rustls on ring).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tracetrack_common::config::{CertKeyFiles, GrpcTlsSettings};
use tracetrack_tests::pki::make_ca;
use tracetrack_tests::*;

/// A server certificate for `localhost` and 127.0.0.1 signed by `dir`'s CA, in
/// `<name>.crt` / `<name>.key` (each call a new key and serial).
fn make_leaf(dir: &Path, name: &str) {
    tracetrack_tests::pki::make_leaf(dir, name, "DNS:localhost,IP:127.0.0.1");
}

fn s(p: PathBuf) -> String {
    p.display().to_string()
}

/// The DER of the first certificate of a PEM file.
fn der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Our throw-away PKI: the CA, the certificate every service presents (`live.*`, the files the
/// settings name), and another CA nobody uses.
struct Pki {
    dir: tempfile::TempDir,
    other: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_ca(dir.path(), "TraceTrack throw-away gRPC CA");
        make_leaf(dir.path(), "live");
        let other = tempfile::tempdir().unwrap();
        make_ca(other.path(), "Another throw-away CA");
        Self { dir, other }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn grpc(&self) -> GrpcTlsSettings {
        GrpcTlsSettings {
            cert_file: Some(s(self.path("live.crt"))),
            key_file: Some(s(self.path("live.key"))),
            ca_file: s(self.path("ca.crt")),
        }
    }

    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.path("ca.crt")).unwrap()
    }

    fn other_ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.other.path().join("ca.crt")).unwrap()
    }

    /// A new certificate and key put in place of the live ones the way a Secret update does it
    /// (written aside, then renamed over: each file changes at once); its DER.
    fn rotate(&self) -> Vec<u8> {
        make_leaf(self.dir.path(), "next");
        std::fs::rename(self.path("next.key"), self.path("live.key")).unwrap();
        std::fs::rename(self.path("next.crt"), self.path("live.crt")).unwrap();
        der(&self.path("live.crt"))
    }
}

/// A health call over TLS trusting `ca_pem`, checking the certificate names `name`.
async fn tls_health(port: u16, ca_pem: &[u8], name: &str) -> Result<ServingStatus, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(name);
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    health_on(channel).await
}

async fn health_on(channel: Channel) -> Result<ServingStatus, String> {
    let r = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(ServingStatus::try_from(r.into_inner().status).unwrap())
}

/// A fresh TLS connection to 127.0.0.1:`port` trusting `ca_pem` and expecting `localhost`,
/// offering h2 and http/1.1: the certificate presented and the protocol agreed.
async fn handshake(port: u16, ca_pem: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    (
        session.peer_certificates().unwrap()[0].as_ref().to_vec(),
        session.alpn_protocol().map(<[u8]>::to_vec),
    )
}

/// Runs a service `Application` built from `$settings` on a task; returns (port, stop handle)
/// once it answers SERVING over TLS.
macro_rules! serve_tls {
    ($app:expr, $pki:expr) => {{
        let app = $app.await.unwrap();
        let port = app.grpc_addr().port();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        let ca = $pki.ca_pem();
        eventually(Duration::from_secs(30), "SERVING over TLS", || {
            let ca = ca.clone();
            async move { tls_health(port, &ca, "localhost").await == Ok(ServingStatus::Serving) }
        })
        .await;
        (port, tx)
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_the_gateway_speak_verified_tls_and_pick_up_a_new_certificate() {
    let pki = Pki::new();
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let redis = redis_url();

    // auth, bag-registry, scan with gRPC TLS; callers are given http://localhost:… URLs, which
    // they dial as https:// and verify (the certificate names localhost).
    let mut a = auth_settings(&db, &redis, &prefix);
    a.common.tls.grpc = Some(pki.grpc());
    let (auth_port, _auth) = serve_tls!(tracetrack_auth::Application::build(a), pki);
    let auth_url = format!("http://localhost:{auth_port}");
    eprintln!("auth serving over TLS on {auth_port}");

    let service = |c: &mut tracetrack_common::config::CommonSettings, name: &str| {
        common_settings(c, &db, &redis, &prefix, 5);
        c.auth.url = auth_url.clone();
        c.auth.service_token = Some(SecretString::from(service_token(name)));
        c.tls.grpc = Some(pki.grpc());
    };
    let mut r = tracetrack_bag_registry::Settings::default();
    service(&mut r.common, "bag-registry");
    let (registry_port, _registry) =
        serve_tls!(tracetrack_bag_registry::Application::build(r), pki);
    let mut sc = tracetrack_scan::Settings::default();
    service(&mut sc.common, "scan");
    sc.registry_url = format!("http://localhost:{registry_port}");
    let (scan_port, _scan) = serve_tls!(tracetrack_scan::Application::build(sc), pki);

    // The gateway: HTTPS itself, and TLS to the services.
    let mut g = tracetrack_gateway::Settings {
        http_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        ..Default::default()
    };
    g.redis.url = redis.clone();
    g.redis_key_prefix = prefix.clone();
    g.auth.url = auth_url.clone();
    g.auth.service_token = Some(SecretString::from(service_token("gateway")));
    g.registry_url = format!("http://localhost:{registry_port}");
    g.scan_url = format!("http://localhost:{scan_port}");
    g.tls.grpc = Some(GrpcTlsSettings {
        cert_file: None,
        key_file: None,
        ca_file: s(pki.path("ca.crt")),
    });
    g.http.tls = Some(CertKeyFiles {
        cert_file: s(pki.path("live.crt")),
        key_file: s(pki.path("live.key")),
    });
    g.cookie_secure = true;
    let gw = tracetrack_gateway::Application::build(g).await.unwrap();
    let gw_port = gw.http_addr.port();
    let (gw_stop, gw_rx) = oneshot::channel::<()>();
    tokio::spawn(gw.run_until_stopped(async {
        let _ = gw_rx.await;
    }));
    let https = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pki.ca_pem()).unwrap())
        .build()
        .unwrap();
    let url = |path: &str| format!("https://localhost:{gw_port}{path}");
    eventually(Duration::from_secs(30), "the gateway over HTTPS", || {
        let r = https.get(url("/healthz")).send();
        async move { r.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;

    eprintln!("gateway serving HTTPS on {gw_port}");
    // A login and a scan over HTTPS: gateway → auth, gateway → scan → bag-registry → auth.
    let r = https
        .post(url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let token = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let scan = |path: &'static str, body: serde_json::Value| {
        https.post(url(path)).bearer_auth(&token).json(&body).send()
    };
    let r = scan(
        "/api/v1/scans/parent",
        serde_json::json!({"qr": "SB71001", "area": "lucknow"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK, "{:?}", r.text().await);
    let r = scan(
        "/api/v1/scans/child",
        serde_json::json!({"parent_qr": "SB71001", "child_qr": "CH71001"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["parent"]["child_count"], 1);
    assert_eq!(b["child"]["parent_qr"], "SB71001");
    // HTTP/2 is offered by ALPN (reqwest here speaks HTTP/1.1).
    let (_, alpn) = handshake(gw_port, &pki.ca_pem()).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    // Plain HTTP to the HTTPS port gets no answer.
    assert!(reqwest::get(format!("http://127.0.0.1:{gw_port}/healthz"))
        .await
        .is_err());

    eprintln!("login and scans over HTTPS answered");
    // The data tools against the same stack (issue 18's note: they had no TLS): with --ca-file
    // they log in over HTTPS and import over verified gRPC; without it the HTTPS gateway is
    // refused.
    let dir = pki.path("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let book = dir.join("labels.xlsx");
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Sr. No.").unwrap();
    ws.write_string(0, 1, "Scanned").unwrap();
    for n in 1..=30u32 {
        ws.write_number(n, 0, f64::from(n)).unwrap();
        let label = format!(
            "LABEL NO.:{:07} LOT NO.:STAR44GG24611, D.O.T.:30/09/2025",
            710_000 + n
        );
        ws.write_string(n, 1, label).unwrap();
    }
    ws.write_string(31, 0, "Parent Code").unwrap();
    ws.write_string(31, 1, "SB71002").unwrap();
    std::fs::write(&book, wb.save_to_buffer().unwrap()).unwrap();
    let import = |ca: bool| {
        let mut c = tokio::process::Command::new(workspace_bin("tracetrack-import-labels"));
        c.arg(&book)
            .args(["--area", "lucknow", "--gateway-url", &url("")])
            .args([
                "--registry-url",
                &format!("http://localhost:{registry_port}"),
            ])
            .args(["--password", ADMIN_PASSWORD])
            .env_remove("TRACETRACK_TLS__GRPC__CA_FILE")
            .kill_on_drop(true);
        if ca {
            c.args(["--ca-file", &s(pki.path("ca.crt"))]);
        }
        async move { c.output().await.unwrap() }
    };
    let out = import(false).await;
    assert!(!out.status.success(), "an https:// gateway without a CA");
    let out = import(true).await;
    assert!(
        out.status.success(),
        "import over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bag: serde_json::Value = https
        .get(url("/api/v1/bags/SB71002"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bag["child_count"], 30, "{bag}");
    // Refused: a client trusting another CA, one expecting another name, a plaintext one.
    let other = tls_health(registry_port, &pki.other_ca_pem(), "localhost").await;
    assert!(
        other.as_ref().is_err_and(|e| e.contains("UnknownIssuer")),
        "{other:?}"
    );
    let name = tls_health(registry_port, &pki.ca_pem(), "bag-registry.elsewhere").await;
    assert!(
        name.as_ref().is_err_and(|e| e.contains("NotValidForName")),
        "{name:?}"
    );
    let plain = health_on(
        Endpoint::from_shared(format!("http://127.0.0.1:{registry_port}"))
            .unwrap()
            .timeout(Duration::from_secs(5))
            .connect_lazy(),
    )
    .await;
    assert!(plain.is_err(), "{plain:?}");
    // … while the service goes on answering verified clients.
    assert_eq!(
        tls_health(registry_port, &pki.ca_pem(), "localhost").await,
        Ok(ServingStatus::Serving)
    );

    // `tracetrack-auth health` (the exec probe) over TLS: SERVING with the certificate files,
    // not SERVING when it dials in plaintext.
    let bin = workspace_bin("tracetrack-auth");
    let probe = |tls: bool| {
        let mut c = tokio::process::Command::new(&bin);
        c.args(["health", "--addr", &format!("127.0.0.1:{auth_port}")])
            .env("TRACETRACK_CONFIG_DIR", "/nonexistent");
        if tls {
            c.env("TRACETRACK_TLS__GRPC__CERT_FILE", s(pki.path("live.crt")))
                .env("TRACETRACK_TLS__GRPC__KEY_FILE", s(pki.path("live.key")))
                .env("TRACETRACK_TLS__GRPC__CA_FILE", s(pki.path("ca.crt")));
        }
        async move { c.output().await.unwrap() }
    };
    let out = probe(true).await;
    assert!(
        out.status.success(),
        "health over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!probe(false).await.status.success());

    eprintln!("refusals and the health command checked");
    // A new certificate on disk: the next connection to a service, and to the gateway, is
    // handed it, no restart; calls across the chain go on working with it.
    let old = der(&pki.path("live.crt"));
    assert_eq!(handshake(registry_port, &pki.ca_pem()).await.0, old);
    let new = pki.rotate();
    assert_ne!(new, old);
    for port in [registry_port, scan_port, auth_port, gw_port] {
        let (ca, new) = (pki.ca_pem(), new.clone());
        eventually(
            Duration::from_secs(10),
            "the new certificate presented",
            || {
                let (ca, new) = (ca.clone(), new.clone());
                async move { handshake(port, &ca).await.0 == new }
            },
        )
        .await;
    }
    let r = scan(
        "/api/v1/scans/child",
        serde_json::json!({"parent_qr": "SB71001", "child_qr": "CH71002"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["parent"]["child_count"], 2);
    let _ = gw_stop.send(());
}
