//! The QingStor operations the emulator serves: multipart uploads (initiate, parts, copy, list,
//! complete, abort) and whole objects (put, get, head).

use super::*;

pub(super) fn check_key(ctx: &Ctx<'_>) -> Result<(), QsFault> {
    let key = &ctx.key;
    if key.is_empty() || key.len() > 1023 || key.starts_with('/') {
        return Err(QsFault::new(400, "invalid_object_name", "The object name is invalid."));
    }
    if !ctx.shared.storage.accepts_key(key) {
        return Err(QsFault::new(
            400,
            "invalid_object_name",
            "The emulator's directory storage keeps objects as files and cannot store this key; use memory storage.",
        ));
    }
    Ok(())
}

pub(super) fn initiate(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    check_key(ctx)?;
    if let Some(class) = ctx.headers.header_value("x-qs-storage-class")
        && !matches!(class.as_str(), "STANDARD" | "STANDARD_IA")
    {
        return Err(QsFault::new(400, "invalid_request", "x-qs-storage-class must be STANDARD or STANDARD_IA."));
    }
    let upload_id = {
        let mut store = ctx.shared.store();
        store.counter += 1;
        let serial = store.counter;
        // 32 hex digits that sort by creation: the serial, then a digest of bucket, key and serial.
        let digest = hex(&Digests::compute(Hashes::MD5, format!("{}/{}#{serial}", ctx.bucket, ctx.key).as_bytes())
            .md5
            .unwrap_or_default());
        let id = format!("{serial:016x}{}", &digest[..16]);
        store.uploads.insert(
            id.clone(),
            UploadRec {
                bucket: ctx.bucket.clone(),
                key: ctx.key.clone(),
                created: ctx.shared.iso_now(),
                serial,
                content_type: ctx.headers.header_value("content-type"),
                parts: BTreeMap::new(),
            },
        );
        id
    };
    ok_json(
        200,
        &InitiateMultipartUploadOutput { upload_id, bucket: Some(ctx.bucket.clone()), key: Some(ctx.key.clone()) },
    )
}

pub(super) fn part_number(ctx: &Ctx<'_>) -> Result<u32, QsFault> {
    let raw = ctx.q("part_number").unwrap_or_default();
    match raw.parse::<u32>() {
        Ok(n) if n <= crate::client::MAX_PART_NUMBER => Ok(n),
        _ => Err(QsFault::new(
            400,
            "invalid_argument",
            &format!("part_number {raw:?} is not an integer between 0 and 10000."),
        )),
    }
}

pub(super) fn check_upload(store: &Store, ctx: &Ctx<'_>) -> Result<(), QsFault> {
    match store.uploads.get(ctx.upload_id()) {
        Some(u) if u.bucket == ctx.bucket && u.key == ctx.key => Ok(()),
        _ => Err(QsFault::upload_not_exists()),
    }
}

/// The MD5 a `Content-MD5` header value names, if one is sent; `invalid_argument` when it is
/// not the base64 of 16 bytes.
pub(super) fn content_md5(value: Option<&str>) -> Result<Option<[u8; 16]>, QsFault> {
    let Some(value) = value else { return Ok(None) };
    STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|g| <[u8; 16]>::try_from(g.as_slice()).ok())
        .map(Some)
        .ok_or_else(|| QsFault::new(400, "invalid_argument", "Content-MD5 is not the base64 of 16 bytes."))
}

/// Checks and keeps the bytes of a part or object: size, `Content-MD5` (`given_md5`, the
/// request's), and the MD5 that makes the ETag. `discarded` describes a request body that was
/// not kept (discard mode).
pub(super) fn save_part(
    ctx: &Ctx<'_>,
    name: &str,
    bytes: Bytes,
    discarded: Option<Discarded>,
    given_md5: Option<String>,
) -> Result<StoredPart, QsFault> {
    let len = discarded.map_or(bytes.len() as u64, |d| d.len);
    if len > ctx.shared.config.max_part_size {
        return Err(QsFault::new(400, "entity_too_large", "The part or object is larger than 5 GB."));
    }
    let given = content_md5(given_md5.as_deref())?;
    let md5 = if ctx.shared.config.verify_md5 {
        let md5 = match discarded {
            Some(d) => d.md5.unwrap_or_default(),
            None => Digests::compute(Hashes::MD5, &bytes).md5.unwrap_or_default(),
        };
        if given.is_some_and(|g| g != md5) {
            return Err(QsFault::new(
                400,
                "bad_digest",
                "The Content-MD5 you specified did not match what was received.",
            ));
        }
        md5
    } else {
        // Benchmarks: the client's Content-MD5 when sent, else an opaque id from the CRC-64.
        given.unwrap_or_else(|| {
            let crc = discarded
                .map_or_else(|| Digests::compute(Hashes::CRC64, &bytes).crc64.unwrap_or_default(), |d| d.crc64);
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&crc.to_be_bytes());
            id[8..].copy_from_slice(&len.to_be_bytes());
            id
        })
    };
    let blob = match discarded {
        Some(_) => Blob::Discarded,
        None => ctx.shared.storage.keep(name, &bytes).map_err(|e| QsFault::storage(&e))?,
    };
    Ok(StoredPart { blob, len, md5, created: ctx.shared.iso_now() })
}

