"""airlock: run untrusted code — most often code an LLM just wrote — in fresh, strict sandboxes.

::

    import airlock

    @airlock.sandbox(dependencies=["requests==2.31.0"])
    def version():
        import requests
        return requests.__version__

    version()                                   # '2.31.0', computed in a sandbox

    async with airlock.Scheduler() as s:
        r = await s.run("print(6 * 7)", on_stdout=print)
        r.status, r.stdout                      # ('ok', '42\\n')

    async with airlock.Scheduler() as s, s.session() as session:
        await session.run("x = 6 * 7")          # state persists between calls
        (await session.run("print(x)")).stdout  # '42\n'

    airlock.run("print(1)").stdout              # blocking, for scripts

The engine (namespaces, seccomp, Landlock, cgroups, warm pools) is Rust, embedded in this
process: no daemon, no container engine. See docs/python.md.
"""

import atexit as _atexit
import os as _os
import sys as _sys

# The sandbox runs this very interpreter (same major.minor, same ABI), so it can load what the
# caller pickles. Set before the engine locates its interpreter (once per process).
if _sys.executable and "AIRLOCK_PYTHON" not in _os.environ:
    _os.environ["AIRLOCK_PYTHON"] = _sys.executable

from . import _airlock  # noqa: E402
from ._decorator import sandbox  # noqa: E402
from ._errors import (  # noqa: E402
    DependencyInstallError,
    InvalidRequestError,
    SandboxBusyError,
    SandboxError,
    SandboxExecutionError,
    SandboxInfrastructureError,
    SandboxMemoryError,
    SandboxTimeoutError,
    SandboxUnavailableError,
    SerializationError,
    SessionClosedError,
)
from ._result import ErrorInfo, Result, SchedulerConfig, Timing, Usage  # noqa: E402
from ._scheduler import Scheduler, run  # noqa: E402
from ._session import Session  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "sandbox",
    "Scheduler",
    "SchedulerConfig",
    "Session",
    "run",
    "Result",
    "ErrorInfo",
    "Timing",
    "Usage",
    "SandboxError",
    "SandboxExecutionError",
    "SandboxTimeoutError",
    "SandboxMemoryError",
    "SerializationError",
    "DependencyInstallError",
    "SandboxUnavailableError",
    "SandboxInfrastructureError",
    "SandboxBusyError",
    "SessionClosedError",
    "InvalidRequestError",
]

# Pre-started sandboxes are destroyed and airlock's cgroups given back when the interpreter exits.
_atexit.register(_airlock.shutdown)
