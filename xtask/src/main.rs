//! Project automation: `cargo xtask test | conformance | chaos | bench | codegen`.
//!
//! * `test`: everything CI runs, in the order that fails fastest: rustfmt check, clippy on all
//!   targets with warnings denied, the tests of every package, rustdoc with warnings denied, the
//!   freshness of generated code, and the conformance runs of the official vendor SDKs against
//!   our emulators (in a Python venv that xtask creates).
//! * `bench [--size MIB] [--rounds N] [--skip-<vendor>] [--skip-scaling] [--write-docs]`:
//!   measurements side by side, never assertions (see the `bench` module); the report goes to
//!   `target/bench/report.md`, and with `--write-docs` to `docs/benchmarks.md`.
//! * `chaos [--trials N] [--seed S] [--vendor NAME]`: crash trials (see the `chaos` module);
//!   `test` runs 3 per vendor.
//! * `fuzz [--cases N] [FILTER]`: the fuzz targets with many cases each (see the `fuzz` module).
//! * `codegen [--check]`: writes the generated Rust files from `specs/`; `--check` fails when a
//!   committed file is stale instead of writing it.
#![allow(clippy::print_stdout)]

mod bench;
mod chaos;
mod codegen;
mod conformance;
mod fuzz;
mod process;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(project_root());
    c
}

/// Runs a step, printing its name and time; returns whether it passed.
fn step(name: &str, mut command: Command) -> bool {
    println!("==> {name}");
    let started = Instant::now();
    let ok = match command.status() {
        Ok(status) => status.success(),
        Err(e) => {
            eprintln!("cannot run {name}: {e}");
            false
        }
    };
    println!("<== {name}: {} in {:.1}s", if ok { "ok" } else { "FAILED" }, started.elapsed().as_secs_f64());
    ok
}

fn test() -> bool {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--all-features", "--locked", "--", "-D", "warnings"]);
    let mut tests = cargo();
    tests.args(["test", "--workspace", "--all-features", "--locked"]);
    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--all-features", "--locked"]).env("RUSTDOCFLAGS", "-D warnings");
    let steps: Vec<(&str, Command)> = vec![("rustfmt", fmt), ("clippy", clippy), ("tests", tests), ("rustdoc", doc)];
    let mut failed = Vec::new();
    for (name, command) in steps {
        if !step(name, command) {
            failed.push(name);
            // Formatting and lint failures do not hide test results: go on, report all.
        }
    }
    println!("==> codegen freshness");
    match codegen::run(&project_root(), codegen::Mode::Check) {
        Ok(n) => println!("<== codegen freshness: ok ({n} generated files up to date)"),
        Err(e) => {
            eprintln!("{e}");
            failed.push("codegen");
        }
    }
    println!("==> conformance of the official SDKs with our emulators");
    let started = Instant::now();
    match conformance::run_all(&project_root()) {
        Ok(()) => println!("<== conformance: ok in {:.1}s", started.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("{e}");
            failed.push("conformance");
        }
    }
    println!("==> crash trials (reduced: 3 per vendor; `cargo xtask chaos` runs 50)");
    let started = Instant::now();
    let trials = ["--trials".to_owned(), "3".to_owned()];
    match chaos::run(&project_root(), &trials) {
        Ok(()) => println!("<== crash trials: ok in {:.1}s", started.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("{e}");
            failed.push("crash trials");
        }
    }
    if failed.is_empty() {
        println!("xtask test: all steps passed");
        true
    } else {
        println!("xtask test: FAILED steps: {}", failed.join(", "));
        false
    }
}

/// Runs a command; the error names it.
pub(crate) fn run_checked(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{what} failed with {status}")) }
}

fn bench(args: &[String]) -> bool {
    match bench::run(&project_root(), args) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("bench: {e}");
            false
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ok = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("chaos") => match chaos::run(&project_root(), &args[1..]) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("chaos: {e}");
                false
            }
        },
        Some("fuzz") => match fuzz::run(&project_root(), &args[1..]) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("fuzz: {e}");
                false
            }
        },
        Some("conformance") => match conformance::run_all(&project_root()) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("{e}");
                false
            }
        },
        Some("codegen") => {
            let mode = if args.iter().any(|a| a == "--check") { codegen::Mode::Check } else { codegen::Mode::Write };
            match codegen::run(&project_root(), mode) {
                Ok(n) => {
                    println!("codegen: {n} generated files up to date");
                    true
                }
                Err(e) => {
                    eprintln!("{e}");
                    false
                }
            }
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <test | conformance | chaos [--trials N] [--seed S] [--vendor NAME] | bench [--size MIB] [--rounds N] [--skip-oss] [--skip-qingstor] [--skip-box] [--skip-graph] [--skip-sharepoint-rest] [--skip-scaling] [--scaling-rounds N] [--write-docs] | fuzz [--cases N] [FILTER] | codegen [--check]>"
            );
            false
        }
    };
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
