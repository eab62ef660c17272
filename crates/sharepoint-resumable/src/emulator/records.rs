//! What the Graph emulator keeps: drives, items, upload sessions, and the errors it answers.

use super::*;
#[allow(unused_imports)]
use super::{ids::*, items::*, server::*, sessions::*, tokens::*};

/// Which error document an answer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Style {
    /// Graph: `innerError` with date, request-id and client-request-id.
    Graph,
    /// The upload host: lower-case `innererror` with a detail code.
    Upload,
    /// The identity platform: `error` and `error_description`.
    OAuth,
}

/// An error answer.
#[derive(Clone, Debug)]
pub(super) struct GraphError {
    pub(super) status: u16,
    pub(super) code: String,
    pub(super) message: String,
    /// The detail code (`fragmentOverlap`, `expiredToken`…).
    pub(super) inner: Option<String>,
    pub(super) retry_after: Option<u64>,
    /// A 401 for an expired token (`WWW-Authenticate: … expired_token`).
    pub(super) expired: bool,
}

impl GraphError {
    pub(super) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), inner: None, retry_after: None, expired: false }
    }

    pub(super) fn inner(mut self, code: &str) -> Self {
        self.inner = Some(code.into());
        self
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalidRequest", message)
    }

    pub(super) fn item_not_found() -> Self {
        Self::new(404, "itemNotFound", "The resource could not be found.")
    }

    pub(super) fn session_not_found() -> Self {
        Self::new(404, "itemNotFound", "The upload session was not found: it expired, was cancelled or completed.")
            .inner("uploadSessionNotFound")
    }

    pub(super) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, "unauthenticated", message)
    }

    pub(super) fn name_exists(message: &str) -> Self {
        Self::new(409, "nameAlreadyExists", message)
    }

    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "generalException", message)
    }

    pub(super) fn quota_exceeded() -> Self {
        Self::new(
            507,
            "quotaLimitReached",
            "Insufficient Space Available: the drive's quota does not leave room for the file.",
        )
    }

    pub(super) fn too_large() -> Self {
        Self::new(413, "invalidRequest", "The entity size in the request exceeds the maximum limit.")
    }

    pub(super) fn storage(e: &std::io::Error) -> Self {
        if is_unstorable(e) {
            Self::invalid("The emulator's directory storage cannot keep this path as a file.")
        } else {
            Self::internal(e.to_string())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Conflict {
    Fail,
    Replace,
    Rename,
}

impl Conflict {
    pub(super) fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "fail" => Some(Self::Fail),
            "replace" => Some(Self::Replace),
            "rename" => Some(Self::Rename),
            _ => None,
        }
    }
}

/// The bytes a session has received.
#[derive(Debug)]
pub(super) enum Content {
    /// Fragments in memory, in order.
    Memory(Vec<Bytes>),
    /// One file in the data directory's `.uploads`, written at each fragment's offset.
    File(PathBuf),
    /// Nothing kept (discard mode).
    Discarded,
}

impl Content {
    /// Drops what was kept (a session that ends without a commit).
    pub(super) fn discard(self) {
        if let Content::File(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[derive(Debug)]
pub(super) struct SessionRec {
    pub(super) drive: String,
    /// The target path (`dir/name.bin`).
    pub(super) path: String,
    /// The item replaced, for `items/{id}/createUploadSession`.
    pub(super) replace_id: Option<String>,
    /// Who created it (for the log).
    pub(super) owner: String,
    pub(super) conflict: Conflict,
    pub(super) defer_commit: bool,
    /// The total size: `fileSize`, else the first fragment's total.
    pub(super) total: Option<u64>,
    /// Bytes received: the next expected byte.
    pub(super) received: u64,
    pub(super) content: Content,
    pub(super) quickxor: QuickXor,
    pub(super) tempauth: String,
    pub(super) created: Instant,
    pub(super) created_at: DateTime<Utc>,
    pub(super) expires: Instant,
    pub(super) expires_at: DateTime<Utc>,
    /// A fragment is on its way in.
    pub(super) busy: bool,
    pub(super) description: Option<String>,
    pub(super) file_system_info: Option<FileSystemInfo>,
}

impl SessionRec {
    pub(super) fn complete(&self) -> bool {
        self.total.is_some_and(|t| self.received >= t)
    }

    /// The status document; `with_end` writes the range as `"N-{T-1}"` once the total is known.
    pub(super) fn status(&self, with_end: bool) -> UploadSession {
        let next = match self.total {
            _ if self.complete() => Vec::new(),
            Some(total) if with_end => vec![format!("{}-{}", self.received, total - 1)],
            _ => vec![format!("{}-", self.received)],
        };
        UploadSession { upload_url: None, expiration_date_time: Some(iso(self.expires_at)), next_expected_ranges: next }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Kind {
    Folder,
    File { blob: Blob, size: u64, quickxor: [u8; 20], mime: String },
}

#[derive(Clone, Debug)]
pub(super) struct ItemRec {
    pub(super) id: String,
    pub(super) kind: Kind,
    /// Bumped by every change of the content: the number in eTag and cTag.
    pub(super) version: u64,
    pub(super) created: String,
    pub(super) modified: String,
    pub(super) description: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct Store {
    /// Every item by (drive, path); the root of a drive has the path "".
    pub(super) items: BTreeMap<(String, String), ItemRec>,
    /// Item ids → (drive, path).
    pub(super) ids: HashMap<String, (String, String)>,
    pub(super) sessions: HashMap<String, SessionRec>,
    /// Tokens the token endpoint issued: who they belong to (the client id) and their expiry.
    pub(super) issued: HashMap<String, (String, Instant)>,
    pub(super) faults: Vec<Fault>,
    /// The latest requests (bounded), and totals of all.
    pub(super) log: upload_core::emulator::RequestLog<Operation>,
    /// The SharePoint REST host's sessions, digests and stubs.
    pub(super) rest: rest::RestState,
    /// The drives that are document libraries (`EmulatorConfig::document_libraries`).
    pub(super) libraries: Vec<String>,
}

impl Store {
    /// The path of an item id in a drive ("root" is the root's alias).
    pub(super) fn path_of(&self, drive: &str, id: &str) -> Option<String> {
        if id == "root" {
            return Some(String::new());
        }
        self.ids.get(id).filter(|(d, _)| d == drive).map(|(_, p)| p.clone())
    }

    pub(super) fn item(&self, drive: &str, path: &str) -> Option<&ItemRec> {
        self.items.get(&(drive.to_owned(), path.to_owned()))
    }

    /// The bytes of every file in a drive (what counts against its quota).
    pub(super) fn drive_bytes(&self, drive: &str) -> u64 {
        self.items
            .iter()
            .filter(|((d, _), _)| d == drive)
            .map(|(_, item)| match item.kind {
                Kind::File { size, .. } => size,
                Kind::Folder => 0,
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Removes sessions past their idle expiry.
    pub(super) fn sweep(&mut self) {
        let now = Instant::now();
        let dead: Vec<String> =
            self.sessions.iter().filter(|(_, s)| now >= s.expires).map(|(id, _)| id.clone()).collect();
        for id in dead {
            if let Some(s) = self.sessions.remove(&id) {
                s.content.discard();
            }
        }
    }
}

pub(super) struct Shared {
    pub(super) config: EmulatorConfig,
    /// Every drive: `drives`, `me_drive` and those of sites and groups.
    pub(super) drives: Vec<String>,
    pub(super) storage: Storage,
    /// `http://127.0.0.1:<upload port>`.
    pub(super) upload_base: String,
    pub(super) store: Mutex<Store>,
}

impl Shared {
    pub(super) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}
