//! `cargo xtask bench`: measurements, side by side in one run, never assertions.
//!
//! 1. Hash throughput: every hash the vendors need, on one buffer.
//! 2. Per vendor (OSS, QingStor, Box, Graph, SharePoint REST; `--skip-oss`, `--skip-qingstor`,
//!    `--skip-box`, `--skip-graph`, `--skip-sharepoint-rest`): a generated file (1 GiB by default, `--size MIB`) uploaded to the vendor's
//!    emulator running as its own process, by our uploader, by the official Python SDK (the one
//!    the conformance run uses) and, for OSS, by OpenDAL's `oss` service, in alternating runs
//!    (ours, theirs, ours, …; `--rounds N`, 3 by default). Every run's requests and the bytes
//!    they carried are counted by the emulator, the same way for every client. Two limits are
//!    measured in the same rounds: the CPU of exactly the hashing the vendor needs (OSS: MD5 and
//!    CRC-64 per part; QingStor: MD5 per part and of the whole object; Box: SHA-1 per part and of
//!    the whole file; Graph: the QuickXorHash of the whole file; SharePoint REST: none), and plain HTTP PUTs of the same
//!    parts at the same concurrency to a server that throws them away (the transport limit).
//! 3. Scaling (OSS; `--skip-scaling`): throughput and peak RSS for part sizes 5, 8, 16 and 64 MiB
//!    × concurrency 1, 2, 4 and 8, and peak RSS for files of 256 MiB, 1 GiB and 4 GiB.
//!
//! The tables are printed and written to `target/bench/report.md`, the scaling charts to
//! `target/bench/scaling.svg`; `--write-docs` also writes both to `docs/` (`benchmarks.md`,
//! `benchmarks-scaling.svg`), the copy the repository keeps.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::{Server, arg, flag, median};

use serde::Deserialize;

/// What a client printed about its run.
#[derive(Deserialize, Clone, Copy, Debug)]
struct Run {
    seconds: f64,
    bytes: u64,
    cpu_seconds: f64,
    peak_rss_bytes: u64,
}

/// A run with what the server received during it.
#[derive(Clone, Copy, Debug)]
struct Measured {
    run: Run,
    requests: u64,
    body_bytes: u64,
}

const MIB: f64 = 1_048_576.0;
const GIB: f64 = 1_073_741_824.0;

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

/// Runs a client against a server and counts what it sent.
fn measure(server: &mut Server, command: &mut Command, what: &str) -> Result<Measured, String> {
    let before = server.stats()?;
    let line = server.lines.first().cloned().unwrap_or_default();
    let run = json_run(command.env("EMULATOR", line), what)?;
    let after = server.stats()?;
    Ok(Measured {
        run,
        requests: after.requests.saturating_sub(before.requests),
        body_bytes: after.body_bytes.saturating_sub(before.body_bytes),
    })
}

