//! The built-in emulators: OSS, QingStor, Box, and Graph with SharePoint REST, in this process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::json;

/// Which emulators to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Provider {
    Oss,
    Qingstor,
    Box,
    Graph,
    All,
}

/// Running emulators (each stops when dropped).
#[derive(Default)]
pub(crate) struct Emulators {
    pub(crate) oss: Option<oss_multipart::emulator::Emulator>,
    pub(crate) qingstor: Option<qingstor_multipart::emulator::Emulator>,
    pub(crate) boxes: Option<box_chunked::emulator::Emulator>,
    pub(crate) graph: Option<sharepoint_resumable::emulator::Emulator>,
    data_dir: Option<PathBuf>,
}

/// Options of the emulators a command starts.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// The first address; with a fixed port, each further listener takes the next port.
    pub(crate) listen: SocketAddr,
    /// Objects as plain files under `<dir>/<provider>/…`.
    pub(crate) data_dir: Option<PathBuf>,
    /// Box's chunked minimum (the demo lowers it for small files).
    pub(crate) box_min: Option<u64>,
    /// How many commits of each Box session are answered 202, and their `Retry-After` in
    /// seconds (the emulator's defaults when `None`).
    pub(crate) box_processing: (Option<u32>, Option<u64>),
    /// The requests each emulator keeps in its log (the emulators' default when `None`).
    pub(crate) log_capacity: Option<usize>,
}

fn nth(listen: SocketAddr, n: u16) -> SocketAddr {
    match listen.port() {
        0 => listen,
        p => SocketAddr::new(listen.ip(), p.saturating_add(n)),
    }
}

impl Emulators {
    /// Starts the emulators of `provider`.
    pub(crate) async fn start(provider: Provider, options: &Options) -> std::io::Result<Self> {
        let want = |p: Provider| provider == p || provider == Provider::All;
        let dir = |name: &str| options.data_dir.as_ref().map(|d| d.join(name));
        let mut emulators = Self { data_dir: options.data_dir.clone(), ..Self::default() };
        let log_capacity = options.log_capacity.unwrap_or(upload_core::emulator::LOG_CAPACITY);
        if want(Provider::Oss) {
            let config = oss_multipart::emulator::EmulatorConfig {
                listen: nth(options.listen, 0),
                data_dir: dir("oss"),
                log_capacity,
                ..Default::default()
            };
            emulators.oss = Some(oss_multipart::emulator::Emulator::start(config).await?);
        }
        if want(Provider::Qingstor) {
            let config = qingstor_multipart::emulator::EmulatorConfig {
                listen: nth(options.listen, 1),
                data_dir: dir("qingstor"),
                log_capacity,
                ..Default::default()
            };
            emulators.qingstor = Some(qingstor_multipart::emulator::Emulator::start(config).await?);
        }
        if want(Provider::Box) {
            let mut config = box_chunked::emulator::EmulatorConfig {
                api_listen: nth(options.listen, 2),
                upload_listen: nth(options.listen, 3),
                data_dir: dir("box"),
                log_capacity,
                ..Default::default()
            };
            if let Some(min) = options.box_min {
                config.min_chunked = min;
            }
            if let Some(commits) = options.box_processing.0 {
                config.processing_commits = commits;
            }
            if let Some(seconds) = options.box_processing.1 {
                config.processing_retry_after = seconds;
            }
            emulators.boxes = Some(box_chunked::emulator::Emulator::start(config).await?);
        }
        if want(Provider::Graph) {
            let config = sharepoint_resumable::emulator::EmulatorConfig {
                graph_listen: nth(options.listen, 4),
                upload_listen: nth(options.listen, 5),
                sharepoint_listen: nth(options.listen, 6),
                data_dir: dir("graph"),
                ..Default::default()
            };
            emulators.graph = Some(sharepoint_resumable::emulator::Emulator::start(config).await?);
        }
        Ok(emulators)
    }

