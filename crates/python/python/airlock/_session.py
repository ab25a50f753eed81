"""``airlock.Session``: one sandbox that keeps its state across calls (DESIGN §4, §9)."""

from __future__ import annotations

from typing import Any, Awaitable, Generator, Optional, Union

from . import _airlock
from ._errors import InvalidRequestError
from ._result import Result
from ._scheduler import OutputCallback, _as_bytes, _code_bytes, settled, streamed


def _seconds(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidRequestError(f"invalid `{name}`: {v!r} is not a number of seconds", field=name)
    return float(v)


def _path(path: Any) -> str:
    if not isinstance(path, str):
        raise InvalidRequestError(f"invalid `path`: {path!r} is not a str", field="path")
    return path


class Session:
    """A sandbox that lives across calls: variables, imports, files and the working directory
    persist from one :meth:`run` to the next, as in a notebook kernel. Calls run one at a
    time (later ones wait). Made by :meth:`Scheduler.session`::

        async with airlock.Scheduler() as s, s.session() as session:
            await session.run("import math; x = math.pi")
            r = await session.run("print(round(x, 2))")   # r.stdout == "3.14\\n"
            await session.write_file("data.csv", b"a,b\\n1,2\\n")
            out = await session.read_file("/workspace/data.csv")

    The session is closed by :meth:`close` (or leaving ``async with``), after ``idle_timeout``
    seconds without a call, at ``max_lifetime``, or when a call times out, runs into the
    memory limit's kill or ends the interpreter (that call's result says so). Later calls
    raise :class:`SessionClosedError`. Other sessions and runs never see its state.
    """

    def __init__(self, handle: "_airlock.Session") -> None:
        self._handle = handle

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """Whether the session can no longer take calls."""
        return not self._handle.is_open

    async def run(
        self,
        code: Union[str, bytes],
        *,
        timeout: Optional[float] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> Result:
        """Runs ``code`` in the session and returns its :class:`Result` (only this call's
        output). ``timeout`` (seconds) overrides the session's for this call; a call that
        times out ends the session. An exception or ``sys.exit()`` in the code ends the call,
        not the session. Cancelling the awaiting task ends the session too."""
        t = None if timeout is None else _seconds("timeout", timeout)
        code_bytes = _code_bytes(code)
        d = await streamed(
            on_stdout,
            on_stderr,
            lambda out, err: settled(lambda done: self._handle.run(code_bytes, done, t, out, err)),
        )
        return Result._from_engine(d)

    async def write_file(self, path: str, data: Union[bytes, bytearray, memoryview, str]) -> None:
        """Writes ``data`` (``str`` is written as UTF-8) to ``path`` in the session; relative
        paths are under ``/workspace``, and missing directories are made. Up to 64 MiB."""
        contents = _as_bytes(data)
        if contents is None:
            raise InvalidRequestError(
                f"invalid `data`: expected bytes or str, not {type(data).__name__}", field="data"
            )
        name = _path(path)
        await settled(lambda done: self._handle.write_file(name, contents, done))

    async def read_file(self, path: str) -> bytes:
        """The bytes of the file at ``path`` in the session (relative paths are under
        ``/workspace``). Up to 64 MiB."""
        name = _path(path)
        data: bytes = await settled(lambda done: self._handle.read_file(name, done))
        return data

    def close(self) -> Awaitable[None]:
        """Ends the session at once (its sandbox is killed as this is called, awaited or not)
        and returns an awaitable that waits until nothing of it is left. Closing twice is
        fine."""
        self._handle.close_now()
        return settled(self._handle.close)


class SessionStart:
    """What :meth:`Scheduler.session` returns: ``await`` it for the :class:`Session`, or use
    it in ``async with``, which closes the session at the end."""

    def __init__(self, engine: "_airlock.Engine", request: "_airlock.Request", idle: float, lifetime: float) -> None:
        self._engine = engine
        self._request = request
        self._idle = idle
        self._lifetime = lifetime
        self._session: Optional[Session] = None

    async def _start(self) -> Session:
        handle = await settled(
            lambda done: self._engine.session(self._request, done, self._idle, self._lifetime)
        )
        return Session(handle)

    def __await__(self) -> Generator[Any, None, Session]:
        return self._start().__await__()

    async def __aenter__(self) -> Session:
        self._session = await self._start()
        return self._session

    async def __aexit__(self, *exc: Any) -> None:
        if self._session is not None:
            await self._session.close()
