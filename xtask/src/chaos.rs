//! `cargo xtask chaos`: crash trials. For every vendor, uploads of random-sized files through
//! `cloud-upload` that are killed (SIGKILL) at a random moment, then run again with the same
//! checkpoint (sometimes killed a second time), until done; every stored object is compared with
//! its source byte for byte, and the bytes the emulator received beyond the file's size are
//! counted against the bound of what can be in flight when a process dies (concurrency × part
//! size per kill).
//!
//! `--trials N` per vendor (50 by default; `cargo xtask test` runs 3), `--seed S` to replay
//! (printed at the start and with any failure), `--vendor NAME` for one vendor. The emulators run
//! as one `cloud-upload emulator` process that holds every part 40 ms, so that kills land
//! mid-upload. The report goes to `target/chaos/report.md`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::{Server, arg, median, text_arg};
use std::time::{Duration, Instant};

/// A small seeded generator (xorshift64*): trials replay from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One vendor as the trials drive it.
struct Vendor {
    name: &'static str,
    /// File sizes, bytes: from, to.
    sizes: (u64, u64),
    /// `--part-size` given to the command line (None: the vendor picks).
    part: Option<u64>,
    /// Parts in flight at once.
    concurrency: u64,
}

const VENDORS: &[Vendor] = &[
    Vendor { name: "oss", sizes: (1, 12 << 20), part: Some(1 << 20), concurrency: 4 },
    Vendor { name: "qingstor", sizes: (1, 24 << 20), part: Some(4 << 20), concurrency: 4 },
    // Box takes chunked uploads from its `chunked_min`; it picks the part size (8 MiB here).
    Vendor { name: "box", sizes: (20_000_000, 40 << 20), part: None, concurrency: 4 },
    Vendor { name: "graph", sizes: (1, 6 << 20), part: Some(640 << 10), concurrency: 1 },
    Vendor { name: "sharepoint-rest", sizes: (1, 6 << 20), part: Some(512 << 10), concurrency: 1 },
];

/// Box's part size for files under 256 MiB.
const BOX_PART: u64 = 8 << 20;

/// `cloud-upload emulator` in its own process, and its JSON lines by provider.
struct Emulators {
    server: Server,
    lines: Vec<serde_json::Value>,
}

