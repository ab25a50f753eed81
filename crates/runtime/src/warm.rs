//! Pre-started, use-once sandboxes: the interpreter is already running inside a fully built
//! sandbox, waiting for its code on a private control descriptor. Each serves exactly one run
//! and is then destroyed, so no run ever sees another's state; the pool only moves the cost of
//! building the sandbox and starting the interpreter off the run's critical path.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use jail::{Command, File, Killer, Sandbox, Stream, Zygote, ZygoteChild};

use crate::diagnose::Language;
use crate::environment::Environment;
use crate::error::RuntimeError;
use crate::language::{self, Interpreter};
use crate::request::RunRequest;
use crate::result::RunResult;
use crate::run::{policy_for, result_from};

pub(crate) const PYTHON_AGENT: &str = concat!(
    include_str!("agents/common.py"),
    include_str!("agents/agent.py")
);
const PYTHON_ZYGOTE: &str = include_str!("agents/zygote.py");
const PYTHON_PRELOAD: &str = include_str!("agents/preload.py");
/// airlock's jail built as the shared object a zygote loads (see build.rs).
pub(crate) const ZYGOTE_LIBRARY: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/libairlock_zygote.so"));
/// Standard modules a zygote imports for every run besides what the agent needs: common in
/// generated code, cheap to hold. A request's packages are imported there only when it trusts
/// them (`trust_packages`): their import-time code runs in the zygote, which passes every run
/// its descriptors.
///
/// Holding a module is not free: every fork copies, and every run's exit frees, the page
/// tables of all the zygote's memory. `asyncio` (with the `ssl`, `socket` and `subprocess` it
/// pulls in) would be a third of it, 4.8 MB, for about 20 ms saved only in the runs that
/// import it; without it sustained runs went from 298-306/s to 332-334/s. The decorator's
/// call runner, which awaits coroutine functions, preloads it in its own pools.
pub(crate) const ZYGOTE_PRELOAD: &[&str] = &[
    "json",
    "re",
    "math",
    "random",
    "collections",
    "itertools",
    "functools",
    "datetime",
    "typing",
    "dataclasses",
    "pathlib",
    "string",
    "textwrap",
    "io",
    "struct",
    "base64",
    "hashlib",
    "decimal",
    "fractions",
    "statistics",
    "copy",
    "enum",
    "heapq",
    "bisect",
    "operator",
    "abc",
    "contextlib",
    "csv",
    "time",
    "uuid",
];
/// How long a zygote may take to start and import its modules.
const ZYGOTE_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
const NODE_AGENT: &str = include_str!("agents/agent.js");
/// Reads the code (to EOF) from descriptor 3, then becomes `bash -c CODE /airlock/main.sh`, so
/// `$0` and bash's own error messages name /airlock/main.sh as a cold run's would.
const SHELL_AGENT: &str = r#"printf R >&3; c=$(cat <&3; printf x); exec 3<&-; exec /bin/bash -c "${c%x}" /airlock/main.sh"#;
/// How long a pre-started interpreter may take to say it is ready.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// A single argument may not exceed the kernel's MAX_ARG_STRLEN (128 KiB): larger shell code
/// runs cold.
const SHELL_WARM_MAX: usize = 100 * 1024;

/// Whether `req` can be served by a pre-started sandbox.
pub(crate) fn warmable(req: &RunRequest) -> bool {
    // The allowlist proxy is set up per run, on the cold path only.
    let plain = crate::network::effective_mode(req) != crate::request::NetworkMode::Allowlist;
    plain && (req.language != Language::Shell || req.code.len() <= SHELL_WARM_MAX)
}

/// A sandbox whose interpreter waits for its one run: pre-started, or forked by a zygote.
pub(crate) struct Warm {
    host: Host,
    control: UnixStream,
    channel: Option<crate::channel::ResultChannel>,
    /// The environment it has mounted, held (against a prune) for as long as it lives.
    env: Option<Arc<Environment>>,
    pub(crate) born: Instant,
}

enum Host {
    Sandbox(Sandbox),
    /// Holds its zygote: the zygote's death would take the child with it.
    Forked(ZygoteChild, Arc<PoolZygote>),
}

/// A pool's zygote and the environment it has mounted (and imported, when trusted).
pub(crate) struct PoolZygote {
    zygote: Zygote,
    env: Option<Arc<Environment>>,
}

impl PoolZygote {
    pub(crate) fn alive(&self) -> bool {
        self.zygote.alive()
    }

    pub(crate) fn born(&self) -> Instant {
        self.zygote.born()
    }
}

