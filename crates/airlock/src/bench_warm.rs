//! The warm rows of `airlock bench`: runs through the `Scheduler` with warm pools, in-process,
//! as the Python package and the HTTP service use it.

use std::time::{Duration, Instant};

use runtime::{Language, RunRequest, Scheduler, SchedulerConfig, Status};

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

/// Warm round trip of `print(1)`: each run takes a pre-started sandbox (the pool is refilled,
/// off the clock, between runs). Then sustained throughput of fresh sandboxes with `clients`
/// concurrent callers for `seconds`.
pub fn measure(runs: usize, seconds: f64, soak: usize) -> Vec<WarmRow> {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return vec![WarmRow {
                name: "warm rows".into(),
                median_ms: None,
                p90_ms: None,
                p99_ms: None,
                per_second: None,
                note: format!("no async runtime: {e}"),
            }];
        }
    };
    rt.block_on(async {
        let mut rows = Vec::new();
        let sched = Scheduler::new(SchedulerConfig {
            pool_size: 2,
            ..SchedulerConfig::default()
        });
        let r = req("print(1)");
        let mut samples = Vec::new();
        let mut cold = 0;
        for _ in 0..runs {
            // A full, idle pool: the round trip is measured, not the refill racing it.
            sched.prewarm(&r, 2, Duration::from_secs(30)).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let t = Instant::now();
            match sched.run(r.clone(), Box::new(|_, _| {})).await {
                Ok(res) if res.status == Status::Ok => {
                    samples.push(t.elapsed().as_secs_f64() * 1e3);
                    cold += usize::from(res.pool != "warm");
                }
                Ok(res) => {
                    return vec![failed(
                        "warm Scheduler.run(\"print(1)\")",
                        format!("{:?}: {}", res.status, res.stderr),
                    )];
                }
                Err(e) => return vec![failed("warm Scheduler.run(\"print(1)\")", e.to_string())],
            }
        }
        samples.sort_by(f64::total_cmp);
        rows.push(WarmRow {
            name: "warm Scheduler.run(\"print(1)\")".into(),
            median_ms: pct(&samples, 0.5),
            p90_ms: pct(&samples, 0.9),
            p99_ms: pct(&samples, 0.99),
            per_second: None,
            note: format!(
                "{} runs, {cold} fell back to cold; target p50 <= 2 ms",
                samples.len()
            ),
        });

        // Sustained: callers keep the scheduler busy; pools refill in the background.
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
        rows.push(WarmRow {
            name: "sustained fresh-sandbox runs".into(),
            median_ms: None,
            p90_ms: None,
            p99_ms: None,
            per_second: Some(ok as f64 / took),
            note: format!(
                "{ok} runs in {took:.1} s by {clients} callers, {warm} warm; target >= 300/s"
            ),
        });
        if soak > 0 {
            rows.push(soak_row(&sched, &r, soak).await);
        }
        sched.shutdown().await;
        rows
    })
}

fn failed(name: &str, why: String) -> WarmRow {
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
