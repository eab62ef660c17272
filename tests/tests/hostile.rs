//! Hostile and malformed servers: a tiny scripted HTTP server (raw tokio, one request per
//! connection) answers each vendor client with missing or wrong headers, truncated and
//! wrongly shaped documents, huge and endless bodies, wrong echoes, foreign hosts and
//! redirects. Every case must end in a typed error (or a correct result), never a panic or a
//! hang, and no credential (bearer token, signature, security token, cookie) may reach a
//! listener the client was not configured for: every listener records every request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tests::scripted::*;
use upload_core::Secret;

// ---------------------------------------------------------------------------------------------

mod oss {
    use super::*;
    use oss_multipart::types::{CompletePart, CompleteParts, ObjectOptions};
    use oss_multipart::{Client, Config, Credentials, Error, PartSize, Source, UploadOptions, Uploader};

    fn client(server: &Hostile) -> Client {
        let credentials = Credentials::new("AKIDHOSTILE", "hostile-secret").with_security_token("STS-TOKEN-SECRET");
        let mut config = Config::new(&server.url(), credentials).unwrap().with_region("cn-hangzhou");
        config.connect_timeout = Duration::from_secs(2);
        config.retry = quick_retry();
        Client::new(config).unwrap()
    }

    const INITIATED: &str = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>bucket</Bucket>\
        <Key>k</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oss_malformed_documents_and_headers_are_typed_errors() {
        let server = Hostile::start().await;
        let c = client(&server);
        let options = ObjectOptions::default();
        let cases: Vec<(&str, Answer)> = vec![
            ("truncated XML", xml(200, "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>buc")),
            ("wrong shape", xml(200, "<Error><Code>Nope</Code></Error>")),
            ("JSON for XML", json(200, "{\"UploadId\":\"U1\"}")),
            ("empty", xml(200, "")),
            ("wrong content-length", Answer::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n<Init".to_vec())),
            ("HTML error page", answer(502, &[("content-type", "text/html")], "<html><body>Bad gateway")),
        ];
        for (case, a) in cases {
            server.script(move |_| a.clone());
            let r = bounded(case, c.initiate_multipart_upload("bucket", "k", &options)).await;
            assert!(r.is_err(), "{case}: {r:?}");
        }
        // An UploadPart answer without an ETag cannot be completed: a typed error.
        server.script(|_| answer(200, &[], ""));
        let r = bounded("no ETag", c.upload_part("bucket", "k", "U1", 1, Bytes::from_static(b"abc"), None)).await;
        assert!(matches!(r, Err(Error::MalformedResponse { .. })), "{r:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oss_huge_and_endless_answers_are_not_buffered_whole() {
        let server = Hostile::start().await;
        let c = client(&server);
        let options = ObjectOptions::default();
        for (case, a) in [("huge initiate", huge("application/xml")), ("endless initiate", endless("application/xml"))]
        {
            server.script(move |_| a.clone());
            let before = server.written();
            let r = bounded(case, c.initiate_multipart_upload("bucket", "k", &options)).await;
            assert!(r.is_err(), "{case}: {r:?}");
            assert_capped(case, &server, before);
        }
        // The same for an error document and for the answer of CompleteMultipartUpload.
        server.script(|_| Answer::Stream {
            head: format!("HTTP/1.1 500 Oops\r\ncontent-type: application/xml\r\ncontent-length: {HUGE}\r\n\r\n"),
            len: Some(HUGE),
        });
        let before = server.written();
        let r = bounded("huge error", c.initiate_multipart_upload("bucket", "k", &options)).await;
        assert!(r.is_err());
        assert_capped("huge error", &server, before);
        server.script(|_| huge("application/xml"));
        let before = server.written();
        let parts = CompleteParts::List(vec![CompletePart { part_number: 1, etag: "\"e\"".into() }]);
        let r = bounded("huge complete", c.complete_multipart_upload("bucket", "k", "U1", &parts)).await;
        assert!(r.is_err(), "huge complete: {r:?}");
        assert_capped("huge complete", &server, before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oss_redirects_to_another_host_carry_no_signature_or_token() {
        let server = Hostile::start().await;
        let elsewhere = Hostile::start().await;
        elsewhere.script(|_| xml(200, INITIATED));
        let c = client(&server);
        for status in [301, 302, 307, 308] {
            let to = format!("{}/bucket/k?uploads", elsewhere.url());
            server.script(move |_| redirect(status, &to));
            let r = bounded("redirect", c.initiate_multipart_upload("bucket", "k", &ObjectOptions::default())).await;
            assert!(r.is_err(), "a {status} redirect is not OSS's answer: {r:?}");
        }
        elsewhere.assert_no_credentials("OSS redirect");
        assert!(elsewhere.seen().is_empty(), "the client followed a redirect: {:?}", elsewhere.seen());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oss_uploader_refuses_a_complete_whose_crc_is_not_the_sources() {
        let server = Hostile::start().await;
        server.script(|r| match (r.method.as_str(), r.target.as_str()) {
            ("POST", t) if t.contains("uploads") => xml(200, INITIATED),
            ("PUT", _) => answer(200, &[("etag", "\"0123\""), ("x-oss-hash-crc64ecma", "12345")], ""),
            ("POST", _) => answer(
                200,
                &[("x-oss-hash-crc64ecma", "999"), ("content-type", "application/xml")],
                "<CompleteMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key><ETag>\"x\"</ETag></CompleteMultipartUploadResult>",
            ),
            _ => xml(404, "<Error><Code>NoSuchUpload</Code></Error>"),
        });
        let options = UploadOptions {
            part_size: PartSize::Exact(100 * 1024),
            retry: quick_retry(),
            part_timeout: Some(Duration::from_secs(2)),
            ..UploadOptions::default()
        };
        let uploader = Uploader::new(client(&server)).with_options(options);
        let data = Bytes::from(tests::fake::pattern(250 * 1024, 3));
        let mut upload = uploader.upload("bucket", "k", Source::bytes(data)).unwrap();
        let r = bounded("wrong CRC", upload.run()).await;
        assert!(r.is_err(), "a wrong part or object CRC-64 must not pass: {r:?}");
    }
}

mod qingstor {
    use super::*;
    use qingstor_multipart::{Client, Config, Credentials};

    fn client(server: &Hostile) -> Client {
        let mut config =
            Config::new(Credentials::new("QSAKHOSTILE", "hostile-secret")).with_endpoint(&server.url()).unwrap();
        config.call_timeout = Duration::from_secs(3);
        config.connect_timeout = Duration::from_secs(2);
        config.retry = quick_retry();
        Client::new(config).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qingstor_malformed_huge_and_redirected_answers() {
        let server = Hostile::start().await;
        let elsewhere = Hostile::start().await;
        elsewhere.script(|_| json(200, "{\"bucket\":\"bucket\",\"key\":\"k\",\"upload_id\":\"U1\"}"));
        let c = client(&server);
        let to = format!("{}/bucket/k?uploads", elsewhere.url());
        let cases: Vec<(&str, Answer)> = vec![
            ("truncated JSON", json(200, "{\"bucket\":\"bucket\",\"upload_")),
            ("wrong shape", json(200, "[1,2,3]")),
            ("XML for JSON", xml(200, "<upload_id>U1</upload_id>")),
            ("wrong content-length", Answer::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 900\r\n\r\n{\"a\":".to_vec())),
            ("huge", huge("application/json")),
            ("endless", endless("application/json")),
            ("307 to another host", redirect(307, &to)),
            ("302 to another host", redirect(302, &to)),
        ];
        for (case, a) in cases {
            server.script(move |_| a.clone());
            let before = server.written();
            let r = bounded(case, c.initiate_multipart_upload("bucket", "k", None)).await;
            assert!(r.is_err(), "{case}: {r:?}");
            assert_capped(case, &server, before);
        }
        elsewhere.assert_no_credentials("QingStor redirect");
        assert!(elsewhere.seen().is_empty(), "the client followed a redirect: {:?}", elsewhere.seen());
    }
}

mod r#box {
    use super::*;
    use box_chunked::{Client, Config, Error, InvalidInput, Source, UploadOptions, Uploader};

    fn config(api: &Hostile, upload: &Hostile) -> Config {
        let mut config =
            Config::with_token("BOX-TOKEN-SECRET").with_urls(&api.url(), &upload.url(), &api.url()).unwrap();
        config.call_timeout = Duration::from_secs(3);
        config.connect_timeout = Duration::from_secs(2);
        config.retry = quick_retry();
        config.chunked_min = 1;
        config
    }

    fn session(endpoints: &str) -> String {
        format!(
            "{{\"id\":\"S1\",\"type\":\"upload_session\",\"part_size\":1024,\"total_parts\":2,\"num_parts_processed\":0,\
             \"session_expires_at\":\"2099-01-01T00:00:00Z\",\"session_endpoints\":{{\"upload_part\":\"{endpoints}/files/upload_sessions/S1\",\
             \"commit\":\"{endpoints}/files/upload_sessions/S1/commit\",\"abort\":\"{endpoints}/files/upload_sessions/S1\",\
             \"list_parts\":\"{endpoints}/files/upload_sessions/S1/parts\",\"status\":\"{endpoints}/files/upload_sessions/S1\"}}}}"
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn box_malformed_huge_and_redirected_answers() {
        let api = Hostile::start().await;
        let upload = Hostile::start().await;
        let elsewhere = Hostile::start().await;
        let c = Client::new(config(&api, &upload)).unwrap();
        let to = format!("{}/files/upload_sessions", elsewhere.url());
        let cases: Vec<(&str, Answer)> = vec![
            ("truncated JSON", json(201, "{\"id\":\"S1\",\"part_si")),
            ("wrong shape", json(201, "{\"entries\":[]}")),
            (
                "wrong content-length",
                Answer::Raw(b"HTTP/1.1 201 Created\r\ncontent-length: 900\r\n\r\n{\"id\":".to_vec()),
            ),
            ("huge", huge_with(201, "application/json")),
            ("endless", endless_with(201, "application/json")),
            ("huge error", huge_with(500, "application/json")),
            ("307 to another host", redirect(307, &to)),
            ("301 to another host", redirect(301, &to)),
        ];
        for (case, a) in cases {
            upload.script(move |_| a.clone());
            let before = upload.written();
            let r = bounded(case, c.create_upload_session("0", "f.bin", 2048)).await;
            assert!(r.is_err(), "{case}: {r:?}");
            assert_capped(case, &upload, before);
        }
        elsewhere.assert_no_credentials("Box redirect");
        assert!(elsewhere.seen().is_empty(), "the client followed a redirect: {:?}", elsewhere.seen());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn box_session_endpoints_on_another_host_get_nothing() {
        let api = Hostile::start().await;
        let upload = Hostile::start().await;
        let elsewhere = Hostile::start().await;
        let foreign = elsewhere.url();
        upload.script(move |_| json(201, &session(&foreign)));
        elsewhere.script(|_| json(200, "{\"part\":{\"part_id\":\"P\",\"offset\":0,\"size\":1024,\"sha1\":\"x\"}}"));
        let options = UploadOptions { retry: quick_retry(), ..UploadOptions::default() };
        let uploader = Uploader::new(Client::new(config(&api, &upload)).unwrap()).with_options(options);
        let data = Bytes::from(tests::fake::pattern(2048, 1));
        let mut up = uploader.upload("0", "f.bin", Source::bytes(data)).unwrap();
        let r = bounded("foreign session endpoints", up.run()).await;
        let e = r.expect_err("a session on an untrusted host must not be used");
        assert!(matches!(e.vendor_error(), Some(Error::Invalid(InvalidInput::UntrustedEndpoint(_)))), "{e}");
        elsewhere.assert_no_credentials("Box session_endpoints");
        assert!(elsewhere.seen().is_empty(), "{:?}", elsewhere.seen());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn box_parts_echoed_with_the_wrong_sha1_offset_or_size_fail() {
        let api = Hostile::start().await;
        let upload = Hostile::start().await;
        let base = upload.url();
        let echo = Arc::new(Mutex::new(String::new()));
        let e = echo.clone();
        upload.script(
            move |r| {
                if r.method == "POST" { json(201, &session(&base)) } else { json(200, &e.lock().unwrap()) }
            },
        );
        let c = Client::new(config(&api, &upload)).unwrap();
        let s = bounded("create", c.create_upload_session("0", "f.bin", 2048)).await.unwrap();
        let body = Bytes::from(tests::fake::pattern(1024, 2));
        let sha1 = upload_core::Digests::compute(upload_core::Hashes::SHA1, &body).sha1.unwrap();
        let good = upload_core::Digests::compute(upload_core::Hashes::SHA1, &body).sha1_base64().unwrap();
        for (case, part) in [
            (
                "wrong sha1",
                "{\"part\":{\"part_id\":\"P\",\"offset\":0,\"size\":1024,\"sha1\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}}"
                    .to_owned(),
            ),
            (
                "wrong offset",
                format!("{{\"part\":{{\"part_id\":\"P\",\"offset\":1024,\"size\":1024,\"sha1\":\"{good}\"}}}}"),
            ),
            ("wrong size", format!("{{\"part\":{{\"part_id\":\"P\",\"offset\":0,\"size\":7,\"sha1\":\"{good}\"}}}}")),
            ("no part", "{}".to_owned()),
        ] {
            *echo.lock().unwrap() = part;
            let r = bounded(case, c.upload_part(&s, 0, 2048, body.clone(), &sha1)).await;
            assert!(r.is_err(), "{case}: {r:?}");
        }
    }
}

mod graph {
    use super::*;
    use sharepoint_resumable::{Client, Config, Drive, Item, Source, UploadOptions, Uploader};

    fn client(graph: &Hostile) -> Client {
        let mut config = Config::with_token("GRAPH-TOKEN-SECRET").with_urls(&graph.url(), &graph.url()).unwrap();
        config.call_timeout = Duration::from_secs(3);
        config.connect_timeout = Duration::from_secs(2);
        config.retry = quick_retry();
        Client::new(config).unwrap()
    }

    fn options() -> UploadOptions {
        UploadOptions { retry: quick_retry(), part_timeout: Some(Duration::from_secs(3)), ..UploadOptions::default() }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn graph_upload_url_on_another_host_never_gets_the_token() {
        let graph = Hostile::start().await;
        let elsewhere = Hostile::start().await;
        let url = format!("{}/up/S1?tempauth=opaque", elsewhere.url());
        graph.script(move |_| {
            json(200, &format!("{{\"uploadUrl\":\"{url}\",\"expirationDateTime\":\"2099-01-01T00:00:00Z\",\"nextExpectedRanges\":[\"0-\"]}}"))
        });
        // The upload host answers like Graph's: the file, made of the one fragment.
        elsewhere.script(|r| {
            if r.method == "PUT" {
                json(201, "{\"id\":\"I1\",\"name\":\"f.bin\",\"size\":1000}")
            } else {
                json(200, "{\"nextExpectedRanges\":[\"0-\"]}")
            }
        });
        // The upload host is trusted (as an emulator's is), and still gets no bearer token.
        let mut config = client(&graph).config().clone();
        config.trusted_urls.push(elsewhere.url());
        let uploader = Uploader::new(Client::new(config).unwrap()).with_options(options());
        let data = Bytes::from(tests::fake::pattern(1000, 4));
        let mut up = uploader.upload(Drive::Me, Item::Path("f.bin".into()), Source::bytes(data)).unwrap();
        let _ = bounded("foreign upload URL", up.run()).await;
        let fragments = elsewhere.seen();
        assert!(!fragments.is_empty(), "the fragment went to the upload URL");
        // The upload URL is its own credential: the bearer token must not go there. (Its own
        // `tempauth` query is expected there; only the headers are checked.)
        for r in &fragments {
            assert!(r.method != "PUT" || r.body_len == 1000, "the fragment: {r:?}");
            assert!(r.header("authorization").is_none(), "the bearer token went to the upload host: {r:?}");
        }
        assert!(graph.seen().iter().all(|r| r.header("authorization").is_some()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn graph_malformed_huge_and_redirected_answers() {
        let graph = Hostile::start().await;
        let elsewhere = Hostile::start().await;
        let c = client(&graph);
        let to = format!("{}/v1.0/me/drive/root:/f.bin:/createUploadSession", elsewhere.url());
        let input = sharepoint_resumable::types::CreateUploadSessionInput::default();
        let cases: Vec<(&str, Answer)> = vec![
            ("truncated JSON", json(200, "{\"uploadUrl\":\"http://x/")),
            ("wrong shape", json(200, "{\"value\":[]}")),
            ("no uploadUrl", json(200, "{\"nextExpectedRanges\":[\"0-\"]}")),
            ("uploadUrl not a URL", json(200, "{\"uploadUrl\":\"not a url\"}")),
            ("wrong content-length", Answer::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 900\r\n\r\n{\"a\":".to_vec())),
            ("huge", huge("application/json")),
            ("endless", endless("application/json")),
            ("307 to another host", redirect(307, &to)),
            ("302 to another host", redirect(302, &to)),
        ];
        for (case, a) in cases {
            graph.script(move |_| a.clone());
            let before = graph.written();
            let r = bounded(case, c.create_upload_session(&Drive::Me, &Item::Path("f.bin".into()), &input, None)).await;
            // A session whose URL is not usable may be accepted here; the uploader refuses it.
            if !matches!(case, "uploadUrl not a URL" | "no uploadUrl") {
                assert!(r.is_err(), "{case}: {r:?}");
            }
            assert_capped(case, &graph, before);
        }
        elsewhere.assert_no_credentials("Graph redirect");
        assert!(elsewhere.seen().is_empty(), "the client followed a redirect: {:?}", elsewhere.seen());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn graph_fragments_answered_with_wrong_ranges_do_not_loop_for_ever() {
        let graph = Hostile::start().await;
        let up = Hostile::start().await;
        let url = format!("{}/up/S1", up.url());
        graph.script(move |_| {
            json(200, &format!("{{\"uploadUrl\":\"{url}\",\"expirationDateTime\":\"2099-01-01T00:00:00Z\",\"nextExpectedRanges\":[\"0-\"]}}"))
        });
        // Every fragment is "accepted", and the server still expects byte 0 onwards.
        up.script(|_| json(202, "{\"expirationDateTime\":\"2099-01-01T00:00:00Z\",\"nextExpectedRanges\":[\"0-\"]}"));
        let uploader = Uploader::new(client(&graph))
            .with_options(UploadOptions { part_size: upload_core::PartSize::Exact(320 * 1024), ..options() });
        let data = Bytes::from(tests::fake::pattern(700 * 1024, 5));
        let mut u = uploader.upload(Drive::Me, Item::Path("f.bin".into()), Source::bytes(data)).unwrap();
        let r = bounded("ranges that never move", u.run()).await;
        assert!(r.is_err(), "{r:?}");
        assert!(up.seen().len() < 50, "{} fragment requests", up.seen().len());
    }
}

mod sharepoint_rest {
    use super::*;
    use sharepoint_resumable::{Auth, FileRef, RestAuth, RestClient, RestConfig};

    fn client(server: &Hostile) -> RestClient {
        let auth = RestAuth::Bearer(Auth::Token(Secret::new("SP-TOKEN-SECRET")));
        let mut config = RestConfig::new(&format!("{}/sites/x", server.url()), auth).unwrap();
        config.call_timeout = Duration::from_secs(3);
        config.connect_timeout = Duration::from_secs(2);
        config.retry = quick_retry();
        RestClient::new(config).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rest_malformed_huge_and_redirected_answers() {
        let server = Hostile::start().await;
        let elsewhere = Hostile::start().await;
        let c = client(&server);
        let to = format!("{}/sites/x/_api/web", elsewhere.url());
        let file = FileRef::Path("/sites/x/Shared Documents/f.bin".into());
        let cases: Vec<(&str, Answer)> = vec![
            ("truncated JSON", json(200, "{\"d\":{\"StartUpload\":")),
            ("wrong shape", json(200, "{\"d\":{\"results\":[]}}")),
            ("wrong content-length", Answer::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 900\r\n\r\n{\"a\":".to_vec())),
            ("huge", huge("application/json")),
            ("endless", endless("application/json")),
            ("307 to another host", redirect(307, &to)),
            ("302 to another host", redirect(302, &to)),
        ];
        for (case, a) in cases {
            server.script(move |_| a.clone());
            let before = server.written();
            let r = bounded(
                case,
                c.start_upload(&file, "6e0a1c2e-0000-4000-8000-000000000001", Bytes::from_static(b"abc")),
            )
            .await;
            assert!(r.is_err(), "{case}: {r:?}");
            assert_capped(case, &server, before);
        }
        // An offset that is not what was sent is an error, not progress.
        server.script(|_| json(200, "{\"value\":\"7\"}"));
        let r = bounded(
            "wrong offset",
            c.start_upload(&file, "6e0a1c2e-0000-4000-8000-000000000001", Bytes::from_static(b"abc")),
        )
        .await;
        assert!(r.is_err() || r.as_ref().is_ok_and(|n| *n == 7), "{r:?}");
        elsewhere.assert_no_credentials("SharePoint REST redirect");
        assert!(elsewhere.seen().is_empty(), "the client followed a redirect: {:?}", elsewhere.seen());
    }
}