/// One vendor's row: its emulator and bench client, and the peers beside it.
struct Vendor {
    name: &'static str,
    skip_flag: &'static str,
    package: &'static str,
    emulator: &'static str,
    client: &'static str,
    peer_script: &'static str,
    /// The official SDK's runs: label and extra script arguments.
    peers: &'static [(&'static str, &'static [&'static str])],
    /// OpenDAL's service for this vendor, when it can be pointed at the emulator.
    opendal: Option<&'static str>,
    /// The hashing the vendor requires (None: it requires none).
    limit: Option<&'static str>,
    /// Extra arguments of our bench client.
    client_args: &'static [&'static str],
    /// Arguments of the emulator process.
    emulator_args: &'static [&'static str],
    /// The part size in MiB (Box picks its own: 32 MiB for a file of 256 MiB to 4 GiB).
    part_mib: u64,
    /// Parts in flight at once (1 where the protocol is sequential).
    concurrency: u64,
    /// Parts buffered at most: one more than in flight for a sequential protocol, which reads
    /// the next part while one is sent.
    buffered_parts: u64,
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
        opendal: Some("opendal-oss-bench"),
        limit: Some("MD5 + CRC-64 of every part"),
        client_args: &[],
        emulator_args: &["--no-verify-md5", "--discard-bodies"],
        part_mib: 8,
        concurrency: 4,
        buffered_parts: 4,
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
        opendal: None,
        limit: Some("MD5 of every part + MD5 of the whole object"),
        client_args: &[],
        emulator_args: &["--no-verify-md5", "--discard-bodies"],
        part_mib: 8,
        concurrency: 4,
        buffered_parts: 4,
    },
    Vendor {
        name: "Box",
        skip_flag: "--skip-box",
        package: "box-chunked",
        emulator: "box_emulator",
        client: "box_bench_upload",
        peer_script: "tests/conformance/box_bench.py",
        peers: &[("boxsdk 10.18.0 upload_big_file (sequential)", &[])],
        opendal: None,
        limit: Some("SHA-1 of every part + SHA-1 of the whole file"),
        client_args: &[],
        // Throughput, not Box's processing delay: no 202 at commit.
        emulator_args: &["--discard-bodies", "--processing-commits", "0"],
        part_mib: 32,
        concurrency: 4,
        buffered_parts: 4,
    },
    Vendor {
        name: "Graph",
        skip_flag: "--skip-graph",
        package: "sharepoint-resumable",
        emulator: "sharepoint_emulator",
        client: "sharepoint_bench_upload",
        peer_script: "tests/conformance/graph_bench.py",
        peers: &[("msgraph-core 1.5.2 LargeFileUploadTask (sequential, caller-driven ranges)", &[])],
        // OpenDAL's onedrive service has Graph's address built in: it cannot reach an emulator.
        opendal: None,
        limit: Some("QuickXorHash of the whole file"),
        client_args: &[],
        emulator_args: &["--discard-bodies"],
        // Graph's recommended fragment size, a multiple of 320 KiB; fragments go one at a time.
        part_mib: 10,
        concurrency: 1,
        buffered_parts: 2,
    },
    Vendor {
        name: "SharePoint REST",
        skip_flag: "--skip-sharepoint-rest",
        package: "sharepoint-resumable",
        emulator: "sharepoint_emulator",
        client: "sharepoint_bench_upload",
        peer_script: "tests/conformance/sharepoint_rest_bench.py",
        peers: &[("Office365-REST-Python-Client 3.3.0 create_upload_session (sequential)", &[])],
        opendal: None,
        limit: None,
        client_args: &["--rest"],
        emulator_args: &["--discard-bodies"],
        // SharePoint's recommended chunk; chunks go one at a time.
        part_mib: 10,
        concurrency: 1,
        buffered_parts: 2,
    },
];

/// Medians of a client's runs.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    mib_s: f64,
    cpu_per_gib: f64,
    rss_mib: f64,
    requests: f64,
    resent_mib: f64,
}

fn summarize(runs: &[Measured], size: u64) -> Summary {
    let gib = size as f64 / GIB;
    Summary {
        mib_s: median(runs.iter().map(|m| m.run.bytes as f64 / MIB / m.run.seconds.max(1e-9)).collect()),
        cpu_per_gib: median(runs.iter().map(|m| m.run.cpu_seconds / gib).collect()),
        rss_mib: median(runs.iter().map(|m| m.run.peak_rss_bytes as f64 / MIB).collect()),
        requests: median(runs.iter().map(|m| m.requests as f64).collect()),
        resent_mib: median(runs.iter().map(|m| m.body_bytes.saturating_sub(size) as f64 / MIB).collect()),
    }
}

