//! Upload sessions: fragments, commits (also by `sourceUrl`), and storing the finished file.

use super::*;
#[allow(unused_imports)]
use super::{ids::*, items::*, records::*, server::*, tokens::*};

// ---------------------------------------------------------------------------------------------
// The upload host.

pub(super) fn upload(ctx: &Ctx<'_>, op: Operation, id: &str) -> Result<Reply, GraphError> {
    if !ctx.shared.config.allow_auth_on_upload_url && ctx.header("authorization").is_some() {
        return Err(GraphError::unauthenticated(
            "The upload URL is pre-authenticated: requests to it must not carry an Authorization header.",
        ));
    }
    match op {
        Operation::UploadFragment => put_fragment(ctx, id),
        Operation::GetSessionStatus => {
            let mut store = ctx.shared.store();
            let s = open_session(&mut store, ctx, id)?;
            ok_json(200, &s.status(ctx.shared.config.ranges_with_end))
        }
        Operation::CancelSession => {
            let mut store = ctx.shared.store();
            open_session(&mut store, ctx, id)?;
            if let Some(s) = store.sessions.remove(id) {
                s.content.discard();
            }
            Ok(empty(204))
        }
        Operation::CommitSession => {
            if !ctx.body.is_empty() {
                return Err(GraphError::invalid("The commit of an upload session has no body (Content-Length: 0)."));
            }
            let mut store = ctx.shared.store();
            let s = open_session(&mut store, ctx, id)?;
            if !s.complete() {
                return Err(GraphError::invalid("The upload session has not received all the bytes of the file.")
                    .inner("uploadSessionIncomplete"));
            }
            commit(ctx.shared, &mut store, id)
        }
        _ => Err(GraphError::session_not_found()),
    }
}

/// The session of an upload URL, checked: it exists, the `tempauth` is its own and has not
/// expired (24 h from creation), and it has not expired for lack of fragments.
pub(super) fn open_session<'s>(
    store: &'s mut Store,
    ctx: &Ctx<'_>,
    id: &str,
) -> Result<&'s mut SessionRec, GraphError> {
    open_session_with(store, ctx.shared, id, ctx.q("tempauth"))
}

/// [`open_session`] for the session id and `tempauth` of an upload URL.
pub(super) fn open_session_with<'s>(
    store: &'s mut Store,
    shared: &Shared,
    id: &str,
    tempauth: Option<&str>,
) -> Result<&'s mut SessionRec, GraphError> {
    let now = Instant::now();
    let s = store.sessions.get(id).ok_or_else(GraphError::session_not_found)?;
    if tempauth != Some(s.tempauth.as_str()) {
        return Err(GraphError::unauthenticated("The upload URL's token is not valid for this session."));
    }
    if now.duration_since(s.created) >= shared.config.session_max {
        let until = chrono::Duration::from_std(shared.config.session_max)
            .ok()
            .and_then(|d| s.created_at.checked_add_signed(d))
            .unwrap_or(s.created_at);
        let mut e = GraphError::unauthenticated(format!(
            "The access token has expired. It's valid from '{}' and to '{}'.",
            s.created_at.format("%-m/%-d/%Y %-I:%M:%S %p"),
            until.format("%-m/%-d/%Y %-I:%M:%S %p")
        ))
        .inner("expiredToken");
        e.expired = true;
        return Err(e);
    }
    if now >= s.expires {
        if let Some(s) = store.sessions.remove(id) {
            s.content.discard();
        }
        return Err(GraphError::session_not_found());
    }
    store.sessions.get_mut(id).ok_or_else(GraphError::session_not_found)
}

