//! `airlock run`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use runtime::{Language, MountSpec, NetworkMode, RunRequest, RunResult, Status, Stream, language};

/// Exit code when the run timed out (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code when the sandbox could not run the code at all.
pub const EXIT_SANDBOX: i32 = 125;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// File to run, or `-` to read the code from stdin.
    file: Option<PathBuf>,
    /// Code to run.
    #[arg(short = 'c', long = "code", conflicts_with = "file")]
    code: Option<String>,
    /// python, javascript or shell (default: from the file's extension, else python).
    #[arg(long = "lang", short = 'l')]
    lang: Option<String>,
    /// Package for the run (pip requirement or npm spec), installed once into a cached
    /// environment; repeatable.
    #[arg(short = 'p', long = "package")]
    packages: Vec<String>,
    /// Explicit opt-in: accept URLs, local paths and VCS references as packages.
    #[arg(long)]
    allow_unsafe_specs: bool,
    /// Explicit opt-in (Python): the packages are trusted, so a warm pool may import them once
    /// in a zygote shared by every run of this environment (see docs/security.md).
    #[arg(long)]
    trust_packages: bool,
    /// Wall-clock timeout in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Memory limit in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u64,
    /// CPU quota in cores.
    #[arg(long, default_value_t = 1.0)]
    cpus: f64,
    /// Maximum number of processes.
    #[arg(long, default_value_t = 256)]
    pids: u64,
    /// none (default), allowlist (implied by --allow-domain) or host (the host's network:
    /// weaker, explicit opt-in).
    #[arg(long)]
    network: Option<String>,
    /// Name reachable under `--network allowlist` (exact, or `*.suffix`); repeatable. Only HTTP
    /// and HTTPS through airlock's proxy; no domain at all means no network.
    #[arg(long = "allow-domain")]
    allow_domains: Vec<String>,
    /// Under `--network allowlist`: let allowed names lead to private, loopback, link-local
    /// or carrier-grade NAT addresses (cloud metadata stays refused).
    #[arg(long)]
    allow_private_addresses: bool,
    /// NAME=IP[,IP…]: use these addresses for NAME instead of the host's resolver (like curl's
    /// --resolve; allowlist only). The address checks still apply; the tests use it.
    #[arg(long = "resolve")]
    resolve: Vec<String>,
    /// SRC:DST[:ro|rw] bind of a host path; repeatable.
    #[arg(long = "mount")]
    mounts: Vec<String>,
    /// Host directory bound read-write at /workspace.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// K=V environment variable for the program; repeatable.
    #[arg(long = "env", short = 'e')]
    env: Vec<String>,
    /// Print the result as JSON (DESIGN §8 fields) instead of streaming output.
    #[arg(long)]
    json: bool,
    /// Explicit opt-in to a weaker profile: rlimit-only limits where no cgroup can be created.
    #[arg(long)]
    weak_limits: bool,
    /// Run the way the Scheduler serves warm runs: prepare a pooled sandbox first (for Python,
    /// a child of a zygote), then hand it the code. For checking the warm path; a one-shot run
    /// is faster without it.
    #[arg(long)]
    pool: bool,
}

pub fn main(args: RunArgs) -> i32 {
    let json = args.json;
    let pool = args.pool;
    let req = match request(args) {
        Ok(r) => r,
        Err(e) => return fail(json, &format!("{e:#}"), "InvalidInput"),
    };
    let live = !json;
    if pool {
        let result = pooled(req, live);
        runtime::release_host_resources();
        return match result {
            Ok(r) => report(json, &r),
            Err(e) => fail(json, &e.to_string(), e.kind()),
        };
    }
    let mut progress = crate::env::InstallProgress::new(!json && std::io::stderr().is_terminal());
    let result = runtime::run_with_progress(
        &req,
        |stream, bytes| {
            if live {
                forward(stream, bytes)
            }
        },
        &mut |p| progress.event(p),
    );
    drop(progress);
    runtime::release_host_resources();
    match result {
        Ok(r) => report(json, &r),
        Err(e) => {
            let kind = e.kind();
            fail(json, &e.to_string(), kind)
        }
    }
}

/// Streams a run's output to ours as it comes (a closed terminal must not kill the run).
fn forward(stream: Stream, bytes: &[u8]) {
    let _ = match stream {
        Stream::Stdout => std::io::stdout()
            .lock()
            .write_all(bytes)
            .and_then(|_| std::io::stdout().flush()),
        Stream::Stderr => std::io::stderr().lock().write_all(bytes),
    };
}

/// `--pool`: one run through a Scheduler whose pool was filled for it first.
fn pooled(req: RunRequest, live: bool) -> Result<RunResult, runtime::RuntimeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            runtime::RuntimeError::Sandbox(jail::JailError::Host {
                what: "starting the async runtime".into(),
                source: e,
            })
        })?;
    rt.block_on(async {
        let sched = runtime::Scheduler::new(runtime::SchedulerConfig {
            pool_size: 1,
            ..runtime::SchedulerConfig::default()
        });
        sched.prewarm(&req, 1, Duration::from_secs(120)).await?;
        let result = sched
            .run(
                req,
                Box::new(move |stream, bytes| {
                    if live {
                        forward(stream, bytes)
                    }
                }),
            )
            .await;
        sched.shutdown().await;
        result
    })
}