fn local_runs(runs: &[Run]) -> Vec<Measured> {
    runs.iter().map(|&run| Measured { run, requests: 0, body_bytes: 0 }).collect()
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

/// A vendor's results, for its table and the summary.
struct VendorResult {
    name: &'static str,
    ours: Summary,
    best_peer: Option<(String, Summary)>,
    hashing: Option<Summary>,
    put: Summary,
    bound_mib: f64,
}

fn release_examples(package: &str, examples: &[&str]) -> Result<(), String> {
    let mut command = crate::cargo();
    command.args(["build", "--release", "--locked", "-p", package, "--all-features"]);
    for e in examples {
        command.args(["--example", e]);
    }
    crate::run_checked(&mut command, "cargo build --release (bench)")
}

/// Builds the OpenDAL peer (its own Cargo project, outside the workspace, so CI never builds it).
fn opendal_peer(root: &Path, name: &str) -> Result<PathBuf, String> {
    let manifest = root.join("bench/opendal-oss/Cargo.toml");
    let target = root.join("target/bench-peers");
    crate::run_checked(
        crate::cargo()
            .arg("build")
            .arg("--release")
            .arg("--locked")
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target),
        "cargo build --release (OpenDAL peer)",
    )?;
    Ok(target.join("release").join(name))
}

fn vendor(
    root: &Path,
    args: &[String],
    v: &Vendor,
    put_sink: &mut Server,
    report: &mut String,
) -> Result<VendorResult, String> {
    let size = arg(args, "--size", 1024) << 20;
    let rounds = arg(args, "--rounds", 3).max(1);
    let (part_mib, concurrency) = (v.part_mib, v.concurrency);
    release_examples(v.package, &[v.emulator, v.client])?;
    let python = crate::conformance::venv(root)?;
    let opendal = v.opendal.map(|name| opendal_peer(root, name)).transpose()?;
    let file = input_file(root, size)?;
    let examples = root.join("target/release/examples");
    let mut emulator = Server::start(&examples.join(v.emulator), v.emulator_args, 1)?;
    let sizes = [part_mib.to_string(), concurrency.to_string()];
    let mut ours = Vec::new();
    let mut theirs: Vec<Vec<Measured>> = v.peers.iter().map(|_| Vec::new()).collect();
    let mut dal = Vec::new();
    let (mut hashing, mut put) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        println!("bench {}: round {}/{rounds}", v.name, round + 1);
        let client_args = ["--part-size-mib", &sizes[0], "--concurrency", &sizes[1]];
        ours.push(measure(
            &mut emulator,
            Command::new(examples.join(v.client)).arg("--file").arg(&file).args(client_args).args(v.client_args),
            "our uploader",
        )?);
        for ((label, extra), runs) in v.peers.iter().zip(theirs.iter_mut()) {
            runs.push(measure(
                &mut emulator,
                Command::new(&python).arg(root.join(v.peer_script)).arg(&file).args(&sizes).args(*extra),
                label,
            )?);
        }
        if let Some(exe) = &opendal {
            dal.push(measure(&mut emulator, Command::new(exe).arg(&file).args(&sizes), "OpenDAL")?);
        }
        hashing.push(json_run(
            Command::new(examples.join(v.client)).arg("--file").arg(&file).args([
                "--part-size-mib",
                &sizes[0],
                "--hash-only",
            ]),
            "hashing limit",
        )?);
        put.push(measure(
            put_sink,
            Command::new(root.join("target/release/examples/put_limit")).arg("--file").arg(&file).args(client_args),
            "plain PUT limit",
        )?);
    }
    drop(emulator);

    let o = summarize(&ours, size);
    let h = summarize(&local_runs(&hashing), size);
    let p = summarize(&put, size);
    let mut peers: Vec<(String, Summary)> =
        v.peers.iter().zip(&theirs).map(|((l, _), r)| ((*l).to_owned(), summarize(r, size))).collect();
    if opendal.is_some() {
        peers.push(("OpenDAL `oss` service (writer, 8 MiB chunks, concurrent 4)".to_owned(), summarize(&dal, size)));
    }
    let bound = (v.buffered_parts * part_mib + 64) as f64;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### {}\n\n{} MiB file to the emulator in its own process, {part_mib} MiB parts, median of {rounds} alternating rounds.\n",
        v.name,
        size >> 20
    );
    t.push_str("| client | MiB/s | CPU s/GiB | peak RSS MiB | requests | re-sent MiB | ours ÷ it, MiB/s |\n|---|---:|---:|---:|---:|---:|---:|\n");
    let row = |t: &mut String, label: &str, s: &Summary, counted: bool, ratio: Option<f64>| {
        let counts = if counted { format!("{:.0} | {:.1}", s.requests, s.resent_mib) } else { "– | –".to_owned() };
        let ratio = ratio.map_or("–".to_owned(), |r| format!("{r:.2}x"));
        let _ =
            writeln!(t, "| {label} | {:.0} | {:.2} | {:.0} | {counts} | {ratio} |", s.mib_s, s.cpu_per_gib, s.rss_mib);
    };
    row(&mut t, &format!("**{} (concurrency {concurrency})**", v.package), &o, true, None);
    for (label, s) in &peers {
        row(&mut t, label, s, true, Some(o.mib_s / s.mib_s.max(1e-9)));
    }
    if let Some(limit) = v.limit {
        row(&mut t, &format!("limit: {limit}, one core"), &h, false, Some(o.mib_s / h.mib_s.max(1e-9)));
    }
    row(
        &mut t,
        &format!("limit: plain HTTP PUT of the same parts, concurrency {concurrency}"),
        &p,
        true,
        Some(o.mib_s / p.mib_s.max(1e-9)),
    );
    t.push('\n');
    for (label, s) in &peers {
        let r = o.mib_s / s.mib_s.max(1e-9);
        let _ = writeln!(t, "- throughput ours ÷ {label}: {r:.2}x (target ≥ 3: {})", verdict(r >= 3.0));
    }
    if v.limit.is_some() {
        let cpu = o.cpu_per_gib / h.cpu_per_gib.max(1e-9);
        let _ = writeln!(t, "- client CPU ours ÷ the hashing limit: {cpu:.2}x (target ≤ 1.3: {})", verdict(cpu <= 1.3));
    } else {
        let _ =
            writeln!(t, "- the API requires no hash: no hashing limit; the transport limit is the one to compare with");
    }
    let _ = writeln!(
        t,
        "- client CPU ours ÷ plain PUT of the same parts: {:.2}x; throughput ours ÷ plain PUT: {:.2}x",
        o.cpu_per_gib / p.cpu_per_gib.max(1e-9),
        o.mib_s / p.mib_s.max(1e-9)
    );
    let _ = writeln!(
        t,
        "- peak RSS {:.0} MiB against a bound of {bound:.0} MiB ({} parts buffered × {part_mib} MiB + 64 MiB): {}\n",
        o.rss_mib,
        v.buffered_parts,
        verdict(o.rss_mib <= bound)
    );
    println!("{t}");
    report.push_str(&t);
    let best_peer = peers.into_iter().max_by(|a, b| a.1.mib_s.total_cmp(&b.1.mib_s));
    let hashing = v.limit.map(|_| h);
    Ok(VendorResult { name: v.name, ours: o, best_peer, hashing, put: p, bound_mib: bound })
}

