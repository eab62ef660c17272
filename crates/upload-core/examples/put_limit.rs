//! The transport limit for `cargo xtask bench`: plain HTTP PUTs of a file's parts to a server that
//! throws the bodies away, with nothing else (no signing, no hashing, no checkpoints). Two
//! processes, as in the vendor rows:
//!
//! ```text
//! put_limit --serve                                    # prints {"endpoint": "http://127.0.0.1:PORT"}, serves until stdin closes
//! EMULATOR='{"endpoint":…}' put_limit --file F --part-size-mib 8 --concurrency 4
//! ```
//!
//! The client reads each part with one positioned read and PUTs it, `concurrency` at a time on
//! kept-alive connections, and prints the same JSON line as the vendors' bench clients.
#![allow(clippy::print_stdout)]

use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use upload_core::emulator::{Server, empty, process_usage, read_body, serve_stdin};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

async fn serve() -> std::io::Result<()> {
    let requests = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let (r, b) = (requests.clone(), bytes.clone());
    let server = Server::start(([127, 0, 0, 1], 0).into(), move |req: hyper::Request<hyper::body::Incoming>| {
        let (r, b) = (r.clone(), b.clone());
        async move {
            let len = req
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let received = match read_body(req.into_body(), len, Some(upload_core::Hashes::NONE), None).await {
                Ok(body) => body.len(),
                Err(got) => got,
            };
            r.fetch_add(1, Ordering::Relaxed);
            b.fetch_add(received, Ordering::Relaxed);
            Ok(empty(200))
        }
    })
    .await?;
    println!("{}", serde_json::json!({ "endpoint": format!("http://{}", server.addr()) }));
    serve_stdin(|| (requests.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed))).await;
    drop(server);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        return Ok(serve().await?);
    }
    let path = arg(&args, "--file").ok_or("--file is required")?;
    let part = arg(&args, "--part-size-mib").and_then(|v| v.parse::<u64>().ok()).unwrap_or(8) << 20;
    let concurrency: usize = arg(&args, "--concurrency").and_then(|v| v.parse().ok()).unwrap_or(4).max(1);
    let emulator: serde_json::Value = serde_json::from_str(&std::env::var("EMULATOR")?)?;
    let endpoint = emulator["endpoint"].as_str().ok_or("no endpoint")?.to_owned();
    let file = Arc::new(std::fs::File::open(&path)?);
    let size = file.metadata()?.len();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let mut offset = 0u64;
    let mut number = 0u64;
    while offset < size {
        let permit = slots.clone().acquire_owned().await?;
        let len = part.min(size - offset);
        let f = file.clone();
        let body: Bytes = tokio::task::spawn_blocking(move || -> std::io::Result<Bytes> {
            let mut buffer = vec![0u8; usize::try_from(len).unwrap_or(0)];
            f.read_exact_at(&mut buffer, offset)?;
            Ok(Bytes::from(buffer))
        })
        .await??;
        let request = http.put(format!("{endpoint}/part/{number}")).body(body);
        tasks.spawn(async move {
            let answer = request.send().await.and_then(reqwest::Response::error_for_status);
            drop(permit);
            answer.map(drop)
        });
        offset += len;
        number += 1;
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let (user, system, rss) = process_usage();
    let line = serde_json::json!({
        "seconds": started.elapsed().as_secs_f64(),
        "bytes": size,
        "cpu_seconds": user + system,
        "peak_rss_bytes": rss,
    });
    println!("{line}");
    Ok(())
}
