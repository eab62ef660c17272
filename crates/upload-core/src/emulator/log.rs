//! The request log of an emulator: the latest requests, as many as it keeps, and running totals
//! of all of them.

use std::collections::VecDeque;

use serde::Serialize;

/// One request as an emulator saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoggedRequest<Op> {
    /// Method.
    pub method: String,
    /// Bucket (or container), if any.
    pub bucket: Option<String>,
    /// Key, decoded, if any.
    pub key: Option<String>,
    /// The operation, when recognised.
    pub operation: Option<Op>,
    /// Part number, for part uploads.
    pub part_number: Option<u32>,
    /// Body bytes received.
    pub body_len: u64,
    /// Status answered (0 when the connection was dropped).
    pub status: u16,
    /// Error code answered, if any.
    pub error_code: Option<String>,
    /// The access key (or token owner) whose credentials checked out.
    pub access_key_id: Option<String>,
}

/// How many requests a log keeps by default: the oldest go first beyond it.
pub const LOG_CAPACITY: usize = 100_000;

/// The latest requests an emulator received, at most its capacity (the oldest dropped first,
/// so that a long run or a flood of requests holds bounded memory), and the count and body
/// bytes of every request since the start.
#[derive(Clone, Debug)]
pub struct RequestLog<Op> {
    entries: VecDeque<LoggedRequest<Op>>,
    capacity: usize,
    requests: u64,
    body_bytes: u64,
}

impl<Op> Default for RequestLog<Op> {
    fn default() -> Self {
        Self::new(LOG_CAPACITY)
    }
}

impl<Op> RequestLog<Op> {
    /// A log that keeps the latest `capacity` requests (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { entries: VecDeque::new(), capacity: capacity.max(1), requests: 0, body_bytes: 0 }
    }

    /// Records a request, dropping the oldest one kept when the log is full.
    pub fn push(&mut self, entry: LoggedRequest<Op>) {
        self.requests += 1;
        self.body_bytes = self.body_bytes.saturating_add(entry.body_len);
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// The requests kept, oldest first.
    pub fn entries(&self) -> Vec<LoggedRequest<Op>>
    where
        Op: Clone,
    {
        self.entries.iter().cloned().collect()
    }

    /// What [`serve_stdin`](super::serve_stdin) reports: every request received since the
    /// start and the sum of their body lengths, kept or not.
    pub fn totals(&self) -> (u64, u64) {
        (self.requests, self.body_bytes)
    }
}

/// What [`serve_stdin`](super::serve_stdin) reports for requests: their number and the sum of
/// their body lengths (of a log's kept requests; [`RequestLog::totals`] counts all).
pub fn log_stats<Op>(log: &[LoggedRequest<Op>]) -> (u64, u64) {
    (log.len() as u64, log.iter().map(|r| r.body_len).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, body_len: u64) -> LoggedRequest<u8> {
        LoggedRequest {
            method: "PUT".into(),
            bucket: None,
            key: Some(key.into()),
            operation: None,
            part_number: None,
            body_len,
            status: 200,
            error_code: None,
            access_key_id: None,
        }
    }

    #[test]
    fn the_log_keeps_the_latest_requests_and_counts_all() {
        let mut log = RequestLog::new(3);
        for i in 0..5u64 {
            log.push(entry(&i.to_string(), 10 + i));
        }
        let kept: Vec<_> = log.entries().into_iter().filter_map(|e| e.key).collect();
        assert_eq!(kept, ["2", "3", "4"]);
        assert_eq!(log.totals(), (5, 10 + 11 + 12 + 13 + 14));
        assert_eq!(RequestLog::<u8>::new(0).capacity, 1);
    }
}
