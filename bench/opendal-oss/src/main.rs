//! Benchmark peer: uploads one file to our OSS emulator with Apache OpenDAL's `oss` service.
//!
//! Not a workspace member (CI never builds it); `cargo xtask bench` builds and runs it next to
//! our own uploader.
//!
//! ```text
//! EMULATOR='<JSON line printed by oss_emulator>' opendal-oss-bench <path> <part_mib> <concurrency> [key]
//! ```
//!
//! Prints one JSON line on stdout:
//! `{"seconds", "bytes", "cpu_seconds", "peak_rss_bytes"}`.

use std::fs::File;
use std::io::Read;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opendal::Operator;
use opendal::services::Oss;
use serde_json::Value;

/// Clock ticks per second of `utime`/`stime` in /proc (USER_HZ on Linux).
const USER_HZ: f64 = 100.0;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("opendal-oss-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<Value, BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 || args.len() > 4 {
        return Err("usage: opendal-oss-bench <path> <part_mib> <concurrency> [key] (env EMULATOR = JSON line)".into());
    }
    let path = args[0].clone();
    let part_mib: usize = args[1].parse().map_err(|e| format!("part_mib {:?}: {e}", args[1]))?;
    let concurrency: usize = args[2].parse().map_err(|e| format!("concurrency {:?}: {e}", args[2]))?;
    if part_mib == 0 || concurrency == 0 {
        return Err("part_mib and concurrency must be at least 1".into());
    }
    let part_size = part_mib * 1024 * 1024;
    let key = match args.get(3) {
        Some(key) => key.clone(),
        // The emulator keeps objects between runs: give each run its own key.
        None => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
            format!("bench/opendal-oss-{}-{}-{}", now.as_secs(), now.subsec_nanos(), std::process::id())
        }
    };

    let emulator: Value = serde_json::from_str(&std::env::var("EMULATOR").map_err(|e| format!("EMULATOR: {e}"))?)
        .map_err(|e| format!("EMULATOR is not JSON: {e}"))?;
    let field = |name: &str| -> Result<String, BoxError> {
        emulator
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("EMULATOR has no string field {name:?}").into())
    };

    // No auto-registration (ctor) feature: install OpenDAL's default HTTP transport (reqwest) here.
    opendal::install_default();

    let builder = Oss::default()
        .endpoint(&field("endpoint")?)
        // The emulator listens on an IP address: `<bucket>.127.0.0.1` would not resolve, so the
        // bucket goes in the path (the emulator answers both styles, as real OSS does).
        .addressing_style("path")
        .bucket(&field("bucket")?)
        .access_key_id(&field("access_key_id")?)
        .access_key_secret(&field("access_key_secret")?)
        .root("/");
    let op = Operator::new(builder)?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let started = Instant::now();
    let bytes = runtime.block_on(upload(&op, &path, &key, part_size, concurrency))?;
    let seconds = started.elapsed().as_secs_f64();

    Ok(serde_json::json!({
        "seconds": seconds,
        "bytes": bytes,
        "cpu_seconds": cpu_seconds()?,
        "peak_rss_bytes": peak_rss_bytes()?,
    }))
}

/// Uploads `path` as `key`, feeding the writer one part-size read at a time; returns the bytes sent.
async fn upload(op: &Operator, path: &str, key: &str, part_size: usize, concurrency: usize) -> Result<u64, BoxError> {
    let mut file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut writer = op.writer_with(key).chunk(part_size).concurrent(concurrency).await?;
    let mut total = 0u64;
    loop {
        // The read runs on the blocking pool so it does not stall the runtime's workers.
        let (returned, part) = tokio::task::spawn_blocking(move || {
            let part = read_part(&mut file, part_size);
            (file, part)
        })
        .await?;
        file = returned;
        let part = part.map_err(|e| format!("{path}: {e}"))?;
        if part.is_empty() {
            break;
        }
        total += part.len() as u64;
        let short = part.len() < part_size;
        if let Err(e) = writer.write(part).await {
            let _ = writer.abort().await;
            return Err(e.into());
        }
        if short {
            break;
        }
    }
    writer.close().await?;
    Ok(total)
}

/// Reads up to `part_size` bytes (fewer only at the end of the file).
fn read_part(file: &mut File, part_size: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; part_size];
    let mut filled = 0;
    while filled < part_size {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// User plus system CPU time of this process so far, from /proc/self/stat.
fn cpu_seconds() -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or("/proc/self/stat: no ')'")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11).ok_or("/proc/self/stat: no utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("/proc/self/stat: no stime")?.parse()?;
    Ok((utime + stime) as f64 / USER_HZ)
}

/// Peak resident set size (VmHWM) from /proc/self/status, in bytes.
fn peak_rss_bytes() -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).ok_or("/proc/self/status: no VmHWM")?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib * 1024)
}
