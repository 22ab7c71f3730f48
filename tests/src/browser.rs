//! The runner the Chromium suites share (tests/tests/browser*.rs): `node --test` on test files
//! of tests/browser (playwright-core driving Debian's Chromium; both installed by
//! scripts/browser-deps.sh) against a running gateway, one file after another, with the test
//! users' passwords and a screenshots folder in its environment; its output printed, and every
//! test passed asserted.
//!
//! ```ignore
//! let out = NodeTests::new(&["pages.test.mjs"], gw.addr)
//!     .screenshots("screenshots/pages")
//!     .env("TT_DISPATCHER", "dora")
//!     .run()
//!     .await;
//! ```

use std::ffi::OsStr;
use std::fmt::Display;
use std::path::PathBuf;

use crate::{repo_root, ADMIN_PASSWORD, USER_PASSWORD};

/// tests/browser.
pub fn browser_dir() -> PathBuf {
    repo_root().join("tests/browser")
}

/// A `node --test` run of some of tests/browser's files.
pub struct NodeTests {
    cmd: tokio::process::Command,
}

impl NodeTests {
    /// `files` (relative to tests/browser) against the gateway at `gateway` (`host:port`), with
    /// `TT_BASE_URL`, `TT_PASSWORD` (the kit's users) and `TT_ADMIN_PASSWORD` set; screenshots in
    /// tests/browser/screenshots unless [`NodeTests::screenshots`] says otherwise.
    pub fn new(files: &[&str], gateway: impl Display) -> Self {
        let dir = browser_dir();
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg("--test").arg("--test-concurrency=1");
        for f in files {
            cmd.arg(dir.join(f));
        }
        cmd.current_dir(&dir)
            .env("TT_BASE_URL", format!("http://{gateway}"))
            .env("TT_SCREENSHOTS", dir.join("screenshots"))
            .env("TT_PASSWORD", USER_PASSWORD)
            .env("TT_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .kill_on_drop(true);
        NodeTests { cmd }
    }

    /// Screenshots in this folder of tests/browser (a test artifact).
    pub fn screenshots(mut self, sub: &str) -> Self {
        self.cmd.env("TT_SCREENSHOTS", browser_dir().join(sub));
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Runs the files; prints what node printed; panics unless every test passed. Answers node's
    /// standard output (for figures a test prints, such as `@@tti`).
    pub async fn run(mut self) -> String {
        let out = self
            .cmd
            .output()
            .await
            .expect("node must be installed (scripts/browser-deps.sh)");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{stdout}\n{stderr}");
        assert!(
            out.status.success(),
            "browser tests failed:\n{stdout}\n{stderr}"
        );
        assert!(stdout.contains("# fail 0"), "{stdout}");
        stdout
    }
}
