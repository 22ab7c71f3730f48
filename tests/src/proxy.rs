//! A TCP proxy in front of Postgres that a test can cut (dropping every connection and refusing
//! new ones) and restore.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    cut_tx: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        Self::start_delayed(target, std::time::Duration::ZERO).await
    }

    /// Like [`Proxy::start`], and every answer from the target arrives `delay` late (a slow
    /// network or a loaded database: each round trip takes at least `delay`).
    pub async fn start_delayed(target: SocketAddr, delay: std::time::Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let hang = Arc::new(AtomicBool::new(false));
        let (cut_tx, cut_rx) = watch::channel(0u64);
        let (up2, hang2) = (up.clone(), hang.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if hang2.load(Ordering::SeqCst) {
                    // Accepted and never answered, as behind a dead host's firewall.
                    held.push(inbound);
                    continue;
                }
                held.clear();
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = cut_rx.clone();
                // Only cuts after this connection was made count.
                cut.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    if delay.is_zero() {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                        return;
                    }
                    let (mut client_read, mut client_write) = inbound.into_split();
                    let (mut server_read, mut server_write) = outbound.into_split();
                    let up = tokio::io::copy(&mut client_read, &mut server_write);
                    let down = async {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match server_read.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            tokio::time::sleep(delay).await;
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            up,
            hang,
            cut_tx,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut_tx.send_modify(|n| *n += 1);
    }

    /// Drops every open connection; new ones are accepted and never answered (a host gone
    /// from the network: connecting takes as long as the client is willing to wait).
    pub fn hang(&self) {
        self.hang.store(true, Ordering::SeqCst);
        self.cut_tx.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.hang.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The address of the Postgres server in a `postgres://user@host:port/db` URL.
pub async fn postgres_addr(db_url: &str) -> SocketAddr {
    let rest = db_url.split_once('@').unwrap().1;
    let hostport = rest.split_once('/').unwrap().0;
    tokio::net::lookup_host(hostport)
        .await
        .unwrap()
        .next()
        .unwrap()
}

/// A proxy in front of the database of `db_url` (answers delayed by `delay`) and the same URL
/// through it.
pub async fn in_front_of(db_url: &str, delay: std::time::Duration) -> (Proxy, String) {
    let target = postgres_addr(db_url).await;
    let proxy = Proxy::start_delayed(target, delay).await;
    let via_proxy = db_url.replacen(&target.to_string(), &proxy.addr.to_string(), 1);
    (proxy, via_proxy)
}
