//! Sessions for Python (`airlock.Scheduler.session`). `Engine.session` starts one; each method
//! starts its work on the runtime and reports through `on_done(ok, value)`, as `Engine.submit`
//! does, so the event loop is never blocked. Dropping the last reference kills the session.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use runtime::{Scheduler, Session, SessionOptions};

use crate::{Pending, Request, invalid, output_sink, result_dict, runtime, settle_later};

/// A live session: calls run one after another in one sandbox whose state persists.
#[pyclass(frozen, module = "airlock._airlock", name = "Session")]
pub(crate) struct SessionHandle {
    session: Session,
}

/// `seconds` as a duration, or `InvalidRequestError` naming `field`.
fn duration(py: Python<'_>, field: &str, seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| invalid(py, field, format!("{seconds} is not a number of seconds")))
}

/// Starts a session shaped like `request` on `scheduler`; `on_done` gets a `Session`.
pub(crate) fn start(
    py: Python<'_>,
    scheduler: Scheduler,
    request: &Request,
    on_done: Py<PyAny>,
    idle_timeout: f64,
    max_lifetime: f64,
) -> PyResult<Pending> {
    let options = SessionOptions {
        idle_timeout: duration(py, "idle_timeout", idle_timeout)?,
        max_lifetime: duration(py, "max_lifetime", max_lifetime)?,
    };
    let template = request.inner.clone();
    Ok(settle_later(
        &*runtime(py)?,
        on_done,
        async move { scheduler.session(template, options).await },
        |py, session| Ok(Bound::new(py, SessionHandle { session })?.into_any()),
    ))
}

#[pymethods]
impl SessionHandle {
    /// Runs `code` after any call already running; `on_done` gets the result dict.
    #[pyo3(signature = (code, on_done, timeout = None, on_stdout = None, on_stderr = None))]
    fn run(
        &self,
        py: Python<'_>,
        code: &[u8],
        on_done: Py<PyAny>,
        timeout: Option<f64>,
        on_stdout: Option<Py<PyAny>>,
        on_stderr: Option<Py<PyAny>>,
    ) -> PyResult<Pending> {
        let timeout = timeout.map(|t| duration(py, "timeout", t)).transpose()?;
        let session = self.session.clone();
        let code = code.to_vec();
        let sink = output_sink(on_stdout, on_stderr);
        Ok(settle_later(
            &*runtime(py)?,
            on_done,
            async move { session.run(code, timeout, sink).await },
            |py, r| result_dict(py, r).map(Bound::into_any),
        ))
    }

    /// Writes `data` to `path` in the session; `on_done` gets None.
    fn write_file(
        &self,
        py: Python<'_>,
        path: String,
        data: &[u8],
        on_done: Py<PyAny>,
    ) -> PyResult<Pending> {
        let session = self.session.clone();
        let data = data.to_vec();
        Ok(settle_later(
            &*runtime(py)?,
            on_done,
            async move { session.write_file(&path, &data).await },
            |py, ()| Ok(py.None().into_bound(py)),
        ))
    }

    /// Reads the file at `path` in the session; `on_done` gets its bytes.
    fn read_file(&self, py: Python<'_>, path: String, on_done: Py<PyAny>) -> PyResult<Pending> {
        let session = self.session.clone();
        Ok(settle_later(
            &*runtime(py)?,
            on_done,
            async move { session.read_file(&path).await },
            |py, data| Ok(PyBytes::new(py, &data).into_any()),
        ))
    }

    /// Ends the session; `on_done` gets None once nothing of it remains. Killed here, before
    /// anything is awaited: a `close()` that is cancelled still closes.
    fn close(&self, py: Python<'_>, on_done: Py<PyAny>) -> PyResult<Pending> {
        self.session.close_now();
        let session = self.session.clone();
        Ok(settle_later(
            &*runtime(py)?,
            on_done,
            async move {
                session.close().await;
                Ok(())
            },
            |py, ()| Ok(py.None().into_bound(py)),
        ))
    }

    /// Ends the session at once, without waiting for its cleanup.
    fn close_now(&self) {
        self.session.close_now();
    }

    /// Whether calls can still be made.
    #[getter]
    fn is_open(&self) -> bool {
        self.session.is_open()
    }
}
