//! The SharePoint REST host of the sharepoint-resumable emulator over raw HTTP: Files/add and
//! the StartUpload / ContinueUpload / FinishUpload family in the three OData flavours, the same
//! items as the Graph host, offsets, unknown sessions, locks, form digests, authentication, the
//! request size limit, CancelUpload of a stub, GetUploadStatus, expiry, faults, and the
//! directory and discard storage modes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use sharepoint_resumable::emulator::{Emulator, EmulatorConfig, Fault, FaultAction, Operation};
use tests::fake::{pattern, temp_dir};

const VERBOSE: &str = "application/json;odata=verbose";
const MINIMAL: &str = "application/json;odata=minimalmetadata";
const NOMETADATA: &str = "application/json;odata=nometadata";
const DRIVE: &str = "drive-1";
const LIBRARY: &str = "/sites/emulator/Shared Documents";

async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.unwrap()
}

/// A request helper bound to one emulator and one way of authenticating.
struct Rest {
    http: Client,
    web: String,
    auth: Auth,
    accept: &'static str,
}

#[derive(Clone)]
enum Auth {
    Bearer(String),
    Cookie(String, Option<String>),
    None,
}

impl Rest {
    fn new(emu: &Emulator) -> Self {
        Self { http: Client::new(), web: emu.site_url(), auth: Auth::Bearer(emu.token()), accept: NOMETADATA }
    }

    fn with(&self, auth: Auth, accept: &'static str) -> Self {
        Self { http: self.http.clone(), web: self.web.clone(), auth, accept }
    }

    fn request(&self, method: reqwest::Method, api: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}/_api/{api}", self.web)).header("accept", self.accept);
        match &self.auth {
            Auth::Bearer(t) => r = r.bearer_auth(t),
            Auth::Cookie(c, digest) => {
                r = r.header("cookie", format!("other=1; {c}"));
                if let Some(d) = digest {
                    r = r.header("x-requestdigest", d);
                }
            }
            Auth::None => {}
        }
        r
    }

    async fn post(&self, api: &str, body: impl Into<reqwest::Body>) -> Response {
        self.request(reqwest::Method::POST, api).body(body).send().await.unwrap()
    }

    async fn get(&self, api: &str) -> Response {
        self.request(reqwest::Method::GET, api).send().await.unwrap()
    }
}

/// `{folder}/Files/add(url='<name>',overwrite=true)` on the library root.
fn add(name: &str) -> String {
    format!("web/GetFolderByServerRelativeUrl('Shared%20Documents')/Files/add(url='{}',overwrite=true)", quoted(name))
}

/// A name as an OData string literal body, percent-encoded for the path.
fn quoted(name: &str) -> String {
    let escaped = name.replace('\'', "''");
    escaped
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn file(name: &str) -> String {
    format!("web/GetFileByServerRelativePath(DecodedUrl='{}')", quoted(&format!("{LIBRARY}/{name}")))
}

fn id(n: u8) -> String {
    format!("guid'{n:08x}-d9cb-469f-a165-70867728950e'")
}

async fn json(r: Response) -> Value {
    let bytes = r.bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)))
}

/// The status and `odata.error` (or verbose `error`) code of an answer.
async fn error(r: Response) -> (StatusCode, String) {
    let status = r.status();
    let doc = json(r).await;
    let e = doc.get("odata.error").or_else(|| doc.get("error")).unwrap_or_else(|| panic!("no error in {doc}"));
    (status, e["code"].as_str().unwrap().to_owned())
}

/// The Int64 of an answer in any flavour.
async fn int64(r: Response, method: &str) -> u64 {
    assert_eq!(r.status(), 200);
    let doc = json(r).await;
    let v = doc.get("value").or_else(|| doc.get("d").and_then(|d| d.get(method))).unwrap();
    v.as_str().unwrap_or_else(|| panic!("Int64 is a JSON string: {doc}")).parse().unwrap()
}

