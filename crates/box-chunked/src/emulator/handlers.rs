//! The Box operations the emulator serves: upload sessions (create, parts, list, commit, abort)
//! and the plain upload.

use super::*;

pub(super) fn check_name(name: &str) -> Result<(), BoxFault> {
    crate::client::validate_file_name(name).map_err(|e| BoxFault::new(400, "item_name_invalid", &e.to_string()))
}

pub(super) fn name_in_use(store: &Store, folder_id: &str, name: &str, except: Option<&str>) -> Result<(), BoxFault> {
    match store.files.iter().find(|(id, f)| f.folder_id == folder_id && f.name == name && Some(id.as_str()) != except) {
        Some((id, f)) => Err(BoxFault::new(409, "item_name_in_use", "Item with the same name already exists")
            .context(serde_json::json!({"conflicts": [file_doc(id, f)]}))),
        None => Ok(()),
    }
}

pub(super) fn folder_exists(ctx: &Ctx<'_>, folder_id: &str) -> bool {
    folder_id == "0" || ctx.shared.config.folders.iter().any(|f| f == folder_id)
}

pub(super) fn new_id(store: &mut Store, bytes: usize) -> String {
    store.counter += 1;
    let digest =
        Digests::compute(Hashes::SHA1, format!("{}#{}", store.counter, upload_core::emulator::unique()).as_bytes());
    hex(&digest.sha1.unwrap_or_default())[..bytes * 2].to_ascii_uppercase()
}

pub(super) fn part_size_for(config: &EmulatorConfig, file_size: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    config.part_size.unwrap_or(match file_size {
        s if s < 256 * MIB => 8 * MIB,
        s if s < 4096 * MIB => 32 * MIB,
        _ => 64 * MIB,
    })
}

pub(super) fn session_doc(shared: &Shared, id: &str, s: &SessionRec) -> UploadSession {
    let base = format!("{}/files/upload_sessions/{id}", shared.upload_base);
    UploadSession {
        id: id.to_owned(),
        kind: Some("upload_session".into()),
        session_expires_at: Some(s.expires_at.clone()),
        part_size: s.part_size,
        total_parts: s.total_parts,
        num_parts_processed: Some(u32::try_from(s.parts.len()).unwrap_or(u32::MAX)),
        session_endpoints: Some(SessionEndpoints {
            upload_part: Some(base.clone()),
            commit: Some(format!("{base}/commit")),
            abort: Some(base.clone()),
            list_parts: Some(format!("{base}/parts")),
            status: Some(base.clone()),
            log_event: Some(format!("{base}/log")),
        }),
    }
}

pub(super) fn file_doc(id: &str, f: &FileRec) -> File {
    File {
        kind: Some("file".into()),
        id: id.to_owned(),
        etag: Some((f.version - 1).to_string()),
        sequence_id: Some((f.version - 1).to_string()),
        name: Some(f.name.clone()),
        size: Some(f.size),
        sha1: Some(hex(&f.sha1)),
        description: f.description.clone(),
        content_modified_at: f.content_modified_at.clone(),
        parent: Some(ItemRef { kind: Some("folder".into()), id: f.folder_id.clone(), ..ItemRef::default() }),
        file_version: Some(FileVersion {
            kind: Some("file_version".into()),
            id: format!("{id}{:04}", f.version),
            sha1: Some(hex(&f.sha1)),
        }),
    }
}

