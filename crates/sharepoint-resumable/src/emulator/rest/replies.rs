//! Answers in each OData flavour: entities, file documents, errors.

#[allow(unused_imports)]
use super::super::{ids::*, items::*, records::*, server::*, sessions::*, tokens::*};
use super::*;
#[allow(unused_imports)]
use super::{calls::*, errors::*, files::*, state::*};

// ---------------------------------------------------------------------------------------------
// Answers.

/// The OData JSON flavour of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flavour {
    Verbose,
    Minimal,
    NoMetadata,
}

impl Flavour {
    pub(super) fn from_accept(accept: Option<&str>) -> Self {
        let accept = accept.unwrap_or_default().to_ascii_lowercase();
        if accept.contains("odata=verbose") {
            Flavour::Verbose
        } else if accept.contains("odata=nometadata") {
            Flavour::NoMetadata
        } else {
            Flavour::Minimal
        }
    }

    pub(super) fn content_type(self) -> &'static str {
        match self {
            Flavour::Verbose => "application/json;odata=verbose;streaming=true;charset=utf-8",
            Flavour::Minimal => "application/json;odata=minimalmetadata;streaming=true;charset=utf-8",
            Flavour::NoMetadata => "application/json;odata=nometadata;streaming=true;charset=utf-8",
        }
    }
}

pub(super) fn json_reply(flavour: Flavour, doc: &Json) -> Result<Reply, SpError> {
    let body = serde_json::to_vec(doc).map_err(|e| SpError::internal(e.to_string()))?;
    Response::builder()
        .status(200)
        .header("content-type", flavour.content_type())
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| SpError::internal(e.to_string()))
}

pub(super) fn error_reply(e: &SpError, flavour: Flavour, tenant: &str) -> Reply {
    let error = json!({ "code": e.code, "message": { "lang": "en-US", "value": e.message } });
    let doc = match flavour {
        Flavour::Verbose => json!({ "error": error }),
        _ => json!({ "odata.error": error }),
    };
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", flavour.content_type());
    if let Some(s) = e.retry_after {
        builder = builder.header("retry-after", s.to_string());
    }
    if e.status == 401 {
        builder = builder.header(
            "www-authenticate",
            format!("Bearer realm=\"{tenant}\",client_id=\"00000003-0000-0ff1-ce00-000000000000\""),
        );
    }
    let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
    builder.body(Full::new(body)).unwrap_or_else(|_| empty(500))
}

/// An Int64 result (as a JSON string) of method `method`.
pub(super) fn int64(flavour: Flavour, web: &str, method: &str, value: u64) -> Json {
    match flavour {
        Flavour::Verbose => json!({ "d": { method: value.to_string() } }),
        Flavour::Minimal => {
            json!({ "odata.metadata": format!("{web}/_api/$metadata#Edm.Int64"), "value": value.to_string() })
        }
        Flavour::NoMetadata => json!({ "value": value.to_string() }),
    }
}

/// An entity in the flavour: `fields` plus its metadata.
pub(super) fn entity(
    flavour: Flavour,
    type_name: &str,
    metadata: &str,
    id: Option<&str>,
    fields: Map<String, Json>,
) -> Json {
    match flavour {
        Flavour::NoMetadata => Json::Object(fields),
        Flavour::Minimal => {
            let mut doc = Map::new();
            doc.insert("odata.metadata".into(), metadata.into());
            doc.insert("odata.type".into(), type_name.into());
            if let Some(id) = id {
                doc.insert("odata.id".into(), id.into());
                let edit = id.split_once("/_api/").map_or(id, |(_, e)| e);
                doc.insert("odata.editLink".into(), edit.into());
            }
            doc.extend(fields);
            Json::Object(doc)
        }
        Flavour::Verbose => {
            let mut meta = Map::new();
            if let Some(id) = id {
                meta.insert("id".into(), id.into());
                meta.insert("uri".into(), id.into());
            }
            meta.insert("type".into(), type_name.into());
            let mut doc = Map::new();
            doc.insert("__metadata".into(), Json::Object(meta));
            doc.extend(fields);
            json!({ "d": doc })
        }
    }
}

/// SharePoint's time format (UTC, seconds, `Z`) of a Graph time.
pub(super) fn sp_time(graph: &str) -> String {
    DateTime::parse_from_rfc3339(graph)
        .map(|t| t.with_timezone(&Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| graph.to_owned())
}

/// The `UniqueId` of an item: its stable GUID, in lower case.
pub(super) fn unique_id(item: &ItemRec) -> String {
    item_guid(&item.id).to_ascii_lowercase()
}

/// The SP.File of a file item.
pub(super) fn file_doc(flavour: Flavour, web: &str, site: &str, path: &str, item: &ItemRec) -> Json {
    let size = match &item.kind {
        Kind::File { size, .. } => *size,
        Kind::Folder => 0,
    };
    let tag = item_guid(&item.id);
    let v = item.version;
    let url = server_relative(site, path);
    let fields = json!({
        "CheckInComment": "",
        "CheckOutType": 2,
        "ContentTag": format!("{{{tag}}},{v},{v}"),
        "CustomizedPageStatus": 0,
        "ETag": format!("\"{{{tag}}},{v}\""),
        "Exists": true,
        "IrmEnabled": false,
        "Length": size.to_string(),
        "Level": 1,
        "LinkingUri": null,
        "LinkingUrl": "",
        "MajorVersion": v,
        "MinorVersion": 0,
        "Name": split_parent(path).1,
        "ServerRelativeUrl": url,
        "TimeCreated": sp_time(&item.created),
        "TimeLastModified": sp_time(&item.modified),
        "Title": null,
        "UIVersion": 512 * v,
        "UIVersionLabel": format!("{v}.0"),
        "UniqueId": unique_id(item),
    });
    let Json::Object(fields) = fields else { return Json::Null };
    let id = format!("{web}/_api/Web/GetFileByServerRelativePath(decodedurl='{}')", url.replace('\'', "''"));
    entity(flavour, "SP.File", &format!("{web}/_api/$metadata#SP.ApiData.Files12/@Element"), Some(&id), fields)
}
