# airlock's in-sandbox agent for pre-started Python sandboxes. It runs before any user code,
# waits for exactly one frame on the private control descriptor 3 (8-byte big-endian length,
# then the code), closes it, and runs the code as `python /airlock/main.py` would. The
# sandbox serves this one run and is destroyed; the run's exit status is the kernel's wait
# status of this process, which user code can neither read in advance nor forge for another run.
import os as _os
import sys as _sys


def _airlock_read_exactly(fd, n):
    chunks, got = [], 0
    while got < n:
        chunk = _os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            _os._exit(125)  # the supervisor went away before sending code
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _airlock_run():
    size = int.from_bytes(_airlock_read_exactly(3, 8), "big")
    code = _airlock_read_exactly(3, size)
    _os.close(3)
    import linecache
    import types

    path = "/airlock/main.py"
    text = code.decode("utf-8", "surrogateescape")
    linecache.cache[path] = (len(text), None, text.splitlines(True), path)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__
    _sys.modules["__main__"] = main
    _sys.argv = [path]
    try:
        exec(compile(code, path, "exec"), main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:  # print as the interpreter would, without the agent's frame
        import traceback

        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        traceback.print_exception(type(e), e, tb)
        _sys.stderr.flush()
        raise SystemExit(1)


_airlock_run()