pub(super) fn part_reply(part: &StoredPart) -> Result<Reply, QsFault> {
    Response::builder()
        .status(201)
        .header("etag", format!("\"{}\"", hex(&part.md5)))
        .body(Full::new(Bytes::new()))
        .map_err(|e| QsFault::new(500, "internal_error", &e.to_string()))
}

pub(super) fn keep_part(ctx: &Ctx<'_>, number: u32, part: StoredPart) -> Result<(), QsFault> {
    let mut store = ctx.shared.store();
    // Checked again: the upload may have been completed or aborted meanwhile.
    if let Err(e) = check_upload(&store, ctx) {
        part.blob.remove();
        return Err(e);
    }
    // Every part has a file name of its own: the one it replaces goes.
    if let Some(u) = store.uploads.get_mut(ctx.upload_id())
        && let Some(old) = u.parts.insert(number, part)
    {
        old.blob.remove();
    }
    Ok(())
}

pub(super) fn upload_part(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let number = part_number(ctx)?;
    check_upload(&ctx.shared.store(), ctx)?;
    let name = format!("{}-{number}-{}", ctx.upload_id(), upload_core::emulator::unique());
    let part = save_part(ctx, &name, ctx.body.clone(), ctx.discarded, ctx.headers.header_value("content-md5"))?;
    let reply = part_reply(&part)?;
    keep_part(ctx, number, part)?;
    Ok(reply)
}

pub(super) fn upload_part_copy(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let number = part_number(ctx)?;
    check_upload(&ctx.shared.store(), ctx)?;
    let source = decode(&ctx.headers.header_value("x-qs-copy-source").unwrap_or_default());
    let (src_bucket, src_key) = source
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(|| QsFault::new(400, "invalid_argument", "x-qs-copy-source must be /bucket/key."))?;
    let object = ctx
        .shared
        .store()
        .objects
        .get(&(src_bucket.to_owned(), src_key.to_owned()))
        .cloned()
        .ok_or_else(|| QsFault::new(404, "object_not_exists", "The copy source does not exist."))?;
    let bytes = object.blob.read().map_err(|e| QsFault::storage(&e))?;
    let total = bytes.len();
    let (bytes, range) = match ctx.headers.header_value("x-qs-copy-range") {
        Some(range) => {
            let (a, b) = range
                .strip_prefix("bytes=")
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
                .filter(|(a, b)| a <= b && *b < total)
                .ok_or_else(|| QsFault::new(416, "invalid_range", "x-qs-copy-range is not satisfiable."))?;
            (bytes.slice(a..=b), Some(format!("bytes {a}-{b}/{total}")))
        }
        None => (bytes, None),
    };
    let name = format!("{}-{number}-{}", ctx.upload_id(), upload_core::emulator::unique());
    let part = save_part(ctx, &name, bytes, None, None)?;
    let mut reply = part_reply(&part)?;
    if let Some(r) = range.and_then(|r| r.parse().ok()) {
        reply.headers_mut().insert("x-qs-content-copy-range", r);
    }
    keep_part(ctx, number, part)?;
    Ok(reply)
}

