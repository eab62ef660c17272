//! `cargo xtask fuzz [--cases N] [FILTER]`: the fuzz targets of `tests/tests/fuzz.rs` (proptest
//! over the committed corpus in `tests/fuzz-corpus/`) with many cases per target. `cargo test`
//! runs the same targets with a few hundred cases each.

use std::path::Path;

/// Cases per target when `--cases` is not given.
const DEFAULT_CASES: u64 = 20_000;

pub(crate) fn run(_root: &Path, args: &[String]) -> Result<(), String> {
    let mut cases = DEFAULT_CASES;
    let mut filter = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cases" => {
                let n = args.next().ok_or("--cases needs a number")?;
                cases = n.parse().map_err(|_| format!("--cases {n}: not a number"))?;
            }
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            other => filter.push(other.to_owned()),
        }
    }
    println!("==> fuzz: {cases} cases per target");
    let mut command = crate::cargo();
    command.args(["test", "-p", "tests", "--test", "fuzz", "--"]).args(&filter).arg("--nocapture");
    command.env("FUZZ_CASES", cases.to_string());
    crate::run_checked(&mut command, "the fuzz targets")
}
