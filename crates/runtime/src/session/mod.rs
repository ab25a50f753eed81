//! Sessions (DESIGN §4): a sandbox that lives across calls. Its Python interpreter keeps
//! variables, imports, files and the working directory from one call to the next; calls run
//! one at a time; it is closed when asked, after an idle timeout, at its maximum lifetime, or
//! when a call ends it (a timeout, the memory limit, the interpreter exiting).
//!
//! Each call gets fresh stdout and stderr pipes, passed to the agent with the code, so its
//! output is its own even while programs an earlier call started keep writing. The agent is
//! inside the sandbox with the call's code, so every frame it sends is untrusted: bounded,
//! checked, and any surprise closes the session. The usage the call reports is the kernel's,
//! read from outside.

use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use jail::{Command, Killer, Sandbox};
use tokio::net::UnixStream;
use tokio::sync::watch;

use crate::diagnose::Language;
use crate::error::RuntimeError;
use crate::network::{self, NetworkSetup};
use crate::request::RunRequest;
use crate::result::RunResult;
use crate::scheduler::OnOutput;
use crate::warm;

mod call;
mod frame;

use call::{Call, CallFailed};
use frame::{FrameError, SendError, read_frame, send_frame};

const PYTHON_SESSION: &str = concat!(
    include_str!("../agents/common.py"),
    include_str!("../agents/session.py")
);

/// The largest file `write_file` sends or `read_file` accepts (the agent refuses larger too).
pub const SESSION_FILE_LIMIT: usize = 64 << 20;

/// The longest reason the agent may give for a failed file operation.
const FILE_ERROR_LIMIT: usize = 4096;

/// How long a session waits for its sandbox to end after being killed.
pub(crate) const END_GRACE: Duration = Duration::from_secs(10);

/// How long a call waits, once the agent's end of the control socket closed, for the sandbox
/// to end by itself before calling it broken.
const AGENT_GONE: Duration = Duration::from_secs(1);

/// How long a session lives, counted by the host.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// Closed after this long without a call or file operation.
    pub idle_timeout: Duration,
    /// Closed this long after it started, whatever it is doing (the sandbox's wall clock).
    pub max_lifetime: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            idle_timeout: Duration::from_secs(300),
            max_lifetime: Duration::from_secs(3600),
        }
    }
}

impl SessionOptions {
    fn validate(&self) -> Result<(), RuntimeError> {
        let life = self.max_lifetime.as_secs_f64();
        if !(1.0..=86_400.0).contains(&life) {
            return Err(RuntimeError::invalid(
                "max_lifetime",
                format!("{life} s is outside 1–86400 s"),
            ));
        }
        let idle = self.idle_timeout.as_secs_f64();
        if !(0.1..=life).contains(&idle) {
            return Err(RuntimeError::invalid(
                "idle_timeout",
                format!("{idle} s is outside 0.1 s – max_lifetime ({life} s)"),
            ));
        }
        Ok(())
    }
}

/// A live sandbox serving calls one at a time. Cheap to clone; every clone is the same
/// session. Dropping the last clone kills it.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

struct Shared {
    /// The session's shape: language, packages, limits, network; its `timeout` is each call's
    /// default.
    template: RunRequest,
    /// The agent's control socket, held for the length of a call; `None` once closed.
    control: tokio::sync::Mutex<Option<UnixStream>>,
    killer: Killer,
    /// The sandbox's init and its program (the interpreter) on the host, for reading their
    /// usage without a cgroup.
    pid: i32,
    program: i32,
    /// Reads the sandbox's cgroup, which its watcher thread owns.
    meter: Option<jail::cgroup::Meter>,
    /// Set once the sandbox has ended, with how.
    ended: watch::Receiver<Option<jail::Outcome>>,
    last_used: Mutex<Instant>,
    /// Why the session was closed, for the calls that come after.
    closed: Mutex<Option<String>>,
    /// The packages' environment key, for every call's result.
    environment: Option<String>,
    /// `SessionOptions::max_lifetime`.
    lifetime: Duration,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.killer.kill();
    }
}

