//! The OSS operations the emulator serves: multipart uploads (initiate, parts, copy, sequential
//! parts, list, complete, abort) and whole objects (put, get, head).

use super::*;

pub(super) fn check_key(ctx: &Ctx<'_>) -> Result<(), OssFault> {
    let key = &ctx.key;
    if key.is_empty() || key.len() > 1023 || key.starts_with('/') || key.starts_with('\\') {
        return Err(OssFault::new(400, "InvalidObjectName", "The specified object is not valid.").ec("0016-00000005"));
    }
    if !ctx.shared.storage.accepts_key(key) {
        return Err(OssFault::new(
            400,
            "InvalidObjectName",
            "The emulator's directory storage keeps objects as files and cannot store this key; use memory storage.",
        ));
    }
    Ok(())
}

pub(super) fn initiate(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    check_key(ctx)?;
    let upload_id = {
        let mut store = ctx.shared.store();
        store.counter += 1;
        let id = hex(&Digests::compute(Hashes::MD5, format!("{}{}{}", ctx.bucket, ctx.key, store.counter).as_bytes())
            .md5
            .unwrap_or_default())
        .to_ascii_uppercase();
        store.uploads.insert(
            id.clone(),
            UploadRec {
                bucket: ctx.bucket.clone(),
                key: ctx.key.clone(),
                initiated: ctx.shared.now_iso(),
                parts: BTreeMap::new(),
                sequential: ctx.q("sequential").is_some(),
            },
        );
        id
    };
    ok_xml(&InitiateMultipartUploadResult {
        bucket: ctx.bucket.clone(),
        key: ctx.name(&ctx.key),
        upload_id,
        encoding_type: ctx.encode_url().then(|| "url".to_owned()),
    })
}

pub(super) fn part_number(ctx: &Ctx<'_>) -> Result<u32, OssFault> {
    let Some(raw) = ctx.q("partNumber") else {
        return Err(OssFault::invalid_argument(
            "Unexpected query string parameter.",
            "ResourceType",
            "partNumber",
            "0017-00000219",
        ));
    };
    match raw.parse::<u32>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err(OssFault::invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive.",
            "PartNumber",
            raw,
            "0017-00000220",
        )),
    }
}

pub(super) fn check_upload(store: &Store, ctx: &Ctx<'_>) -> Result<(), OssFault> {
    match store.uploads.get(ctx.upload_id()) {
        Some(u) if u.bucket == ctx.bucket && u.key == ctx.key => Ok(()),
        _ => Err(OssFault::no_such_upload(ctx.upload_id())),
    }
}

pub(super) fn store_blob(ctx: &Ctx<'_>, name: &str, bytes: &Bytes) -> Result<Blob, OssFault> {
    ctx.shared.storage.keep(name, bytes).map_err(|e| internal(&e))
}

/// The MD5 a `Content-MD5` header value names, if one is sent; `InvalidDigest` when it is not
/// the base64 of 16 bytes.
pub(super) fn content_md5(value: Option<&str>) -> Result<Option<[u8; 16]>, OssFault> {
    let Some(value) = value else { return Ok(None) };
    match STANDARD.decode(value.trim()).ok().and_then(|g| <[u8; 16]>::try_from(g.as_slice()).ok()) {
        Some(md5) => Ok(Some(md5)),
        None => {
            Err(OssFault::new(400, "InvalidDigest", "The Content-MD5 you specified is not valid.").ec("0017-00000502"))
        }
    }
}

