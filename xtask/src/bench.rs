//! `cargo xtask bench`: measurements, side by side in one run, never assertions.
//!
//! 1. Hash throughput: every hash the vendors need, on one buffer.
//! 2. Per vendor (OSS, QingStor, Box, Graph; `--skip-oss`, `--skip-qingstor`, `--skip-box`, `--skip-graph`): a
//!    generated file (1 GiB by
//!    default, `--size MIB`) uploaded to the vendor's emulator running as its own process, by our
//!    uploader and by the official Python SDK's uploader, runs alternating (ours, theirs, ours, …;
//!    `--rounds N`, 3 by default), with the CPU of exactly the hashing the vendor needs over the
//!    same file as the limit (OSS: MD5 and CRC-64 per part; QingStor: MD5 per part and of the
//!    whole object; Box: SHA-1 per part and of the whole file; Graph: the QuickXorHash of the whole
//!    file). Graph takes one fragment at a time, so its row runs at concurrency 1 and its memory
//!    bound is one fragment + 64 MiB.
//!
//! The table is printed and written to `target/bench/report.md`.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

#[derive(Deserialize, Clone, Copy)]
struct Run {
    seconds: f64,
    bytes: u64,
    cpu_seconds: f64,
    peak_rss_bytes: u64,
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// A file of `size` bytes of incompressible data, made once and kept.
fn input_file(root: &Path, size: u64) -> Result<PathBuf, String> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join(format!("input-{}MiB.bin", size >> 20));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == size) {
        return Ok(path);
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| e.to_string())?);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = (size - written).min(block.len() as u64) as usize;
        out.write_all(&block[..n]).map_err(|e| e.to_string())?;
        written += n as u64;
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(path)
}

fn json_run(command: &mut Command, what: &str) -> Result<Run, String> {
    let out = command.stderr(Stdio::inherit()).output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed with {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("{what} printed {line:?}: {e}"))
}

/// One vendor's row: its emulator and bench client, and the official SDK's script beside it.
struct Vendor {
    name: &'static str,
    skip_flag: &'static str,
    package: &'static str,
    emulator: &'static str,
    client: &'static str,
    peer_script: &'static str,
    /// The official SDK's runs: label and extra script arguments.
    peers: &'static [(&'static str, &'static [&'static str])],
    limit: &'static str,
    /// Arguments of the emulator process.
    emulator_args: &'static [&'static str],
    /// The part size in MiB (Box picks its own: 32 MiB for a file of 256 MiB to 4 GiB).
    part_mib: u64,
    /// Parts in flight at once (1 where the protocol is sequential).
    concurrency: u64,
}

const VENDORS: &[Vendor] = &[
    Vendor {
        name: "OSS",
        skip_flag: "--skip-oss",
        package: "oss-multipart",
        emulator: "oss_emulator",
        client: "oss_bench_upload",
        peer_script: "tests/conformance/oss_bench.py",
        peers: &[("oss2 2.19.1 resumable_upload (4 threads)", &[])],
        limit: "MD5 + CRC-64 of every part",
        emulator_args: &["--no-verify-md5", "--discard-bodies"],
        part_mib: 8,
        concurrency: 4,
    },
    Vendor {
        name: "QingStor",
        skip_flag: "--skip-qingstor",
        package: "qingstor-multipart",
        emulator: "qingstor_emulator",
        client: "qingstor_bench_upload",
        peer_script: "tests/conformance/qingstor_bench.py",
        peers: &[
            ("qingstor-sdk 2.6.0 UploadClient (sequential, no checksums)", &[]),
            (
                "qingstor-sdk 2.6.0 documented multipart loop with Content-MD5 and whole-object ETag",
                &["bench-qingstor.bin", "md5"],
            ),
        ],
        limit: "MD5 of every part + MD5 of the whole object",
        emulator_args: &["--no-verify-md5", "--discard-bodies"],
        part_mib: 8,
        concurrency: 4,
    },
    Vendor {
        name: "Box",
        skip_flag: "--skip-box",
        package: "box-chunked",
        emulator: "box_emulator",
        client: "box_bench_upload",
        peer_script: "tests/conformance/box_bench.py",
        peers: &[("boxsdk 10.18.0 upload_big_file (sequential)", &[])],
        limit: "SHA-1 of every part + SHA-1 of the whole file",
        // Throughput, not Box's processing delay: no 202 at commit.
        emulator_args: &["--discard-bodies", "--processing-commits", "0"],
        part_mib: 32,
        concurrency: 4,
    },
    Vendor {
        name: "Graph",
        skip_flag: "--skip-graph",
        package: "sharepoint-resumable",
        emulator: "sharepoint_emulator",
        client: "sharepoint_bench_upload",
        peer_script: "tests/conformance/graph_bench.py",
        peers: &[("msgraph-core 1.5.2 LargeFileUploadTask (sequential, caller-driven ranges)", &[])],
        limit: "QuickXorHash of the whole file",
        emulator_args: &["--discard-bodies"],
        // Graph's recommended fragment size, a multiple of 320 KiB; fragments go one at a time.
        part_mib: 10,
        concurrency: 1,
    },
];

