//! What `bench` and `chaos` share: a server in its own process (an emulator, the PUT sink) that
//! prints its endpoint lines, then answers commands on its standard input (`stats`, and
//! whatever else it knows), until that closes; and the parsing of their arguments.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde::Deserialize;

/// A number after `name` on the command line, or `default`.
pub(crate) fn arg(args: &[String], name: &str, default: u64) -> u64 {
    text_arg(args, name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The value after `name` on the command line.
pub(crate) fn text_arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// Whether `name` is on the command line.
pub(crate) fn flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

/// The median (the upper one of an even count).
pub(crate) fn median<T: Copy + PartialOrd + Default>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// What a server received so far: requests and the bytes of their bodies.
#[derive(Deserialize)]
pub(crate) struct Stats {
    pub(crate) requests: u64,
    pub(crate) body_bytes: u64,
}

/// A server process: the lines it printed when it started, and a command channel.
pub(crate) struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The endpoint lines it printed, one per service.
    pub(crate) lines: Vec<String>,
}

impl Server {
    /// Starts `exe` and reads its first `lines` lines.
    pub(crate) fn start(exe: &Path, args: &[&str], lines: usize) -> Result<Self, String> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut read = Vec::new();
        for _ in 0..lines {
            let mut line = String::new();
            stdout.read_line(&mut line).map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                return Err(format!("{} printed no endpoint line", exe.display()));
            }
            read.push(line.trim().to_owned());
        }
        Ok(Self { child, stdin, stdout, lines: read })
    }

    /// Sends one command line and reads the one-line answer.
    pub(crate) fn command(&mut self, command: &str) -> Result<String, String> {
        let stdin = self.stdin.as_mut().ok_or("the server's input is closed")?;
        writeln!(stdin, "{command}").and_then(|()| stdin.flush()).map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        Ok(line)
    }

    /// What it received so far.
    pub(crate) fn stats(&mut self) -> Result<Stats, String> {
        let line = self.command("stats")?;
        serde_json::from_str(&line).map_err(|e| format!("stats line {line:?}: {e}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing its standard input stops it.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
