//! The decorated-call row of `airlock bench`: crates/python/bench/roundtrip.py, embedded in the
//! binary and run with `--json` by an interpreter that has the `airlock` Python package (which
//! runs the calls through its own in-process engine).

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bench_warm::{BUSY_GAP, IDLE_GAP, WarmRow, failed};

const SCRIPT: &str = include_str!("../../python/bench/roundtrip.py");
/// The script's row for the decorated call, and the one for `airlock.run("print(1)")`.
const SCRIPT_ROW: &str = "@sandbox add(2, 3)";
const SCRIPT_PRINT_ROW: &str = "airlock.run(\"print(1)\")";
const NAME: &str = "decorated call add(2, 3) (Python pkg)";
const IDLE_NAME: &str = "decorated call add(2, 3), idle first";

/// The decorated-call rows: `runs` calls of `add(2, 3)` by `python`, each from a full pool that
/// settled for the warm rows' gaps (as busy a caller as theirs, then a rare one), with the
/// script's p50, p90 and p99. A `python` that cannot import `airlock` skips them.
pub fn rows(python: &str, runs: usize) -> Vec<WarmRow> {
    if let Some(why) = unusable(python) {
        return [NAME, IDLE_NAME]
            .into_iter()
            .map(|name| WarmRow {
                note: format!("skipped: {why}"),
                ..failed(name, String::new())
            })
            .collect();
    }
    vec![
        row(python, runs, NAME, BUSY_GAP),
        row(python, runs, IDLE_NAME, IDLE_GAP),
    ]
}

/// Why `python` cannot run the script, if it cannot.
fn unusable(python: &str) -> Option<String> {
    match output(python, &["-c", "import airlock"], Duration::from_secs(60)) {
        Err(e) => Some(e),
        Ok((status, _, _)) if status.success() => None,
        Ok((_, _, stderr)) => {
            let last = stderr.trim().lines().last().unwrap_or_default().to_string();
            let why = match last.contains("No module named 'airlock'") {
                true => String::new(),
                false => format!(" ({last})"),
            };
            Some(format!(
                "the airlock Python package is not importable by {python}{why}: pip install \
                 ./crates/python"
            ))
        }
    }
}

/// The script's `add(2, 3)` row, as `NAME`, when every call finds a pool that settled `gap`.
fn row(python: &str, runs: usize, name: &str, gap: Duration) -> WarmRow {
    // Three rows of `runs` calls, each after a refill and the settle, plus its start and the
    // pools' first fill; far more than that means it is stuck.
    let limit = Duration::from_secs(120) + (Duration::from_secs(2) + gap * 3) * runs as u32;
    let runs_arg = runs.to_string();
    let settle = format!("{}", gap.as_secs_f64());
    let args = [
        "-c", SCRIPT, "--json", "--runs", &runs_arg, "--settle", &settle,
    ];
    let (stdout, stderr) = match output(python, &args, limit) {
        Ok((status, stdout, stderr)) if status.success() => (stdout, stderr),
        Ok((status, _, stderr)) => {
            return failed(
                name,
                format!(
                    "the decorated-call script failed under {python} ({status}): {}",
                    tail(&stderr)
                ),
            );
        }
        Err(e) => return failed(name, e),
    };
    let parsed: serde_json::Value = match serde_json::from_str(stdout.trim()) {
        Ok(v) => v,
        Err(e) => {
            return failed(
                name,
                format!(
                    "the decorated-call script printed no JSON ({e}): {}{}",
                    tail(&stdout),
                    tail(&stderr)
                ),
            );
        }
    };
    let rows = parsed["rows"].as_array().cloned().unwrap_or_default();
    let find = |name: &str| rows.iter().find(|r| r["name"] == name);
    let Some(add) = find(SCRIPT_ROW) else {
        return failed(
            name,
            format!("the script's JSON has no {SCRIPT_ROW:?} row: {parsed}"),
        );
    };
    let print_p50 = find(SCRIPT_PRINT_ROW)
        .and_then(|r| r["p50_ms"].as_f64())
        .map_or(String::new(), |x| {
            format!("; {SCRIPT_PRINT_ROW} p50 {x:.2} ms")
        });
    WarmRow {
        name: name.into(),
        median_ms: add["p50_ms"].as_f64(),
        p90_ms: add["p90_ms"].as_f64(),
        p99_ms: add["p99_ms"].as_f64(),
        per_second: None,
        note: format!(
            "{runs} calls by {python}, {}{print_p50}; target p50 <= 3 ms",
            parsed["mode"].as_str().unwrap_or("?")
        ),
    }
}

/// The last lines of a process's output, enough for a traceback's end.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.trim().lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Runs `python ARGS` (from `/`, so no directory of the caller's shadows the package), with
/// the same interpreter inside the sandboxes it starts, and returns how it exited, with its
/// stdout and stderr. Past `limit` it is killed (its sandboxes die with it) and waited for.
fn output(
    python: &str,
    args: &[&str],
    limit: Duration,
) -> Result<(ExitStatus, String, String), String> {
    let mut child = Command::new(python)
        .args(args)
        .current_dir("/")
        .env("AIRLOCK_PYTHON", python)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {python}: {e} (set AIRLOCK_BENCH_PYTHON to another)"))?;
    let stdout = drain(&mut child, true);
    let stderr = drain(&mut child, false);
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "{python} was still running after {} s and was killed",
                    limit.as_secs()
                ));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("waiting for {python}: {e}"));
            }
        }
    };
    let (stdout, stderr) = (joined(stdout), joined(stderr));
    match status {
        Ok(status) => Ok((status, stdout, stderr)),
        Err(why) => Err(format!("{why}: {}", tail(&stderr))),
    }
}

/// Reads the child's stdout (or stderr) to its end on a thread, so neither pipe fills up.
fn drain(child: &mut Child, stdout: bool) -> Option<JoinHandle<String>> {
    let mut pipe: Box<dyn Read + Send> = match stdout {
        true => Box::new(child.stdout.take()?),
        false => Box::new(child.stderr.take()?),
    };
    Some(std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }))
}

fn joined(h: Option<JoinHandle<String>>) -> String {
    h.and_then(|h| h.join().ok()).unwrap_or_default()
}
