//! `cloud-upload`: resumable, verified uploads of large files to Aliyun OSS, QingStor, Box,
//! OneDrive and SharePoint (Graph and SharePoint REST) from the command line, the built-in
//! emulators, and the demo.
//!
//! Exit codes: see [`EXIT_CODES`], which `--help` prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backend;
mod demo;
mod emulators;
mod endpoint;
mod job;
mod progress;
mod target;
mod term;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use upload_core::CancellationToken;

use crate::backend::Backend;
use crate::job::{Exit, Failure, Job, Settings};

/// What each exit code means, for scripts.
const EXIT_CODES: &str = "Exit codes:
  0  done
  1  another failure: an internal error, a local file that cannot be written
  2  bad input: an argument, a source that cannot be read, a checkpoint or job file of another
     upload, or one someone else could have written, an endpoint other than the job's
  3  the credentials were refused
  4  stopped in a resumable state (Ctrl-C, a step, failures that may pass): the checkpoint path
     is printed
  5  the vendor refused the upload (its code is printed)
  130  a second Ctrl-C: quit at once";

#[derive(Parser)]
#[command(
    name = "cloud-upload",
    version,
    about = "Resumable, verified uploads of large files to OSS, QingStor, Box, OneDrive and SharePoint",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Uploads FILE to TARGET: oss://bucket/key, qingstor://bucket/key,
    /// box://folder/FOLDER_ID/NAME, box://file/FILE_ID (a new version), graph://me/PATH,
    /// graph://drive/ID/PATH, graph://site/ID/PATH, graph://group/ID/PATH, or
    /// sharepoint-rest://LIBRARY/PATH (relative to SHAREPOINT_SITE_URL or --endpoint).
    Put {
        file: PathBuf,
        target: String,
        #[command(flatten)]
        options: PutOptions,
    },
    /// Continues the upload of a checkpoint, where it was started: an endpoint, region or zone
    /// given here or in the environment must be the job's.
    Resume {
        checkpoint: PathBuf,
        #[command(flatten)]
        given: Where,
        /// Run for this many seconds, save the state and exit (4 when not finished).
        #[arg(long)]
        step: Option<u64>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Aborts the upload of a checkpoint on the server and removes the checkpoint.
    Abort {
        checkpoint: PathBuf,
        #[command(flatten)]
        given: Where,
    },
    /// Shows what the server holds for a checkpoint's upload.
    Status {
        checkpoint: PathBuf,
        #[command(flatten)]
        given: Where,
    },
    /// Lists unfinished uploads of a bucket (they cost storage): oss://bucket[/prefix] or
    /// qingstor://bucket[/prefix].
    Uploads {
        bucket: String,
        /// Abort every one listed.
        #[arg(long)]
        abort: bool,
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        zone: Option<String>,
    },
    /// Serves the built-in emulators and prints one JSON line per provider.
    Emulator {
        #[arg(long, value_enum, default_value = "all")]
        provider: emulators::Provider,
        /// The first address; with a fixed port, each further listener takes the next one.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Keep finished objects as plain files under this directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Hold every part (fragment, chunk) this many milliseconds before answering, so that a
        /// test can stop an upload halfway.
        #[arg(long, default_value_t = 0)]
        part_delay_ms: u64,
        /// Box's smallest chunked upload, in bytes (20000000, as Box; lower for small tests).
        #[arg(long)]
        box_min: Option<u64>,
        /// How many commits of each Box session are answered 202 (still processing) first.
        #[arg(long)]
        box_processing_commits: Option<u32>,
        /// The Retry-After of those 202 answers, in seconds.
        #[arg(long)]
        box_processing_retry_after: Option<u64>,
        /// How many of the latest requests the OSS, QingStor and Box emulators keep in their logs
        /// (`stats` counts every request).
        #[arg(long)]
        log_capacity: Option<usize>,
    },
    /// Uploads a generated file to every built-in emulator, interrupts one upload and resumes
    /// it, and checks every stored object against the source.
    Demo {
        /// File size, such as 256MiB, 1GiB or 300000000.
        #[arg(long, default_value = "256MiB")]
        size: String,
        /// Keep the generated file, checkpoints and stored objects in this directory.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
}

/// The endpoint, region and zone a command that continues a job may give: they must be the job's.
#[derive(clap::Args)]
struct Where {
    /// The endpoint (for sharepoint-rest://, the site URL).
    #[arg(long)]
    endpoint: Option<String>,
    /// OSS region.
    #[arg(long)]
    region: Option<String>,
    /// QingStor zone.
    #[arg(long)]
    zone: Option<String>,
}

impl From<Where> for endpoint::Given {
    fn from(w: Where) -> Self {
        Self { endpoint: w.endpoint, region: w.region, zone: w.zone }
    }
}

#[derive(clap::Args)]
struct PutOptions {
    /// Part size, such as 8MiB (OSS, QingStor; Box picks its own).
    #[arg(long)]
    part_size: Option<String>,
    /// Parts in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Endpoint (such as oss-cn-hangzhou.aliyuncs.com or http://127.0.0.1:9000), OSS region,
    /// QingStor zone.
    #[command(flatten)]
    place: Where,
    /// OSS signature version: v1 or v4.
    #[arg(long)]
    signature_version: Option<String>,
    /// Checkpoint file (default: ./FILE_NAME.upload.json).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Run for this many seconds, save the state and exit (4 when not finished).
    #[arg(long)]
    step: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// `256MiB`, `1GiB`, `8M`, `300000000`.
fn parse_size(text: &str) -> Result<u64, Failure> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| Failure::new(Exit::BadInput, format!("size {text:?} is not a number")))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(Failure::new(Exit::BadInput, format!("size unit {other:?}: use KiB, MiB, GiB or bytes"))),
    };
    n.checked_mul(factor).ok_or_else(|| Failure::new(Exit::BadInput, format!("size {text:?} is too large")))
}

