//! Files: `Files/add`, content, and the chunked upload (start, continue, finish, cancel, status).

#[allow(unused_imports)]
use super::super::{ids::*, items::*, records::*, server::*, sessions::*, tokens::*};
use super::*;
#[allow(unused_imports)]
use super::{calls::*, errors::*, replies::*, state::*};

/// Who holds a lock on (drive, path), if a live session does.
pub(super) fn lock_holder(store: &mut Store, drive: &str, path: &str, except: Option<&str>) -> Option<String> {
    store.rest.sweep();
    store
        .rest
        .sessions
        .iter()
        .find(|(id, s)| s.drive == drive && s.path == path && Some(id.as_str()) != except)
        .map(|(_, s)| s.owner.clone())
}

pub(super) fn add_file(
    req: &Req<'_>,
    folder: &str,
    name: &str,
    overwrite: bool,
    body: Bytes,
) -> Result<Reply, SpError> {
    let config = &req.shared.config;
    let folder_path = library_path(&req.site, folder).ok_or_else(SpError::folder_not_found)?;
    {
        let store = req.shared.store();
        match store.item(&req.drive, &folder_path) {
            Some(ItemRec { kind: Kind::Folder, .. }) => {}
            _ => return Err(SpError::folder_not_found()),
        }
    }
    // A name, or a path that ends in the folder.
    let name = if name.contains('/') {
        let path = library_path(&req.site, name).ok_or_else(SpError::bad_name)?;
        let (parent, leaf) = split_parent(&path);
        if parent != folder_path {
            return Err(SpError::bad_name());
        }
        leaf.to_owned()
    } else {
        name.to_owned()
    };
    if !valid_name(&name) {
        return Err(SpError::bad_name());
    }
    let path = join(&folder_path, &name);
    let url = server_relative(&req.site, &path);
    if url.chars().count() > MAX_PATH {
        return Err(SpError::new(
            400,
            &format!("-2130575245, {SP_EXCEPTION}"),
            "The specified file or folder name is too long. The URL path for all files and folders must be 400 characters or less (and no more than 255 characters for any single file or folder name in the URL). Please enter a shorter file or folder name.",
        ));
    }
    if !req.shared.storage.accepts_key(&path) {
        return Err(SpError::bad_name());
    }
    {
        let mut store = req.shared.store();
        match store.item(&req.drive, &path) {
            Some(ItemRec { kind: Kind::Folder, .. }) => {
                return Err(SpError::new(
                    400,
                    &format!("-2130575257, {SP_EXCEPTION}"),
                    format!("A folder with the name {url} already exists."),
                ));
            }
            Some(existing) if !overwrite => {
                return Err(SpError::new(
                    400,
                    &format!("-2130575257, {SP_EXCEPTION}"),
                    format!(
                        "A file with the name {url} already exists. It was last modified by {} on {}.",
                        req.user,
                        sp_time(&existing.modified)
                    ),
                ));
            }
            _ => {}
        }
        if let Some(holder) = lock_holder(&mut store, &req.drive, &path, None) {
            return Err(SpError::locked(&url, &holder));
        }
    }
    // The bytes: kept beside, then made the file (a rename in directory mode).
    let mut quickxor = QuickXor::new();
    quickxor.update(&body);
    let size = body.len() as u64;
    let blob = if config.discard_bodies {
        Blob::Discarded
    } else {
        let kept =
            req.shared.storage.keep(&format!("rest-add-{}", unique()), &body).map_err(|e| SpError::storage(&e))?;
        req.shared.storage.promote(&req.drive, &path, kept).map_err(|e| SpError::storage(&e))?
    };
    let mut store = req.shared.store();
    let created = store.item(&req.drive, &path).is_none();
    let stored = super::super::library::Stored { blob, size, quickxor: quickxor.finish() };
    let library = store.libraries.contains(&req.drive);
    let stored = super::super::library::keep(library, &path, stored).map_err(|e| SpError::storage(&e))?;
    let id = put_file(&mut store, &req.drive, &path, stored);
    if created && size == 0 {
        store.rest.stubs.insert(id);
    } else {
        store.rest.stubs.remove(&id);
    }
    let item = store.item(&req.drive, &path).ok_or_else(SpError::folder_not_found)?;
    json_reply(req.flavour, &file_doc(req.flavour, &req.web, &req.site, &path, item))
}