impl Session {
    /// Starts a session shaped like `template` (its code is ignored). Python only for now.
    /// `starting` is held until the sandbox is either handed over or gone, and given back.
    pub(crate) async fn start<G: Send + 'static>(
        template: RunRequest,
        options: SessionOptions,
        starting: G,
    ) -> Result<(Session, G), RuntimeError> {
        template.validate_shape()?;
        options.validate()?;
        if template.language != Language::Python {
            return Err(RuntimeError::invalid(
                "language",
                format!(
                    "sessions run Python only so far, not {:?}; use a run per call instead",
                    template.language
                ),
            ));
        }
        if template.result_channel {
            return Err(RuntimeError::invalid(
                "result_channel",
                "a session's calls return output, not values",
            ));
        }
        let template = RunRequest {
            code: Vec::new(),
            ..template
        };
        let shape = template.clone();
        // Returned with the sandbox, so that an abandoned start drops the sandbox (killing it,
        // removing its cgroup) before `starting`.
        let (spawned, starting) =
            tokio::task::spawn_blocking(move || (spawn(&shape, options.max_lifetime), starting))
                .await
                .map_err(|e| worker_failed("starting a session", e))?;
        let (control, sandbox) = spawned?;
        // Failing here drops the sandbox, which kills it.
        control
            .set_nonblocking(true)
            .map_err(|e| RuntimeError::host("setting up a session's control socket", e))?;
        let control = UnixStream::from_std(control)
            .map_err(|e| RuntimeError::host("setting up a session's control socket", e))?;
        let (tx, ended) = watch::channel(None);
        let (pid, killer) = (sandbox.sandbox.pid(), sandbox.sandbox.killer());
        let program = sandbox.sandbox.program_pid().unwrap_or(pid);
        let environment = sandbox.env.as_ref().map(|e| e.key.clone());
        let meter = sandbox.sandbox.meter();
        // The sandbox is watched (and its lifetime enforced) on a thread of its own until it
        // ends; what it writes outside a call goes nowhere.
        std::thread::Builder::new()
            .name("airlock-session".into())
            .spawn(move || {
                let Started {
                    sandbox,
                    proxy,
                    env,
                } = sandbox;
                let outcome = sandbox.wait(|_, _| {});
                if let Some(p) = proxy {
                    p.stop();
                }
                drop(env);
                // How it ended, without what the agent wrote outside calls (kept by trackers).
                let outcome = jail::Outcome {
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    ..outcome.unwrap_or_default()
                };
                let _ = tx.send(Some(outcome));
            })
            .map_err(|e| RuntimeError::host("starting a session's watcher", e))?;
        let shared = Arc::new(Shared {
            template,
            control: tokio::sync::Mutex::new(Some(control)),
            killer,
            pid,
            program,
            meter,
            ended,
            last_used: Mutex::new(Instant::now()),
            closed: Mutex::new(None),
            environment,
            lifetime: options.max_lifetime,
        });
        tokio::spawn(close_when_idle(
            Arc::downgrade(&shared),
            options.idle_timeout,
        ));
        Ok((Session { shared }, starting))
    }

    /// Runs `code` in the session (after any call already running), with the session's timeout
    /// unless `timeout` is given, streaming its output to `on_output`. A call that times out,
    /// hits the memory limit or ends the interpreter ends the session too; its result says so.
    pub async fn run(
        &self,
        code: impl Into<Vec<u8>>,
        timeout: Option<Duration>,
        on_output: OnOutput,
    ) -> Result<RunResult, RuntimeError> {
        let s = &self.shared;
        let req = RunRequest {
            code: code.into(),
            timeout: timeout.unwrap_or(s.template.timeout),
            ..s.template.clone()
        };
        req.validate()?;
        let mut guard = s.control.lock().await;
        let control = self.usable(&mut guard)?;
        s.touch();
        let cancelled = CloseIfCancelled(Some(s));
        let call = Call::run(s, control, &req, on_output).await;
        cancelled.disarm();
        s.touch();
        let result = match call {
            Ok(r) => r,
            Err(CallFailed::NotSent(e)) => return Err(e),
            Err(CallFailed::Fatal(e)) => {
                self.end(&e.to_string()).await;
                return Err(e);
            }
        };
        let ended = s.ended.borrow().as_ref().map(|o| o.timed_out);
        if ended.is_some()
            || result.status != crate::Status::Ok && result.status != crate::Status::Error
        {
            let why = match ended {
                Some(true) => format!(
                    "it reached its max_lifetime of {} s",
                    s.lifetime.as_secs_f64()
                ),
                Some(false) => format!(
                    "its sandbox ended during a call, with status {:?}",
                    result.status
                ),
                None => format!("a call ended with status {:?}", result.status),
            };
            self.end(&why).await;
        }
        Ok(result)
    }

    /// Writes `contents` to `path` in the session (relative paths are under `/workspace`;
    /// missing directories are made).
    pub async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), RuntimeError> {
        check_path(path)?;
        if contents.len() > SESSION_FILE_LIMIT {
            return Err(RuntimeError::invalid(
                "contents",
                format!(
                    "is {} bytes; the limit is {SESSION_FILE_LIMIT}",
                    contents.len()
                ),
            ));
        }
        let mut payload = Vec::with_capacity(path.len() + 1 + contents.len());
        payload.extend_from_slice(path.as_bytes());
        payload.push(0);
        payload.extend_from_slice(contents);
        self.file_op(b'W', &payload, path).await.map(drop)
    }

    /// Reads the file at `path` in the session (relative paths are under `/workspace`).
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, RuntimeError> {
        check_path(path)?;
        self.file_op(b'F', path.as_bytes(), path).await
    }

    /// Ends the session at once (its sandbox is killed, later calls are refused) without
    /// waiting for its cleanup; `close` also waits.
    pub fn close_now(&self) {
        self.shared.close("it was closed");
    }

    /// Ends the session and waits until nothing of it remains. Closing twice does nothing.
    pub async fn close(&self) {
        // Killed first: a call holding the control socket then ends at once.
        self.close_now();
        *self.shared.control.lock().await = None;
        self.shared.wait_ended().await;
    }

    /// Whether calls can still be made.
    pub fn is_open(&self) -> bool {
        self.shared.closed_why().is_none() && self.shared.ended.borrow().is_none()
    }

    async fn file_op(&self, kind: u8, payload: &[u8], path: &str) -> Result<Vec<u8>, RuntimeError> {
        let s = &self.shared;
        let mut guard = s.control.lock().await;
        let control = self.usable(&mut guard)?;
        s.touch();
        let cancelled = CloseIfCancelled(Some(s));
        let wanted = if kind == b'F' { b'D' } else { b'K' };
        let exchange = async {
            send_frame(control, kind, payload, &[])
                .await
                .map_err(|e| match e {
                    SendError::TooManyInFlight(e) => FrameError::Closed(e.to_string()),
                    SendError::Failed(why) => FrameError::Closed(why),
                })?;
            // Only what this operation can be answered with, each bounded for its kind.
            read_frame(control, |k| match k {
                b'D' if wanted == b'D' => SESSION_FILE_LIMIT,
                b'E' => FILE_ERROR_LIMIT,
                _ => 0,
            })
            .await
        };
        let mut ended = s.ended.clone();
        let answer = tokio::select! {
            a = exchange => a,
            _ = tokio::time::sleep(s.template.timeout) => Err(FrameError::Bad(format!(
                "the agent did not answer within {} s (the session's timeout)",
                s.template.timeout.as_secs_f64()
            ))),
            _ = ended.wait_for(Option::is_some) => Err(FrameError::Closed(String::new())),
        };
        cancelled.disarm();
        s.touch();
        let why = match answer {
            Ok((k, data)) if k == wanted => return Ok(data),
            Ok((b'E', why)) => {
                return Err(RuntimeError::invalid(
                    "path",
                    format!("{path:?}: {}", String::from_utf8_lossy(&why)),
                ));
            }
            Ok((other, _)) => format!(
                "the agent answered with an unexpected frame ({}): its code wrote to the \
                 session's control channel",
                other.escape_ascii()
            ),
            Err(FrameError::Bad(why)) => why,
            // The agent's end closed: most often its sandbox ended (the memory limit, the
            // lifetime), and how is the story.
            Err(FrameError::Closed(why)) => match s.end_after_agent_closed().await {
                Some(o) if o.memory_limit => format!(
                    "its sandbox reached its memory limit of {} MiB during the file \
                         operation on {path:?} (the file is held in the session's memory: \
                         raise memory_mb)",
                    s.template.memory_mb
                ),
                Some(o) if o.timed_out => format!(
                    "it reached its max_lifetime of {} s",
                    s.lifetime.as_secs_f64()
                ),
                Some(_) => format!("its sandbox ended during the file operation on {path:?}"),
                None => stopped_answering(&why),
            },
        };
        // The session is closed from here on: `usable` refuses it to every later caller.
        self.end(&why).await;
        Err(self.closed_error())
    }

    /// Marks the session closed (keeping the first reason), kills its sandbox and waits for it
    /// to be gone.
    async fn end(&self, why: &str) {
        self.shared.close(why);
        self.shared.wait_ended().await;
    }

    /// The control socket, if the session can still take a call.
    fn usable<'g>(
        &self,
        control: &'g mut Option<UnixStream>,
    ) -> Result<&'g mut UnixStream, RuntimeError> {
        if !self.is_open() {
            *control = None;
        }
        control.as_mut().ok_or_else(|| self.closed_error())
    }

    fn closed_error(&self) -> RuntimeError {
        RuntimeError::SessionClosed {
            why: self
                .shared
                .closed_why()
                .unwrap_or_else(|| "its sandbox ended".into()),
        }
    }

    /// What the scheduler keeps of the session: enough to end it and to wait for its sandbox
    /// to be gone, even after every handle was dropped.
    pub(crate) fn tracker(&self) -> Tracker {
        Tracker {
            shared: Arc::downgrade(&self.shared),
            ended: self.shared.ended.clone(),
        }
    }
}

