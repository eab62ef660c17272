//! The Graph emulator's request loop: claiming a connection, reading the body, answering.

use super::*;
#[allow(unused_imports)]
use super::{ids::*, items::*, records::*, sessions::*, tokens::*};

// ---------------------------------------------------------------------------------------------
// The request loop.

/// What is known of a request before its body is read, for faults, the log and the check that
/// one fragment at a time arrives per session.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) bucket: Option<String>,
    pub(super) key: Option<String>,
    /// The session's creator, when the upload URL's `tempauth` matches.
    pub(super) owner: Option<String>,
}

pub(super) fn describe(shared: &Shared, routed: Option<&Route>, query: &[(String, String)]) -> Seen {
    match routed {
        Some(Route::Graph { drive, target, .. }) => {
            let Ok(drive) = resolve_drive(shared, drive) else { return Seen::default() };
            let key = target_path(&shared.store(), &drive, target).ok();
            Seen { bucket: Some(drive), key, owner: None }
        }
        Some(Route::Upload { session, .. }) => {
            let store = shared.store();
            let Some(s) = store.sessions.get(session) else { return Seen::default() };
            let owner = (q(query, "tempauth") == Some(s.tempauth.as_str())).then(|| s.owner.clone());
            Seen { bucket: Some(s.drive.clone()), key: Some(s.path.clone()), owner }
        }
        _ => Seen::default(),
    }
}

/// Marks a session busy while one fragment is on its way in; dropping it (the request answered,
/// or its connection gone) frees the session.
pub(super) struct Claim {
    pub(super) shared: Arc<Shared>,
    pub(super) session: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(s) = self.shared.store().sessions.get_mut(&self.session) {
            s.busy = false;
        }
    }
}

/// `Ok(None)`: no such session; `Err(())`: another fragment is in flight.
pub(super) fn claim(shared: &Arc<Shared>, session: &str) -> Result<Option<Claim>, ()> {
    let mut store = shared.store();
    match store.sessions.get_mut(session) {
        None => Ok(None),
        Some(s) if s.busy => Err(()),
        Some(s) => {
            s.busy = true;
            Ok(Some(Claim { shared: shared.clone(), session: session.to_owned() }))
        }
    }
}

pub(super) fn q<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

pub(super) fn find_header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
}

