//! What a server or a configuration says is not trusted to end a loop or pick a destination:
//! listings whose markers go back and forth or never end, a single-request upload whose server
//! stalls, and addresses that carry a user name and password or smuggle a path into a host.
//! Every case ends in a typed error naming the rule, within a bound, never a hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use tests::scripted::*;
use upload_core::{RetryPolicy, Secret, UploadError, UploadOptions};

/// Options whose part timeout is short and whose retries are quick: a stalled server is given
/// up on after two attempts of one second.
fn stall_options() -> UploadOptions {
    UploadOptions {
        part_timeout: Some(Duration::from_secs(1)),
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            seed: Some(3),
            ..RetryPolicy::default()
        },
        ..UploadOptions::default()
    }
}

/// A file of `len` bytes in a fresh directory.
fn small_file(name: &str, len: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = tests::fake::temp_dir(name);
    let path = dir.join("small.bin");
    std::fs::write(&path, tests::fake::pattern(len, 5)).unwrap();
    (dir, path)
}

mod oss {
    use super::*;
    use oss_multipart::{Client, Config, Credentials, Error, Uploader};

    fn client(server: &Hostile) -> Client {
        let mut config =
            Config::new(&server.url(), Credentials::new("AKIDHOSTILE", "hostile-secret")).unwrap().with_region("r");
        config.connect_timeout = Duration::from_secs(2);
        config.retry = quick_retry();
        Client::new(config).unwrap()
    }

