//! Checkpoints: the upload state in a file, written atomically and readable only by its owner.
//!
//! A checkpoint is the JSON of an [`UploadState`](crate::UploadState): a format name and version,
//! the vendor and target, the vendor's session, the plan, the source's fingerprint, the parts
//! finished and the state of the whole-file hashes. It is written to a temporary file in the same
//! directory, flushed, and renamed over the old one, so a crash leaves either the old or the new
//! checkpoint, never half of one. On Unix the file is created with mode 0600: a vendor session
//! can be a credential (a Graph `uploadUrl` is one). A checkpoint says where bytes go, so one
//! that another user owns or can write is refused when it is read ([`read_private`]), and the
//! temporary file is created exclusively under a random name, so a directory others can write
//! to (a shared cache, `/tmp`) cannot make it write through a planted link or file.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The `format` field of every checkpoint.
pub const FORMAT: &str = "cloud-upload/upload-state";
/// The checkpoint version this crate writes and reads.
pub const VERSION: u32 = 1;

/// Why a checkpoint could not be written or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint {}: {source}", path.display())]
    Io {
        /// The checkpoint path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not a checkpoint of this format.
    #[error("checkpoint {} is not a valid upload state: {reason}", path.display())]
    Malformed {
        /// The checkpoint path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file could have been written by someone else (owned by another user, or writable by
    /// others), so it could send the upload, or the credentials, somewhere the user never meant;
    /// or it is not a regular file at all.
    #[error("refusing to use {}: {reason}", path.display())]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Why it cannot be trusted, and what the user can do about it.
        reason: String,
    },
    /// The file is a checkpoint of another version.
    #[error("checkpoint {} has version {found}; this version of the SDK reads version {VERSION}", path.display())]
    UnsupportedVersion {
        /// The checkpoint path.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
}

/// Writes `state` to `path` atomically, owner-only (see [`write_private`]).
pub fn save<T: Serialize>(path: &Path, state: &T) -> Result<(), CheckpointError> {
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| CheckpointError::Malformed { path: path.to_path_buf(), reason: e.to_string() })?;
    write_private(path, &json)
}

/// Writes `bytes` to `path` atomically, readable only by its owner, safe in a directory other
/// users can write to.
///
/// The bytes go to a new temporary file beside `path` with a random name, created exclusively
/// (`O_CREAT | O_EXCL`, never through a symbolic link someone planted) with mode 0600 from its
/// creation, then flushed to disk and renamed over `path`. A crash leaves the old file or the
/// new one, never half of one; a planted file or link is never written through or renamed into
/// place.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io_err = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io_err(io::ErrorKind::InvalidInput.into()))?;
    let (tmp, mut file) = create_temporary(dir, name).map_err(io_err)?;
    let mut write = || -> io::Result<()> {
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        #[cfg(unix)]
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(e)
    })
}

/// Creates a new temporary file beside `name` in `dir`: a name no one can guess, created
/// exclusively and without following links, owner-only from the start.
fn create_temporary(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, std::fs::File)> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..16 {
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(".{:016x}.tmp", random_suffix()));
        let tmp = dir.join(tmp_name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// 64 bits no other process can predict: the standard library's randomly keyed hasher over the
/// time, the process and a counter.
fn random_suffix() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish()
}

/// Reads a checkpoint, checking that it is safe to trust ([`read_private`]), then its format and
/// version before its contents.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    let bytes = read_private(path)?;
    let malformed = |reason: String| CheckpointError::Malformed { path: path.to_path_buf(), reason };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(FORMAT) => {}
        Some(other) => return Err(malformed(format!("format is {other:?}, expected {FORMAT:?}"))),
        None => return Err(malformed("no format field".into())),
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(found) => return Err(CheckpointError::UnsupportedVersion { path: path.to_path_buf(), found }),
        None => return Err(malformed("no version field".into())),
    }
    serde_json::from_value(value).map_err(|e| malformed(e.to_string()))
}