fn report(outcome: &job::Outcome, json: bool) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_string(outcome).map_err(|e| Failure::new(Exit::Other, e.to_string()))?);
    } else if outcome.done {
        println!(
            "{}: {} bytes in {} parts ({} found on the server) in {:.1} s, {}",
            term::escape(&outcome.target),
            outcome.bytes,
            outcome.parts,
            outcome.parts_found_on_server,
            outcome.seconds,
            term::escape(outcome.stored.as_deref().unwrap_or("stored"))
        );
        if let Some(modified) = &outcome.server_modified {
            println!("{}: {}", term::escape(&outcome.target), term::escape(&modified.to_string()));
        }
    }
    match (&outcome.checkpoint, outcome.done) {
        (Some(cp), false) => Err(Failure::new(
            Exit::Interrupted,
            format!("step over, {} parts stored; continue with: cloud-upload resume {}", outcome.parts, cp.display()),
        )),
        _ => Ok(()),
    }
}

/// Ctrl-C: the first cancels the token (an upload stops with its checkpoint saved, exit 4); a
/// second quits at once with 130, whatever is still waiting.
fn cancel_on_interrupt() -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    // Listening starts now, before anything is sent, and never stops: no Ctrl-C is lost.
    #[cfg(unix)]
    let mut interrupts = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cloud-upload: cannot watch for Ctrl-C: {e}");
            return cancel;
        }
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut next = async || interrupts.recv().await.is_some();
        #[cfg(not(unix))]
        let next = async || tokio::signal::ctrl_c().await.is_ok();
        if !next().await {
            return;
        }
        c.cancel();
        eprintln!("cloud-upload: stopping, the state is being saved (Ctrl-C again to quit at once)");
        if next().await {
            eprintln!("cloud-upload: interrupted");
            std::process::exit(130);
        }
    });
    cancel
}

async fn put(file: PathBuf, target: String, o: PutOptions) -> Result<(), Failure> {
    let cancel = cancel_on_interrupt();
    let target = target::parse(&target).map_err(|e| Failure::new(Exit::BadInput, e))?;
    let part_size = o.part_size.as_deref().map(parse_size).transpose()?;
    let settings = Settings {
        endpoint: o.place.endpoint,
        region: o.place.region,
        zone: o.place.zone,
        signature_version: o.signature_version,
        concurrency: o.concurrency,
        part_size,
    };
    let checkpoint = o.checkpoint.unwrap_or_else(|| {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload".into());
        PathBuf::from(format!("{name}.upload.json"))
    });
    let backend = Backend::from_env(&target, &settings, None)?;
    // The job names its source absolutely: a checkpoint is continued from anywhere, and another
    // file of the same name is another job.
    let file = std::fs::canonicalize(&file)
        .map_err(|e| Failure::new(Exit::BadInput, format!("{}: {e}", term::escape(&file.display().to_string()))))?;
    let job = Job { file, target, settings, endpoint: Some(endpoint::of(&backend)) };
    if std::fs::symlink_metadata(job::job_path(&checkpoint)).is_ok() {
        job.check_same(&Job::load(&checkpoint)?, &checkpoint)?;
    }
    let label = job.target.vendor();
    let ui = progress::Ui::new();
    let step = o.step.map(Duration::from_secs);
    let control = job::Control { step, cancel, stop_at: None };
    let outcome = job::run(&backend, &job, &checkpoint, &ui, label, control).await?;
    report(&outcome, o.json)
}

