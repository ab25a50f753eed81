# Imports a pooled sandbox's modules before its run arrives: the standard modules a zygote
# holds for every run, and the top-level modules of the distributions the run asked for, as
# their installed records name them. Read inside the sandbox, so nothing of an environment's
# files is parsed on the host. A module that fails to import is skipped: the run imports it
# again and reports its own error. What the imports print is not the run's output.
# Returns the (name, error) of each module that failed, for the zygote to log.

# The native thread pools that start when their library loads (OpenBLAS under numpy, OpenMP,
# MKL, numexpr) size themselves by the CPUs they see, not by the sandbox's CPU quota: under a
# one-core quota, a pool of every host core spins against the quota and makes an import of
# pandas take a third longer. During the imports, each variable the caller did not set holds
# them to `threads`; afterwards the run's environment is as it was.
_AIRLOCK_POOL_SIZES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def _airlock_top_level(metadata, dist):
    try:
        d = metadata.distribution(dist)
        names = (d.read_text("top_level.txt") or "").split()
        # RECORD (long for big distributions) only where there is no top_level.txt.
        files = () if names else (d.files or ())
    except Exception:
        return []
    if not names:
        for f in files:
            parts = f.parts
            if len(parts) == 1 and parts[0].endswith(".py"):
                names.append(parts[0][:-3])
            elif len(parts) == 2 and parts[1] == "__init__.py":
                names.append(parts[0])
    wanted = []
    for name in names:
        ok = name.isidentifier() and not name.startswith("_") and name not in ("test", "tests")
        if ok and name not in wanted:
            wanted.append(name)
    return wanted[:32]


def _airlock_preload(modules, dists, threads):
    import os
    import sys

    names = list(modules)
    if dists:
        try:
            from importlib import metadata
        except Exception:
            dists = ()
        for dist in dists:
            names.extend(_airlock_top_level(metadata, dist))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = (os.dup(1), os.dup(2))
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    failed = []
    ours = [v for v in _AIRLOCK_POOL_SIZES if v not in os.environ]
    for v in ours:
        os.environ[v] = str(threads)
    try:
        for name in names:
            try:
                __import__(name)
            except BaseException as e:
                try:
                    why = "%s: %r" % (type(e).__name__, str(e)[:300])
                except BaseException:
                    why = type(e).__name__  # an exception whose str() fails too
                failed.append((name, why))
    finally:
        for v in ours:
            os.environ.pop(v, None)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
    return failed


def _airlock_serve_from(lib):
    # In a run's process that did not start as one (a zygote's fork, a restored image): the
    # run's fast exit, at once, leaving the teardown of its memory to after the init has
    # reported its status (the jail's `exit_leaving_memory`); then fresh randomness, since the
    # state it starts from is every run's: `random` (which Python's after-fork hook reseeds in
    # a zygote's child too), numpy's global generator and OpenSSL's. OpenSSL 3 reseeds when it
    # sees the pid change; this is for one that counts forks in a native at-fork handler
    # instead, which the zygote's fork (glibc's `_Fork`) does not run.
    import os
    import sys

    fast = type(sys)("_airlock_exit")
    fast.now = lib.airlock_zygote_exit
    sys.modules["_airlock_exit"] = fast
    if "random" in sys.modules:
        sys.modules["random"].seed()
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            np.random.seed()
        except Exception:
            pass
    ssl = sys.modules.get("_ssl")
    if ssl is not None:
        try:
            ssl.RAND_add(os.urandom(48), 48.0)
        except Exception:
            pass
