//! What an upload did: the [`UploadReport`] users see, the counters behind it, and the part
//! buffers counted against the memory bound.

use super::*;

/// Counts of what an upload did in this process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Part upload attempts (requests that carried a body).
    pub part_requests: u64,
    /// Part attempts that failed and were retried.
    pub part_retries: u64,
    /// Body bytes sent, retries included.
    pub bytes_sent: u64,
    /// Body bytes sent again because an attempt failed.
    pub bytes_resent: u64,
    /// Parts stored in this process.
    pub parts_uploaded: u32,
    /// Parts found on the server and not sent (resume, ambiguous failures).
    pub parts_skipped: u32,
    /// Largest number of part bytes held in memory at once.
    pub peak_buffered: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) part_requests: AtomicU64,
    pub(super) part_retries: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) bytes_resent: AtomicU64,
    pub(super) buffered: AtomicU64,
    pub(super) peak_buffered: AtomicU64,
    /// Part buffers no one uses any more, kept for the next parts: no allocation, no page
    /// faults and no zeroing per part, and a resident size that stays at concurrency × part size.
    pub(super) free: std::sync::Mutex<Vec<bytes::BytesMut>>,
    /// How many free buffers to keep (the concurrency).
    pub(super) keep: AtomicU64,
}

impl Counters {
    /// A buffer of `len` bytes, recycled when one is free. Its contents are stale: the caller
    /// overwrites all of it.
    pub(super) fn take_buffer(&self, len: usize) -> bytes::BytesMut {
        let recycled = self.free.lock().ok().and_then(|mut f| f.pop());
        let mut buf = recycled.unwrap_or_default();
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0);
        }
        buf
    }
}

/// A part buffer counted against the memory bound while it lives.
#[derive(Debug)]
pub(super) struct Buffer {
    pub(super) bytes: Bytes,
    pub(super) counters: Arc<Counters>,
}

impl Buffer {
    pub(super) fn new(bytes: Bytes, counters: &Arc<Counters>) -> Self {
        let len = bytes.len() as u64;
        let now = counters.buffered.fetch_add(len, Ordering::Relaxed) + len;
        counters.peak_buffered.fetch_max(now, Ordering::Relaxed);
        Self { bytes, counters: counters.clone() }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.counters.buffered.fetch_sub(self.bytes.len() as u64, Ordering::Relaxed);
        // Recycle the memory when this was its last user (a retry or the HTTP stack may hold
        // another reference for a moment; then it is simply freed).
        if let Ok(buf) = std::mem::take(&mut self.bytes).try_into_mut()
            && buf.capacity() > 0
            && let Ok(mut free) = self.counters.free.lock()
            && (free.len() as u64) < self.counters.keep.load(Ordering::Relaxed)
        {
            free.push(buf);
        }
    }
}
