//! `airlock._airlock`: the Rust runtime embedded in CPython.
//!
//! This is the thin, private layer under the `airlock` Python package: it turns Python
//! arguments into a [`RunRequest`], runs it on a process-wide tokio runtime through a
//! [`Scheduler`] (with its warm pools), and hands the [`RunResult`] back as a plain `dict`.
//! Everything a user sees — `@sandbox`, `Scheduler`, `Result`, the exceptions — is written in
//! Python on top of it (`python/airlock/`).
//!
//! Rules this module keeps:
//! - The GIL is never held while waiting for a run: blocking calls detach from the
//!   interpreter (waking every 50 ms to let Ctrl-C through), async calls run on the tokio
//!   runtime and report back through a Python callback.
//! - No panic crosses into Python: every failure is a Python exception of `airlock._errors`,
//!   built by `_errors._from_engine` from the runtime error's stable `kind()`.
//! - Output callbacks are called with the GIL held, from the worker thread that drains the
//!   sandbox's pipes, in the order the chunks arrived.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict};
use runtime::{
    ErrorInfo, MountSpec, NetworkMode, OnOutput, RunRequest, RunResult, RuntimeError, Scheduler,
    SchedulerConfig, Status, Stream,
};
use tokio::runtime::Runtime;

mod session;

/// How often a blocking wait wakes up to let Python handle signals (Ctrl-C).
const SIGNAL_POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// Process-wide state

/// The tokio runtime all runs are driven on, with the pid that created it: a forked child
/// inherits the memory but not the threads, so it must not use it.
struct Shared {
    pid: u32,
    runtime: Arc<Runtime>,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);
/// Every engine's scheduler, so `shutdown()` can empty all pools at interpreter exit.
static ENGINES: Mutex<Vec<Weak<Mutex<Option<Scheduler>>>>> = Mutex::new(Vec::new());
/// The engine `@sandbox`, `airlock.run` and `Scheduler()` without a config share.
static DEFAULT_ENGINE: PyOnceLock<Py<Engine>> = PyOnceLock::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn forked_error(py: Python<'_>) -> PyErr {
    make_error(
        py,
        "SandboxError",
        "this process was forked from one that already used airlock; airlock cannot be used \
         in such a child (use the `spawn` start method of multiprocessing, or import and use \
         airlock only in the children)",
        None,
    )
}

