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
