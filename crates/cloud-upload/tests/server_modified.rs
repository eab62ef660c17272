//! A SharePoint library rewrites Office files once stored: the command line says so, with what
//! was sent and what is stored, in its line and in its JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{data, run, stderr, temp_dir};
use sharepoint_resumable::emulator::{Emulator, EmulatorConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_library_rewrote_is_reported_with_sent_and_stored() {
    let emu =
        Emulator::start(EmulatorConfig { document_libraries: vec!["drive-1".into()], ..EmulatorConfig::default() })
            .await
            .unwrap();
    let dir = temp_dir("server-modified");
    let bytes = data(700_000, 11);
    std::fs::write(dir.join("report.docx"), &bytes).unwrap();
    let env = [
        ("GRAPH_ACCESS_TOKEN", emu.token()),
        ("GRAPH_URL", emu.graph_url()),
        ("GRAPH_TRUSTED_URLS", emu.upload_url()),
        ("AZURE_AUTHORITY_HOST", emu.login_url()),
    ];

    let out = run(&dir, &env, &["put", "report.docx", "graph://me/docs/report.docx", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored = emu.item_content("drive-1", "docs/report.docx").unwrap();
    let modified = &result["server_modified"];
    assert_eq!(modified["sent_bytes"].as_u64(), Some(bytes.len() as u64), "{result}");
    assert_eq!(modified["stored_bytes"].as_u64(), Some(stored.len() as u64), "{result}");
    assert!(modified["sent_digest"].is_string() && modified["sent_digest"] != modified["stored_digest"], "{result}");
    assert!(modified["reason"].as_str().unwrap().contains("metadata"), "{result}");

    let out = run(&dir, &env, &["put", "report.docx", "graph://me/docs/again.docx"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.contains("rewrote")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains(&format!("sent {} bytes", bytes.len())), "{line}");
    let again = emu.item_content("drive-1", "docs/again.docx").unwrap();
    assert!(line.contains(&format!("it stores {} bytes", again.len())), "{line}");

    // A file a library leaves alone has no such field.
    std::fs::write(dir.join("plain.bin"), &bytes).unwrap();
    let out = run(&dir, &env, &["put", "plain.bin", "graph://me/docs/plain.bin", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(result["server_modified"].is_null(), "{result}");
}