fn runtime(py: Python<'_>) -> PyResult<Arc<Runtime>> {
    let mut shared = lock(&SHARED);
    if let Some(s) = shared.as_ref() {
        if s.pid != std::process::id() {
            return Err(forked_error(py));
        }
        return Ok(Arc::clone(&s.runtime));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("airlock-tokio")
        .enable_all()
        .build()
        .map_err(|e| {
            make_error(
                py,
                "SandboxInfrastructureError",
                &format!("starting airlock's async runtime: {e}"),
                None,
            )
        })?;
    let rt = Arc::new(rt);
    *shared = Some(Shared {
        pid: std::process::id(),
        runtime: Arc::clone(&rt),
    });
    Ok(rt)
}

// ---------------------------------------------------------------------------------------------
// Errors

/// An instance of `airlock._errors.<class>` for a failure of the engine itself. Falls back to
/// `RuntimeError` only if the Python package is broken (it cannot be imported).
fn make_error(py: Python<'_>, kind: &str, message: &str, field: Option<&str>) -> PyErr {
    let built = py
        .import("airlock._errors")
        .and_then(|m| m.getattr("_from_engine"))
        .and_then(|f| f.call1((kind, message, field)));
    match built {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

fn engine_error(py: Python<'_>, e: &RuntimeError) -> PyErr {
    let field = match e {
        RuntimeError::InvalidInput { field, .. } => Some(field.as_str()),
        _ => None,
    };
    make_error(py, e.kind(), &e.to_string(), field)
}

fn invalid(py: Python<'_>, field: &str, why: impl std::fmt::Display) -> PyErr {
    make_error(
        py,
        "InvalidInput",
        &format!("invalid `{field}`: {why}"),
        Some(field),
    )
}

// ---------------------------------------------------------------------------------------------
// Requests

/// The shape of a run: language, limits, network, environment, packages, mounts. The code
/// and input files are given per run, so one `Request` serves every call of a decorated
/// function. Validated when it is made: a bad field raises `InvalidRequestError` at once.
#[pyclass(frozen, module = "airlock._airlock")]
struct Request {
    inner: RunRequest,
}

#[pymethods]
impl Request {
    #[new]
    #[pyo3(signature = (
        *,
        language = "python",
        timeout = 30.0,
        memory_mb = 512,
        network = "none",
        allowed_domains = None,
        env = None,
        packages = None,
        trust_packages = false,
        mounts = None,
        result_channel = false,
        pids = None,
        cpus = None,
        stdout_limit = None,
        stderr_limit = None,
        tmp_mb = None,
        allow_private = false,
        weak_limits = false,
        workdir = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        language: &str,
        timeout: f64,
        memory_mb: u64,
        network: &str,
        allowed_domains: Option<Vec<String>>,
        env: Option<BTreeMap<String, String>>,
        packages: Option<Vec<String>>,
        trust_packages: bool,
        mounts: Option<Vec<(String, String, bool)>>,
        result_channel: bool,
        pids: Option<u64>,
        cpus: Option<f64>,
        stdout_limit: Option<usize>,
        stderr_limit: Option<usize>,
        tmp_mb: Option<u64>,
        allow_private: bool,
        weak_limits: bool,
        workdir: Option<PathBuf>,
    ) -> PyResult<Request> {
        let language = runtime::language::parse(language).ok_or_else(|| {
            invalid(
                py,
                "language",
                format!("{language:?} is not one of python, javascript, shell"),
            )
        })?;
        if !timeout.is_finite() || timeout <= 0.0 {
            return Err(invalid(
                py,
                "timeout",
                format!("{timeout} s is outside 0.1–3600 s"),
            ));
        }
        let network = NetworkMode::parse(network).map_err(|e| engine_error(py, &e))?;
        let allowed_domains = allowed_domains.unwrap_or_default();
        // Naming domains implies the allowlist (an empty list stays no network).
        let network = match (network, allowed_domains.is_empty()) {
            (NetworkMode::None, false) => NetworkMode::Allowlist,
            (n, _) => n,
        };
        let mut parsed_mounts = Vec::new();
        for (source, target, writable) in mounts.unwrap_or_default() {
            let src = runtime::resolve_host_path(std::path::Path::new(&source))
                .map_err(|why| invalid(py, "mounts", format!("source {source}: {why}")))?;
            let target = PathBuf::from(target);
            if !target.is_absolute() {
                return Err(invalid(
                    py,
                    "mounts",
                    format!(
                        "{} must be an absolute path inside the sandbox",
                        target.display()
                    ),
                ));
            }
            parsed_mounts.push(MountSpec {
                source: src,
                target,
                writable,
            });
        }
        let d = RunRequest::default();
        let inner = RunRequest {
            code: Vec::new(),
            language,
            timeout: Duration::from_secs_f64(timeout.min(1e6)),
            memory_mb,
            pids: pids.unwrap_or(d.pids),
            cpus: cpus.unwrap_or(d.cpus),
            network,
            allowed_domains,
            allow_private,
            mounts: parsed_mounts,
            workdir,
            env: env.unwrap_or_default(),
            stdout_limit: stdout_limit.unwrap_or(d.stdout_limit),
            stderr_limit: stderr_limit.unwrap_or(d.stderr_limit),
            tmp_mb: tmp_mb.unwrap_or(d.tmp_mb),
            weak_limits,
            packages: packages.unwrap_or_default(),
            trust_packages,
            result_channel,
            ..d
        };
        let probe = RunRequest {
            code: b"pass".to_vec(),
            ..inner.clone()
        };
        probe.validate().map_err(|e| engine_error(py, &e))?;
        Ok(Request { inner })
    }

    /// The language's name: "python", "javascript" or "shell".
    #[getter]
    fn language(&self) -> &'static str {
        runtime::language::name(self.inner.language)
    }

    /// The timeout in seconds.
    #[getter]
    fn timeout(&self) -> f64 {
        self.inner.timeout.as_secs_f64()
    }

    #[getter]
    fn memory_mb(&self) -> u64 {
        self.inner.memory_mb
    }

    /// Whether the run ends up with no network at all (`none`, or an empty allowlist).
    #[getter]
    fn network_none(&self) -> bool {
        match self.inner.network {
            NetworkMode::None => true,
            NetworkMode::Allowlist => self.inner.allowed_domains.is_empty(),
            NetworkMode::Host => false,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Request(language={:?}, timeout={}, memory_mb={}, network={:?}, packages={:?})",
            runtime::language::name(self.inner.language),
            self.inner.timeout.as_secs_f64(),
            self.inner.memory_mb,
            self.inner.network,
            self.inner.packages
        )
    }
}

impl Request {
    fn with(
        &self,
        code: Vec<u8>,
        files: Option<Vec<(String, Py<PyBytes>)>>,
        py: Python<'_>,
    ) -> RunRequest {
        let files = files
            .unwrap_or_default()
            .into_iter()
            .map(|(p, b)| (p, b.as_bytes(py).to_vec()))
            .collect();
        RunRequest {
            code,
            files,
            ..self.inner.clone()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Results

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Error => "error",
        Status::Timeout => "timeout",
        Status::MemoryLimit => "memory_limit",
        Status::Killed => "killed",
        Status::SandboxError => "sandbox_error",
    }
}

fn error_dict<'py>(py: Python<'py>, e: &ErrorInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("type", &e.kind)?;
    d.set_item("message", &e.message)?;
    d.set_item("line", e.line)?;
    d.set_item("file", &e.file)?;
    d.set_item("hint", &e.hint)?;
    d.set_item("traceback", &e.traceback)?;
    Ok(d)
}

/// DESIGN §8's fields as a dict (the Python `Result` is built from it), plus `result`: the
/// raw bytes of the result channel, or None.
fn result_dict(py: Python<'_>, r: RunResult) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("status", status_name(r.status))?;
    d.set_item("exit_code", r.exit_code)?;
    d.set_item("signal", r.signal)?;
    d.set_item("stdout", &r.stdout)?;
    d.set_item("stderr", &r.stderr)?;
    d.set_item("stdout_bytes", PyBytes::new(py, &r.stdout_bytes))?;
    d.set_item("stderr_bytes", PyBytes::new(py, &r.stderr_bytes))?;
    d.set_item("stdout_truncated", r.stdout_truncated)?;
    d.set_item("stderr_truncated", r.stderr_truncated)?;
    match &r.error {
        Some(e) => d.set_item("error", error_dict(py, e)?)?,
        None => d.set_item("error", py.None())?,
    }
    let t = PyDict::new(py);
    t.set_item("setup_ms", r.timing.setup_ms)?;
    t.set_item("boot_ms", r.timing.boot_ms)?;
    t.set_item("execute_ms", r.timing.execute_ms)?;
    t.set_item("total_ms", r.timing.total_ms)?;
    t.set_item("install_ms", r.timing.install_ms)?;
    d.set_item("timing", t)?;
    let u = PyDict::new(py);
    u.set_item("cpu_ms", r.usage.cpu_ms)?;
    u.set_item("memory_peak_bytes", r.usage.memory_peak_bytes)?;
    d.set_item("usage", u)?;
    d.set_item("pool", &r.pool)?;
    d.set_item("environment", &r.environment)?;
    d.set_item("environment_cached", r.environment_cached)?;
    match &r.result {
        Some(b) => d.set_item("result", PyBytes::new(py, b))?,
        None => d.set_item("result", py.None())?,
    }
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// Output callbacks

/// Calls `on_stdout` / `on_stderr` with each chunk (as `bytes`), GIL held. An exception in a
/// callback is reported like one in a `__del__` (`sys.unraisablehook`) and the run goes on:
/// the code is already running, and its result must not be lost.
fn output_sink(on_stdout: Option<Py<PyAny>>, on_stderr: Option<Py<PyAny>>) -> OnOutput {
    if on_stdout.is_none() && on_stderr.is_none() {
        return Box::new(|_, _| {});
    }
    Box::new(move |stream, bytes| {
        let cb = match stream {
            Stream::Stdout => &on_stdout,
            Stream::Stderr => &on_stderr,
        };
        if let Some(cb) = cb {
            // Not attachable: the interpreter is shutting down, and nobody is listening.
            let _ = Python::try_attach(|py| {
                if let Err(e) = cb.call1(py, (PyBytes::new(py, bytes),)) {
                    e.write_unraisable(py, Some(cb.bind(py)));
                }
            });
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Engines

/// A `Scheduler` with its warm pools. `Engine()` without arguments is a new scheduler with
/// DESIGN's defaults; `default_engine()` is the one the package shares.
#[pyclass(frozen, module = "airlock._airlock")]
struct Engine {
    scheduler: Arc<Mutex<Option<Scheduler>>>,
}

/// A run started by `Engine.submit`, or other work started on the engine; `cancel()` stops it
/// (a run's sandbox is killed).
#[pyclass(frozen, module = "airlock._airlock")]
struct Pending {
    stop: Stop,
}

enum Stop {
    Task(tokio::task::AbortHandle),
    Run(runtime::RunHandle),
}

#[pymethods]
impl Pending {
    /// Stops the work if it is still going: a run's sandbox is killed. A run's `on_done` is
    /// still called, once (with what the killed sandbox gave, or the error); other work's is
    /// not.
    fn cancel(&self) {
        match &self.stop {
            Stop::Task(t) => t.abort(),
            Stop::Run(r) => r.cancel(),
        }
    }
}

/// Calls `on_done(ok, value)` with the GIL held: `(True, to_py(output))` or
/// `(False, exception)`.
fn report<T, C>(on_done: &Py<PyAny>, outcome: Result<T, RuntimeError>, to_py: C)
where
    C: for<'py> FnOnce(Python<'py>, T) -> PyResult<Bound<'py, PyAny>>,
{
    // Not attachable: the interpreter is shutting down, and nobody is listening.
    let _ = Python::try_attach(|py| {
        let exception = |e: PyErr| e.into_value(py).into_bound(py).into_any();
        let (ok, value) = match outcome {
            Ok(v) => match to_py(py, v) {
                Ok(v) => (true, v),
                Err(e) => (false, exception(e)),
            },
            Err(e) => (false, exception(engine_error(py, &e))),
        };
        if let Err(e) = on_done.call1(py, (ok, value)) {
            e.write_unraisable(py, Some(on_done.bind(py)));
        }
    });
}

/// Runs `work` on the runtime; when it ends, calls `on_done(ok, value)` (see [`report`]).
/// Cancelling the returned `Pending` drops `work` (and `on_done` is never called).
fn settle_later<T, F, C>(rt: &Runtime, on_done: Py<PyAny>, work: F, to_py: C) -> Pending
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, RuntimeError>> + Send + 'static,
    C: for<'py> FnOnce(Python<'py>, T) -> PyResult<Bound<'py, PyAny>> + Send + 'static,
{
    let handle = rt.spawn(async move { report(&on_done, work.await, to_py) });
    Pending {
        stop: Stop::Task(handle.abort_handle()),
    }
}

fn new_engine(config: SchedulerConfig) -> Engine {
    let scheduler = Arc::new(Mutex::new(Some(Scheduler::new(config))));
    let mut all = lock(&ENGINES);
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(&scheduler));
    Engine { scheduler }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (*, max_concurrent = None, max_queue = None, pool_size = None, max_age = None, idle = None, max_pools = None))]
    fn new(
        py: Python<'_>,
        max_concurrent: Option<usize>,
        max_queue: Option<usize>,
        pool_size: Option<usize>,
        max_age: Option<f64>,
        idle: Option<f64>,
        max_pools: Option<usize>,
    ) -> PyResult<Engine> {
        let d = SchedulerConfig::default();
        let secs = |name: &str, v: Option<f64>, default: Duration| -> PyResult<Duration> {
            match v {
                None => Ok(default),
                Some(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s.min(1e9))),
                Some(s) => Err(invalid(
                    py,
                    name,
                    format!("{s} s must be a positive number"),
                )),
            }
        };
        if max_concurrent == Some(0) {
            return Err(invalid(py, "max_concurrent", "must be at least 1"));
        }
        Ok(new_engine(SchedulerConfig {
            max_concurrent: max_concurrent.unwrap_or(d.max_concurrent),
            max_queue: max_queue.unwrap_or(d.max_queue),
            pool_size: pool_size.unwrap_or(d.pool_size),
            max_age: secs("max_age", max_age, d.max_age)?,
            idle: secs("idle", idle, d.idle)?,
            max_pools: max_pools.unwrap_or(d.max_pools),
            ..d
        }))
    }

    /// Runs `code` with `request`'s shape and waits for it, without holding the GIL. Returns
    /// the result as a dict. Ctrl-C (KeyboardInterrupt) stops the run and kills its sandbox.
    #[pyo3(signature = (request, code, files = None, on_stdout = None, on_stderr = None))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        request: &Request,
        code: &[u8],
        files: Option<Vec<(String, Py<PyBytes>)>>,
        on_stdout: Option<Py<PyAny>>,
        on_stderr: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let scheduler = self.scheduler(py)?;
        let rt = runtime(py)?;
        let req = request.with(code.to_vec(), files, py);
        let sink = output_sink(on_stdout, on_stderr);
        // Polled on this thread (not spawned onto the runtime's), so the run's worker wakes
        // the caller directly when it ends: two thread hand-offs fewer per run.
        let mut run = std::pin::pin!(scheduler.run(req, sink));
        loop {
            let waited = py.detach(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    rt.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut run).await })
                }))
            });
            match waited {
                Ok(Ok(Ok(result))) => return result_dict(py, result),
                Ok(Ok(Err(e))) => return Err(engine_error(py, &e)),
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    return Err(make_error(
                        py,
                        "SandboxError",
                        &format!("the run failed inside the engine: {why}"),
                        None,
                    ));
                }
                Ok(Err(_elapsed)) => {
                    // Returning drops the run, which kills its sandbox.
                    py.check_signals()?;
                }
            }
        }
    }

    /// Starts a run and returns at once. When it ends, `on_done(ok, value)` is called from the
    /// run's thread with the GIL held: `(True, result_dict)` or `(False, exception)`.
    #[pyo3(signature = (request, code, on_done, files = None, on_stdout = None, on_stderr = None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        py: Python<'_>,
        request: &Request,
        code: &[u8],
        on_done: Py<PyAny>,
        files: Option<Vec<(String, Py<PyBytes>)>>,
        on_stdout: Option<Py<PyAny>>,
        on_stderr: Option<Py<PyAny>>,
    ) -> PyResult<Pending> {
        let scheduler = self.scheduler(py)?;
        let rt = runtime(py)?;
        let req = request.with(code.to_vec(), files, py);
        let sink = output_sink(on_stdout, on_stderr);
        // Started here, not as a task: the run's own thread calls `on_done`, so its result
        // reaches the event loop without first waking a runtime worker to hand it on.
        let run = py.detach(|| {
            let _runtime = rt.enter();
            scheduler.start(
                req,
                sink,
                Box::new(move |outcome| {
                    report(&on_done, outcome, |py, r| {
                        result_dict(py, r).map(Bound::into_any)
                    })
                }),
            )
        });
        Ok(Pending {
            stop: Stop::Run(run),
        })
    }

    /// Starts a session shaped like `request` (seconds for the timeouts); `on_done(ok, value)`
    /// gets a `Session` or the exception.
    #[pyo3(signature = (request, on_done, idle_timeout = 300.0, max_lifetime = 3600.0))]
    fn session(
        &self,
        py: Python<'_>,
        request: &Request,
        on_done: Py<PyAny>,
        idle_timeout: f64,
        max_lifetime: f64,
    ) -> PyResult<Pending> {
        let scheduler = self.scheduler(py)?;
        session::start(py, scheduler, request, on_done, idle_timeout, max_lifetime)
    }

    /// Fills the warm pool for requests shaped like `request` and waits (GIL released) until
    /// `count` sandboxes are ready or `timeout` seconds pass. Returns how many are ready.
    #[pyo3(signature = (request, count = 1, timeout = 30.0))]
    fn prewarm(
        &self,
        py: Python<'_>,
        request: &Request,
        count: usize,
        timeout: f64,
    ) -> PyResult<usize> {
        let scheduler = self.scheduler(py)?;
        let rt = runtime(py)?;
        let template = request.inner.clone();
        let timeout = match timeout.is_finite() {
            true => Duration::from_secs_f64(timeout.clamp(0.0, 3600.0)),
            false => Duration::ZERO,
        };
        py.detach(|| rt.block_on(scheduler.prewarm(&template, count, timeout)))
            .map_err(|e| engine_error(py, &e))
    }

    /// Ready sandboxes for requests shaped like `request`.
    fn ready(&self, py: Python<'_>, request: &Request) -> PyResult<usize> {
        Ok(self.scheduler(py)?.ready(&request.inner))
    }

    /// Sandboxes this engine has pre-started since it was made.
    fn warm_started(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.scheduler(py)?.warm_started())
    }

    /// Empties the pools (their sandboxes are destroyed). Runs in progress finish; new runs
    /// fail with `SandboxError`. Idempotent.
    fn close(&self, py: Python<'_>) {
        let Some(scheduler) = lock(&self.scheduler).take() else {
            return;
        };
        match runtime(py) {
            Ok(rt) => py.detach(move || rt.block_on(scheduler.shutdown())),
            Err(_) => py.detach(move || drop(scheduler)),
        }
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.scheduler).is_none()
    }
}

