//! One cold run: request -> jail policy -> sandbox -> result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jail::{CgroupMode, Command, File, Limits, Mount, Network, Policy, Sandbox};

pub use jail::Stream;

use crate::diagnose::{self, Ending, Language};
use crate::environment::{self, Progress};
use crate::error::RuntimeError;
use crate::language::{self, SYSTEM_PATHS};
use crate::network::{self, NetworkSetup};
use crate::request::{NetworkMode, RunRequest};
use crate::result::{RunResult, Status, TimingMs, UsageInfo};

const MIB: u64 = 1 << 20;

/// Runs `req` in a fresh sandbox, passing output to `on_output` as it is produced.
pub fn run(
    req: &RunRequest,
    on_output: impl FnMut(Stream, &[u8]),
) -> Result<RunResult, RuntimeError> {
    run_with(req, on_output, |_| {})
}

/// `run`, reporting a dependency install's progress (for a terminal's spinner) to `on_progress`.
pub fn run_with_progress(
    req: &RunRequest,
    on_output: impl FnMut(Stream, &[u8]),
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<RunResult, RuntimeError> {
    run_inner(req, on_output, |_| {}, on_progress)
}

/// `run`, handing the sandbox's killer to `on_spawn` as soon as it exists (for cancellation).
pub(crate) fn run_with(
    req: &RunRequest,
    on_output: impl FnMut(Stream, &[u8]),
    on_spawn: impl FnOnce(jail::Killer),
) -> Result<RunResult, RuntimeError> {
    run_inner(req, on_output, on_spawn, &mut |_| {})
}

fn run_inner(
    req: &RunRequest,
    on_output: impl FnMut(Stream, &[u8]),
    on_spawn: impl FnOnce(jail::Killer),
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<RunResult, RuntimeError> {
    // Sandboxes with a listener hand it back over a socket, weighed against our limit.
    crate::scheduler::prepare_descriptor_passing();
    req.validate()?;
    let interp = language::locate(req.language)?;
    // Held (a shared lock on its key) until the run ends, so a prune cannot pull it away.
    let env = environment::ensure_for(req, interp, on_progress)?;
    let (mut policy, command) = policy_for(req, interp);
    if let Some(e) = &env {
        e.apply(&mut policy);
    }
    let net = NetworkSetup::for_request(req)?;
    net.apply(&mut policy);
    let (command, channel) = match req.result_channel {
        true => crate::channel::open(&mut policy, command, 3).map(|(c, ch)| (c, Some(ch)))?,
        false => (command, None),
    };
    let mut sandbox = Sandbox::spawn(&policy, &command)?;
    drop(command); // our copy of the channel's write end: EOF must come from the sandbox
    // Serves the sandbox's loopback listener until the run ends (allowlist only).
    let proxy = net.start(&mut sandbox)?;
    on_spawn(sandbox.killer());
    let outcome = sandbox.wait(on_output);
    let log = proxy.map(network::Proxy::stop);
    let mut result = result_from(req, outcome?, "cold");
    if let Some(ch) = channel {
        result.result = Some(ch.finish()?);
    }
    if let Some(e) = &env {
        e.annotate(&mut result);
    }
    if let Some(log) = log {
        network::annotate(&mut result, &log);
    }
    Ok(result)
}

/// The result of a finished run, in DESIGN §8's terms. `pool` says where its sandbox came from.
pub(crate) fn result_from(req: &RunRequest, outcome: jail::Outcome, pool: &str) -> RunResult {
    let ending = Ending {
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        timed_out: outcome.timed_out,
        memory_limit: outcome.memory_limit,
        init_died: outcome.init_died,
        network_none: network::effective_mode(req) == NetworkMode::None,
        timeout_secs: req.timeout.as_secs_f64(),
        memory_mb: req.memory_mb,
    };
    let stderr = String::from_utf8_lossy(&outcome.stderr).into_owned();
    let status = if outcome.timed_out {
        Status::Timeout
    } else if outcome.memory_limit {
        Status::MemoryLimit
    } else if outcome.signal.is_some() || outcome.init_died {
        Status::Killed
    } else if outcome.exit_code == Some(0) {
        Status::Ok
    } else {
        Status::Error
    };
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    RunResult {
        status,
        // An init's own exit code is not the program's.
        exit_code: outcome.exit_code.filter(|_| !outcome.init_died),
        signal: outcome.signal,
        stdout: String::from_utf8_lossy(&outcome.stdout).into_owned(),
        error: diagnose::diagnose(req.language, &stderr, &ending),
        stderr,
        stdout_truncated: outcome.stdout_truncated,
        stderr_truncated: outcome.stderr_truncated,
        timing: TimingMs {
            setup_ms: ms(outcome.timing.setup),
            boot_ms: ms(outcome.timing.boot),
            execute_ms: ms(outcome.timing.execute),
            total_ms: ms(outcome.timing.total),
            install_ms: 0.0,
        },
        usage: UsageInfo {
            cpu_ms: outcome.usage.cpu.as_millis() as u64,
            memory_peak_bytes: outcome.usage.memory_peak_bytes,
        },
        pool: pool.into(),
        environment: None,
        environment_cached: None,
        stdout_bytes: outcome.stdout,
        stderr_bytes: outcome.stderr,
        result: None,
    }
}

/// V8 sizes its heap from host memory; holding it under the cgroup limit makes a runaway heap
/// end as a JavaScript "heap out of memory" error rather than an OOM kill.
pub(crate) fn node_heap_flag(memory_mb: u64) -> String {
    format!("--max-old-space-size={}", (memory_mb * 3 / 4).max(16))
}

/// Gives back what the host lent to runs and no run still uses (airlock's parent cgroups), so
/// an idle supervisor leaves nothing behind. Cheap; safe to call while other runs go on.
pub fn release_host_resources() {
    jail::cgroup::flush_destroys();
    // A crashed supervisor's empty run cgroups go first, so the parents can go too.
    jail::cgroup::cleanup_stale();
    jail::cgroup::release_parents();
}

/// The jail policy and command for a request.
pub(crate) fn policy_for(req: &RunRequest, interp: &language::Interpreter) -> (Policy, Command) {
    let mut mounts: Vec<Mount> = SYSTEM_PATHS
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| Mount::same(*p))
        .collect();
    if let Some(prefix) = &interp.prefix {
        mounts.push(Mount::same(prefix.clone()));
    }
    mounts.extend(req.mounts.iter().map(|m| Mount {
        source: m.source.clone(),
        target: m.target.clone(),
        writable: m.writable,
    }));

    let code_path = language::code_path(req.language);
    let mut path = String::from("/usr/local/bin:/usr/bin:/bin");
    if let Some(bin) = interp
        .executable
        .parent()
        .filter(|_| interp.prefix.is_some())
    {
        path = format!("{}:{path}", bin.display());
    }
    let mut env = std::collections::BTreeMap::new();
    env.insert("PATH".to_string(), path);
    env.insert("HOME".to_string(), "/workspace".to_string());
    env.insert("LANG".to_string(), "C.UTF-8".to_string());
    env.insert("TMPDIR".to_string(), "/tmp".to_string());

    let memory_bytes = req.memory_mb * MIB;
    let mut limits = Limits {
        memory_bytes,
        pids: req.pids,
        cpu_millis: (req.cpus * 1000.0).round().max(1.0) as u64,
        wall_timeout: req.timeout,
        stdout_bytes: req.stdout_limit,
        stderr_bytes: req.stderr_limit,
        tmp_bytes: req.tmp_mb * MIB,
        workspace_bytes: req.tmp_mb * MIB,
        ..Limits::default()
    };
    let exe = interp.executable.clone();
    let command = match req.language {
        Language::Python => {
            env.insert("PYTHONUNBUFFERED".into(), "1".into());
            env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
            // An allocation past the limit fails as MemoryError instead of meeting the OOM killer.
            limits.data_bytes = Some(memory_bytes);
            Command::new(exe).arg(code_path)
        }
        Language::JavaScript => Command::new(exe)
            .arg(node_heap_flag(req.memory_mb))
            .arg(code_path),
        Language::Shell => Command::new(exe).arg(code_path),
    };
    env.extend(req.env.clone());

    let policy = Policy {
        mounts,
        files: std::iter::once(File {
            target: PathBuf::from(code_path),
            contents: req.code.clone(),
            mode: 0o644,
        })
        .chain(req.files.iter().map(|(path, contents)| File {
            target: PathBuf::from("/workspace").join(path),
            contents: contents.clone(),
            mode: 0o644,
        }))
        .collect(),
        workspace: req.workdir.clone(),
        env,
        network: match req.network {
            // Without its proxy (`NetworkSetup::start`) an allowlist sandbox has no network.
            NetworkMode::None | NetworkMode::Allowlist => Network::None,
            NetworkMode::Host => Network::Host,
        },
        limits,
        cgroup: if req.weak_limits {
            CgroupMode::BestEffort
        } else {
            CgroupMode::Required
        },
        ..Policy::default()
    };
    (policy, command)
}
