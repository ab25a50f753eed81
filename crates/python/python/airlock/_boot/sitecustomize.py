"""airlock: preloads the call runner in a sandbox's first process.

This directory is on ``PYTHONPATH`` only inside sandboxes running ``@airlock.sandbox`` calls.
A pre-started sandbox imports this while it waits for its call, so the call itself does not
pay for importing cloudpickle. Only the sandbox's first interpreter preloads: a zygote (pid 1
of its sandbox) or a sandbox's program (pid 2, the child of airlock's init); any other Python
the call starts is left alone. Failing here is harmless: the runner imports what it needs
again when the call arrives.
"""

import os as _os

if _os.getpid() <= 2:
    try:
        import _airlock_runner

        _airlock_runner.preload()
    except Exception:
        pass
del _os
