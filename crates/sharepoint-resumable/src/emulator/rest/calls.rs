//! Parsing the REST calls: `/_api/web/GetFolderByServerRelativeUrl('…')/Files/add(…)` and the rest,
//! with their literals and arguments.

#[allow(unused_imports)]
use super::super::{ids::*, items::*, records::*, server::*, sessions::*, tokens::*};
use super::*;
#[allow(unused_imports)]
use super::{errors::*, files::*, replies::*, state::*};

// ---------------------------------------------------------------------------------------------
// The URL grammar.

/// A literal argument of a function segment.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Value {
    /// `'…'` (with `''` unescaped).
    Str(String),
    /// `guid'…'`.
    Guid(String),
    /// An integer (`123`, `123L`).
    Int(i64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A JSON object given through an alias (`@v={"DecodedUrl":"…"}`): its members are named
    /// arguments.
    Object(Vec<(String, Value)>),
}

impl Value {
    pub(super) fn text(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Guid(s) => Some(s),
            _ => None,
        }
    }
}

/// One segment of an `_api` path: a name and, for a function, its arguments (named or
/// positional).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Segment {
    /// The name as written.
    pub(super) name: String,
    /// `None` without parentheses.
    pub(super) args: Option<Vec<(Option<String>, Value)>>,
}

impl Segment {
    pub(super) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The argument named `name` (any case, also inside an object argument), else the
    /// positional argument at `position`.
    pub(super) fn arg(&self, name: &str, position: Option<usize>) -> Option<&Value> {
        let args = self.args.as_deref()?;
        let named = args.iter().find_map(|(n, v)| n.as_deref().filter(|n| n.eq_ignore_ascii_case(name)).map(|_| v));
        let in_object = || {
            args.iter().find_map(|(n, v)| match (n, v) {
                (None, Value::Object(members)) => {
                    members.iter().find(|(m, _)| m.eq_ignore_ascii_case(name)).map(|(_, v)| v)
                }
                _ => None,
            })
        };
        let positional = || {
            let index = position?;
            args.iter().filter(|(n, v)| n.is_none() && !matches!(v, Value::Object(_))).nth(index).map(|(_, v)| v)
        };
        named.or_else(in_object).or_else(positional)
    }
}

/// Splits a decoded `_api` path into segments (on `/` outside parentheses and quotes) and
/// parses each; aliases (`@name`) are looked up in `aliases` (the decoded query string).
pub(super) fn parse_path(path: &str, aliases: &[(String, String)]) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut start = 0;
    let (mut depth, mut quoted) = (0usize, false);
    for (i, c) in path.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.checked_sub(1).ok_or("Unbalanced parentheses.")?,
            '/' if !quoted && depth == 0 => {
                segments.push(parse_segment(&path[start..i], aliases)?);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted || depth != 0 {
        return Err("Unterminated string literal or parentheses.".into());
    }
    segments.push(parse_segment(&path[start..], aliases)?);
    Ok(segments)
}

pub(super) fn parse_segment(text: &str, aliases: &[(String, String)]) -> Result<Segment, String> {
    if text.is_empty() {
        return Err("The path has an empty segment.".into());
    }
    let Some(open) = text.find('(') else {
        return Ok(Segment { name: text.to_owned(), args: None });
    };
    let name = &text[..open];
    let inner = text[open + 1..].strip_suffix(')').ok_or_else(|| format!("The segment {text:?} is malformed."))?;
    if name.is_empty() {
        return Err(format!("The segment {text:?} has no name."));
    }
    let mut args = Vec::new();
    for piece in split_args(inner) {
        let piece = piece.trim();
        if piece.is_empty() {
            if inner.trim().is_empty() {
                break;
            }
            return Err(format!("The segment {text:?} has an empty argument."));
        }
        // `name=value` when an identifier comes before the first `=` (a string literal or a
        // guid'…' starts with a quote or `guid'`, so `=` inside it is not seen here).
        let ident_end = piece.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(piece.len());
        let (arg_name, literal) = match piece[ident_end..].trim_start().strip_prefix('=') {
            Some(value) if ident_end > 0 => (Some(piece[..ident_end].to_owned()), value.trim()),
            _ => (None, piece),
        };
        args.push((arg_name, parse_literal(literal, aliases, true)?));
    }
    Ok(Segment { name: name.to_owned(), args: Some(args) })
}