/// Whether requests like `req` are served by a zygote's children (Python whose packages, if
/// any, are trusted, and whose sandbox has nothing writable but its own tmpfs mounts, with
/// cgroups). Other warmable requests get pre-started sandboxes.
pub(crate) fn zygote_serves(req: &RunRequest) -> bool {
    req.language == Language::Python
        && (req.packages.is_empty() || req.trust_packages)
        && self_contained(req)
}

/// Whether a sandbox for `req` has nothing writable but its own tmpfs mounts, and cgroups: what
/// a process made once for many runs (a zygote, a frozen interpreter) may serve.
pub(crate) fn self_contained(req: &RunRequest) -> bool {
    req.workdir.is_none()
        && req.files.is_empty()
        && !req.weak_limits
        && req.mounts.iter().all(|m| !m.writable)
}

/// What a pooled sandbox for requests like `template` is made of: a run's interpreter and
/// policy, without the code file (the code arrives on the control channel), and the run's
/// environment (installed now if it is not yet), mounted.
pub(crate) struct PoolSetup {
    pub(crate) interp: &'static Interpreter,
    pub(crate) policy: jail::Policy,
    pub(crate) env: Option<Arc<Environment>>,
}

pub(crate) fn pool_setup(template: &RunRequest) -> Result<PoolSetup, RuntimeError> {
    let interp = language::locate(template.language)?;
    let env = crate::environment::ensure_for(template, interp, &mut |_| {})?.map(Arc::new);
    let (mut policy, _) = policy_for(template, interp);
    if let Some(e) = &env {
        e.apply(&mut policy);
    }
    let code_path = PathBuf::from(language::code_path(template.language));
    policy.files.retain(|f| f.target != code_path);
    Ok(PoolSetup {
        interp,
        policy,
        env,
    })
}

/// Python source defining what `_airlock_preload` (preload.py) imports: `modules`, and the
/// top-level modules of the distributions `template` names.
pub(crate) fn preload_prelude(modules: &[&str], template: &RunRequest) -> String {
    let dists = template
        .packages
        .iter()
        .filter_map(|p| distribution_name(p));
    format!(
        "_AIRLOCK_PRELOAD = ({})\n_AIRLOCK_PRELOAD_DISTS = ({})\n{PYTHON_PRELOAD}\n",
        python_tuple(modules.iter().copied()),
        python_tuple(dists)
    )
}

/// How many threads the native thread pools an import starts may have in a sandbox of
/// `cpu_millis`: its quota in whole cores, at least one and at most the host's.
pub(crate) fn pool_threads(cpu_millis: u64) -> u64 {
    let host = jail::probe::cores() as u64;
    cpu_millis.div_ceil(1000).clamp(1, host)
}

/// The items of a Python tuple of `names` (each a plain name: letters, digits, `.`, `_`, `-`).
fn python_tuple<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.map(|n| format!("{n:?}, ")).collect()
}

/// The distribution a pip requirement names (`pandas` of `pandas[excel]>=2`), when it starts
/// with one; only names (letters, digits, `.`, `_`, `-`) ever reach the preload's source.
fn distribution_name(spec: &str) -> Option<&str> {
    let spec = spec.trim_start();
    let end = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(spec.len());
    let name = &spec[..end];
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        .then_some(name)
}

/// Starts a zygote for requests like `template` (its code is ignored). It imports the
/// template's packages only when the template trusts them (`zygote_serves`).
pub(crate) fn start_zygote(template: &RunRequest) -> Result<PoolZygote, RuntimeError> {
    if !zygote_serves(template) {
        return Err(RuntimeError::invalid(
            "trust_packages",
            "a zygote imports a run's packages only when the run trusts them",
        ));
    }
    let PoolSetup {
        interp,
        mut policy,
        env,
    } = pool_setup(template)?;
    let script = format!(
        "{}{PYTHON_ZYGOTE}\n{PYTHON_AGENT}",
        preload_prelude(ZYGOTE_PRELOAD, template)
    );
    policy.files.push(agent_file("/airlock/zygote.py", &script));
    policy.files.push(File {
        target: PathBuf::from("/airlock/zygote.so"),
        contents: ZYGOTE_LIBRARY.to_vec(),
        mode: 0o555,
    });
    if template.result_channel {
        crate::channel::announce(&mut policy, 4);
    }
    let command = Command::new(&interp.executable).arg("/airlock/zygote.py");
    Ok(PoolZygote {
        zygote: Zygote::start(&policy, command, ZYGOTE_READY_TIMEOUT)?,
        env,
    })
}

