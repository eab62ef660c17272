//! The OSS, QingStor and Box emulators against hostile clients: a request whose credentials do
//! not check out is refused from its headers, before its body is read (a chunked body of
//! gigabytes costs the server a few MiB of reading and no memory); a body over the vendor's
//! limit is refused with the vendor's too-large error, before reading when its length says so
//! and as soon as it passes the limit when it has no length; the request log keeps the latest
//! requests only.
//!
//! The emulators run in this process: its resident memory is measured while the bodies are
//! sent. The cases run one at a time so that one's memory is not counted against another.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tests::flood::{Flood, Framing, flood};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// What an unauthenticated flood sends at most: several GiB.
const FLOOD: u64 = 4 * GIB;

/// Most growth of the resident memory a refused body may cause.
const MEMORY_BOUND: u64 = 256 * MIB;

/// Most body bytes a refused request may take from its sender.
const READ_BOUND: u64 = 256 * MIB;

/// One case at a time: the resident memory is the whole process's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn http_date() -> String {
    chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// The answer was refused with `status` and names `code`, and the refusal cost little.
fn assert_refused_cheaply(case: &str, f: &Flood, status: u16, code: &str) {
    assert!(f.rss_growth < MEMORY_BOUND, "{case}: memory grew by {} MiB", f.rss_growth / MIB);
    assert!(f.sent < READ_BOUND, "{case}: the server took {} MiB of the body", f.sent / MIB);
    assert_eq!(f.status(), status, "{case}: {}", f.answer);
    assert!(f.answer.contains(code), "{case}: the answer names {code}: {}", f.answer);
}

mod oss {
    use super::*;
    use oss_multipart::emulator::{Emulator, EmulatorConfig, Operation};
    use oss_multipart::signing::{SignableRequest, v1};