fn request(a: RunArgs) -> anyhow::Result<RunRequest> {
    let (code, file_lang) = match (&a.code, &a.file) {
        (Some(c), None) => (c.clone().into_bytes(), None),
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading code from stdin")?;
            (buf, None)
        }
        (None, Some(f)) => {
            let meta = std::fs::metadata(f)
                .with_context(|| format!("invalid `file`: cannot read {}", f.display()))?;
            if meta.len() > runtime::MAX_CODE_BYTES as u64 {
                bail!(
                    "invalid `code`: {} is {} bytes; the limit is 10 MiB",
                    f.display(),
                    meta.len()
                );
            }
            let code = std::fs::read(f)
                .with_context(|| format!("invalid `file`: cannot read {}", f.display()))?;
            (code, language::from_extension(f))
        }
        (None, None) => bail!("invalid `code`: give a FILE, `-c CODE`, or `-` to read stdin"),
        (Some(_), Some(_)) => bail!("invalid `code`: give either a FILE or `-c CODE`, not both"),
    };
    let language = match &a.lang {
        Some(l) => language::parse(l).with_context(|| {
            format!("invalid `lang`: {l:?} is not one of python, javascript, shell")
        })?,
        None => file_lang.unwrap_or(Language::Python),
    };
    // --allow-domain alone means --network allowlist.
    let network = match &a.network {
        Some(n) => NetworkMode::parse(n)?,
        None if !a.allow_domains.is_empty() => NetworkMode::Allowlist,
        None => NetworkMode::None,
    };
    let mut pinned_hosts = std::collections::BTreeMap::new();
    for r in &a.resolve {
        let bad = || format!("invalid `resolve`: {r:?} is not NAME=IP[,IP…]");
        let (name, ips) = r.split_once('=').with_context(bad)?;
        let ips = ips
            .split(',')
            .map(|ip| ip.trim().parse::<std::net::IpAddr>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(bad)?;
        pinned_hosts.insert(name.to_string(), ips);
    }
    if !a.timeout.is_finite() || a.timeout <= 0.0 {
        bail!(
            "invalid `timeout`: {} is not a positive number of seconds",
            a.timeout
        );
    }
    let mut env = std::collections::BTreeMap::new();
    for kv in &a.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("invalid `env`: {kv:?} is not K=V"))?;
        env.insert(k.to_owned(), v.to_owned());
    }
    let mounts = a
        .mounts
        .iter()
        .map(|m| MountSpec::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    let workdir = match &a.workdir {
        Some(w) => Some(
            runtime::resolve_host_path(w).map_err(|e| anyhow::anyhow!("invalid `workdir`: {e}"))?,
        ),
        None => None,
    };
    Ok(RunRequest {
        code,
        language,
        timeout: Duration::from_secs_f64(a.timeout.min(1e6)),
        memory_mb: a.memory,
        pids: a.pids,
        cpus: a.cpus,
        network,
        allowed_domains: a.allow_domains,
        allow_private: a.allow_private_addresses,
        pinned_hosts,
        mounts,
        workdir,
        env,
        weak_limits: a.weak_limits,
        packages: a.packages,
        allow_unsafe_specs: a.allow_unsafe_specs,
        trust_packages: a.trust_packages,
        ..RunRequest::default()
    })
}

fn exit_code(r: &RunResult) -> i32 {
    match r.status {
        Status::Timeout => EXIT_TIMEOUT,
        Status::SandboxError => EXIT_SANDBOX,
        _ => match (r.exit_code, r.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => EXIT_SANDBOX,
        },
    }
}

fn report(json: bool, r: &RunResult) -> i32 {
    if json {
        println!(
            "{}",
            serde_json::to_string(r).unwrap_or_else(|e| format!(
                "{{\"status\":\"sandbox_error\",\"message\":\"{e}\"}}"
            ))
        );
    } else {
        let mut err = std::io::stderr().lock();
        if r.stdout_truncated || r.stderr_truncated {
            let _ = writeln!(err, "airlock: output was truncated at the capture limit");
        }
        if let Some(e) = &r.error {
            match r.status {
                Status::Timeout | Status::MemoryLimit | Status::Killed => {
                    let _ = writeln!(err, "airlock: {}", e.message);
                }
                _ => {}
            }
            if let Some(h) = &e.hint
                && (std::io::stderr().is_terminal() || std::env::var_os("AIRLOCK_HINTS").is_some())
            {
                let _ = writeln!(err, "airlock: hint: {h}");
            }
        }
    }
    exit_code(r)
}

/// Reports an error of the call: not a result, so exit 125.
fn fail(json: bool, message: &str, kind: &str) -> i32 {
    if json {
        let v = serde_json::json!({
            "status": "sandbox_error",
            "error": { "type": kind, "message": message },
        });
        println!("{v}");
    } else {
        eprintln!("airlock: {message}");
    }
    EXIT_SANDBOX
}
