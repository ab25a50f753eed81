"""Runs one ``@airlock.sandbox`` call inside a sandbox.

The host binds this directory read-only at ``/airlock/boot`` (on ``PYTHONPATH``) and its own
copy of cloudpickle at ``/airlock/lib/cloudpickle``, then runs, as the sandbox's program::

    import _airlock_runner
    _airlock_runner.main("<base64 of the call>")      # or main(path="/workspace/...")

``main`` loads the call — ``(function, args, kwargs)`` pickled by the host with that same
cloudpickle — runs it (awaiting it with ``asyncio.run`` when it is a coroutine function), and
writes one record in ``_airlock_codec``'s data-only format to the private result descriptor
(``AIRLOCK_RESULT_FD``): the return value (``V``), the exception (``E``), or why the value
cannot leave the sandbox (``U``). Then it exits at once: what the function left running
(threads, child processes) dies with the sandbox.

Nothing here is trusted by the host. The host only ever decodes the record with the
data-only decoder; a program that forges or garbles a record gets an error, not a foothold.
"""

import os
import sys

_LIB = "/airlock/lib"
_HEADER = b"AIRLOCK-CALL1 "
_OWN_FILES = (__file__, "/airlock/main.py")
_state = {}


def preload():
    """Imports what a call needs while a pre-started sandbox waits for its call."""
    _cloudpickle()
    import _airlock_codec  # noqa: F401
    import base64  # noqa: F401
    import traceback  # noqa: F401

    if _async_pool():
        import asyncio  # noqa: F401  (a coroutine function's call runs under asyncio.run)

    if os.getpid() == 1:
        # A zygote: its children share the sample call that `rehearse` decodes. A sandbox's
        # own program makes it only if it rehearses (a cold run never does).
        _state["sample"] = _sample_payload()
    _state["preloaded"] = True


def _sample_payload():
    """A call of `add(2, 3)` as the host would send it (made once, by `preload`): a nested
    function, so it travels by value as the caller's functions do."""
    import base64

    def add(a, b):
        return a + b

    call = {"fn": add, "args": (2, 3), "kwargs": {}, "is_async": False, "sources": {}}
    data = _HEADER + b"%d.%d\n" % sys.version_info[:2] + _cloudpickle().dumps(call)
    return base64.b64encode(data).decode()


def rehearse():
    """Goes through a call like the ones to come before any has arrived (the agent calls this
    while its sandbox waits): in a zygote's child, the interpreter state that compiling the
    call's program, decoding the call and encoding its result touch is then copied now, not
    while the caller waits. Nothing is written anywhere."""
    try:
        import base64

        import _airlock_codec as codec

        payload = _state.get("sample") or _sample_payload()
        _oom_record(codec)
        compile('import _airlock_runner\n_airlock_runner.main("%s")\n' % payload, _OWN_FILES[1], "exec")
        data = base64.b64decode(payload)
        _check_format(data)
        call = _cloudpickle().loads(memoryview(data)[data.index(b"\n") + 1 :])
        codec.encode_record(b"V", call["fn"](*call["args"], **call["kwargs"]))
        if _async_pool():
            # An event loop's first run costs more than a millisecond in a zygote's child; this
            # one pays it now, through the path the call's asyncio.run takes.
            import asyncio
            import warnings

            async def _noop():
                pass

            try:
                asyncio.run(_noop())
            finally:
                # asyncio.run leaves the policy marked as having had a loop set: the call's own
                # modules, imported before its loop starts, would then find no event loop where
                # a cold run's do. A fresh default policy is what a cold run starts with.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    asyncio.set_event_loop_policy(None)
    except Exception:
        pass


def _async_pool():
    """A pool of `async def` calls (the decorator sets this in their sandboxes' environment):
    only their sandboxes hold asyncio (about 5 MB more to fork and tear down per call)."""
    return os.environ.get("AIRLOCK_ASYNC_CALL") == "1"


def _oom_record(codec):
    """Written as is if encoding the real failure fails too (out of memory): built up front."""
    if "oom" not in _state:
        _state["oom"] = codec.encode_record(
            b"E",
            {"phase": "call", "type": "MemoryError", "module": "builtins", "message": "",
             "traceback": "MemoryError\n", "builtin": True, "args": ()},
        )


