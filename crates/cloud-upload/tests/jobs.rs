//! Job files: read only when they are safe to trust, continued only where they were started,
//! and never overwritten by another job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Emulators, data, run, s, stderr, temp_dir};
use std::path::Path;

/// A job file as `put` writes it, for `file` to `oss://bucket/KEY`, started at `endpoint`.
fn craft_job(checkpoint: &Path, file: &Path, key: &str, endpoint: &str, region: &str) {
    let job = serde_json::json!({
        "file": file,
        "target": { "Oss": { "bucket": "bucket", "key": key } },
        "settings": { "concurrency": 1 },
        "endpoint": { "url": endpoint, "region": region },
    });
    let path = format!("{}.job.json", checkpoint.display());
    std::fs::write(&path, serde_json::to_vec_pretty(&job).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn a_job_file_others_can_write_is_refused_saying_why() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir("job-0666");
    let emulators = Emulators::start("oss", &[]);
    let env = emulators.oss_env();
    let file = dir.join("data.bin");
    std::fs::write(&file, data(300_000, 1)).unwrap();
    let checkpoint = dir.join("data.bin.upload.json");
    craft_job(&checkpoint, &file, "planted.bin", &s(&emulators.get("oss")["endpoint"]), &env[3].1);
    let job = dir.join("data.bin.upload.json.job.json");
    std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o666)).unwrap();

    let out = run(&dir, &env, &["resume", checkpoint.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("refusing to use") && err.contains("can be written by every user"), "{err}");
    assert!(err.contains(job.to_str().unwrap()), "{err}");
    assert!(!dir.join("data/oss/bucket/planted.bin").exists());

    // A job file of its own, beside a checkpoint others can write: refused as well.
    std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&checkpoint, b"{}").unwrap();
    std::fs::set_permissions(&checkpoint, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = run(&dir, &env, &["resume", checkpoint.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("can be written by every user") && err.contains(checkpoint.to_str().unwrap()), "{err}");
}

#[test]
fn resume_refuses_an_endpoint_other_than_the_jobs_and_names_both() {
    let dir = temp_dir("job-endpoint");
    let emulators = Emulators::start("oss", &[]);
    let env = emulators.oss_env();
    let file = dir.join("data.bin");
    std::fs::write(&file, data(300_000, 2)).unwrap();
    let checkpoint = dir.join("cp.json");
    // The job was started elsewhere; this environment's OSS_ENDPOINT is the emulator.
    craft_job(&checkpoint, &file, "moved.bin", "http://127.0.0.1:9", &env[3].1);

    let out = run(&dir, &env, &["resume", checkpoint.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("http://127.0.0.1:9") && err.contains(&env[2].1) && err.contains("OSS_ENDPOINT"), "{err}");

    // The same on the command line.
    let creds = &env[..2];
    let args = ["resume", checkpoint.to_str().unwrap(), "--endpoint", &env[2].1];
    let out = run(&dir, creds, &args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("http://127.0.0.1:9") && err.contains("--endpoint"), "{err}");
}

#[test]
fn resume_says_what_it_continues_and_where_before_sending() {
    let dir = temp_dir("job-resume-print");
    let emulators = Emulators::start("oss", &["--data-dir", dir.join("data").to_str().unwrap()]);
    let env = emulators.oss_env();
    let file = dir.join("data.bin");
    let bytes = data(300_000, 3);
    std::fs::write(&file, &bytes).unwrap();
    let checkpoint = dir.join("cp.json");
    let endpoint = s(&emulators.get("oss")["endpoint"]);
    craft_job(&checkpoint, &file, "resumed.bin", &endpoint, &env[3].1);

    // Only the credentials: the endpoint and region are the job's.
    let out = run(&dir, &env[..2], &["resume", checkpoint.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let said = err.lines().find(|l| l.starts_with("resuming ")).unwrap_or_else(|| panic!("{err}"));
    assert!(said.contains(file.to_str().unwrap()) && said.contains(&endpoint), "{said}");
    assert_eq!(std::fs::read(dir.join("data/oss/bucket/resumed.bin")).unwrap(), bytes);
}

#[test]
fn put_leaves_another_jobs_checkpoint_alone() {
    let dir = temp_dir("job-other");
    let emulators = Emulators::start("oss", &["--part-delay-ms", "1500"]);
    let env = emulators.oss_env();
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::create_dir_all(dir.join("b")).unwrap();
    std::fs::write(dir.join("a/data.bin"), data(1 << 20, 4)).unwrap();
    std::fs::write(dir.join("b/data.bin"), data(1 << 20, 5)).unwrap();
    let first =
        ["put", "a/data.bin", "oss://bucket/a.bin", "--part-size", "256KiB", "--concurrency", "1", "--step", "1"];
    let out = run(&dir, &env, &first);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let job = dir.join("data.bin.upload.json.job.json");
    let (job_before, state_before) =
        (std::fs::read(&job).unwrap(), std::fs::read(dir.join("data.bin.upload.json")).ok());
    let recorded: serde_json::Value = serde_json::from_slice(&job_before).unwrap();
    let a = std::fs::canonicalize(dir.join("a/data.bin")).unwrap();
    assert_eq!(recorded["file"].as_str(), Some(a.to_str().unwrap()), "the absolute source is recorded");

    // Another file of the same name, to the same target or another: refused, nothing written.
    for target in ["oss://bucket/a.bin", "oss://bucket/b.bin"] {
        let out = run(&dir, &env, &["put", "b/data.bin", target, "--part-size", "256KiB"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(a.to_str().unwrap()) && err.contains("data.bin.upload.json"), "{err}");
        assert_eq!(std::fs::read(&job).unwrap(), job_before);
        assert_eq!(std::fs::read(dir.join("data.bin.upload.json")).ok(), state_before);
    }
    // The same file to another target: refused as well.
    let out = run(&dir, &env, &["put", "a/data.bin", "oss://bucket/c.bin"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("oss://bucket/a.bin"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&job).unwrap(), job_before);
}
