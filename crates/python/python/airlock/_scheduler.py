"""``airlock.Scheduler`` and ``airlock.run``: run code (Python, JavaScript, shell) in sandboxes."""

from __future__ import annotations

import asyncio
import codecs
import inspect
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _airlock
from ._errors import InvalidRequestError
from ._result import Result, SchedulerConfig

if TYPE_CHECKING:
    from ._session import SessionStart

#: A streaming callback: called with each chunk of output as text, as it is produced. It may
#: also be an ``async def`` function (awaited before ``run`` returns).
OutputCallback = Callable[[str], Union[None, Awaitable[None]]]
Files = Mapping[str, Union[bytes, bytearray, str]]

_REQUESTS: "OrderedDict[tuple, _airlock.Request]" = OrderedDict()
_REQUESTS_LOCK = threading.Lock()
_REQUESTS_MAX = 128


def _seq(name: str, v: Optional[Sequence[str]]) -> Tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, (str, bytes)):
        raise InvalidRequestError(f"invalid `{name}`: expected a list of strings, not one string", field=name)
    out = tuple(v)
    for item in out:
        if not isinstance(item, str):
            raise InvalidRequestError(f"invalid `{name}`: {item!r} is not a string", field=name)
    return out


def _env(v: Optional[Mapping[str, str]]) -> Tuple[Tuple[str, str], ...]:
    if v is None:
        return ()
    items = []
    for k, val in dict(v).items():
        if not isinstance(k, str) or not isinstance(val, str):
            raise InvalidRequestError(f"invalid `env`: {k!r}={val!r}: names and values must be str", field="env")
        items.append((k, val))
    return tuple(sorted(items))


def request_for(
    *,
    language: str = "python",
    timeout: float = 30,
    memory_mb: int = 512,
    network: str = "none",
    allowed_domains: Optional[Sequence[str]] = None,
    env: Optional[Mapping[str, str]] = None,
    packages: Optional[Sequence[str]] = None,
    trust_packages: bool = False,
    mounts: Sequence[Tuple[str, str, bool]] = (),
    result_channel: bool = False,
) -> "_airlock.Request":
    """A validated request shape, cached (validation reads the host's limits)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidRequestError(f"invalid `timeout`: {timeout!r} is not a number of seconds", field="timeout")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb < 0:
        raise InvalidRequestError(f"invalid `memory`: {memory_mb!r} is not a whole number of MiB", field="memory")
    if not isinstance(trust_packages, bool):
        raise InvalidRequestError(
            f"invalid `trust_packages`: {trust_packages!r} is not True or False", field="trust_packages"
        )
    key = (
        language,
        float(timeout),
        memory_mb,
        network,
        _seq("allowed_domains", allowed_domains),
        _env(env),
        _seq("packages", packages),
        tuple(mounts),
        result_channel,
        trust_packages,
    )
    with _REQUESTS_LOCK:
        req = _REQUESTS.get(key)
        if req is not None:
            _REQUESTS.move_to_end(key)
            return req
    req = _airlock.Request(
        language=language,
        timeout=float(timeout),
        memory_mb=memory_mb,
        network=network,
        allowed_domains=list(key[4]),
        env=dict(key[5]),
        packages=list(key[6]),
        trust_packages=key[9],
        mounts=list(mounts),
        result_channel=result_channel,
    )
    with _REQUESTS_LOCK:
        _REQUESTS[key] = req
        while len(_REQUESTS) > _REQUESTS_MAX:
            _REQUESTS.popitem(last=False)
    return req


def _code_bytes(code: Union[str, bytes]) -> bytes:
    if isinstance(code, str):
        return code.encode("utf-8", "surrogateescape")
    if isinstance(code, (bytes, bytearray, memoryview)):
        return bytes(code)
    raise InvalidRequestError(f"invalid `code`: expected str or bytes, not {type(code).__name__}", field="code")


def _as_bytes(data: Any) -> Optional[bytes]:
    """``data`` as bytes (``str`` as UTF-8), or None when it is neither bytes-like nor str."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    return data if isinstance(data, bytes) else None