impl Warm {
    /// Forks a child of `zygote` for requests like `template` (which the zygote was started
    /// for).
    pub(crate) fn fork(
        zygote: &Arc<PoolZygote>,
        template: &RunRequest,
    ) -> Result<Warm, RuntimeError> {
        let (writer, channel) = match template.result_channel {
            true => crate::channel::pipe().map(|(w, ch)| (Some(w), Some(ch)))?,
            false => (None, None),
        };
        let mut child = zygote.zygote.fork(writer)?;
        let control = child.take_control().ok_or_else(|| {
            RuntimeError::host(
                "forking a zygote child",
                std::io::Error::other("no control socket"),
            )
        })?;
        Ok(Warm {
            born: child.born(),
            host: Host::Forked(child, Arc::clone(zygote)),
            control: UnixStream::from(control),
            channel,
            env: zygote.env.clone(),
        })
    }

    /// Builds a sandbox for requests like `template` (its code is ignored) and starts the
    /// language's agent in it.
    pub(crate) fn start(template: &RunRequest) -> Result<Warm, RuntimeError> {
        let PoolSetup {
            interp,
            mut policy,
            env,
        } = pool_setup(template)?;
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| RuntimeError::host("creating a control channel", e))?;
        // A preload's CPU time is its own: the run's limit counts from its end (below).
        let mut run_cpu = None;
        let command = match template.language {
            Language::Python => {
                // This sandbox serves one run: importing its packages here is the run's own
                // business, done before the run asks.
                let agent = match template.packages.is_empty() {
                    true => PYTHON_AGENT.to_string(),
                    false => {
                        let cpu = policy.limits.cpu_rlimit();
                        run_cpu = Some(cpu);
                        policy.limits.cpu_seconds = cpu + READY_TIMEOUT.as_secs();
                        format!(
                            "{}_airlock_preload(_AIRLOCK_PRELOAD, _AIRLOCK_PRELOAD_DISTS, {})\n{PYTHON_AGENT}",
                            preload_prelude(&[], template),
                            pool_threads(policy.limits.cpu_millis)
                        )
                    }
                };
                policy.files.push(agent_file("/airlock/agent.py", &agent));
                Command::new(&interp.executable).arg("/airlock/agent.py")
            }
            Language::JavaScript => {
                policy
                    .files
                    .push(agent_file("/airlock/agent.js", NODE_AGENT));
                node(interp, template).arg("/airlock/agent.js")
            }
            Language::Shell => Command::new(&interp.executable).args(["-c", SHELL_AGENT]),
        };
        let command = command.pass_fd(theirs.into());
        let (command, channel) = match template.result_channel {
            true => crate::channel::open(&mut policy, command, 4).map(|(c, ch)| (c, Some(ch)))?,
            false => (command, None),
        };
        let mut sandbox = Sandbox::spawn(&policy, &command)?;
        drop(command); // our copies of the sandbox's ends: EOF must come from the sandbox
        // Ready only once the interpreter is up and waiting: a run handed this sandbox must
        // not wait for the interpreter to start.
        await_ready(&ours, "starting a pre-started interpreter")?;
        if let Some(seconds) = run_cpu {
            sandbox.restart_cpu_limit(seconds)?;
        }
        // The interpreter's start and the preload are not the run's CPU time.
        sandbox.exclude_cpu_so_far();
        Ok(Warm {
            host: Host::Sandbox(sandbox),
            control: ours,
            channel,
            env,
            born: Instant::now(),
        })
    }

    /// Builds a sandbox for requests like `template` whose program restores `image` (see
    /// `restore`): its interpreter resumes with the packages imported, waiting for its code.
    /// An error says whether the image is at fault (`Restored::Failed`): the restored
    /// interpreter never said it was ready.
    pub(crate) fn restore(
        template: &RunRequest,
        image: &crate::restore::PoolImage,
    ) -> Result<Warm, NotRestored> {
        let PoolSetup {
            mut policy, env, ..
        } = pool_setup(template)?;
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| RuntimeError::host("creating a control channel", e))?;
        let command = crate::restore::restorer(&mut policy, template).pass_fd(theirs.into());
        let (command, channel) = match template.result_channel {
            true => crate::channel::open(&mut policy, command, 4).map(|(c, ch)| (c, Some(ch)))?,
            false => (command, None),
        };
        let command = command.pass_fd(image.reader()?);
        let mut sandbox = Sandbox::spawn(&policy, &command)?;
        drop(command);
        // The restorer gone without a word is the image's fault; a timeout (a loaded machine)
        // is not.
        read_ready(&ours).map_err(|e| {
            let eof = e.kind() == std::io::ErrorKind::UnexpectedEof;
            let e = RuntimeError::host("restoring a frozen interpreter", e);
            if eof {
                NotRestored::Image(e)
            } else {
                NotRestored::Sandbox(e)
            }
        })?;
        sandbox.exclude_cpu_so_far();
        Ok(Warm {
            host: Host::Sandbox(sandbox),
            control: ours,
            channel,
            env: env.or_else(|| image.env.clone()),
            born: Instant::now(),
        })
    }

    pub(crate) fn alive(&self) -> bool {
        match &self.host {
            Host::Sandbox(s) => !s.has_exited(),
            Host::Forked(c, _) => c.alive(),
        }
    }

    pub(crate) fn killer(&self) -> Killer {
        match &self.host {
            Host::Sandbox(s) => s.killer(),
            Host::Forked(c, _) => c.killer(),
        }
    }

    /// Delivers the code and waits for the run to end. Fails without running anything if the
    /// sandbox died while it waited (the caller may then use another); once the code is
    /// delivered, whatever happens is this run's result and it is never re-run.
    pub(crate) fn run(
        mut self,
        req: &RunRequest,
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<RunResult, Undelivered> {
        if !self.alive() {
            return Err(Undelivered);
        }
        let framed = match req.language {
            Language::Shell => self.control.write_all(&req.code),
            // One write: the agent wakes once, for the whole frame.
            _ => {
                let mut frame = Vec::with_capacity(8 + req.code.len());
                frame.extend_from_slice(&(req.code.len() as u64).to_be_bytes());
                frame.extend_from_slice(&req.code);
                self.control.write_all(&frame)
            }
        };
        if framed.is_err() {
            return Err(Undelivered);
        }
        drop(self.control); // EOF for the shell agent; nothing more is ever sent
        let (waited, pool) = match self.host {
            Host::Sandbox(mut sandbox) => {
                sandbox.start_clock();
                (sandbox.wait(on_output), "warm")
            }
            Host::Forked(mut child, zygote) => {
                child.start_clock();
                let waited = child.wait(on_output);
                drop(zygote);
                (waited, "warm")
            }
        };
        let mut result = match waited {
            Ok(outcome) => result_from(req, outcome, pool),
            Err(e) => return Ok(sandbox_failure(e.to_string())),
        };
        if let Some(ch) = self.channel {
            match ch.finish() {
                Ok(bytes) => result.result = Some(bytes),
                Err(e) => return Ok(sandbox_failure(e.to_string())),
            }
        }
        if let Some(env) = &self.env {
            env.annotate_pooled(&mut result);
        }
        Ok(result)
    }
}