/// One point of the scaling runs.
#[derive(Clone, Copy, Debug)]
struct Point {
    part_mib: u64,
    concurrency: u64,
    size_mib: u64,
    s: Summary,
}

const SCALING_PARTS: [u64; 4] = [5, 8, 16, 64];
const SCALING_CONCURRENCY: [u64; 4] = [1, 2, 4, 8];
const SCALING_SIZES: [u64; 3] = [256, 1024, 4096];

fn scaling(root: &Path, args: &[String], report: &mut String) -> Result<(Vec<Point>, Vec<Point>), String> {
    let rounds = arg(args, "--scaling-rounds", 1).max(1);
    release_examples("oss-multipart", &["oss_emulator", "oss_bench_upload"])?;
    let examples = root.join("target/release/examples");
    let mut emulator = Server::start(&examples.join("oss_emulator"), &["--no-verify-md5", "--discard-bodies"], 1)?;
    let run = |emulator: &mut Server, file: &Path, part: u64, conc: u64, size_mib: u64| -> Result<Point, String> {
        let mut runs = Vec::new();
        for _ in 0..rounds {
            runs.push(measure(
                emulator,
                Command::new(examples.join("oss_bench_upload")).arg("--file").arg(file).args([
                    "--part-size-mib",
                    &part.to_string(),
                    "--concurrency",
                    &conc.to_string(),
                ]),
                "scaling run",
            )?);
        }
        Ok(Point { part_mib: part, concurrency: conc, size_mib, s: summarize(&runs, size_mib << 20) })
    };
    let file = input_file(root, 1024 << 20)?;
    let mut grid = Vec::new();
    for part in SCALING_PARTS {
        for conc in SCALING_CONCURRENCY {
            println!("bench scaling: {part} MiB parts × concurrency {conc}");
            grid.push(run(&mut emulator, &file, part, conc, 1024)?);
        }
    }
    let mut sizes = Vec::new();
    for size_mib in SCALING_SIZES {
        println!("bench scaling: {size_mib} MiB file");
        let file = input_file(root, size_mib << 20)?;
        sizes.push(run(&mut emulator, &file, 8, 4, size_mib)?);
    }
    drop(emulator);
    let mut t = String::from(
        "### Scaling (OSS)\n\n1024 MiB file, oss-multipart against the OSS emulator; throughput MiB/s and peak RSS MiB by part size and concurrency.\n\n| part size | ",
    );
    for c in SCALING_CONCURRENCY {
        let _ = write!(t, "concurrency {c} | ");
    }
    t.push_str("\n|---|");
    t.push_str(&"---:|".repeat(SCALING_CONCURRENCY.len()));
    t.push('\n');
    for part in SCALING_PARTS {
        let _ = write!(t, "| {part} MiB |");
        for p in grid.iter().filter(|p| p.part_mib == part) {
            let _ = write!(t, " {:.0} MiB/s, {:.0} MiB |", p.s.mib_s, p.s.rss_mib);
        }
        t.push('\n');
    }
    t.push_str("\nPeak RSS by file size (8 MiB parts, concurrency 4): memory does not grow with the file.\n\n| file | MiB/s | peak RSS MiB |\n|---|---:|---:|\n");
    for p in &sizes {
        let _ = writeln!(t, "| {} MiB | {:.0} | {:.0} |", p.size_mib, p.s.mib_s, p.s.rss_mib);
    }
    if let (Some(small), Some(large)) = (sizes.first(), sizes.last()) {
        let growth = large.s.rss_mib / small.s.rss_mib.max(1e-9) - 1.0;
        let _ = writeln!(
            t,
            "\n- peak RSS at {} MiB is {:+.1}% of that at {} MiB (target: within 10%: {})",
            large.size_mib,
            growth * 100.0,
            small.size_mib,
            verdict(growth.abs() <= 0.10)
        );
    }
    t.push('\n');
    println!("{t}");
    report.push_str(&t);
    Ok((grid, sizes))
}