impl Emulators {
    fn start(exe: &Path, data: &Path) -> Result<Self, String> {
        let data = data.display().to_string();
        let args = ["emulator", "--provider", "all", "--part-delay-ms", "40", "--data-dir", &data];
        let server = Server::start(exe, &args, 4)?;
        let lines = server
            .lines
            .iter()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("emulator line {l:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { server, lines })
    }

    fn get(&self, provider: &str) -> &serde_json::Value {
        self.lines.iter().find(|l| l["provider"] == provider).unwrap_or(&serde_json::Value::Null)
    }

    /// Ends the open Graph and SharePoint REST sessions, as their idle time would.
    fn expire_sessions(&mut self) -> Result<(), String> {
        let line = self.server.command("expire-sessions")?;
        if line.contains("expire-sessions") { Ok(()) } else { Err(format!("expire-sessions answered {line:?}")) }
    }

    /// Body bytes received so far by all the emulators.
    fn body_bytes(&mut self) -> Result<u64, String> {
        Ok(self.server.stats()?.body_bytes)
    }
}

fn text(v: &serde_json::Value, key: &str) -> String {
    v[key].as_str().map(str::to_owned).or_else(|| v[key].as_u64().map(|n| n.to_string())).unwrap_or_default()
}

/// The environment, target and stored path of an object `name` for a vendor.
fn destination(
    emulators: &Emulators,
    data: &Path,
    vendor: &str,
    name: &str,
) -> (Vec<(String, String)>, Vec<String>, PathBuf) {
    let env = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<Vec<_>>();
    match vendor {
        "oss" => {
            let e = emulators.get("oss");
            (
                env(&[
                    ("OSS_ACCESS_KEY_ID", text(e, "access_key_id")),
                    ("OSS_ACCESS_KEY_SECRET", text(e, "access_key_secret")),
                    ("OSS_ENDPOINT", text(e, "endpoint")),
                    ("OSS_REGION", text(e, "region")),
                ]),
                vec![format!("oss://bucket/chaos/{name}")],
                data.join("oss/bucket/chaos").join(name),
            )
        }
        "qingstor" => {
            let e = emulators.get("qingstor");
            (
                env(&[
                    ("QINGSTOR_ACCESS_KEY_ID", text(e, "access_key_id")),
                    ("QINGSTOR_SECRET_ACCESS_KEY", text(e, "secret_access_key")),
                    ("HOME", data.display().to_string()),
                ]),
                vec![
                    format!("qingstor://bucket/chaos/{name}"),
                    "--endpoint".into(),
                    text(e, "endpoint"),
                    "--zone".into(),
                    text(e, "zone"),
                ],
                data.join("qingstor/bucket/chaos").join(name),
            )
        }
        "box" => {
            let e = emulators.get("box");
            (
                env(&[
                    ("BOX_ACCESS_TOKEN", text(e, "developer_token")),
                    ("BOX_API_URL", text(e, "api_url")),
                    ("BOX_UPLOAD_URL", text(e, "upload_url")),
                    ("BOX_OAUTH_URL", text(e, "oauth_url")),
                    ("BOX_TRUSTED_URLS", text(e, "session_url").trim_end_matches("/api/2.0").to_owned()),
                ]),
                vec![format!("box://folder/0/{name}")],
                data.join("box/0").join(name),
            )
        }
        "graph" => {
            let e = emulators.get("graph");
            (
                env(&[
                    ("GRAPH_ACCESS_TOKEN", text(e, "access_token")),
                    ("GRAPH_URL", text(e, "graph_url")),
                    ("GRAPH_TRUSTED_URLS", text(e, "upload_url")),
                    ("AZURE_AUTHORITY_HOST", text(e, "login_url")),
                ]),
                vec![format!("graph://me/chaos/{name}")],
                data.join("graph/drive-1/chaos").join(name),
            )
        }
        _ => {
            let e = emulators.get("graph");
            (
                env(&[
                    ("SHAREPOINT_SITE_URL", text(e, "sharepoint_site_url")),
                    ("SHAREPOINT_COOKIE", text(e, "sharepoint_cookie")),
                ]),
                vec![format!("sharepoint-rest://Shared Documents/{name}")],
                data.join("graph/drive-1").join(name),
            )
        }
    }
}

fn source_file(dir: &Path, name: &str, len: u64, rng: &mut Rng) -> Result<PathBuf, String> {
    let path = dir.join(name);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| e.to_string())?);
    let mut left = len;
    while left > 0 {
        let n = left.min(8);
        out.write_all(&rng.next().to_le_bytes()[..n as usize]).map_err(|e| e.to_string())?;
        left -= n;
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(path)
}

/// How one run of `cloud-upload put` ended.
enum Ended {
    Done,
    Killed,
    Failed(String),
}