/// A session as its scheduler sees it.
pub(crate) struct Tracker {
    shared: Weak<Shared>,
    ended: watch::Receiver<Option<jail::Outcome>>,
}

impl Tracker {
    /// Its sandbox has ended and been cleaned up.
    pub(crate) fn is_over(&self) -> bool {
        self.ended.borrow().is_some()
    }

    /// Closes the session (killing its sandbox) if it is still open.
    pub(crate) fn close(&self, why: &str) {
        if let Some(s) = self.shared.upgrade() {
            s.close(why);
        }
    }

    /// Waits (up to a grace) until nothing of its sandbox remains: also for a session whose
    /// handles were all dropped (dropping kills, but its watcher may still be cleaning up).
    pub(crate) async fn wait_over(&self) {
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(END_GRACE, ended.wait_for(Option::is_some)).await;
    }
}

impl Shared {
    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn closed_why(&self) -> Option<String> {
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records why (the first reason wins) and kills the sandbox.
    fn close(&self, why: &str) {
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| why.to_owned());
        self.killer.kill();
    }

    /// Waits (up to a grace) until the sandbox has ended and been cleaned up.
    async fn wait_ended(&self) {
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(END_GRACE, ended.wait_for(Option::is_some)).await;
    }

    fn has_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }

    /// Once the agent's end of the control socket has closed: how the sandbox ended, waiting up
    /// to [`AGENT_GONE`] for it to end by itself (`None`: it lives on, so the agent broke).
    async fn end_after_agent_closed(&self) -> Option<jail::Outcome> {
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(AGENT_GONE, ended.wait_for(Option::is_some)).await;
        self.ended.borrow().clone()
    }
}

