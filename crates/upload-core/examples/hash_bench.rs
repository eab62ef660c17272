//! Throughput of every hash the vendors need, on the same buffer, side by side in one run.
//!
//! Run through `cargo xtask bench` (which builds it with `--release`). Rounds alternate between
//! the cases so that a noisy neighbour slows all of them alike; the table shows the median. The
//! RustCrypto rows are the alternatives this crate does not use, measured beside the ones it does.
//!
//! Arguments: `--size MIB` (default 256) and `--rounds N` (default 5).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use upload_core::Hashes;
use upload_core::hash::WholeHasher;

const PART: usize = 8 << 20;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

type Run = Box<dyn Fn(&[u8])>;

fn ours(hashes: Hashes, passes: usize) -> Run {
    Box::new(move |buf: &[u8]| {
        for _ in 0..passes {
            let mut h = WholeHasher::new(hashes);
            for chunk in buf.chunks(PART) {
                h.update(chunk);
            }
            std::hint::black_box(h.finish());
        }
    })
}

fn rustcrypto<D: sha1::Digest + 'static>() -> Run {
    Box::new(|buf: &[u8]| {
        let mut h = D::new();
        for chunk in buf.chunks(PART) {
            h.update(chunk);
        }
        std::hint::black_box(h.finalize());
    })
}

fn main() {
    let size_mib = arg("--size", 256);
    let rounds = arg("--rounds", 5).max(1);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let buf: Vec<u8> = (0..size_mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();

    let cases: Vec<(&str, &str, Run)> = vec![
        ("SHA-1", "AWS-LC assembly (used)", ours(Hashes::SHA1, 1)),
        ("SHA-1", "RustCrypto sha1 0.11 with SHA-NI (not used)", rustcrypto::<sha1::Sha1>()),
        ("MD5", "AWS-LC assembly (used)", ours(Hashes::MD5, 1)),
        ("MD5", "RustCrypto md-5 0.11 (not used)", rustcrypto::<md5::Md5>()),
        ("CRC-64/XZ", "crc-fast, PCLMULQDQ/VPCLMULQDQ", ours(Hashes::CRC64, 1)),
        ("QuickXorHash", "upload-core, 160 XOR lanes", ours(Hashes::QUICKXOR, 1)),
        ("Box: SHA-1 twice", "per part + whole file", ours(Hashes::SHA1, 2)),
        ("OSS: MD5 + CRC-64", "one pass per part", ours(Hashes::MD5 | Hashes::CRC64, 1)),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, (_, _, run)) in cases.iter().enumerate() {
            let started = Instant::now();
            run(&buf);
            times[i].push(started.elapsed().as_secs_f64());
        }
    }
    println!(
        "Hash throughput: {size_mib} MiB buffer fed in 8 MiB updates, median of {rounds} alternating rounds, one core"
    );
    println!();
    println!("| hash | MiB/s | s per GiB | implementation |");
    println!("|---|---:|---:|---|");
    for ((name, imp, _), mut t) in cases.iter().zip(times) {
        t.sort_by(f64::total_cmp);
        let median = t[t.len() / 2];
        let mib_s = size_mib as f64 / median;
        println!("| {name} | {mib_s:.0} | {:.3} | {imp} |", 1024.0 / mib_s);
    }
}