pub(super) async fn handle(shared: Option<Arc<Shared>>, host: Host, req: Request<Incoming>) -> Result<Reply, Dropped> {
    let Some(shared) = shared else { return Ok(empty(503)) };
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or_default());
    let headers = text_headers(req.headers());
    let header = |name: &str| find_header(&headers, name);
    let routed = routes::route(host, &method, &path);
    let operation = routed.as_ref().map(Route::operation);
    let range = header("content-range").as_deref().and_then(routes::content_range);
    // The fragment's index on the 320 KiB grid, for faults and the log.
    let part_number = match (operation, range) {
        (Some(Operation::UploadFragment), Some((first, _, _))) => u32::try_from(first / FRAGMENT_ALIGN).ok(),
        _ => None,
    };
    let seen = describe(&shared, routed.as_ref(), &query);
    let mut entry = LoggedRequest {
        method,
        bucket: seen.bucket,
        key: seen.key,
        operation,
        part_number,
        body_len: 0,
        status: 0,
        error_code: None,
        access_key_id: None,
    };
    let fault = take_fault(&mut shared.store().faults, operation, part_number);
    // A slow server: before anything of the request is read or claimed.
    if let Some(FaultAction::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let content_length: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
    // One fragment at a time per session: claimed while its body arrives and is stored.
    let mut busy = false;
    let _claim = match &routed {
        Some(Route::Upload { op: Operation::UploadFragment, session }) if seen.owner.is_some() => {
            claim(&shared, session).unwrap_or_else(|()| {
                busy = true;
                None
            })
        }
        _ => None,
    };
    // No body of 60 MiB or more is taken (413; for a fragment, maxFragmentLengthExceeded).
    let mut too_big = content_length.is_some_and(|n| n >= MAX_FRAGMENT);
    // A body that is refused anyway is read through without being kept.
    let drain = (busy || too_big).then_some(HashKinds::NONE);
    let reset_after = match &fault {
        Some(FaultAction::ResetMidBody { after }) => Some(*after),
        _ => None,
    };
    let expected = if drain.is_some() { 0 } else { usize::try_from(content_length.unwrap_or(0)).unwrap_or(0) };
    let read = match content_length {
        Some(_) => read_body(req.into_body(), expected, drain, reset_after).await,
        // A body without a length (chunked) is read only up to the limit. A fragment's is not
        // kept at all: it is refused for its missing Content-Length (411).
        None => {
            let keep = drain.is_none() && operation != Some(Operation::UploadFragment);
            read_unannounced(req.into_body(), MAX_FRAGMENT - 1, keep, reset_after).await
        }
    };
    let received = match read {
        Ok(b) => b,
        Err(got) => {
            // Nothing of a broken-off body is kept.
            entry.body_len = got;
            shared.store().log.push(entry);
            return Err(Dropped);
        }
    };
    entry.body_len = received.len();
    if received.len() >= MAX_FRAGMENT {
        too_big = true;
    }
    let style = match (&routed, host) {
        (Some(Route::Token { .. }), _) => Style::OAuth,
        (_, Host::Graph) => Style::Graph,
        (_, Host::Upload) => Style::Upload,
    };
    let ctx = Ctx {
        shared: &shared,
        query: &query,
        headers: &headers,
        body: received.bytes,
        content_length,
        range,
        busy,
        too_big,
        partial: false,
    };
    let mut user = None;
    let result = respond(&ctx, host, routed.as_ref(), fault.as_ref(), seen.owner.as_deref(), &mut user);
    let request_id = guid(random_u64(), unique());
    let client_request_id = header("client-request-id").unwrap_or_else(|| request_id.clone());
    let mut reply = match result {
        Ok(r) => r,
        Err(e) => {
            entry.error_code = Some(e.code.clone());
            error_reply(&e, style, &request_id, &client_request_id)
        }
    };
    let (second, value) = match host {
        Host::Graph => ("client-request-id", &client_request_id),
        Host::Upload => ("sprequestguid", &request_id),
    };
    for (name, value) in [("request-id", &request_id), (second, value)] {
        if let Ok(v) = hyper::header::HeaderValue::from_str(value) {
            reply.headers_mut().insert(name, v);
        }
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

/// Reads a body sent without `Content-Length` (chunked) as [`read_body`] does, but never past
/// `max` bytes: at the first frame beyond them it stops reading and answers a body of more than
/// `max` bytes whose bytes were not kept (the caller refuses it; the connection is then closed
/// with the rest unread). `keep`: false reads the bytes through without keeping them.
pub(super) async fn read_unannounced(
    mut body: Incoming,
    max: u64,
    keep: bool,
    reset_after: Option<usize>,
) -> Result<Body, u64> {
    use http_body_util::BodyExt;
    let mut kept = bytes::BytesMut::new();
    let mut got = 0u64;
    let reset_due = |got: u64| reset_after.is_some_and(|n| got >= n as u64);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(got) };
        if let Ok(data) = frame.into_data() {
            got = got.saturating_add(data.len() as u64);
            if got > max && !reset_due(got) {
                return Ok(Body {
                    bytes: Bytes::new(),
                    discarded: Some(Discarded { len: got, ..Discarded::default() }),
                });
            }
            if keep {
                kept.extend_from_slice(&data);
            }
        }
        if reset_due(got) {
            return Err(got);
        }
    }
    // An injected reset fires at the end of a shorter body too.
    if reset_after.is_some() {
        return Err(got);
    }
    Ok(if keep {
        Body { bytes: kept.freeze(), discarded: None }
    } else {
        Body { bytes: Bytes::new(), discarded: Some(Discarded { len: got, ..Discarded::default() }) }
    })
}