pub(super) fn put_fragment(ctx: &Ctx<'_>, id: &str) -> Result<Reply, GraphError> {
    let config = &ctx.shared.config;
    // The checks, under the lock.
    let (first, last, total, mut hasher, target) = {
        let mut store = ctx.shared.store();
        let s = open_session(&mut store, ctx, id)?;
        if ctx.busy {
            return Err(GraphError::new(
                409,
                "conflict",
                "Optimistic concurrency failure during fragmented upload: another fragment of this session is being uploaded.",
            ));
        }
        let Some(length) = ctx.content_length else {
            return Err(GraphError::new(411, "invalidRequest", "Content-Length is required."));
        };
        if ctx.too_big {
            return Err(GraphError::new(
                413,
                "invalidRequest",
                "The entity size in the request exceeds the maximum limit.",
            )
            .inner("maxFragmentLengthExceeded"));
        }
        let (first, last, total) = ctx.range.ok_or_else(|| {
            GraphError::invalid("The Content-Range header is missing or malformed (expected bytes first-last/total).")
        })?;
        let len = last - first + 1;
        if length != len || ctx.body.len() as u64 != len {
            return Err(GraphError::invalid(format!(
                "Content-Length {length} does not match Content-Range bytes {first}-{last}/{total}."
            )));
        }
        if s.total.is_some_and(|t| t != total) {
            return Err(GraphError::invalid(
                "Declared total size for this fragment is different from that of the upload session.",
            )
            .inner("fragmentLengthMismatch"));
        }
        if first < s.received {
            return Err(GraphError::new(416, "invalidRange", "Uploaded fragment overlaps with existing data.")
                .inner("fragmentOverlap"));
        }
        if first > s.received {
            return Err(
                GraphError::new(416, "invalidRange", "Uploaded fragment is out of order.").inner("fragmentOutOfOrder")
            );
        }
        // Fragments end on the 320 KiB grid (all but the last), so that the rest of a fragment
        // Graph kept only in part can be sent on its own.
        if config.strict_alignment && !ctx.partial && last + 1 < total && !(last + 1).is_multiple_of(FRAGMENT_ALIGN) {
            return Err(GraphError::invalid(format!(
                "A fragment that is not the last must end on a multiple of 320 KiB (327680 bytes); this one has {len} bytes and ends at {}.",
                last + 1
            )));
        }
        let target = match (&s.content, ctx.shared.storage.dir()) {
            (_, _) if config.discard_bodies => None,
            (Content::File(path), _) => Some(path.clone()),
            (_, Some(dir)) => Some(dir.join(".uploads").join(format!("graph-session-{id}"))),
            (_, None) => None,
        };
        (first, last, total, s.quickxor.clone(), target)
    };
    // The bytes are hashed and written outside the lock; the claim on the session keeps other
    // fragments out meanwhile.
    hasher.update(&ctx.body);
    if let Some(path) = &target {
        write_at(path, first, &ctx.body).map_err(|e| GraphError::storage(&e))?;
    }
    let mut store = ctx.shared.store();
    let Some(s) = store.sessions.get_mut(id) else {
        // Cancelled while the fragment was on its way.
        if let Some(path) = target {
            let _ = std::fs::remove_file(path);
        }
        return Err(GraphError::session_not_found());
    };
    s.content = match (std::mem::replace(&mut s.content, Content::Discarded), target) {
        (_, Some(path)) => Content::File(path),
        (Content::Memory(mut parts), None) if !config.discard_bodies => {
            parts.push(ctx.body.clone());
            Content::Memory(parts)
        }
        (_, None) if !config.discard_bodies => Content::Memory(vec![ctx.body.clone()]),
        (_, None) => Content::Discarded,
    };
    s.total = Some(total);
    s.received = last + 1;
    s.quickxor = hasher;
    s.expires = after(config.session_idle);
    s.expires_at = later(config.session_idle);
    if !s.complete() {
        return ok_json(202, &s.status(config.ranges_with_end));
    }
    if s.defer_commit {
        // Every byte is in: the session waits for its commit (POST to the upload URL, or PUT
        // to the item's Graph address with the upload URL as `@microsoft.graph.sourceUrl`).
        return ok_json(202, &s.status(config.ranges_with_end));
    }
    commit(ctx.shared, &mut store, id)
}

/// Writes a fragment at its offset in the session's file (cut back on failure, so the file
/// holds exactly the bytes received).
pub(super) fn write_at(path: &std::path::Path, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    let written = file.seek(SeekFrom::Start(offset)).and_then(|_| file.write_all(bytes));
    if let Err(e) = written {
        let _ = file.set_len(offset);
        return Err(e);
    }
    Ok(())
}

/// Makes the session's bytes the item: where by the conflict behaviour, 201 for a new item and
/// 200 for a replaced one. A name taken meanwhile with `fail` answers 409 and keeps the session.
pub(super) fn commit(shared: &Shared, store: &mut Store, id: &str) -> Result<Reply, GraphError> {
    let s = store.sessions.get(id).ok_or_else(GraphError::session_not_found)?;
    let drive = s.drive.clone();
    let taken = || {
        GraphError::name_exists(
            "Another file exists with the same name as the uploaded session. You can redirect the upload session to use a new filename by calling PUT with the new metadata and @microsoft.graph.sourceUrl attribute.",
        )
    };
    let (path, replaced) = match &s.replace_id {
        Some(rid) => {
            let path = store.path_of(&drive, rid).ok_or_else(GraphError::item_not_found)?;
            (path, Some(rid.clone()))
        }
        None => match store.item(&drive, &s.path) {
            None => (s.path.clone(), None),
            Some(existing) => match (s.conflict, &existing.kind) {
                (Conflict::Replace, Kind::File { .. }) => (s.path.clone(), Some(existing.id.clone())),
                (Conflict::Rename, _) => (free_name(store, &drive, &s.path), None),
                _ => return Err(taken()),
            },
        },
    };
    if check_parents(store, &drive, &path).is_err() {
        return Err(taken());
    }
    store_session(shared, store, id, &drive, path, replaced)
}

