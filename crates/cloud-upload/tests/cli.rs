//! The command line as a script uses it: the emulators as a separate process, uploads to each
//! vendor with exit codes and JSON results, checkpoints, and the demo.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_cloud-upload");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cloud-upload-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn data(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 11) as u8).collect()
}

/// `cloud-upload emulator` in its own process, and its JSON lines by provider.
struct Emulators {
    child: Child,
    lines: Vec<serde_json::Value>,
}

impl Emulators {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(EXE)
            .args(["emulator", "--provider", "all", "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let lines = (0..4)
            .map(|_| {
                let mut line = String::new();
                out.read_line(&mut line).unwrap();
                serde_json::from_str(&line).unwrap()
            })
            .collect();
        Self { child, lines }
    }

    fn get(&self, provider: &str) -> &serde_json::Value {
        self.lines.iter().find(|l| l["provider"] == provider).unwrap()
    }
}

impl Drop for Emulators {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.wait();
    }
}

fn put(dir: &Path, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(EXE);
    // Default checkpoints go to the working directory.
    cmd.current_dir(dir).arg("put").args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn uploads_to_every_vendor_with_exit_codes_a_script_can_rely_on() {
    let dir = temp_dir("put");
    let emulators = Emulators::start(&dir.join("data"));
    let file = dir.join("source.bin");
    let bytes = data(21_000_000, 3);
    std::fs::write(&file, &bytes).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let s = |v: &serde_json::Value| v.as_str().unwrap().to_owned();

    let oss = emulators.get("oss");
    let oss_env = [
        ("OSS_ACCESS_KEY_ID", s(&oss["access_key_id"])),
        ("OSS_ACCESS_KEY_SECRET", s(&oss["access_key_secret"])),
        ("OSS_ENDPOINT", s(&oss["endpoint"])),
        ("OSS_REGION", s(&oss["region"])),
    ];
    let checkpoint = dir.join("oss.json");
    let out = put(
        &dir,
        &oss_env,
        &[&file, "oss://bucket/dir/up.bin", "--json", "--checkpoint", checkpoint.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((result["done"].as_bool(), result["bytes"].as_u64()), (Some(true), Some(21_000_000)));
    assert_eq!(std::fs::read(dir.join("data/oss/bucket/dir/up.bin")).unwrap(), bytes);
    assert!(!checkpoint.exists(), "the checkpoint goes once the upload is done");

    let qs = emulators.get("qingstor");
    let qs_env = [
        ("QINGSTOR_ACCESS_KEY_ID", s(&qs["access_key_id"])),
        ("QINGSTOR_SECRET_ACCESS_KEY", s(&qs["secret_access_key"])),
        ("HOME", dir.to_str().unwrap().to_owned()),
    ];
    let out =
        put(&dir, &qs_env, &[&file, "qingstor://bucket/up.bin", "--endpoint", &s(&qs["endpoint"]), "--zone", "emu1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dir.join("data/qingstor/bucket/up.bin")).unwrap(), bytes);

    let bx = emulators.get("box");
    let box_env = [
        ("BOX_ACCESS_TOKEN", s(&bx["developer_token"])),
        ("BOX_API_URL", s(&bx["api_url"])),
        ("BOX_UPLOAD_URL", s(&bx["upload_url"])),
        ("BOX_OAUTH_URL", s(&bx["oauth_url"])),
    ];
    let out = put(&dir, &box_env, &[&file, "box://folder/0/up.bin", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The session endpoints name the emulator's regional host, which this client was not told
    // to trust: the token is not sent there.
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("refusing to send the Box token"), "{stderr}");
    let mut trusted = box_env.to_vec();
    trusted.push(("BOX_TRUSTED_URLS", s(&bx["session_url"]).trim_end_matches("/api/2.0").to_owned()));
    let out = put(&dir, &trusted, &[&file, "box://folder/0/up.bin", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(result["stored"].as_str().unwrap().contains("sha1"), "{result}");
    assert_eq!(std::fs::read(dir.join("data/box/0/up.bin")).unwrap(), bytes);

    let graph = emulators.get("graph");
    let graph_env = [
        ("GRAPH_ACCESS_TOKEN", s(&graph["access_token"])),
        ("GRAPH_URL", s(&graph["graph_url"])),
        ("GRAPH_TRUSTED_URLS", s(&graph["upload_url"])),
        ("AZURE_AUTHORITY_HOST", s(&graph["login_url"])),
    ];
    let out = put(&dir, &graph_env, &[&file, "graph://me/docs/up.bin", "--part-size", "5MiB", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["parts"].as_u64(), Some(5), "{result}");
    assert_eq!(std::fs::read(dir.join("data/graph/drive-1/docs/up.bin")).unwrap(), bytes);

    // A name held by a session a killed run created (its answer, and so its address, lost):
    // exit 4, resumable, saying when to run again.
    let graph_url = s(&graph["graph_url"]);
    let (host, base) = graph_url.strip_prefix("http://").unwrap().split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST /{base}/me/drive/root:/held.bin:/createUploadSession HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        s(&graph["access_token"])
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let out =
        put(&dir, &graph_env, &[&file, "graph://me/held.bin", "--checkpoint", dir.join("held.json").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("holds the name until it expires"), "{stderr}");

    // SharePoint REST: the library of the site is the Graph drive; a cookie with form digests.
    let rest_env = [
        ("SHAREPOINT_SITE_URL", s(&graph["sharepoint_site_url"])),
        ("SHAREPOINT_COOKIE", s(&graph["sharepoint_cookie"])),
    ];
    let out = put(
        &dir,
        &rest_env,
        &[&file, "sharepoint-rest://Shared Documents/docs/rest up.bin", "--part-size", "4MiB", "--json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["vendor"].as_str(), Some("SharePoint REST"), "{result}");
    assert!(result["stored"].as_str().unwrap().starts_with("file "), "{result}");
    assert_eq!(std::fs::read(dir.join("data/graph/drive-1/docs/rest up.bin")).unwrap(), bytes);
    // The site from --endpoint instead of SHAREPOINT_SITE_URL; a cookie SharePoint refuses.
    let stolen = [("SHAREPOINT_COOKIE", "FedAuth=stolen".to_owned())];
    let site = s(&graph["sharepoint_site_url"]);
    let checkpoint = dir.join("r.json");
    let args = [
        file.as_str(),
        "sharepoint-rest://Shared Documents/denied.bin",
        "--endpoint",
        &site,
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ];
    let out = put(&dir, &stolen, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("stolen"), "{stderr}");

    // Exit codes: bad target 2, refused credentials 3.
    let out = put(&dir, &oss_env, &[&file, "s3://bucket/k"]);
    assert_eq!(out.status.code(), Some(2));
    let mut wrong = oss_env.clone();
    wrong[1].1 = "wrong-secret".into();
    let out =
        put(&dir, &wrong, &[&file, "oss://bucket/denied.bin", "--checkpoint", dir.join("w.json").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("SignatureDoesNotMatch") && !stderr.contains("wrong-secret"), "{stderr}");
}

#[test]
fn the_demo_uploads_interrupts_resumes_and_verifies() {
    let dir = temp_dir("demo");
    let out = Command::new(EXE).args(["demo", "--size", "24MiB", "--keep"]).arg(dir.join("kept")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for vendor in ["| OSS |", "| QingStor |", "| Box |", "| Graph |", "| SharePoint REST |"] {
        let row = stdout.lines().find(|l| l.starts_with(vendor)).unwrap_or_else(|| panic!("{vendor}: {stdout}"));
        assert!(row.ends_with("| yes |"), "{row}");
    }
    let qingstor = stdout.lines().find(|l| l.starts_with("| QingStor |")).unwrap();
    assert!(qingstor.contains("yes: ") && !qingstor.contains("yes: 0 parts"), "{qingstor}");
}
