//! Ctrl-C: the first stops the upload with its state saved (exit 4, resumable); a second quits
//! at once (exit 130), whatever is still waiting.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Emulators, command, data, s, temp_dir};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// SIGINT, as Ctrl-C sends it.
fn interrupt(child: &Child) {
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Waits for the child's end, at most `limit`.
fn wait_for(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running {limit:?} after the interrupt");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Standard error's lines as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn ctrl_c_during_boxs_commit_processing_stops_resumably() {
    let dir = temp_dir("sigint-box");
    let mut emulators =
        Emulators::start("box", &["--box-processing-commits", "1000", "--box-processing-retry-after", "30"]);
    let bx = emulators.get("box").clone();
    let env = [
        ("BOX_ACCESS_TOKEN", s(&bx["developer_token"])),
        ("BOX_API_URL", s(&bx["api_url"])),
        ("BOX_UPLOAD_URL", s(&bx["upload_url"])),
        ("BOX_OAUTH_URL", s(&bx["oauth_url"])),
        ("BOX_TRUSTED_URLS", s(&bx["session_url"]).trim_end_matches("/api/2.0").to_owned()),
    ];
    let len = 21_000_000;
    std::fs::write(dir.join("data.bin"), data(len, 9)).unwrap();
    let mut child =
        command(&dir, &env, &["put", "data.bin", "box://folder/0/data.bin"]).stderr(Stdio::piped()).spawn().unwrap();
    let err = lines(&mut child);
    // Every byte is in: the commit is being answered 202, come back in 30 s.
    let started = Instant::now();
    while emulators.stats().1 < len as u64 {
        assert!(started.elapsed() < Duration::from_secs(30), "the parts never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "the commit should still be waiting");
    interrupt(&child);
    let status = wait_for(&mut child, Duration::from_secs(10));
    let text: Vec<String> = err.iter().collect();
    let text = text.join("\n");
    assert_eq!(status.code(), Some(4), "{text}");
    assert!(text.contains("cloud-upload resume data.bin.upload.json"), "{text}");
    assert!(dir.join("data.bin.upload.json").exists(), "{text}");
}

#[test]
fn a_second_ctrl_c_quits_at_once_with_130() {
    let dir = temp_dir("sigint-twice");
    // A server that takes the request and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (accepted, held) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        accepted.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        drop(stream);
    });
    let env = [
        ("OSS_ACCESS_KEY_ID", "ak".to_owned()),
        ("OSS_ACCESS_KEY_SECRET", "sk".to_owned()),
        ("OSS_ENDPOINT", endpoint),
        ("OSS_REGION", "cn-hangzhou".to_owned()),
    ];
    let mut child =
        command(&dir, &env, &["uploads", "oss://bucket", "--abort"]).stderr(Stdio::piped()).spawn().unwrap();
    let err = lines(&mut child);
    held.recv_timeout(Duration::from_secs(10)).unwrap();
    interrupt(&child);
    // The first asks to stop cleanly and says how to quit at once.
    let said = err.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(said.contains("Ctrl-C again"), "{said}");
    interrupt(&child);
    let status = wait_for(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "{status:?}");
}