def _files(files: Optional[Files]) -> Optional[List[Tuple[str, bytes]]]:
    if not files:
        return None
    out = []
    for path, content in dict(files).items():
        if not isinstance(path, str):
            raise InvalidRequestError(f"invalid `files`: {path!r} is not a str path", field="files")
        data = _as_bytes(content)
        if data is None:
            raise InvalidRequestError(
                f"invalid `files`: the contents of {path} must be bytes or str, not {type(content).__name__}",
                field="files",
            )
        out.append((path, data))
    return out


class _TextSink:
    """Turns output chunks (bytes) into text for a callback, never splitting a character."""

    def __init__(self, callback: OutputCallback, dispatch: Optional[Callable[..., Any]] = None) -> None:
        self._callback = callback
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._dispatch = dispatch
        self.pending: List[Awaitable[Any]] = []

    def _deliver(self, text: str) -> None:
        if not text:
            return
        out = self._callback(text)
        if inspect.isawaitable(out):
            if self._dispatch is None:
                if inspect.iscoroutine(out):
                    out.close()
                raise TypeError("an async output callback needs `await Scheduler.run(...)`, not a blocking run")
            self.pending.append(asyncio.ensure_future(out))

    def feed(self, chunk: bytes) -> None:
        text = self._decoder.decode(chunk)
        if text:
            if self._dispatch is not None:
                self._dispatch(self._deliver, text)
            else:
                self._deliver(text)

    def close(self) -> None:
        self._deliver(self._decoder.decode(b"", final=True))