pub(super) fn complete(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let doc: CompleteMultipartUploadInput = serde_json::from_slice(&ctx.body)
        .map_err(|e| QsFault::new(400, "invalid_json", &format!("The request body is not valid JSON: {e}.")))?;
    let listed = doc.object_parts;
    if listed.is_empty() {
        return Err(QsFault::new(400, "invalid_request", "object_parts must list at least one part."));
    }
    if listed.len() > 10_000 {
        return Err(QsFault::new(400, "max_parts_exceeded", "An object has at most 10000 parts."));
    }
    if listed.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
        return Err(QsFault::new(400, "invalid_request", "object_parts must be in ascending part_number order."));
    }
    let mut store = ctx.shared.store();
    check_upload(&store, ctx)?;
    let upload = store.uploads.get(ctx.upload_id()).ok_or_else(QsFault::upload_not_exists)?;
    let mut parts = Vec::with_capacity(listed.len());
    for (i, p) in listed.iter().enumerate() {
        let Some(stored) = upload.parts.get(&p.part_number) else {
            return Err(QsFault::new(
                400,
                "invalid_request",
                &format!("Part {} has not been uploaded.", p.part_number),
            ));
        };
        if let Some(etag) = &p.etag
            && !etag.trim().trim_matches('"').eq_ignore_ascii_case(&hex(&stored.md5))
        {
            return Err(QsFault::new(
                400,
                "invalid_request",
                &format!("The etag of part {} does not match the uploaded part.", p.part_number),
            ));
        }
        if i + 1 < listed.len() && stored.len < MIN_PART {
            return Err(QsFault::new(
                400,
                "entity_too_small",
                &format!("Part {} is smaller than 4 MB and is not the last part.", p.part_number),
            ));
        }
        parts.push(stored);
    }
    let len: u64 = parts.iter().map(|p| p.len).sum();
    let blobs: Vec<&Blob> = parts.iter().map(|p| &p.blob).collect();
    let blob = ctx.shared.storage.assemble(&ctx.bucket, &ctx.key, &blobs).map_err(|e| QsFault::storage(&e))?;
    let content_type = upload.content_type.clone();
    // QingStor does not compute a multipart object's ETag: it keeps what the ETag header says.
    let etag = ctx.headers.header_value("etag");
    if let Some(u) = store.uploads.remove(ctx.upload_id()) {
        u.parts.values().for_each(|p| p.blob.remove());
    }
    store.objects.insert(
        (ctx.bucket.clone(), ctx.key.clone()),
        Object { blob, len, etag, content_type, last_modified: ctx.shared.http_date() },
    );
    Ok(empty(201))
}

pub(super) fn abort(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let mut store = ctx.shared.store();
    // 204 whether or not the upload exists (QingStor made Abort idempotent).
    if check_upload(&store, ctx).is_ok()
        && let Some(u) = store.uploads.remove(ctx.upload_id())
    {
        u.parts.values().for_each(|p| p.blob.remove());
    }
    Ok(empty(204))
}

pub(super) fn limit(ctx: &Ctx<'_>, default: u32) -> Result<u32, QsFault> {
    match ctx.q("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(QsFault::new(400, "invalid_argument", "limit must be an integer between 1 and 1000.")),
        },
    }
}

pub(super) fn list_parts(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let limit = limit(ctx, 1000)? as usize;
    let marker = match ctx.q("part_number_marker") {
        None => None,
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| QsFault::new(400, "invalid_argument", "part_number_marker must be an integer."))?,
        ),
    };
    let store = ctx.shared.store();
    check_upload(&store, ctx)?;
    let upload = store.uploads.get(ctx.upload_id()).ok_or_else(QsFault::upload_not_exists)?;
    let start = marker.map_or(0, |m| m.saturating_add(1));
    let object_parts: Vec<ObjectPart> = upload
        .parts
        .range(start..)
        .take(limit)
        .map(|(n, p)| ObjectPart {
            part_number: *n,
            size: Some(p.len),
            created: Some(p.created.clone()),
            etag: Some(hex(&p.md5)),
        })
        .collect();
    // `count` is the number of parts in the upload, as the SDKs' paging assumes.
    ok_json(200, &ListMultipartOutput { count: Some(upload.parts.len() as u64), object_parts })
}

