//! Paged listings a server drives with markers, checked so that a broken or hostile server
//! cannot keep a client asking for ever: each page's next marker must move past the last one,
//! and a listing has a cap.

/// The most unfinished uploads a whole listing collects ([`UploadMarkers`]); past it, list page
/// by page.
pub const MAX_LISTED_UPLOADS: usize = 1_000_000;

/// The `(key, upload id)` markers of a listing of unfinished uploads (OSS and QingStor, as S3):
/// uploads come in the order of key, then upload id, so every next marker must be past the one
/// before.
#[derive(Clone, Debug, Default)]
pub struct UploadMarkers {
    last: Option<(String, String)>,
    listed: usize,
}

impl UploadMarkers {
    /// Starts a listing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a truncated page of `listed` uploads whose answer named these next markers, or
    /// says what is wrong: no next key marker, a marker that does not move forward, or more than
    /// [`MAX_LISTED_UPLOADS`] in all.
    pub fn next_page(&mut self, listed: usize, next_key: Option<&str>, next_id: Option<&str>) -> Result<(), String> {
        self.listed = self.listed.saturating_add(listed);
        if self.listed > MAX_LISTED_UPLOADS {
            return Err(format!("more than {MAX_LISTED_UPLOADS} unfinished uploads; list them page by page"));
        }
        let Some(key) = next_key.filter(|k| !k.is_empty()) else {
            return Err("a truncated page without a next key marker".into());
        };
        let next = (key.to_owned(), next_id.unwrap_or_default().to_owned());
        if self.last.as_ref().is_some_and(|last| next <= *last) {
            return Err("a truncated page whose next markers do not move past the last ones".into());
        }
        self.last = Some(next);
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
        m.next_page(2, Some("a"), Some("3")).unwrap();
        m.next_page(2, Some("b"), None).unwrap();
        // Alternating markers, a repeated one, a missing one.
        assert!(m.next_page(2, Some("a"), Some("9")).unwrap_err().contains("move past"));
        let mut m = UploadMarkers::new();
        m.next_page(1, Some("k"), Some("1")).unwrap();
        assert!(m.next_page(1, Some("k"), Some("1")).is_err());
        assert!(UploadMarkers::new().next_page(1, None, None).unwrap_err().contains("next key marker"));
        let mut m = UploadMarkers::new();
        assert!(m.next_page(MAX_LISTED_UPLOADS + 1, Some("k"), None).unwrap_err().contains("page by page"));
    }
}