/// Makes a session's bytes the file at `path` of its drive (replacing the item `replaced`): 201
/// for a new item, 200 for a replaced one. 507 `quotaLimitReached`, with the session kept, when
/// the drive has no room for it.
pub(super) fn store_session(
    shared: &Shared,
    store: &mut Store,
    id: &str,
    drive: &str,
    path: String,
    replaced: Option<String>,
) -> Result<Reply, GraphError> {
    let received = store.sessions.get(id).ok_or_else(GraphError::session_not_found)?.received;
    if let Some(quota) = shared.config.quota {
        let freed = match replaced.as_deref().and_then(|r| store.path_of(drive, r)).and_then(|p| store.item(drive, &p))
        {
            Some(ItemRec { kind: Kind::File { size, .. }, .. }) => *size,
            _ => 0,
        };
        if store.drive_bytes(drive).saturating_sub(freed).saturating_add(received) > quota {
            return Err(GraphError::quota_exceeded());
        }
    }
    let drive = drive.to_owned();
    let Some(s) = store.sessions.remove(id) else { return Err(GraphError::session_not_found()) };
    let size = s.received;
    let blob = match s.content {
        Content::Memory(parts) => Blob::Parts(parts),
        Content::File(temp) => Blob::File(temp),
        Content::Discarded => Blob::Discarded,
    };
    let blob = shared.storage.promote(&drive, &path, blob).map_err(|e| GraphError::storage(&e))?;
    let library = store.libraries.contains(&drive);
    let stored = library::Stored { blob, size, quickxor: s.quickxor.finish() };
    let stored = library::keep(library, &path, stored).map_err(|e| GraphError::storage(&e))?;
    // The folders on the way exist from now on.
    let now = iso(Utc::now());
    let mut folder = split_parent(&path).0;
    while !folder.is_empty() {
        let key = (drive.clone(), folder.to_owned());
        if !store.items.contains_key(&key) {
            let fid = new_item_id();
            store.ids.insert(fid.clone(), key.clone());
            store.items.insert(
                key,
                ItemRec {
                    id: fid,
                    kind: Kind::Folder,
                    version: 1,
                    created: now.clone(),
                    modified: now.clone(),
                    description: None,
                },
            );
        }
        folder = split_parent(folder).0;
    }
    let key = (drive.clone(), path.clone());
    let previous = store.items.get(&key).cloned();
    let info = s.file_system_info.unwrap_or_default();
    let item = ItemRec {
        id: replaced.clone().unwrap_or_else(new_item_id),
        kind: Kind::File {
            blob: stored.blob,
            size: stored.size,
            quickxor: stored.quickxor,
            mime: mime_type(split_parent(&path).1).into(),
        },
        version: previous.as_ref().map_or(1, |p| p.version + 1),
        created: info
            .created_date_time
            .or_else(|| previous.as_ref().map(|p| p.created.clone()))
            .unwrap_or_else(|| now.clone()),
        modified: info.last_modified_date_time.unwrap_or(now),
        description: s.description.or_else(|| previous.and_then(|p| p.description)),
    };
    store.ids.insert(item.id.clone(), key.clone());
    store.items.insert(key, item);
    let item = store.item(&drive, &path).ok_or_else(GraphError::item_not_found)?;
    ok_json(if replaced.is_some() { 200 } else { 201 }, &item_doc(store, &drive, &path, item))
}

