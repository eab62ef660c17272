//! `cloud-upload`: resumable, verified uploads of large files to Aliyun OSS, QingStor, Box,
//! OneDrive and SharePoint (Graph and SharePoint REST) from the command line, the built-in
//! emulators, and the demo.
//!
//! Exit codes: 0 done; 2 bad input; 3 credentials refused; 4 stopped in a resumable state (the
//! checkpoint path is printed); 5 the vendor refused (its code is printed); 1 anything else.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod demo;
mod emulators;
mod job;
mod progress;
mod target;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use upload_core::CancellationToken;

use crate::job::{Backend, Exit, Failure, Job, Settings};

#[derive(Parser)]
#[command(
    name = "cloud-upload",
    version,
    about = "Resumable, verified uploads of large files to OSS, QingStor, Box, OneDrive and SharePoint"
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
    /// Continues the upload of a checkpoint.
    Resume {
        checkpoint: PathBuf,
        /// Run for this many seconds, save the state and exit (4 when not finished).
        #[arg(long)]
        step: Option<u64>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Aborts the upload of a checkpoint on the server and removes the checkpoint.
    Abort { checkpoint: PathBuf },
    /// Shows what the server holds for a checkpoint's upload.
    Status { checkpoint: PathBuf },
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

#[derive(clap::Args)]
struct PutOptions {
    /// Part size, such as 8MiB (OSS, QingStor; Box picks its own).
    #[arg(long)]
    part_size: Option<String>,
    /// Parts in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Endpoint, such as oss-cn-hangzhou.aliyuncs.com or http://127.0.0.1:9000 (for
    /// sharepoint-rest://, the site URL).
    #[arg(long)]
    endpoint: Option<String>,
    /// OSS region (V4 signing).
    #[arg(long)]
    region: Option<String>,
    /// QingStor zone.
    #[arg(long)]
    zone: Option<String>,
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
        println!("{}", serde_json::to_string(outcome).map_err(|e| Failure::new(Exit::BadInput, e.to_string()))?);
    } else if outcome.done {
        println!(
            "{}: {} bytes in {} parts ({} found on the server) in {:.1} s, {}",
            outcome.target,
            outcome.bytes,
            outcome.parts,
            outcome.parts_found_on_server,
            outcome.seconds,
            outcome.stored.as_deref().unwrap_or("stored")
        );
    }
    match (&outcome.checkpoint, outcome.done) {
        (Some(cp), false) => Err(Failure::new(
            Exit::Interrupted,
            format!("step over, {} parts stored; continue with: cloud-upload resume {}", outcome.parts, cp.display()),
        )),
        _ => Ok(()),
    }
}

/// Cancels the token at Ctrl-C: the upload stops with its checkpoint saved.
fn cancel_on_interrupt() -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            c.cancel();
        }
    });
    cancel
}

async fn put(file: PathBuf, target: String, o: PutOptions) -> Result<(), Failure> {
    let target = target::parse(&target).map_err(|e| Failure::new(Exit::BadInput, e))?;
    let part_size = o.part_size.as_deref().map(parse_size).transpose()?;
    let settings = Settings {
        endpoint: o.endpoint,
        region: o.region,
        zone: o.zone,
        signature_version: o.signature_version,
        concurrency: o.concurrency,
        part_size,
    };
    let checkpoint = o.checkpoint.unwrap_or_else(|| {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload".into());
        PathBuf::from(format!("{name}.upload.json"))
    });
    let backend = Backend::from_env(&target, &settings)?;
    let job = Job { file, target, settings };
    let label = job.target.vendor();
    let ui = progress::Ui::new();
    let step = o.step.map(Duration::from_secs);
    let control = job::Control { step, cancel: cancel_on_interrupt(), stop_at: None };
    let outcome = job::run(&backend, &job, &checkpoint, &ui, label, control).await?;
    report(&outcome, o.json)
}

