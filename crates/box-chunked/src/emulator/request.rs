//! The request loop: routing, what is decided from the headers before a byte of the body is
//! read (the bearer token, a part's range, digest, session and length), the body read under
//! Box's limits, the injected faults, the error documents and the request log.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use upload_core::emulator::{
    Capped, DOCUMENT_MAX, Dropped, PendingBody, Reply, empty, parse_query, take_fault, text_headers,
};
use upload_core::hash::Hashes;

use super::tokens::{authenticate, token};
use super::{
    BoxFault, Ctx, FaultAction, HELP_URL, Host, LoggedRequest, Operation, Shared, dispatch, part_range, part_size_for,
};
use crate::types::ClientError;

/// The largest file the plain upload takes (Box: 50 MB; larger files take a chunked upload).
pub(super) const PLAIN_FILE_MAX: u64 = 50 << 20;

/// The largest body of a plain upload: the file and the rest of its form.
const PLAIN_BODY_MAX: u64 = PLAIN_FILE_MAX + (1 << 20);

/// The largest body of a token request (a form of a few fields, read before any credential is
/// known).
const TOKEN_BODY_MAX: u64 = 64 << 10;

pub(super) fn too_large() -> BoxFault {
    BoxFault::new(413, "request_entity_too_large", "Request entity too large")
}

