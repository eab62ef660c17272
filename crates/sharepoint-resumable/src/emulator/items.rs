//! Drives and items: resolving paths, createUploadSession, preconditions, item documents.

use super::*;
#[allow(unused_imports)]
use super::{ids::*, records::*, server::*, sessions::*, tokens::*};

// ---------------------------------------------------------------------------------------------
// Graph: drives, items, sessions.

pub(super) fn resolve_drive(shared: &Shared, drive: &DriveRef) -> Result<String, GraphError> {
    let config = &shared.config;
    let lookup = |list: &[(String, String)], id: &str, what: &str| {
        list.iter()
            .find(|(k, _)| k == id)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| GraphError::new(404, "itemNotFound", format!("The {what} '{id}' does not exist.")))
    };
    match drive {
        DriveRef::Id(id) if shared.drives.contains(id) => Ok(id.clone()),
        DriveRef::Id(id) => Err(GraphError::new(404, "itemNotFound", format!("The drive '{id}' does not exist."))),
        DriveRef::Me | DriveRef::User(_) => Ok(config.me_drive.clone()),
        DriveRef::Site(id) => lookup(&config.sites, id, "site"),
        DriveRef::Group(id) => lookup(&config.groups, id, "group"),
    }
}

/// The path an addressed item has (or would have): `items/{id}` must exist; a path below a
/// parent needs the parent to be a folder, and names that decode.
pub(super) fn target_path(store: &Store, drive: &str, target: &Target) -> Result<String, GraphError> {
    match target {
        Target::Item(id) => store.path_of(drive, id).ok_or_else(GraphError::item_not_found),
        Target::Path { parent, raw } => {
            let base = store.path_of(drive, parent).ok_or_else(GraphError::item_not_found)?;
            if let Some(ItemRec { kind: Kind::File { .. }, .. }) = store.item(drive, &base) {
                return Err(GraphError::invalid("The parent item is a file, not a folder."));
            }
            let names = routes::decode_path(raw).map_err(GraphError::invalid)?;
            Ok(join(&base, &names.join("/")))
        }
    }
}

pub(super) fn join(base: &str, rest: &str) -> String {
    if base.is_empty() { rest.to_owned() } else { format!("{base}/{rest}") }
}