/// The arguments of a function, split on `,` outside quotes.
pub(super) fn split_args(inner: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in inner.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            ',' if !quoted => {
                pieces.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&inner[start..]);
    pieces
}

pub(super) fn parse_literal(text: &str, aliases: &[(String, String)], alias_allowed: bool) -> Result<Value, String> {
    let quoted = |s: &str| -> Option<String> {
        let body = s.strip_prefix('\'')?.strip_suffix('\'')?;
        // Every quote inside comes doubled.
        let mut out = String::with_capacity(body.len());
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            if c == '\'' && chars.next() != Some('\'') {
                return None;
            }
            out.push(c);
        }
        Some(out)
    };
    if text.starts_with('\'') {
        return quoted(text).map(Value::Str).ok_or_else(|| format!("The string literal {text} is malformed."));
    }
    // `get`, not indexing: the text is decoded user input, and byte 4 may fall inside a character.
    if let Some(rest) = text.get(..4).filter(|p| p.eq_ignore_ascii_case("guid")).and_then(|_| text.get(4..))
        && rest.starts_with('\'')
    {
        return quoted(rest).map(Value::Guid).ok_or_else(|| format!("The guid literal {text} is malformed."));
    }
    if let Some(alias) = text.strip_prefix('@') {
        if !alias_allowed {
            return Err(format!("The alias {text} names another alias."));
        }
        let value = aliases
            .iter()
            .find(|(n, _)| n.strip_prefix('@').is_some_and(|n| n.eq_ignore_ascii_case(alias)))
            .map(|(_, v)| v.trim())
            .ok_or_else(|| format!("The parameter alias {text} has no value in the query string."))?;
        if value.starts_with('{') {
            return json_object(value);
        }
        return parse_literal(value, aliases, false);
    }
    match text.to_ascii_lowercase().as_str() {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        "null" => return Ok(Value::Null),
        _ => {}
    }
    let digits = text.strip_suffix(['L', 'l']).unwrap_or(text);
    let unsigned = digits.strip_prefix('-').unwrap_or(digits);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return digits.parse().map(Value::Int).map_err(|_| format!("The number {text} is out of range."));
    }
    Err(format!("The literal {text} is not valid."))
}

/// A JSON object alias as named arguments (strings, numbers, booleans, null).
pub(super) fn json_object(text: &str) -> Result<Value, String> {
    let Ok(Json::Object(members)) = serde_json::from_str::<Json>(text) else {
        return Err(format!("The parameter alias value {text} is not a JSON object."));
    };
    let members = members
        .into_iter()
        .filter(|(k, _)| k != "__metadata")
        .map(|(k, v)| {
            let v = match v {
                Json::String(s) => Value::Str(s),
                Json::Bool(b) => Value::Bool(b),
                Json::Null => Value::Null,
                Json::Number(n) => n.as_i64().map(Value::Int).ok_or("A number in the alias is not an integer.")?,
                _ => return Err("The alias holds a nested value.".to_owned()),
            };
            Ok((k, v))
        })
        .collect::<Result<_, String>>()?;
    Ok(Value::Object(members))
}

/// How a request names a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum FileRef {
    /// By server-relative (or site-relative) path, decoded.
    Path(String),
    /// By `UniqueId`.
    Id(String),
}

/// A recognised REST call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Call {
    /// `POST contextinfo`
    ContextInfo,
    /// `POST {folder}/Files/add(…)` or `…/Files/AddUsingPath(…)`.
    AddFile {
        /// The folder, decoded (server- or site-relative).
        folder: String,
        /// The `url` / `DecodedUrl` argument.
        name: String,
        /// `overwrite`.
        overwrite: bool,
    },
    /// `GET {file}`.
    GetFile(FileRef),
    /// `GET {file}/$value`.
    Download(FileRef),
    /// `{file}/StartUpload(…)` and the rest of the family.
    Chunk {
        /// Which one.
        op: Operation,
        /// The file.
        file: FileRef,
        /// `uploadId`, lower case without braces (`None`: not in the URL; CancelUpload and
        /// GetUploadStatus may carry it in a JSON body).
        upload_id: Option<String>,
        /// `fileOffset`.
        offset: Option<u64>,
    },
}

