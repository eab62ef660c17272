//! The request loop: routing, what is decided from the headers before a byte of the body is
//! read (the signature, the bucket, the announced length, the form of `Content-MD5`), the body
//! read under OSS's limits, the injected faults, the error documents and the request log.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use upload_core::emulator::{
    Capped, DOCUMENT_MAX, Dropped, PendingBody, Reply, decode, decode_strict, host_name, parse_query, take_fault,
    text_headers,
};
use upload_core::hash::Hashes;

use super::{Ctx, FaultAction, LoggedRequest, Operation, OssFault, Shared, auth, content_md5, dispatch, xml_escape};
use crate::signing::SignableRequest;

/// Parsed routing facts of a request.
struct Route {
    bucket: Option<String>,
    key: Option<String>,
    /// The key's percent-decoded bytes are not UTF-8.
    bad_key: bool,
    query: Vec<(String, String)>,
    host: String,
}

fn route(shared: &Shared, req: &Request<Incoming>) -> Route {
    let host = host_name(req);
    let hostname = host.as_str();
    let query = parse_query(req.uri().query().unwrap_or_default());
    let path = req.uri().path();
    let virtual_bucket = hostname.split_once('.').map(|(first, _)| first).filter(|first| {
        hostname.parse::<std::net::IpAddr>().is_err() && shared.config.buckets.iter().any(|b| b == first)
    });
    let (bucket, raw_key) = match virtual_bucket {
        Some(b) => (Some(b.to_owned()), path.strip_prefix('/').filter(|k| !k.is_empty())),
        None => {
            let rest = path.strip_prefix('/').unwrap_or(path);
            match rest.split_once('/') {
                Some((b, k)) => (Some(decode(b)), (!k.is_empty()).then_some(k)),
                None if !rest.is_empty() => (Some(decode(rest)), None),
                None => (None, None),
            }
        }
    };
    let key = raw_key.map(decode_strict);
    let bad_key = matches!(key, Some(None));
    Route { bucket, key: key.flatten(), bad_key, query, host }
}

fn operation_of(method: &hyper::Method, route: &Route, copy: bool) -> Option<Operation> {
    let has = |n: &str| route.query.iter().any(|(q, _)| q == n);
    let op = match (method.as_str(), route.key.is_some()) {
        ("POST", true) if has("uploads") => Operation::InitiateMultipartUpload,
        ("POST", true) if has("uploadId") => Operation::CompleteMultipartUpload,
        ("PUT", true) if has("uploadId") || has("partNumber") => {
            if copy {
                Operation::UploadPartCopy
            } else {
                Operation::UploadPart
            }
        }
        ("DELETE", true) if has("uploadId") => Operation::AbortMultipartUpload,
        ("GET", true) if has("uploadId") => Operation::ListParts,
        ("GET", false) if has("uploads") => Operation::ListMultipartUploads,
        // CopyObject, AppendObject, PutObjectACL…: other calls, never a plain overwrite.
        ("PUT", true) if !copy && !["append", "acl", "symlink", "tagging"].iter().any(|q| has(q)) => {
            Operation::PutObject
        }
        ("GET", true) => Operation::GetObject,
        ("HEAD", true) => Operation::HeadObject,
        ("DELETE", true) => Operation::DeleteObject,
        _ => return None,
    };
    Some(op)
}