/// Checks and keeps the bytes of a part or object: size, `Content-MD5` (the request's, when
/// `check_md5`), the MD5 that makes the ETag and the CRC-64. A request body that was not kept
/// (discard mode) is described by `ctx.discarded`.
pub(super) fn save_part(ctx: &Ctx<'_>, number: u32, bytes: Bytes, check_md5: bool) -> Result<StoredPart, OssFault> {
    let discarded = ctx.discarded.filter(|_| check_md5);
    let len = discarded.map_or(bytes.len() as u64, |d| d.len);
    if len > ctx.shared.config.max_part_size {
        return Err(OssFault::new(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."));
    }
    let given = if check_md5 { content_md5(ctx.headers.header_value("content-md5").as_deref())? } else { None };
    let (crc, computed_md5) = match discarded {
        Some(d) => (d.crc64, d.md5),
        None => {
            let hashes = if ctx.shared.config.verify_md5 { Hashes::MD5 | Hashes::CRC64 } else { Hashes::CRC64 };
            let d = Digests::compute(hashes, &bytes);
            (d.crc64.unwrap_or_default(), d.md5)
        }
    };
    let md5 = if ctx.shared.config.verify_md5 {
        let md5 = computed_md5.unwrap_or_default();
        if given.is_some_and(|g| g != md5) {
            return Err(
                OssFault::new(400, "InvalidDigest", "The Content-MD5 you specified was invalid.").ec("0017-00000503")
            );
        }
        md5
    } else {
        // Benchmarks: the client's Content-MD5 when sent, else an opaque id from the CRC-64.
        given.unwrap_or_else(|| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&crc.to_be_bytes());
            id[8..].copy_from_slice(&len.to_be_bytes());
            id
        })
    };
    let blob = match discarded {
        Some(_) => Blob::Discarded,
        None => store_blob(
            ctx,
            &format!("{}-{number}", if ctx.upload_id().is_empty() { "put" } else { ctx.upload_id() }),
            &bytes,
        )?,
    };
    Ok(StoredPart { blob, len, md5, crc, last_modified: ctx.shared.now_iso() })
}

pub(super) fn part_reply(part: &StoredPart) -> Result<Reply, OssFault> {
    Response::builder()
        .status(200)
        .header("etag", etag_of(&part.md5))
        .header("x-oss-hash-crc64ecma", part.crc.to_string())
        .header("content-md5", STANDARD.encode(part.md5))
        .body(Full::new(Bytes::new()))
        .map_err(|e| OssFault::new(500, "InternalError", &e.to_string()))
}

/// A sequential upload takes each part number once, in ascending order.
pub(super) fn check_sequential(upload: &UploadRec, number: u32) -> Result<(), OssFault> {
    if upload.parts.contains_key(&number) {
        return Err(OssFault::new(
            409,
            "PartAlreadyExist",
            "For sequential multipart upload, you can't overwrite uploaded parts.",
        )
        .ec("0042-00000108"));
    }
    if upload.parts.keys().next_back().is_some_and(|&last| number < last) {
        return Err(OssFault::new(
            400,
            "PartNotSequential",
            "For sequential multipart upload, you must upload or complete parts with sequential part number.",
        ));
    }
    Ok(())
}

pub(super) fn upload_part(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    let number = part_number(ctx)?;
    {
        // Refused before the bytes are kept: a sequential upload's stored part stays as it is.
        let store = ctx.shared.store();
        check_upload(&store, ctx)?;
        if let Some(u) = store.uploads.get(ctx.upload_id()).filter(|u| u.sequential) {
            check_sequential(u, number)?;
        }
    }
    let part = save_part(ctx, number, ctx.body.clone(), true)?;
    let mut store = ctx.shared.store();
    // Checked again: the upload may have been completed or aborted meanwhile.
    check_upload(&store, ctx)?;
    if let Some(u) = store.uploads.get_mut(ctx.upload_id()) {
        if u.sequential {
            check_sequential(u, number)?;
        }
        u.parts.insert(number, part.clone());
    }
    part_reply(&part)
}

