//! What the SharePoint host keeps besides the drives: upload sessions, locks, form digests.

#[allow(unused_imports)]
use super::super::{ids::*, items::*, records::*, server::*, sessions::*, tokens::*};
use super::*;
#[allow(unused_imports)]
use super::{calls::*, errors::*, files::*, replies::*};

// ---------------------------------------------------------------------------------------------
// State.

/// A chunked upload session.
#[derive(Debug)]
pub(crate) struct RestSession {
    pub(crate) drive: String,
    /// The file's path in the drive.
    pub(crate) path: String,
    /// Who started it (lock messages, the log).
    pub(crate) owner: String,
    /// Bytes held: the `fileOffset` the next chunk must give.
    pub(crate) received: u64,
    /// Chunks accepted (the fault part number of the next one).
    pub(crate) chunks: u32,
    pub(crate) content: Content,
    pub(crate) quickxor: QuickXor,
    pub(crate) expires: Instant,
    pub(crate) expires_at: DateTime<Utc>,
    /// A chunk is on its way in.
    pub(crate) busy: bool,
}

/// The REST host's part of the store.
#[derive(Default)]
pub(crate) struct RestState {
    /// Sessions by upload id (lower case, no braces).
    pub(crate) sessions: HashMap<String, RestSession>,
    /// Form digests and their expiry.
    pub(crate) digests: HashMap<String, Instant>,
    /// Item ids of the files `Files/add` created empty (CancelUpload deletes them).
    pub(crate) stubs: HashSet<String>,
}

impl std::fmt::Debug for RestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Digests are credentials: counted, never shown.
        f.debug_struct("RestState")
            .field("sessions", &self.sessions)
            .field("digests", &self.digests.len())
            .field("stubs", &self.stubs)
            .finish()
    }
}

impl RestState {
    /// Removes sessions past their idle expiry (their bytes dropped).
    pub(crate) fn sweep(&mut self) {
        let now = Instant::now();
        let dead: Vec<String> =
            self.sessions.iter().filter(|(_, s)| now >= s.expires).map(|(id, _)| id.clone()).collect();
        for id in dead {
            if let Some(s) = self.sessions.remove(&id) {
                s.content.discard();
            }
        }
    }

    /// Ends every session now.
    pub(crate) fn expire_all(&mut self) {
        for (_, s) in self.sessions.drain() {
            s.content.discard();
        }
    }
}
