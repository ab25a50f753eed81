# airlock's Python zygote. It runs in a sandbox of its own, imports what every run of its
# environment would, never runs user code, and forks one child per run. The library
# /airlock/zygote.so (airlock's jail, built as a shared object) receives each run's
# descriptors, forks the run's process into the run's cgroup and fresh namespaces, mounts its
# own /tmp, /workspace, /dev/shm and /proc, applies Landlock, drops every capability and
# installs the run's seccomp filter. Only then does it return here, in the run's process alone,
# which falls through to the agent below (appended to this file) and waits for its code.
# _AIRLOCK_PRELOAD and _AIRLOCK_PRELOAD_DISTS, the modules and the distributions whose modules
# to import, and _airlock_preload (preload.py) are defined above this text by the runtime. The
# distributions are only ever the trusted packages of a request that said so
# (`trust_packages`): their import-time code runs here, in the process every run passes through.
import atexit as _atexit
import ctypes as _ctypes
import gc as _gc
import linecache as _linecache
import os as _os
import sys as _sys
import traceback as _traceback
import types as _types


def _airlock_children():
    try:
        with open("/proc/self/task/%d/children" % _os.getpid()) as f:
            return f.read().strip()
    except OSError:
        return ""  # a kernel without the file: the pid namespace holds what it started anyway


def _airlock_unforkable():
    # Only the forking thread survives a fork: a thread some import started could hold a
    # lock every child would then wait on forever. Nor may an import leave what every child
    # would share with every other: a process, or shared memory that can be written (a
    # module-level multiprocessing lock, an anonymous shared mmap, even one mapped read-only,
    # since any child may mprotect it writable). Only a shared mapping of a file on a read-only
    # mount (the gconv cache under /usr) can never be written. Returns why, or None.
    if len(_os.listdir("/proc/self/task")) != 1:
        return b"an import started a thread"
    if _airlock_children():
        return b"an import started a process"
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if "s" not in fields[1]:
                continue
            path = fields[5].rstrip("\n") if len(fields) > 5 else ""
            if not _airlock_read_only_file(path):
                return b"an import mapped shared memory that can be written"
    return None


def _airlock_read_only_file(path):
    # A real file (not shared memory: "/dev/zero (deleted)", "/memfd:...", "/SYSV...") on a
    # mount that is read-only.
    if not path.startswith("/") or path.endswith(" (deleted)") or path.startswith(("/memfd:", "/SYSV", "/dev/")):
        return False
    try:
        return bool(_os.statvfs(path).f_flag & _os.ST_RDONLY) and _os.path.isfile(path)
    except OSError:
        return False


def _airlock_zygote():
    lib = _ctypes.PyDLL("/airlock/zygote.so")
    # Bound once, here: between the before- and after-fork hooks no Python code may run (a
    # lookup allocates, and may collect), just as none runs inside os.fork.
    spawn = lib.airlock_zygote_spawn
    before, after_child, after_parent = (
        _ctypes.pythonapi.PyOS_BeforeFork,
        _ctypes.pythonapi.PyOS_AfterFork_Child,
        _ctypes.pythonapi.PyOS_AfterFork_Parent,
    )
    for hook in (before, after_child, after_parent):
        hook.restype = None
    if lib.airlock_zygote_init(3) != 0:
        _os._exit(121)
    # Native thread pools that start when their library loads (OpenBLAS under numpy, OpenMP)
    # would not survive the fork: they are held to the one thread that does, unless the
    # caller set their size.
    for name, error in _airlock_preload(_AIRLOCK_PRELOAD, _AIRLOCK_PRELOAD_DISTS, 1):
        # The supervisor logs the zygote's stderr; each run imports the module again itself.
        line = "airlock zygote: not preloaded: %s (%s)\n" % (name, error)
        _os.write(2, line.encode(errors="backslashreplace"))
    refusal = _airlock_unforkable()
    if refusal is not None:
        _os.write(2, refusal + b": this environment cannot be forked from\n")
        _os._exit(124)
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
        # The library forks the run's process itself (one copy of this memory, not two), so
        # Python's own fork hooks go around it as os.fork would put them: its locks, and the
        # at-fork callbacks (`random` reseeds in the child). Native at-fork handlers
        # (pthread_atfork) do not run: the fork is glibc's _Fork.
        before()
        child = spawn()
        if child == 0:
            after_child()
            return lib  # the run's process, isolated
        after_parent()
        # Otherwise the run is started, or it failed alone (said on its status pipe).


_airlock_serve_from(_airlock_zygote())
del _airlock_zygote