/// The scaling charts as one SVG: throughput by part size and concurrency (bars), peak RSS by
/// part size and concurrency (bars), and peak RSS by file size.
fn svg(grid: &[Point], sizes: &[Point]) -> String {
    const W: f64 = 960.0;
    const H: f64 = 330.0;
    const COLORS: [&str; 4] = ["#9ecae1", "#6baed6", "#3182bd", "#08519c"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n"
    );
    // One panel of grouped bars: groups by part size, one bar per concurrency.
    let mut panel = |x0: f64, title: &str, unit: &str, value: &dyn Fn(&Point) -> f64| {
        let (w, h, top) = (360.0, 220.0, 50.0);
        let max = grid.iter().map(value).fold(0.0f64, f64::max).max(1.0) * 1.1;
        let _ = writeln!(s, "<text x=\"{}\" y=\"24\" font-size=\"13\" font-weight=\"bold\">{title}</text>", x0);
        let _ =
            writeln!(s, "<line x1=\"{x0}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>", top + h, x0 + w, top + h);
        for k in 0..=4 {
            let v = max * f64::from(k) / 4.0;
            let y = top + h - h * f64::from(k) / 4.0;
            let _ = writeln!(s, "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/>", x0 + w);
            let _ = writeln!(s, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>", x0 - 4.0, y + 4.0);
        }
        let group = w / SCALING_PARTS.len() as f64;
        let bar = group * 0.8 / SCALING_CONCURRENCY.len() as f64;
        for (g, part) in SCALING_PARTS.iter().enumerate() {
            let gx = x0 + group * g as f64 + group * 0.1;
            for (i, conc) in SCALING_CONCURRENCY.iter().enumerate() {
                if let Some(p) = grid.iter().find(|p| p.part_mib == *part && p.concurrency == *conc) {
                    let bh = h * value(p) / max;
                    let _ = writeln!(
                        s,
                        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{part} MiB × {conc}: {:.0} {unit}</title></rect>",
                        gx + bar * i as f64,
                        top + h - bh,
                        bar - 1.0,
                        COLORS[i],
                        value(p)
                    );
                }
            }
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{part} MiB parts</text>",
                gx + group * 0.4,
                top + h + 16.0
            );
        }
        let _ = writeln!(s, "<text x=\"{x0}\" y=\"40\" fill=\"#555\">{unit}</text>");
    };
    panel(50.0, "Throughput by part size × concurrency", "MiB/s", &|p| p.s.mib_s);
    panel(470.0, "Peak RSS by part size × concurrency", "MiB", &|p| p.s.rss_mib);
    // Legend.
    for (i, c) in SCALING_CONCURRENCY.iter().enumerate() {
        let x = 50.0 + 110.0 * i as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{x}\" y=\"305\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"315\">concurrency {c}</text>",
            COLORS[i],
            x + 16.0
        );
    }
    // Peak RSS by file size, as text beside the legend (three numbers, flat by design).
    let flat: Vec<String> = sizes.iter().map(|p| format!("{} MiB file: {:.0} MiB", p.size_mib, p.s.rss_mib)).collect();
    let _ = writeln!(s, "<text x=\"500\" y=\"315\">peak RSS (8 MiB × 4): {}</text>", flat.join(", "));
    s.push_str("</svg>\n");
    s
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), commit {commit}")
}

