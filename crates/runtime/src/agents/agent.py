# airlock's in-sandbox agent for pre-started Python sandboxes. It runs before any user code,
# waits for exactly one frame on the private control descriptor 3 (8-byte big-endian length,
# then the code), closes it, and runs the code as `python /airlock/main.py` would. The
# sandbox serves this one run and is destroyed; the run's exit status is the kernel's wait
# status of this process, which user code can neither read in advance nor forge for another run.
import atexit as _atexit
import linecache as _linecache
import os as _os
import sys as _sys
import traceback as _traceback
import types as _types


def _airlock_read_exactly(fd, n):
    chunks, got = [], 0
    while got < n:
        chunk = _os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            _os._exit(125)  # the supervisor went away before sending code
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _airlock_read_frame(fd):
    # Usually one read: the supervisor writes the length and the code at once.
    head = b""
    while len(head) < 8:
        chunk = _os.read(fd, 1 << 16)
        if not chunk:
            _os._exit(125)  # the supervisor went away before sending code
        head += chunk
    size = int.from_bytes(head[:8], "big")
    code = head[8:]
    if len(code) < size:
        code += _airlock_read_exactly(fd, size - len(code))
    return code[:size]


def _airlock_exit(status):
    # What interpreter shutdown does that a program can observe — joining non-daemon threads,
    # atexit handlers, flushing stdio — without tearing down every module: the sandbox is
    # destroyed right after, and the teardown would cost milliseconds per run.
    threading = _sys.modules.get("threading")
    try:
        if threading is not None:
            threading._shutdown()
    except BaseException:
        pass
    try:
        _atexit._run_exitfuncs()
    except BaseException:
        pass
    _airlock_flush_stdio()
    fast = _sys.modules.get("_airlock_exit")  # in a zygote's child (zygote.py)
    if fast is not None:
        fast.now(status)
    _os._exit(status)


def _airlock_warm_up(path):
    # The path every run takes, once before the code arrives: in a zygote's child this copies
    # the interpreter state it touches now rather than during the run.
    module = _types.ModuleType("__main__")
    module.__builtins__ = __builtins__
    exec(compile("pass", path, "exec"), module.__dict__)
    for stream in (_sys.stdout, _sys.stderr):
        stream.write("")
        stream.flush()
    # The decorator's call runner, when this sandbox preloaded it, goes through a call too.
    runner = _sys.modules.get("_airlock_runner")
    if runner is not None and hasattr(runner, "rehearse"):
        runner.rehearse()


def _airlock_run():
    path = "/airlock/main.py"
    _airlock_warm_up(path)
    _os.write(3, b"R")  # ready: the interpreter is up and waiting for its code
    code = _airlock_read_frame(3)
    _os.close(3)
    text = code.decode("utf-8", "surrogateescape")
    _linecache.cache[path] = (len(text), None, text.splitlines(True), path)
    main = _types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__
    _sys.modules["__main__"] = main
    _sys.argv = [path]
    try:
        exec(compile(code, path, "exec"), main.__dict__)
    except SystemExit as e:
        _airlock_exit(_airlock_exit_status(e))
    except BaseException as e:  # print as the interpreter would, without the agent's frame
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        try:
            _traceback.print_exception(type(e), e, tb)
        except BaseException:
            pass
        _airlock_exit(1)
    _airlock_exit(0)


_airlock_run()
