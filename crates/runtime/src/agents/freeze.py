# airlock's freezer: "restore, not fork" (docs/security.md). It runs once per pool, in a sandbox
# built exactly as the pool's use-once sandboxes are, imports what their runs would, and freezes
# this process into the image on descriptor _AIRLOCK_IMAGE_FD (the jail's `freeze`, in
# /airlock/zygote.so), then exits. Each of the pool's sandboxes is then a fresh cold sandbox
# whose program, the restorer, rebuilds this process from the image and resumes it here, where
# `airlock_freeze` returns 1: it falls through to the agent below (appended to this file) and
# waits for its code. Nothing of one run reaches another: the image is read-only data, the
# same starting state for each, as if each had imported the packages itself.
# _AIRLOCK_PRELOAD, _AIRLOCK_PRELOAD_DISTS, _AIRLOCK_IMAGE_FD, _AIRLOCK_POOL_THREADS and
# _airlock_preload (preload.py) are defined above this text by the runtime.
import ctypes as _ctypes
import os as _os
import sys as _sys


def _airlock_unfreezable(parent):
    # What a restored process could not have as its frozen one did: another process (any
    # process of the sandbox but its init, the parent and this one: it stays in the freezer's
    # sandbox), or a descriptor an import opened (a restored process has only the ones its
    # sandbox gives it, and one it opens next would take that number). Returns why, or None.
    ours = {1, parent, _os.getpid()}
    if any(int(p) not in ours for p in _os.listdir("/proc") if p.isdigit()):
        return "an import started a process"
    # The listing's own descriptor is in the list, and closed by the time it is looked at.
    for fd in [int(f) for f in _os.listdir("/proc/self/fd")]:
        if fd > _AIRLOCK_IMAGE_FD:
            try:
                _os.fstat(fd)
            except OSError:
                continue
            return "an import left a descriptor open"
    return None


def _airlock_refuse(why):
    _os.write(2, ("airlock freezer: %s: not frozen\n" % why).encode(errors="backslashreplace"))
    _os._exit(124)


def _airlock_freeze():
    # The native thread pools an import starts are sized as in a use-once sandbox; a process
    # with more than one thread then is not frozen (its pool serves use-once sandboxes).
    _airlock_preload(_AIRLOCK_PRELOAD, _AIRLOCK_PRELOAD_DISTS, _AIRLOCK_POOL_THREADS)
    if len(_os.listdir("/proc/self/task")) != 1:
        _airlock_refuse("an import started a thread")
    lib = _ctypes.PyDLL("/airlock/zygote.so")
    for stream in (_sys.stdout, _sys.stderr):
        stream.flush()  # nothing buffered now may reach a run's output
    # Frozen in a child, so that the frozen process's pid (3) is never a restored one's (2):
    # libraries that reseed their random state when the pid changes (OpenSSL) then do so in
    # every run, as after a fork.
    parent = _os.getpid()
    child = _os.fork()
    if child != 0:
        _, status = _os.waitpid(child, 0)
        _os._exit(_os.waitstatus_to_exitcode(status) if _os.WIFEXITED(status) else 125)
    refusal = _airlock_unfreezable(parent)
    if refusal is not None:
        _airlock_refuse(refusal)
    frozen = lib.airlock_freeze(_AIRLOCK_IMAGE_FD)
    if frozen == 1:
        return lib  # a restored process, in a run's sandbox
    if frozen == 0:
        _os._exit(0)
    _airlock_refuse("cannot freeze this interpreter: %s" % (_os.strerror(-frozen) if frozen < 0 else frozen))


_airlock_serve_from(_airlock_freeze())
del _airlock_freeze