pub(super) fn create_session(ctx: &Ctx<'_>, file_id: Option<String>) -> Result<Reply, BoxFault> {
    let body: serde_json::Value = ctx.json()?;
    let file_size = match body.get("file_size") {
        None => return Err(BoxFault::new(400, "missing_file_size", "file_size is required")),
        Some(v) => v.as_u64().ok_or_else(|| BoxFault::new(400, "invalid_file_size", "file_size is not valid"))?,
    };
    let name = body.get("file_name").and_then(|v| v.as_str()).map(str::to_owned);
    let mut store = ctx.shared.store();
    let target = match file_id {
        None => {
            let folder_id = match body.get("folder_id") {
                None => return Err(BoxFault::new(400, "missing_destination", "folder_id is required")),
                Some(v) => v
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| BoxFault::new(400, "invalid_folder_id", "folder_id is not valid"))?,
            };
            let name = name.ok_or_else(|| BoxFault::new(400, "missing_file_name", "file_name is required"))?;
            check_name(&name)?;
            if !folder_exists(ctx, &folder_id) {
                return Err(BoxFault::new(404, "invalid_parameter", "The folder does not exist"));
            }
            name_in_use(&store, &folder_id, &name, None)?;
            if !ctx.shared.storage.accepts_key(&name) {
                return Err(BoxFault::new(
                    400,
                    "item_name_invalid",
                    "The emulator's directory storage cannot keep this name.",
                ));
            }
            Target::Folder { folder_id, name }
        }
        Some(file_id) => {
            let existing = store.files.get(&file_id).ok_or_else(BoxFault::not_found)?;
            if let Some(n) = &name {
                check_name(n)?;
                name_in_use(&store, &existing.folder_id, n, Some(&file_id))?;
            }
            Target::Version { file_id, new_name: name }
        }
    };
    if file_size < ctx.shared.config.min_chunked {
        return Err(BoxFault::new(
            400,
            "file_size_too_small",
            &format!("file_size is below the minimum of {} bytes for a chunked upload", ctx.shared.config.min_chunked),
        ));
    }
    let part_size = part_size_for(&ctx.shared.config, file_size);
    let total_parts = u32::try_from(file_size.div_ceil(part_size).max(1)).unwrap_or(u32::MAX);
    let lifetime = ctx.shared.config.session_lifetime;
    let expires_at = (chrono::Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or_default())
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let id = new_id(&mut store, 16);
    let rec = SessionRec {
        owner: ctx.user.clone(),
        file_size,
        part_size,
        total_parts,
        target,
        parts: BTreeMap::new(),
        expires: Instant::now() + lifetime,
        expires_at,
        commits: 0,
        state: SessionState::Open,
    };
    let doc = session_doc(ctx.shared, &id, &rec);
    prune_sessions(&mut store, lifetime);
    store.sessions.insert(id, rec);
    ok_json(201, &doc)
}

/// Forgets the sessions that expired longer ago than they lived (until then their URLs answer
/// 410 `session_expired`, as Box's do), with their parts: the sessions kept are those of a
/// bounded span of time.
pub(super) fn prune_sessions(store: &mut Store, lifetime: Duration) {
    let now = Instant::now();
    let gone: Vec<String> = store
        .sessions
        .iter()
        .filter(|(_, s)| s.expires.checked_add(lifetime).is_some_and(|forget| now >= forget))
        .map(|(id, _)| id.clone())
        .collect();
    for id in gone {
        if let Some(s) = store.sessions.remove(&id) {
            s.parts.values().for_each(|p| p.blob.remove());
        }
    }
}

/// The session of the request, checked: well-formed id, exists, not expired, the caller's.
pub(super) fn session<'s>(store: &'s Store, ctx: &Ctx<'_>) -> Result<&'s SessionRec, BoxFault> {
    if ctx.id.len() != 32 || !ctx.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BoxFault::new(400, "invalid_upload_session_id", "The upload session id is not valid"));
    }
    let s = store.sessions.get(&ctx.id).ok_or_else(BoxFault::not_found)?;
    if Instant::now() >= s.expires {
        return Err(BoxFault::new(410, "session_expired", "The upload session has expired"));
    }
    if s.owner != ctx.user {
        return Err(BoxFault::new(403, "forbidden", "Only the user who created the upload session may use it"));
    }
    Ok(s)
}

pub(super) fn part_doc(offset: u64, p: &StoredPart) -> UploadPart {
    UploadPart { part_id: p.part_id.clone(), offset, size: p.size, sha1: Some(hex(&p.sha1)) }
}

pub(super) fn digest_value(value: Option<String>) -> Result<[u8; 20], BoxFault> {
    let value = value.ok_or_else(|| BoxFault::new(400, "bad_request", "The Digest header is required"))?;
    let b64 = value
        .split(',')
        .find_map(|item| {
            let (alg, v) = item.trim().split_once('=')?;
            alg.trim().eq_ignore_ascii_case("sha").then(|| v.trim().to_owned())
        })
        .ok_or_else(|| BoxFault::new(400, "bad_request", "The Digest header must carry sha=<base64 SHA-1>"))?;
    STANDARD
        .decode(b64)
        .ok()
        .and_then(|b| <[u8; 20]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| BoxFault::new(400, "bad_request", "The sha digest is not the base64 of 20 bytes"))
}

/// Where a part goes, from its headers: its range on the session's part grid and the SHA-1 its
/// `Digest` names.
pub(super) struct PartRange {
    pub(super) first: u64,
    pub(super) last: u64,
    /// Its length, which its body must have.
    pub(super) len: u64,
    pub(super) want_sha1: [u8; 20],
}