/// (parent path, name) of a path.
pub(super) fn split_parent(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

pub(super) fn graph(
    ctx: &Ctx<'_>,
    op: Operation,
    drive: &DriveRef,
    target: &Target,
    who: &str,
) -> Result<Reply, GraphError> {
    let drive = resolve_drive(ctx.shared, drive)?;
    match op {
        Operation::CreateUploadSession => create_session(ctx, &drive, target, who),
        Operation::CommitBySourceUrl => commit_by_source_url(ctx, &drive, target),
        Operation::GetItem => {
            let store = ctx.shared.store();
            let path = target_path(&store, &drive, target)?;
            let item = store.item(&drive, &path).ok_or_else(GraphError::item_not_found)?;
            ok_json(200, &item_doc(&store, &drive, &path, item))
        }
        Operation::DownloadItem => {
            let item = {
                let store = ctx.shared.store();
                let path = target_path(&store, &drive, target)?;
                store.item(&drive, &path).cloned().ok_or_else(GraphError::item_not_found)?
            };
            let Kind::File { blob, mime, .. } = item.kind else {
                return Err(GraphError::invalid("The item is a folder: it has no content to download."));
            };
            let bytes = blob.read().map_err(|e| GraphError::storage(&e))?;
            Response::builder()
                .status(200)
                .header("content-type", mime)
                .body(Full::new(bytes))
                .map_err(|e| GraphError::internal(e.to_string()))
        }
        _ => Err(GraphError::invalid("The emulator does not serve this request.")),
    }
}

pub(super) fn create_session(ctx: &Ctx<'_>, drive: &str, target: &Target, who: &str) -> Result<Reply, GraphError> {
    let config = &ctx.shared.config;
    let input: CreateUploadSessionInput = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        CreateUploadSessionInput::default()
    } else {
        serde_json::from_slice(&ctx.body).map_err(|e| {
            GraphError::invalid(format!("The request body is not a valid createUploadSession body: {e}"))
        })?
    };
    let item = input.item.unwrap_or_default();
    let behaviour = item
        .conflict_behavior
        .clone()
        .or_else(|| ctx.q("@microsoft.graph.conflictBehavior").map(str::to_owned))
        .unwrap_or_else(|| config.default_conflict.clone());
    let conflict = Conflict::parse(&behaviour).ok_or_else(|| {
        GraphError::invalid(format!(
            "Invalid value '{behaviour}' for @microsoft.graph.conflictBehavior: expected fail, replace or rename."
        ))
    })?;
    let mut store = ctx.shared.store();
    store.sweep();
    let (path, replace_id) = match target {
        Target::Item(id) => {
            let path = store.path_of(drive, id).ok_or_else(GraphError::item_not_found)?;
            match store.item(drive, &path) {
                Some(ItemRec { id, kind: Kind::File { .. }, .. }) => (path, Some(id.clone())),
                Some(_) => {
                    return Err(GraphError::invalid("The item is a folder: only a file's content can be replaced."));
                }
                None => return Err(GraphError::item_not_found()),
            }
        }
        Target::Path { .. } => (target_path(&store, drive, target)?, None),
    };
    let name = split_parent(&path).1;
    if let Some(given) = &item.name
        && given != name
    {
        return Err(GraphError::invalid(format!(
            "The name in the request body ({given:?}) does not match the name in the path ({name:?})."
        )));
    }
    if !ctx.shared.storage.accepts_key(&path) {
        return Err(GraphError::invalid("The emulator's directory storage cannot keep this path as a file."));
    }
    check_parents(&store, drive, &path)?;
    let existing = store.item(drive, &path);
    preconditions(ctx, existing)?;
    if replace_id.is_none()
        && let Some(e) = existing
    {
        match (conflict, &e.kind) {
            (Conflict::Rename, _) | (Conflict::Replace, Kind::File { .. }) => {}
            _ => return Err(GraphError::name_exists("The specified item name already exists.")),
        }
    }
    if let (Some(quota), Some(size)) = (config.quota, item.file_size)
        && store.drive_bytes(drive).saturating_add(size) > quota
    {
        return Err(GraphError::quota_exceeded());
    }
    if store.sessions.values().any(|s| s.drive == drive && s.path == path) {
        return Err(GraphError::name_exists("An upload session already exists for this file"));
    }
    let id = random_hex(2);
    let tempauth = random_hex(4);
    let now = Instant::now();
    let session = SessionRec {
        drive: drive.to_owned(),
        path,
        replace_id,
        owner: who.to_owned(),
        conflict,
        defer_commit: input.defer_commit.unwrap_or(false),
        total: item.file_size,
        received: 0,
        content: Content::Discarded,
        quickxor: QuickXor::new(),
        tempauth: tempauth.clone(),
        created: now,
        created_at: Utc::now(),
        expires: after(config.session_idle),
        expires_at: later(config.session_idle),
        busy: false,
        description: item.description.clone(),
        file_system_info: item.file_system_info.clone(),
    };
    let first = match session.total {
        Some(total) if total > 0 && config.ranges_with_end => format!("0-{}", total - 1),
        _ => "0-".into(),
    };
    let doc = UploadSession {
        upload_url: Some(format!("{}/up/{id}?tempauth={tempauth}", ctx.shared.upload_base)),
        expiration_date_time: Some(iso(session.expires_at)),
        next_expected_ranges: vec![first],
    };
    store.sessions.insert(id, session);
    ok_json(200, &doc)
}

/// Every folder on the way to `path` must be a folder (or not exist yet).
pub(super) fn check_parents(store: &Store, drive: &str, path: &str) -> Result<(), GraphError> {
    let mut parent = split_parent(path).0;
    while !parent.is_empty() {
        if let Some(ItemRec { kind: Kind::File { .. }, .. }) = store.item(drive, parent) {
            return Err(GraphError::name_exists(&format!("A file is in the way of the folder {parent:?}.")));
        }
        parent = split_parent(parent).0;
    }
    Ok(())
}