fn vendor(root: &Path, args: &[String], v: &Vendor, report: &mut String) -> Result<(), String> {
    let size = arg(args, "--size", 1024) << 20;
    let rounds = arg(args, "--rounds", 3).max(1);
    let (part_mib, concurrency) = (v.part_mib, v.concurrency);
    crate::run_checked(
        crate::cargo().args([
            "build",
            "--release",
            "--locked",
            "-p",
            v.package,
            "--all-features",
            "--example",
            v.emulator,
            "--example",
            v.client,
        ]),
        "cargo build --release (bench)",
    )?;
    let python = crate::conformance::venv(root)?;
    let file = input_file(root, size)?;
    let examples = root.join("target/release/examples");
    let mut emulator = Command::new(examples.join(v.emulator))
        .args(v.emulator_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
    let mut line = String::new();
    if let Some(out) = emulator.stdout.take() {
        BufReader::new(out).read_line(&mut line).map_err(|e| e.to_string())?;
    }
    let emu = line.trim().to_owned();
    let (mut ours, mut hashing) = (Vec::new(), Vec::new());
    let mut theirs: Vec<Vec<Run>> = v.peers.iter().map(|_| Vec::new()).collect();
    let result = (|| -> Result<(), String> {
        for round in 0..rounds {
            println!("bench {}: round {}/{rounds}", v.name, round + 1);
            ours.push(json_run(
                Command::new(examples.join(v.client)).env("EMULATOR", &emu).arg("--file").arg(&file).args([
                    "--part-size-mib",
                    &part_mib.to_string(),
                    "--concurrency",
                    &concurrency.to_string(),
                ]),
                "our uploader",
            )?);
            for ((label, extra), runs) in v.peers.iter().zip(theirs.iter_mut()) {
                runs.push(json_run(
                    Command::new(&python)
                        .env("EMULATOR", &emu)
                        .arg(root.join(v.peer_script))
                        .arg(&file)
                        .args([part_mib.to_string(), "4".to_owned()])
                        .args(*extra),
                    label,
                )?);
            }
            hashing.push(json_run(
                Command::new(examples.join(v.client)).arg("--file").arg(&file).args([
                    "--part-size-mib",
                    &part_mib.to_string(),
                    "--hash-only",
                ]),
                "hashing limit",
            )?);
        }
        Ok(())
    })();
    drop(emulator.stdin.take());
    let _ = emulator.wait();
    result?;

    let gib = size as f64 / f64::from(1u32 << 30);
    let stats = |runs: &[Run]| {
        let mib_s = median(runs.iter().map(|r| r.bytes as f64 / f64::from(1u32 << 20) / r.seconds).collect());
        let cpu = median(runs.iter().map(|r| r.cpu_seconds / gib).collect());
        let rss = median(runs.iter().map(|r| r.peak_rss_bytes as f64 / f64::from(1u32 << 20)).collect());
        (mib_s, cpu, rss)
    };
    let (o, h) = (stats(&ours), stats(&hashing));
    let bound = (concurrency * part_mib + 64) as f64;
    let mut table = format!(
        "{}: {} MiB file to the emulator in its own process, {part_mib} MiB parts, median of {rounds} alternating rounds\n\n\
         | client | MiB/s | CPU s/GiB | peak RSS MiB |\n|---|---:|---:|---:|\n\
         | {} (concurrency {concurrency}) | {:.0} | {:.2} | {:.0} |\n",
        v.name,
        size >> 20,
        v.package,
        o.0,
        o.1,
        o.2,
    );
    let peers: Vec<(&str, (f64, f64, f64))> = v.peers.iter().zip(&theirs).map(|((l, _), r)| (*l, stats(r))).collect();
    for (label, t) in &peers {
        table.push_str(&format!("| {label} | {:.0} | {:.2} | {:.0} |\n", t.0, t.1, t.2));
    }
    table.push_str(&format!("| limit: {}, one core | {:.0} | {:.2} | {:.0} |\n\n", v.limit, h.0, h.1, h.2));
    for (label, t) in &peers {
        table.push_str(&format!("- throughput ours / {label}: {:.1}x (target >= 3)\n", o.0 / t.0));
    }
    table.push_str(&format!(
        "- CPU ours / hashing limit: {:.2}x (target <= 1.3)\n\
         - peak RSS {:.0} MiB against a bound of {bound:.0} MiB (concurrency x part size + 64 MiB)\n\n",
        o.1 / h.1,
        o.2
    ));
    println!("{table}");
    report.push_str(&table);
    Ok(())
}

/// Runs every benchmark and writes the report.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let mut report = String::from("# Benchmarks\n\n");
    let hash = crate::cargo()
        .args(["run", "--release", "--locked", "-p", "upload-core", "--example", "hash_bench", "--"])
        .args(args.iter().filter(|a| !VENDORS.iter().any(|v| v.skip_flag == a.as_str())))
        .output()
        .map_err(|e| format!("hash bench: {e}"))?;
    let text = String::from_utf8_lossy(&hash.stdout);
    print!("{text}");
    if !hash.status.success() {
        return Err("the hash bench failed".into());
    }
    report.push_str(&text);
    report.push('\n');
    for v in VENDORS {
        if !args.iter().any(|a| a == v.skip_flag) {
            vendor(root, args, v, &mut report)?;
        }
    }
    let path = root.join("target/bench/report.md");
    std::fs::create_dir_all(root.join("target/bench")).map_err(|e| e.to_string())?;
    std::fs::write(&path, report).map_err(|e| e.to_string())?;
    println!("report written to {}", path.display());
    Ok(())
}
