//! The warm rows of `airlock bench`: runs through the `Scheduler` with warm pools, in-process,
//! as the Python package and the HTTP service use it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime::{Language, RunRequest, Scheduler, SchedulerConfig, SessionOptions, Status, language};

/// One measured row: name, samples in milliseconds (sorted), and a note.
pub struct WarmRow {
    pub name: String,
    pub median_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub per_second: Option<f64>,
    pub note: String,
}

fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[(((sorted.len() - 1) as f64) * p).round() as usize])
}

fn req(code: &str) -> RunRequest {
    RunRequest {
        language: Language::Python,
        code: code.as_bytes().to_vec(),
        ..RunRequest::default()
    }
}

/// What the warm rows run.
pub struct WarmPlan {
    /// Measured warm round trips of `print(1)` (and of the package row).
    pub runs: usize,
    /// Seconds of each sustained row.
    pub seconds: f64,
    /// Runs of the soak row (0: none).
    pub soak: usize,
    /// A pip specifier whose rows are measured with it imported (None: no package rows).
    pub package: Option<String>,
}

/// Warm round trip of `print(1)`: each run takes a pre-started sandbox (the pool is refilled,
/// off the clock, between runs). Then sustained throughput of fresh sandboxes with concurrent
/// callers; then the same with `plan.package` imported, from a zygote that imported it
/// (trusted) and from use-once sandboxes that import it each (the default).
pub fn measure(plan: &WarmPlan) -> Vec<WarmRow> {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return vec![failed("warm rows", format!("no async runtime: {e}"))],
    };
    rt.block_on(async {
        let mut rows = Vec::new();
        let sched = Scheduler::new(SchedulerConfig {
            pool_size: 2,
            ..SchedulerConfig::default()
        });
        let r = req("print(1)");
        rows.push(
            round_trip_row(
                "warm Scheduler.run(\"print(1)\")",
                &sched,
                &r,
                plan.runs,
                BUSY_GAP,
                "target p50 <= 2 ms",
            )
            .await,
        );
        // The same call by a caller that calls rarely: every process on the way has gone to
        // sleep (and on a VM its vCPU halted), and each wake-up costs more.
        rows.push(
            round_trip_row(
                "warm Scheduler.run(\"print(1)\"), idle first",
                &sched,
                &r,
                plan.runs.min(20),
                IDLE_GAP,
                &format!("{} ms idle before each call", IDLE_GAP.as_millis()),
            )
            .await,
        );
        rows.push(
            sustained_row(
                "sustained fresh-sandbox runs",
                &sched,
                &r,
                plan.seconds,
                "target >= 300/s",
            )
            .await,
        );
        rows.push(session_row(&sched, &r, plan.runs).await);
        if plan.soak > 0 {
            rows.push(soak_row(&sched, &r, plan.soak).await);
        }
        if let Some(spec) = &plan.package {
            rows.extend(package_rows(&sched, spec, plan).await);
        }
        sched.shutdown().await;
        rows
    })
}

/// The package rows: `import NAME` with the package trusted (zygote) and not (restored from
/// the pool's frozen interpreter, or use-once sandboxes where it could not be frozen), and
/// a second cold run with the same packages, which must install nothing.
async fn package_rows(sched: &Scheduler, spec: &str, plan: &WarmPlan) -> Vec<WarmRow> {
    // The distribution's name as a module name (`pandas` of `pandas==2.2.3`).
    let module: String = spec
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let code = format!("import {module}\nprint(1)");
    let trusted = RunRequest {
        packages: vec![spec.to_string()],
        trust_packages: true,
        ..req(&code)
    };
    let untrusted = RunRequest {
        trust_packages: false,
        ..trusted.clone()
    };
    // Installs the environment (once) and starts the zygote, off the clock.
    if sched
        .prewarm(&trusted, 2, Duration::from_secs(900))
        .await
        .unwrap_or(0)
        == 0
    {
        let why = match sched.run(trusted.clone(), Box::new(|_, _| {})).await {
            Ok(res) => format!("{:?}: {}", res.status, res.stderr.trim()),
            Err(e) => e.to_string(),
        };
        return vec![failed(&format!("runs with {spec}"), why)];
    }
    // How the untrusted pool serves: its sandboxes' program is the restorer, or the
    // interpreter itself where the import could not be frozen.
    let probe = RunRequest {
        code: b"import os\nprint(os.path.basename(os.readlink('/proc/self/exe')))".to_vec(),
        ..untrusted.clone()
    };
    let _ = sched.prewarm(&probe, 1, Duration::from_secs(900)).await;
    let restored = match sched.run(probe, Box::new(|_, _| {})).await {
        Ok(r) => r.pool == "warm" && r.stdout.trim() == "restore",
        Err(_) => false,
    };
    let (how, note) = match restored {
        true => (
            "default: restored",
            format!("each sandbox restored an interpreter that had imported {module}"),
        ),
        false => (
            "default: use-once",
            format!("not frozen (AIRLOCK_LOG=warn says why): each sandbox imports {module} itself"),
        ),
    };
    vec![
        second_run_row(spec, &code, plan.runs.min(5)).await,
        round_trip_row(
            &format!("warm run, {module} imported (trusted: zygote)"),
            sched,
            &trusted,
            plan.runs,
            BUSY_GAP,
            "no import-time penalty beyond the zygote's",
        )
        .await,
        // Fewer: each run's replacement is restored, or imports the package, before it counts
        // as ready.
        round_trip_row(
            &format!("warm run, {module} imported ({how})"),
            sched,
            &untrusted,
            plan.runs.min(20),
            BUSY_GAP,
            // A sandbox says it is ready only once its interpreter has the package, and the
            // prewarm before each run waits for ready sandboxes: that is off the clock.
            &note,
        )
        .await,
        sustained_row(
            &format!("sustained runs, {module} imported (trusted: zygote)"),
            sched,
            &trusted,
            plan.seconds,
            "target >= 100/s",
        )
        .await,
        sustained_row(
            &format!("sustained runs, {module} imported ({how})"),
            sched,
            &untrusted,
            plan.seconds,
            &format!("target >= 100/s; {note}"),
        )
        .await,
    ]
}

