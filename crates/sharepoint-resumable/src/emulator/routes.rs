//! The pure part of the emulator: which operation a request is (Graph paths with their drive
//! forms, `root:` and `items/` addressing and Graph's colon syntax, also as one percent-encoded
//! id segment the way Kiota-generated SDKs send it; the token endpoint; upload URLs), strict
//! decoding of path segments into item names, and `Content-Range`.

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use upload_core::emulator::{decode, decode_strict};

use super::Operation;

/// Which listener a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Host {
    /// Graph (`/v1.0/…`, `/beta/…`) and the identity platform's token endpoint.
    Graph,
    /// The pre-authenticated upload URLs (`/up/{session}`).
    Upload,
}

/// How a Graph path names its drive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum DriveRef {
    /// `/drives/{id}`
    Id(String),
    /// `/me/drive`
    Me,
    /// `/sites/{id}/drive`
    Site(String),
    /// `/groups/{id}/drive`
    Group(String),
    /// `/users/{id}/drive`
    User(String),
}

/// How a Graph path names its item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// `items/{id}` (and `root`, the alias of the drive's root folder).
    Item(String),
    /// `root:/{path}:` or `items/{parent}:/{path}:`: a path below an item (`parent` is "root"
    /// for the first form), still percent-encoded.
    Path {
        /// The item the path starts from.
        parent: String,
        /// The path as it arrived, segments percent-encoded.
        raw: String,
    },
}

/// A recognised request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// `POST /{tenant}/oauth2/v2.0/token` on the Graph listener.
    Token {
        /// The tenant in the path, decoded.
        tenant: String,
    },
    /// A Graph call on a drive item.
    Graph {
        /// Which call.
        op: Operation,
        /// The drive.
        drive: DriveRef,
        /// The item.
        target: Target,
    },
    /// A call on an upload URL.
    Upload {
        /// Which call.
        op: Operation,
        /// The session id in the path.
        session: String,
    },
}

impl Route {
    pub(super) fn operation(&self) -> Operation {
        match self {
            Route::Token { .. } => Operation::Token,
            Route::Graph { op, .. } | Route::Upload { op, .. } => *op,
        }
    }
}

/// The route of a request; `None` when the listener does not serve it. `path` is the request
/// path exactly as it arrived (percent-encoded).
pub(super) fn route(host: Host, method: &str, path: &str) -> Option<Route> {
    match host {
        Host::Upload => {
            let session = path.strip_prefix("/up/")?;
            if session.is_empty() || session.contains('/') {
                return None;
            }
            let op = match method {
                "PUT" => Operation::UploadFragment,
                "GET" => Operation::GetSessionStatus,
                "DELETE" => Operation::CancelSession,
                "POST" => Operation::CommitSession,
                _ => return None,
            };
            Some(Route::Upload { op, session: session.to_owned() })
        }
        Host::Graph => {
            if let Some(tenant) = token_tenant(path) {
                return (method == "POST").then(|| Route::Token { tenant: decode(tenant) });
            }
            let rest = path.strip_prefix("/v1.0/").or_else(|| path.strip_prefix("/beta/"))?;
            let (drive, rest) = drive_prefix(rest)?;
            let (target, action) = item_target(rest)?;
            let op = match (method, action) {
                ("POST", "/createUploadSession") => Operation::CreateUploadSession,
                ("GET", "") => Operation::GetItem,
                ("GET", "/content") => Operation::DownloadItem,
                ("PUT", "") => Operation::CommitBySourceUrl,
                _ => return None,
            };
            Some(Route::Graph { op, drive, target })
        }
    }
}

/// The tenant of `/{tenant}/oauth2/v2.0/token`.
fn token_tenant(path: &str) -> Option<&str> {
    let (tenant, rest) = path.strip_prefix('/')?.split_once('/')?;
    (rest == "oauth2/v2.0/token" && !tenant.is_empty()).then_some(tenant)
}

/// The drive of a Graph path (after `/v1.0/`) and what follows it.
fn drive_prefix(rest: &str) -> Option<(DriveRef, &str)> {
    fn id_then_drive(after: &str) -> Option<(String, &str)> {
        let (id, after) = after.split_once('/')?;
        let after = after.strip_prefix("drive/")?;
        (!id.is_empty()).then(|| (decode(id), after))
    }
    let (first, after) = rest.split_once('/')?;
    match first {
        "drives" => {
            let (id, after) = after.split_once('/')?;
            (!id.is_empty()).then(|| (DriveRef::Id(decode(id)), after))
        }
        "me" => Some((DriveRef::Me, after.strip_prefix("drive/")?)),
        "sites" => id_then_drive(after).map(|(id, a)| (DriveRef::Site(id), a)),
        "groups" => id_then_drive(after).map(|(id, a)| (DriveRef::Group(id), a)),
        "users" => id_then_drive(after).map(|(id, a)| (DriveRef::User(id), a)),
        _ => None,
    }
}

