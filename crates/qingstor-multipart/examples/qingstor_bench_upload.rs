//! One measured upload for `cargo xtask bench`: a file to the emulator whose JSON line is in
//! `EMULATOR`, with this crate's uploader; or, with `--hash-only`, exactly the hashing QingStor
//! needs (the MD5 of every part for Content-MD5, and the MD5 of the whole object for the ETag
//! stored at Complete) over the same file, as the CPU limit to compare with.
//!
//! Prints one JSON line: wall seconds, CPU seconds (user + system), peak RSS, requests and bytes
//! re-sent.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use qingstor_multipart::upload_core::emulator::{hash_file, process_usage};
use qingstor_multipart::upload_core::{Hashes, PartSize};
use qingstor_multipart::{Client, Config, Credentials, Source, UploadOptions, Uploader};

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
        let bytes = hash_file(std::path::Path::new(&file), (part_mib << 20) as usize, Hashes::MD5, Hashes::MD5)?;
        let (user, system, rss) = process_usage();
        let line = serde_json::json!({"seconds": started.elapsed().as_secs_f64(), "bytes": bytes, "cpu_seconds": user + system, "peak_rss_bytes": rss});
        println!("{line}");
        return Ok(());
    }
    let emulator: serde_json::Value = serde_json::from_str(&std::env::var("EMULATOR")?)?;
    let text = |k: &str| emulator[k].as_str().unwrap_or_default().to_owned();
    let credentials = Credentials::new(text("access_key_id"), text("secret_access_key"));
    let config = Config::new(credentials).with_endpoint(&text("endpoint"))?.with_zone(text("zone"));
    let uploader = Uploader::new(Client::new(config)?).with_options(UploadOptions {
        part_size: PartSize::Exact(part_mib << 20),
        concurrency,
        ..UploadOptions::default()
    });
    let key = arg(&args, "--key").unwrap_or_else(|| "bench.bin".into());
    let mut upload = uploader.upload(&text("bucket"), &key, Source::file(&file)?)?;
    let done = upload.run().await?;
    let (user, system, rss) = process_usage();
    eprintln!("qingstor-multipart: user {user:.2} s, system {system:.2} s");
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
