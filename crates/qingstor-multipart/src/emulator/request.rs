//! The request loop: routing, what is decided from the headers before a byte of the body is
//! read (the bucket, the signature, `Content-Length`, the form of `Content-MD5`), the body read
//! under QingStor's limits, the injected faults, the error documents and the request log.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use upload_core::emulator::{
    Capped, DOCUMENT_MAX, Dropped, PendingBody, Reply, decode, decode_strict, host_name, parse_query, take_fault,
    text_headers,
};
use upload_core::hash::Hashes;

use super::{Ctx, ERROR_DOCS, FaultAction, LoggedRequest, Operation, QsFault, Shared, auth, content_md5, dispatch};
use crate::signing::SignableRequest;
use crate::types::ErrorBody;

/// Parsed routing facts of a request.
struct Route {
    bucket: Option<String>,
    key: Option<String>,
    /// The key's percent-decoded bytes are not UTF-8.
    bad_key: bool,
    /// The canonical path QingStor signs: the raw request path, `/<bucket>` in front for a
    /// virtual-host request.
    canonical: String,
    query: Vec<(String, String)>,
}

fn route(shared: &Shared, req: &Request<Incoming>) -> Route {
    let hostname = host_name(req);
    let query = parse_query(req.uri().query().unwrap_or_default());
    let path = req.uri().path();
    let virtual_bucket = hostname.split_once('.').map(|(first, _)| first).filter(|first| {
        hostname.parse::<std::net::IpAddr>().is_err() && shared.config.buckets.iter().any(|b| b == first)
    });
    let (bucket, raw_key, canonical) = match virtual_bucket {
        Some(b) => (Some(b.to_owned()), path.strip_prefix('/').filter(|k| !k.is_empty()), format!("/{b}{path}")),
        None => {
            let rest = path.strip_prefix('/').unwrap_or(path);
            let (bucket, key) = match rest.split_once('/') {
                Some((b, k)) => (Some(decode(b)), (!k.is_empty()).then_some(k)),
                None if !rest.is_empty() => (Some(decode(rest)), None),
                None => (None, None),
            };
            (bucket, key, path.to_owned())
        }
    };
    let key = raw_key.map(decode_strict);
    let bad_key = matches!(key, Some(None));
    Route { bucket, key: key.flatten(), bad_key, canonical, query }
}

fn operation_of(method: &hyper::Method, route: &Route, headers: &hyper::HeaderMap) -> Option<Operation> {
    let has = |n: &str| route.query.iter().any(|(q, _)| q == n);
    let copy = headers.contains_key("x-qs-copy-source");
    // Put Object with a sub-resource (`append`, `acl`…) or a copy, move or fetch source is
    // another call the emulator does not have: never a plain overwrite.
    let other_put = route.query.iter().any(|(q, _)| crate::signing::is_subresource(q))
        || ["x-qs-copy-source", "x-qs-move-source", "x-qs-fetch-source"].iter().any(|h| headers.contains_key(*h));
    let op = match (method.as_str(), route.key.is_some()) {
        ("POST", true) if has("uploads") => Operation::InitiateMultipartUpload,
        ("POST", true) if has("upload_id") => Operation::CompleteMultipartUpload,
        ("PUT", true) if has("upload_id") || has("part_number") => {
            if copy {
                Operation::UploadMultipartCopy
            } else {
                Operation::UploadMultipart
            }
        }
        ("DELETE", true) if has("upload_id") => Operation::AbortMultipartUpload,
        ("GET", true) if has("upload_id") => Operation::ListMultipart,
        ("GET", false) if has("uploads") => Operation::ListMultipartUploads,
        ("PUT", true) if !other_put => Operation::PutObject,
        ("GET", true) => Operation::GetObject,
        ("HEAD", true) => Operation::HeadObject,
        ("DELETE", true) => Operation::DeleteObject,
        _ => return None,
    };
    Some(op)
}

/// A request that passed the checks of its headers.
struct Admitted {
    op: Operation,
    bucket: String,
}

