//! What the tests of the command line share: the binary, scratch directories, and the
//! emulators as a separate process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

pub(crate) const EXE: &str = env!("CARGO_BIN_EXE_cloud-upload");

/// A new, empty scratch directory for one test.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cloud-upload-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Bytes that differ with `salt`.
pub(crate) fn data(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 11) as u8).collect()
}

/// `cloud-upload emulator ARGS` in its own process, and its JSON lines by provider.
pub(crate) struct Emulators {
    pub(crate) child: Child,
    pub(crate) lines: Vec<serde_json::Value>,
    out: BufReader<ChildStdout>,
}

impl Emulators {
    /// One provider (`oss`, `box`…) or `all`, with more emulator flags.
    pub(crate) fn start(provider: &str, args: &[&str]) -> Self {
        let mut child = Command::new(EXE)
            .args(["emulator", "--provider", provider])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let count = if provider == "all" { 4 } else { 1 };
        let lines = (0..count)
            .map(|_| {
                let mut line = String::new();
                out.read_line(&mut line).unwrap();
                serde_json::from_str(&line).unwrap()
            })
            .collect();
        Self { child, lines, out }
    }

    pub(crate) fn get(&self, provider: &str) -> &serde_json::Value {
        self.lines.iter().find(|l| l["provider"] == provider).unwrap()
    }

    /// What the emulators received: (requests, body bytes).
    pub(crate) fn stats(&mut self) -> (u64, u64) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "stats").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        (v["requests"].as_u64().unwrap(), v["body_bytes"].as_u64().unwrap())
    }

    /// The environment of an OSS client of these emulators.
    pub(crate) fn oss_env(&self) -> Vec<(&'static str, String)> {
        let oss = self.get("oss");
        vec![
            ("OSS_ACCESS_KEY_ID", s(&oss["access_key_id"])),
            ("OSS_ACCESS_KEY_SECRET", s(&oss["access_key_secret"])),
            ("OSS_ENDPOINT", s(&oss["endpoint"])),
            ("OSS_REGION", s(&oss["region"])),
        ]
    }
}

impl Drop for Emulators {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A JSON string as a `String`.
pub(crate) fn s(v: &serde_json::Value) -> String {
    v.as_str().unwrap().to_owned()
}

/// `cloud-upload ARGS` in `dir` with only `env` (and `PATH`).
pub(crate) fn command(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(EXE);
    cmd.current_dir(dir).args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `cloud-upload ARGS` to its end.
pub(crate) fn run(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    command(dir, env, args).output().unwrap()
}

/// Standard error as text.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
