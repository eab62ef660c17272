//! # sharepoint-resumable
//!
//! Resumable uploads to OneDrive and SharePoint document libraries, for backends whose requests
//! are cut after 20–30 s, through both APIs that take large files:
//!
//! * **Microsoft Graph upload sessions**: every call of the upload-session family with Graph's
//!   names, client-credentials tokens, a sequential uploader that resumes across processes (the
//!   upload URL is kept in an owner-only checkpoint) and checks the file's QuickXorHash;
//! * **SharePoint REST chunked uploads** (`StartUpload`, `ContinueUpload`, `FinishUpload` on a
//!   file of a document library), for sites reached without Graph, with a bearer token or
//!   cookies and form digests, resumed from `GetUploadStatus`;
//!
//! with step mode for both, and (feature `emulator`) an in-process Graph and SharePoint server
//! for tests.
//!
//! ## Getting started
//!
//! ```no_run
//! use sharepoint_resumable::{Client, Config, Drive, Item, Source, UploadOptions, Uploader};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or GRAPH_ACCESS_TOKEN).
//! let client = Client::new(Config::from_env()?)?;
//! let uploader = Uploader::new(client).with_conflict_behavior("replace").with_options(UploadOptions {
//!     // Run the same program again after a crash: it resumes where the server stands.
//!     checkpoint: Some("video.mp4.upload.json".into()),
//!     ..UploadOptions::default()
//! });
//! let drive = Drive::Site("contoso.sharepoint.com,2c1f…,d5e2…".into());
//! let mut upload = uploader.upload(drive, Item::Path("Videos/video.mp4".into()), Source::file("video.mp4")?)?;
//! let done = upload.run().await?;
//! println!("item {} stored, QuickXorHash checked", done.output.id);
//! # Ok(()) }
//! ```
//!
//! Step mode, for a web handler with a 20–30 s limit: each request runs one step and stores the
//! state (plain serde data, with the upload URL inside: keep it private) for the next.
//!
//! ```no_run
//! use std::time::Duration;
//! use sharepoint_resumable::{Client, Config, Drive, GraphUploadState, Item, Source, Step, Uploader};
//!
//! # async fn handler(saved: Option<String>) -> Result<Option<String>, Box<dyn std::error::Error>> {
//! let uploader = Uploader::new(Client::new(Config::from_env()?)?);
//! let source = Source::file("/data/video.mp4")?;
//! let mut upload = match saved {
//!     Some(json) => uploader.resume(source, serde_json::from_str::<GraphUploadState>(&json)?),
//!     None => uploader.upload(Drive::Me, Item::Path("video.mp4".into()), source)?,
//! };
//! Ok(match upload.step(Duration::from_secs(20)).await? {
//!     Step::Done(_) => None,
//!     Step::Pending { .. } => Some(serde_json::to_string(&upload.into_state())?),
//! })
//! # }
//! ```
//!
//! SharePoint REST, for a site URL and a folder of one of its libraries:
//!
//! ```no_run
//! use sharepoint_resumable::{RestClient, RestConfig, RestUploader, Source, UploadOptions};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // SHAREPOINT_SITE_URL, and SHAREPOINT_ACCESS_TOKEN (or SHAREPOINT_COOKIE, or AZURE_*).
//! let client = RestClient::new(RestConfig::from_env()?)?;
//! let uploader = RestUploader::new(client).with_conflict_behavior("fail")?.with_options(UploadOptions {
//!     checkpoint: Some("video.mp4.upload.json".into()),
//!     ..UploadOptions::default()
//! });
//! let mut upload = uploader.upload("Shared Documents/Videos", "video.mp4", Source::file("video.mp4")?)?;
//! let done = upload.run().await?;
//! println!("{:?} stored, {:?} bytes", done.output.server_relative_url, done.output.len());
//! # Ok(()) }
//! ```
//!
//! ## Crate organization
//!
//! The four vendor crates of this project share one skeleton:
//!
//! * [`config`]: [`Config`]: the Graph and identity-platform URLs and authentication;
//!   [`RestConfig`]: a SharePoint site and how REST calls authenticate.
//! * [`auth`]: where the bearer token comes from (in the place of `signing`).
//! * [`types`]: the wire models (generated from `specs/sharepoint`).
//! * [`error`]: [`Error`] and the [`ServiceError`] read from both error envelopes.
//! * [`client`]: [`Client`]: createUploadSession (by path, by parent and name, by id; for a drive,
//!   `/me/drive`, a site, a group or a user), fragments, session status, cancel, commit, get item.
//! * [`rest`]: [`RestClient`]: the SharePoint REST calls (`Files/add`, `AddUsingPath`, the chunk
//!   calls, `GetUploadStatus`, `contextinfo`).
//! * [`uploader`]: [`Uploader`] and [`RestUploader`], both protocols on the shared engine
//!   (`upload-core`); the REST half lives in a private module of its own, re-exported here.
//! * [`library`]: the files SharePoint libraries rewrite after upload (Office, PDF, HTML),
//!   reported as [`ServerModified`](upload_core::ServerModified) instead of failing.
//! * `emulator` (feature `emulator`): the in-process Graph and SharePoint server.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
pub mod client;
pub mod config;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod generated;
pub mod library;
pub mod rest;
mod rest_uploader;
pub mod types;
pub mod uploader;

pub use auth::Auth;
pub use client::{Client, Drive, Fragment, Item};
pub use config::{Config, OData, RestAuth, RestConfig};
pub use error::{Error, ErrorCode, InvalidInput, RestServiceError, ServiceError};
pub use rest::{FileRef, RestClient};
pub use upload_core::{self, PartSize, Source, Step, UploadOptions};
pub use uploader::{
    GraphSession, GraphUpload, GraphUploadState, RestSession, RestUpload, RestUploadState, RestUploader, Uploader,
};
