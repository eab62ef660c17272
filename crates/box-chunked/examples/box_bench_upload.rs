//! One measured upload for `cargo xtask bench`: a file to the emulator whose JSON line is in
//! `EMULATOR`, with this crate's uploader; or, with `--hash-only`, exactly the hashing Box needs
//! (the SHA-1 of every part for `Digest`, and the SHA-1 of the whole file for Commit) over the
//! same file, as the CPU limit to compare with.
//!
//! Prints one JSON line: wall seconds, CPU seconds (user + system), peak RSS, requests and bytes
//! re-sent.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use box_chunked::upload_core::Hashes;
use box_chunked::upload_core::emulator::{hash_file, process_usage};
use box_chunked::{Client, Config, Source, UploadOptions, Uploader};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let file = arg(&args, "--file").ok_or("--file is required")?;
    let part_mib: u64 = arg(&args, "--part-size-mib").and_then(|v| v.parse().ok()).unwrap_or(8);
    let concurrency: usize = arg(&args, "--concurrency").and_then(|v| v.parse().ok()).unwrap_or(4);
    let started = Instant::now();
    if args.iter().any(|a| a == "--hash-only") {
        let bytes = hash_file(std::path::Path::new(&file), (part_mib << 20) as usize, Hashes::SHA1, Hashes::SHA1)?;
        let (user, system, rss) = process_usage();
        let line = serde_json::json!({"seconds": started.elapsed().as_secs_f64(), "bytes": bytes, "cpu_seconds": user + system, "peak_rss_bytes": rss});
        println!("{line}");
        return Ok(());
    }
    let emulator: serde_json::Value = serde_json::from_str(&std::env::var("EMULATOR")?)?;
    let text = |k: &str| emulator[k].as_str().unwrap_or_default().to_owned();
    let mut config = Config::with_token(text("developer_token")).with_urls(
        &text("api_url"),
        &text("upload_url"),
        &text("oauth_url"),
    )?;
    // The emulator's session endpoints point at a host of their own, as Box's regional hosts do.
    config.trusted_urls.push(text("session_url").trim_end_matches("/api/2.0").to_owned());
    let uploader =
        Uploader::new(Client::new(config)?).with_options(UploadOptions { concurrency, ..UploadOptions::default() });
    // Box refuses a second file of the same name: one name per run.
    let name = arg(&args, "--key")
        .unwrap_or_else(|| format!("bench-{}-{}.bin", std::process::id(), started.elapsed().as_nanos()));
    let mut upload = uploader.upload(&text("folder_id"), &name, Source::file(&file)?)?;
    let done = upload.run().await?;
    let (user, system, rss) = process_usage();
    eprintln!("box-chunked: user {user:.2} s, system {system:.2} s");
    let line = serde_json::json!({
        "seconds": started.elapsed().as_secs_f64(),
        "bytes": done.report.bytes_sent - done.report.bytes_resent,
        "cpu_seconds": user + system,
        "peak_rss_bytes": rss,
        "requests": done.report.part_requests + 2,
        "bytes_resent": done.report.bytes_resent,
    });
    println!("{line}");
    Ok(())
}
