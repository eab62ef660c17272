//! What the command line must not do: print a server's control characters raw, delete a
//! directory it did not make, hide its exit codes, or undercount what the emulators received.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Emulators, data, run, stderr, temp_dir};

#[test]
fn uploads_prints_a_keys_control_characters_escaped() {
    let dir = temp_dir("uploads-escape");
    let emulators = Emulators::start("oss", &["--part-delay-ms", "1500"]);
    let env = emulators.oss_env();
    std::fs::write(dir.join("data.bin"), data(1 << 20, 7)).unwrap();
    // An upload left unfinished under a key with an escape sequence (and a bidi override).
    let target = "oss://bucket/red\x1b[31mkey\u{202e}.bin";
    let args = ["put", "data.bin", target, "--part-size", "256KiB", "--concurrency", "1", "--step", "1"];
    let out = run(&dir, &env, &args);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(!stderr(&out).contains('\x1b'), "{}", stderr(&out));

    let out = run(&dir, &env, &["uploads", "oss://bucket"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout.contains("oss://bucket/red\\x1b[31mkey\\u{202e}.bin\t"), "{stdout:?}");
    assert!(!stdout.contains('\x1b') && !stdout.contains('\u{202e}'), "{stdout:?}");
}

#[test]
fn demo_refuses_a_keep_directory_that_holds_files() {
    let dir = temp_dir("demo-keep");
    let kept = dir.join("kept");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::write(kept.join("precious.txt"), b"mine").unwrap();
    let out = run(&dir, &[], &["demo", "--size", "1MiB", "--keep", kept.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not empty") && err.contains(kept.to_str().unwrap()), "{err}");
    assert_eq!(std::fs::read(kept.join("precious.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(&kept).unwrap().count(), 1, "nothing was added");
}

#[test]
fn help_lists_the_exit_codes() {
    let out = run(std::path::Path::new("."), &[], &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for line in ["Exit codes:", "  0  ", "  1  ", "  2  bad input", "  3  ", "  4  ", "  5  ", "  130  "] {
        assert!(help.contains(line), "{line:?} in {help}");
    }
}

#[test]
fn emulator_stats_count_every_request_beyond_the_kept_log() {
    let dir = temp_dir("stats");
    let mut emulators = Emulators::start("oss", &["--log-capacity", "2"]);
    let env = emulators.oss_env();
    std::fs::write(dir.join("data.bin"), data(1 << 20, 8)).unwrap();
    let out = run(&dir, &env, &["put", "data.bin", "oss://bucket/stats.bin", "--part-size", "256KiB"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (requests, bytes) = emulators.stats();
    // Initiate, four parts and complete at least, though the log keeps the latest two.
    assert!(requests >= 6, "{requests}");
    assert!(bytes >= 1 << 20, "{bytes}");
}

/// A server whose listing of unfinished uploads sends the next markers back and forth (`b`,
/// then `a`, then `b`…): `uploads` says the listing is broken instead of asking for ever.
#[test]
fn uploads_stops_at_a_listing_whose_markers_go_back() {
    use std::io::{Read as _, Write as _};
    let dir = temp_dir("uploads-alternating");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1000) {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let next = if String::from_utf8_lossy(&head).contains("key-marker=b") { "a" } else { "b" };
            let body = format!(
                "<?xml version=\"1.0\"?><ListMultipartUploadsResult><Bucket>bucket</Bucket><IsTruncated>true</IsTruncated>\
                 <NextKeyMarker>{next}</NextKeyMarker><NextUploadIdMarker>1</NextUploadIdMarker><Upload><Key>{next}</Key>\
                 <UploadId>1</UploadId><Initiated>2026-01-01T00:00:00.000Z</Initiated></Upload></ListMultipartUploadsResult>"
            );
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    let env = [
        ("OSS_ACCESS_KEY_ID", "ak".to_owned()),
        ("OSS_ACCESS_KEY_SECRET", "sk".to_owned()),
        ("OSS_ENDPOINT", endpoint),
        ("OSS_REGION", "cn-hangzhou".to_owned()),
    ];
    let out = run(&dir, &env, &["uploads", "oss://bucket"]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("goes back"), "{text}");
}

/// `--endpoint` names the host; the region still comes from `OSS_REGION`, as without it.
#[test]
fn an_endpoint_on_the_command_line_keeps_the_region_of_the_environment() {
    let dir = temp_dir("endpoint-region");
    let emulators = Emulators::start("oss", &[]);
    let mut env = emulators.oss_env();
    let endpoint = env.iter().find(|(k, _)| *k == "OSS_ENDPOINT").map(|(_, v)| v.clone()).unwrap();
    env.retain(|(k, _)| *k != "OSS_ENDPOINT");
    let out = run(&dir, &env, &["uploads", "oss://bucket", "--endpoint", &endpoint]);
    assert!(out.status.success(), "{}", stderr(&out));
}
