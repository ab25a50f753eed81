"""airlock's exceptions (DESIGN §9).

::

    SandboxError                         base of everything airlock raises
    ├── SandboxExecutionError            the code ran and failed: .error_type, .message, .traceback, .hint
    │   ├── SandboxTimeoutError          it ran past its timeout ("timeout" in the message)
    │   └── SandboxMemoryError           it ran out of memory ("memory" in the message)
    ├── SerializationError               arguments could not be sent, or the result cannot come back
    ├── DependencyInstallError           installing the packages failed (the installer's message)
    ├── SandboxUnavailableError          this host cannot isolate (a missing kernel feature, no interpreter)
    ├── SandboxInfrastructureError       the sandbox failed to start or be supervised
    ├── SandboxBusyError                 too many runs waiting or sessions open; retry later
    ├── SessionClosedError               a call to a session that was closed (the message says why)
    └── InvalidRequestError (ValueError) a bad argument: .field names it

A remote exception of a builtin type is raised as a subclass of both ``SandboxExecutionError``
and that type, so ``except ValueError`` catches a ``ValueError`` raised in the sandbox; a remote
``MemoryError`` is also a ``SandboxMemoryError``. airlock never retries a call that started:
each exception reports what happened to the one attempt.
"""

from __future__ import annotations

import builtins
from typing import Any, Dict, Optional, Tuple, Type


class SandboxError(Exception):
    """Base class of every exception airlock raises.

    ``kind`` is the engine's stable name for the failure (``"SandboxUnavailable"``,
    ``"DependencyInstallError"``, ...) when it came from the engine, else None.
    """

    def __init__(self, message: str = "", *, kind: Optional[str] = None) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.kind = kind

    def __str__(self) -> str:
        return self.message


class SandboxExecutionError(SandboxError):
    """The code ran in the sandbox and failed.

    Attributes:
        error_type: the remote exception's type name, e.g. ``"ValueError"`` (``"Timeout"`` and
            ``"MemoryLimit"`` for limits the sandbox enforced).
        message: the remote exception's message (``str(exc)`` there).
        traceback: the remote traceback as text, or None.
        hint: one line of advice (add a dependency, raise a limit, ...), or None.
        remote_module: the module of the remote exception's type (``"builtins"`` for builtins).
        result: the run's :class:`airlock.Result` (stdout, stderr, timing), when there is one.
    """

    def __init__(
        self,
        message: str = "",
        *,
        error_type: str = "Error",
        traceback: Optional[str] = None,
        hint: Optional[str] = None,
        remote_module: Optional[str] = None,
        result: Any = None,
        kind: Optional[str] = None,
    ) -> None:
        SandboxError.__init__(self, message, kind=kind)
        self.error_type = error_type
        self.traceback = traceback
        self.hint = hint
        self.remote_module = remote_module
        self.result = result

    def __str__(self) -> str:
        head = f"{self.error_type}: {self.message}" if self.message else self.error_type
        return f"{head}\nhint: {self.hint}" if self.hint else head


class SandboxTimeoutError(SandboxExecutionError):
    """The code ran past its timeout and was killed, with everything it started."""


class SandboxMemoryError(SandboxExecutionError):
    """The code ran out of memory: a ``MemoryError`` in the sandbox, or the memory limit."""


class SerializationError(SandboxError):
    """A value cannot cross the sandbox boundary.

    Raised when the function or its arguments cannot be pickled on the host, and when the
    function's return value is not plain data (the message says how to convert it, e.g.
    ``df.to_dict()``). ``type_name`` and ``path`` name the offending value, when known.
    """

    def __init__(
        self,
        message: str = "",
        *,
        type_name: Optional[str] = None,
        path: Optional[str] = None,
        hint: Optional[str] = None,
        kind: Optional[str] = None,
    ) -> None:
        SandboxError.__init__(self, message, kind=kind)
        self.type_name = type_name
        self.path = path
        self.hint = hint


class DependencyInstallError(SandboxError):
    """Installing the requested packages failed; the message is the installer's own."""


class SandboxUnavailableError(SandboxError):
    """This host cannot provide an isolation layer (or the interpreter) a run needs."""


class SandboxInfrastructureError(SandboxError):
    """The sandbox could not be started or supervised (not a failure of the code)."""


