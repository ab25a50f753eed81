//! `airlock bench`: sandboxed runs against bare execution and peers, measured side by side in
//! one invocation (interleaved, so drift on the machine hits every row alike).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use runtime::{Language, language};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Measured runs per row.
    #[arg(long, default_value_t = 40)]
    runs: usize,
    /// Unmeasured warm-up runs per row.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Measured warm Scheduler runs (0 skips the warm rows).
    #[arg(long, default_value_t = 200)]
    warm_runs: usize,
    /// Seconds of sustained load for the throughput row.
    #[arg(long, default_value_t = 5.0)]
    sustain_seconds: f64,
    /// Runs of a soak that reports the supervisor's memory before and after (0: none).
    #[arg(long, default_value_t = 0)]
    soak_runs: usize,
    /// Package for the rows with a package imported (installed once, from the configured
    /// index); `--package ''` skips those rows.
    #[arg(long, default_value = "pandas==2.2.3")]
    package: String,
    /// Calls of the decorated-call row (`add(2, 3)` through the `airlock` Python package, run by
    /// the bench's interpreter or `AIRLOCK_BENCH_PYTHON`); 0 skips it.
    #[arg(long, default_value_t = 40)]
    decorated_runs: usize,
}

struct Stat {
    name: String,
    /// Median and 90th percentile in milliseconds.
    median_p90: Option<(f64, f64)>,
    failed: Option<String>,
}

