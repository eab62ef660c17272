//! Paged listings a server drives with markers, checked so that a broken or hostile server
//! cannot keep a client asking for ever: each page's next marker must move past the last one,
//! and a listing has a cap.

/// The most unfinished uploads a whole listing collects ([`UploadMarkers`]); past it, list page
/// by page.
pub const MAX_LISTED_UPLOADS: usize = 1_000_000;

/// The most pages a whole listing asks for ([`UploadMarkers`]).
pub const MAX_LISTED_PAGES: usize = 10_000;

/// The `(key, upload id)` markers of a listing of unfinished uploads (OSS and QingStor, as S3):
/// uploads come in the order of their keys, so every next key marker is at or past the one
/// before; the uploads of one key come in an order of the vendor's own (QingStor: by time), so
/// for the same key the next upload id marker must be one not given before. A truncated page
/// must hold an upload, and a listing has at most [`MAX_LISTED_PAGES`] pages and
/// [`MAX_LISTED_UPLOADS`] uploads.
#[derive(Clone, Debug, Default)]
pub struct UploadMarkers {
    key: Option<String>,
    ids: std::collections::HashSet<String>,
    listed: usize,
    pages: usize,
}

impl UploadMarkers {
    /// Starts a listing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a truncated page of `listed` uploads whose answer named these next markers, or
    /// says what is wrong: an empty page, no next key marker, markers that do not move forward,
    /// or a listing past its caps.
    pub fn next_page(&mut self, listed: usize, next_key: Option<&str>, next_id: Option<&str>) -> Result<(), String> {
        self.listed = self.listed.saturating_add(listed);
        self.pages += 1;
        if self.listed > MAX_LISTED_UPLOADS || self.pages > MAX_LISTED_PAGES {
            return Err(format!(
                "more than {MAX_LISTED_UPLOADS} unfinished uploads or {MAX_LISTED_PAGES} pages; list them page by page"
            ));
        }
        if listed == 0 {
            return Err("a truncated page that lists no upload".into());
        }
        let Some(key) = next_key.filter(|k| !k.is_empty()) else {
            return Err("a truncated page without a next key marker".into());
        };
        let id = next_id.unwrap_or_default();
        match self.key.as_deref() {
            Some(last) if key < last => {
                return Err("a truncated page whose next key marker goes back before the last one".into());
            }
            Some(last) if key == last => {
                if !self.ids.insert(id.to_owned()) {
                    return Err("a truncated page whose next markers do not move past the ones given before".into());
                }
            }
            _ => {
                self.key = Some(key.to_owned());
                self.ids.clear();
                self.ids.insert(id.to_owned());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_must_move_forward() {
        let mut m = UploadMarkers::new();
        m.next_page(2, Some("a"), Some("2")).unwrap();
        // The uploads of one key in the vendor's own order: ids need not sort.
        m.next_page(2, Some("a"), Some("1")).unwrap();
        m.next_page(2, Some("b"), None).unwrap();
        // A key that goes back, an id given before for the same key, a missing key, an empty
        // page.
        assert!(m.next_page(2, Some("a"), Some("9")).unwrap_err().contains("goes back"));
        let mut m = UploadMarkers::new();
        m.next_page(1, Some("k"), Some("1")).unwrap();
        m.next_page(1, Some("k"), Some("2")).unwrap();
        assert!(m.next_page(1, Some("k"), Some("1")).unwrap_err().contains("move past"));
        assert!(UploadMarkers::new().next_page(1, None, None).unwrap_err().contains("next key marker"));
        assert!(UploadMarkers::new().next_page(0, Some("a"), None).unwrap_err().contains("no upload"));
        let mut m = UploadMarkers::new();
        assert!(m.next_page(MAX_LISTED_UPLOADS + 1, Some("k"), None).unwrap_err().contains("page by page"));
        let mut m = UploadMarkers::new();
        for n in 0..MAX_LISTED_PAGES {
            m.next_page(1, Some(&format!("k{n:06}")), None).unwrap();
        }
        assert!(m.next_page(1, Some("z"), None).unwrap_err().contains("pages"));
    }
}