/// The checks of a part upload that need no body: `Content-Range` and `Digest` well-formed, the
/// session the caller's and open, the range one part of its grid.
pub(super) fn part_range(ctx: &Ctx<'_>) -> Result<PartRange, BoxFault> {
    let (first, last, total) =
        ctx.header("content-range").as_deref().and_then(request::content_range).ok_or_else(|| {
            BoxFault::new(416, "requested_range_not_satisfiable", "Content-Range is missing or malformed")
        })?;
    let want_sha1 = digest_value(ctx.header("digest"))?;
    let (part_size, file_size) = {
        let store = ctx.shared.store();
        let s = session(&store, ctx)?;
        if !matches!(s.state, SessionState::Open) {
            return Err(BoxFault::new(400, "bad_request", "The upload session is committed"));
        }
        (s.part_size, s.file_size)
    };
    let expected_last = first.saturating_add(part_size).min(file_size).saturating_sub(1);
    if total != file_size || !first.is_multiple_of(part_size) || first >= file_size.max(1) || last != expected_last {
        return Err(BoxFault::new(
            416,
            "requested_range_not_satisfiable",
            &format!("The range does not fit the session: parts of {part_size} bytes of a {file_size}-byte file"),
        ));
    }
    Ok(PartRange { first, last, len: last - first + 1, want_sha1 })
}

/// Upload part. Its headers were checked before the body was read ([`part_range`]); they are
/// checked again, as the session may have been committed or aborted meanwhile.
pub(super) fn upload_part(ctx: &Ctx<'_>) -> Result<Reply, BoxFault> {
    let PartRange { first, last, len, want_sha1 } = part_range(ctx)?;
    let (got_len, sha1) = match ctx.discarded {
        Some(d) => (d.len, d.sha1.unwrap_or_default()),
        None => (ctx.body.len() as u64, Digests::compute(Hashes::SHA1, &ctx.body).sha1.unwrap_or_default()),
    };
    if got_len != len {
        return Err(BoxFault::new(
            416,
            "requested_range_not_satisfiable",
            "The body length does not match Content-Range",
        ));
    }
    if sha1 != want_sha1 {
        return Err(BoxFault::new(400, "bad_digest", "The digest of the part does not match its content"));
    }
    let blob = match ctx.discarded {
        Some(_) => Blob::Discarded,
        None => {
            let name = format!("{}-{first}-{}", ctx.id, upload_core::emulator::unique());
            ctx.shared.storage.keep(&name, &ctx.body).map_err(|e| BoxFault::storage(&e))?
        }
    };
    let mut store = ctx.shared.store();
    let part_id = new_id(&mut store, 4);
    let Some(s) = store.sessions.get_mut(&ctx.id).filter(|s| matches!(s.state, SessionState::Open)) else {
        blob.remove();
        return Err(BoxFault::not_found());
    };
    // Parts are immutable: any overlap with a stored range is refused.
    let overlap = s
        .parts
        .range(..=last)
        .next_back()
        .filter(|(offset, p)| **offset + p.size > first)
        .map(|(offset, p)| part_doc(*offset, p));
    if let Some(existing) = overlap {
        blob.remove();
        return Err(BoxFault::new(
            416,
            "range_overlaps_existing_part",
            &format!(
                "Part overlaps with previously uploaded part: {}",
                serde_json::to_string(&existing).unwrap_or_default()
            ),
        )
        .context(serde_json::json!({ "conflicting_part": existing })));
    }
    let part = StoredPart { part_id, size: len, sha1, blob };
    let doc = part_doc(first, &part);
    s.parts.insert(first, part);
    ok_json(200, &UploadedPart { part: doc })
}

pub(super) fn list_parts(ctx: &Ctx<'_>) -> Result<Reply, BoxFault> {
    let offset: u64 = match ctx.q("offset") {
        None => 0,
        Some(v) => v.parse().map_err(|_| BoxFault::new(400, "bad_request", "offset must be a number"))?,
    };
    if offset > 10_000 {
        return Err(BoxFault::new(400, "bad_request", "offset must not exceed 10000"));
    }
    let limit: u64 = match ctx.q("limit") {
        None => 1000,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(BoxFault::new(400, "bad_request", "limit must be between 1 and 1000")),
        },
    };
    let store = ctx.shared.store();
    let s = session(&store, ctx)?;
    let entries: Vec<UploadPart> = s
        .parts
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(1000))
        .map(|(o, p)| part_doc(*o, p))
        .collect();
    ok_json(
        200,
        &UploadParts { total_count: Some(s.parts.len() as u64), limit: Some(limit), offset: Some(offset), entries },
    )
}