struct Row {
    name: String,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    samples: Vec<Duration>,
    failed: Option<String>,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn row(name: &str, cmd: Vec<String>) -> Row {
    Row {
        name: name.into(),
        cmd,
        env: Vec::new(),
        samples: Vec::new(),
        failed: None,
    }
}

fn time_once(r: &Row) -> Result<Duration, String> {
    let start = Instant::now();
    let status = Command::new(&r.cmd[0])
        .args(&r.cmd[1..])
        .envs(r.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{}: {e}", r.cmd[0]))?;
    let took = start.elapsed();
    if !status.status.success() {
        return Err(format!(
            "exit {:?}: {}",
            status.status.code(),
            String::from_utf8_lossy(&status.stderr).trim()
        ));
    }
    Ok(took)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn main(args: BenchArgs) -> i32 {
    let python = match language::locate(Language::Python) {
        Ok(i) => i.clone(),
        Err(e) => {
            eprintln!("airlock bench: {e}");
            return 1;
        }
    };
    let py = python.executable.display().to_string();
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "airlock".into());
    let pass = |v: &mut Vec<String>| v.extend(["-c".to_string(), "pass".to_string()]);

    let mut rows = Vec::new();
    let mut bare = vec![py.clone()];
    pass(&mut bare);
    rows.push(row("bare python3 -c pass", bare.clone()));

    let mut al = vec![me.clone(), "run".into()];
    pass(&mut al);
    let mut r = row("airlock run -c pass", al);
    // The same interpreter for every row, already resolved (a pyenv shim would add its own cost).
    r.env.push(("AIRLOCK_PYTHON".into(), py.clone()));
    rows.push(r);

    let mut al_host = vec![me.clone(), "run".into(), "--network".into(), "host".into()];
    pass(&mut al_host);
    let mut r = row("airlock run --network host", al_host);
    r.env.push(("AIRLOCK_PYTHON".into(), py.clone()));
    rows.push(r);

    // The allowlist's extra cost over `none`: the proxy listener and the proxy's thread. No
    // request is made, so nothing is resolved or contacted.
    let mut al_list = vec![
        me.clone(),
        "run".into(),
        "--allow-domain".into(),
        "x.test".into(),
    ];
    pass(&mut al_list);
    let mut r = row("airlock run --allow-domain x.test", al_list);
    r.env.push(("AIRLOCK_PYTHON".into(), py.clone()));
    rows.push(r);

    if let Some(unshare) = which("unshare") {
        let mut c: Vec<String> = [unshare.display().to_string()]
            .into_iter()
            .chain(
                [
                    "--user",
                    "--map-root-user",
                    "--mount",
                    "--pid",
                    "--fork",
                    "--net",
                    "--ipc",
                    "--uts",
                ]
                .map(String::from),
            )
            .collect();
        c.push(py.clone());
        pass(&mut c);
        rows.push(row("unshare (user,mnt,pid,net,ipc,uts)", c));
    }
    if let Some(bwrap) = which("bwrap") {
        let mut c = vec![bwrap.display().to_string()];
        for p in language::SYSTEM_PATHS {
            let path = Path::new(p);
            if let Ok(target) = std::fs::read_link(path) {
                c.extend([
                    "--symlink".into(),
                    target.display().to_string(),
                    p.to_string(),
                ]);
            } else if path.exists() {
                c.extend(["--ro-bind".into(), p.to_string(), p.to_string()]);
            }
        }
        if let Some(prefix) = &python.prefix {
            let p = prefix.display().to_string();
            c.extend(["--ro-bind".into(), p.clone(), p]);
        }
        c.extend(
            [
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--tmpfs",
                "/tmp",
                "--unshare-all",
                "--die-with-parent",
                "--new-session",
            ]
            .map(String::from),
        );
        c.push(py.clone());
        pass(&mut c);
        rows.push(row("bwrap (--unshare-all)", c));
    }

    for _ in 0..args.warmup {
        for r in rows.iter_mut() {
            if let Err(e) = time_once(r) {
                r.failed.get_or_insert(e);
            }
        }
    }
    for _ in 0..args.runs {
        for r in rows.iter_mut().filter(|r| r.failed.is_none()) {
            match time_once(r) {
                Ok(d) => r.samples.push(d),
                Err(e) => r.failed = Some(e),
            }
        }
    }

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let stats: Vec<Stat> = rows
        .iter_mut()
        .map(|r| {
            r.samples.sort();
            let s = (!r.samples.is_empty()).then(|| {
                (
                    ms(percentile(&r.samples, 0.5)),
                    ms(percentile(&r.samples, 0.9)),
                )
            });
            Stat {
                name: r.name.clone(),
                median_p90: s,
                failed: r.failed.clone(),
            }
        })
        .collect();
    let base = stats
        .first()
        .and_then(|s| s.median_p90)
        .map(|(m, _)| m)
        .unwrap_or(f64::NAN);

    // Before the warm rows: the Python package runs its own engine, which must not compete
    // with the bench's Scheduler (that one is not started yet).
    let decorated = (args.decorated_runs > 0).then(|| {
        let python = std::env::var("AIRLOCK_BENCH_PYTHON")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| py.clone());
        crate::bench_decorated::rows(&python, args.decorated_runs)
    });
    let mut warm = if args.warm_runs > 0 {
        crate::bench_warm::measure(&crate::bench_warm::WarmPlan {
            runs: args.warm_runs,
            seconds: args.sustain_seconds,
            soak: args.soak_runs,
            package: Some(args.package.trim().to_string()).filter(|p| !p.is_empty()),
        })
    } else {
        Vec::new()
    };
    // Beside the other round trip (after `print(1)`'s row).
    if let Some(rows) = decorated {
        let at = warm.len().min(1);
        warm.splice(at..at, rows);
    }
    let fast_moves = jail::probe::cgroup_moves_fast();
    let warm_json: Vec<_> = warm
        .iter()
        .map(|w| {
            serde_json::json!({
                "name": w.name, "median_ms": w.median_ms, "p90_ms": w.p90_ms, "p99_ms": w.p99_ms,
                "per_second": w.per_second, "note": w.note,
            })
        })
        .collect();

    if args.json {
        let rows: Vec<_> = stats
            .iter()
            .map(
                |Stat {
                     name,
                     median_p90: s,
                     failed,
                 }| {
                    serde_json::json!({
                        "name": name,
                        "median_ms": s.map(|x| x.0),
                        "p90_ms": s.map(|x| x.1),
                        "ratio_vs_bare": s.map(|x| x.0 / base),
                        "error": failed,
                    })
                },
            )
            .collect();
        println!(
            "{}",
            serde_json::json!({ "interpreter": py, "runs": args.runs, "target_ratio": 1.15, "fast_cgroup_moves": fast_moves, "rows": rows, "warm": warm_json })
        );
    } else {
        println!(
            "cold one-shot, {} runs per row, interpreter {py}",
            args.runs
        );
        println!(
            "{:<38} {:>10} {:>10} {:>9}",
            "row", "median ms", "p90 ms", "vs bare"
        );
        for Stat {
            name,
            median_p90: s,
            failed,
        } in &stats
        {
            match (s, failed) {
                (Some((m, p)), _) => println!("{name:<38} {m:>10.2} {p:>10.2} {:>8.2}x", m / base),
                (None, Some(e)) => println!("{name:<38} failed: {e}"),
                (None, None) => println!("{name:<38} no samples"),
            }
        }
        println!("target (DESIGN §10): airlock run -c pass <= 1.15x bare");
        if !fast_moves {
            println!(
                "note: cgroup moves (cold runs on v1, zygote children) wait for an RCU grace \
                 period on this host (no favordynmods): see README, Benchmarks"
            );
        }
        if !warm.is_empty() {
            println!();
            let width = warm
                .iter()
                .map(|w| w.name.chars().count())
                .fold(38, usize::max);
            println!(
                "{:<width$} {:>10} {:>10} {:>10} {:>9}",
                "warm (pooled sandboxes)", "median ms", "p90 ms", "p99 ms", "runs/s"
            );
            let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
            for w in &warm {
                println!(
                    "{:<width$} {:>10} {:>10} {:>10} {:>9}  {}",
                    w.name,
                    f(w.median_ms),
                    f(w.p90_ms),
                    f(w.p99_ms),
                    w.per_second.map_or("-".into(), |x| format!("{x:.0}")),
                    w.note
                );
            }
        }
    }
    0
}