/// `runs` cold `airlock run --package SPEC` processes, after the environment was built: each
/// must find it (`environment_cached`) and spend no install time. The columns are each run's
/// `timing.install_ms` (finding the environment); the note gives the whole run's time too,
/// which includes importing the package (a cold run has no zygote).
async fn second_run_row(spec: &str, code: &str, runs: usize) -> WarmRow {
    let name = "second run, same packages";
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return failed(name, format!("cannot find airlock's own binary: {e}")),
    };
    let python = match language::locate(Language::Python) {
        Ok(i) => i.executable.clone(),
        Err(e) => return failed(name, e.to_string()),
    };
    let (spec, code) = (spec.to_string(), code.to_string());
    let measured = tokio::task::spawn_blocking(move || {
        let (mut install, mut whole, mut cached) = (Vec::new(), Vec::new(), 0usize);
        for _ in 0..runs {
            let t = Instant::now();
            let out = Command::new(&me)
                .args(["run", "--json", "--package", &spec, "-c", &code])
                .env("AIRLOCK_PYTHON", &python)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .map_err(|e| format!("starting {}: {e}", me.display()))?;
            whole.push(t.elapsed().as_secs_f64() * 1e3);
            let res: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
                format!(
                    "`airlock run --json` printed no result ({e}; exit {:?}): {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })?;
            if res["status"] != "ok" {
                return Err(format!(
                    "the run ended {}: {}",
                    res["status"],
                    res["stderr"].as_str().unwrap_or_default().trim()
                ));
            }
            cached += usize::from(res["environment_cached"] == true);
            install.push(res["timing"]["install_ms"].as_f64().unwrap_or(f64::NAN));
        }
        Ok((install, whole, cached))
    })
    .await;
    let (install, mut whole, cached) = match measured {
        Ok(Ok(m)) => m,
        Ok(Err(why)) => return failed(name, why),
        Err(e) => return failed(name, format!("the runs' thread failed: {e}")),
    };
    whole.sort_by(f64::total_cmp);
    // The row's columns are the install_ms figures themselves.
    let note = format!(
        "environment cached: {cached} of {} runs; columns: install_ms; whole cold run p50 {} ms \
         (imports it itself: no zygote)",
        install.len(),
        pct(&whole, 0.5).map_or("-".into(), |x| format!("{x:.0}")),
    );
    latency_row(name, install, note)
}

/// The pause before each measured round trip: the pool has settled, the machine not gone idle.
pub(crate) const BUSY_GAP: Duration = Duration::from_millis(10);
/// A rare caller's pause (the decorated-call rows settle for both).
pub(crate) const IDLE_GAP: Duration = Duration::from_millis(300);

