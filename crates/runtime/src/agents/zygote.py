# airlock's Python zygote. It runs in a sandbox of its own, imports what every run of its
# environment would, never runs user code, and forks one child per run. The library
# /airlock/zygote.so (airlock's jail, built as a shared object) receives each run's
# descriptors and, in the child, moves it into the run's cgroup and fresh namespaces, mounts its
# own /tmp, /workspace, /dev/shm and /proc, applies Landlock, drops every capability and
# installs the run's seccomp filter. Only then does it return here, in the run's process alone,
# which falls through to the agent below (appended to this file) and waits for its code.
# _AIRLOCK_PRELOAD, the modules to import, is defined above this text by the runtime.
import atexit as _atexit
import ctypes as _ctypes
import gc as _gc
import linecache as _linecache
import os as _os
import sys as _sys
import traceback as _traceback
import types as _types


def _airlock_zygote():
    lib = _ctypes.PyDLL("/airlock/zygote.so")
    if lib.airlock_zygote_init(3) != 0:
        _os._exit(121)
    for name in _AIRLOCK_PRELOAD:
        try:
            __import__(name)
        except Exception:
            pass  # the run imports it again and reports its own error
    # What is imported now is shared with every child; a collection in a child would touch
    # (and so copy) all of it.
    _gc.collect()
    _gc.freeze()
    _os.write(3, b"R")
    while True:
        request = lib.airlock_zygote_next()
        if request == 0:
            _os._exit(0)  # the supervisor is gone
        if request < 0:
            _os._exit(122)
        for stream in (_sys.stdout, _sys.stderr):
            stream.flush()  # nothing buffered here may reach a child's output
        child = _os.fork()
        if child == 0:
            if lib.airlock_zygote_enter() != 0:
                _os._exit(123)
            return  # the run's process, isolated
        lib.airlock_zygote_adopt(child)


_airlock_zygote()
del _airlock_zygote
# Fresh randomness per run: the fork already reseeded `random`; a pre-imported numpy's global
# generator would otherwise be the same in every child.
_np = _sys.modules.get("numpy")
if _np is not None:
    try:
        _np.random.seed()
    except Exception:
        pass
del _np
