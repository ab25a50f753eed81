"""``@airlock.sandbox``: call a function in a fresh sandbox as if it were local.

How a call travels (see docs/python.md, "How it works"):

1. The host pickles ``(function, args, kwargs)`` with cloudpickle. The function itself always
   travels by value, and so do the functions, classes and modules it uses from the caller's
   own local modules (files outside site-packages and the standard library), because the
   sandbox cannot import those.
2. The sandbox runs a tiny program that hands the call to ``_airlock_runner`` (bound
   read-only at ``/airlock/boot``), which loads it with the host's own cloudpickle (bound
   read-only at ``/airlock/lib/cloudpickle``) — the same version that pickled it, so the
   sandbox can always decode what the caller sent, and the same interpreter (airlock sets
   ``AIRLOCK_PYTHON`` to ``sys.executable``).
3. The return value (or the exception) comes back over a private descriptor in a data-only
   format (``_airlock_codec``) and is decoded on the host by a decoder that can only build
   plain data. Nothing from the sandbox is ever unpickled on the host.
"""

from __future__ import annotations

import base64
import collections
import functools
import inspect
import io
import os
import pickle
import sys
import sysconfig
import threading
import types
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union, overload

import cloudpickle

from . import _airlock
from ._boot import _airlock_codec as _codec
from ._errors import (
    RemoteTraceback,
    SandboxExecutionError,
    SandboxInfrastructureError,
    SandboxMemoryError,
    SandboxTimeoutError,
    SerializationError,
    builtin_exception,
    make_remote,
    remote_class,
)
from ._result import Result
from ._scheduler import request_for, settled

F = TypeVar("F", bound=Callable[..., Any])

_HEADER = b"AIRLOCK-CALL1 %d.%d\n" % sys.version_info[:2]
_BOOT_DIR = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot"))
_CLOUDPICKLE_DIR = os.path.realpath(os.path.dirname(os.path.abspath(cloudpickle.__file__)))
_MOUNTS = (
    (_BOOT_DIR, "/airlock/boot", False),
    (_CLOUDPICKLE_DIR, "/airlock/lib/cloudpickle", False),
)
#: Calls up to this many pickled bytes travel inside the program (so a pre-started sandbox can
#: serve them); larger ones as an input file (a sandbox started for the call).
_INLINE_MAX = 6 << 20
#: The runtime accepts at most 64 MiB of input files per run.
_FILE_MAX = (64 << 20) - 4096
_CALL_PATH = ".airlock/call.pkl"
_SOURCE_MAX = 1 << 20

# ---------------------------------------------------------------------------------------------
# Which modules travel by value


def _stdlib_roots() -> Tuple[str, ...]:
    roots = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib"):
        p = paths.get(key)
        if p:
            roots.add(os.path.realpath(p) + os.sep)
    return tuple(roots)


_STDLIB = _stdlib_roots()
_LOCAL: Dict[str, bool] = {}
_LOCAL_LOCK = threading.Lock()


def _is_local(module: Optional[types.ModuleType]) -> bool:
    """Whether ``module`` is the caller's own code, which the sandbox cannot import: a ``.py``
    file outside the standard library and outside any site-packages/dist-packages."""
    if module is None:
        return False
    name = getattr(module, "__name__", None)
    if not isinstance(name, str) or name == "__main__":
        return False  # cloudpickle already sends __main__'s functions by value
    known = _LOCAL.get(name)
    if known is not None:
        return known
    local = False
    f = getattr(module, "__file__", None)
    if isinstance(f, str) and f.endswith(".py") and name.partition(".")[0] not in ("airlock", "cloudpickle"):
        real = os.path.realpath(f)
        parts = real.split(os.sep)
        local = not real.startswith(_STDLIB) and "site-packages" not in parts and "dist-packages" not in parts
    _LOCAL[name] = local
    return local


def _code_names(code: types.CodeType) -> List[str]:
    names: List[str] = []
    todo = [code]
    while todo:
        c = todo.pop()
        names.extend(c.co_names)
        todo.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return names


def _register_by_value(module: types.ModuleType) -> None:
    with _LOCAL_LOCK:
        if module.__name__ in cloudpickle.list_registry_pickle_by_value():
            return
        if sys.modules.get(module.__name__) is module:
            cloudpickle.register_pickle_by_value(module)


