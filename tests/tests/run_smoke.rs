//! `make run` as a newcomer would use it, checked by a third-party client: Python grpcio (from the
//! project's .venv) discovers auth through reflection, is refused gRPC Login (it answers only the
//! gateway), logs in through the gateway's HTTP API and runs WhoAmI → Logout → WhoAmI over gRPC,
//! which must end UNAUTHENTICATED with the stable reason. Ctrl-C then stops everything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tracetrack_tests::*;

#[tokio::test]
async fn make_run_serves_a_third_party_grpc_client() {
    let root = repo_root();
    let state = std::env::temp_dir().join(format!("tt-run-{}", uuid::Uuid::new_v4().simple()));
    let (grpc, admin) = (free_port(), free_port());
    let (registry, registry_admin, scan, scan_admin) =
        (free_port(), free_port(), free_port(), free_port());
    let (gateway, gateway_admin) = (free_port(), free_port());
    let mut run = tokio::process::Command::new("bash")
        .arg(root.join("scripts/run.sh"))
        .current_dir(&root)
        .env("TT_STATE_DIR", &state)
        .env(
            "TT_DB_NAME",
            format!("tt_run_{}", uuid::Uuid::new_v4().simple()),
        )
        .env("TT_AUTH_PORT", grpc.to_string())
        .env("TT_AUTH_ADMIN_PORT", admin.to_string())
        .env("TT_REGISTRY_PORT", registry.to_string())
        .env("TT_REGISTRY_ADMIN_PORT", registry_admin.to_string())
        .env("TT_SCAN_PORT", scan.to_string())
        .env("TT_SCAN_ADMIN_PORT", scan_admin.to_string())
        .env("TT_BILLING_PORT", free_port().to_string())
        .env("TT_BILLING_ADMIN_PORT", free_port().to_string())
        .env("TT_STATS_PORT", free_port().to_string())
        .env("TT_STATS_ADMIN_PORT", free_port().to_string())
        .env("TT_GATEWAY_PORT", gateway.to_string())
        .env("TT_GATEWAY_ADMIN_PORT", gateway_admin.to_string())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let scan_addr: SocketAddr = format!("127.0.0.1:{scan}").parse().unwrap();
    let start = std::time::Instant::now();
    while health(scan_addr, "").await
        != Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
    {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "make run did not come up"
        );
        assert!(run.try_wait().unwrap().is_none(), "run.sh exited early");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secrets = std::fs::read_to_string(state.join("secrets.env")).unwrap();
    let password = secrets
        .lines()
        .find_map(|l| l.strip_prefix("ADMIN_PASSWORD="))
        .unwrap()
        .to_owned();

    // The gateway is up (the Python client logs in through it).
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{gateway}{p}");
    let start = std::time::Instant::now();
    while http.get(url("/healthz")).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "gateway did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = tokio::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/python/reflection_client.py"))
        .arg(addr.to_string())
        .arg(url(""))
        .arg("admin")
        .arg(&password)
        .output()
        .await
        .expect("the project .venv (scripts/venv.sh) must exist");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\"reason\": \"unauthenticated\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"grpc_login\": \"caller_not_allowed\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("tracetrack.auth.v1.AuthService"),
        "{stdout}"
    );

    // The gateway serves the HTTP API of the same system.
    let login: serde_json::Value = http
        .post(url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    let r = http
        .post(url("/api/v1/scans/parent"))
        .bearer_auth(token)
        .json(&serde_json::json!({"qr": "SB99001", "area": "lucknow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // Ctrl-C (SIGINT to the process group, as a terminal sends it) stops everything it started.
    let pgid = run.id().unwrap() as i32;
    std::process::Command::new("kill")
        .args(["-INT", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), run.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "run.sh did not exit cleanly on Ctrl-C: {status:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "auth still listening after Ctrl-C"
    );
    let _ = std::fs::remove_dir_all(&state);
}