impl Call {
    pub(super) fn operation(&self) -> Operation {
        match self {
            Call::ContextInfo => Operation::ContextInfo,
            Call::AddFile { .. } => Operation::AddFile,
            Call::GetFile(_) => Operation::GetFile,
            Call::Download(_) => Operation::DownloadFile,
            Call::Chunk { op, .. } => *op,
        }
    }

    pub(super) fn file(&self) -> Option<&FileRef> {
        match self {
            Call::GetFile(f) | Call::Download(f) | Call::Chunk { file: f, .. } => Some(f),
            _ => None,
        }
    }
}

/// A GUID in its plain lower-case form (braces, `guid'…'` already gone); `None` if it is not one.
pub(super) fn normalize_guid(text: &str) -> Option<String> {
    let t = text.trim().trim_start_matches('{').trim_end_matches('}');
    let groups: Vec<&str> = t.split('-').collect();
    let shape = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
    (shape && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))).then(|| t.to_ascii_lowercase())
}

/// The call a request makes, from the segments after `_api/`.
pub(super) fn recognise(method: &str, segments: &[Segment]) -> Result<Call, SpError> {
    let wrong_method = || SpError::bad_query(format!("The HTTP method {method} is not allowed for this resource."));
    let bad_query = |m: String| SpError::bad_query(m);
    match segments {
        [one] if one.is("contextinfo") && one.args.is_none() => {
            if method == "POST" {
                Ok(Call::ContextInfo)
            } else {
                Err(wrong_method())
            }
        }
        [web, folder, files, add] if web.is("web") && files.is("files") && files.args.is_none() => {
            let folder = folder_path(folder).ok_or_else(|| SpError::not_found(&folder.name))?;
            let (name, overwrite) = if add.is("add") || add.is("addusingpath") {
                let name = add
                    .arg("url", Some(0))
                    .or_else(|| add.arg("decodedurl", Some(0)))
                    .and_then(Value::text)
                    .ok_or_else(|| bad_query("The file name (url or DecodedUrl) is missing.".into()))?;
                let overwrite = match add.arg("overwrite", Some(1)) {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(bad_query("overwrite must be true or false.".into())),
                };
                (name.to_owned(), overwrite)
            } else {
                return Err(SpError::not_found(&add.name));
            };
            if method != "POST" {
                return Err(wrong_method());
            }
            Ok(Call::AddFile { folder, name, overwrite })
        }
        [web, file, rest @ ..] if web.is("web") && rest.len() <= 1 => {
            let file = file_ref(file)?;
            let Some(action) = rest.first() else {
                return if method == "GET" { Ok(Call::GetFile(file)) } else { Err(wrong_method()) };
            };
            if action.is("$value") && action.args.is_none() {
                return if method == "GET" { Ok(Call::Download(file)) } else { Err(wrong_method()) };
            }
            let op = [
                ("startupload", Operation::StartUpload),
                ("continueupload", Operation::ContinueUpload),
                ("finishupload", Operation::FinishUpload),
                ("cancelupload", Operation::CancelUpload),
                ("getuploadstatus", Operation::GetUploadStatus),
            ]
            .into_iter()
            .find(|(n, _)| action.is(n))
            .map(|(_, op)| op)
            .ok_or_else(|| SpError::not_found(&action.name))?;
            let allowed = method == "POST" || (method == "GET" && op == Operation::GetUploadStatus);
            if !allowed {
                return Err(wrong_method());
            }
            let upload_id = match action.arg("uploadid", Some(0)) {
                None => None,
                Some(v) => Some(
                    v.text()
                        .and_then(normalize_guid)
                        .ok_or_else(|| bad_query("The uploadId parameter is not a valid Guid.".into()))?,
                ),
            };
            let offset = match action.arg("fileoffset", Some(1)) {
                None => None,
                Some(Value::Int(n)) => Some(u64::try_from(*n).map_err(|_| SpError::bad_offset())?),
                Some(Value::Str(s)) => Some(s.trim().parse().map_err(|_| SpError::bad_offset())?),
                Some(_) => return Err(bad_query("The fileOffset parameter is not a valid Int64.".into())),
            };
            let needs_id = matches!(op, Operation::StartUpload | Operation::ContinueUpload | Operation::FinishUpload);
            if needs_id && upload_id.is_none() {
                return Err(bad_query("The uploadId parameter is missing.".into()));
            }
            let needs_offset = matches!(op, Operation::ContinueUpload | Operation::FinishUpload);
            if needs_offset && offset.is_none() {
                return Err(bad_query("The fileOffset parameter is missing.".into()));
            }
            Ok(Call::Chunk { op, file, upload_id, offset })
        }
        _ => Err(SpError::not_found(&segments.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join("/"))),
    }
}

