//! Runs the Box emulator as a separate process, for other programs (the official SDK in the
//! conformance run, benchmarks, users' own tests).
//!
//! Prints one JSON line with everything a client needs (API, upload and token URLs, a developer
//! token, an OAuth client, the root folder, the chunked minimum), then serves until its
//! standard input closes.
//!
//! ```text
//! cargo run -p box-chunked --features emulator --example box_emulator -- [--data-dir DIR] [--discard-bodies] [--processing-commits N]
//! ```
#![allow(clippy::print_stdout)]

use box_chunked::emulator::{Emulator, EmulatorConfig};
use box_chunked::upload_core::emulator::serve_stdin;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let mut config = EmulatorConfig {
        data_dir: value("--data-dir").map(Into::into),
        discard_bodies: args.iter().any(|a| a == "--discard-bodies"),
        ..EmulatorConfig::default()
    };
    if let Some(n) = value("--processing-commits") {
        config.processing_commits = n
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--processing-commits: {e}")))?;
    }
    let emulator = Emulator::start(config.clone()).await?;
    let (client_id, client_secret) = config.clients.first().cloned().unwrap_or_default();
    let line = serde_json::json!({
        "provider": "box",
        "api_url": emulator.api_url(),
        "upload_url": emulator.upload_url(),
        "oauth_url": emulator.oauth_url(),
        "session_url": emulator.session_url(),
        "developer_token": emulator.token(),
        "client_id": client_id,
        "client_secret": client_secret,
        "enterprise_id": "900",
        "folder_id": "0",
        "chunked_min": config.min_chunked,
    });
    println!("{line}");
    // Serve until whoever started us closes our standard input; `stats` lines are answered.
    serve_stdin(|| emulator.request_totals()).await;
    drop(emulator);
    Ok(())
}
