//! The install sandbox. Installing a package runs its build code (`setup.py`, npm lifecycle
//! scripts), so it gets the same jail as a run, with three differences: the network reaches
//! the index's hosts only (through the allowlist proxy), the environment being built and the
//! installer's cache are bound read-write, and the limits fit a build. There is no host home
//! (HOME is the sandbox's own `/tmp`), no host environment, no host `/etc` beyond the
//! synthesized one, and as root a fixed unprivileged installer uid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jail::{CgroupMode, Command, Limits, Mount, Network, Policy, Sandbox, Stream};

use super::{CACHE_MOUNT, ENV_MOUNT, INSTALLER_HOST_ID, Progress};
use crate::error::RuntimeError;
use crate::language::{Interpreter, SYSTEM_PATHS};

const MIB: u64 = 1 << 20;
/// How long one install may take before it is killed.
pub(crate) const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
const INSTALL_MEMORY: u64 = 2048 * MIB;
/// An installer's open-files limit: the most of any sandbox airlock makes.
pub(crate) const INSTALL_OPEN_FILES: u64 = 4096;
/// How much of the installer's output an error carries (its last lines say what failed).
const TAIL_BYTES: usize = 64 * 1024;
const MESSAGE_LINES: usize = 40;

/// The network an install gets: the index's or registry's hosts only, through the allowlist
/// proxy (`network::for_install`; built by the caller from the package config).
pub(crate) type InstallNetwork = crate::network::NetworkSetup;

/// One installer invocation, prepared by `python.rs` or `node.rs`.
pub(crate) struct Job {
    pub command: Command,
    /// Read-only binds beyond the system paths and the interpreter's prefix: the installer
    /// binary, find-links directories, local packages.
    pub mounts: Vec<Mount>,
    /// The installer's environment, beyond the fixed base set here.
    pub env: BTreeMap<String, String>,
}

/// The host CA bundle, if any: installs must trust what the host trusts (a private mirror's
/// or an egress proxy's CA), and the jail binds `/etc/ssl/certs` from the host.
pub(crate) fn host_ca_bundle() -> Option<&'static str> {
    const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
    Path::new(BUNDLE).is_file().then_some(BUNDLE)
}

