//! # upload-core
//!
//! The shared engine of the cloud-upload SDKs (`oss-multipart`, `qingstor-multipart`,
//! `box-chunked`, `sharepoint-resumable`). Users normally depend on one vendor crate, which
//! re-exports what they need from here; this crate is what makes the four behave alike.
//!
//! ## Getting started
//!
//! A vendor crate implements [`Protocol`] (create a session, send a part, list parts, complete,
//! abort, and the vendor's [`PartRules`]); the engine does the rest:
//!
//! ```no_run
//! # async fn example<P: upload_core::Protocol>(protocol: P) -> Result<(), Box<dyn std::error::Error>> {
//! use upload_core::{Source, Upload, UploadOptions};
//!
//! let options = UploadOptions {
//!     concurrency: 4,
//!     checkpoint: Some("big.iso.upload.json".into()),
//!     ..UploadOptions::default()
//! };
//! // Resumes from the checkpoint when one exists, and asks the server what it holds.
//! let mut upload = Upload::resume_or_new(protocol, Source::file("big.iso")?, options)?;
//! let done = upload.run().await?;
//! println!("sent {} bytes, peak buffered {}", done.report.bytes_sent, done.report.peak_buffered);
//! # Ok(()) }
//! ```
//!
//! For a web backend with a 20–30 s limit per request, run one [`Upload::step`] per request and
//! keep the [`UploadState`] (plain serde data) between requests:
//!
//! ```no_run
//! # async fn handler<P: upload_core::Protocol>(protocol: P, saved: Option<upload_core::UploadState<P::Session, P::Receipt>>)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use upload_core::{Source, Step, Upload, UploadOptions};
//!
//! let source = Source::file("big.iso")?;
//! let mut upload = match saved {
//!     Some(state) => Upload::resume(protocol, source, state, UploadOptions::default()),
//!     None => Upload::new(protocol, source, UploadOptions::default()),
//! };
//! match upload.step(Duration::from_secs(20)).await? {
//!     Step::Done(done) => println!("finished: {:?}", done.digests),
//!     Step::Pending { bytes_done, .. } => {
//!         let state = upload.into_state();
//!         // store `serde_json::to_string(&state)?` and answer "continue"
//!         # let _ = (state, bytes_done);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ## Crate organization
//!
//! * [`plan`]: part rules and plans that cover the source exactly, or a [`PlanError`] naming
//!   the rule broken.
//! * [`hash`]: SHA-1, MD5, CRC-64/XZ with combination, QuickXorHash; whole-file hashing with a
//!   serializable state.
//! * [`source`]: files (positional reads), bytes, async streams; fingerprints.
//! * [`paging`]: checks of server-driven listing markers.
//! * [`retry`]: failure classification, backoff with jitter, `Retry-After`.
//! * [`engine`]: [`Upload`], its options, errors and report.
//! * [`state`] and [`checkpoint`]: the resumable state and its file.
//! * [`progress`]: events for progress bars and logs.
//! * [`single`]: a small file sent whole in one request, under the part timeout, retry policy
//!   and cancel token of an upload.
//! * [`secret`]: a string that never shows in `Debug` or `Display`.
#![warn(missing_docs)]

pub mod checkpoint;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod engine;
pub mod hash;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod paging;
pub mod plan;
pub mod progress;
pub mod protocol;
pub mod retry;
pub mod secret;
pub mod single;
pub mod size;
pub mod source;
pub mod state;
mod sys;
pub mod token;

pub use engine::{Completed, Operation, Step, Upload, UploadError, UploadOptions, UploadReport};
pub use hash::{Digests, Hashes};
pub use plan::{PartPlan, PartRules, PartSize, PartSpec, PlanError};
pub use progress::{Event, Observer};
pub use protocol::{Created, IntegrityError, ObjectSummary, PartUpload, Protocol, ServerModified, ServerPart};
pub use retry::{Classify, RetryPolicy};
pub use secret::Secret;
pub use source::{Fingerprint, Source};
pub use state::{DonePart, UploadState};
pub use tokio_util::sync::CancellationToken;
