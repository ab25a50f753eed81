# What airlock's Python agents share; each agent's file begins with this.
import sys as _sys


def _airlock_flush_stdio():
    for stream in (_sys.stdout, _sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _airlock_exit_status(e):
    # The exit status SystemExit(e.code) gives, as the interpreter computes it.
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=_sys.stderr)
    except BaseException:
        pass
    return 1