pub(super) fn list_uploads(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    let limit = limit(ctx, 200)? as usize;
    let prefix = ctx.q("prefix").unwrap_or_default().to_owned();
    let delimiter = ctx.q("delimiter").filter(|d| !d.is_empty()).map(str::to_owned);
    if delimiter.as_ref().is_some_and(|d| d.chars().count() > 1) {
        return Err(QsFault::new(400, "invalid_argument", "delimiter must be a single character."));
    }
    let key_marker = ctx.q("key_marker").unwrap_or_default().to_owned();
    let id_marker = ctx.q("upload_id_marker").filter(|_| !key_marker.is_empty()).unwrap_or_default().to_owned();
    let store = ctx.shared.store();
    let mut all: Vec<(&String, &UploadRec)> =
        store.uploads.iter().filter(|(_, u)| u.bucket == ctx.bucket && u.key.starts_with(&prefix)).collect();
    all.sort_by(|a, b| (&a.1.key, a.1.serial).cmp(&(&b.1.key, b.1.serial)));
    // After the markers: later keys, or later uploads of the marker key (ids sort by creation,
    // so this holds when the marker's own upload is gone meanwhile).
    let after: Vec<(&String, &UploadRec)> = all
        .into_iter()
        .filter(|(id, u)| {
            key_marker.is_empty()
                || u.key > key_marker
                || (u.key == key_marker && !id_marker.is_empty() && id.as_str() > id_marker.as_str())
        })
        .collect();
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut has_more = false;
    let mut last: Option<(String, String)> = None;
    for (id, u) in after {
        let common = delimiter.as_ref().and_then(|d| {
            u.key[prefix.len()..].find(d.as_str()).map(|pos| u.key[..prefix.len() + pos + d.len()].to_owned())
        });
        if common.as_ref().is_some_and(|c| prefixes.contains(c)) {
            last = Some((u.key.clone(), id.clone()));
            continue;
        }
        if uploads.len() + prefixes.len() >= limit {
            has_more = true;
            break;
        }
        match common {
            Some(c) => prefixes.push(c),
            None => uploads.push(UploadSummary {
                key: u.key.clone(),
                upload_id: id.clone(),
                created: Some(u.created.clone()),
            }),
        }
        last = Some((u.key.clone(), id.clone()));
    }
    let (next_key_marker, next_upload_id_marker) = match (has_more, last) {
        (true, Some((k, id))) => (Some(k), Some(id)),
        _ => (None, None),
    };
    ok_json(
        200,
        &ListMultipartUploadsOutput {
            name: Some(ctx.bucket.clone()),
            prefix: Some(prefix),
            delimiter,
            limit: Some(limit as u32),
            marker: Some(key_marker),
            next_key_marker,
            next_upload_id_marker,
            has_more: Some(has_more),
            common_prefixes: prefixes,
            uploads,
        },
    )
}

pub(super) fn put_object(ctx: &Ctx<'_>) -> Result<Reply, QsFault> {
    check_key(ctx)?;
    let name = format!("put-{}", upload_core::emulator::unique());
    let part = save_part(ctx, &name, ctx.body.clone(), ctx.discarded, ctx.headers.header_value("content-md5"))?;
    let reply = part_reply(&part)?;
    let blob = ctx.shared.storage.promote(&ctx.bucket, &ctx.key, part.blob.clone()).map_err(|e| {
        part.blob.remove();
        QsFault::storage(&e)
    })?;
    let object = Object {
        blob,
        len: part.len,
        etag: Some(format!("\"{}\"", hex(&part.md5))),
        content_type: ctx.headers.header_value("content-type"),
        last_modified: ctx.shared.http_date(),
    };
    ctx.shared.store().objects.insert((ctx.bucket.clone(), ctx.key.clone()), object);
    Ok(reply)
}

pub(super) fn get_object(ctx: &Ctx<'_>, head: bool) -> Result<Reply, QsFault> {
    let object = ctx
        .shared
        .store()
        .objects
        .get(&(ctx.bucket.clone(), ctx.key.clone()))
        .cloned()
        .ok_or_else(|| QsFault::new(404, "object_not_exists", "The object you are accessing does not exist."))?;
    let body = if head { Bytes::new() } else { object.blob.read().map_err(|e| QsFault::storage(&e))? };
    let mut builder = Response::builder()
        .status(200)
        .header("last-modified", object.last_modified.as_str())
        .header("content-length", object.len.to_string())
        .header("content-type", object.content_type.as_deref().unwrap_or("application/octet-stream"));
    if let Some(etag) = &object.etag {
        builder = builder.header("etag", etag.as_str());
    }
    builder.body(Full::new(body)).map_err(|e| QsFault::new(500, "internal_error", &e.to_string()))
}
