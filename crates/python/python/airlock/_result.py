"""A run's result (DESIGN §8: the same field names as the CLI's ``--json`` and the HTTP body)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class ErrorInfo:
    """What went wrong, parsed from the language's own error output.

    ``type`` is e.g. ``"ZeroDivisionError"``, ``"Timeout"``, ``"MemoryLimit"``; ``line`` and
    ``file`` point at the innermost frame in the user's code; ``hint`` is one line of advice.
    """

    type: str
    message: str
    line: Optional[int] = None
    file: Optional[str] = None
    hint: Optional[str] = None
    traceback: Optional[str] = None


@dataclass(frozen=True)
class Timing:
    """Milliseconds: building the sandbox, booting it (namespaces, mounts, filters), running
    the code, the whole run; ``install_ms`` is finding or installing the packages'
    environment (not part of ``total_ms``)."""

    setup_ms: float = 0.0
    boot_ms: float = 0.0
    execute_ms: float = 0.0
    total_ms: float = 0.0
    install_ms: float = 0.0


@dataclass(frozen=True)
class Usage:
    """CPU time and peak memory of the run, from its cgroup."""

    cpu_ms: int = 0
    memory_peak_bytes: int = 0


@dataclass(frozen=True)
class Result:
    """The outcome of :meth:`airlock.Scheduler.run` / :func:`airlock.run`.

    ``status`` is ``"ok"`` (exit 0), ``"error"`` (non-zero exit or an exception),
    ``"timeout"``, ``"memory_limit"``, ``"killed"`` (a signal) or ``"sandbox_error"``.
    ``stdout``/``stderr`` are text (invalid UTF-8 replaced); the raw bytes are in
    ``stdout_bytes``/``stderr_bytes``. ``pool`` is ``"warm"`` when a pre-started sandbox
    served the run, else ``"cold"``. ``environment`` is the packages' environment key (None
    without packages) and ``environment_cached`` whether it was already built.
    """

    status: str
    exit_code: Optional[int]
    signal: Optional[int]
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    error: Optional[ErrorInfo]
    timing: Timing
    usage: Usage
    pool: str
    environment: Optional[str] = None
    environment_cached: Optional[bool] = None
    stdout_bytes: bytes = field(default=b"", repr=False)
    stderr_bytes: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        """Whether the program exited 0."""
        return self.status == "ok"

    def to_dict(self) -> Dict[str, Any]:
        """DESIGN §8's JSON shape (without the raw bytes)."""
        d = asdict(self)
        d.pop("stdout_bytes")
        d.pop("stderr_bytes")
        return d

    @classmethod
    def _from_engine(cls, d: Dict[str, Any]) -> "Result":
        err = d["error"]
        return cls(
            status=d["status"],
            exit_code=d["exit_code"],
            signal=d["signal"],
            stdout=d["stdout"],
            stderr=d["stderr"],
            stdout_truncated=d["stdout_truncated"],
            stderr_truncated=d["stderr_truncated"],
            error=ErrorInfo(**err) if err is not None else None,
            timing=Timing(**d["timing"]),
            usage=Usage(**d["usage"]),
            pool=d["pool"],
            environment=d["environment"],
            environment_cached=d["environment_cached"],
            stdout_bytes=d["stdout_bytes"],
            stderr_bytes=d["stderr_bytes"],
        )


@dataclass(frozen=True)
class SchedulerConfig:
    """How a :class:`airlock.Scheduler` runs things.

    Attributes:
        max_concurrent: runs executing at once (default: 4 per core); more wait.
        max_queue: runs allowed to wait (default 1024); beyond it a run raises
            :class:`airlock.SandboxBusyError` at once.
        pool_size: pre-started sandboxes kept per request shape (default 2; 0 disables warm
            pools). Each serves one run and is destroyed.
        max_age: seconds after which a ready sandbox is replaced (default 60).
        idle: seconds after which an unused pool shrinks to nothing (default 300).
        max_pools: request shapes with a pool at once (default 16). A shape beyond them
            takes the place of the pool unused longest once that one has gone unused for 10
            s (or half of ``idle``, if shorter); until then its runs start cold.
    """

    max_concurrent: Optional[int] = None
    max_queue: Optional[int] = None
    pool_size: Optional[int] = None
    max_age: Optional[float] = None
    idle: Optional[float] = None
    max_pools: Optional[int] = None
