//! SharePoint document libraries: the drives of [`EmulatorConfig::document_libraries`]
//! (`super::EmulatorConfig`) rewrite Office, PDF and HTML files once they are stored, as
//! SharePoint does, by adding their metadata: the stored file is longer than the one sent, by an
//! amount that differs from one upload to the next, and its QuickXorHash changes with it.

use bytes::Bytes;
use upload_core::emulator::Blob;
use upload_core::hash::QuickXor;

/// A stored file's content: its bytes, length and QuickXorHash.
pub(super) struct Stored {
    pub(super) blob: Blob,
    pub(super) size: u64,
    pub(super) quickxor: [u8; 20],
}

/// The file at `path` as the library keeps it: rewritten when `library` is on, the name is
/// one SharePoint rewrites and there are bytes to rewrite (not an empty file, not a discarded
/// body).
pub(super) fn keep(library: bool, path: &str, stored: Stored) -> std::io::Result<Stored> {
    if !library || stored.size == 0 || matches!(stored.blob, Blob::Discarded) || !crate::library::may_rewrite(path) {
        return Ok(stored);
    }
    let properties = metadata(path);
    let mut quickxor = QuickXor::new();
    quickxor.update(&stored.blob.read()?);
    quickxor.update(&properties);
    let size = stored.size + properties.len() as u64;
    let blob = match stored.blob {
        Blob::File(file) => {
            use std::io::Write as _;
            std::fs::OpenOptions::new().append(true).open(&file)?.write_all(&properties)?;
            Blob::File(file)
        }
        Blob::Parts(mut parts) => {
            parts.push(properties);
            Blob::Parts(parts)
        }
        Blob::Memory(bytes) => Blob::Parts(vec![bytes, properties]),
        Blob::Discarded => Blob::Discarded,
    };
    Ok(Stored { blob, size, quickxor: quickxor.finish() })
}

/// The library's properties block: its length varies from one upload to the next, as observed.
fn metadata(path: &str) -> Bytes {
    let padding = usize::try_from(super::random_u64() % 24).unwrap_or(0);
    let name = path.rsplit('/').next().unwrap_or(path);
    Bytes::from(format!("\n<!-- SharePoint library properties of {name:?}{} -->\n", " ".repeat(padding)))
}