/// The largest file [`read_private`] reads: a checkpoint of 10,000 parts is a few MiB.
pub const MAX_LEN: u64 = 64 << 20;

/// Reads a file that says where an upload goes (a checkpoint, a job file), refusing one that
/// someone else could have written, as ssh refuses such keys: on Unix it must be a regular file
/// owned by the user running this process, and neither group- nor world-writable
/// ([`CheckpointError::Insecure`]). It is checked on the open file, so it cannot be swapped
/// between the check and the read. A file longer than [`MAX_LEN`] is no upload state
/// ([`CheckpointError::Malformed`]).
pub fn read_private(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    use std::io::Read as _;
    let io_err = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    let insecure = |reason: String| CheckpointError::Insecure { path: path.to_path_buf(), reason };
    let malformed = |reason: String| CheckpointError::Malformed { path: path.to_path_buf(), reason };
    let not_regular =
        || insecure("it is not a regular file (a directory, a FIFO or a device); remove it or use another path".into());
    // A link at the path is followed, as before; what it leads to is checked like the path.
    // Look before opening, so that a device is never opened, and open without blocking, so that
    // a FIFO put there between the look and the open cannot hang the open; the open file is
    // checked again, so it cannot be swapped between the check and the read.
    if !std::fs::metadata(path).map_err(io_err)?.is_file() {
        return Err(not_regular());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let me = crate::sys::effective_uid();
        if meta.uid() != me {
            return Err(insecure(format!(
                "it is owned by user {}, not by the user running this (user {me}), and a file another user \
                 owns could send your data elsewhere (if you trust it, make your own copy of it, or remove it \
                 to start the upload again)",
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            let who = if mode & 0o002 != 0 { "every user" } else { "its group" };
            return Err(insecure(format!(
                "it can be written by {who} (mode {mode:04o}), and a file someone else can write could send \
                 your data elsewhere (if you trust it, `chmod 600` it)"
            )));
        }
    }
    if meta.len() > MAX_LEN {
        return Err(malformed(format!("it is {} bytes long, more than any upload state", meta.len())));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_LEN + 1).read_to_end(&mut bytes).map_err(io_err)?;
    if bytes.len() as u64 > MAX_LEN {
        return Err(malformed("it grew past the size of any upload state while being read".into()));
    }
    Ok(bytes)
}

/// Removes a checkpoint; a missing file is not an error.
pub fn remove(path: &Path) -> Result<(), CheckpointError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(CheckpointError::Io { path: path.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Doc {
        format: String,
        version: u32,
        session: String,
    }

    fn doc() -> Doc {
        Doc { format: FORMAT.into(), version: VERSION, session: "upload-url".into() }
    }

    #[test]
    fn saved_atomically_owner_only_and_read_back() {
        let dir = std::env::temp_dir().join(format!("upload-core-cp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        save(&path, &doc()).unwrap();
        save(&path, &doc()).unwrap();
        assert_eq!(load::<Doc>(&path).unwrap(), doc());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");

        std::fs::write(&path, b"{\"format\":\"something-else\",\"version\":1}").unwrap();
        assert!(load::<Doc>(&path).unwrap_err().to_string().contains("format is \"something-else\""));
        std::fs::write(&path, b"not json").unwrap();
        assert!(matches!(load::<Doc>(&path), Err(CheckpointError::Malformed { .. })));
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(matches!(load::<Doc>(&path), Err(CheckpointError::Io { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("upload-core-cp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Another user of a shared directory plants a link, and a file anyone can read, where the
    /// temporary file would go: neither is written through nor renamed into place.
    #[cfg(unix)]
    #[test]
    fn planted_links_and_files_are_never_written_through() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("planted");
        let path = dir.join("big.iso.upload.json");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        // The names an earlier version used, and a few guesses.
        for suffix in [format!(".{}.tmp", std::process::id()), ".tmp".into()] {
            std::os::unix::fs::symlink(&victim, dir.join(format!("big.iso.upload.json{suffix}"))).unwrap();
        }
        let planted = dir.join(format!("state.json.{}.tmp", std::process::id()));
        std::fs::write(&planted, b"planted").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();

        save(&path, &doc()).unwrap();
        let other = dir.join("state.json");
        save(&other, &doc()).unwrap();

        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "the link's target is untouched");
        assert_eq!(std::fs::read(&planted).unwrap(), b"planted", "the planted file is not reused");
        for p in [&path, &other] {
            assert_eq!(mode(p), 0o600, "{} is owner-only", p.display());
            assert!(std::fs::symlink_metadata(p).unwrap().file_type().is_file());
            assert_eq!(load::<Doc>(p).unwrap(), doc());
        }

        // A link planted at the checkpoint's own name is replaced, not followed.
        let linked = dir.join("linked.json");
        std::os::unix::fs::symlink(&victim, &linked).unwrap();
        save(&linked, &doc()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(mode(&linked), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A checkpoint others can write, or that another user owns, says where bytes go and could
    /// have been planted: it is refused, and the error says why.
    #[cfg(unix)]
    #[test]
    fn checkpoints_others_could_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("insecure");
        let path = dir.join("state.json");
        save(&path, &doc()).unwrap();
        for (m, says) in [(0o666, "every user (mode 0666)"), (0o620, "its group (mode 0620)"), (0o602, "every user")] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
            let err = load::<Doc>(&path).unwrap_err();
            assert!(matches!(err, CheckpointError::Insecure { .. }), "{m:o}: {err}");
            assert!(err.to_string().contains(says), "{err}");
            assert!(err.to_string().contains("`chmod 600` it"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load::<Doc>(&path).unwrap(), doc(), "readable by others is not a reason to refuse");

        let err = load::<Doc>(&dir).unwrap_err();
        assert!(matches!(err, CheckpointError::Insecure { .. }), "a directory is refused: {err}");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(!err.to_string().contains("chmod"), "no chmod makes a directory a checkpoint: {err}");

        if crate::sys::effective_uid() == 0 {
            // Only root can give a file away; CI runs as root.
            std::process::Command::new("chown").arg("65534").arg(&path).status().unwrap();
            let err = load::<Doc>(&path).unwrap_err();
            assert!(err.to_string().contains("owned by user 65534"), "{err}");
            assert!(!err.to_string().contains("chmod"), "its owner is someone else: {err}");
            assert!(err.to_string().contains("make your own copy"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A FIFO planted at the checkpoint's path would block the open until someone writes to it:
    /// it is refused at once instead.
    #[cfg(unix)]
    #[test]
    fn a_fifo_at_the_checkpoint_path_is_refused_without_hanging() {
        let dir = scratch("fifo");
        let path = dir.join("state.json");
        assert!(std::process::Command::new("mkfifo").arg(&path).status().unwrap().success());
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(load::<Doc>(&reader).map(|_| ()));
        });
        let result = rx.recv_timeout(std::time::Duration::from_secs(10));
        if result.is_err() {
            // Unblock the stuck reader so that the test ends.
            let _ = std::fs::OpenOptions::new().write(true).open(&path);
        }
        let err = result.expect("loading a FIFO hung").unwrap_err();
        assert!(matches!(err, CheckpointError::Insecure { .. }), "{err}");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A file too large to be a checkpoint is not a valid one; it is not a matter of who could
    /// write it.
    #[test]
    fn an_oversized_file_is_malformed_not_insecure() {
        let dir = scratch("oversized");
        let path = dir.join("state.json");
        save(&path, &doc()).unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(MAX_LEN + 1).unwrap();
        let err = load::<Doc>(&path).unwrap_err();
        assert!(matches!(err, CheckpointError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("more than any upload state"), "{err}");
        assert!(!err.to_string().contains("elsewhere"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
