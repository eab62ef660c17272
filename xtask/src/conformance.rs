//! Conformance runs: the official vendor SDKs (from PyPI, pinned) against our emulators.
//!
//! The client and the emulator of a vendor crate share its signing code, so a signing bug could
//! hide in both; the official SDKs are the independent check. xtask keeps a Python venv under
//! `target/conformance-venv` (rebuilt when `tests/conformance/requirements.txt` changes), starts
//! each emulator as its own process, and runs the vendor's script against it.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One vendor's run: the emulator example to start and the script to point at it.
struct Suite {
    name: &'static str,
    package: &'static str,
    example: &'static str,
    script: &'static str,
}

const SUITES: &[Suite] = &[
    Suite {
        name: "OSS (oss2, alibabacloud-oss-v2)",
        package: "oss-multipart",
        example: "oss_emulator",
        script: "tests/conformance/oss_conformance.py",
    },
    Suite {
        name: "QingStor (qingstor-sdk)",
        package: "qingstor-multipart",
        example: "qingstor_emulator",
        script: "tests/conformance/qingstor_conformance.py",
    },
    Suite {
        name: "Box (boxsdk / box_sdk_gen)",
        package: "box-chunked",
        example: "box_emulator",
        script: "tests/conformance/box_conformance.py",
    },
    Suite {
        name: "Graph (msgraph-core LargeFileUploadTask)",
        package: "sharepoint-resumable",
        example: "sharepoint_emulator",
        script: "tests/conformance/graph_conformance.py",
    },
    Suite {
        name: "SharePoint REST (Office365-REST-Python-Client)",
        package: "sharepoint-resumable",
        example: "sharepoint_emulator",
        script: "tests/conformance/sharepoint_rest_conformance.py",
    },
];

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Creates or refreshes the venv; returns its interpreter.
pub(crate) fn venv(root: &Path) -> Result<PathBuf, String> {
    let dir = root.join("target/conformance-venv");
    let requirements = root.join("tests/conformance/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    let stamp = dir.join("requirements.installed");
    let bin = if cfg!(windows) { dir.join("Scripts/python.exe") } else { dir.join("bin/python") };
    if bin.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(bin);
    }
    println!("conformance: creating {} with {}", dir.display(), requirements.display());
    let _ = std::fs::remove_dir_all(&dir);
    run(Command::new(python()).args(["-m", "venv"]).arg(&dir), "python -m venv")?;
    run(
        Command::new(&bin)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "pip install",
    )?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(bin)
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    crate::run_checked(command, what)
}

fn run_suite(root: &Path, python: &Path, suite: &Suite) -> Result<(), String> {
    run(
        crate::cargo().args([
            "build",
            "--quiet",
            "--locked",
            "-p",
            suite.package,
            "--all-features",
            "--example",
            suite.example,
        ]),
        "cargo build (emulator)",
    )?;
    let exe = root.join("target/debug/examples").join(format!("{}{}", suite.example, std::env::consts::EXE_SUFFIX));
    let mut emulator = Command::new(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let mut line = String::new();
    if let Some(out) = emulator.stdout.take() {
        BufReader::new(out).read_line(&mut line).map_err(|e| format!("emulator output: {e}"))?;
    }
    let result = if line.trim().is_empty() {
        Err("the emulator printed no endpoint line".to_owned())
    } else {
        run(Command::new(python).arg(root.join(suite.script)).env("EMULATOR", line.trim()), suite.script)
    };
    // Closing its standard input stops the emulator.
    if let Some(mut stdin) = emulator.stdin.take() {
        let _ = stdin.flush();
    }
    let _ = emulator.wait();
    result
}

/// Runs every suite; the error names the failed ones.
pub(crate) fn run_all(root: &Path) -> Result<(), String> {
    let python = venv(root)?;
    let mut failed = Vec::new();
    for suite in SUITES {
        println!("conformance: {}", suite.name);
        if let Err(e) = run_suite(root, &python, suite) {
            eprintln!("conformance {}: {e}", suite.name);
            failed.push(suite.name);
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(format!("conformance failed: {}", failed.join(", "))) }
}