fn too_large() -> OssFault {
    OssFault::new(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
}

/// A request that passed the checks of its headers.
struct Admitted {
    op: Operation,
    bucket: String,
}

/// The checks of a request's headers, before its body (a refusal is answered unread): the
/// signature, the key, the operation and the bucket, and the form of `Content-MD5`.
fn admit(
    shared: &Shared,
    route: &Route,
    operation: Option<Operation>,
    signable: &SignableRequest,
    signer: &mut Option<String>,
) -> Result<Admitted, OssFault> {
    *signer = Some(auth::verify(signable, &shared.keys, &shared.config.region, shared.now().into())?.0);
    if route.bad_key {
        return Err(OssFault::new(400, "InvalidObjectName", "The specified object is not valid.").ec("0016-00000005"));
    }
    let op = operation
        .ok_or_else(|| OssFault::new(400, "InvalidArgument", "This request is not supported by the emulator."))?;
    let bucket = route.bucket.clone().unwrap_or_default();
    if !shared.config.buckets.contains(&bucket) {
        return Err(OssFault::new(404, "NoSuchBucket", "The specified bucket does not exist.")
            .ec("0015-00000101")
            .extra("BucketName", &bucket));
    }
    if matches!(op, Operation::UploadPart | Operation::PutObject) {
        content_md5(signable.header_value("content-md5").as_deref())?;
    }
    Ok(Admitted { op, bucket })
}

pub(super) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, Dropped> {
    let route = route(&shared, &req);
    let method = req.method().clone();
    let copy = req.headers().contains_key("x-oss-copy-source");
    let operation = operation_of(&method, &route, copy);
    let part_number = route.query.iter().find(|(n, _)| n == "partNumber").and_then(|(_, v)| v.parse().ok());
    let mut entry = LoggedRequest {
        method: method.to_string(),
        bucket: route.bucket.clone(),
        key: route.key.clone(),
        operation,
        part_number,
        body_len: 0,
        status: 0,
        error_code: None,
        access_key_id: None,
    };

    // An injected fault that applies, if any (spent as it is used).
    let fault = take_fault(&mut shared.store().faults, operation, part_number);
    // A slow server: once the body is in (or before the answer to a request refused unread).
    let delay = match &fault {
        Some(FaultAction::Delay(d)) => Some(*d),
        _ => None,
    };
    let signable = SignableRequest {
        method: method.to_string(),
        bucket: route.bucket.clone(),
        key: route.key.clone(),
        query: route.query.clone(),
        headers: text_headers(req.headers()),
    };
    let body = PendingBody::new(req);
    // Parts and objects up to the configured size (OSS: 5 GiB); documents up to a bound.
    let uploads = matches!(operation, Some(Operation::UploadPart | Operation::PutObject));
    let limit = if uploads { shared.config.max_part_size } else { DOCUMENT_MAX };
    let reset_after = match &fault {
        Some(FaultAction::ResetMidBody { after }) => Some(*after),
        _ => None,
    };
    let mut signer = None;
    let verdict = match injected_error(fault.as_ref()) {
        Some(f) => Verdict::Injected(f),
        None => {
            admit(&shared, &route, operation, &signable, &mut signer).map_or_else(Verdict::Refused, Verdict::Admitted)
        }
    };
    let result: Result<Reply, OssFault> = match verdict {
        // Refused from its headers: the body is not read.
        Verdict::Refused(f) => {
            pause(delay).await;
            body.refuse();
            Err(f)
        }
        // An injected error: answered once the body is in.
        Verdict::Injected(f) => match body.read(limit, Some(Hashes::NONE), reset_after).await {
            Ok(Capped::Whole(b)) => {
                entry.body_len = b.len();
                Err(f)
            }
            Ok(Capped::TooLarge { received }) => {
                entry.body_len = received;
                Err(f)
            }
            Err(got) => {
                entry.body_len = got;
                shared.store().log.push(entry);
                return Err(Dropped);
            }
        },
        Verdict::Admitted(Admitted { op, bucket }) => {
            // In discard mode the digests are computed as the bytes pass (MD5 when
            // Content-MD5 is checked), in memory one allocation of the announced size.
            let discard = (shared.config.discard_bodies && uploads).then_some(if shared.config.verify_md5 {
                Hashes::MD5
            } else {
                Hashes::NONE
            });
            match body.read(limit, discard, reset_after).await {
                Err(got) => {
                    entry.body_len = got;
                    shared.store().log.push(entry);
                    return Err(Dropped);
                }
                Ok(Capped::TooLarge { received }) => {
                    entry.body_len = received;
                    Err(too_large())
                }
                Ok(Capped::Whole(received)) => {
                    entry.body_len = received.len();
                    pause(delay).await;
                    let ctx = Ctx {
                        shared: &shared,
                        bucket,
                        key: route.key.clone().unwrap_or_default(),
                        query: &route.query,
                        headers: &signable,
                        body: received.bytes,
                        discarded: received.discarded,
                    };
                    let done = dispatch(op, &ctx);
                    match &fault {
                        // Done, and answered with an error all the same.
                        Some(FaultAction::ErrorAfter { status, code }) => {
                            Err(OssFault::new(*status, code, "Injected by the emulator after the operation."))
                        }
                        _ => done,
                    }
                }
            }
        }
    };

    let request_id = {
        let mut store = shared.store();
        store.counter += 1;
        format!("{:024X}", 0x5E0_0000_0000_u64 + store.counter)
    };
    let mut reply = match result {
        Ok(r) => r,
        Err(f) => {
            entry.error_code = Some(f.code.clone());
            error_reply(&f, &request_id, &route.host, method == hyper::Method::HEAD)
        }
    };
    let headers = reply.headers_mut();
    headers.insert(
        "x-oss-request-id",
        request_id.parse().unwrap_or_else(|_| hyper::header::HeaderValue::from_static("0")),
    );
    headers.insert("server", hyper::header::HeaderValue::from_static("AliyunOSS"));
    if let Ok(date) = shared.now_http().parse() {
        headers.insert("date", date);
    }
    entry.status = reply.status().as_u16();
    entry.access_key_id = signer;
    let lose = matches!(fault, Some(FaultAction::LoseResponse));
    if lose {
        entry.status = 0;
    }
    shared.store().log.push(entry);
    if lose {
        return Err(Dropped);
    }
    Ok(reply)
}

fn error_reply(f: &OssFault, request_id: &str, host: &str, head: bool) -> Reply {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>{}</Code>\n  <Message>{}</Message>\n  <RequestId>{}</RequestId>\n  <HostId>{}</HostId>\n",
        xml_escape(&f.code),
        xml_escape(&f.message),
        request_id,
        xml_escape(host)
    );
    for (n, v) in &f.extra {
        xml.push_str(&format!("  <{n}>{}</{n}>\n", xml_escape(v)));
    }
    if let Some(ec) = &f.ec {
        xml.push_str(&format!(
            "  <EC>{ec}</EC>\n  <RecommendDoc>https://api.aliyun.com/troubleshoot?q={ec}</RecommendDoc>\n"
        ));
    }
    xml.push_str("</Error>\n");
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/xml");
    if let Some(ec) = &f.ec {
        builder = builder.header("x-oss-ec", ec.as_str());
    }
    if let Some(s) = f.retry_after {
        builder = builder.header("retry-after", s.to_string());
    }
    let body = if head {
        builder = builder.header("x-oss-err", STANDARD.encode(xml.as_bytes()));
        Bytes::new()
    } else {
        Bytes::from(xml)
    };
    builder.body(Full::new(body)).unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Waits `delay`, if any (an injected slow server).
async fn pause(delay: Option<std::time::Duration>) {
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
}

/// What the checks of a request's headers decided.
enum Verdict {
    /// Refused from its headers: answered without its body.
    Refused(OssFault),
    /// An injected error: answered once the body is in (not kept).
    Injected(OssFault),
    /// To be read and served.
    Admitted(Admitted),
}

/// The error an injected fault answers with, without doing anything.
fn injected_error(fault: Option<&FaultAction>) -> Option<OssFault> {
    let Some(FaultAction::Error { status, code, retry_after }) = fault else { return None };
    let mut f = OssFault::new(*status, code, "Injected by the emulator.");
    f.retry_after = *retry_after;
    Some(f)
}
