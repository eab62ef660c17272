//! How an upload runs: [`UploadOptions`].

use super::*;

/// How an upload runs.
#[derive(Clone)]
pub struct UploadOptions {
    /// How to choose the part size (ignored by vendors that choose it themselves).
    pub part_size: PartSize,
    /// Parts in flight at once (forced to 1 for vendors that need parts in order).
    pub concurrency: usize,
    /// Retry policy for every call.
    pub retry: RetryPolicy,
    /// Longest time one attempt at sending a part may take; a stalled attempt is retried.
    pub part_timeout: Option<Duration>,
    /// Where to keep the checkpoint file, if anywhere.
    pub checkpoint: Option<PathBuf>,
    /// Least time between two checkpoint writes while parts finish (the state is also written
    /// when the upload stops for any reason).
    pub checkpoint_interval: Duration,
    /// Receives progress events.
    pub observer: Option<Observer>,
    /// Cancels the upload promptly: parts in flight are dropped (on resume the server is asked
    /// which of them it stored), the state is saved and stays resumable.
    pub cancel: CancellationToken,
    /// When a resumed session is gone from the server (expired, aborted, or finished after a
    /// crash and not found), start a new one from the first byte (the default); `false` reports
    /// [`UploadError::SessionGone`] instead and keeps the state, for callers that must decide.
    pub restart_gone_session: bool,
    /// When the vendor changed the object after receiving it whole ([`ServerModified`]:
    /// SharePoint adds its metadata to Office, PDF and HTML files), count the upload as done and
    /// report it in [`Completed::server_modified`] (the default); `false` reports
    /// [`UploadError::ServerModified`] instead. Either way the upload is over: sending the file
    /// again would be changed the same way.
    pub accept_server_modified: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            part_size: PartSize::Auto,
            concurrency: 4,
            retry: RetryPolicy::default(),
            part_timeout: Some(Duration::from_secs(300)),
            checkpoint: None,
            checkpoint_interval: Duration::from_secs(1),
            observer: None,
            cancel: CancellationToken::new(),
            restart_gone_session: true,
            accept_server_modified: true,
        }
    }
}

impl std::fmt::Debug for UploadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadOptions")
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .field("part_timeout", &self.part_timeout)
            .field("checkpoint", &self.checkpoint)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("observer", &self.observer.as_ref().map(|_| "Fn(&Event)"))
            .field("restart_gone_session", &self.restart_gone_session)
            .field("accept_server_modified", &self.accept_server_modified)
            .finish_non_exhaustive()
    }
}