async fn resume(checkpoint: &Path, step: Option<u64>, json: bool) -> Result<(), Failure> {
    let job = Job::load(checkpoint)?;
    let backend = Backend::from_env(&job.target, &job.settings)?;
    let ui = progress::Ui::new();
    let label = job.target.vendor();
    let control = job::Control { step: step.map(Duration::from_secs), cancel: cancel_on_interrupt(), stop_at: None };
    let outcome = job::run(&backend, &job, checkpoint, &ui, label, control).await?;
    report(&outcome, json)
}

async fn uploads(bucket: &str, abort: bool, endpoint: Option<String>, zone: Option<String>) -> Result<(), Failure> {
    let (scheme, bucket, prefix) = target::parse_bucket(bucket).map_err(|e| Failure::new(Exit::BadInput, e))?;
    let settings = Settings { endpoint, zone, ..Settings::default() };
    let vendor_error = |e: &dyn std::fmt::Display| Failure::new(Exit::Vendor, e.to_string());
    let mut count = 0;
    if scheme == "oss" {
        let probe = target::Target::Oss { bucket: bucket.clone(), key: "x".into() };
        let Backend::Oss(client) = Backend::from_env(&probe, &settings)? else { return Ok(()) };
        let mut page = oss_multipart::types::ListUploadsPage {
            prefix: (!prefix.is_empty()).then(|| prefix.clone()),
            ..Default::default()
        };
        loop {
            let result = client.list_multipart_uploads(&bucket, &page).await.map_err(|e| vendor_error(&e))?;
            for u in &result.uploads {
                println!("oss://{bucket}/{}\t{}\t{}", u.key, u.upload_id, u.initiated);
                if abort {
                    client.abort_multipart_upload(&bucket, &u.key, &u.upload_id).await.map_err(|e| vendor_error(&e))?;
                }
                count += 1;
            }
            if !result.is_truncated {
                break;
            }
            page.key_marker = result.next_key_marker.clone();
            page.upload_id_marker = result.next_upload_id_marker.clone();
        }
    } else {
        let probe = target::Target::QingStor { bucket: bucket.clone(), key: "x".into() };
        let Backend::QingStor(client) = Backend::from_env(&probe, &settings)? else { return Ok(()) };
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
                println!("qingstor://{bucket}/{}\t{}\t{}", u.key, u.upload_id, u.created.clone().unwrap_or_default());
                if abort {
                    client.abort_multipart_upload(&bucket, &u.key, &u.upload_id).await.map_err(|e| vendor_error(&e))?;
                }
                count += 1;
            }
            if page.has_more != Some(true) {
                break;
            }
            (key_marker, id_marker) = (page.next_key_marker, page.next_upload_id_marker);
        }
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
        Command::Resume { checkpoint, step, json } => resume(&checkpoint, step, json).await,
        Command::Abort { checkpoint } => {
            let job = Job::load(&checkpoint)?;
            let backend = Backend::from_env(&job.target, &job.settings)?;
            job::abort(&backend, &job, &checkpoint).await?;
            println!("aborted {}", job.target);
            Ok(())
        }
        Command::Status { checkpoint } => {
            let job = Job::load(&checkpoint)?;
            let backend = Backend::from_env(&job.target, &job.settings)?;
            let (parts, bytes, planned) = job::status(&backend, &job, &checkpoint).await?;
            let planned = planned.map_or_else(|| "?".to_owned(), |n| n.to_string());
            println!(
                "{}: the server holds {parts} of {planned} parts ({bytes} bytes) of {}",
                job.target,
                job.file.display()
            );
            Ok(())
        }
        Command::Uploads { bucket, abort, endpoint, zone } => uploads(&bucket, abort, endpoint, zone).await,
        Command::Emulator { provider, listen, data_dir, part_delay_ms, box_min } => {
            let options = emulators::Options { listen, data_dir, box_min };
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
            eprintln!("cloud-upload: {}", f.message);
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