pub(super) fn upload_part_copy(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    let number = part_number(ctx)?;
    check_upload(&ctx.shared.store(), ctx)?;
    let source = ctx.headers.header_value("x-oss-copy-source").unwrap_or_default();
    let source = decode(source.split('?').next().unwrap_or_default());
    let (src_bucket, src_key) = source
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(|| OssFault::new(400, "InvalidArgument", "x-oss-copy-source is invalid."))?;
    let object = ctx
        .shared
        .store()
        .objects
        .get(&(src_bucket.to_owned(), src_key.to_owned()))
        .cloned()
        .ok_or_else(|| OssFault::new(404, "NoSuchKey", "The specified key does not exist."))?;
    let bytes = object.blob.read().map_err(|e| OssFault::new(500, "InternalError", &e.to_string()))?;
    let bytes = match ctx.headers.header_value("x-oss-copy-source-range") {
        Some(range) => {
            let (a, b) = range
                .strip_prefix("bytes=")
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
                .filter(|(a, b)| a <= b && *b < bytes.len())
                .ok_or_else(|| OssFault::new(416, "InvalidRange", "The requested range is not satisfiable."))?;
            bytes.slice(a..=b)
        }
        None => bytes,
    };
    let part = save_part(ctx, number, bytes, false)?;
    {
        let mut store = ctx.shared.store();
        check_upload(&store, ctx)?;
        if let Some(u) = store.uploads.get_mut(ctx.upload_id()) {
            u.parts.insert(number, part.clone());
        }
    }
    ok_xml(&CopyPartResult { last_modified: part.last_modified.clone(), etag: etag_of(&part.md5) })
}

pub(super) fn complete(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    const MIN_PART: u64 = 100 * 1024;
    let all = ctx.headers.header_value("x-oss-complete-all").is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let mut store = ctx.shared.store();
    check_upload(&store, ctx)?;
    let upload = store.uploads.get(ctx.upload_id()).ok_or_else(|| OssFault::no_such_upload(ctx.upload_id()))?;
    let listed: Vec<CompletePart> = if all {
        if !ctx.body.is_empty() {
            return Err(OssFault::invalid_argument(
                "Should not speficy both complete all header and http body.",
                "x-oss-complete-all",
                "yes",
                "0042-00000216",
            ));
        }
        upload.parts.iter().map(|(n, p)| CompletePart { part_number: *n, etag: etag_of(&p.md5) }).collect()
    } else {
        let text = std::str::from_utf8(&ctx.body).unwrap_or_default();
        let doc: CompleteMultipartUpload = quick_xml::de::from_str(text).map_err(|_| {
            OssFault::new(
                400,
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our published schema.",
            )
            .ec("0042-00000205")
        })?;
        if doc.parts.is_empty() {
            return Err(OssFault::new(
                400,
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our published schema.",
            )
            .ec("0042-00000205"));
        }
        doc.parts
    };
    if listed.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
        return Err(OssFault::new(
            400,
            "InvalidPartOrder",
            "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
        )
        .ec("0042-00000209"));
    }
    let mut parts = Vec::with_capacity(listed.len());
    for (i, p) in listed.iter().enumerate() {
        let stored = upload.parts.get(&p.part_number).filter(|s| etag_of(&s.md5).eq_ignore_ascii_case(p.etag.trim()));
        let Some(stored) = stored else {
            return Err(OssFault::new(400, "InvalidPart", "One or more of the specified parts could not be found or the specified entity tag might not have matched the part's entity tag.")
                .ec("0042-00000204")
                .extra("ETag", &p.etag)
                .extra("PartNumber", &p.part_number.to_string())
                .extra("UploadId", ctx.upload_id()));
        };
        if i + 1 < listed.len() && stored.len < MIN_PART {
            return Err(OssFault::new(
                400,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size.",
            )
            .ec("0042-00000213")
            .extra("PartNumber", &p.part_number.to_string()));
        }
        parts.push(stored.clone());
    }
    let mut crc = Crc64::default();
    let mut md5s = Vec::with_capacity(parts.len() * 16);
    for p in &parts {
        crc.append(Crc64 { crc: p.crc, len: p.len });
        md5s.extend_from_slice(&p.md5);
    }
    let etag = format!(
        "\"{}-{}\"",
        hex(&Digests::compute(Hashes::MD5, &md5s).md5.unwrap_or_default()).to_ascii_uppercase(),
        parts.len()
    );
    let blobs: Vec<&Blob> = parts.iter().map(|p| &p.blob).collect();
    let blob = ctx.shared.storage.assemble(&ctx.bucket, &ctx.key, &blobs).map_err(|e| internal(&e))?;
    if let Some(u) = store.uploads.remove(ctx.upload_id()) {
        u.parts.values().for_each(|p| p.blob.remove());
    }
    store.objects.insert(
        (ctx.bucket.clone(), ctx.key.clone()),
        Object {
            blob,
            len: crc.len,
            etag: etag.clone(),
            crc: crc.crc,
            content_type: None,
            last_modified: ctx.shared.now_http(),
        },
    );
    drop(store);
    let mut reply = ok_xml(&CompleteMultipartUploadResult {
        encoding_type: ctx.encode_url().then(|| "url".to_owned()),
        location: format!("http://{}/{}", ctx.bucket, ctx.key),
        bucket: ctx.bucket.clone(),
        key: ctx.name(&ctx.key),
        etag,
    })?;
    if let Ok(v) = crc.crc.to_string().parse() {
        reply.headers_mut().insert("x-oss-hash-crc64ecma", v);
    }
    Ok(reply)
}

