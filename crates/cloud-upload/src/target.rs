//! Upload targets as the command line names them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a file goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Target {
    /// `oss://bucket/key`
    Oss { bucket: String, key: String },
    /// `qingstor://bucket/key`
    QingStor { bucket: String, key: String },
    /// `box://folder/<folder-id>/<name>`
    BoxFolder { folder_id: String, name: String },
    /// `box://file/<file-id>`: a new version.
    BoxFile { file_id: String },
    /// `graph://drive/<id>/<path>`, `graph://site/<id>/<path>`, `graph://group/<id>/<path>`,
    /// `graph://me/<path>`.
    Graph { drive: sharepoint_resumable::Drive, path: String },
    /// `sharepoint-rest://<library>/<folders>/<name>`: a path relative to the site of
    /// `SHAREPOINT_SITE_URL` (or `--endpoint`), through SharePoint REST.
    SharePointRest { path: String },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Oss { bucket, key } => write!(f, "oss://{bucket}/{key}"),
            Target::QingStor { bucket, key } => write!(f, "qingstor://{bucket}/{key}"),
            Target::BoxFolder { folder_id, name } => write!(f, "box://folder/{folder_id}/{name}"),
            Target::BoxFile { file_id } => write!(f, "box://file/{file_id}"),
            Target::Graph { drive, path } => match drive {
                sharepoint_resumable::Drive::Id(id) => write!(f, "graph://drive/{id}/{path}"),
                sharepoint_resumable::Drive::Site(id) => write!(f, "graph://site/{id}/{path}"),
                sharepoint_resumable::Drive::Group(id) => write!(f, "graph://group/{id}/{path}"),
                sharepoint_resumable::Drive::User(id) => write!(f, "graph://user/{id}/{path}"),
                sharepoint_resumable::Drive::Me => write!(f, "graph://me/{path}"),
            },
            Target::SharePointRest { path } => write!(f, "sharepoint-rest://{path}"),
        }
    }
}

impl Target {
    /// The vendor's name, for tables and messages.
    pub(crate) fn vendor(&self) -> &'static str {
        match self {
            Target::Oss { .. } => "OSS",
            Target::QingStor { .. } => "QingStor",
            Target::BoxFolder { .. } | Target::BoxFile { .. } => "Box",
            Target::Graph { .. } => "Graph",
            Target::SharePointRest { .. } => "SharePoint REST",
        }
    }
}

/// Parses a target; the error says which forms exist.
pub(crate) fn parse(text: &str) -> Result<Target, String> {
    let (scheme, rest) = text.split_once("://").ok_or_else(|| format!("{text:?} is not a target URL; {FORMS}"))?;
    let two = |what: &str| -> Result<(String, String), String> {
        match rest.split_once('/') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_owned(), b.to_owned())),
            _ => Err(format!("{text:?}: {what}")),
        }
    };
    match scheme {
        "oss" => two("expected oss://bucket/key").map(|(bucket, key)| Target::Oss { bucket, key }),
        "qingstor" => two("expected qingstor://bucket/key").map(|(bucket, key)| Target::QingStor { bucket, key }),
        "box" => match rest.split_once('/') {
            Some(("folder", path)) => match path.split_once('/') {
                Some((folder_id, name)) if !folder_id.is_empty() && !name.is_empty() => {
                    Ok(Target::BoxFolder { folder_id: folder_id.to_owned(), name: name.to_owned() })
                }
                _ => Err(format!("{text:?}: expected box://folder/<folder-id>/<name>")),
            },
            Some(("file", id)) if !id.is_empty() && !id.contains('/') => Ok(Target::BoxFile { file_id: id.to_owned() }),
            _ => Err(format!("{text:?}: expected box://folder/<folder-id>/<name> or box://file/<file-id>")),
        },
        "graph" => {
            use sharepoint_resumable::Drive;
            let bad = || {
                format!(
                    "{text:?}: expected graph://drive/<id>/<path>, graph://site/<id>/<path>, graph://group/<id>/<path> or graph://me/<path>"
                )
            };
            let (kind, rest) = rest.split_once('/').ok_or_else(bad)?;
            let (drive, path) = match kind {
                "me" => (Drive::Me, rest.to_owned()),
                "drive" | "site" | "group" | "user" => {
                    let (id, path) =
                        rest.split_once('/').filter(|(id, p)| !id.is_empty() && !p.is_empty()).ok_or_else(bad)?;
                    let id = id.to_owned();
                    let drive = match kind {
                        "drive" => Drive::Id(id),
                        "site" => Drive::Site(id),
                        "group" => Drive::Group(id),
                        _ => Drive::User(id),
                    };
                    (drive, path.to_owned())
                }
                _ => return Err(bad()),
            };
            if path.is_empty() {
                return Err(bad());
            }
            Ok(Target::Graph { drive, path })
        }
        "sharepoint-rest" => match rest.trim_matches('/').rsplit_once('/') {
            Some((folder, name)) if !folder.is_empty() && !name.is_empty() => {
                Ok(Target::SharePointRest { path: rest.trim_matches('/').to_owned() })
            }
            _ => Err(format!("{text:?}: expected sharepoint-rest://<library>/<path> (relative to the site)")),
        },
        other => Err(format!("{text:?}: unknown scheme {other:?}; {FORMS}")),
    }
}

/// A bucket (and optional prefix) for `uploads`: `oss://bucket/prefix`, `qingstor://bucket`.
pub(crate) fn parse_bucket(text: &str) -> Result<(String, String, String), String> {
    let (scheme, rest) = text.split_once("://").ok_or_else(|| format!("{text:?}: expected oss://bucket[/prefix]"))?;
    if !matches!(scheme, "oss" | "qingstor") {
        return Err(format!("{text:?}: unfinished uploads are listed for oss:// and qingstor:// buckets"));
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{text:?}: no bucket"));
    }
    Ok((scheme.to_owned(), bucket.to_owned(), prefix.to_owned()))
}

const FORMS: &str = "targets are oss://bucket/key, qingstor://bucket/key, box://folder/<folder-id>/<name>, box://file/<file-id>, graph://drive/<id>/<path>, graph://site/<id>/<path>, graph://group/<id>/<path>, graph://me/<path>, sharepoint-rest://<library>/<path>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        for text in ["oss://b/dir/k.bin", "qingstor://bucket/a b", "box://folder/0/name.iso", "box://file/123"] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
        assert!(parse("oss://bucket").unwrap_err().contains("oss://bucket/key"));
        assert!(parse("s3://b/k").unwrap_err().contains("unknown scheme"));
        for text in
            ["graph://me/dir/x.bin", "graph://drive/b!1/x.bin", "graph://site/s-1/Docs/x.bin", "graph://group/g/x"]
        {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
        assert!(parse("graph://site/only").is_err());
        assert_eq!(
            parse("sharepoint-rest://Shared Documents/dir/a b.bin").unwrap(),
            Target::SharePointRest { path: "Shared Documents/dir/a b.bin".into() }
        );
        assert!(parse("sharepoint-rest://just-a-name").is_err());
        assert_eq!(parse("sharepoint-rest://x/y").unwrap().to_string(), "sharepoint-rest://x/y");
        assert_eq!(parse_bucket("oss://b/p/").unwrap(), ("oss".into(), "b".into(), "p/".into()));
        assert!(parse_bucket("box://folder/0").is_err());
    }
}