    /// One JSON line per emulator: everything a client needs.
    pub(crate) fn lines(&self) -> Vec<serde_json::Value> {
        let mut lines = Vec::new();
        let data = |name: &str| self.data_dir.as_ref().map(|d| d.join(name).display().to_string());
        if let Some(e) = &self.oss {
            let c = e.credentials();
            lines.push(json!({
                "provider": "oss",
                "endpoint": e.endpoint(),
                "region": e.region(),
                "bucket": "bucket",
                "access_key_id": c.access_key_id,
                "access_key_secret": c.access_key_secret.expose(),
                "data_dir": data("oss"),
            }));
        }
        if let Some(e) = &self.qingstor {
            let c = e.credentials();
            lines.push(json!({
                "provider": "qingstor",
                "endpoint": e.endpoint(),
                "protocol": "http",
                "host": e.addr().ip().to_string(),
                "port": e.addr().port(),
                "zone": e.zone(),
                "bucket": "bucket",
                "access_key_id": c.access_key_id,
                "secret_access_key": c.secret_access_key.expose(),
                "data_dir": data("qingstor"),
            }));
        }
        if let Some(e) = &self.boxes {
            lines.push(json!({
                "provider": "box",
                "api_url": e.api_url(),
                "upload_url": e.upload_url(),
                "oauth_url": e.oauth_url(),
                "session_url": e.session_url(),
                "developer_token": e.token(),
                "client_id": "emulator-client-id",
                "client_secret": "emulator-client-secret",
                "enterprise_id": "900",
                "chunked_min": e.client_config().chunked_min,
                "folder_id": "0",
                "data_dir": data("box"),
            }));
        }
        if let Some(e) = &self.graph {
            lines.push(json!({
                "provider": "graph",
                "graph_url": e.graph_url(),
                "upload_url": e.upload_url(),
                "login_url": e.login_url(),
                "access_token": e.token(),
                "tenant": "emulator-tenant",
                "client_id": "emulator-client-id",
                "client_secret": "emulator-client-secret",
                "me_drive": "drive-1",
                "site": "site-1",
                "group": "group-1",
                "sharepoint_site_url": e.site_url(),
                "sharepoint_library": "Shared Documents",
                "sharepoint_cookie": "FedAuth=emulator-cookie",
                "data_dir": data("graph"),
            }));
        }
        lines
    }

    /// Holds every part upload (OSS and QingStor parts, Box parts, Graph fragments, SharePoint
    /// REST chunks) `delay` before it is answered.
    pub(crate) fn delay_parts(&self, delay: std::time::Duration) {
        let times = u32::MAX;
        if let Some(e) = &self.oss {
            use oss_multipart::emulator::{Fault, FaultAction, Operation};
            let operation = Some(Operation::UploadPart);
            e.inject(Fault { operation, part_number: None, times, action: FaultAction::Delay(delay) });
        }
        if let Some(e) = &self.qingstor {
            use qingstor_multipart::emulator::{Fault, FaultAction, Operation};
            let operation = Some(Operation::UploadMultipart);
            e.inject(Fault { operation, part_number: None, times, action: FaultAction::Delay(delay) });
        }
        if let Some(e) = &self.boxes {
            use box_chunked::emulator::{Fault, FaultAction, Operation};
            let operation = Some(Operation::UploadPart);
            e.inject(Fault { operation, part_number: None, times, action: FaultAction::Delay(delay) });
        }
        if let Some(e) = &self.graph {
            use sharepoint_resumable::emulator::{Fault, FaultAction, Operation};
            for op in
                [Operation::UploadFragment, Operation::StartUpload, Operation::ContinueUpload, Operation::FinishUpload]
            {
                e.inject(Fault { operation: Some(op), part_number: None, times, action: FaultAction::Delay(delay) });
            }
        }
    }

    /// Ends every open Graph and SharePoint REST session, as if its idle time had passed.
    pub(crate) fn expire_sessions(&self) -> bool {
        let Some(e) = &self.graph else { return false };
        e.expire_sessions();
        e.expire_rest_sessions();
        true
    }

    /// Requests received by all the emulators, and the bytes of their bodies.
    pub(crate) fn stats(&self) -> (u64, u64) {
        // The totals count every request; the logs keep only the latest.
        let logs = [
            self.oss.as_ref().map(|e| e.request_totals()),
            self.qingstor.as_ref().map(|e| e.request_totals()),
            self.boxes.as_ref().map(|e| e.request_totals()),
            self.graph.as_ref().map(|e| e.request_totals()),
        ];
        logs.into_iter().flatten().fold((0, 0), |(r, b), (r2, b2)| (r + r2, b + b2))
    }

    /// Where a finished object of the demo is stored as a file.
    pub(crate) fn stored_file(&self, provider: Provider, name: &str) -> Option<PathBuf> {
        let dir: &Path = self.data_dir.as_deref()?;
        Some(match provider {
            Provider::Oss => dir.join("oss/bucket").join(name),
            Provider::Qingstor => dir.join("qingstor/bucket").join(name),
            Provider::Box | Provider::All => dir.join("box/0").join(name),
            Provider::Graph => dir.join("graph/drive-1").join(name),
        })
    }
}