    fn parts_page(first: u32, truncated: bool, next: u32) -> Answer {
        let parts: String = (first..first + 1000)
            .map(|n| format!("<Part><PartNumber>{n}</PartNumber><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>\"e\"</ETag><Size>5</Size></Part>"))
            .collect();
        xml(
            200,
            &format!(
                "<?xml version=\"1.0\"?><ListPartsResult><Bucket>bucket</Bucket><Key>k</Key><UploadId>U1</UploadId>\
                 <IsTruncated>{truncated}</IsTruncated><NextPartNumberMarker>{next}</NextPartNumberMarker>{parts}</ListPartsResult>"
            ),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oss_listings_that_never_end_or_go_back_are_refused() {
        let server = Hostile::start().await;
        let c = client(&server);
        // Each page moves the marker on by one and holds a thousand parts: without a cap on
        // the parts, 10,000 pages and ten million parts.
        server.script(|r| {
            let marker = r.target.split("part-number-marker=").nth(1).and_then(|m| m.parse().ok()).unwrap_or(0u32);
            parts_page(1, true, marker + 1)
        });
        let r = bounded("endless parts", c.list_all_parts("bucket", "k", "U1")).await;
        assert!(matches!(&r, Err(Error::MalformedResponse { detail, .. }) if detail.contains("more parts")), "{r:?}");
        assert!(server.seen().len() <= 12, "{} pages asked for", server.seen().len());

        // Upload listings whose next markers alternate.
        let uploads = |key: &str, id: &str| {
            xml(
                200,
                &format!(
                    "<?xml version=\"1.0\"?><ListMultipartUploadsResult><Bucket>bucket</Bucket><IsTruncated>true</IsTruncated>\
                     <NextKeyMarker>{key}</NextKeyMarker><NextUploadIdMarker>{id}</NextUploadIdMarker>\
                     <Upload><Key>{key}</Key><UploadId>{id}</UploadId><Initiated>2026-01-01T00:00:00.000Z</Initiated></Upload>\
                     </ListMultipartUploadsResult>"
                ),
            )
        };
        server.script(move |r| if r.target.contains("key-marker=b") { uploads("a", "1") } else { uploads("b", "2") });
        let r = bounded("alternating markers", c.list_all_multipart_uploads("bucket", None)).await;
        assert!(matches!(&r, Err(Error::MalformedResponse { detail, .. }) if detail.contains("goes back")), "{r:?}");

        // Empty truncated pages whose markers move on for ever.
        server.script(|r| {
            let n = r.target.split("key-marker=k").nth(1).and_then(|m| m.split('&').next()?.parse().ok()).unwrap_or(0u64);
            xml(
                200,
                &format!(
                    "<?xml version=\"1.0\"?><ListMultipartUploadsResult><Bucket>bucket</Bucket><IsTruncated>true</IsTruncated>\
                     <NextKeyMarker>k{:09}</NextKeyMarker></ListMultipartUploadsResult>",
                    n + 1
                ),
            )
        });
        let r = bounded("empty pages", c.list_all_multipart_uploads("bucket", None)).await;
        assert!(matches!(&r, Err(Error::MalformedResponse { detail, .. }) if detail.contains("no upload")), "{r:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oss_a_stalled_single_put_object_times_out() {
        let server = Hostile::start().await;
        server.script(|_| Answer::Stall);
        let (dir, path) = small_file("untrusted-oss-stall", (1 << 20) + 5);
        let uploader = Uploader::new(client(&server)).with_options(stall_options());
        let r = bounded("stalled PutObject", uploader.upload_file("bucket", "k", &path)).await;
        assert!(matches!(r, Err(UploadError::PartTimeout { attempts: 2, .. })), "{r:?}");
        assert_eq!(server.seen().len(), 2, "PutObject is retried once, then given up on");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn oss_endpoints_carry_no_user_name_or_password() {
        let credentials = || Credentials::new("ak", "sk");
        let err = Config::new("https://user:hunter2@oss-cn-hangzhou.aliyuncs.com", credentials()).unwrap_err();
        assert!(err.to_string().contains("user name or password"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let config = Config { host: "evil.example/x?".into(), ..Config::new("127.0.0.1:9", credentials()).unwrap() };
        let err = Client::new(config.with_region("r")).unwrap_err();
        assert!(err.to_string().contains("host name"), "{err}");
    }
}

mod qingstor {
    use super::*;
    use qingstor_multipart::{Client, Config, Credentials, Error, Uploader};

    fn client(server: &Hostile) -> Client {
        let mut config =
            Config::new(Credentials::new("QSAKHOSTILE", "hostile-secret")).with_endpoint(&server.url()).unwrap();
        config.zone = Some("pek3a".into());
        config.call_timeout = Duration::from_secs(3);
        config.connect_timeout = Duration::from_secs(2);
        config.retry = quick_retry();
        Client::new(config).unwrap()
    }

    fn page(first: u32) -> Answer {
        let parts: Vec<String> = (first..first + 1000).map(|n| format!("{{\"part_number\":{n},\"size\":5}}")).collect();
        json(200, &format!("{{\"count\":2000,\"object_parts\":[{}]}}", parts.join(",")))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qingstor_listings_whose_markers_alternate_are_refused() {
        let server = Hostile::start().await;
        let c = client(&server);
        // Full pages whose last part numbers alternate between 1000 and 999: the marker never
        // repeats the one before, and the listing never ends.
        server.script(|r| if r.target.contains("part_number_marker=1000") { page(0) } else { page(1) });
        let r = bounded("alternating part markers", c.list_all_parts("bucket", "k", "U1")).await;
        assert!(matches!(&r, Err(Error::MalformedResponse { detail, .. }) if detail.contains("marker")), "{r:?}");

        let uploads = |key: &str| {
            json(
                200,
                &format!(
                    "{{\"has_more\":true,\"next_key_marker\":\"{key}\",\"next_upload_id_marker\":\"1\",\
                     \"uploads\":[{{\"key\":\"{key}\",\"upload_id\":\"1\"}}]}}"
                ),
            )
        };
        server.script(move |r| if r.target.contains("key_marker=b") { uploads("a") } else { uploads("b") });
        let r = bounded("alternating upload markers", c.list_all_multipart_uploads("bucket", None)).await;
        assert!(matches!(&r, Err(Error::MalformedResponse { detail, .. }) if detail.contains("goes back")), "{r:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qingstor_a_stalled_single_put_object_times_out() {
        let server = Hostile::start().await;
        server.script(|_| Answer::Stall);
        let (dir, path) = small_file("untrusted-qingstor-stall", (1 << 20) + 5);
        let uploader = Uploader::new(client(&server)).with_options(stall_options());
        let r = bounded("stalled Put Object", uploader.upload_file("bucket", "k", &path)).await;
        assert!(matches!(r, Err(UploadError::PartTimeout { attempts: 2, .. })), "{r:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qingstor_a_zone_that_is_not_a_label_sends_nothing() {
        // Before any connection: the request would go to `evil.example`, signed.
        let mut config = Config::new(Credentials::new("QSAK", "secret")).with_zone("evil.example/");
        config.protocol = "http".into();
        config.host = "qingstor.com".into();
        let c = Client::new(config).unwrap();
        let r = bounded("bad zone", c.list_multipart("bucket", "k", "U1", None, None)).await;
        let err = r.unwrap_err().to_string();
        assert!(err.contains("not a zone name"), "{err}");
    }
}

mod box_api {
    use super::*;
    use box_chunked::types::UploadSession;
    use box_chunked::{Client, Config, Error, Uploader};

    fn client(api: &Hostile, upload: &Hostile) -> Client {
        let mut config =
            Config::with_token("BOX-TOKEN-SECRET").with_urls(&api.url(), &upload.url(), &api.url()).unwrap();
        config.call_timeout = Duration::from_secs(3);
        config.connect_timeout = Duration::from_secs(2);
        config.retry = quick_retry();
        Client::new(config).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn box_part_listings_longer_than_the_session_are_refused() {
        let (api, upload) = (Hostile::start().await, Hostile::start().await);
        let c = client(&api, &upload);
        // Full pages for ever, and no total_count.
        upload.script(|_| {
            let entries: Vec<String> =
                (0..1000).map(|n| format!("{{\"part_id\":\"P{n}\",\"offset\":{},\"size\":8}}", n * 8)).collect();
            json(200, &format!("{{\"entries\":[{}]}}", entries.join(",")))
        });
        let session = UploadSession { id: "S1".into(), part_size: 8, total_parts: 3, ..UploadSession::default() };
        let r = bounded("endless part pages", c.list_all_parts(&session)).await;
        assert!(matches!(&r, Err(Error::MalformedResponse { detail, .. }) if detail.contains("more parts")), "{r:?}");
        // One page of slack for entries that come twice while parts are stored.
        assert_eq!(upload.seen().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn box_a_stalled_plain_upload_times_out() {
        let (api, upload) = (Hostile::start().await, Hostile::start().await);
        upload.script(|_| Answer::Stall);
        let mut config = client(&api, &upload).config().clone();
        config.call_timeout = Duration::from_secs(600);
        let (dir, path) = small_file("untrusted-box-stall", (1 << 20) + 5);
        let uploader = Uploader::new(Client::new(config).unwrap()).with_options(stall_options());
        let r = bounded("stalled plain upload", uploader.upload_file("0", "small.bin", &path)).await;
        // A new file may exist behind a stalled answer: it is not sent twice.
        assert!(matches!(r, Err(UploadError::PartTimeout { attempts: 1, .. })), "{r:?}");
        assert_eq!(upload.seen().len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn box_urls_carry_no_user_name_or_password() {
        let err = Config::with_token("t")
            .with_urls("https://u:hunter2@api.box.com/2.0", "https://upload.box.com/api/2.0", "https://api.box.com/x")
            .unwrap_err();
        assert!(err.to_string().contains("user name or password") && !err.to_string().contains("hunter2"), "{err}");
        let mut config = Config::with_token("t");
        config.trusted_urls.push("http://attacker:pw@127.0.0.1:9".into());
        assert!(Client::new(config).unwrap_err().to_string().contains("trusted_urls"));
    }
}

mod sharepoint {
    use super::*;
    use sharepoint_resumable::{Auth, Client, Config, RestAuth, RestClient, RestConfig};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn graph_fragments_go_only_to_hosts_graph_hands_upload_urls_out_on() {
        let elsewhere = Hostile::start().await;
        let c = Client::new(Config::with_token("GRAPH-TOKEN-SECRET")).unwrap();
        for url in [
            format!("{}/up/x?tempauth=TEMPAUTH-SECRET", elsewhere.url()),
            "http://contoso.sharepoint.com/up/x?tempauth=TEMPAUTH-SECRET".to_owned(),
            "https://contoso.sharepoint.com.evil.example/x?tempauth=TEMPAUTH-SECRET".to_owned(),
            "https://evilsharepoint.com/x?tempauth=TEMPAUTH-SECRET".to_owned(),
        ] {
            let r = bounded("untrusted upload URL", c.session_status(&Secret::new(url.clone()))).await;
            let err = r.unwrap_err().to_string();
            assert!(err.contains("not a host Graph hands upload URLs out on"), "{url}: {err}");
            assert!(!err.contains("TEMPAUTH-SECRET"), "{err}");
        }
        assert!(elsewhere.seen().is_empty());
        let trusts = |u: &str| c.config().trusts_upload_url(&reqwest::Url::parse(u).unwrap());
        for good in [
            "https://contoso.sharepoint.com/sites/x/_api/v2.0/drives/b/items/1/uploadSession?guid='1'&tempauth=t",
            "https://contoso-my.sharepoint.com/personal/x/_api/v2.0/uploadSession?tempauth=t",
            "https://contoso.sharepoint.us/x",
            "https://contoso.sharepoint.cn/x",
            "https://api.onedrive.com/rup/abc",
            "https://sn3302.up.1drv.com/up/abc",
            "https://my.microsoftpersonalcontent.com/personal/abc/_api/v2.0/drives/abc/items/1/uploadSession?tempauth=t",
            "https://graph.microsoft.com/v1.0/x",
        ] {
            assert!(trusts(good), "{good}");
        }
        assert!(!trusts("https://contoso.sharepoint.com:8443/x"), "Microsoft's hosts on their own port only");
        // A host of one's own, added to trusted_urls, by scheme, host and port.
        let mut config = Config::with_token("t");
        config.trusted_urls.push(elsewhere.url());
        let own = Client::new(config).unwrap();
        let ok = |u: &str| own.config().trusts_upload_url(&reqwest::Url::parse(u).unwrap());
        assert!(ok(&format!("{}/up/x", elsewhere.url())));
        assert!(!ok(&format!("http://127.0.0.1:{}/up/x", elsewhere.addr.port() ^ 1)));
    }

    /// A Graph that hands out an upload URL elsewhere: the upload fails at once, naming the
    /// host, and the URL is never written to the checkpoint for a later run to follow.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn graph_an_untrusted_upload_url_from_create_is_refused_and_never_saved() {
        use sharepoint_resumable::{Drive, Item, Source, Uploader};
        let (graph, elsewhere) = (Hostile::start().await, Hostile::start().await);
        let url = format!("{}/up/S1?tempauth=TEMPAUTH-SECRET", elsewhere.url());
        graph.script(move |_| {
            json(200, &format!("{{\"uploadUrl\":\"{url}\",\"expirationDateTime\":\"2099-01-01T00:00:00Z\"}}"))
        });
        let mut config = Config::with_token("GRAPH-TOKEN-SECRET").with_urls(&graph.url(), &graph.url()).unwrap();
        config.retry = quick_retry();
        let dir = tests::fake::temp_dir("untrusted-graph-create");
        let checkpoint = dir.join("state.json");
        let options = UploadOptions { checkpoint: Some(checkpoint.clone()), ..stall_options() };
        let uploader = Uploader::new(Client::new(config).unwrap()).with_options(options);
        let data = bytes::Bytes::from(tests::fake::pattern(1000, 4));
        let mut up = uploader.upload(Drive::Me, Item::Path("f.bin".into()), Source::bytes(data)).unwrap();
        let err = bounded("untrusted create", up.run()).await.unwrap_err().to_string();
        assert!(err.contains("not a host Graph hands upload URLs out on"), "{err}");
        assert!(!err.contains("TEMPAUTH-SECRET"), "{err}");
        assert!(elsewhere.seen().is_empty(), "{:?}", elsewhere.seen());
        let saved = std::fs::read_to_string(&checkpoint).unwrap_or_default();
        assert!(!saved.contains("TEMPAUTH-SECRET"), "the untrusted URL was saved: {saved}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sharepoint_addresses_carry_no_user_name_or_password() {
        let err =
            Config::with_token("t").with_urls("https://u:hunter2@graph.microsoft.com/v1.0", "https://x").unwrap_err();
        assert!(err.to_string().contains("user name or password") && !err.to_string().contains("hunter2"), "{err}");
        let mut config = Config::with_token("t");
        config.graph_url = "https://u:hunter2@graph.microsoft.com/v1.0".into();
        assert!(Client::new(config).unwrap_err().to_string().contains("graph_url"));
        let auth = || RestAuth::Bearer(Auth::Token(Secret::new("t")));
        let err = RestConfig::new("https://u:hunter2@contoso.sharepoint.com/sites/x", auth()).unwrap_err();
        assert!(err.to_string().contains("user name or password") && !err.to_string().contains("hunter2"), "{err}");
        let mut config = RestConfig::new("https://contoso.sharepoint.com/sites/x", auth()).unwrap();
        config.login_url = "https://u:hunter2@login.microsoftonline.com".into();
        assert!(RestClient::new(config).unwrap_err().to_string().contains("login_url"));
    }
}