/// `If-Match` and `If-None-Match` against the item's eTag or cTag (412 `resourceModified`).
pub(super) fn preconditions(ctx: &Ctx<'_>, existing: Option<&ItemRec>) -> Result<(), GraphError> {
    let bare = |v: &str| v.trim().trim_start_matches("W/").trim_matches('"').to_owned();
    let matches = |value: &str| match existing {
        None => false,
        Some(_) if value.trim() == "*" => true,
        Some(item) => [e_tag(item), c_tag(item)].iter().any(|t| bare(t) == bare(value)),
    };
    let modified = || GraphError::new(412, "resourceModified", "ETag does not match current item's value");
    if let Some(v) = ctx.header("if-match")
        && !matches(&v)
    {
        return Err(modified());
    }
    if let Some(v) = ctx.header("if-none-match")
        && matches(&v)
    {
        return Err(modified());
    }
    Ok(())
}

pub(super) fn e_tag(item: &ItemRec) -> String {
    format!("\"{{{}}},{}\"", item_guid(&item.id), item.version)
}

pub(super) fn c_tag(item: &ItemRec) -> String {
    format!("\"c:{{{}}},{}\"", item_guid(&item.id), item.version)
}

pub(super) fn mime_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/x-zip-compressed",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "mp4" => "video/mp4",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _ => "application/octet-stream",
    }
}

/// The driveItem document of an item.
pub(super) fn item_doc(store: &Store, drive: &str, path: &str, item: &ItemRec) -> serde_json::Value {
    let (parent, name) = split_parent(path);
    let library = store.libraries.iter().any(|l| l == drive);
    let parent_reference = (!path.is_empty()).then(|| ItemReference {
        drive_type: Some(if library { "documentLibrary" } else { "business" }.to_owned()),
        drive_id: Some(drive.to_owned()),
        id: store.item(drive, parent).map(|p| p.id.clone()),
        path: Some(if parent.is_empty() {
            format!("/drives/{drive}/root:")
        } else {
            format!("/drives/{drive}/root:/{parent}")
        }),
    });
    let inside = |p: &str| path.is_empty() || p.strip_prefix(path).is_some_and(|rest| rest.starts_with('/'));
    let (size, file) = match &item.kind {
        Kind::File { size, quickxor, mime, .. } => (
            *size,
            Some(FileFacet {
                mime_type: Some(mime.clone()),
                hashes: Some(Hashes { quick_xor_hash: Some(STANDARD.encode(quickxor)), ..Hashes::default() }),
            }),
        ),
        Kind::Folder => {
            let total = store
                .items
                .iter()
                .filter(|((d, p), _)| d == drive && !p.is_empty() && inside(p))
                .map(|(_, i)| match i.kind {
                    Kind::File { size, .. } => size,
                    Kind::Folder => 0,
                })
                .sum();
            (total, None)
        }
    };
    let doc = DriveItem {
        id: item.id.clone(),
        name: Some(if path.is_empty() { "root".to_owned() } else { name.to_owned() }),
        size: Some(size),
        e_tag: Some(e_tag(item)),
        c_tag: Some(c_tag(item)),
        description: item.description.clone(),
        created_date_time: Some(item.created.clone()),
        last_modified_date_time: Some(item.modified.clone()),
        file,
        parent_reference,
    };
    let mut value = serde_json::to_value(doc).unwrap_or_default();
    if let Kind::Folder = item.kind {
        let children = store
            .items
            .keys()
            .filter(|(d, p)| d == drive && !p.is_empty() && p != path && split_parent(p).0 == path)
            .count();
        value["folder"] = serde_json::json!({ "childCount": children });
        if path.is_empty() {
            value["root"] = serde_json::json!({});
        }
    }
    value
}
