//! `tracetrack-gateway health`: one plain HTTP/1.1 request to `/readyz`, without an HTTP client
//! library, for scripts and container health checks.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Ok when the gateway at `addr` (host:port) answers `/readyz` with 200 within two seconds.
pub async fn check(addr: &str) -> anyhow::Result<()> {
    let status = tokio::time::timeout(Duration::from_secs(2), async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(
            format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 256];
        // The status line is all we need.
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        anyhow::Ok(head)
    })
    .await
    .map_err(|_| anyhow::anyhow!("no answer within 2 s"))??;
    let line = String::from_utf8_lossy(&status);
    let line = line.lines().next().unwrap_or_default();
    match line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => anyhow::bail!("/readyz answered {code}"),
        None => anyhow::bail!("not an HTTP answer: {line:?}"),
    }
}
