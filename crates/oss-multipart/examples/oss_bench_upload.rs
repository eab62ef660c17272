//! One measured upload for `cargo xtask bench`: a file to the emulator whose JSON line is in
//! `EMULATOR`, with this crate's uploader; or, with `--hash-only`, exactly the hashing OSS needs
//! (MD5 and CRC-64 of every 8 MiB part) over the same file, as the CPU limit to compare with.
//!
//! Prints one JSON line: wall seconds, CPU seconds (user + system, from /proc/self/stat), peak
//! RSS (VmHWM), requests and bytes re-sent.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use oss_multipart::upload_core::emulator::{hash_file, process_usage};
use oss_multipart::upload_core::{Hashes, PartSize};
use oss_multipart::{Client, Config, Credentials, Source, UploadOptions, Uploader};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// (CPU seconds, peak RSS bytes) of this process.
fn usage() -> (f64, u64) {
    let (user, system, rss) = process_usage();
    (user + system, rss)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let file = arg(&args, "--file").ok_or("--file is required")?;
    let part_mib: u64 = arg(&args, "--part-size-mib").and_then(|v| v.parse().ok()).unwrap_or(8);
    let concurrency: usize = arg(&args, "--concurrency").and_then(|v| v.parse().ok()).unwrap_or(4);
    let started = Instant::now();
    if args.iter().any(|a| a == "--hash-only") {
        let bytes = hash_file(
            std::path::Path::new(&file),
            (part_mib << 20) as usize,
            Hashes::MD5 | Hashes::CRC64,
            Hashes::NONE,
        )?;
        let (user, system, rss) = process_usage();
        let line = serde_json::json!({"seconds": started.elapsed().as_secs_f64(), "bytes": bytes, "cpu_seconds": user + system, "peak_rss_bytes": rss});
        println!("{line}");
        return Ok(());
    }
    let emulator: serde_json::Value = serde_json::from_str(&std::env::var("EMULATOR")?)?;
    let text = |k: &str| emulator[k].as_str().unwrap_or_default().to_owned();
    let credentials = Credentials::new(text("access_key_id"), text("access_key_secret"));
    let config = Config::new(&text("endpoint"), credentials)?.with_region(text("region"));
    let uploader = Uploader::new(Client::new(config)?).with_options(UploadOptions {
        part_size: PartSize::Exact(part_mib << 20),
        concurrency,
        ..UploadOptions::default()
    });
    let key = arg(&args, "--key").unwrap_or_else(|| "bench.bin".into());
    let mut upload = uploader.upload(&text("bucket"), &key, Source::file(&file)?)?;
    let done = upload.run().await?;
    let (user, system, _) = process_usage();
    eprintln!("oss-multipart: user {user:.2} s, system {system:.2} s");
    let (cpu, rss) = usage();
    let line = serde_json::json!({
        "seconds": started.elapsed().as_secs_f64(),
        "bytes": done.report.bytes_sent - done.report.bytes_resent,
        "cpu_seconds": cpu,
        "peak_rss_bytes": rss,
        "requests": done.report.part_requests + 2,
        "bytes_resent": done.report.bytes_resent,
    });
    println!("{line}");
    Ok(())
}