impl Engine {
    fn scheduler(&self, py: Python<'_>) -> PyResult<Scheduler> {
        if lock(&SHARED)
            .as_ref()
            .is_some_and(|s| s.pid != std::process::id())
        {
            return Err(forked_error(py));
        }
        lock(&self.scheduler)
            .clone()
            .ok_or_else(|| make_error(py, "SandboxError", "this scheduler is closed", None))
    }
}

/// The engine shared by `@sandbox`, `airlock.run` and `Scheduler()` without a config.
#[pyfunction]
fn default_engine(py: Python<'_>) -> PyResult<Py<Engine>> {
    DEFAULT_ENGINE
        .get_or_try_init(py, || Py::new(py, new_engine(SchedulerConfig::default())))
        .map(|e| e.clone_ref(py))
}

/// Destroys every engine's warm sandboxes, stops the async runtime and gives back what the
/// host lent (airlock's cgroups). Registered with `atexit`; later use starts afresh.
#[pyfunction]
fn shutdown(py: Python<'_>) {
    let schedulers: Vec<Scheduler> = lock(&ENGINES)
        .drain(..)
        .filter_map(|w| w.upgrade())
        .filter_map(|s| lock(&s).take())
        .collect();
    let shared = lock(&SHARED).take();
    py.detach(move || {
        if let Some(s) = shared.as_ref().filter(|s| s.pid == std::process::id()) {
            for scheduler in &schedulers {
                s.runtime.block_on(scheduler.shutdown());
            }
        }
        drop(schedulers);
        if let Some(s) = shared
            && s.pid == std::process::id()
            && let Ok(rt) = Arc::try_unwrap(s.runtime)
        {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        runtime::release_host_resources();
    });
}

/// The one-line hint airlock's error diagnosis gives for a Python exception `kind: message`
/// raised in a run with these limits, or None.
#[pyfunction]
#[pyo3(signature = (kind, message, network_none = true, timeout = 30.0, memory_mb = 512))]
fn hint(
    kind: &str,
    message: &str,
    network_none: bool,
    timeout: f64,
    memory_mb: u64,
) -> Option<String> {
    let ending = runtime::diagnose::Ending {
        exit_code: Some(1),
        network_none,
        timeout_secs: timeout,
        memory_mb,
        ..Default::default()
    };
    runtime::diagnose::hint_for(kind, message, &ending)
}

#[pymodule]
fn _airlock(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Request>()?;
    m.add_class::<Engine>()?;
    m.add_class::<Pending>()?;
    m.add_class::<session::SessionHandle>()?;
    m.add_function(wrap_pyfunction!(default_engine, m)?)?;
    m.add_function(wrap_pyfunction!(shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(hint, m)?)?;
    m.add("MAX_CODE_BYTES", runtime::MAX_CODE_BYTES)?;
    Ok(())
}