/// Makes `blob` the content of the file at `path` (a new item, or the same item with a new
/// version); the folders on the way exist from now on. Returns the item id.
pub(super) fn put_file(store: &mut Store, drive: &str, path: &str, stored: super::super::library::Stored) -> String {
    let super::super::library::Stored { blob, size, quickxor } = stored;
    let now = super::iso(Utc::now());
    let mut folder = split_parent(path).0;
    while !folder.is_empty() {
        let key = (drive.to_owned(), folder.to_owned());
        if !store.items.contains_key(&key) {
            let fid = new_item_id();
            store.ids.insert(fid.clone(), key.clone());
            let rec = ItemRec {
                id: fid,
                kind: Kind::Folder,
                version: 1,
                created: now.clone(),
                modified: now.clone(),
                description: None,
            };
            store.items.insert(key, rec);
        }
        folder = split_parent(folder).0;
    }
    let key = (drive.to_owned(), path.to_owned());
    let previous = store.items.get(&key).cloned();
    let item = ItemRec {
        id: previous.as_ref().map_or_else(new_item_id, |p| p.id.clone()),
        kind: Kind::File { blob, size, quickxor, mime: mime_type(split_parent(path).1).into() },
        version: previous.as_ref().map_or(1, |p| p.version + 1),
        created: previous.as_ref().map_or_else(|| now.clone(), |p| p.created.clone()),
        modified: now,
        description: previous.and_then(|p| p.description),
    };
    let id = item.id.clone();
    store.ids.insert(id.clone(), key.clone());
    store.items.insert(key, item);
    id
}

/// Where a session keeps its bytes in directory mode.
pub(super) fn session_file(req: &Req<'_>, upload_id: &str) -> Option<std::path::PathBuf> {
    let dir = req.shared.storage.dir()?;
    (!req.shared.config.discard_bodies).then(|| dir.join(".uploads").join(format!("rest-{upload_id}-{}", unique())))
}

pub(super) fn start_upload(req: &Req<'_>, file: &FileRef, upload_id: &str, body: Bytes) -> Result<Reply, SpError> {
    let config = &req.shared.config;
    let path = {
        let mut store = req.shared.store();
        let path = existing_file(req, &store, file)?;
        if let Some(holder) = lock_holder(&mut store, &req.drive, &path, Some(upload_id)) {
            return Err(SpError::locked(&server_relative(&req.site, &path), &holder));
        }
        if let Some(s) = store.rest.sessions.get(upload_id)
            && (s.drive != req.drive || s.path != path)
        {
            return Err(SpError::new(
                400,
                "-2147024809, System.ArgumentException",
                "The upload session belongs to another file.",
            ));
        }
        path
    };
    // The first chunk, written outside the lock.
    let target = session_file(req, upload_id);
    if let Some(p) = &target {
        write_at(p, 0, &body).map_err(|e| SpError::storage(&e))?;
    }
    let mut quickxor = QuickXor::new();
    quickxor.update(&body);
    let content = match target {
        Some(p) => Content::File(p),
        None if config.discard_bodies => Content::Discarded,
        None => Content::Memory(vec![body.clone()]),
    };
    let mut store = req.shared.store();
    let session = RestSession {
        drive: req.drive.clone(),
        path,
        owner: req.user.clone(),
        received: body.len() as u64,
        chunks: 1,
        content,
        quickxor,
        expires: after(config.rest_session_idle),
        expires_at: later(config.rest_session_idle),
        // Still claimed by this request if it restarts a session.
        busy: store.rest.sessions.get(upload_id).is_some_and(|s| s.busy),
    };
    let received = session.received;
    // The same uploadId starts over with the new body.
    if let Some(old) = store.rest.sessions.insert(upload_id.to_owned(), session) {
        old.content.discard();
    }
    json_reply(req.flavour, &int64(req.flavour, &req.web, "StartUpload", received))
}

/// The live session `upload_id` on the file at `path`.
pub(super) fn live_session<'s>(
    store: &'s mut Store,
    drive: &str,
    path: &str,
    upload_id: &str,
) -> Result<&'s mut RestSession, SpError> {
    store.rest.sweep();
    match store.rest.sessions.get_mut(upload_id) {
        Some(s) if s.drive == drive && s.path == path => Ok(s),
        _ => Err(SpError::session_not_found()),
    }
}