def _local_modules_of(fn: Callable[..., Any]) -> List[types.ModuleType]:
    """The caller's local modules that ``fn`` (and what it calls, transitively, within them)
    uses: its own module, modules it names, modules of the functions and classes it names."""
    found: Dict[str, types.ModuleType] = {}
    seen = set()
    todo = [fn]
    while todo and len(seen) < 500:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        m = sys.modules.get(getattr(f, "__module__", None) or "")
        if _is_local(m):
            found[m.__name__] = m  # type: ignore[union-attr]
        code = getattr(f, "__code__", None)
        g = getattr(f, "__globals__", None)
        if not isinstance(code, types.CodeType) or not isinstance(g, dict):
            continue
        values = [g[n] for n in _code_names(code) if n in g]
        for cell in getattr(f, "__closure__", None) or ():
            try:
                values.append(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
        for v in values:
            if isinstance(v, types.ModuleType):
                if _is_local(v):
                    found[v.__name__] = v
            elif isinstance(v, types.FunctionType):
                inner = getattr(v, "__airlock__", None)
                todo.append(inner.fn if isinstance(inner, _Spec) else v)
            elif isinstance(v, type):
                m = sys.modules.get(getattr(v, "__module__", None) or "")
                if _is_local(m):
                    found[m.__name__] = m  # type: ignore[union-attr]
    return list(found.values())


# ---------------------------------------------------------------------------------------------
# Pickling the call


_cp_code_reduce = getattr(getattr(cloudpickle, "cloudpickle", None), "_code_reduce", None)


def _code_reduce_keeping_filename(code: types.CodeType) -> Any:
    """cloudpickle's reducer for code objects, keeping the real file name (cloudpickle 3
    writes ``<dynamic-code>``), so remote tracebacks name the caller's files and lines."""
    fn, args = _cp_code_reduce(code)  # type: ignore[misc]
    return fn, tuple(code.co_filename if type(a) is str and a == "<dynamic-code>" else a for a in args)


class _CallPickler(cloudpickle.Pickler):
    """cloudpickle, plus: the called function always by value, and a sandboxed function met
    inside the call (a recursive call, a helper) as the plain function it wraps — inside the
    sandbox it runs locally, never in a sandbox of its own."""

    if _cp_code_reduce is not None:
        dispatch_table = collections.ChainMap(
            {types.CodeType: _code_reduce_keeping_filename}, cloudpickle.Pickler.dispatch_table
        )

    def __init__(self, file: io.BytesIO, target: Callable[..., Any]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._airlock_target = target

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.FunctionType:
            spec = obj.__dict__.get("__airlock__")
            if isinstance(spec, _Spec):
                obj = spec.fn
            if (obj is self._airlock_target or spec is not None) and hasattr(self, "_dynamic_function_reduce"):
                return self._dynamic_function_reduce(obj)
        return super().reducer_override(obj)


def _read_source(fn: Callable[..., Any]) -> Dict[str, str]:
    """The text of the function's own file, for the remote traceback's source lines (the
    host sends it; the host never reads files the sandbox names)."""
    try:
        path = inspect.getsourcefile(fn)
        if path and os.path.isfile(path) and os.path.getsize(path) <= _SOURCE_MAX:
            with open(path, encoding="utf-8", errors="replace") as f:
                return {fn.__code__.co_filename: f.read()}
    except (OSError, TypeError, AttributeError):
        pass
    return {}


# ---------------------------------------------------------------------------------------------
# The decorated function


class _Spec:
    """One decorated function: its request shape, fixed at decoration time."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        dependencies: Optional[Sequence[str]],
        trust_dependencies: bool,
        timeout: float,
        memory_mb: int,
        network: str,
        allowed_domains: Optional[Sequence[str]],
        env: Optional[Mapping[str, str]],
    ) -> None:
        self.fn = fn
        self.name = getattr(fn, "__qualname__", getattr(fn, "__name__", "function"))
        self.is_async = inspect.iscoroutinefunction(fn)
        self.timeout = timeout
        self.memory_mb = memory_mb
        env = dict(env or {})
        theirs = env.get("PYTHONPATH")
        env["PYTHONPATH"] = "/airlock/boot" + (":" + theirs if theirs else "")
        if self.is_async:
            # Its own pool, whose sandboxes rehearse an event loop while they wait.
            env["AIRLOCK_ASYNC_CALL"] = "1"
        self.request = request_for(
            timeout=timeout,
            memory_mb=memory_mb,
            network=network,
            allowed_domains=allowed_domains,
            env=env,
            packages=dependencies,
            trust_packages=trust_dependencies,
            mounts=_MOUNTS,
            result_channel=True,
        )
        self.network_none = self.request.network_none
        self._prepared = False
        self._sources: Dict[str, str] = {}

    def _prepare(self) -> None:
        if not self._prepared:
            for m in _local_modules_of(self.fn):
                _register_by_value(m)
            self._sources = _read_source(self.fn)
            self._prepared = True

    def encode_call(self, args: tuple, kwargs: dict) -> Tuple[bytes, Optional[List[Tuple[str, bytes]]]]:
        """The program for this call, and its input file when the call is too large to inline."""
        self._prepare()
        for v in (*args, *kwargs.values()):
            m = sys.modules.get(getattr(type(v), "__module__", None) or "")
            if _is_local(m):
                _register_by_value(m)  # type: ignore[arg-type]
        buf = io.BytesIO()
        buf.write(_HEADER)
        call = {"fn": self.fn, "args": args, "kwargs": kwargs, "is_async": self.is_async, "sources": self._sources}
        try:
            _CallPickler(buf, self.fn).dump(call)
        except Exception as e:
            raise SerializationError(
                f"cannot send {self.name}() and its arguments to the sandbox: {type(e).__name__}: {e}",
                hint="pass plain data as arguments, and create what cannot be pickled (open files, "
                "sockets, locks, clients) inside the function",
            ) from e
        payload = buf.getbuffer()
        if len(payload) <= _INLINE_MAX:
            code = b'import _airlock_runner\n_airlock_runner.main("' + base64.b64encode(payload) + b'")\n'
            return code, None
        if len(payload) > _FILE_MAX:
            raise SerializationError(
                f"the arguments of {self.name}() pickle to {len(payload)} bytes; at most {_FILE_MAX} can be "
                "sent: pass less data, or have the function read it from a mount or a URL"
            )
        code = b'import _airlock_runner\n_airlock_runner.main(path="/workspace/' + _CALL_PATH.encode() + b'")\n'
        return code, [(_CALL_PATH, bytes(payload))]

    def outcome(self, d: Dict[str, Any]) -> Any:
        """The call's return value, or the exception that says what happened."""
        status = d["status"]
        raw = d.get("result")
        kind = value = None
        malformed = None
        if raw:
            try:
                kind, value = _codec.decode_record(raw)
            except _codec.DecodeError as e:
                malformed = e
        if kind == b"V":
            return value
        result = Result._from_engine(d)
        if status == "timeout":
            raise SandboxTimeoutError(
                f"timeout: {self.name}() did not finish within {self.timeout:g} s and was killed",
                error_type="Timeout",
                hint=f"raise timeout= (now {self.timeout:g} s) or make the function faster",
                result=result,
            )
        if status == "memory_limit":
            raise SandboxMemoryError(
                f"memory: {self.name}() ran out of memory (memory_mb={self.memory_mb}) and was killed",
                error_type="MemoryLimit",
                hint=f"raise memory_mb= (now {self.memory_mb}) or use less memory",
                result=result,
            )
        if status == "sandbox_error":
            msg = d["error"]["message"] if d.get("error") else "the sandbox failed"
            raise SandboxInfrastructureError(f"the sandbox for {self.name}() failed: {msg}")
        if kind == b"E" and isinstance(value, dict):
            raise self._remote_exception(value, result)
        if kind == b"U" and isinstance(value, dict):
            raise self._unencodable(value)
        if malformed is not None or kind is not None:
            raise SerializationError(
                f"the sandbox sent back a malformed result for {self.name}() ({malformed or 'unexpected record'}); "
                "it was not decoded"
            )
        if status == "killed":
            err = d.get("error") or {}
            if err.get("type") == "SandboxKilled":
                why = _clean(err.get("message", ""))
                raise SandboxExecutionError(
                    f"the sandbox of {self.name}() ended before it returned ({why})",
                    error_type="SandboxKilled",
                    result=result,
                )
            raise SandboxExecutionError(
                f"{self.name}() was killed by signal {d['signal']} before it returned",
                error_type="Killed",
                result=result,
            )
        err = d.get("error")
        if err is not None:
            raise SandboxExecutionError(
                _clean(err["message"]),
                error_type=_clean(err["type"]),
                traceback=_clean(err["traceback"]) if err.get("traceback") else None,
                hint=err.get("hint"),
                result=result,
            )
        raise SandboxExecutionError(
            f"{self.name}() ended without returning (exit code {d['exit_code']}): did it call os._exit()?",
            error_type="NoResult",
            result=result,
        )

    def _remote_exception(self, rec: Dict[str, Any], result: Result) -> BaseException:
        def text(key: str) -> str:
            v = rec.get(key)
            return _clean(v) if isinstance(v, str) else ""

        error_type = text("type") or "Exception"
        message = text("message")
        tb = text("traceback") or None
        if rec.get("phase") == "setup":
            return SandboxInfrastructureError(f"the sandbox could not run {self.name}(): {message}")
        builtin = builtin_exception(error_type) if rec.get("builtin") is True else None
        memory = builtin is MemoryError
        if memory and not message:
            message = f"memory: {self.name}() ran out of memory (memory_mb={self.memory_mb})"
        hint = _airlock.hint(error_type, message, self.network_none, self.timeout, self.memory_mb)
        if rec.get("phase") == "load" and error_type in ("ModuleNotFoundError", "ImportError") and not hint:
            hint = f"the sandbox cannot import what {self.name}() needs: add the package to dependencies=[...]"
        cls = remote_class(builtin, SandboxMemoryError if memory else SandboxExecutionError)
        args = rec.get("args")
        exc = make_remote(
            cls,
            message,
            error_type=error_type,
            traceback=tb,
            hint=hint,
            remote_module=text("module") or None,
            result=result,
            args=tuple(args) if isinstance(args, tuple) else None,
        )
        if isinstance(exc, OSError):
            for attr in ("errno", "strerror", "filename"):
                v = rec.get(attr)
                if v is None or type(v) in (int, str):
                    try:
                        setattr(exc, attr, v)
                    except (AttributeError, TypeError):
                        pass
        if tb:
            exc.__cause__ = RemoteTraceback(tb)
        return exc

    def _unencodable(self, rec: Dict[str, Any]) -> SerializationError:
        def text(key: str) -> str:
            v = rec.get(key)
            return _clean(v) if isinstance(v, str) else "?"

        type_name, path, hint, reason = text("type"), text("path"), text("hint"), text("reason")
        why = f" ({reason})" if reason and reason != "not plain data" else ""
        return SerializationError(
            f"{self.name}() returned a {type_name} at {path}{why}, which cannot leave the sandbox: "
            f"only plain data comes back. Hint: {hint}",
            type_name=type_name,
            path=path,
            hint=hint,
        )

    def prewarm(self, count: int = 1, timeout: float = 30) -> int:
        """Pre-starts up to ``count`` sandboxes for this function (at most the pool size) and
        waits up to ``timeout`` seconds for them; returns how many are ready. Functions with
        ``allowed_domains`` are not pooled (returns 0). Limits no run could have raise
        ``InvalidRequestError`` naming the field."""
        return _airlock.default_engine().prewarm(self.request, count, timeout)


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0, 9), 11, 12, *range(14, 32), 127, *range(0x80, 0xA0))}