/// Median, p90 and p99 of `runs` round trips of `r`, each from a full pool after `gap`.
async fn round_trip_row(
    name: &str,
    sched: &Scheduler,
    r: &RunRequest,
    runs: usize,
    gap: Duration,
    target: &str,
) -> WarmRow {
    let mut samples = Vec::new();
    let mut cold = 0;
    for _ in 0..runs {
        // A full, idle pool: the round trip is measured, not the refill racing it.
        // A template that cannot be pooled fails its run below, where the row says why.
        let _ = sched.prewarm(r, 2, Duration::from_secs(30)).await;
        tokio::time::sleep(gap).await;
        let t = Instant::now();
        match sched.run(r.clone(), Box::new(|_, _| {})).await {
            Ok(res) if res.status == Status::Ok => {
                samples.push(t.elapsed().as_secs_f64() * 1e3);
                cold += usize::from(res.pool != "warm");
            }
            Ok(res) => return failed(name, format!("{:?}: {}", res.status, res.stderr)),
            Err(e) => return failed(name, e.to_string()),
        }
    }
    let note = format!("{} runs, {cold} fell back to cold; {target}", samples.len());
    latency_row(name, samples, note)
}

/// A row of round-trip latencies (milliseconds, in any order).
fn latency_row(name: &str, mut samples: Vec<f64>, note: String) -> WarmRow {
    samples.sort_by(f64::total_cmp);
    WarmRow {
        name: name.into(),
        median_ms: pct(&samples, 0.5),
        p90_ms: pct(&samples, 0.9),
        p99_ms: pct(&samples, 0.99),
        per_second: None,
        note,
    }
}

/// A session's call round trip: `runs` calls of `r`'s code in one session, which keeps its
/// state (not a fresh sandbox per call); the note gives how long the session took to start.
async fn session_row(sched: &Scheduler, r: &RunRequest, runs: usize) -> WarmRow {
    let name = "session call (state kept)";
    let t = Instant::now();
    let session = match sched.session(r.clone(), SessionOptions::default()).await {
        Ok(s) => s,
        Err(e) => return failed(name, e.to_string()),
    };
    let start_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut samples = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        match session.run(r.code.clone(), None, Box::new(|_, _| {})).await {
            Ok(res) if res.status == Status::Ok => samples.push(t.elapsed().as_secs_f64() * 1e3),
            Ok(res) => return failed(name, format!("{:?}: {}", res.status, res.stderr)),
            Err(e) => return failed(name, e.to_string()),
        }
    }
    session.close().await;
    let note = format!(
        "{} calls in one session, started in {start_ms:.1} ms",
        samples.len()
    );
    latency_row(name, samples, note)
}

/// Runs per second of `r` by concurrent callers for `seconds`; pools refill in the background.
async fn sustained_row(
    name: &str,
    sched: &Scheduler,
    r: &RunRequest,
    seconds: f64,
    target: &str,
) -> WarmRow {
    let clients = 4;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let s = sched.clone();
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut warm) = (0usize, 0usize);
            while Instant::now() < deadline {
                if let Ok(res) = s.run(r.clone(), Box::new(|_, _| {})).await
                    && res.status == Status::Ok
                {
                    ok += 1;
                    warm += usize::from(res.pool == "warm");
                }
            }
            (ok, warm)
        }));
    }
    let start = Instant::now();
    let (mut ok, mut warm) = (0, 0);
    for t in tasks {
        if let Ok((o, w)) = t.await {
            ok += o;
            warm += w;
        }
    }
    let took = start.elapsed().as_secs_f64();
    WarmRow {
        name: name.into(),
        median_ms: None,
        p90_ms: None,
        p99_ms: None,
        per_second: Some(ok as f64 / took),
        note: format!("{ok} runs in {took:.1} s by {clients} callers, {warm} warm; {target}"),
    }
}

pub(crate) fn failed(name: &str, why: String) -> WarmRow {
    WarmRow {
        name: name.into(),
        median_ms: None,
        p90_ms: None,
        p99_ms: None,
        per_second: None,
        note: format!("failed: {why}"),
    }
}

fn rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The supervisor's own memory across many runs: it must stay bounded.
async fn soak_row(sched: &Scheduler, r: &RunRequest, runs: usize) -> WarmRow {
    let clients = 4;
    let before = rss_kib();
    let start = Instant::now();
    let per_client = runs.div_ceil(clients);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let s = sched.clone();
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0usize;
            for _ in 0..per_client {
                if let Ok(res) = s.run(r.clone(), Box::new(|_, _| {})).await
                    && res.status == Status::Ok
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap_or(0);
    }
    let after = rss_kib();
    WarmRow {
        name: format!("soak: {} runs, supervisor RSS", per_client * clients),
        median_ms: None,
        p90_ms: None,
        p99_ms: None,
        per_second: Some(ok as f64 / start.elapsed().as_secs_f64()),
        note: format!(
            "{ok} ok; RSS {} KiB before, {} KiB after",
            before.map_or("?".into(), |v| v.to_string()),
            after.map_or("?".into(), |v| v.to_string())
        ),
    }
}
