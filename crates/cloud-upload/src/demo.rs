//! `cloud-upload demo`: the built-in emulators, a generated file, an upload to every vendor,
//! one interrupted on purpose and resumed, and every stored object checked against the source.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use upload_core::CancellationToken;

use crate::backend::Backend;
use crate::emulators::{Emulators, Options, Provider};
use crate::job::{self, Exit, Failure, Job, Outcome, Settings};
use crate::progress::Ui;
use crate::target::Target;

/// A file of `size` bytes that does not compress (xorshift), so that nothing flatters the run.
fn generate(path: &Path, size: u64) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut block = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < size {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = usize::try_from((size - written).min(block.len() as u64)).unwrap_or(block.len());
        out.write_all(&block[..n])?;
        written += n as u64;
    }
    out.flush()
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// One row of the summary.
struct Row {
    outcome: Outcome,
    interrupted: bool,
    verified: Result<bool, String>,
}

/// A new directory of the demo's own under the temporary directory: a name no one can guess,
/// created (never reused), so nothing someone else prepared there is written into or deleted.
fn fresh_temp_dir() -> std::io::Result<PathBuf> {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut last = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
    for attempt in 0..16u32 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u32(attempt);
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        let dir = std::env::temp_dir().join(format!("cloud-upload-demo-{:016x}", h.finish()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// The `--keep` directory: created when missing, used when empty, refused when it holds
/// anything (the demo never deletes what it did not make).
fn keep_dir(dir: &Path) -> Result<(), Failure> {
    let shown = dir.display();
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Failure::new(
                Exit::BadInput,
                format!("--keep {shown}: the directory is not empty; give a new or empty one"),
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(|e| Failure::new(Exit::BadInput, format!("--keep {shown}: cannot create it: {e}"))),
        Err(e) => Err(Failure::new(Exit::BadInput, format!("--keep {shown}: {e}"))),
    }
}

/// Removes the demo's temporary directory however the demo ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo; `Ok` when every stored object equals the source.
pub(crate) async fn run(size: u64, keep: Option<PathBuf>) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::new(Exit::Other, e.to_string());
    let dir = match &keep {
        Some(d) => {
            keep_dir(d)?;
            d.clone()
        }
        None => fresh_temp_dir()
            .map_err(|e| Failure::new(Exit::Other, format!("cannot create a temporary directory: {e}")))?,
    };
    // Declared before the emulators, so dropped after them.
    let _cleanup = keep.is_none().then(|| RemoveOnDrop(dir.clone()));
    let ui = Ui::new();
    let source = dir.join("demo.bin");
    ui.line(&format!("cloud-upload demo: generating {} MiB in {}", size >> 20, source.display()));
    generate(&source, size).map_err(io)?;
    let options = Options {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: Some(dir.join("data")),
        // Box takes chunked sessions from 20 MB; a smaller demo file still goes through one.
        box_min: Some(size.clamp(1, box_chunked::CHUNKED_MIN)),
        box_processing: (None, None),
        log_capacity: None,
    };
    let emulators = Emulators::start(Provider::All, &options).await.map_err(io)?;
    ui.line("emulators: OSS, QingStor, Box (API, upload and session hosts, token endpoint) and Graph with SharePoint REST (Graph host, token endpoint, upload host, SharePoint host) on 127.0.0.1");

    let graph = emulators.graph.as_ref().ok_or_else(|| Failure::new(Exit::Vendor, "no Graph emulator"))?;
    let rest_config = graph.rest_config().map_err(|e| Failure::new(Exit::Vendor, e.to_string()))?;
    let backends: Vec<(Provider, &str, Backend, Target)> = vec![
        (
            Provider::Oss,
            "OSS",
            Backend::Oss(
                emulators
                    .oss
                    .as_ref()
                    .map(|e| oss_multipart::Client::new(e.client_config()))
                    .ok_or_else(|| Failure::new(Exit::Vendor, "no OSS emulator"))?
                    .map_err(|e| Failure::new(Exit::Vendor, e.to_string()))?,
            ),
            Target::Oss { bucket: "bucket".into(), key: "demo.bin".into() },
        ),
        (
            Provider::Qingstor,
            "QingStor",
            Backend::QingStor(
                emulators
                    .qingstor
                    .as_ref()
                    .map(|e| qingstor_multipart::Client::new(e.client_config()))
                    .ok_or_else(|| Failure::new(Exit::Vendor, "no QingStor emulator"))?
                    .map_err(|e| Failure::new(Exit::Vendor, e.to_string()))?,
            ),
            Target::QingStor { bucket: "bucket".into(), key: "demo.bin".into() },
        ),
        (
            Provider::Box,
            "Box",
            Backend::Box(
                emulators
                    .boxes
                    .as_ref()
                    .map(|e| box_chunked::Client::new(e.client_config()))
                    .ok_or_else(|| Failure::new(Exit::Vendor, "no Box emulator"))?
                    .map_err(|e| Failure::new(Exit::Vendor, e.to_string()))?,
            ),
            Target::BoxFolder { folder_id: "0".into(), name: "demo.bin".into() },
        ),
        (
            Provider::Graph,
            "Graph",
            Backend::Graph(
                emulators
                    .graph
                    .as_ref()
                    .map(|e| sharepoint_resumable::Client::new(e.client_config()))
                    .ok_or_else(|| Failure::new(Exit::Vendor, "no Graph emulator"))?
                    .map_err(|e| Failure::new(Exit::Vendor, e.to_string()))?,
            ),
            Target::Graph { drive: sharepoint_resumable::Drive::Me, path: "demo.bin".into() },
        ),
        (
            Provider::Graph,
            "SharePoint REST",
            Backend::Rest(
                sharepoint_resumable::RestClient::new(rest_config)
                    .map_err(|e| Failure::new(Exit::Vendor, e.to_string()))?,
            ),
            // The library is the Graph drive: another name than the Graph upload's.
            Target::SharePointRest { path: "Shared Documents/demo-rest.bin".into() },
        ),
    ];

    let mut rows = Vec::new();
    for (provider, label, backend, target) in backends {
        let settings = Settings { concurrency: 4, ..Settings::default() };
        let job = Job { file: source.clone(), target, settings, endpoint: Some(crate::endpoint::of(&backend)) };
        let checkpoint = dir.join(format!("{}.upload.json", label.replace(' ', "-")));
        // QingStor's upload is stopped on purpose at 40%, as a crash or a closed laptop would,
        // and resumed from its checkpoint by a new client that asks the server what it holds.
        let interrupt = provider == Provider::Qingstor;
        let mut outcome = if interrupt {
            let cancel = CancellationToken::new();
            let control = job::Control { cancel: cancel.clone(), stop_at: Some(size * 2 / 5), ..Default::default() };
            match job::run(&backend, &job, &checkpoint, &ui, label, control).await {
                Err(f) if f.exit == Exit::Interrupted && cancel.is_cancelled() => {
                    ui.line(&format!("{label}: interrupted on purpose at 40%; resuming from {}", checkpoint.display()));
                }
                Err(f) => return Err(f),
                Ok(_) => ui.line(&format!("{label}: finished before it could be interrupted")),
            }
            job::run(&backend, &job, &checkpoint, &ui, label, job::Control::default()).await?
        } else {
            job::run(&backend, &job, &checkpoint, &ui, label, job::Control::default()).await?
        };
        outcome.checkpoint = None;
        let stored_name =
            if matches!(job.target, Target::SharePointRest { .. }) { "demo-rest.bin" } else { "demo.bin" };
        let verified = match emulators.stored_file(provider, stored_name) {
            Some(stored) => same_bytes(&source, &stored).map_err(|e| format!("{}: {e}", stored.display())),
            None => Err("no data directory".into()),
        };
        rows.push(Row { outcome, interrupted: interrupt, verified });
    }

    let mut table = String::from(
        "\n| vendor | target | parts | MiB/s | interrupted, then resumed | stored bytes equal the source |\n|---|---|---:|---:|---|---|\n",
    );
    let mut all_ok = true;
    for r in &rows {
        let mib_s = (r.outcome.bytes as f64 / f64::from(1u32 << 20)) / r.outcome.seconds.max(1e-9);
        let resumed = if r.interrupted {
            format!("yes: {} parts were on the server, not sent again", r.outcome.parts_found_on_server)
        } else {
            "no".to_owned()
        };
        let verified = match &r.verified {
            Ok(true) => "yes".to_owned(),
            Ok(false) => {
                all_ok = false;
                "NO".to_owned()
            }
            Err(e) => {
                all_ok = false;
                format!("not checked: {e}")
            }
        };
        table.push_str(&format!(
            "| {} | {} | {} | {mib_s:.0} | {resumed} | {verified} |\n",
            r.outcome.vendor, r.outcome.target, r.outcome.parts
        ));
    }
    println!("{table}");
    if keep.is_some() {
        println!("files kept in {}", dir.display());
    }
    if all_ok { Ok(()) } else { Err(Failure::new(Exit::Vendor, "a stored object differs from the source")) }
}