/// The explicit commit: `PUT` to an item's Graph address (bearer token checked by the caller)
/// with `{"@microsoft.graph.sourceUrl": "<uploadUrl>", "name": …,
/// "@microsoft.graph.conflictBehavior": …}`. The session (of this drive, every byte in:
/// deferred, or kept after its last fragment met a taken name or a full drive) becomes the item
/// at that address, which need not be the one it was created for. `conflictBehavior` (the
/// body's, else the query's, else the session's own) and `If-Match`/`If-None-Match` apply to the
/// item at the address; `items/{id}` replaces that file. The upload URL is never repeated in
/// an answer.
pub(super) fn commit_by_source_url(ctx: &Ctx<'_>, drive: &str, target: &Target) -> Result<Reply, GraphError> {
    let doc: serde_json::Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| GraphError::invalid(format!("The request body is not valid JSON: {e}")))?;
    let field = |name: &str| -> Result<Option<&str>, GraphError> {
        match doc.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(GraphError::invalid(format!("The property {name} must be a string."))),
        }
    };
    let source = field("@microsoft.graph.sourceUrl")?.ok_or_else(|| {
        GraphError::invalid(
            "The emulator updates an item by PUT only to commit an upload session: @microsoft.graph.sourceUrl is required.",
        )
    })?;
    let (session_id, tempauth) = upload_url_parts(&ctx.shared.upload_base, source).ok_or_else(|| {
        GraphError::invalid("@microsoft.graph.sourceUrl is not the uploadUrl of an upload session of this service.")
    })?;
    let given_conflict = field("@microsoft.graph.conflictBehavior")?
        .map(str::to_owned)
        .or_else(|| ctx.q("@microsoft.graph.conflictBehavior").map(str::to_owned));
    let conflict = match &given_conflict {
        None => None,
        Some(b) => Some(Conflict::parse(b).ok_or_else(|| {
            GraphError::invalid(format!(
                "Invalid value '{b}' for @microsoft.graph.conflictBehavior: expected fail, replace or rename."
            ))
        })?),
    };
    let name = field("name")?;
    let mut store = ctx.shared.store();
    store.sweep();
    // The URL's own token, checked as the upload host checks it; a wrong or expired one is no
    // session (a 401 from Graph would say the bearer token is wrong).
    let s =
        open_session_with(&mut store, ctx.shared, &session_id, tempauth.as_deref()).map_err(|e| match e.status {
            401 => GraphError::session_not_found(),
            _ => e,
        })?;
    if s.drive != drive {
        return Err(GraphError::invalid("The upload session belongs to another drive."));
    }
    if !s.complete() {
        return Err(GraphError::invalid("The upload session has not received all the bytes of the file.")
            .inner("uploadSessionIncomplete"));
    }
    let conflict = conflict.unwrap_or(s.conflict);
    // `name`, when given, is the name in the address.
    let same_name = |path: &str| match name {
        Some(given) if given != split_parent(path).1 => Err(GraphError::invalid(format!(
            "The name in the request body ({given:?}) does not match the name in the path ({:?}).",
            split_parent(path).1
        ))),
        _ => Ok(()),
    };
    let (path, replaced) = match target {
        Target::Item(item_id) => {
            let path = store.path_of(drive, item_id).ok_or_else(GraphError::item_not_found)?;
            same_name(&path)?;
            let existing = store.item(drive, &path).ok_or_else(GraphError::item_not_found)?;
            if !matches!(existing.kind, Kind::File { .. }) {
                return Err(GraphError::invalid("The item is a folder: only a file's content can be replaced."));
            }
            preconditions(ctx, Some(existing))?;
            (path, Some(existing.id.clone()))
        }
        Target::Path { .. } => {
            let path = target_path(&store, drive, target)?;
            same_name(&path)?;
            if !ctx.shared.storage.accepts_key(&path) {
                return Err(GraphError::invalid("The emulator's directory storage cannot keep this path as a file."));
            }
            check_parents(&store, drive, &path)?;
            let existing = store.item(drive, &path);
            preconditions(ctx, existing)?;
            match existing {
                None => (path, None),
                Some(e) => match (conflict, &e.kind) {
                    (Conflict::Replace, Kind::File { .. }) => (path, Some(e.id.clone())),
                    (Conflict::Rename, _) => (free_name(&store, drive, &path), None),
                    _ => return Err(GraphError::name_exists("The specified item name already exists.")),
                },
            }
        }
    };
    store_session(ctx.shared, &mut store, &session_id, drive, path, replaced)
}

/// The session id and `tempauth` of one of this emulator's upload URLs.
pub(super) fn upload_url_parts(upload_base: &str, url: &str) -> Option<(String, Option<String>)> {
    let rest = url.strip_prefix(upload_base)?.strip_prefix("/up/")?;
    let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
    if id.is_empty() || id.contains('/') {
        return None;
    }
    let tempauth = q(&parse_query(query), "tempauth").map(str::to_owned);
    Some((id.to_owned(), tempauth))
}

/// `name 1.ext`, `name 2.ext`… : the first name not taken next to `path`.
pub(super) fn free_name(store: &Store, drive: &str, path: &str) -> String {
    let (parent, name) = split_parent(path);
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    (1u64..)
        .map(|n| join(parent, &format!("{stem} {n}{ext}")))
        .find(|candidate| store.item(drive, candidate).is_none())
        .unwrap_or_else(|| path.to_owned())
}