/// Why a sandbox was not restored from an image.
#[derive(Debug)]
pub(crate) enum NotRestored {
    /// The sandbox was built, but the interpreter did not come back from the image: the
    /// pool should not restore it again.
    Image(RuntimeError),
    /// Building the sandbox failed, as it could for any sandbox.
    Sandbox(RuntimeError),
}

impl<E: Into<RuntimeError>> From<E> for NotRestored {
    fn from(e: E) -> NotRestored {
        NotRestored::Sandbox(e.into())
    }
}

impl std::fmt::Display for NotRestored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotRestored::Image(e) | NotRestored::Sandbox(e) => e.fmt(f),
        }
    }
}

/// Waits (up to `READY_TIMEOUT`) for the agent behind `control` to say it is ready for its code.
pub(crate) fn await_ready(control: &UnixStream, what: &str) -> Result<(), RuntimeError> {
    read_ready(control).map_err(|e| RuntimeError::host(what, e))
}

fn read_ready(control: &UnixStream) -> std::io::Result<()> {
    let mut ready = [0u8; 1];
    control.set_read_timeout(Some(READY_TIMEOUT))?;
    std::io::Read::read_exact(&mut &*control, &mut ready)?;
    control.set_read_timeout(None)?;
    if ready != *b"R" {
        return Err(std::io::Error::other("unexpected readiness byte"));
    }
    Ok(())
}

/// The code never reached the sandbox: nothing of the run happened.
#[derive(Debug)]
pub(crate) struct Undelivered;

/// Supervising a delivered run failed (the host side, not the program): report it as the run's
/// result rather than retrying, since the code may have run.
fn sandbox_failure(message: String) -> RunResult {
    RunResult {
        status: crate::result::Status::SandboxError,
        exit_code: None,
        signal: None,
        stdout: String::new(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        error: Some(crate::diagnose::ErrorInfo::new("SandboxError", message)),
        timing: Default::default(),
        usage: Default::default(),
        pool: "warm".into(),
        environment: None,
        environment_cached: None,
        stdout_bytes: Vec::new(),
        stderr_bytes: Vec::new(),
        result: None,
    }
}

pub(crate) fn agent_file(path: &str, text: &str) -> File {
    File {
        target: PathBuf::from(path),
        contents: text.as_bytes().to_vec(),
        mode: 0o644,
    }
}

fn node(interp: &Interpreter, req: &RunRequest) -> Command {
    Command::new(&interp.executable).arg(crate::run::node_heap_flag(req.memory_mb))
}