const OFFSET: &str = "-2147024809, System.ArgumentOutOfRangeException";
const NO_SESSION: &str = "-2130246326, Microsoft.SharePoint.SPException";
const LOCKED: &str = "-2147018894, Microsoft.SharePoint.SPFileLockException";
const SECURITY: &str = "-2130575251, Microsoft.SharePoint.SPException";
const DENIED: &str = "-2147024891, System.UnauthorizedAccessException";
const TOO_BIG: &str = "-1, Microsoft.SharePoint.Client.InvalidClientQueryException";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_in_every_flavour_stores_the_bytes_graph_sees() {
    let emu = start(EmulatorConfig::default()).await;
    let base = Rest::new(&emu);
    for (n, accept) in [VERBOSE, MINIMAL, NOMETADATA].into_iter().enumerate() {
        let rest = base.with(Auth::Bearer(emu.token()), accept);
        let name = format!("flavour {n} #1 100% it's 中文.bin");
        let data = Bytes::from(pattern(3 * 1000 + 7, n as u64));
        let stub = rest.post(&add(&name), "").await;
        assert_eq!(stub.status(), 200);
        let sp = stub.headers().get("sprequestguid").unwrap().to_str().unwrap().to_owned();
        assert_eq!(stub.headers().get("request-id").unwrap().to_str().unwrap(), sp);
        let doc = json(stub).await;
        let fields = if accept == VERBOSE { &doc["d"] } else { &doc };
        assert_eq!(fields["Length"], "0");
        assert_eq!(fields["ServerRelativeUrl"], format!("{LIBRARY}/{name}"));
        match accept {
            VERBOSE => assert_eq!(doc["d"]["__metadata"]["type"], "SP.File"),
            MINIMAL => assert_eq!(doc["odata.type"], "SP.File"),
            _ => assert!(doc.get("odata.type").is_none() && doc.get("d").is_none()),
        }
        let unique_id = fields["UniqueId"].as_str().unwrap().to_owned();
        // Chunks by path, by UniqueId, by the other path form: all the same file.
        let by_id = format!("web/GetFileById('{unique_id}')");
        let by_url = format!("web/GetFileByServerRelativeUrl('{}')", quoted(&format!("{LIBRARY}/{name}")));
        let u = id(n as u8);
        let held = int64(
            rest.post(&format!("{}/StartUpload(uploadId={u})", file(&name)), data.slice(..1000)).await,
            "StartUpload",
        )
        .await;
        assert_eq!(held, 1000);
        // Nothing changes before FinishUpload.
        assert_eq!(emu.item_content(DRIVE, &name).unwrap().len(), 0);
        let held = int64(
            rest.post(&format!("{by_id}/continueupload(UPLOADID={u},fileoffset=1000)"), data.slice(1000..2000)).await,
            "ContinueUpload",
        )
        .await;
        assert_eq!(held, 2000);
        let held = int64(
            rest.post(&format!("{by_url}/ContinueUpload(uploadId={u},fileOffset=2000)"), data.slice(2000..3000)).await,
            "ContinueUpload",
        )
        .await;
        assert_eq!(held, 3000);
        let done =
            rest.post(&format!("{}/FinishUpload(uploadId={u},fileOffset=3000)", file(&name)), data.slice(3000..)).await;
        assert_eq!(done.status(), 200);
        let doc = json(done).await;
        let fields = if accept == VERBOSE { &doc["d"] } else { &doc };
        assert_eq!(fields["Length"], data.len().to_string());
        assert_eq!(fields["UniqueId"], unique_id.as_str());
        assert_eq!(fields["MajorVersion"], 2);
        // The same bytes through REST $value, the emulator and the Graph host.
        let got = rest.get(&format!("{by_id}/$value")).await.bytes().await.unwrap();
        assert_eq!(got, data);
        assert_eq!(emu.item_content(DRIVE, &name).unwrap(), data);
        let graph = reqwest::Client::new()
            .get(format!("{}/drives/{DRIVE}/items/{}/content", emu.graph_url(), emu.item_id(DRIVE, &name).unwrap()))
            .bearer_auth(emu.token())
            .send()
            .await
            .unwrap();
        assert_eq!(graph.bytes().await.unwrap(), data);
        // The session is over.
        let (status, code) = error(rest.post(&format!("{by_id}/CancelUpload(uploadId={u})"), "").await).await;
        assert_eq!((status.as_u16(), code.as_str()), (404, NO_SESSION));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_item_is_a_rest_file_and_a_missing_one_is_404() {
    let emu = start(EmulatorConfig::default()).await;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/me/drive/root:/dir/g.bin:/createUploadSession", emu.graph_url()))
        .bearer_auth(emu.token())
        .send()
        .await
        .unwrap();
    let session: Value = json(created).await;
    let put = http.put(session["uploadUrl"].as_str().unwrap()).header("content-range", "bytes 0-2/3").body("abc");
    assert_eq!(put.send().await.unwrap().status(), 201);
    let rest = Rest::new(&emu).with(Auth::Bearer(emu.token()), MINIMAL);
    let doc = json(rest.get(&file("dir/g.bin")).await).await;
    assert_eq!(doc["Length"], "3");
    assert_eq!(doc["odata.metadata"], format!("{}/_api/$metadata#SP.ApiData.Files12/@Element", emu.site_url()));
    assert_eq!(rest.get(&format!("{}/$value", file("dir/g.bin"))).await.bytes().await.unwrap(), "abc");
    // Files/add into a folder Graph made.
    let folder = "web/GetFolderByServerRelativePath(DecodedUrl=@a1)/Files/AddUsingPath(DecodedUrl=@a2,Overwrite=false)";
    let query = format!("?@a1='{}'&@a2='{}'", quoted(&format!("{LIBRARY}/dir")), quoted("n'ew #.bin"));
    assert_eq!(rest.post(&format!("{folder}{query}"), "xyz").await.status(), 200);
    assert_eq!(emu.item_content(DRIVE, "dir/n'ew #.bin").unwrap(), "xyz");
    // overwrite=false on an existing file; a folder nobody made; a file that is not there.
    let (status, code) = error(rest.post(&format!("{folder}{query}"), "again").await).await;
    assert_eq!((status.as_u16(), code.as_str()), (400, "-2130575257, Microsoft.SharePoint.SPException"));
    let nowhere =
        "web/GetFolderByServerRelativeUrl('Shared%20Documents/nowhere')/Files/add(url='a.bin',overwrite=true)";
    let (status, code) = error(rest.post(nowhere, "").await).await;
    assert_eq!((status.as_u16(), code.as_str()), (404, "-2147024894, System.IO.FileNotFoundException"));
    let (status, code) = error(rest.get(&file("dir/missing.bin")).await).await;
    assert_eq!((status.as_u16(), code.as_str()), (404, "-2130575338, Microsoft.SharePoint.SPException"));
    // Names SharePoint refuses.
    for bad in ["a:b.bin", "trailing.", " lead.bin", "q?.bin", "pipe|.bin"] {
        let (status, code) = error(rest.post(&add(bad), "x").await).await;
        assert_eq!((status.as_u16(), code.as_str()), (400, "-2130575245, Microsoft.SharePoint.SPException"), "{bad}");
        assert!(emu.item_content(DRIVE, bad).is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_offset_is_refused_and_the_session_goes_on() {
    let emu = start(EmulatorConfig::default()).await;
    let rest = Rest::new(&emu);
    rest.post(&add("o.bin"), "").await;
    let u = id(1);
    assert_eq!(int64(rest.post(&format!("{}/StartUpload(uploadId={u})", file("o.bin")), "12345").await, "").await, 5);
    for wrong in [0, 4, 6] {
        let r = rest.post(&format!("{}/ContinueUpload(uploadId={u},fileOffset={wrong})", file("o.bin")), "67").await;
        assert_eq!(error(r).await, (StatusCode::BAD_REQUEST, OFFSET.to_owned()), "{wrong}");
        let r = rest.post(&format!("{}/FinishUpload(uploadId={u},fileOffset={wrong})", file("o.bin")), "67").await;
        assert_eq!(error(r).await, (StatusCode::BAD_REQUEST, OFFSET.to_owned()), "{wrong}");
    }
    let r = rest.post(&format!("{}/FinishUpload(uploadId={u},fileOffset=5)", file("o.bin")), "67").await;
    assert_eq!(r.status(), 200);
    assert_eq!(emu.item_content(DRIVE, "o.bin").unwrap(), "1234567");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_upload_ids_are_404_and_a_second_id_meets_the_lock() {
    let emu = start(EmulatorConfig::default()).await;
    let rest = Rest::new(&emu);
    rest.post(&add("l.bin"), "").await;
    let f = file("l.bin");
    let unknown = id(9);
    for call in [
        format!("ContinueUpload(uploadId={unknown},fileOffset=0)"),
        format!("FinishUpload(uploadId={unknown},fileOffset=0)"),
        format!("CancelUpload(uploadId={unknown})"),
        format!("GetUploadStatus(uploadId={unknown})"),
    ] {
        assert_eq!(
            error(rest.post(&format!("{f}/{call}"), "").await).await,
            (StatusCode::NOT_FOUND, NO_SESSION.into())
        );
    }
    let (first, second) = (id(1), id(2));
    assert_eq!(rest.post(&format!("{f}/StartUpload(uploadId={first})"), "aaa").await.status(), 200);
    // Another uploadId on the locked file: 423, also for Files/add over it.
    let (status, code) = error(rest.post(&format!("{f}/StartUpload(uploadId={second})"), "bbb").await).await;
    assert_eq!((status.as_u16(), code.as_str()), (423, LOCKED));
    assert_eq!(error(rest.post(&add("l.bin"), "x").await).await.0.as_u16(), 423);
    // The same uploadId restarts its session with the new body.
    assert_eq!(int64(rest.post(&format!("{f}/StartUpload(uploadId={first})"), "cc").await, "").await, 2);
    // Once it is cancelled the file is free (and the empty stub gone: made again).
    assert_eq!(rest.post(&format!("{f}/CancelUpload(uploadId={first})"), "").await.status(), 200);
    assert!(emu.item_content(DRIVE, "l.bin").is_none());
    rest.post(&add("l.bin"), "").await;
    assert_eq!(rest.post(&format!("{f}/StartUpload(uploadId={second})"), "bbb").await.status(), 200);
    let done = rest.post(&format!("{f}/FinishUpload(uploadId={second},fileOffset=3)"), "").await;
    assert_eq!(done.status(), 200);
    assert_eq!(emu.item_content(DRIVE, "l.bin").unwrap(), "bbb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_needs_a_live_form_digest_on_post() {
    let emu = start(EmulatorConfig { digest_lifetime: Duration::from_millis(600), ..EmulatorConfig::default() }).await;
    let rest = Rest::new(&emu);
    let cookie = rest.with(Auth::Cookie(emu.cookie(), None), NOMETADATA);
    // Without a digest: 403; GETs need none.
    assert_eq!(error(cookie.post(&add("c.bin"), "x").await).await, (StatusCode::FORBIDDEN, SECURITY.into()));
    assert!(emu.item_content(DRIVE, "c.bin").is_none());
    let wrong = rest.with(Auth::Cookie(emu.cookie(), Some("0xBAD,22 Nov 2026 02:30:00 -0000".into())), NOMETADATA);
    assert_eq!(error(wrong.post(&add("c.bin"), "x").await).await.0, StatusCode::FORBIDDEN);
    // contextinfo (no digest needed for it) issues one.
    let info = json(cookie.post("contextinfo", "").await).await;
    let digest = info["FormDigestValue"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("0x") && digest.contains(','), "{digest}");
    assert_eq!(info["WebFullUrl"], emu.site_url());
    let verbose = json(cookie.with(Auth::Cookie(emu.cookie(), None), VERBOSE).post("contextinfo", "").await).await;
    assert!(verbose["d"]["GetContextWebInformation"]["FormDigestValue"].is_string());
    let with_digest = rest.with(Auth::Cookie(emu.cookie(), Some(digest)), NOMETADATA);
    assert_eq!(with_digest.post(&add("c.bin"), "x").await.status(), 200);
    assert_eq!(cookie.get(&format!("{}/$value", file("c.bin"))).await.bytes().await.unwrap(), "x");
    // Past its lifetime the digest is refused.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(error(with_digest.post(&add("c.bin"), "y").await).await, (StatusCode::FORBIDDEN, SECURITY.into()));
    assert_eq!(emu.item_content(DRIVE, "c.bin").unwrap(), "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_bad_tokens_and_unknown_cookies_are_401() {
    let emu = start(EmulatorConfig::default()).await;
    let rest = Rest::new(&emu);
    for auth in [Auth::None, Auth::Bearer("not-a-token".into()), Auth::Cookie("FedAuth=stolen".into(), None)] {
        let r = rest.with(auth, VERBOSE).get(&file("x.bin")).await;
        let challenge = r.headers().get("www-authenticate").unwrap().to_str().unwrap().to_owned();
        assert!(challenge.contains("client_id=\"00000003-0000-0ff1-ce00-000000000000\""), "{challenge}");
        assert_eq!(error(r).await, (StatusCode::UNAUTHORIZED, DENIED.into()));
    }
    // A site that does not exist is not found.
    let other = reqwest::Client::new()
        .get(format!("{}/sites/other/_api/web", emu.sharepoint_url()))
        .bearer_auth(emu.token())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_from_its_length() {
    let emu = start(EmulatorConfig { rest_max_request: 1024, ..EmulatorConfig::default() }).await;
    let rest = Rest::new(&emu);
    assert_eq!(
        error(rest.post(&add("big.bin"), vec![0u8; 1025]).await).await,
        (StatusCode::BAD_REQUEST, TOO_BIG.into())
    );
    assert!(emu.item_content(DRIVE, "big.bin").is_none());
    assert_eq!(rest.post(&add("big.bin"), vec![7u8; 1024]).await.status(), 200);
    let u = id(3);
    assert_eq!(
        rest.post(&format!("{}/StartUpload(uploadId={u})", file("big.bin")), vec![1u8; 1000]).await.status(),
        200
    );
    let r =
        rest.post(&format!("{}/ContinueUpload(uploadId={u},fileOffset=1000)", file("big.bin")), vec![2u8; 2000]).await;
    let (status, code) = error(r).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, TOO_BIG));
    // The session holds what it held.
    let status = json(rest.get(&format!("{}/GetUploadStatus(uploadId={u})", file("big.bin"))).await).await;
    assert_eq!(status["ExpectedContentRange"], "1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_deletes_the_stub_files_add_made_but_not_a_file_with_content() {
    let emu = start(EmulatorConfig::default()).await;
    let rest = Rest::new(&emu);
    for (name, content) in [("stub.bin", ""), ("kept.bin", "old")] {
        assert_eq!(rest.post(&add(name), content).await.status(), 200);
        let u = id(4);
        assert_eq!(rest.post(&format!("{}/StartUpload(uploadId={u})", file(name)), "new").await.status(), 200);
        let doc = json(rest.post(&format!("{}/CancelUpload(uploadId={u})", file(name)), "").await).await;
        assert_eq!(doc, serde_json::json!({ "odata.null": true }));
        if content.is_empty() {
            assert!(emu.item_content(DRIVE, name).is_none(), "the stub is gone");
            assert_eq!(rest.get(&file(name)).await.status(), 404);
        } else {
            assert_eq!(emu.item_content(DRIVE, name).unwrap(), content);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_status_by_get_or_post_and_expiry() {
    let emu =
        start(EmulatorConfig { rest_session_idle: Duration::from_millis(800), ..EmulatorConfig::default() }).await;
    let rest = Rest::new(&emu);
    rest.post(&add("s.bin"), "").await;
    let u = id(5);
    let f = file("s.bin");
    rest.post(&format!("{f}/StartUpload(uploadId={u})"), "abcd").await;
    rest.post(&format!("{f}/ContinueUpload(uploadId={u},fileOffset=4)"), "ef").await;
    let verbose = rest.with(Auth::Bearer(emu.token()), VERBOSE);
    let doc = json(verbose.get(&format!("{f}/GetUploadStatus(uploadId={u})")).await).await;
    assert_eq!(doc["d"]["ExpectedContentRange"], "6");
    assert_eq!(doc["d"]["UploadId"], "00000005-d9cb-469f-a165-70867728950e");
    assert!(doc["d"]["ExpirationDateTime"].as_str().unwrap().ends_with('Z'));
    // The uploadId in a JSON body (POST), as some clients send it.
    let body = r#"{"uploadId":"00000005-d9cb-469f-a165-70867728950e"}"#;
    let doc = json(rest.post(&format!("{f}/GetUploadStatus"), body).await).await;
    assert_eq!(doc["ExpectedContentRange"], "6");
    // Idle past its lifetime: gone, and the file is free for another session.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let r = rest.post(&format!("{f}/ContinueUpload(uploadId={u},fileOffset=6)"), "g").await;
    assert_eq!(error(r).await, (StatusCode::NOT_FOUND, NO_SESSION.into()));
    let other = id(6);
    assert_eq!(rest.post(&format!("{f}/StartUpload(uploadId={other})"), "z").await.status(), 200);
    // Expired on demand.
    emu.expire_rest_sessions();
    let r = rest.get(&format!("{f}/GetUploadStatus(uploadId={other})")).await;
    assert_eq!(error(r).await, (StatusCode::NOT_FOUND, NO_SESSION.into()));
    assert_eq!(emu.item_content(DRIVE, "s.bin").unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_on_continue_upload_is_seen_and_a_retry_of_the_same_chunk_works() {
    let emu = start(EmulatorConfig::default()).await;
    emu.inject(Fault {
        operation: Some(Operation::ContinueUpload),
        part_number: Some(2),
        times: 1,
        action: FaultAction::Error { status: 503, code: "-2147024891, Throttled".into(), retry_after: Some(2) },
    });
    let rest = Rest::new(&emu);
    rest.post(&add("f.bin"), "").await;
    let (u, f) = (id(7), file("f.bin"));
    rest.post(&format!("{f}/StartUpload(uploadId={u})"), "aa").await;
    assert_eq!(int64(rest.post(&format!("{f}/ContinueUpload(uploadId={u},fileOffset=2)"), "bb").await, "").await, 4);
    let r = rest.post(&format!("{f}/ContinueUpload(uploadId={u},fileOffset=4)"), "cc").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").unwrap(), "2");
    assert!(json(r).await["odata.error"]["code"].is_string());
    // Nothing was kept: the same chunk again.
    assert_eq!(int64(rest.post(&format!("{f}/ContinueUpload(uploadId={u},fileOffset=4)"), "cc").await, "").await, 6);
    assert_eq!(rest.post(&format!("{f}/FinishUpload(uploadId={u},fileOffset=6)"), "").await.status(), 200);
    assert_eq!(emu.item_content(DRIVE, "f.bin").unwrap(), "aabbcc");
    let chunks: Vec<(Option<u32>, u16)> = emu
        .requests()
        .into_iter()
        .filter(|r| r.operation == Some(Operation::ContinueUpload))
        .map(|r| (r.part_number, r.status))
        .collect();
    assert_eq!(chunks, [(Some(1), 200), (Some(2), 503), (Some(2), 200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_and_discard_storage_take_rest_sessions() {
    let dir = temp_dir("sharepoint-rest-dir");
    let emu = start(EmulatorConfig { data_dir: Some(dir.clone()), ..EmulatorConfig::default() }).await;
    let rest = Rest::new(&emu);
    let data = Bytes::from(pattern(300_000, 11));
    rest.post(&add("d.bin"), "").await;
    let (u, f) = (id(8), file("d.bin"));
    rest.post(&format!("{f}/StartUpload(uploadId={u})"), data.slice(..100_000)).await;
    rest.post(&format!("{f}/ContinueUpload(uploadId={u},fileOffset=100000)"), data.slice(100_000..200_000)).await;
    let done = rest.post(&format!("{f}/FinishUpload(uploadId={u},fileOffset=200000)"), data.slice(200_000..)).await;
    assert_eq!(done.status(), 200);
    assert_eq!(std::fs::read(dir.join(DRIVE).join("d.bin")).unwrap(), data);
    // No session file is left behind.
    assert_eq!(std::fs::read_dir(dir.join(".uploads")).unwrap().count(), 0);
    drop(emu);
    let _ = std::fs::remove_dir_all(&dir);

    let emu = start(EmulatorConfig { discard_bodies: true, ..EmulatorConfig::default() }).await;
    let rest = Rest::new(&emu);
    rest.post(&add("x.bin"), "").await;
    let (u, f) = (id(8), file("x.bin"));
    rest.post(&format!("{f}/StartUpload(uploadId={u})"), data.slice(..150_000)).await;
    let done =
        json(rest.post(&format!("{f}/FinishUpload(uploadId={u},fileOffset=150000)"), data.slice(150_000..)).await)
            .await;
    assert_eq!(done["Length"], "300000");
    assert_eq!(emu.item_content(DRIVE, "x.bin").unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_chunk_while_one_is_in_flight_is_409() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let emu = start(EmulatorConfig::default()).await;
    let rest = Rest::new(&emu);
    rest.post(&add("busy.bin"), "").await;
    let (u, f) = (id(10), file("busy.bin"));
    rest.post(&format!("{f}/StartUpload(uploadId={u})"), "ab").await;
    // A chunk whose body arrives slowly, over a raw connection.
    let continue_path = format!("/sites/emulator/_api/{f}/ContinueUpload(uploadId={u},fileOffset=2)");
    let addr = emu.sharepoint_url().trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {continue_path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\naccept: {NOMETADATA}\r\ncontent-length: 4\r\nconnection: close\r\n\r\ncd",
        emu.token()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, code) = error(rest.post(&format!("{f}/ContinueUpload(uploadId={u},fileOffset=2)"), "xy").await).await;
    assert_eq!((status.as_u16(), code.as_str()), (409, LOCKED));
    // The slow chunk completes and counts.
    slow.write_all(b"ef").await.unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"value":"6"}"#), "{answer}");
    assert_eq!(rest.post(&format!("{f}/FinishUpload(uploadId={u},fileOffset=6)"), "").await.status(), 200);
    assert_eq!(emu.item_content(DRIVE, "busy.bin").unwrap(), "abcdef");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_without_a_length_is_not_read_past_the_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let emu = start(EmulatorConfig { rest_max_request: 64 * 1024, ..EmulatorConfig::default() }).await;
    let url = reqwest::Url::parse(&emu.site_url()).unwrap();
    let mut socket =
        tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port_or_known_default().unwrap())).await.unwrap();
    let path = format!("{}/_api/{}", url.path(), add("chunked.bin")).replace(' ', "%20");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        url.host_str().unwrap(),
        emu.token()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    // 16 MiB in 64 KiB chunks, far over the limit; the server may stop reading at any time.
    let chunk = vec![b'x'; 64 * 1024];
    let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
    let send = async {
        for _ in 0..256 {
            socket.write_all(&frame).await?;
        }
        socket.write_all(b"0\r\n\r\n").await
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), send).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    let logged = emu.requests();
    let entry = logged.iter().find(|r| r.operation == Some(Operation::AddFile)).unwrap();
    assert_eq!(entry.status, 400, "{entry:?}");
    assert!(entry.body_len <= 2 * 64 * 1024, "read {} bytes of a body over the limit", entry.body_len);
    assert!(emu.item_content(DRIVE, "chunked.bin").is_none());
}