async def settled(start: Callable[[Callable[[bool, Any], None]], "_airlock.Pending"]) -> Any:
    """Awaits work that ``start(on_done)`` began on the engine, without blocking the event
    loop; cancelling the awaiting task cancels the work (a run's sandbox is killed)."""
    loop = asyncio.get_running_loop()
    fut: "asyncio.Future[Any]" = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def on_done(ok: bool, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop is closed: nobody waits for this any more
            pass

    pending = start(on_done)
    try:
        return await fut
    except asyncio.CancelledError:
        pending.cancel()
        raise


async def streamed(
    on_stdout: Optional[OutputCallback],
    on_stderr: Optional[OutputCallback],
    go: Callable[[Optional[Callable[[bytes], None]], Optional[Callable[[bytes], None]]], Awaitable[Any]],
) -> Any:
    """Awaits ``go(feed_stdout, feed_stderr)``, passing output to the callbacks as text on the
    event loop's thread; async callbacks are awaited before this returns."""
    loop = asyncio.get_running_loop()

    def on_loop(fn: Callable[..., Any], *args: Any) -> None:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass

    sinks = [_TextSink(cb, on_loop) if cb is not None else None for cb in (on_stdout, on_stderr)]
    value = await go(sinks[0].feed if sinks[0] else None, sinks[1].feed if sinks[1] else None)
    pending: List[Awaitable[Any]] = []
    for sink in sinks:
        if sink is not None:
            sink.close()
            pending.extend(sink.pending)
    if pending:
        await asyncio.gather(*pending)
    return value


class Scheduler:
    """Runs code in fresh sandboxes, from warm pools of pre-started ones.

    ::

        async with airlock.Scheduler() as s:
            r = await s.run("print(6 * 7)")
            assert r.stdout == "42\\n"

    ``Scheduler()`` (no config) shares the process-wide engine that ``@airlock.sandbox`` and
    :func:`airlock.run` use; ``Scheduler(SchedulerConfig(...))`` (or keyword arguments) makes
    its own, with its own pools, destroyed by :meth:`close` / leaving ``async with``. Every
    run gets a sandbox no other code has run in. Safe to use from many threads and many
    asyncio tasks at once; the GIL is released while a run is waited for.
    """

    def __init__(self, config: Union[SchedulerConfig, Mapping[str, Any], None] = None, **options: Any) -> None:
        if isinstance(config, Mapping):
            options = {**dict(config), **options}
            config = None
        if config is not None and not isinstance(config, SchedulerConfig):
            raise TypeError(f"config must be a SchedulerConfig or a dict, not {type(config).__name__}")
        if config is not None:
            options = {**{k: v for k, v in vars(config).items() if v is not None}, **options}
        unknown = set(options) - set(SchedulerConfig.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown Scheduler option(s): {', '.join(sorted(unknown))}")
        options = {k: v for k, v in options.items() if v is not None}
        if options:
            self._engine = _airlock.Engine(**options)
            self._owned = True
        else:
            self._engine = _airlock.default_engine()
            self._owned = False

    # -- context management

    async def __aenter__(self) -> "Scheduler":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __enter__(self) -> "Scheduler":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Destroys this scheduler's pre-started sandboxes (not the shared engine's)."""
        if self._owned:
            self._engine.close()

    async def aclose(self) -> None:
        """:meth:`close`, off the event loop."""
        if self._owned:
            await asyncio.get_running_loop().run_in_executor(None, self._engine.close)

    # -- running

    async def run(
        self,
        code: Union[str, bytes],
        language: str = "python",
        *,
        packages: Optional[Sequence[str]] = None,
        trust_packages: bool = False,
        timeout: float = 30,
        memory_mb: int = 512,
        network: str = "none",
        allowed_domains: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        files: Optional[Files] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> Result:
        """Runs ``code`` in a fresh sandbox and returns its :class:`Result`.

        Args:
            code: the program (``str`` or ``bytes``).
            language: ``"python"``, ``"javascript"`` or ``"shell"``.
            packages: pip specifiers (Python) or npm specs (JavaScript), installed once per
                set into a cached environment. A warm run finds them already imported, by a
                sandbox that serves only that run.
            trust_packages: explicit opt-in (Python): the packages are trusted, so they are
                imported once in a zygote that forks every run of this environment (hundreds
                of runs a second instead of a few). Their import-time code then runs in a
                process every such run passes through, and could carry data between runs.
            timeout: seconds (0.1–3600) before the run is killed (``status == "timeout"``).
            memory_mb: memory limit in MiB (at least 32).
            network: ``"none"`` (default), ``"allowlist"`` or ``"host"`` (weaker, explicit).
            allowed_domains: names the run may reach over HTTP(S) (``"*.example.com"``
                allowed); implies ``network="allowlist"``. Empty means no network.
            env: extra environment variables (loader and interpreter variables are refused).
            files: ``{relative path: contents}`` placed in ``/workspace`` before the run.
            on_stdout, on_stderr: called on the event loop's thread with each chunk of
                output as text, as it is produced (``async def`` callbacks are awaited before
                ``run`` returns).

        A failed program is a result (``status == "error"``, ``error`` parsed); failures of
        the call itself raise: :class:`InvalidRequestError`, :class:`DependencyInstallError`,
        :class:`SandboxUnavailableError`, :class:`SandboxInfrastructureError`,
        :class:`SandboxBusyError`. Cancelling the task kills the sandbox.
        """
        request = request_for(
            language=language,
            timeout=timeout,
            memory_mb=memory_mb,
            network=network,
            allowed_domains=allowed_domains,
            env=env,
            packages=packages,
            trust_packages=trust_packages,
        )
        code_bytes, file_list = _code_bytes(code), _files(files)
        d = await streamed(
            on_stdout,
            on_stderr,
            lambda out, err: settled(
                lambda done: self._engine.submit(request, code_bytes, done, file_list, out, err)
            ),
        )
        return Result._from_engine(d)

    def run_sync(
        self,
        code: Union[str, bytes],
        language: str = "python",
        *,
        packages: Optional[Sequence[str]] = None,
        trust_packages: bool = False,
        timeout: float = 30,
        memory_mb: int = 512,
        network: str = "none",
        allowed_domains: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        files: Optional[Files] = None,
        on_stdout: Optional[Callable[[str], Any]] = None,
        on_stderr: Optional[Callable[[str], Any]] = None,
    ) -> Result:
        """:meth:`run`, blocking (for threads and scripts). Callbacks are called from the
        thread that drains the sandbox's output, with the GIL held."""
        request = request_for(
            language=language,
            timeout=timeout,
            memory_mb=memory_mb,
            network=network,
            allowed_domains=allowed_domains,
            env=env,
            packages=packages,
            trust_packages=trust_packages,
        )
        sinks = [_TextSink(cb) if cb is not None else None for cb in (on_stdout, on_stderr)]
        d = self._engine.run(
            request,
            _code_bytes(code),
            _files(files),
            sinks[0].feed if sinks[0] else None,
            sinks[1].feed if sinks[1] else None,
        )
        for sink in sinks:
            if sink is not None:
                sink.close()
        return Result._from_engine(d)

    def session(
        self,
        language: str = "python",
        *,
        packages: Optional[Sequence[str]] = None,
        timeout: float = 30,
        memory_mb: int = 512,
        network: str = "none",
        allowed_domains: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        idle_timeout: float = 300,
        max_lifetime: float = 3600,
    ) -> "SessionStart":
        """A :class:`Session`: one sandbox whose state persists across calls, for a notebook
        or an agent's REPL. ``await scheduler.session(...)`` starts it;
        ``async with scheduler.session(...) as s:`` also closes it at the end.

        The arguments are :meth:`run`'s (Python only, so far); ``timeout`` is each call's
        default. ``idle_timeout`` (seconds, 0.1 up to ``max_lifetime``) closes a session left
        without calls; ``max_lifetime`` (1–86400 seconds) closes it whatever it is doing. A
        scheduler holds at most 8 sessions per core; one more raises
        :class:`SandboxBusyError`.
        """
        from ._session import SessionStart, _seconds

        request = request_for(
            language=language,
            timeout=timeout,
            memory_mb=memory_mb,
            network=network,
            allowed_domains=allowed_domains,
            env=env,
            packages=packages,
        )
        return SessionStart(
            self._engine,
            request,
            _seconds("idle_timeout", idle_timeout),
            _seconds("max_lifetime", max_lifetime),
        )

    async def prewarm(
        self,
        language: str = "python",
        count: int = 1,
        *,
        timeout: float = 30,
        memory_mb: int = 512,
        network: str = "none",
        env: Optional[Mapping[str, str]] = None,
        packages: Optional[Sequence[str]] = None,
        trust_packages: bool = False,
        wait: float = 30,
    ) -> int:
        """Pre-starts up to ``count`` sandboxes (at most the pool size) for runs of this
        shape and waits up to ``wait`` seconds for them (installing ``packages`` first if
        they are new). Returns how many are ready. Runs with a domain allowlist are not
        pooled. A shape no run could have raises ``InvalidRequestError`` naming the field."""
        request = request_for(
            language=language,
            timeout=timeout,
            memory_mb=memory_mb,
            network=network,
            env=env,
            packages=packages,
            trust_packages=trust_packages,
        )
        return await asyncio.get_running_loop().run_in_executor(None, self._engine.prewarm, request, count, wait)


def run(
    code: Union[str, bytes],
    language: str = "python",
    *,
    packages: Optional[Sequence[str]] = None,
    trust_packages: bool = False,
    timeout: float = 30,
    memory_mb: int = 512,
    network: str = "none",
    allowed_domains: Optional[Sequence[str]] = None,
    env: Optional[Mapping[str, str]] = None,
    files: Optional[Files] = None,
    on_stdout: Optional[Callable[[str], Any]] = None,
    on_stderr: Optional[Callable[[str], Any]] = None,
) -> Result:
    """Runs ``code`` in a fresh sandbox and blocks until it ends; see :meth:`Scheduler.run`
    for the arguments. Uses the process-wide engine; Ctrl-C stops the run.

    ::

        r = airlock.run("import sys; print(sys.version_info[:2])")
        print(r.status, r.stdout)
    """
    return Scheduler().run_sync(
        code,
        language,
        packages=packages,
        trust_packages=trust_packages,
        timeout=timeout,
        memory_mb=memory_mb,
        network=network,
        allowed_domains=allowed_domains,
        env=env,
        files=files,
        on_stdout=on_stdout,
        on_stderr=on_stderr,
    )