    fn signed_head(emu: &Emulator, method: &str, key: &str, query: &[(&str, &str)], framing: &str) -> String {
        let date = http_date();
        let mut req = SignableRequest::new(method, Some("bucket"), Some(key)).header("Date", &date);
        for (n, v) in query {
            req = req.query(n, v);
        }
        let auth = v1::authorization(&emu.credentials(), &req).unwrap();
        let q: Vec<String> = query.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let target = if q.is_empty() { format!("/bucket/{key}") } else { format!("/bucket/{key}?{}", q.join("&")) };
        format!(
            "{method} {target} HTTP/1.1\r\nhost: {}\r\ndate: {date}\r\nauthorization: {auth}\r\n{framing}\r\n",
            emu.addr()
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unauthenticated_chunked_put_of_gigabytes_is_refused_unread() {
        let _one = ONE_AT_A_TIME.lock().await;
        let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let head = format!(
            "PUT /bucket/flood.bin HTTP/1.1\r\nhost: {}\r\ndate: {}\r\nauthorization: OSS emulator-access-key:AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\ntransfer-encoding: chunked\r\n\r\n",
            emu.addr(),
            http_date()
        );
        let f = flood(emu.addr(), &head, Framing::Chunked, FLOOD).await;
        assert_refused_cheaply("bad signature", &f, 403, "<Code>SignatureDoesNotMatch</Code>");
        let log = emu.requests();
        let entry = log.iter().find(|r| r.operation == Some(Operation::PutObject)).unwrap();
        assert_eq!(entry.error_code.as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(entry.access_key_id, None);
        assert!(emu.object("bucket", "flood.bin").is_none());

        // No credentials at all: AccessDenied, just as cheaply.
        let head =
            format!("PUT /bucket/flood.bin HTTP/1.1\r\nhost: {}\r\ntransfer-encoding: chunked\r\n\r\n", emu.addr());
        let f = flood(emu.addr(), &head, Framing::Chunked, FLOOD).await;
        assert_refused_cheaply("anonymous", &f, 403, "<Code>AccessDenied</Code>");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_authenticated_body_over_the_limit_is_entity_too_large() {
        let _one = ONE_AT_A_TIME.lock().await;
        let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
        // Announced above 5 GiB: refused before a byte of it is read.
        let over = 5 * GIB + 1;
        let head = signed_head(&emu, "PUT", "big.bin", &[], &format!("content-length: {over}\r\n"));
        let f = flood(emu.addr(), &head, Framing::Plain, over).await;
        assert_refused_cheaply("PutObject announced over 5 GiB", &f, 400, "<Code>EntityTooLarge</Code>");
        let head = signed_head(
            &emu,
            "PUT",
            "big.bin",
            &[("partNumber", "1"), ("uploadId", "0123456789ABCDEF0123456789ABCDEF")],
            &format!("content-length: {over}\r\n"),
        );
        let f = flood(emu.addr(), &head, Framing::Plain, over).await;
        assert_refused_cheaply("UploadPart announced over 5 GiB", &f, 400, "<Code>EntityTooLarge</Code>");

        // A chunked Complete document of a GiB stops being read past the document limit.
        let head = signed_head(
            &emu,
            "POST",
            "big.bin",
            &[("uploadId", "0123456789ABCDEF0123456789ABCDEF")],
            "transfer-encoding: chunked\r\n",
        );
        let f = flood(emu.addr(), &head, Framing::Chunked, GIB).await;
        assert_refused_cheaply("a chunked Complete", &f, 400, "<Code>EntityTooLarge</Code>");
        assert!(emu.object("bucket", "big.bin").is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunked_put_stops_being_read_past_the_configured_part_limit() {
        let _one = ONE_AT_A_TIME.lock().await;
        let config = EmulatorConfig { max_part_size: 32 * MIB, ..EmulatorConfig::default() };
        let emu = Emulator::start(config).await.unwrap();
        let head = signed_head(&emu, "PUT", "chunked.bin", &[], "transfer-encoding: chunked\r\n");
        let f = flood(emu.addr(), &head, Framing::Chunked, GIB).await;
        assert_refused_cheaply("a chunked PutObject over the limit", &f, 400, "<Code>EntityTooLarge</Code>");
        assert!(emu.object("bucket", "chunked.bin").is_none());
        // Within the limit, a chunked body is stored whole.
        let head = signed_head(&emu, "PUT", "chunked.bin", &[], "transfer-encoding: chunked\r\n");
        let f = flood(emu.addr(), &head, Framing::Chunked, 3 * MIB).await;
        assert_eq!(f.status(), 200, "{}", f.answer);
        assert_eq!(emu.object("bucket", "chunked.bin").unwrap(), vec![0u8; 3 * MIB as usize]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_request_log_keeps_the_latest_requests() {
        let emu = Emulator::start(EmulatorConfig { log_capacity: 3, ..EmulatorConfig::default() }).await.unwrap();
        for i in 0..5 {
            reqwest::get(format!("{}/bucket/k{i}", emu.endpoint())).await.unwrap();
        }
        let keys: Vec<String> = emu.requests().into_iter().filter_map(|r| r.key).collect();
        assert_eq!(keys, ["k2", "k3", "k4"]);
        assert_eq!(emu.request_totals().0, 5);
    }
}

mod qingstor {
    use super::*;
    use qingstor_multipart::emulator::{Emulator, EmulatorConfig, Operation};
    use qingstor_multipart::signing::{SignableRequest, authorization};

    fn signed_head(emu: &Emulator, method: &str, key: &str, query: &[(&str, &str)], framing: &str) -> String {
        let date = http_date();
        let mut req = SignableRequest::new(method, &format!("/bucket/{key}")).header("Date", &date);
        for (n, v) in query {
            req = req.query(n, v);
        }
        let auth = authorization(&emu.credentials(), &req);
        let q: Vec<String> = query.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let target = if q.is_empty() { format!("/bucket/{key}") } else { format!("/bucket/{key}?{}", q.join("&")) };
        format!(
            "{method} {target} HTTP/1.1\r\nhost: {}\r\ndate: {date}\r\nauthorization: {auth}\r\n{framing}\r\n",
            emu.addr()
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unauthenticated_chunked_put_of_gigabytes_is_refused_unread() {
        let _one = ONE_AT_A_TIME.lock().await;
        let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let head = format!(
            "PUT /bucket/flood.bin HTTP/1.1\r\nhost: {}\r\ndate: {}\r\nauthorization: QS EMULATORACCESSKEY:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\ntransfer-encoding: chunked\r\n\r\n",
            emu.addr(),
            http_date()
        );
        let f = flood(emu.addr(), &head, Framing::Chunked, FLOOD).await;
        assert_refused_cheaply("bad signature", &f, 401, "\"code\":\"signature_not_matched\"");
        let log = emu.requests();
        let entry = log.iter().find(|r| r.operation == Some(Operation::PutObject)).unwrap();
        assert_eq!(entry.error_code.as_deref(), Some("signature_not_matched"));
        assert_eq!(entry.access_key_id, None);
        assert!(emu.object("bucket", "flood.bin").is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_authenticated_body_over_the_limit_is_entity_too_large() {
        let _one = ONE_AT_A_TIME.lock().await;
        let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let over = 5 * GIB + 1;
        let head = signed_head(&emu, "PUT", "big.bin", &[], &format!("content-length: {over}\r\n"));
        let f = flood(emu.addr(), &head, Framing::Plain, over).await;
        assert_refused_cheaply("Put Object announced over 5 GB", &f, 400, "\"code\":\"entity_too_large\"");
        // A part or object without a length is refused for it, unread.
        let head = signed_head(&emu, "PUT", "big.bin", &[], "transfer-encoding: chunked\r\n");
        let f = flood(emu.addr(), &head, Framing::Chunked, FLOOD).await;
        assert_refused_cheaply("a chunked Put Object", &f, 411, "\"code\":\"length_required\"");
        // A chunked Complete document of a GiB stops being read past the document limit.
        let head = signed_head(&emu, "POST", "big.bin", &[("upload_id", "0123")], "transfer-encoding: chunked\r\n");
        let f = flood(emu.addr(), &head, Framing::Chunked, GIB).await;
        assert_refused_cheaply("a chunked Complete", &f, 400, "\"code\":\"entity_too_large\"");
        assert!(emu.object("bucket", "big.bin").is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_request_log_keeps_the_latest_requests() {
        let emu = Emulator::start(EmulatorConfig { log_capacity: 3, ..EmulatorConfig::default() }).await.unwrap();
        for i in 0..5 {
            reqwest::get(format!("{}/bucket/k{i}", emu.endpoint())).await.unwrap();
        }
        let keys: Vec<String> = emu.requests().into_iter().filter_map(|r| r.key).collect();
        assert_eq!(keys, ["k2", "k3", "k4"]);
        assert_eq!(emu.request_totals().0, 5);
    }
}

mod boxes {
    use super::*;
    use box_chunked::emulator::{Emulator, EmulatorConfig, Operation};

    const SESSION: &str = "0123456789ABCDEF0123456789ABCDEF";
    const DIGEST: &str = "sha=2iNhTgJGmg18e9G9q1ycR0sZBNw=";

    /// A session for a 20 MB file: its id and part size.
    async fn session(emu: &Emulator) -> (String, u64) {
        let body = serde_json::json!({"folder_id": "0", "file_size": 20_000_000, "file_name": "flood.bin"});
        let answer = reqwest::Client::new()
            .post(format!("{}/files/upload_sessions", emu.upload_url()))
            .bearer_auth(emu.token())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let created: serde_json::Value = serde_json::from_str(&answer).unwrap();
        (created["id"].as_str().unwrap().to_owned(), created["part_size"].as_u64().unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unauthenticated_chunked_put_of_gigabytes_is_refused_unread() {
        let _one = ONE_AT_A_TIME.lock().await;
        let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let head = format!(
            "PUT /api/2.0/files/upload_sessions/{SESSION} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer not-a-token\r\ncontent-range: bytes 0-8388607/20000000\r\ndigest: {DIGEST}\r\ntransfer-encoding: chunked\r\n\r\n",
            emu.upload_addr()
        );
        let f = flood(emu.upload_addr(), &head, Framing::Chunked, FLOOD).await;
        assert_refused_cheaply("a wrong token", &f, 401, "\"code\":\"invalid_token\"");
        let log = emu.requests();
        let entry = log.iter().find(|r| r.operation == Some(Operation::UploadPart)).unwrap();
        assert_eq!(entry.error_code.as_deref(), Some("invalid_token"));
        assert_eq!(entry.access_key_id, None);
        // The plain upload alike.
        let head = format!(
            "POST /api/2.0/files/content HTTP/1.1\r\nhost: {}\r\ncontent-type: multipart/form-data; boundary=x\r\ntransfer-encoding: chunked\r\n\r\n",
            emu.upload_addr()
        );
        let f = flood(emu.upload_addr(), &head, Framing::Chunked, FLOOD).await;
        assert_refused_cheaply("no token", &f, 401, "\"code\":\"invalid_token\"");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_authenticated_body_over_the_limit_is_refused_with_boxs_error() {
        let _one = ONE_AT_A_TIME.lock().await;
        let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let (id, part_size) = session(&emu).await;
        let part_head = |framing: &str| {
            format!(
                "PUT /api/2.0/files/upload_sessions/{id} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-range: bytes 0-{}/20000000\r\ndigest: {DIGEST}\r\n{framing}\r\n",
                emu.upload_addr(),
                emu.token(),
                part_size - 1
            )
        };
        // A part longer than its range (the session's part size): refused unread.
        let f =
            flood(emu.upload_addr(), &part_head(&format!("content-length: {}\r\n", 5 * GIB)), Framing::Plain, 5 * GIB)
                .await;
        assert_refused_cheaply("a part over its range", &f, 416, "\"code\":\"requested_range_not_satisfiable\"");
        // A part without a length: 411, unread.
        let f = flood(emu.upload_addr(), &part_head("transfer-encoding: chunked\r\n"), Framing::Chunked, FLOOD).await;
        assert_refused_cheaply("a chunked part", &f, 411, "\"code\":\"length_required\"");
        assert_eq!(emu.open_sessions(), vec![(id.clone(), 0)]);

        // The plain upload takes 50 MB at most.
        let plain_head = |framing: &str| {
            format!(
                "POST /api/2.0/files/content HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-type: multipart/form-data; boundary=x\r\n{framing}\r\n",
                emu.upload_addr(),
                emu.token()
            )
        };
        let f =
            flood(emu.upload_addr(), &plain_head(&format!("content-length: {}\r\n", 5 * GIB)), Framing::Plain, 5 * GIB)
                .await;
        assert_refused_cheaply("a plain upload announced over 50 MB", &f, 413, "\"code\":\"request_entity_too_large\"");
        let f = flood(emu.upload_addr(), &plain_head("transfer-encoding: chunked\r\n"), Framing::Chunked, FLOOD).await;
        assert_refused_cheaply("a chunked plain upload", &f, 413, "\"code\":\"request_entity_too_large\"");
        assert!(emu.find_file("0", "flood.bin").is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_request_log_keeps_the_latest_requests() {
        let emu = Emulator::start(EmulatorConfig { log_capacity: 3, ..EmulatorConfig::default() }).await.unwrap();
        for i in 0..5 {
            reqwest::get(format!("{}/files/{i}", emu.api_url())).await.unwrap();
        }
        let ids: Vec<String> = emu.requests().into_iter().filter_map(|r| r.key).collect();
        assert_eq!(ids, ["2", "3", "4"]);
        assert_eq!(emu.request_totals().0, 5);
    }
}