/// The checks of a request's headers, before its body (a refusal is answered unread): the
/// bucket, the signature, the key, the operation, `Content-Length` where it is required and
/// the form of `Content-MD5`.
fn admit(
    shared: &Shared,
    route: &Route,
    operation: Option<Operation>,
    signable: &SignableRequest,
    signer: &mut Option<String>,
) -> Result<Admitted, QsFault> {
    let bucket = route.bucket.clone().unwrap_or_default();
    if !shared.config.buckets.contains(&bucket) {
        return Err(QsFault::new(404, "bucket_not_exists", "The bucket you are accessing does not exist."));
    }
    *signer = Some(auth::verify(signable, &shared.keys, shared.now().into(), shared.config.check_time)?);
    if route.bad_key {
        return Err(QsFault::new(400, "invalid_object_name", "The object name is not UTF-8."));
    }
    let op = operation
        .ok_or_else(|| QsFault::new(405, "method_not_allowed", "This request is not supported by the emulator."))?;
    if matches!(op, Operation::UploadMultipart | Operation::PutObject) {
        if signable.header_value("content-length").is_none() {
            return Err(QsFault::new(411, "length_required", "Content-Length is required."));
        }
        content_md5(signable.header_value("content-md5").as_deref())?;
    }
    Ok(Admitted { op, bucket })
}

pub(super) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, Dropped> {
    let route = route(&shared, &req);
    let method = req.method().clone();
    let operation = operation_of(&method, &route, req.headers());
    let part_number = route.query.iter().find(|(n, _)| n == "part_number").and_then(|(_, v)| v.parse().ok());
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
    let fault = take_fault(&mut shared.store().faults, operation, part_number);
    // A slow server: once the body is in (or before the answer to a request refused unread).
    let delay = match &fault {
        Some(FaultAction::Delay(d)) => Some(*d),
        _ => None,
    };
    let signable = SignableRequest {
        method: method.to_string(),
        path: route.canonical.clone(),
        query: route.query.clone(),
        headers: text_headers(req.headers()),
    };
    let body = PendingBody::new(req);
    // Parts and objects up to the configured size (QingStor: 5 GB); documents up to a bound.
    let uploads = matches!(operation, Some(Operation::UploadMultipart | Operation::PutObject));
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
    let result: Result<Reply, QsFault> = match verdict {
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
            // In discard mode the MD5 is computed as the bytes pass, when Content-MD5 is
            // checked.
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
                    Err(QsFault::new(400, "entity_too_large", "The part, object or document is too large."))
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
                            Err(QsFault::new(*status, code, "Injected by the emulator after the operation."))
                        }
                        _ => done,
                    }
                }
            }
        }
    };

    let request_id = format!("{:016x}", 0x5e00_0000_0000_u64 + upload_core::emulator::unique());
    let mut reply = match result {
        Ok(r) => r,
        Err(f) => {
            entry.error_code = Some(f.code.clone());
            error_reply(&f, &request_id, method == hyper::Method::HEAD)
        }
    };
    let headers = reply.headers_mut();
    if let Ok(v) = request_id.parse() {
        headers.insert("x-qs-request-id", v);
    }
    headers.insert("server", hyper::header::HeaderValue::from_static("QingStor"));
    if let Ok(date) = shared.http_date().parse() {
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

pub(super) fn error_reply(f: &QsFault, request_id: &str, head: bool) -> Reply {
    let doc = ErrorBody {
        code: f.code.clone(),
        message: Some(f.message.clone()),
        request_id: Some(request_id.to_owned()),
        url: Some(ERROR_DOCS.to_owned()),
    };
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    if let Some(s) = f.retry_after {
        builder = builder.header("retry-after", s.to_string());
    }
    let body = if head { Bytes::new() } else { Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()) };
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
    Refused(QsFault),
    /// An injected error: answered once the body is in (not kept).
    Injected(QsFault),
    /// To be read and served.
    Admitted(Admitted),
}

/// The error an injected fault answers with, without doing anything.
fn injected_error(fault: Option<&FaultAction>) -> Option<QsFault> {
    let Some(FaultAction::Error { status, code, retry_after }) = fault else { return None };
    let mut f = QsFault::new(*status, code, "Injected by the emulator.");
    f.retry_after = *retry_after;
    Some(f)
}