def _check_format(data):
    if not data.startswith(_HEADER) or b"\n" not in data[:64]:
        raise RuntimeError("the call is not in airlock's call format")
    version = data[len(_HEADER) : data.index(b"\n")].decode()
    mine = "%d.%d" % sys.version_info[:2]
    if version != mine:
        raise RuntimeError(
            f"the sandbox runs Python {mine} but the caller runs Python {version}: "
            "unset AIRLOCK_PYTHON (or point it at the caller's interpreter)"
        )


def _cloudpickle():
    cp = sys.modules.get("cloudpickle")
    if cp is None:
        # The host's own copy (the one that pickled the call), ahead of any other.
        sys.path.insert(0, _LIB)
        try:
            import cloudpickle as cp
        finally:
            try:
                sys.path.remove(_LIB)
            except ValueError:
                pass
    return cp


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _flush_and_exit(code):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    fast = sys.modules.get("_airlock_exit")  # in a zygote's child: see airlock's zygote.py
    if fast is not None:
        fast.now(code)
    os._exit(code)


def _trimmed_tb(tb):
    """The traceback from the first frame that is neither the runner's nor asyncio's."""
    skip = ()
    if "asyncio" in sys.modules:
        skip = (os.path.dirname(sys.modules["asyncio"].__file__) + os.sep,)
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name in _OWN_FILES or (skip and name.startswith(skip)):
            tb = tb.tb_next
            continue
        break
    return tb


def _exception_record(codec, e, phase):
    import traceback

    t = type(e)
    try:
        message = str(e)
    except BaseException:
        message = f"<unprintable {t.__name__}>"
    try:
        text = "".join(traceback.format_exception(t, e, _trimmed_tb(e.__traceback__)))
    except BaseException:
        text = f"{t.__qualname__}: {message}\n"
    module = getattr(t, "__module__", "") or ""
    builtin = module == "builtins" and issubclass(t, Exception)
    record = {
        "phase": phase,
        "type": getattr(t, "__qualname__", t.__name__),
        "module": module,
        "message": message,
        "traceback": text,
        "builtin": builtin,
        "args": None,
    }
    if builtin:
        try:
            codec.encode(tuple(e.args))
            record["args"] = tuple(e.args)
        except BaseException:
            pass
        if isinstance(e, OSError):
            for attr in ("errno", "strerror", "filename"):
                v = getattr(e, attr, None)
                if v is None or type(v) in (int, str):
                    record[attr] = v
    return codec.encode_record(b"E", record)


def _fail(fd, codec, e, phase):
    try:
        data = _exception_record(codec, e, phase)
    except BaseException:
        data = _state.get("oom") or b""
    _write_all(fd, data)
    _flush_and_exit(1)


def _result_fd():
    fd = int(os.environ.pop("AIRLOCK_RESULT_FD"))
    # A private, non-inheritable copy: child processes of the call never hold it.
    private = os.dup(fd)
    os.close(fd)
    return private


def main(payload=None, path=None):
    """Runs the call in ``payload`` (base64 text) or in the file at ``path``; never returns."""
    fd = _result_fd()
    import _airlock_codec as codec

    _oom_record(codec)
    try:
        if path is not None:
            with open(path, "rb") as f:
                data = f.read()
            try:
                os.unlink(path)
            except OSError:
                pass
        else:
            import base64

            data = base64.b64decode(payload)
        _check_format(data)
    except BaseException as e:
        _fail(fd, codec, e, "setup")
    try:
        call = _cloudpickle().loads(memoryview(data)[data.index(b"\n") + 1 :])
        del data
        for filename, text in (call.get("sources") or {}).items():
            import linecache

            linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        fn, args, kwargs = call["fn"], call["args"], call["kwargs"]
        is_async = call.get("is_async", False)
        del call
    except BaseException as e:
        _fail(fd, codec, e, "load")

    try:
        if is_async:
            import asyncio

            async def _call(f, a, k):
                return await f(*a, **k)

            value = asyncio.run(_call(fn, args, kwargs))
        else:
            value = fn(*args, **kwargs)
    except BaseException as e:
        _fail(fd, codec, e, "call")
    del fn, args, kwargs

    try:
        data = codec.encode_record(b"V", value)
    except codec.Unencodable as u:
        data = codec.encode_record(
            b"U", {"type": u.type_name, "path": u.path, "hint": u.hint, "reason": u.reason}
        )
        _write_all(fd, data)
        _flush_and_exit(1)
    except BaseException as e:
        _fail(fd, codec, e, "result")
    del value
    _write_all(fd, data)
    _flush_and_exit(0)
