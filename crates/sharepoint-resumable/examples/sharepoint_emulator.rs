//! Runs the Graph emulator as a separate process, for other programs (Microsoft's Python SDK in
//! the conformance run, benchmarks, users' own tests).
//!
//! Prints one JSON line with everything a client needs (the Graph base, the identity platform,
//! a fixed bearer token, a tenant and an app registration for client credentials, the upload
//! host, the drive; the SharePoint REST host, its first site and library, a session cookie),
//! then serves until its standard input closes.
//!
//! ```text
//! cargo run -p sharepoint-resumable --features emulator --example sharepoint_emulator -- [--data-dir DIR] [--discard-bodies] [--default-conflict fail|replace|rename] [--lenient-alignment]
//! ```
#![allow(clippy::print_stdout)]

use serde_json::{Map, Value, json};
use sharepoint_resumable::emulator::{Emulator, EmulatorConfig};
use sharepoint_resumable::upload_core::emulator::serve_stdin;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let mut config = EmulatorConfig {
        data_dir: value("--data-dir").map(Into::into),
        discard_bodies: flag("--discard-bodies"),
        ..EmulatorConfig::default()
    };
    if let Some(conflict) = value("--default-conflict") {
        config.default_conflict = conflict;
    }
    if flag("--lenient-alignment") {
        config.strict_alignment = false;
    }
    let emulator = Emulator::start(config.clone()).await?;
    let (client_id, client_secret) = config.clients.first().cloned().unwrap_or_default();
    // One field per line, so that more (other hosts of the same emulator) slot in beside them.
    let mut line = Map::new();
    let mut put = |key: &str, v: Value| {
        line.insert(key.to_owned(), v);
    };
    put("provider", json!("sharepoint"));
    put("graph_url", json!(emulator.graph_url()));
    put("login_url", json!(emulator.login_url()));
    put("token", json!(emulator.token()));
    put("tenant", json!(config.tenant));
    put("client_id", json!(client_id));
    put("client_secret", json!(client_secret));
    put("upload_addr", json!(emulator.upload_addr().to_string()));
    put("upload_url", json!(emulator.upload_url()));
    put("drive", json!(config.drives.first().cloned().unwrap_or_default()));
    put("me_drive", json!(config.me_drive));
    put("site", json!(config.sites.first().map(|(site, _)| site.clone()).unwrap_or_default()));
    put("fragment_multiple", json!(320 * 1024));
    // The SharePoint REST host: the tenant, the first site, its library, a session cookie.
    put("sharepoint_url", json!(emulator.sharepoint_url()));
    put("site_url", json!(emulator.site_url()));
    put("rest_drive", json!(config.rest_sites.first().map(|(_, drive)| drive.clone()).unwrap_or_default()));
    put(
        "library",
        json!(format!("{}/Shared Documents", config.rest_sites.first().map(|(s, _)| s.as_str()).unwrap_or_default())),
    );
    put("cookie", json!(emulator.cookie()));
    put("rest_max_request", json!(config.rest_max_request));
    println!("{}", Value::Object(line));
    // Serve until whoever started us closes our standard input; `stats` lines are answered.
    serve_stdin(|| emulator.request_totals()).await;
    drop(emulator);
    Ok(())
}
