//! Pre-started, use-once sandboxes: the interpreter is already running inside a fully built
//! sandbox, waiting for its code on a private control descriptor. Each serves exactly one run
//! and is then destroyed, so no run ever sees another's state; the pool only moves the cost of
//! building the sandbox and starting the interpreter off the run's critical path.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use jail::{Command, File, Killer, Sandbox, Stream};

use crate::diagnose::Language;
use crate::error::RuntimeError;
use crate::language::{self, Interpreter};
use crate::request::RunRequest;
use crate::result::RunResult;
use crate::run::{policy_for, result_from};

const PYTHON_AGENT: &str = include_str!("agents/agent.py");
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
    // Packages and the allowlist proxy are set up per run on the cold path only, for now.
    let plain = req.packages.is_empty()
        && crate::network::effective_mode(req) != crate::request::NetworkMode::Allowlist;
    plain && (req.language != Language::Shell || req.code.len() <= SHELL_WARM_MAX)
}

/// A sandbox whose interpreter waits for its one run.
pub(crate) struct Warm {
    sandbox: Sandbox,
    control: UnixStream,
    channel: Option<crate::channel::ResultChannel>,
    pub(crate) born: Instant,
}

impl Warm {
    /// Builds a sandbox for requests like `template` (its code is ignored) and starts the
    /// language's agent in it.
    pub(crate) fn start(template: &RunRequest) -> Result<Warm, RuntimeError> {
        let interp = language::locate(template.language)?;
        let (mut policy, _) = policy_for(template, interp);
        let code_path = PathBuf::from(language::code_path(template.language));
        policy.files.retain(|f| f.target != code_path);
        let (ours, theirs) = UnixStream::pair().map_err(|e| {
            RuntimeError::Sandbox(jail::JailError::Host {
                what: "creating a control channel".into(),
                source: e,
            })
        })?;
        let command = match template.language {
            Language::Python => {
                policy
                    .files
                    .push(agent_file("/airlock/agent.py", PYTHON_AGENT));
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
        let sandbox = Sandbox::spawn(&policy, &command)?;
        drop(command); // our copies of the sandbox's ends: EOF must come from the sandbox
        // Ready only once the interpreter is up and waiting: a run handed this sandbox must
        // not wait for the interpreter to start.
        let mut ready = [0u8; 1];
        let said_ready = ours
            .set_read_timeout(Some(READY_TIMEOUT))
            .and_then(|()| std::io::Read::read_exact(&mut &ours, &mut ready))
            .and_then(|()| ours.set_read_timeout(None));
        if said_ready.is_err() || ready != *b"R" {
            return Err(RuntimeError::Sandbox(jail::JailError::Host {
                what: "starting a pre-started interpreter".into(),
                source: said_ready
                    .err()
                    .unwrap_or_else(|| std::io::Error::other("unexpected readiness byte")),
            }));
        }
        Ok(Warm {
            sandbox,
            control: ours,
            channel,
            born: Instant::now(),
        })
    }

    pub(crate) fn alive(&self) -> bool {
        !self.sandbox.has_exited()
    }

    pub(crate) fn killer(&self) -> Killer {
        self.sandbox.killer()
    }

    /// Delivers the code and waits for the run to end. Fails without running anything if the
    /// sandbox died while it waited (the caller may then use another); once the code is
    /// delivered, whatever happens is this run's result and it is never re-run.
    pub(crate) fn run(
        mut self,
        req: &RunRequest,
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<RunResult, Undelivered> {
        if self.sandbox.has_exited() {
            return Err(Undelivered);
        }
        let framed = match req.language {
            Language::Shell => self.control.write_all(&req.code),
            _ => self
                .control
                .write_all(&(req.code.len() as u64).to_be_bytes())
                .and_then(|()| self.control.write_all(&req.code)),
        };
        if framed.is_err() {
            return Err(Undelivered);
        }
        self.sandbox.start_clock();
        drop(self.control); // EOF for the shell agent; nothing more is ever sent
        let mut result = match self.sandbox.wait(on_output) {
            Ok(outcome) => result_from(req, outcome, "warm"),
            Err(e) => return Ok(sandbox_failure(e.to_string())),
        };
        if let Some(ch) = self.channel {
            match ch.finish() {
                Ok(bytes) => result.result = Some(bytes),
                Err(e) => return Ok(sandbox_failure(e.to_string())),
            }
        }
        Ok(result)
    }
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
        error: Some(crate::diagnose::ErrorInfo {
            kind: "SandboxError".into(),
            message,
            line: None,
            file: None,
            hint: None,
            traceback: None,
        }),
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

fn agent_file(path: &str, text: &str) -> File {
    File {
        target: PathBuf::from(path),
        contents: text.as_bytes().to_vec(),
        mode: 0o644,
    }
}

fn node(interp: &Interpreter, req: &RunRequest) -> Command {
    Command::new(&interp.executable).arg(crate::run::node_heap_flag(req.memory_mb))
}