const DOC_INTRO: &str = "# Benchmarks

What `cargo xtask bench` measured on the machine type CI uses. Reproduce with

```sh
cargo xtask bench --write-docs      # about 15 minutes; --size MIB, --rounds N, --skip-<vendor>, --skip-scaling
```

It installs its Python peers itself (the venv of the conformance runs, `target/conformance-venv`),
builds the OpenDAL peer as a separate project (`bench/opendal-oss`, never built by CI), starts each
vendor's emulator as its own process (bodies are read and thrown away, so the server does not
compete for the disk), and runs the clients in turn: ours, the peers, ours, … Every number is a
median of the rounds.

What the columns mean:

- **MiB/s**: the file's size over the wall time of the client process's upload.
- **CPU s/GiB**: user + system CPU of the client process, per GiB uploaded (the emulator's CPU is
  not counted; on 2 cores it competes with the client, so throughput is bounded by both).
- **peak RSS**: the client process's high-water mark (`VmHWM`; Python's `ru_maxrss`).
- **requests**, **re-sent MiB**: counted by the emulator for each run, the same way for every
  client: every request received, and the body bytes beyond the file's size.
- **limit: hashing**: exactly the hashing the vendor requires, over the same file, in one thread:
  what a client cannot avoid. **limit: plain HTTP PUT**: the same parts PUT at the same
  concurrency to a server that discards them, with no signing or hashing: what the transport
  costs here.
- Targets come from the vendor issues: at least 3× the official SDK's throughput, client CPU at
  most 1.3× the hashing limit, peak RSS at most the parts buffered + 64 MiB. A missed target is
  marked and explained below the report.

";