pub(super) fn chunk(
    req: &Req<'_>,
    op: Operation,
    file: &FileRef,
    upload_id: &str,
    offset: u64,
    body: Bytes,
) -> Result<Reply, SpError> {
    let config = &req.shared.config;
    let (path, target) = {
        let mut store = req.shared.store();
        let path = resolve_file(&store, &req.site, &req.drive, file)?;
        let s = live_session(&mut store, &req.drive, &path, upload_id)?;
        if offset != s.received {
            return Err(SpError::bad_offset());
        }
        let target = match &s.content {
            Content::File(p) => Some(p.clone()),
            _ => None,
        };
        (path, target)
    };
    // Written outside the lock; the claim keeps other chunks of the session out meanwhile.
    if let Some(p) = &target {
        write_at(p, offset, &body).map_err(|e| SpError::storage(&e))?;
    }
    let mut store = req.shared.store();
    let Some(s) = store.rest.sessions.get_mut(upload_id) else {
        // Cancelled while the chunk was on its way.
        return Err(SpError::session_not_found());
    };
    if let Content::Memory(parts) = &mut s.content
        && !config.discard_bodies
    {
        parts.push(body.clone());
    }
    s.quickxor.update(&body);
    s.received += body.len() as u64;
    s.chunks += 1;
    s.expires = after(config.rest_session_idle);
    s.expires_at = later(config.rest_session_idle);
    if op == Operation::ContinueUpload {
        let received = s.received;
        return json_reply(req.flavour, &int64(req.flavour, &req.web, "ContinueUpload", received));
    }
    // FinishUpload: the session's bytes become the file.
    let Some(s) = store.rest.sessions.remove(upload_id) else { return Err(SpError::session_not_found()) };
    let blob = match s.content {
        Content::Memory(parts) => Blob::Parts(parts),
        Content::File(p) => Blob::File(p),
        Content::Discarded => Blob::Discarded,
    };
    let blob = req.shared.storage.promote(&req.drive, &path, blob).map_err(|e| SpError::storage(&e))?;
    let stored = super::super::library::Stored { blob, size: s.received, quickxor: s.quickxor.finish() };
    let library = store.libraries.contains(&req.drive);
    let stored = super::super::library::keep(library, &path, stored).map_err(|e| SpError::storage(&e))?;
    let id = put_file(&mut store, &req.drive, &path, stored);
    store.rest.stubs.remove(&id);
    let item = store.item(&req.drive, &path).ok_or_else(SpError::folder_not_found)?;
    json_reply(req.flavour, &file_doc(req.flavour, &req.web, &req.site, &path, item))
}

pub(super) fn cancel_upload(req: &Req<'_>, file: &FileRef, upload_id: &str) -> Result<Reply, SpError> {
    let mut store = req.shared.store();
    let path = resolve_file(&store, &req.site, &req.drive, file)?;
    live_session(&mut store, &req.drive, &path, upload_id)?;
    if let Some(s) = store.rest.sessions.remove(upload_id) {
        s.content.discard();
    }
    // A stub Files/add made for this upload, never written since, goes too.
    let key = (req.drive.clone(), path);
    let stub = store.items.get(&key).filter(|item| {
        store.rest.stubs.contains(&item.id)
            && item.version == 1
            && matches!(item.kind, Kind::File { size: 0, .. })
            && !store.rest.sessions.values().any(|s| s.drive == key.0 && s.path == key.1)
    });
    if let Some(item) = stub.cloned() {
        store.rest.stubs.remove(&item.id);
        store.ids.remove(&item.id);
        store.items.remove(&key);
        if let Kind::File { blob, .. } = item.kind {
            blob.remove();
        }
    }
    let doc = match req.flavour {
        Flavour::Verbose => json!({ "d": { "CancelUpload": null } }),
        _ => json!({ "odata.null": true }),
    };
    json_reply(req.flavour, &doc)
}

pub(super) fn upload_status(req: &Req<'_>, file: &FileRef, upload_id: &str) -> Result<Reply, SpError> {
    let mut store = req.shared.store();
    let path = resolve_file(&store, &req.site, &req.drive, file)?;
    let s = live_session(&mut store, &req.drive, &path, upload_id)?;
    let fields = json!({
        "ExpectedContentRange": s.received.to_string(),
        "ExpirationDateTime": s.expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "UploadId": upload_id,
    });
    let Json::Object(fields) = fields else { return Err(SpError::internal("unreachable")) };
    let doc = entity(
        req.flavour,
        "SP.Utilities.UploadStatus",
        &format!("{}/_api/$metadata#SP.Utilities.UploadStatus", req.web),
        None,
        fields,
    );
    let doc = match (req.flavour, doc) {
        (Flavour::Minimal, Json::Object(mut o)) => {
            o.remove("odata.type");
            Json::Object(o)
        }
        (_, d) => d,
    };
    json_reply(req.flavour, &doc)
}
