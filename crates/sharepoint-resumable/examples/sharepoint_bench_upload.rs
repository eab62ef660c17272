//! One measured upload for `cargo xtask bench`: a file to the Graph emulator whose JSON line is
//! in `EMULATOR`, with this crate's uploader (fragments one after another, as Graph demands); or,
//! with `--hash-only`, exactly the hashing Graph needs (the QuickXorHash of the whole file,
//! compared with the finished item's) over the same file, as the CPU limit to compare with.
//!
//! With `--rest`, the same file goes through SharePoint REST instead (StartUpload, ContinueUpload,
//! FinishUpload in `--part-size-mib` chunks, to the emulator's first site): that API asks for no
//! hash, so `--rest --hash-only` measures nothing but the read.
//!
//! Prints one JSON line: wall seconds, CPU seconds (user + system), peak RSS, requests and bytes
//! re-sent. For Graph, `--part-size-mib` (10 by default) is rounded down to a multiple of 320 KiB.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use sharepoint_resumable::upload_core::Hashes;
use sharepoint_resumable::upload_core::emulator::{hash_file, process_usage};
use sharepoint_resumable::{
    Client, Config, Drive, Item, PartSize, RestAuth, RestClient, RestConfig, RestUploader, Source, UploadOptions,
    Uploader,
};

/// Every fragment but the last is a multiple of this.
const FRAGMENT_MULTIPLE: u64 = 320 * 1024;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let file = arg(&args, "--file").ok_or("--file is required")?;
    let part_mib: u64 = arg(&args, "--part-size-mib").and_then(|v| v.parse().ok()).unwrap_or(10);
    let rest = args.iter().any(|a| a == "--rest");
    let part_size =
        if rest { part_mib << 20 } else { ((part_mib << 20) / FRAGMENT_MULTIPLE).max(1) * FRAGMENT_MULTIPLE };
    let started = Instant::now();
    if args.iter().any(|a| a == "--hash-only") {
        let part = usize::try_from(part_size)?;
        let whole = if rest { Hashes::NONE } else { Hashes::QUICKXOR };
        let bytes = hash_file(std::path::Path::new(&file), part, Hashes::NONE, whole)?;
        let (user, system, rss) = process_usage();
        let line = serde_json::json!({"seconds": started.elapsed().as_secs_f64(), "bytes": bytes, "cpu_seconds": user + system, "peak_rss_bytes": rss});
        println!("{line}");
        return Ok(());
    }
    let emulator: serde_json::Value = serde_json::from_str(&std::env::var("EMULATOR")?)?;
    let text = |k: &str| emulator[k].as_str().unwrap_or_default().to_owned();
    let name = arg(&args, "--key")
        .unwrap_or_else(|| format!("bench-{}-{}.bin", std::process::id(), started.elapsed().as_nanos()));
    if rest {
        let auth = RestAuth::Bearer(sharepoint_resumable::Auth::Token(sharepoint_resumable::upload_core::Secret::new(
            text("token"),
        )));
        let config = RestConfig::new(&text("site_url"), auth)?;
        let options =
            UploadOptions { part_size: PartSize::Exact(part_size), concurrency: 1, ..UploadOptions::default() };
        let uploader = RestUploader::new(RestClient::new(config)?).with_options(options);
        let mut upload = uploader.upload(&text("library"), &name, Source::file(&file)?)?;
        let done = upload.run().await?;
        let (user, system, rss) = process_usage();
        let line = serde_json::json!({
            "seconds": started.elapsed().as_secs_f64(),
            "bytes": done.report.bytes_sent - done.report.bytes_resent,
            "cpu_seconds": user + system,
            "peak_rss_bytes": rss,
        });
        println!("{line}");
        return Ok(());
    }
    let mut config = Config::with_token(text("token")).with_urls(&text("graph_url"), &text("login_url"))?;
    config.trusted_urls.push(text("upload_url"));
    // Graph takes one fragment at a time: concurrency 1 whatever the command line says.
    let options = UploadOptions { part_size: PartSize::Exact(part_size), concurrency: 1, ..UploadOptions::default() };
    let uploader = Uploader::new(Client::new(config)?).with_options(options).with_conflict_behavior("replace");
    let mut upload =
        uploader.upload(Drive::Id(text("drive")), Item::Path(format!("bench/{name}")), Source::file(&file)?)?;
    let done = upload.run().await?;
    let (user, system, rss) = process_usage();
    eprintln!("sharepoint-resumable: user {user:.2} s, system {system:.2} s");
    let line = serde_json::json!({
        "seconds": started.elapsed().as_secs_f64(),
        "bytes": done.report.bytes_sent - done.report.bytes_resent,
        "cpu_seconds": user + system,
        "peak_rss_bytes": rss,
        // createUploadSession and the fragments.
        "requests": done.report.part_requests + 1,
        "bytes_resent": done.report.bytes_resent,
    });
    println!("{line}");
    Ok(())
}