pub(super) fn error_reply(f: &BoxFault, request_id: &str) -> Reply {
    let doc = ClientError {
        kind: Some("error".into()),
        status: Some(u32::from(f.status)),
        code: Some(f.code.clone()),
        message: Some(f.message.clone()),
        context_info: f.context.clone(),
        help_url: Some(HELP_URL.into()),
        request_id: Some(request_id.to_owned()),
    };
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    if let Some(s) = f.retry_after {
        builder = builder.header("retry-after", s.to_string());
    }
    if f.status == 401 {
        builder = builder.header(
            "www-authenticate",
            "Bearer realm=\"Service\", error=\"invalid_token\", error_description=\"The access token provided is invalid.\"",
        );
    }
    let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
    builder.body(Full::new(body)).unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// A parsed route: the operation and the id in the path. The API host serves file information,
/// downloads and tokens (`/2.0/…`, `/oauth2/token`); the upload hosts serve sessions and uploads
/// (`/api/2.0/…`), as Box's hosts do.
pub(super) fn route(host: Host, method: &str, path: &str) -> Option<(Operation, Option<String>)> {
    let path = match host {
        Host::Api if method == "POST" && path == "/oauth2/token" => return Some((Operation::Token, None)),
        Host::Api => path,
        Host::Upload | Host::Session => path.strip_prefix("/api")?,
    };
    let rest = path.strip_prefix("/2.0/files")?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let id = |i: usize| segments.get(i).map(|s| (*s).to_owned());
    let op = match (method, segments.as_slice()) {
        ("POST", ["upload_sessions"]) => (Operation::CreateUploadSession, None),
        ("POST", ["content"]) => (Operation::UploadFile, None),
        ("GET", ["upload_sessions", _]) => (Operation::GetUploadSession, id(1)),
        ("PUT", ["upload_sessions", _]) => (Operation::UploadPart, id(1)),
        ("DELETE", ["upload_sessions", _]) => (Operation::Abort, id(1)),
        ("GET", ["upload_sessions", _, "parts"]) => (Operation::ListParts, id(1)),
        ("POST", ["upload_sessions", _, "commit"]) => (Operation::Commit, id(1)),
        ("POST", ["upload_sessions", _, "log"]) => (Operation::LogEvent, id(1)),
        ("POST", [_, "upload_sessions"]) => (Operation::CreateFileUploadSession, id(0)),
        ("POST", [_, "content"]) => (Operation::UploadFileVersion, id(0)),
        ("GET", [_, "content"]) => (Operation::DownloadFile, id(0)),
        ("GET", [_]) => (Operation::GetFile, id(0)),
        _ => return None,
    };
    Some(op).filter(|(op, _)| {
        (host == Host::Api) == matches!(op, Operation::GetFile | Operation::DownloadFile | Operation::Token)
    })
}

/// `bytes a-b/total` → (a, b, total).
pub(super) fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// A request that passed the checks of its headers: its operation and the most body bytes it
/// may have. Who acts is in the context (nobody for the token endpoint, whose credentials are
/// in the body).
struct Admitted {
    op: Operation,
    limit: u64,
}

/// The most body bytes a request for `op` may have: a part, the session's part size at most
/// (64 MiB as Box picks them); a plain upload, the file and its form; a token request, a
/// small form; anything else, a document.
fn limit_of(shared: &Shared, op: Option<Operation>) -> u64 {
    match op {
        Some(Operation::Token) => TOKEN_BODY_MAX,
        Some(Operation::UploadPart) => part_size_for(&shared.config, u64::MAX),
        Some(Operation::UploadFile | Operation::UploadFileVersion) => PLAIN_BODY_MAX,
        _ => DOCUMENT_MAX,
    }
}

/// The checks of a request's headers, before its body (a refusal is answered unread): the
/// route, the bearer token (the user it acts as goes into `ctx`), and for a part its range,
/// digest and session and a `Content-Length` equal to the range.
fn admit(ctx: &mut Ctx<'_>, operation: Option<Operation>) -> Result<Admitted, BoxFault> {
    let op = operation.ok_or_else(|| BoxFault::new(404, "not_found", "Not Found"))?;
    let limit = limit_of(ctx.shared, Some(op));
    if op == Operation::Token {
        return Ok(Admitted { op, limit });
    }
    ctx.user = authenticate(ctx.shared, ctx.header("authorization").as_deref(), ctx.header("as-user"))?;
    if op != Operation::UploadPart {
        return Ok(Admitted { op, limit });
    }
    let part = part_range(ctx)?;
    match ctx.content_length {
        None => Err(BoxFault::new(411, "length_required", "Content-Length is required")),
        Some(n) if n as u64 != part.len => {
            Err(BoxFault::new(416, "requested_range_not_satisfiable", "The body length does not match Content-Range"))
        }
        Some(_) => Ok(Admitted { op, limit: part.len }),
    }
}

pub(super) async fn handle(shared: Option<Arc<Shared>>, host: Host, req: Request<Incoming>) -> Result<Reply, Dropped> {
    let Some(shared) = shared else { return Ok(empty(503)) };
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or_default());
    let routed = route(host, &method, &path);
    let operation = routed.as_ref().map(|(op, _)| *op);
    let id = routed.and_then(|(_, id)| id);
    let headers = text_headers(req.headers());
    let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    // The part index, for faults and the log.
    let part_number = match (operation, &id, header("content-range").as_deref().and_then(content_range)) {
        (Some(Operation::UploadPart), Some(sid), Some((first, _, _))) => {
            let store = shared.store();
            store.sessions.get(sid).and_then(|s| u32::try_from(first / s.part_size.max(1)).ok())
        }
        _ => None,
    };
    let mut entry = LoggedRequest {
        method: method.clone(),
        bucket: None,
        key: id.clone(),
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
    let body = PendingBody::new(req);
    let reset_after = match &fault {
        Some(FaultAction::ResetMidBody { after }) => Some(*after),
        _ => None,
    };
    let mut ctx = Ctx {
        shared: &shared,
        user: String::new(),
        id: id.unwrap_or_default(),
        query: &query,
        headers: &headers,
        body: Bytes::new(),
        discarded: None,
        content_length: header("content-length").and_then(|v| v.parse().ok()),
    };
    let verdict = match injected_error(fault.as_ref()) {
        Some(f) => Verdict::Injected(f),
        None => admit(&mut ctx, operation).map_or_else(Verdict::Refused, Verdict::Admitted),
    };
    let result: Result<Reply, BoxFault> = match verdict {
        // Refused from its headers: the body is not read.
        Verdict::Refused(f) => {
            pause(delay).await;
            body.refuse();
            Err(f)
        }
        // An injected error: answered once the body is in.
        Verdict::Injected(f) => match body.read(limit_of(&shared, operation), Some(Hashes::NONE), reset_after).await {
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
        Verdict::Admitted(Admitted { op, limit }) => {
            let discard = (shared.config.discard_bodies && op == Operation::UploadPart).then_some(Hashes::SHA1);
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
                    if op == Operation::Token {
                        token(&shared, &received.bytes)
                    } else {
                        ctx.body = received.bytes;
                        ctx.discarded = received.discarded;
                        let done = dispatch(op, &ctx);
                        match &fault {
                            // Done, and answered with an error all the same.
                            Some(FaultAction::ErrorAfter { status, code }) => {
                                Err(BoxFault::new(*status, code, "Injected by the emulator after the operation."))
                            }
                            _ => done,
                        }
                    }
                }
            }
        }
    };
    let user = (!ctx.user.is_empty()).then(|| ctx.user.clone());
    let request_id = format!("{:x}", 0x5e00_0000_u64 + upload_core::emulator::unique());
    let mut reply = match result {
        Ok(r) => r,
        Err(f) => {
            entry.error_code = Some(f.code.clone());
            error_reply(&f, &request_id)
        }
    };
    if let Ok(v) = request_id.parse() {
        reply.headers_mut().insert("box-request-id", v);
    }
    entry.status = reply.status().as_u16();
    entry.access_key_id = user;
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

/// Waits `delay`, if any (an injected slow server).
async fn pause(delay: Option<std::time::Duration>) {
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
}

/// What the checks of a request's headers decided.
enum Verdict {
    /// Refused from its headers: answered without its body.
    Refused(BoxFault),
    /// An injected error: answered once the body is in (not kept).
    Injected(BoxFault),
    /// To be read and served.
    Admitted(Admitted),
}

/// The error an injected fault answers with, without doing anything.
fn injected_error(fault: Option<&FaultAction>) -> Option<BoxFault> {
    let Some(FaultAction::Error { status, code, retry_after }) = fault else { return None };
    let mut f = BoxFault::new(*status, code, "Injected by the emulator.");
    f.retry_after = *retry_after;
    Some(f)
}
