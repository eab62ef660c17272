//! Runs the QingStor emulator as a separate process, for other programs (the official SDK in the
//! conformance run, benchmarks, users' own tests).
//!
//! Prints one JSON line with everything a client needs (endpoint, protocol, host, port, zone,
//! bucket, credentials), then serves until its standard input closes.
//!
//! ```text
//! cargo run -p qingstor-multipart --features emulator --example qingstor_emulator -- [--listen 127.0.0.1:0] [--data-dir DIR] [--no-verify-md5] [--discard-bodies]
//! ```
#![allow(clippy::print_stdout)]

use qingstor_multipart::emulator::{Emulator, EmulatorConfig};
use qingstor_multipart::upload_core::emulator::serve_stdin;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let mut config = EmulatorConfig::default();
    if let Some(listen) = value("--listen") {
        config.listen = listen
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--listen: {e}")))?;
    }
    config.data_dir = value("--data-dir").map(Into::into);
    // For benchmarks: do not let the server's MD5 compete with the client for the CPU.
    config.verify_md5 = !args.iter().any(|a| a == "--no-verify-md5");
    config.discard_bodies = args.iter().any(|a| a == "--discard-bodies");
    let emulator = Emulator::start(config.clone()).await?;
    let (access_key_id, secret_access_key) = config.keys.first().cloned().unwrap_or_default();
    let line = serde_json::json!({
        "provider": "qingstor",
        "endpoint": emulator.endpoint(),
        "protocol": "http",
        "host": emulator.addr().ip().to_string(),
        "port": emulator.addr().port(),
        "zone": emulator.zone(),
        "bucket": config.buckets.first(),
        "access_key_id": access_key_id,
        "secret_access_key": secret_access_key,
    });
    println!("{line}");
    // Serve until whoever started us closes our standard input; `stats` lines are answered.
    serve_stdin(|| emulator.request_totals()).await;
    drop(emulator);
    Ok(())
}