pub(super) fn commit(ctx: &Ctx<'_>) -> Result<Reply, BoxFault> {
    let want_sha1 = digest_value(ctx.header("digest"))?;
    let input: CommitInput = ctx.json()?;
    let mut store = ctx.shared.store();
    let s = session(&store, ctx)?;
    if let SessionState::Committed(file_id) = &s.state {
        // A repeated commit (its first answer lost) answers with the file again.
        let file = store.files.get(file_id).ok_or_else(BoxFault::not_found)?;
        return ok_json(201, &Files { total_count: Some(1), entries: vec![file_doc(file_id, file)] });
    }
    // The listed parts must be the stored ones and cover the file, in order.
    let mismatch = |p: &UploadPart| {
        BoxFault::new(
            400,
            "parts_mismatch",
            &format!("No matching part found on server for {}", serde_json::to_string(p).unwrap_or_default()),
        )
    };
    let mut next = 0u64;
    let mut blobs = Vec::with_capacity(input.parts.len());
    for p in &input.parts {
        let stored = s.parts.get(&p.offset).filter(|sp| sp.part_id == p.part_id && sp.size == p.size);
        let Some(stored) = stored else { return Err(mismatch(p)) };
        if p.offset != next || p.sha1.as_deref().is_some_and(|h| !h.eq_ignore_ascii_case(&hex(&stored.sha1))) {
            return Err(mismatch(p));
        }
        next = p.offset + p.size;
        blobs.push(stored.blob.clone());
    }
    if next != s.file_size || (input.parts.is_empty() && s.file_size > 0) {
        return Err(BoxFault::new(400, "parts_mismatch", "The parts do not cover the whole file"));
    }
    let (target, commits) = (s.target.clone(), s.commits);
    // Box processes parts after they arrive: the first commits are answered 202.
    if commits < ctx.shared.config.processing_commits {
        if let Some(s) = store.sessions.get_mut(&ctx.id) {
            s.commits += 1;
        }
        return Response::builder()
            .status(202)
            .header("retry-after", ctx.shared.config.processing_retry_after.to_string())
            .body(Full::new(Bytes::new()))
            .map_err(|e| BoxFault::new(500, "internal_server_error", &e.to_string()));
    }
    // The whole-file SHA-1: combined from the parts' bytes (discarded parts cannot be checked).
    let discarded = blobs.iter().any(|b| matches!(b, Blob::Discarded));
    let actual = if discarded {
        want_sha1
    } else {
        let mut hasher = upload_core::hash::WholeHasher::new(Hashes::SHA1);
        for b in &blobs {
            hasher.update(&b.read().map_err(|e| BoxFault::storage(&e))?);
        }
        hasher.finish().sha1.unwrap_or_default()
    };
    if actual != want_sha1 {
        return Err(BoxFault::new(
            400,
            "digest_mismatch",
            &format!(
                "File digest was incorrect. Actual: {} Expected: {}",
                STANDARD.encode(actual),
                STANDARD.encode(want_sha1)
            ),
        ));
    }
    let attributes = input.attributes.unwrap_or_default();
    let attr = |k: &str| attributes.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let (file_id, folder_id, name, version) = match &target {
        Target::Folder { folder_id, name } => {
            name_in_use(&store, folder_id, name, None)?;
            (new_file_id(&mut store), folder_id.clone(), name.clone(), 1)
        }
        Target::Version { file_id, new_name } => {
            let existing = store.files.get(file_id).ok_or_else(BoxFault::not_found)?;
            if let Some(etag) = ctx.header("if-match")
                && etag.trim_matches('"') != (existing.version - 1).to_string()
            {
                return Err(BoxFault::new(
                    412,
                    "precondition_failed",
                    "The resource has been modified. Please retrieve the resource again and retry",
                ));
            }
            let name = new_name.clone().unwrap_or_else(|| existing.name.clone());
            (file_id.clone(), existing.folder_id.clone(), name, existing.version + 1)
        }
    };
    let refs: Vec<&Blob> = blobs.iter().collect();
    let blob = ctx.shared.storage.assemble(&folder_id, &name, &refs).map_err(|e| BoxFault::storage(&e))?;
    let size = next;
    let rec = FileRec {
        folder_id,
        name,
        blob,
        size,
        sha1: want_sha1,
        version,
        description: attr("description"),
        content_modified_at: attr("content_modified_at"),
    };
    let doc = file_doc(&file_id, &rec);
    if let Some(s) = store.sessions.get_mut(&ctx.id) {
        s.state = SessionState::Committed(file_id.clone());
        // The bytes are the file's now; the parts stay listed (a resume from a state saved
        // before the commit's answer finds them all and commits again, which answers the file).
        for p in s.parts.values_mut() {
            p.blob.remove();
            p.blob = Blob::Discarded;
        }
    }
    store.files.insert(file_id, rec);
    ok_json(201, &Files { total_count: Some(1), entries: vec![doc] })
}