/// Runs every benchmark and writes the report.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let mut report = format!("## Report\n\nMachine: {}.\n\n### Hashes\n\n", machine());
    let hash = crate::cargo()
        .args(["run", "--release", "--locked", "-p", "upload-core", "--example", "hash_bench", "--"])
        .args(["--rounds".to_owned(), arg(args, "--rounds", 3).max(1).to_string()])
        .output()
        .map_err(|e| format!("hash bench: {e}"))?;
    let text = String::from_utf8_lossy(&hash.stdout);
    print!("{text}");
    if !hash.status.success() {
        return Err("the hash bench failed".into());
    }
    report.push_str(&text);
    report.push('\n');
    crate::run_checked(
        crate::cargo().args([
            "build",
            "--release",
            "--locked",
            "-p",
            "upload-core",
            "--features",
            "emulator",
            "--example",
            "put_limit",
        ]),
        "cargo build --release (put_limit)",
    )?;
    let mut put_sink = Server::start(&root.join("target/release/examples/put_limit"), &["--serve"], 1)?;
    let mut results = Vec::new();
    let mut vendors = String::new();
    for v in VENDORS {
        if !flag(args, v.skip_flag) {
            results.push(vendor(root, args, v, &mut put_sink, &mut vendors)?);
        }
    }
    drop(put_sink);
    if !results.is_empty() {
        report.push_str("### Summary\n\n| vendor | ours MiB/s | fastest peer | its MiB/s | ours ÷ it | CPU ÷ hashing limit | MiB/s ÷ plain PUT | peak RSS ÷ bound |\n|---|---:|---|---:|---:|---:|---:|---:|\n");
        for r in &results {
            let (peer, peer_mib) = r.best_peer.as_ref().map_or(("–".to_owned(), 0.0), |(l, s)| (l.clone(), s.mib_s));
            let cpu = r.hashing.map_or("no hash required".to_owned(), |h| {
                format!("{:.2}x", r.ours.cpu_per_gib / h.cpu_per_gib.max(1e-9))
            });
            let _ = writeln!(
                report,
                "| {} | {:.0} | {peer} | {peer_mib:.0} | {:.2}x | {cpu} | {:.2}x | {:.0} ÷ {:.0} MiB |",
                r.name,
                r.ours.mib_s,
                r.ours.mib_s / peer_mib.max(1e-9),
                r.ours.mib_s / r.put.mib_s.max(1e-9),
                r.ours.rss_mib,
                r.bound_mib
            );
        }
        report.push('\n');
    }
    report.push_str(&vendors);
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut chart = None;
    if !flag(args, "--skip-scaling") {
        let (grid, sizes) = scaling(root, args, &mut report)?;
        let drawing = svg(&grid, &sizes);
        std::fs::write(dir.join("scaling.svg"), &drawing).map_err(|e| e.to_string())?;
        report.push_str("![scaling](scaling.svg)\n");
        chart = Some(drawing);
    }
    let path = dir.join("report.md");
    std::fs::write(&path, &report).map_err(|e| e.to_string())?;
    println!("report written to {}", path.display());
    if flag(args, "--write-docs") {
        let docs = root.join("docs");
        std::fs::create_dir_all(&docs).map_err(|e| e.to_string())?;
        let body = report.replace("![scaling](scaling.svg)", "![scaling](benchmarks-scaling.svg)");
        // What the figures mean is kept by hand below the generated part, across runs.
        let keep = std::fs::read_to_string(docs.join("benchmarks.md"))
            .ok()
            .and_then(|old| {
                old.split_once("\n## What limits us\n").map(|(_, rest)| format!("\n## What limits us\n{rest}"))
            })
            .unwrap_or_default();
        std::fs::write(docs.join("benchmarks.md"), format!("{DOC_INTRO}{body}{keep}")).map_err(|e| e.to_string())?;
        if let Some(drawing) = chart {
            std::fs::write(docs.join("benchmarks-scaling.svg"), drawing).map_err(|e| e.to_string())?;
        }
        println!("docs written to {}", docs.join("benchmarks.md").display());
    }
    Ok(())
}
