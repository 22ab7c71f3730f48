//! `make k8s-render` as CI runs it: every kustomize overlay under deploy/k8s/overlays renders with
//! `kubectl kustomize` and validates offline against the Kubernetes JSON schemas; the prod render
//! has, per service, ≥ 2 replicas, liveness/readiness/startup probes, an HPA, a PDB and a
//! NetworkPolicy admitting exactly its callers; every Deployment is hardened and outlives its drain;
//! the prod-tls overlay (components/tls) mounts the gRPC TLS Secret as a directory, configures
//! every process with it and probes readiness with `tracetrack-<svc> health` instead of the
//! kubelet's grpc: probe; deploy/compose.yaml validates against the compose-spec schema (deploy/check_render.py). The
//! script installs its pinned tools into .local/deploy-venv on first use (PyPI).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn k8s_overlays_render_and_validate_offline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // Its own output directory, so a concurrent `make k8s-render` cannot interfere.
    let out_dir = std::env::temp_dir().join(format!("tt-k8s-render-{}", std::process::id()));
    let out = Command::new("bash")
        .arg(root.join("deploy/k8s-render.sh"))
        .env("TT_K8S_OUT", &out_dir)
        .current_dir(root)
        .output()
        .expect("bash runs deploy/k8s-render.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&out_dir);
    assert!(
        out.status.success(),
        "deploy/k8s-render.sh failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("check_render:"))
        .unwrap_or_else(|| panic!("no summary line\n{stdout}"));
    assert!(summary.contains(" 0 failed"), "{summary}\n{stdout}");
    for overlay in ["dev", "prod", "prod-tls"] {
        assert!(
            stderr.contains(&format!("rendered {overlay}:")),
            "overlay {overlay} not rendered\n{stderr}"
        );
    }
}
