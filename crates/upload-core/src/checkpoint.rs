//! Checkpoints: the upload state in a file, written atomically and readable only by its owner.
//!
//! A checkpoint is the JSON of an [`UploadState`](crate::UploadState): a format name and version,
//! the vendor and target, the vendor's session, the plan, the source's fingerprint, the parts
//! finished and the state of the whole-file hashes. It is written to a temporary file in the same
//! directory, flushed, and renamed over the old one, so a crash leaves either the old or the new
//! checkpoint, never half of one. On Unix the file is created with mode 0600: a vendor session
//! can be a credential (a Graph `uploadUrl` is one).

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
    /// The file is a checkpoint of another version.
    #[error("checkpoint {} has version {found}; this version of the SDK reads version {VERSION}", path.display())]
    UnsupportedVersion {
        /// The checkpoint path.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
}

/// Writes `state` to `path` atomically, owner-only.
pub fn save<T: Serialize>(path: &Path, state: &T) -> Result<(), CheckpointError> {
    let io_err = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| CheckpointError::Malformed { path: path.to_path_buf(), reason: e.to_string() })?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io_err(io::ErrorKind::InvalidInput.into()))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
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

/// Reads a checkpoint, checking its format and version before its contents.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })?;
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
}