class SandboxBusyError(SandboxError):
    """Too many runs are already waiting, or too many sessions are open (the message says
    which); retry later."""


class SessionClosedError(SandboxError):
    """The session was closed (by ``close()``, its idle timeout or lifetime, or a call that
    ended it); the message says why. Start a new session."""


class InvalidRequestError(SandboxError, ValueError):
    """An argument is invalid; ``field`` names it (``"timeout"``, ``"memory"``, ``"env"``...)."""

    def __init__(self, message: str = "", *, field: Optional[str] = None, kind: Optional[str] = None) -> None:
        SandboxError.__init__(self, message, kind=kind)
        self.field = field


class RemoteTraceback(Exception):
    """The remote traceback, attached as ``__cause__`` so Python prints it above the error."""

    def __init__(self, text: str) -> None:
        Exception.__init__(self, text)
        self.text = text

    def __str__(self) -> str:
        return "\n\nRemote traceback (in the sandbox):\n" + self.text.rstrip("\n")


_ENGINE_KINDS: Dict[str, Type[SandboxError]] = {
    "InvalidInput": InvalidRequestError,
    "SandboxUnavailable": SandboxUnavailableError,
    "InterpreterNotFound": SandboxUnavailableError,
    "Busy": SandboxBusyError,
    "SessionClosed": SessionClosedError,
    "SandboxError": SandboxInfrastructureError,
    "SandboxInfrastructureError": SandboxInfrastructureError,
    "NetworkError": SandboxInfrastructureError,
    "DependencyInstallError": DependencyInstallError,
    "EnvironmentError": DependencyInstallError,
}


def _from_engine(kind: str, message: str, field: Optional[str] = None) -> SandboxError:
    """The exception for an engine failure of stable kind ``kind`` (called by the extension)."""
    cls = _ENGINE_KINDS.get(kind, SandboxError)
    if cls is InvalidRequestError:
        return InvalidRequestError(message, field=field, kind=kind)
    return cls(message, kind=kind)


_REMOTE_CLASSES: Dict[Tuple[type, type], type] = {}


def remote_class(builtin_type: Optional[type], base: Type[SandboxExecutionError] = SandboxExecutionError) -> type:
    """``base``, or a subclass of both ``base`` and ``builtin_type`` (cached), so that a
    remote ``ValueError`` is caught by ``except ValueError`` as well as by
    ``except SandboxExecutionError``."""
    if builtin_type is None:
        return base
    key = (base, builtin_type)
    cls = _REMOTE_CLASSES.get(key)
    if cls is None:
        try:
            cls = type(
                f"Remote{builtin_type.__name__}",
                (base, builtin_type),
                {
                    "__module__": "airlock",
                    "__doc__": f"A {builtin_type.__name__} raised in a sandbox.",
                    "_airlock_base": base,
                },
            )
        except TypeError:  # an instance layout that cannot be combined: the base alone
            cls = base
        _REMOTE_CLASSES[key] = cls
    return cls


def builtin_exception(name: str) -> Optional[type]:
    """The builtin ``Exception`` subclass called ``name``, or None."""
    t = getattr(builtins, name, None)
    if isinstance(t, type) and issubclass(t, Exception) and not issubclass(t, SandboxError):
        return t
    return None


def make_remote(
    cls: type,
    message: str,
    *,
    error_type: str,
    traceback: Optional[str],
    hint: Optional[str],
    remote_module: Optional[str],
    result: Any,
    args: Optional[tuple] = None,
) -> SandboxExecutionError:
    """An instance of ``cls`` (from :func:`remote_class`). Only ``SandboxExecutionError``'s
    ``__init__`` runs, never the builtin's own (some, like ``UnicodeDecodeError``, need
    arguments we do not have)."""
    try:
        exc = cls(message)
    except TypeError:  # a builtin whose constructor needs more (ExceptionGroup): not mixed in
        cls = getattr(cls, "_airlock_base", SandboxExecutionError)
        exc = cls(message)
    SandboxExecutionError.__init__(
        exc,
        message,
        error_type=error_type,
        traceback=traceback,
        hint=hint,
        remote_module=remote_module,
        result=result,
    )
    if args is not None:
        try:
            exc.args = args
        except (TypeError, AttributeError):
            pass
    return exc