/// Runs `cloud-upload put`, killing it after `kill_after` if given; a run that takes longer than
/// `limit` is a hang.
fn run_put(
    exe: &Path,
    dir: &Path,
    env: &[(String, String)],
    args: &[String],
    kill_after: Option<Duration>,
    limit: Duration,
) -> Ended {
    let mut cmd = Command::new(exe);
    cmd.current_dir(dir).arg("put").args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.envs(env.iter().map(|(k, v)| (k, v))).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ended::Failed(format!("cannot start cloud-upload: {e}")),
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ended::Done,
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                return Ended::Failed(format!("cloud-upload exited with {status}: {}", stderr.trim()));
            }
            Ok(None) => {}
            Err(e) => return Ended::Failed(e.to_string()),
        }
        let elapsed = started.elapsed();
        if kill_after.is_some_and(|k| elapsed >= k) {
            // SIGKILL: no chance to save anything more.
            let _ = child.kill();
            let _ = child.wait();
            return Ended::Killed;
        }
        if elapsed >= limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ended::Failed(format!("hang: still running after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What the trials of one vendor found.
#[derive(Default)]
struct Tally {
    trials: u64,
    verified: u64,
    kills: u64,
    resumes_after_kill: u64,
    /// Runs that found the name held by an orphaned session and ran again after its expiry.
    waited_for_expiry: u64,
    /// (trial, bytes re-sent per kill).
    resent_per_kill: Vec<(u64, u64)>,
    bound: u64,
    failures: Vec<String>,
}

fn trial(
    exe: &Path,
    emulators: &mut Emulators,
    dir: &Path,
    v: &Vendor,
    seed: u64,
    index: u64,
    tally: &mut Tally,
) -> Result<(), String> {
    // FNV-1a of the vendor's name: each vendor's trials differ under one seed.
    let salt = v.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut rng = Rng::new(seed ^ salt ^ (index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let len = v.sizes.0 + rng.below(v.sizes.1 - v.sizes.0 + 1);
    let name = format!("{}-{index}.bin", v.name);
    let trial_dir = dir.join(format!("{}-{index}", v.name));
    std::fs::create_dir_all(&trial_dir).map_err(|e| e.to_string())?;
    let source = source_file(&trial_dir, "source.bin", len, &mut rng)?;
    let data = dir.join("data");
    let (env, target, stored) = destination(emulators, &data, v.name, &name);
    let checkpoint = trial_dir.join("upload.json");
    let mut args = vec![source.display().to_string()];
    args.extend(target);
    args.extend([
        "--checkpoint".to_owned(),
        checkpoint.display().to_string(),
        "--concurrency".into(),
        v.concurrency.to_string(),
    ]);
    if let Some(part) = v.part {
        args.extend(["--part-size".to_owned(), part.to_string()]);
    }
    let part = v.part.unwrap_or(BOX_PART);
    // The upload takes about (parts / concurrency) × 40 ms plus the process's start: kill
    // anywhere in that span, and now and then before it starts its first part.
    let parts = len.div_ceil(part);
    let span_ms = 60 + parts.div_ceil(v.concurrency) * 45;
    let before = emulators.body_bytes()?;
    let limit = Duration::from_secs(120);
    let mut kills = 0;
    let expected = std::fs::read(&source).map_err(|e| e.to_string())?;
    // A kill that landed after the upload had finished (the checkpoint is gone and the object is
    // there) is not an interruption: running the command again would upload a second time.
    let finished = || !checkpoint.exists() && std::fs::read(&stored).is_ok_and(|b| b == expected);
    let mut ended = run_put(exe, &trial_dir, &env, &args, Some(Duration::from_millis(rng.below(span_ms))), limit);
    if matches!(ended, Ended::Killed) && finished() {
        ended = Ended::Done;
    }
    if matches!(ended, Ended::Killed) {
        kills += 1;
        // Sometimes the resumed run dies too.
        let again = rng.chance(30).then(|| Duration::from_millis(rng.below(span_ms)));
        ended = run_put(exe, &trial_dir, &env, &args, again, limit);
        if matches!(ended, Ended::Killed) && finished() {
            ended = Ended::Done;
        }
        if matches!(ended, Ended::Killed) {
            kills += 1;
            ended = run_put(exe, &trial_dir, &env, &args, None, limit);
        }
    }
    if let Ended::Failed(why) = &ended
        && why.contains("holds the name until it expires")
    {
        // Graph keeps a name for the session a killed run created and never recorded; a user
        // runs the command again once it has expired, which the emulator is told to do now.
        tally.waited_for_expiry += 1;
        emulators.expire_sessions()?;
        ended = run_put(exe, &trial_dir, &env, &args, None, limit);
    }
    let after = emulators.body_bytes()?;
    tally.trials += 1;
    tally.kills += kills;
    let replay = format!("replay: cargo xtask chaos --seed {seed} --vendor {} --trials {}", v.name, index + 1);
    match ended {
        Ended::Done => {}
        Ended::Killed => {
            tally.failures.push(format!("{} trial {index}: killed with no run after it; {replay}", v.name));
            return Ok(());
        }
        Ended::Failed(why) => {
            tally.failures.push(format!("{} trial {index} ({len} bytes): {why}; {replay}", v.name));
            return Ok(());
        }
    }
    match std::fs::read(&stored) {
        Ok(bytes) if bytes == expected => tally.verified += 1,
        Ok(bytes) => tally.failures.push(format!(
            "{} trial {index}: the stored object differs from the source ({} bytes stored, {len} sent); {replay}",
            v.name,
            bytes.len()
        )),
        Err(e) => tally.failures.push(format!("{} trial {index}: {}: {e}; {replay}", v.name, stored.display())),
    }
    if kills > 0 {
        tally.resumes_after_kill += kills;
        // Bodies beyond the file's size: what was in flight when a process died, sent again
        // (plus the few small bodies of session calls).
        let resent = (after - before).saturating_sub(len);
        tally.resent_per_kill.push((index, resent / kills));
        if std::env::var_os("CHAOS_VERBOSE").is_some() {
            println!("{} trial {index}: {len} bytes, {kills} kills, {resent} bytes beyond the file", v.name);
        }
    }
    let _ = std::fs::remove_dir_all(&trial_dir);
    let _ = std::fs::remove_file(&stored);
    Ok(())
}

/// Runs the trials; the error names the failures and how to replay them.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let trials = arg(args, "--trials", 50);
    let clock =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let seed = text_arg(args, "--seed").and_then(|v| v.parse().ok()).unwrap_or_else(clock);
    let only = text_arg(args, "--vendor");
    println!("chaos: seed {seed}, {trials} trials per vendor");
    crate::run_checked(crate::cargo().args(["build", "--locked", "-p", "cloud-upload"]), "cargo build (cloud-upload)")?;
    let exe = root.join("target/debug").join(format!("cloud-upload{}", std::env::consts::EXE_SUFFIX));
    let dir = root.join("target/chaos");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let exe = exe.canonicalize().map_err(|e| format!("{}: {e}", exe.display()))?;
    let mut emulators = Emulators::start(&exe, &dir.join("data"))?;
    let mut report = format!(
        "# Crash trials\n\nSeed {seed}; {trials} trials per vendor; each upload SIGKILLed at a random moment, run again from its checkpoint (30% of the time killed again), and the stored object compared with its source.\n\n| vendor | trials | objects verified | kills | runs again after an orphaned session expired | re-sent per kill, median / max | bound (concurrency × part) | failures |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let mut failures = Vec::new();
    for v in VENDORS.iter().filter(|v| only.as_deref().is_none_or(|o| o == v.name)) {
        let mut tally = Tally { bound: v.concurrency * v.part.unwrap_or(BOX_PART), ..Tally::default() };
        for index in 0..trials {
            trial(&exe, &mut emulators, &dir, v, seed, index, &mut tally)?;
        }
        // Session calls carry small bodies of their own (XML and JSON): 64 KiB of slack.
        for (index, resent) in tally.resent_per_kill.iter().filter(|(_, r)| *r > tally.bound + (64 << 10)) {
            tally.failures.push(format!(
                "{} trial {index}: {resent} bytes sent again per kill, over the bound of {} bytes; replay: cargo xtask chaos --seed {seed} --vendor {} --trials {}",
                v.name,
                tally.bound,
                v.name,
                index + 1
            ));
        }
        let resent: Vec<u64> = tally.resent_per_kill.iter().map(|(_, r)| *r).collect();
        let max = resent.iter().copied().max().unwrap_or(0);
        let median = median(resent);
        let _ = writeln!(
            report,
            "| {} | {} | {} | {} | {} | {:.2} / {:.2} MiB | {:.2} MiB | {} |",
            v.name,
            tally.trials,
            tally.verified,
            tally.kills,
            tally.waited_for_expiry,
            median as f64 / 1_048_576.0,
            max as f64 / 1_048_576.0,
            tally.bound as f64 / 1_048_576.0,
            tally.failures.len()
        );
        println!(
            "chaos {}: {} trials, {} verified, {} kills, {} failures",
            v.name,
            tally.trials,
            tally.verified,
            tally.kills,
            tally.failures.len()
        );
        failures.extend(tally.failures);
    }
    drop(emulators);
    let _ = std::fs::remove_dir_all(dir.join("data"));
    for f in &failures {
        let _ = writeln!(report, "\n- {f}");
    }
    let path = dir.join("report.md");
    std::fs::write(&path, &report).map_err(|e| e.to_string())?;
    println!("{report}\nreport written to {}", path.display());
    if failures.is_empty() { Ok(()) } else { Err(format!("{} failed trials (seed {seed})", failures.len())) }
}