def _clean(s: str) -> str:
    """Text from the sandbox made safe to print: control characters (terminal escapes) are
    shown as ``\\xNN`` instead of being sent to the caller's terminal. Newlines and tabs stay."""
    return s.translate(_CONTROL)


_UNPOOLED: List[Any] = []
_UNPOOLED_LOCK = threading.Lock()


def _engine_for(files: Optional[List[Tuple[str, bytes]]]) -> "_airlock.Engine":
    """The shared engine; for a call carrying an input file, one without warm pools (a pool is
    keyed by the whole request, input files included, so it could never serve another call)."""
    if files is None:
        return _airlock.default_engine()
    with _UNPOOLED_LOCK:
        if not _UNPOOLED or _UNPOOLED[0].closed:
            _UNPOOLED[:] = [_airlock.Engine(pool_size=0)]
        return _UNPOOLED[0]


def _forwarders() -> Tuple[Callable[[bytes], None], Callable[[bytes], None]]:
    """Sinks passing the function's own output to this process's stdout and stderr, live."""
    import codecs

    def make(name: str) -> Callable[[bytes], None]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        def write(chunk: bytes) -> None:
            text = decoder.decode(chunk)
            stream = getattr(sys, name, None)
            if text and stream is not None:
                stream.write(text)
                stream.flush()

        return write

    return make("stdout"), make("stderr")