pub(super) fn abort(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    let mut store = ctx.shared.store();
    check_upload(&store, ctx)?;
    if let Some(u) = store.uploads.remove(ctx.upload_id()) {
        u.parts.values().for_each(|p| p.blob.remove());
    }
    Ok(empty(204))
}

pub(super) fn bounded(ctx: &Ctx<'_>, name: &str, default: u32) -> Result<u32, OssFault> {
    match ctx.q(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(OssFault::invalid_argument(
                &format!("Argument {name} must be between 1 and 1000."),
                name,
                v,
                "0017-00000301",
            )),
        },
    }
}

pub(super) fn list_parts(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    let max = bounded(ctx, "max-parts", 1000)?;
    let marker: u32 = ctx.q("part-number-marker").and_then(|v| v.parse().ok()).unwrap_or(0);
    let store = ctx.shared.store();
    check_upload(&store, ctx)?;
    let upload = store.uploads.get(ctx.upload_id()).ok_or_else(|| OssFault::no_such_upload(ctx.upload_id()))?;
    let after: Vec<(&u32, &StoredPart)> = upload.parts.range(marker.saturating_add(1)..).collect();
    let page: Vec<PartSummary> = after
        .iter()
        .take(max as usize)
        .map(|(n, p)| PartSummary {
            part_number: **n,
            last_modified: p.last_modified.clone(),
            etag: etag_of(&p.md5),
            hash_crc64ecma: Some(p.crc),
            size: p.len,
        })
        .collect();
    let truncated = after.len() > page.len();
    ok_xml(&ListPartsResult {
        bucket: ctx.bucket.clone(),
        key: ctx.name(&ctx.key),
        upload_id: ctx.upload_id().to_owned(),
        encoding_type: ctx.encode_url().then(|| "url".to_owned()),
        part_number_marker: Some(marker),
        // Always present (the official SDKs require it): the last part listed, or the marker.
        next_part_number_marker: Some(page.last().map_or(marker, |p| p.part_number)),
        max_parts: Some(max),
        is_truncated: truncated,
        storage_class: Some("Standard".into()),
        parts: page,
    })
}