/// A checkpoint's job and a client where it was started.
fn continue_job(checkpoint: &Path, given: Where) -> Result<(Job, Backend), Failure> {
    let job = Job::load(checkpoint)?;
    let given = endpoint::Given::from(given);
    let backend = endpoint::continue_job(&job.target, &job.settings, job.endpoint.as_ref(), &given, checkpoint)?;
    Ok((job, backend))
}

async fn resume(checkpoint: &Path, given: Where, step: Option<u64>, json: bool) -> Result<(), Failure> {
    let cancel = cancel_on_interrupt();
    let (job, backend) = continue_job(checkpoint, given)?;
    let ui = progress::Ui::new();
    ui.line(&format!(
        "resuming {} to {} at {}",
        term::escape(&job.file.display().to_string()),
        term::escape(&job.target.to_string()),
        term::escape(&endpoint::of(&backend).to_string())
    ));
    let label = job.target.vendor();
    let control = job::Control { step: step.map(Duration::from_secs), cancel, stop_at: None };
    let outcome = job::run(&backend, &job, checkpoint, &ui, label, control).await?;
    report(&outcome, json)
}

async fn uploads(bucket: &str, abort: bool, endpoint: Option<String>, zone: Option<String>) -> Result<(), Failure> {
    // Ctrl-C stops between calls (a call in flight, an abort above all, is let finish; a second
    // Ctrl-C quits at once).
    let cancel = cancel_on_interrupt();
    let stopped =
        |count: usize| Failure::new(Exit::Interrupted, format!("stopped at Ctrl-C after {count} unfinished uploads"));
    let (scheme, bucket, prefix) = target::parse_bucket(bucket).map_err(|e| Failure::new(Exit::BadInput, e))?;
    let settings = Settings { endpoint, zone, ..Settings::default() };
    let vendor_error = |e: &dyn std::fmt::Display| Failure::new(Exit::Vendor, e.to_string());
    // A listing whose markers do not move forward would be asked for ever.
    let mut markers = upload_core::paging::UploadMarkers::new();
    let listing_error = |e: &str| Failure::new(Exit::Vendor, format!("the server's listing breaks its protocol: {e}"));
    let mut count = 0;
    if scheme == "oss" {
        let probe = target::Target::Oss { bucket: bucket.clone(), key: "x".into() };
        let Backend::Oss(client) = Backend::from_env(&probe, &settings, None)? else { return Ok(()) };
        let mut page = oss_multipart::types::ListUploadsPage {
            prefix: (!prefix.is_empty()).then(|| prefix.clone()),
            ..Default::default()
        };
        loop {
            let result = client.list_multipart_uploads(&bucket, &page).await.map_err(|e| vendor_error(&e))?;
            for u in &result.uploads {
                if cancel.is_cancelled() {
                    return Err(stopped(count));
                }
                let (key, id, at) = (term::escape(&u.key), term::escape(&u.upload_id), term::escape(&u.initiated));
                println!("oss://{}/{key}\t{id}\t{at}", term::escape(&bucket));
                if abort {
                    client.abort_multipart_upload(&bucket, &u.key, &u.upload_id).await.map_err(|e| vendor_error(&e))?;
                }
                count += 1;
            }
            if !result.is_truncated || cancel.is_cancelled() {
                break;
            }
            let (key, id) = (result.next_key_marker.as_deref(), result.next_upload_id_marker.as_deref());
            markers.next_page(result.uploads.len(), key, id).map_err(|e| listing_error(&e))?;
            page.key_marker = result.next_key_marker.clone();
            page.upload_id_marker = result.next_upload_id_marker.clone();
        }
    } else {
        let probe = target::Target::QingStor { bucket: bucket.clone(), key: "x".into() };
        let Backend::QingStor(client) = Backend::from_env(&probe, &settings, None)? else { return Ok(()) };
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = client
                .list_multipart_uploads(
                    &bucket,
                    (!prefix.is_empty()).then_some(prefix.as_str()),
                    key_marker.as_deref(),
                    id_marker.as_deref(),
                    Some(1000),
                )
                .await
                .map_err(|e| vendor_error(&e))?;
            for u in &page.uploads {
                if cancel.is_cancelled() {
                    return Err(stopped(count));
                }
                let (key, id) = (term::escape(&u.key), term::escape(&u.upload_id));
                let at = term::escape(u.created.as_deref().unwrap_or_default());
                println!("qingstor://{}/{key}\t{id}\t{at}", term::escape(&bucket));
                if abort {
                    client.abort_multipart_upload(&bucket, &u.key, &u.upload_id).await.map_err(|e| vendor_error(&e))?;
                }
                count += 1;
            }
            if page.has_more != Some(true) || cancel.is_cancelled() {
                break;
            }
            let (key, id) = (page.next_key_marker.as_deref(), page.next_upload_id_marker.as_deref());
            markers.next_page(page.uploads.len(), key, id).map_err(|e| listing_error(&e))?;
            (key_marker, id_marker) = (page.next_key_marker, page.next_upload_id_marker);
        }
    }
    if cancel.is_cancelled() {
        return Err(stopped(count));
    }
    eprintln!("{count} unfinished uploads{}", if abort { ", aborted" } else { "" });
    Ok(())
}