/// The item of a path after its drive (`root…` or `items/…`) and the action after it (``,
/// `/content`, `/createUploadSession`). An `items/` id that decodes to `{item}:/{path}:` (the
/// closing colon optional) is that path below that item: Kiota-generated SDKs put the whole
/// `root:/dir/a.bin:` into the id segment, percent-encoded (`items/root%3A%2Fdir%2Fa.bin%3A`).
fn item_target(rest: &str) -> Option<(Target, &str)> {
    if let Some(p) = rest.strip_prefix("root:") {
        let (raw, action) = colon_path(p)?;
        return Some((Target::Path { parent: "root".into(), raw }, action));
    }
    if rest == "root" || rest.starts_with("root/") {
        return Some((Target::Item("root".into()), &rest["root".len()..]));
    }
    let after = rest.strip_prefix("items/")?;
    let end = after.find([':', '/']).unwrap_or(after.len());
    let (id, tail) = after.split_at(end);
    if id.is_empty() {
        return None;
    }
    match tail.strip_prefix(':') {
        Some(p) => {
            let (raw, action) = colon_path(p)?;
            Some((Target::Path { parent: decode(id), raw }, action))
        }
        None => Some((encoded_address(id).unwrap_or_else(|| Target::Item(decode(id))), tail)),
    }
}

/// The path of an id segment that is a whole Graph address percent-encoded as one segment
/// (`root%3A%2Fdir%2Fa.bin%3A` is `root:/dir/a.bin:`); `None` when it is a plain id. The segment
/// is decoded once: the names inside are taken as they are (the SDK encoded them once, with the
/// rest of the segment). They come back percent-encoded, so that [`decode_path`] checks them as
/// it checks every path (bytes that are not UTF-8, forbidden characters, empty segments).
fn encoded_address(id: &str) -> Option<Target> {
    let bytes: Vec<u8> = percent_decode_str(id).collect();
    let colon = bytes.iter().position(|b| *b == b':')?;
    let (parent, rest) = bytes.split_at(colon);
    let path = rest.strip_prefix(b":/")?;
    let path = path.strip_suffix(b":").unwrap_or(path);
    let parent = std::str::from_utf8(parent).ok()?;
    if parent.is_empty() || parent.contains('/') || path.is_empty() || path.contains(&b':') {
        return None;
    }
    let raw: Vec<String> =
        path.split(|b| *b == b'/').map(|segment| percent_encode(segment, NON_ALPHANUMERIC).to_string()).collect();
    Some(Target::Path { parent: parent.to_owned(), raw: raw.join("/") })
}

/// `/{path}:{action}` or `/{path}` (Graph allows the closing colon to be left out when nothing
/// follows): the raw path and the action. A colon inside a name arrives as `%3A`, so the first
/// raw colon ends the path.
fn colon_path(p: &str) -> Option<(String, &str)> {
    let p = p.strip_prefix('/')?;
    let (raw, action) = match p.find(':') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (p, ""),
    };
    (!raw.is_empty()).then(|| (raw.to_owned(), action))
}

/// The names of a raw path, each segment percent-decoded on its own (so `%2F` is a character of
/// a name, refused, not a separator) and strictly (bytes that are not UTF-8 are refused rather
/// than replaced, so two paths never become one name). The error says what is wrong.
pub(super) fn decode_path(raw: &str) -> Result<Vec<String>, String> {
    raw.split('/')
        .map(|segment| {
            let name = decode_strict(segment)
                .ok_or_else(|| format!("The path segment {segment:?} is not UTF-8 after percent-decoding."))?;
            check_name(&name)?;
            Ok(name)
        })
        .collect()
}

/// The characters OneDrive and SharePoint refuse in item names.
const FORBIDDEN: &[char] = &['"', '*', ':', '<', '>', '?', '/', '\\', '|'];

/// Whether a decoded segment can be an item name.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("The path has an empty segment.".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid item name."));
    }
    if name.contains(FORBIDDEN) || name.chars().any(char::is_control) {
        return Err(format!("The item name {name:?} contains characters that are not allowed."));
    }
    Ok(())
}