pub(super) fn list_uploads(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    let max = bounded(ctx, "max-uploads", 1000)? as usize;
    let prefix = ctx.q("prefix").unwrap_or_default().to_owned();
    let delimiter = ctx.q("delimiter").filter(|d| !d.is_empty()).map(str::to_owned);
    let key_marker = ctx.q("key-marker").unwrap_or_default().to_owned();
    let id_marker = ctx.q("upload-id-marker").filter(|_| !key_marker.is_empty()).unwrap_or_default().to_owned();
    let store = ctx.shared.store();
    let mut all: Vec<(&String, &UploadRec)> = store
        .uploads
        .iter()
        .filter(|(_, u)| u.bucket == ctx.bucket && u.key.starts_with(&prefix))
        .filter(|(id, u)| u.key > key_marker || (u.key == key_marker && !id_marker.is_empty() && **id > id_marker))
        .collect();
    all.sort_by(|a, b| (&a.1.key, a.0).cmp(&(&b.1.key, b.0)));
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut last: Option<(String, String)> = None;
    for (id, u) in all {
        if uploads.len() + prefixes.len() >= max {
            truncated = true;
            break;
        }
        if let Some(d) = &delimiter
            && let Some(pos) = u.key[prefix.len()..].find(d.as_str())
        {
            let common = u.key[..prefix.len() + pos + d.len()].to_owned();
            if !prefixes.contains(&common) {
                prefixes.push(common);
            }
            last = Some((u.key.clone(), id.clone()));
            continue;
        }
        uploads.push(MultipartUpload {
            key: ctx.name(&u.key),
            upload_id: id.clone(),
            initiated: u.initiated.clone(),
            storage_class: Some("Standard".into()),
        });
        last = Some((u.key.clone(), id.clone()));
    }
    let opt = |s: &str| Some(ctx.name(s));
    ok_xml(&ListMultipartUploadsResult {
        bucket: ctx.bucket.clone(),
        encoding_type: ctx.encode_url().then(|| "url".to_owned()),
        key_marker: opt(&key_marker),
        upload_id_marker: Some(id_marker.clone()),
        next_key_marker: if truncated { last.as_ref().map(|(k, _)| ctx.name(k)) } else { None },
        next_upload_id_marker: if truncated { last.as_ref().map(|(_, id)| id.clone()) } else { None },
        delimiter: delimiter.as_deref().map(|d| ctx.name(d)),
        prefix: opt(&prefix),
        max_uploads: Some(max as u32),
        is_truncated: truncated,
        uploads,
        common_prefixes: prefixes.into_iter().map(|p| CommonPrefix { prefix: ctx.name(&p) }).collect(),
    })
}

pub(super) fn put_object(ctx: &Ctx<'_>) -> Result<Reply, OssFault> {
    check_key(ctx)?;
    // A name of its own for the temporary file: parallel PUTs must not share one.
    let temp_number = {
        let mut store = ctx.shared.store();
        store.counter += 1;
        u32::try_from(store.counter % u64::from(u32::MAX)).unwrap_or_default()
    };
    let part = save_part(ctx, temp_number, ctx.body.clone(), true)?;
    let blob = ctx.shared.storage.promote(&ctx.bucket, &ctx.key, part.blob.clone()).map_err(|e| internal(&e))?;
    ctx.shared.store().objects.insert(
        (ctx.bucket.clone(), ctx.key.clone()),
        Object {
            blob,
            len: part.len,
            etag: etag_of(&part.md5),
            crc: part.crc,
            content_type: ctx.headers.header_value("content-type"),
            last_modified: ctx.shared.now_http(),
        },
    );
    part_reply(&part)
}

pub(super) fn get_object(ctx: &Ctx<'_>, head: bool) -> Result<Reply, OssFault> {
    let object = ctx
        .shared
        .store()
        .objects
        .get(&(ctx.bucket.clone(), ctx.key.clone()))
        .cloned()
        .ok_or_else(|| OssFault::new(404, "NoSuchKey", "The specified key does not exist.").ec("0026-00000001"))?;
    let body = if head {
        Bytes::new()
    } else {
        object.blob.read().map_err(|e| OssFault::new(500, "InternalError", &e.to_string()))?
    };
    let mut builder = Response::builder()
        .status(200)
        .header("etag", object.etag.as_str())
        .header("x-oss-hash-crc64ecma", object.crc.to_string())
        .header("last-modified", object.last_modified.as_str())
        .header("content-length", object.len.to_string());
    if let Some(t) = &object.content_type {
        builder = builder.header("content-type", t.as_str());
    }
    builder.body(Full::new(body)).map_err(|e| OssFault::new(500, "InternalError", &e.to_string()))
}