async fn serve(
    provider: emulators::Provider,
    options: emulators::Options,
    part_delay: Duration,
) -> Result<(), Failure> {
    let running = emulators::Emulators::start(provider, &options)
        .await
        .map_err(|e| Failure::new(Exit::BadInput, format!("cannot start the emulators: {e}")))?;
    {
        // A reader that stopped reading must not bring the emulators down (no panic on EPIPE).
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        for line in running.lines() {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    if !part_delay.is_zero() {
        running.delay_parts(part_delay);
    }
    // Serve until Ctrl-C or until whoever started us closes our standard input; a `stats` line
    // there is answered with what all the emulators received, and `expire-sessions` ends every
    // open Graph and SharePoint REST session as if its idle time had passed.
    let command = |line: &str| line == "expire-sessions" && running.expire_sessions();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = upload_core::emulator::serve_stdin_with(|| running.stats(), command) => {}
    }
    drop(running);
    Ok(())
}

async fn main_result(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Put { file, target, options } => put(file, target, options).await,
        Command::Resume { checkpoint, given, step, json } => resume(&checkpoint, given, step, json).await,
        Command::Abort { checkpoint, given } => {
            let (job, backend) = continue_job(&checkpoint, given)?;
            job::abort(&backend, &job, &checkpoint).await?;
            println!("aborted {}", term::escape(&job.target.to_string()));
            Ok(())
        }
        Command::Status { checkpoint, given } => {
            let (job, backend) = continue_job(&checkpoint, given)?;
            let (parts, bytes, planned) = job::status(&backend, &job, &checkpoint).await?;
            let planned = planned.map_or_else(|| "?".to_owned(), |n| n.to_string());
            println!(
                "{}: the server holds {parts} of {planned} parts ({bytes} bytes) of {}",
                term::escape(&job.target.to_string()),
                term::escape(&job.file.display().to_string())
            );
            Ok(())
        }
        Command::Uploads { bucket, abort, endpoint, zone } => uploads(&bucket, abort, endpoint, zone).await,
        Command::Emulator {
            provider,
            listen,
            data_dir,
            part_delay_ms,
            box_min,
            box_processing_commits,
            box_processing_retry_after,
            log_capacity,
        } => {
            let options = emulators::Options {
                listen,
                data_dir,
                box_min,
                box_processing: (box_processing_commits, box_processing_retry_after),
                log_capacity,
            };
            serve(provider, options, Duration::from_millis(part_delay_ms)).await
        }
        Command::Demo { size, keep } => demo::run(parse_size(&size)?, keep).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match main_result(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("cloud-upload: {}", term::message(&f.message));
            ExitCode::from(f.exit as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("8M").unwrap(), 8 << 20);
        assert_eq!(parse_size("300000000").unwrap(), 300_000_000);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