/// `bytes first-last/total` (inclusive, the total known) → (first, last, total); `None` when it
/// is malformed or inconsistent (`first > last` or `last >= total`).
pub(super) fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total) = (number(first)?, number(last)?, number(total)?);
    (first <= last && last < total).then_some((first, last, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(method: &str, path: &str) -> Option<Route> {
        route(Host::Graph, method, path)
    }

    fn at(parent: &str, raw: &str) -> Target {
        Target::Path { parent: parent.into(), raw: raw.into() }
    }

    #[test]
    fn every_drive_form_and_addressing() {
        let create = Operation::CreateUploadSession;
        assert_eq!(
            graph("POST", "/v1.0/drives/drive-1/root:/dir/a%20b.bin:/createUploadSession"),
            Some(Route::Graph {
                op: create,
                drive: DriveRef::Id("drive-1".into()),
                target: at("root", "dir/a%20b.bin")
            })
        );
        assert_eq!(
            graph("POST", "/v1.0/me/drive/items/01ABC:/name.bin:/createUploadSession"),
            Some(Route::Graph { op: create, drive: DriveRef::Me, target: at("01ABC", "name.bin") })
        );
        assert_eq!(
            graph("POST", "/v1.0/sites/contoso.sharepoint.com,1,2/drive/items/01X/createUploadSession"),
            Some(Route::Graph {
                op: create,
                drive: DriveRef::Site("contoso.sharepoint.com,1,2".into()),
                target: Target::Item("01X".into())
            })
        );
        assert_eq!(
            graph("POST", "/v1.0/groups/g%201/drive/root:/x:/createUploadSession"),
            Some(Route::Graph { op: create, drive: DriveRef::Group("g 1".into()), target: at("root", "x") })
        );
        assert_eq!(
            graph("GET", "/v1.0/users/u@contoso.com/drive/root:/x.bin"),
            Some(Route::Graph {
                op: Operation::GetItem,
                drive: DriveRef::User("u@contoso.com".into()),
                target: at("root", "x.bin")
            })
        );
        // The closing colon may be there with nothing after it.
        assert_eq!(
            graph("GET", "/v1.0/me/drive/root:/x.bin:"),
            Some(Route::Graph { op: Operation::GetItem, drive: DriveRef::Me, target: at("root", "x.bin") })
        );
        assert_eq!(
            graph("GET", "/beta/drives/d/root:/a/b.bin:/content"),
            Some(Route::Graph {
                op: Operation::DownloadItem,
                drive: DriveRef::Id("d".into()),
                target: at("root", "a/b.bin")
            })
        );
        assert_eq!(
            graph("GET", "/v1.0/drives/d/items/01ID/content"),
            Some(Route::Graph {
                op: Operation::DownloadItem,
                drive: DriveRef::Id("d".into()),
                target: Target::Item("01ID".into())
            })
        );
        assert_eq!(
            graph("GET", "/v1.0/me/drive/root"),
            Some(Route::Graph { op: Operation::GetItem, drive: DriveRef::Me, target: Target::Item("root".into()) })
        );
        assert_eq!(
            graph("POST", "/v1.0/me/drive/items/root:/n.bin:/createUploadSession"),
            Some(Route::Graph { op: create, drive: DriveRef::Me, target: at("root", "n.bin") })
        );
        // The explicit commit: PUT on the item's address.
        assert_eq!(
            graph("PUT", "/v1.0/drives/d/items/01P:/n.bin:"),
            Some(Route::Graph {
                op: Operation::CommitBySourceUrl,
                drive: DriveRef::Id("d".into()),
                target: at("01P", "n.bin")
            })
        );
        assert_eq!(
            graph("PUT", "/v1.0/me/drive/root:/a/n.bin"),
            Some(Route::Graph { op: Operation::CommitBySourceUrl, drive: DriveRef::Me, target: at("root", "a/n.bin") })
        );
    }

    #[test]
    fn kiota_encodes_the_whole_address_as_one_id_segment() {
        let create = Operation::CreateUploadSession;
        assert_eq!(
            graph("POST", "/v1.0/drives/d/items/root%3A%2Fdir%2Fa.bin%3A/createUploadSession"),
            Some(Route::Graph { op: create, drive: DriveRef::Id("d".into()), target: at("root", "dir/a%2Ebin") })
        );
        // A parent id, no closing colon, names with encoded characters (decoded once: the
        // names are re-encoded whole and decode back to what the SDK had).
        let Some(Route::Graph { target, .. }) =
            graph("POST", "/v1.0/me/drive/items/01P%3A%2Fa%20%231%25.bin/createUploadSession")
        else {
            panic!("not routed")
        };
        let Target::Path { parent, raw } = target else { panic!("{target:?}") };
        assert_eq!(parent, "01P");
        assert_eq!(decode_path(&raw).unwrap(), ["a #1%.bin"]);
        assert_eq!(
            graph("GET", "/v1.0/me/drive/items/root%3A%2Fx.bin%3A/content").map(|r| r.operation()),
            Some(Operation::DownloadItem)
        );
        // Not UTF-8 inside: refused when the names are decoded.
        let Some(Route::Graph { target: Target::Path { raw, .. }, .. }) =
            graph("GET", "/v1.0/me/drive/items/root%3A%2F%FF.bin%3A")
        else {
            panic!("not routed")
        };
        assert!(decode_path(&raw).is_err());
        // Plain ids (an encoded colon that is not an address stays an id).
        for id in ["01ABC", "a%3Ab", "%3A%2Fx", "root%3A", "root%3A%2F%3A"] {
            assert_eq!(
                graph("GET", &format!("/v1.0/me/drive/items/{id}")),
                Some(Route::Graph { op: Operation::GetItem, drive: DriveRef::Me, target: Target::Item(decode(id)) }),
                "{id}"
            );
        }
    }

    #[test]
    fn what_is_not_served() {
        // Wrong method, unknown action, missing pieces, the other host's paths.
        assert_eq!(graph("GET", "/v1.0/me/drive/root:/x:/createUploadSession"), None);
        assert_eq!(graph("PUT", "/v1.0/me/drive/root:/x:/content"), None);
        assert_eq!(graph("POST", "/v1.0/me/drive/root:/x:/copy"), None);
        assert_eq!(graph("GET", "/v1.0/me/drive/root:"), None);
        assert_eq!(graph("GET", "/v1.0/me/drive/root:/"), None);
        assert_eq!(graph("GET", "/v1.0/me/drives/root"), None);
        assert_eq!(graph("GET", "/v1.0/drives//root"), None);
        assert_eq!(graph("GET", "/v1.0/sites/s/root:/x"), None);
        assert_eq!(graph("GET", "/v2.0/me/drive/root"), None);
        assert_eq!(graph("PUT", "/up/abc"), None);
        assert_eq!(route(Host::Upload, "GET", "/v1.0/me/drive/root"), None);
        assert_eq!(route(Host::Upload, "POST", "/emulator-tenant/oauth2/v2.0/token"), None);
    }

    #[test]
    fn token_and_upload_routes() {
        assert_eq!(
            graph("POST", "/emulator-tenant/oauth2/v2.0/token"),
            Some(Route::Token { tenant: "emulator-tenant".into() })
        );
        assert_eq!(graph("GET", "/emulator-tenant/oauth2/v2.0/token"), None);
        assert_eq!(graph("POST", "/oauth2/v2.0/token"), None);
        let up = |m: &str| route(Host::Upload, m, "/up/0123abcd").map(|r| r.operation());
        assert_eq!(up("PUT"), Some(Operation::UploadFragment));
        assert_eq!(up("GET"), Some(Operation::GetSessionStatus));
        assert_eq!(up("DELETE"), Some(Operation::CancelSession));
        assert_eq!(up("POST"), Some(Operation::CommitSession));
        assert_eq!(up("PATCH"), None);
        assert_eq!(route(Host::Upload, "PUT", "/up/"), None);
        assert_eq!(route(Host::Upload, "PUT", "/up/a/b"), None);
    }

    #[test]
    fn segments_decode_one_by_one_and_strictly() {
        assert_eq!(decode_path("dir/a%20b%23%25.bin").unwrap(), ["dir", "a b#%.bin"]);
        assert_eq!(decode_path("%E4%B8%AD%E6%96%87/a+b.bin").unwrap(), ["中文", "a+b.bin"]);
        // Not UTF-8, an encoded slash, a colon, empty and dot segments.
        for bad in ["%FF.bin", "a%2Fb", "a%3Ab", "a//b", "a/", "./x", "a/../b", "a%5Cb", "a%0Ab"] {
            assert!(decode_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("bytes 0-25/128"), Some((0, 25, 128)));
        assert_eq!(content_range(" bytes 327680-655359/1000000 "), Some((327680, 655359, 1000000)));
        assert_eq!(content_range("bytes 127-127/128"), Some((127, 127, 128)));
        for bad in
            ["bytes=0-1/2", "bytes 0-1/*", "bytes */128", "bytes 5-4/10", "bytes 0-10/10", "0-1/2", "bytes +0-1/2"]
        {
            assert_eq!(content_range(bad), None, "{bad}");
        }
    }
}