pub(super) fn new_file_id(store: &mut Store) -> String {
    store.counter += 1;
    format!("{}", 1_000_000_000_000 + store.counter * 7919)
}

pub(super) fn abort(ctx: &Ctx<'_>) -> Result<Reply, BoxFault> {
    let mut store = ctx.shared.store();
    session(&store, ctx)?;
    if let Some(s) = store.sessions.remove(&ctx.id) {
        for p in s.parts.into_values() {
            p.blob.remove();
        }
    }
    Ok(empty(204))
}

pub(super) fn plain_upload(ctx: &Ctx<'_>, file_id: Option<String>) -> Result<Reply, BoxFault> {
    let content_type = ctx.header("content-type").unwrap_or_default();
    let fields = form::parse(&content_type, &ctx.body).ok_or_else(|| {
        BoxFault::new(400, "bad_request", "The body is not multipart/form-data with attributes and file")
    })?;
    let attributes: serde_json::Value = fields
        .iter()
        .find(|(name, _)| name == "attributes")
        .and_then(|(_, v)| serde_json::from_slice(v).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let content = fields
        .into_iter()
        .find(|(name, _)| name == "file")
        .map(|(_, v)| v)
        .ok_or_else(|| BoxFault::new(400, "bad_request", "The file field is missing"))?;
    if content.len() as u64 > request::PLAIN_FILE_MAX {
        return Err(request::too_large());
    }
    let sha1 = Digests::compute(Hashes::SHA1, &content).sha1.unwrap_or_default();
    if let Some(given) = ctx.header("content-md5")
        && !given.eq_ignore_ascii_case(&hex(&sha1))
    {
        return Err(BoxFault::new(400, "bad_digest", "The content-md5 (SHA-1) does not match the file"));
    }
    let attr = |k: &str| attributes.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let mut store = ctx.shared.store();
    let (file_id, folder_id, name, version) = match file_id {
        None => {
            let name =
                attr("name").ok_or_else(|| BoxFault::new(400, "missing_file_name", "attributes.name is required"))?;
            check_name(&name)?;
            let folder_id = attributes
                .get("parent")
                .and_then(|p| p.get("id"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| BoxFault::new(400, "missing_destination", "attributes.parent.id is required"))?;
            if !folder_exists(ctx, &folder_id) {
                return Err(BoxFault::new(404, "invalid_parameter", "The folder does not exist"));
            }
            name_in_use(&store, &folder_id, &name, None)?;
            (new_file_id(&mut store), folder_id, name, 1)
        }
        Some(file_id) => {
            let existing = store.files.get(&file_id).ok_or_else(BoxFault::not_found)?;
            if let Some(etag) = ctx.header("if-match")
                && etag.trim_matches('"') != (existing.version - 1).to_string()
            {
                return Err(BoxFault::new(412, "precondition_failed", "The resource has been modified"));
            }
            let name = attr("name").unwrap_or_else(|| existing.name.clone());
            (file_id, existing.folder_id.clone(), name, existing.version + 1)
        }
    };
    let kept = ctx
        .shared
        .storage
        .keep(&format!("plain-{}", upload_core::emulator::unique()), &Bytes::from(content.clone()))
        .map_err(|e| BoxFault::storage(&e))?;
    let blob = ctx.shared.storage.promote(&folder_id, &name, kept).map_err(|e| BoxFault::storage(&e))?;
    let rec = FileRec {
        folder_id,
        name,
        blob,
        size: content.len() as u64,
        sha1,
        version,
        description: attr("description"),
        content_modified_at: attr("content_modified_at"),
    };
    let doc = file_doc(&file_id, &rec);
    store.files.insert(file_id, rec);
    ok_json(201, &Files { total_count: Some(1), entries: vec![doc] })
}