/// Why a session whose agent closed its end while the sandbox lives on is broken.
fn stopped_answering(why: &str) -> String {
    format!("the session's agent stopped answering ({why}) while its sandbox lives on")
}

/// Closes the session if the call holding it is dropped before it ends (its task cancelled):
/// the agent would still be running the call, and its answer would arrive during the next one.
struct CloseIfCancelled<'a>(Option<&'a Shared>);

impl CloseIfCancelled<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CloseIfCancelled<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.close("a call was cancelled before it ended");
        }
    }
}

/// A started session's sandbox and what lives as long as it does.
struct Started {
    sandbox: Sandbox,
    proxy: Option<network::Proxy>,
    env: Option<Arc<crate::environment::Environment>>,
}

/// Builds the session's sandbox and waits until its agent is ready.
fn spawn(
    template: &RunRequest,
    lifetime: Duration,
) -> Result<(StdUnixStream, Started), RuntimeError> {
    let warm::PoolSetup {
        interp,
        mut policy,
        env,
    } = warm::pool_setup(template)?;
    policy.limits.wall_timeout = lifetime;
    let net = NetworkSetup::for_request(template)?;
    net.apply(&mut policy);
    policy
        .files
        .push(warm::agent_file("/airlock/session.py", PYTHON_SESSION));
    let (ours, theirs) = StdUnixStream::pair()
        .map_err(|e| RuntimeError::host("creating a session's control channel", e))?;
    let command = Command::new(&interp.executable)
        .arg("/airlock/session.py")
        .pass_fd(theirs.into());
    let mut sandbox = Sandbox::spawn(&policy, &command)?;
    drop(command); // our copy of the sandbox's end: EOF must come from the sandbox
    let proxy = net.start(&mut sandbox)?;
    warm::await_ready(&ours, "starting a session's interpreter")?;
    Ok((
        ours,
        Started {
            sandbox,
            proxy,
            env,
        },
    ))
}

/// Closes the session once it has had no call for `idle` (never during a call).
async fn close_when_idle(session: Weak<Shared>, idle: Duration) {
    loop {
        let wait = {
            let Some(s) = session.upgrade() else { return };
            if s.has_ended() {
                return;
            }
            let quiet = s
                .last_used
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed();
            if quiet >= idle {
                if let Ok(mut control) = s.control.try_lock() {
                    *control = None;
                    s.close(&format!("it was idle for {idle:?}"));
                    return;
                }
                Duration::from_millis(100)
            } else {
                idle - quiet
            }
        };
        tokio::time::sleep(wait).await;
    }
}

fn check_path(path: &str) -> Result<(), RuntimeError> {
    if path.is_empty() || path.len() > 4096 || path.contains('\0') {
        return Err(RuntimeError::invalid(
            "path",
            "must be 1–4096 bytes with no NUL; relative paths are under /workspace",
        ));
    }
    Ok(())
}

fn worker_failed(what: &str, e: tokio::task::JoinError) -> RuntimeError {
    RuntimeError::host(what, std::io::Error::other(e.to_string()))
}