@overload
def sandbox(func: F) -> F: ...


@overload
def sandbox(
    func: None = None,
    *,
    dependencies: Optional[Sequence[str]] = None,
    trust_dependencies: bool = False,
    timeout: float = 30,
    memory_mb: int = 512,
    network: str = "none",
    allowed_domains: Optional[Sequence[str]] = None,
    env: Optional[Mapping[str, str]] = None,
) -> Callable[[F], F]: ...


def sandbox(
    func: Optional[F] = None,
    *,
    dependencies: Optional[Sequence[str]] = None,
    trust_dependencies: bool = False,
    timeout: float = 30,
    memory_mb: int = 512,
    network: str = "none",
    allowed_domains: Optional[Sequence[str]] = None,
    env: Optional[Mapping[str, str]] = None,
) -> Union[F, Callable[[F], F]]:
    """Runs every call of the decorated function in a fresh sandbox.

    ::

        @airlock.sandbox(dependencies=["pandas==2.2.3"], timeout=10)
        def summarize(rows):
            import pandas as pd
            return pd.DataFrame(rows).describe().to_dict()

        summarize([{"a": 1}, {"a": 2}])      # runs isolated, returns a dict

    Works on plain and ``async def`` functions (then the call returns an awaitable), with
    positional and keyword arguments, closures, and functions defined in ``__main__`` or in
    your own modules (they travel by value). ``functools.wraps`` metadata is kept.

    Args:
        dependencies: pip requirement specifiers installed (once, cached) for the sandbox. A
            warm call finds them already imported, by a sandbox that serves only that call.
        trust_dependencies: explicit opt-in: the dependencies are trusted, so they are
            imported once in a zygote that forks every call (hundreds a second instead of a
            few). Their import-time code then runs in a process every such call passes
            through, and could carry data between calls.
        timeout: seconds before the call is killed (:class:`SandboxTimeoutError`).
        memory_mb: memory limit in MiB; past it the function sees ``MemoryError`` or the call
            raises :class:`SandboxMemoryError`.
        network: ``"none"`` (default), ``"allowlist"`` or ``"host"`` (weaker, explicit).
        allowed_domains: names the function may reach over HTTP(S); implies the allowlist.
        env: environment variables for the sandbox (the host's never leak in).

    The return value must be plain data (None, bool, int, float, complex, str, bytes,
    bytearray, list, tuple, dict, set, frozenset, datetime/date/time/timedelta, Decimal,
    UUID, Path; subclasses come back as their base type); anything else raises
    :class:`SerializationError` saying how to convert it. An exception in the function raises
    :class:`SandboxExecutionError` (also catchable as the builtin type, e.g. ``ValueError``).
    The function's prints appear on this process's stdout/stderr as they happen. A call is
    never retried. Raises :class:`InvalidRequestError` at decoration time for a bad argument.
    """

    def decorate(fn: F) -> F:
        if not callable(fn) or not isinstance(fn, types.FunctionType):
            raise TypeError(f"@airlock.sandbox needs a plain or async function, not {type(fn).__name__}")
        spec = _Spec(
            fn,
            dependencies=dependencies,
            trust_dependencies=trust_dependencies,
            timeout=timeout,
            memory_mb=memory_mb,
            network=network,
            allowed_domains=allowed_domains,
            env=env,
        )

        if spec.is_async:

            @functools.wraps(fn)
            async def async_call(*args: Any, **kwargs: Any) -> Any:
                code, files = spec.encode_call(args, kwargs)
                out, err = _forwarders()
                engine = _engine_for(files)
                d = await settled(lambda done: engine.submit(spec.request, code, done, files, out, err))
                return spec.outcome(d)

            wrapper: Any = async_call
        else:

            @functools.wraps(fn)
            def call(*args: Any, **kwargs: Any) -> Any:
                code, files = spec.encode_call(args, kwargs)
                out, err = _forwarders()
                d = _engine_for(files).run(spec.request, code, files, out, err)
                return spec.outcome(d)

            wrapper = call
        wrapper.__airlock__ = spec
        wrapper.prewarm = spec.prewarm
        return wrapper  # type: ignore[no-any-return]

    if func is not None:
        return decorate(func)
    return decorate