pub(super) fn folder_path(segment: &Segment) -> Option<String> {
    if segment.is("getfolderbyserverrelativeurl") {
        segment.arg("serverrelativeurl", Some(0)).and_then(Value::text).map(str::to_owned)
    } else if segment.is("getfolderbyserverrelativepath") {
        segment.arg("decodedurl", Some(0)).and_then(Value::text).map(str::to_owned)
    } else {
        None
    }
}

pub(super) fn file_ref(segment: &Segment) -> Result<FileRef, SpError> {
    let missing = || SpError::bad_query(format!("{} needs its argument.", segment.name));
    if segment.is("getfilebyserverrelativeurl") {
        let url = segment.arg("serverrelativeurl", Some(0)).and_then(Value::text).ok_or_else(missing)?;
        Ok(FileRef::Path(url.to_owned()))
    } else if segment.is("getfilebyserverrelativepath") {
        let url = segment.arg("decodedurl", Some(0)).and_then(Value::text).ok_or_else(missing)?;
        Ok(FileRef::Path(url.to_owned()))
    } else if segment.is("getfilebyid") {
        let id = segment.arg("uniqueid", Some(0)).and_then(Value::text).ok_or_else(missing)?;
        let id = normalize_guid(id).ok_or_else(|| SpError::bad_query("The file id is not a valid Guid."))?;
        Ok(FileRef::Id(id))
    } else {
        Err(SpError::not_found(&segment.name))
    }
}

/// The site (its index in `sites`) and the decoded `_api` path of a request path; `None` when
/// the path is not under the `_api` of a known site.
pub(super) fn split_site(sites: &[(String, String)], decoded: &str) -> Option<(usize, String)> {
    let lower = decoded.to_ascii_lowercase();
    let at = lower.find("/_api/")?;
    let site = decoded[..at].trim_end_matches('/');
    let index = sites.iter().position(|(s, _)| s.trim_end_matches('/').eq_ignore_ascii_case(site))?;
    Some((index, decoded[at + "/_api/".len()..].to_owned()))
}

/// The drive path ("" for the library root) of a server-relative (`/sites/x/Shared Documents/a`)
/// or site-relative (`Shared Documents/a`) path of `site`; `None` when it is outside the
/// library. Absolute URLs lose their scheme and host first.
pub(super) fn library_path(site: &str, given: &str) -> Option<String> {
    let mut given = given.trim();
    for scheme in ["https://", "http://"] {
        // `get`, not indexing: the end of the scheme may fall inside a character of user input.
        if given.len() > scheme.len()
            && let Some(rest) =
                given.get(..scheme.len()).filter(|h| h.eq_ignore_ascii_case(scheme)).and(given.get(scheme.len()..))
        {
            given = rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    let strip = |s: &str, prefix: &str| -> Option<String> {
        let head = s.get(..prefix.len())?;
        head.eq_ignore_ascii_case(prefix).then(|| s[prefix.len()..].to_owned())
    };
    let rest = if given.starts_with('/') {
        strip(given, &format!("{}/{LIBRARY}", site.trim_end_matches('/')))?
    } else {
        strip(given, LIBRARY)?
    };
    let rest = rest.strip_suffix('/').unwrap_or(&rest);
    match rest.strip_prefix('/') {
        None if rest.is_empty() => Some(String::new()),
        Some(inner) if !inner.is_empty() && !inner.split('/').any(str::is_empty) => Some(inner.to_owned()),
        _ => None,
    }
}

/// The server-relative URL of a drive path in a site.
pub(super) fn server_relative(site: &str, path: &str) -> String {
    let library = format!("{}/{LIBRARY}", site.trim_end_matches('/'));
    if path.is_empty() { library } else { format!("{library}/{path}") }
}

/// Whether SharePoint takes `name` as a file name.
pub(super) fn valid_name(name: &str) -> bool {
    const FORBIDDEN: &[char] = &['"', '*', ':', '<', '>', '?', '/', '\\', '|'];
    !name.is_empty()
        && name.chars().count() <= MAX_NAME
        && !name.contains(FORBIDDEN)
        && !name.chars().any(char::is_control)
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && !name.ends_with('.')
}
