//! A private redis-server for tests that kill and restart Redis.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Where a persistent server keeps its snapshot (`dump.rdb`); None: nothing is kept.
    dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut s = Self {
            port: crate::free_port(),
            child: None,
            dir: None,
        };
        s.restart();
        s
    }

    /// A server that keeps a snapshot (written by `SAVE`) and loads it when restarted: a
    /// restart after [`RedisServer::kill`] comes back with the data of the last `SAVE` — a Redis
    /// restored from a stale snapshot.
    pub fn start_persistent() -> Self {
        let mut s = Self {
            port: crate::free_port(),
            child: None,
            dir: Some(tempfile::tempdir().unwrap()),
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port: empty, or from its snapshot when persistent.
    pub fn restart(&mut self) {
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(String::from)
        .to_vec();
        if let Some(dir) = &self.dir {
            args.extend(["--dir".to_owned(), dir.path().display().to_string()]);
            args.extend(["--dbfilename".to_owned(), "dump.rdb".to_owned()]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (make test installs it)");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
