//! A real SMTP server on loopback (Python's aiosmtpd in the project's `.venv`, scripts/venv.sh):
//! `tests/python/smtp_sink.py` writes every message it accepts, parsed, as one JSON file into a
//! directory the test reads. It can be stopped and started again on the same port (a mail server
//! that is down, then back).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub rcpt_tos: Vec<String>,
    pub message_id: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// (filename, content type, bytes)
    pub attachments: Vec<(String, String, Vec<u8>)>,
}

pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl SmtpServer {
    /// A server on a free port, accepting.
    pub async fn start() -> Self {
        let mut s = Self::reserved();
        s.up().await;
        s
    }

    /// A port for a server that is not running yet (connections are refused until [`up`]).
    ///
    /// [`up`]: SmtpServer::up
    pub fn reserved() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        }
    }

    /// Starts the server on its port; returns once it accepts connections.
    pub async fn up(&mut self) {
        assert!(self.child.is_none(), "the SMTP server is already running");
        let python = crate::repo_root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "the project .venv is missing: run scripts/venv.sh (make test does)"
        );
        let mut child = tokio::process::Command::new(python)
            .arg(crate::repo_root().join("tests/python/smtp_sink.py"))
            .arg("127.0.0.1")
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the SMTP server did not start in 30 s")
            .unwrap();
        assert_eq!(line.as_deref(), Some("ready"), "the SMTP server failed");
        self.child = Some(child);
    }

    /// Stops the server (connections are refused from then on).
    pub async fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Received> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(self.dir.path().join(n)).unwrap())
                        .unwrap();
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                Received {
                    rcpt_tos: v["rcpt_tos"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.as_str().map(String::from))
                        .collect(),
                    message_id: s("message_id"),
                    subject: s("subject"),
                    html: s("html"),
                    text: s("text"),
                    attachments: v["attachments"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            (
                                a["filename"].as_str().unwrap_or_default().to_owned(),
                                a["content_type"].as_str().unwrap_or_default().to_owned(),
                                unhex(a["hex"].as_str().unwrap_or_default()),
                            )
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Polls until at least `n` messages arrived (panics after `limit`).
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                start.elapsed() < limit,
                "{} message(s) arrived, waited for {n}",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}