/// Runs `job` with `build` bound at [`ENV_MOUNT`] and `cache` at the cache mount. `Ok(Err(_))`
/// is the installer's own failure, with the end of its output.
pub(crate) fn run(
    job: &Job,
    network: &InstallNetwork,
    build: &Path,
    cache: &Path,
    interp: &Interpreter,
    weak_limits: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Result<(), String>, RuntimeError> {
    let mut mounts: Vec<Mount> = SYSTEM_PATHS
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| Mount::same(*p))
        .collect();
    if let Some(prefix) = &interp.prefix {
        mounts.push(Mount::same(prefix.clone()));
    }
    mounts.push(Mount::read_write(build, ENV_MOUNT));
    mounts.push(Mount::read_write(cache, CACHE_MOUNT));
    mounts.extend(job.mounts.iter().cloned());

    let mut path = String::from("/usr/local/bin:/usr/bin:/bin");
    if let Some(bin) = interp
        .executable
        .parent()
        .filter(|_| interp.prefix.is_some())
    {
        path = format!("{}:{path}", bin.display());
    }
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), path);
    env.insert("HOME".to_string(), "/tmp".to_string());
    env.insert("LANG".to_string(), "C.UTF-8".to_string());
    env.insert("TMPDIR".to_string(), "/tmp".to_string());
    env.insert("NO_COLOR".to_string(), "1".to_string());
    env.extend(job.env.clone());

    let cores = jail::probe::cores() as u64;
    let mut policy = Policy {
        mounts,
        env,
        cwd: PathBuf::from("/tmp"),
        network: Network::None, // set by `network.apply` below
        limits: Limits {
            memory_bytes: INSTALL_MEMORY,
            pids: 1024,
            cpu_millis: cores * 1000,
            wall_timeout: INSTALL_TIMEOUT,
            open_files: INSTALL_OPEN_FILES,
            data_bytes: None,
            file_size_bytes: 2048 * MIB,
            stdout_bytes: 256 * 1024,
            stderr_bytes: 256 * 1024,
            tmp_bytes: 1024 * MIB,
            workspace_bytes: 64 * MIB,
            ..Limits::default()
        },
        cgroup: if weak_limits {
            CgroupMode::BestEffort
        } else {
            CgroupMode::Required
        },
        host_id: Some(INSTALLER_HOST_ID),
        ..Policy::default()
    };
    network.apply(&mut policy);
    let mut sandbox = Sandbox::spawn(&policy, &job.command)?;
    // Serves the install's only way out until it ends.
    let proxy = network.start(&mut sandbox)?;
    let mut tail: Vec<u8> = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let outcome = sandbox.wait(|_stream: Stream, bytes: &[u8]| {
        tail.extend_from_slice(bytes);
        if tail.len() > 2 * TAIL_BYTES {
            tail.drain(..tail.len() - TAIL_BYTES);
        }
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                let text = String::from_utf8_lossy(&line).trim().to_string();
                if !text.is_empty() {
                    progress(&Progress::Output(text));
                }
                line.clear();
            } else if line.len() < 4096 {
                line.push(b);
            }
        }
    });
    let blocked = proxy
        .map(crate::network::Proxy::stop)
        .and_then(|log| crate::network::blocked_hint(&log))
        .map(|h| format!("\n{h}"))
        .unwrap_or_default();
    let outcome = outcome?;
    if outcome.timed_out {
        return Ok(Err(format!(
            "the install did not finish within {} s and was stopped\n{}",
            INSTALL_TIMEOUT.as_secs(),
            message(&tail)
        )));
    }
    if outcome.memory_limit {
        return Ok(Err(format!(
            "the install ran out of memory ({} MiB) and was stopped\n{}",
            INSTALL_MEMORY / MIB,
            message(&tail)
        )));
    }
    match (outcome.exit_code, outcome.signal) {
        (Some(0), _) => Ok(Ok(())),
        (code, signal) => {
            let mut m = message(&tail);
            if m.is_empty() {
                m = match (code, signal) {
                    (Some(c), _) => {
                        format!("the installer exited with status {c} and said nothing")
                    }
                    (_, Some(s)) => format!("the installer was killed by signal {s}"),
                    _ => "the installer failed".into(),
                };
            }
            Ok(Err(m + &blocked))
        }
    }
}

/// The installer's own account of a failure: from its first error line (uv's `error:` or `×`,
/// npm's `npm error`) to the end, else its last lines; without terminal escapes.
pub(crate) fn message(output: &[u8]) -> String {
    let text = strip_ansi(&String::from_utf8_lossy(output));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let window = lines.len().saturating_sub(200);
    let is_error = |l: &str| {
        let t = l.trim_start();
        t.starts_with("error")
            || t.starts_with('×')
            || t.starts_with("npm error")
            || t.starts_with("npm ERR!")
    };
    let start = lines[window..]
        .iter()
        .position(|l| is_error(l))
        .map_or(lines.len().saturating_sub(MESSAGE_LINES), |i| window + i);
    let mut picked: Vec<&str> = lines[start..].to_vec();
    if picked.len() > MESSAGE_LINES {
        picked.drain(..picked.len() - MESSAGE_LINES);
    }
    picked.join("\n")
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_starts_at_the_installers_error() {
        let out = b"Using CPython 3.11\n\x1b[31merror\x1b[0m: Because there is no version of x==9\n  and you require x==9, we can conclude...\n";
        let m = message(out);
        assert!(
            m.starts_with("error: Because there is no version of x==9"),
            "{m}"
        );
        assert!(!m.contains("Using CPython"));
        let npm = b"npm notice\nnpm error code E404\nnpm error 404 Not Found - GET x\n";
        assert!(message(npm).starts_with("npm error code E404"));
        let plain: Vec<u8> = (0..100)
            .map(|i| format!("line {i}\n"))
            .collect::<String>()
            .into_bytes();
        let m = message(&plain);
        assert!(m.ends_with("line 99") && !m.contains("line 59\n"), "{m}");
    }
}
