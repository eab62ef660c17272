//! What SharePoint document libraries do to the files they store.
//!
//! A SharePoint library writes its own metadata into Office documents, PDFs and HTML pages once
//! they are uploaded, so the stored file is larger than the one sent and its QuickXorHash is
//! another (rclone/rclone#2599, #8558; OneDrive/onedrive-api-docs#935; the added length differs
//! from one upload of the same file to the next). Microsoft documents neither the behaviour nor
//! the list of types: the list here is the one users report. OneDrive personal drives do not do
//! it. The uploaders recognise such a file as the one their session stored and report it as
//! [`ServerModified`](upload_core::ServerModified) instead of failing its integrity check (and
//! uploading it again, to be changed again, for ever).

/// The extensions SharePoint libraries rewrite: Word, Excel, PowerPoint and Visio formats,
/// PDF and HTML.
pub const REWRITTEN_EXTENSIONS: &[&str] = &[
    "doc", "docx", "docm", "dot", "dotx", "dotm", "xls", "xlsx", "xlsm", "xlsb", "xlt", "xltx", "xltm", "ppt", "pptx",
    "pptm", "pot", "potx", "potm", "pps", "ppsx", "ppsm", "vsd", "vsdx", "pdf", "htm", "html",
];

/// Whether a SharePoint library may rewrite a file of this name after upload (by its extension,
/// in any case).
pub fn may_rewrite(name: &str) -> bool {
    let name = name.rsplit('/').next().unwrap_or(name);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => REWRITTEN_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)),
        _ => false,
    }
}

/// The most bytes a library's metadata is taken to add to a file (it adds a few kilobytes), when
/// the file is found by looking at its path after the answer that named it was lost.
pub const MAX_ADDED: u64 = 1 << 20;

/// Whether a file of `stored` bytes, found at the path after the answer naming the upload's
/// file was lost, can be a library's rewrite of the `sent` bytes: larger, by at most
/// [`MAX_ADDED`]. Anything else there (smaller, or far larger) is taken for another file,
/// someone else's edit, and the upload starts over rather than calling it done. A file the
/// session's own answer names may have any size: it is this session's.
pub fn rewrite_fits(sent: u64, stored: Option<u64>) -> bool {
    stored.is_some_and(|stored| stored > sent && stored - sent <= MAX_ADDED)
}

/// Why the stored file differs, as the uploaders report it.
pub(crate) const REASON: &str = "the SharePoint library added its metadata to the file after receiving it whole, as it does to Office, PDF and HTML files";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn office_pdf_and_html_files_by_extension_only() {
        for name in ["report.docx", "Budget 2026.XLSX", "dir/deck.pptx", "scan.pdf", "index.html", "old.doc"] {
            assert!(may_rewrite(name), "{name}");
        }
        for name in ["video.mp4", "archive.zip", "notes.txt", "docx", ".pdf", "dir.pdf/file", "pdf", "a.pdf.gz"] {
            assert!(!may_rewrite(name), "{name}");
        }
        assert!(rewrite_fits(1000, Some(1000 + 4096)) && rewrite_fits(0, Some(MAX_ADDED)));
        for stored in [None, Some(1000), Some(999), Some(0), Some(1000 + MAX_ADDED + 1)] {
            assert!(!rewrite_fits(1000, stored), "{stored:?}");
        }
    }
}