/// The answer to a request whose body has arrived, with the injected faults that act here.
pub(super) fn respond(
    ctx: &Ctx<'_>,
    host: Host,
    routed: Option<&Route>,
    fault: Option<&FaultAction>,
    owner: Option<&str>,
    user: &mut Option<String>,
) -> Result<Reply, GraphError> {
    if let Some(FaultAction::Error { status, code, retry_after }) = fault {
        let mut e = GraphError::new(*status, code, "Injected by the emulator.");
        e.retry_after = *retry_after;
        return Err(e);
    }
    // A body over the limit (a fragment's is refused as maxFragmentLengthExceeded, after the
    // session's own checks).
    if ctx.too_big && !matches!(routed, Some(Route::Upload { op: Operation::UploadFragment, .. })) {
        return Err(GraphError::too_large());
    }
    let done = match routed {
        None => match host {
            Host::Graph => Err(GraphError::invalid("The emulator does not serve this request.")),
            Host::Upload => Err(GraphError::session_not_found()),
        },
        Some(Route::Token { tenant }) => token(ctx, tenant, user),
        Some(Route::Graph { op, drive, target }) => {
            let who = authenticate(ctx.shared, ctx.header("authorization").as_deref())?;
            *user = Some(who.clone());
            graph(ctx, *op, drive, target, &who)
        }
        Some(Route::Upload { op, session }) => {
            let answer = match (fault, *op, ctx.range) {
                // Part of the fragment is kept, then the server fails (the next expected byte is
                // then off the 320 KiB grid, as Graph has been seen to do).
                (
                    Some(FaultAction::PartialThenError { keep, status, code }),
                    Operation::UploadFragment,
                    Some((first, _, total)),
                ) if *keep > 0 && (*keep as u64) < ctx.body.len() as u64 => {
                    let kept = ctx.body.slice(..*keep);
                    let partial = Ctx {
                        shared: ctx.shared,
                        query: ctx.query,
                        headers: ctx.headers,
                        body: kept,
                        content_length: Some(*keep as u64),
                        range: Some((first, first + *keep as u64 - 1, total)),
                        busy: ctx.busy,
                        too_big: false,
                        partial: true,
                    };
                    upload(&partial, *op, session).and_then(|_| {
                        Err(GraphError::new(
                            *status,
                            code,
                            "Injected by the emulator after keeping part of the fragment.",
                        ))
                    })
                }
                _ => upload(ctx, *op, session),
            };
            if !matches!(&answer, Err(e) if e.status == 401) {
                *user = owner.map(str::to_owned);
            }
            answer
        }
    };
    match fault {
        // Done, and answered with an error all the same.
        Some(FaultAction::ErrorAfter { status, code }) => {
            Err(GraphError::new(*status, code, "Injected by the emulator after the operation."))
        }
        _ => done,
    }
}

pub(super) struct Ctx<'a> {
    pub(super) shared: &'a Shared,
    pub(super) query: &'a [(String, String)],
    pub(super) headers: &'a [(String, String)],
    pub(super) body: Bytes,
    pub(super) content_length: Option<u64>,
    pub(super) range: Option<(u64, u64, u64)>,
    /// Another fragment of the session is in flight (the body was read through, not kept).
    pub(super) busy: bool,
    /// The body is 60 MiB or more, by its Content-Length or, without one, as it was read (it was
    /// not kept).
    pub(super) too_big: bool,
    /// The emulator's own partial store (an injected fault): no alignment rule.
    pub(super) partial: bool,
}

impl Ctx<'_> {
    pub(super) fn header(&self, name: &str) -> Option<String> {
        find_header(self.headers, name)
    }

    pub(super) fn q(&self, name: &str) -> Option<&str> {
        q(self.query, name)
    }
}
