"""``@airlock.sandbox`` end to end: real sandboxes, through the installed package."""

import asyncio
import functools
import hashlib
import os
import sys

import pytest

import airlock
import local_helpers


@airlock.sandbox
def add(a, b):
    """Adds two numbers."""
    return a + b


def test_add():
    assert add(2, 3) == 5


def test_wraps_metadata_is_preserved():
    assert add.__name__ == "add"
    assert add.__doc__ == "Adds two numbers."
    assert add.__qualname__ == "add"
    assert add.__module__ == __name__
    assert add.__wrapped__(2, 3) == 5  # the original, run locally
    assert callable(add.prewarm)


@airlock.sandbox(timeout=20)
def describe(a, b=2, *rest, c, d=4, **more):
    return {"a": a, "b": b, "rest": rest, "c": c, "d": d, "more": more}


def test_positional_and_keyword_arguments():
    assert describe(1, c=3) == {"a": 1, "b": 2, "rest": (), "c": 3, "d": 4, "more": {}}
    assert describe(1, 5, 6, 7, c=8, d=9, e=10) == {"a": 1, "b": 5, "rest": (6, 7), "c": 8, "d": 9, "more": {"e": 10}}


def test_missing_argument_is_the_remote_type_error():
    with pytest.raises(TypeError) as e:
        describe(1)
    assert isinstance(e.value, airlock.SandboxExecutionError)
    assert e.value.error_type == "TypeError"
    assert "'c'" in e.value.message


def test_closure():
    factor = 7
    offsets = {"x": 100}

    @airlock.sandbox
    def scaled(v):
        return v * factor + offsets["x"]

    assert scaled(3) == 121


def test_functions_and_classes_from_a_local_module_travel_by_value():
    @airlock.sandbox
    def use(p):
        return local_helpers.uses_helper(p.norm1()), type(p).__name__

    assert use(local_helpers.Point(2, -3)) == (51, "Point")


def test_a_local_module_function_decorated_directly():
    remote_scale = airlock.sandbox(local_helpers.scale)
    assert remote_scale(4) == 40


@airlock.sandbox
async def async_mul(a, b):
    await asyncio.sleep(0.01)
    return a * b


def test_async_function():
    assert asyncio.iscoroutinefunction(async_mul)
    assert asyncio.run(async_mul(6, 7)) == 42


def test_async_function_error():
    @airlock.sandbox
    async def boom():
        await asyncio.sleep(0)
        raise KeyError("missing")

    with pytest.raises(KeyError) as e:
        asyncio.run(boom())
    assert e.value.error_type == "KeyError"
    assert "asyncio" not in (e.value.traceback or "").split("raise KeyError")[0].split("boom")[0]


class _LoopAtLoad:
    """Unpickled in the sandbox as a call of asyncio.get_event_loop(), before the call's own
    loop starts, as a module the call imports might make at import time."""

    def __reduce__(self):
        return (asyncio.get_event_loop, ())


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="Python 3.14's get_event_loop makes no loop")
def test_an_async_call_in_a_rehearsed_sandbox_loads_as_in_a_cold_one():
    # Its pool's sandboxes run an event loop before the call arrives; that must leave nothing
    # that changes what the call's own code finds (asyncio.run would leave the policy marked
    # as having had a loop set, and get_event_loop() would then fail at load).
    @airlock.sandbox
    async def kind(loop):
        return type(loop).__name__

    assert kind.prewarm(1, 120) >= 1
    assert asyncio.run(kind(_LoopAtLoad())).endswith("EventLoop")


def test_recursion_runs_inside_the_one_sandbox():
    @airlock.sandbox
    def fact(n):
        import os

        return (n * fact(n - 1)[0] if n > 1 else 1), os.getpid()

    value, pid = fact(10)
    assert value == 3628800
    assert pid == 2  # all the recursion happened inside the sandbox (its program, under its init)


def test_error_surfaces_with_type_message_traceback_and_is_catchable_as_builtin():
    @airlock.sandbox
    def fails():
        raise ValueError("Test error")

    with pytest.raises(airlock.SandboxExecutionError) as e:
        fails()
    err = e.value
    assert err.error_type == "ValueError"
    assert err.message == "Test error"
    assert "Test error" in str(err)
    assert isinstance(err, ValueError)
    assert "raise ValueError" in err.traceback  # the source line travelled with the call
    assert "_airlock_runner" not in err.traceback
    assert isinstance(err.__cause__, Exception) and "Remote traceback" in str(err.__cause__)
    try:
        fails()
    except ValueError:
        pass


def test_custom_exception_type():
    @airlock.sandbox
    def fails():
        raise local_helpers.LocalError("custom")

    with pytest.raises(airlock.SandboxExecutionError) as e:
        fails()
    assert e.value.error_type == "LocalError"
    assert e.value.remote_module == "local_helpers"
    assert not isinstance(e.value, local_helpers.LocalError)  # never rebuilt from the sandbox's data


def test_every_builtin_exception_type_can_be_raised_as_itself():
    import builtins

    from airlock._errors import make_remote, remote_class

    for name in dir(builtins):
        t = getattr(builtins, name)
        if isinstance(t, type) and issubclass(t, Exception):
            cls = remote_class(t)
            exc = make_remote(cls, "m", error_type=name, traceback=None, hint=None, remote_module="builtins", result=None)
            assert isinstance(exc, airlock.SandboxExecutionError), name
            # ExceptionGroup needs its sub-exceptions to exist: it comes back as the base class.
            assert isinstance(exc, t) or name == "ExceptionGroup", name
            assert "m" in str(exc)


def test_system_exit_in_the_function_is_an_execution_error():
    @airlock.sandbox
    def leaves():
        raise SystemExit(3)

    with pytest.raises(airlock.SandboxExecutionError) as e:
        leaves()
    assert e.value.error_type == "SystemExit"


def test_os_exit_without_a_result():
    @airlock.sandbox
    def vanish():
        os._exit(0)

    with pytest.raises(airlock.SandboxExecutionError) as e:
        vanish()
    assert e.value.error_type == "NoResult"


def test_a_sandbox_killed_from_outside_says_so():
    import signal
    import threading
    import time

    @airlock.sandbox
    def waits():
        import ctypes
        import time

        ctypes.CDLL(None).prctl(15, b"victim-call", 0, 0, 0)
        time.sleep(30)

    def kill_its_init():
        # The call's process is named victim-call; its parent is the sandbox's init.
        for _ in range(3000):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        stat = f.read()
                except OSError:
                    continue
                if "(victim-call)" in stat:
                    os.kill(int(stat.rsplit(")", 1)[1].split()[1]), signal.SIGKILL)
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_its_init)
    killer.start()
    with pytest.raises(airlock.SandboxExecutionError) as e:
        waits()
    killer.join()
    assert e.value.error_type == "SandboxKilled"
    assert "init (pid 1) was killed by signal 9" in str(e.value)


def test_unencodable_result_is_a_serialization_error_with_a_hint():
    @airlock.sandbox
    def returns_object():
        class Thing:
            pass

        return {"ok": 1, "bad": Thing()}

    with pytest.raises(airlock.SerializationError) as e:
        returns_object()
    assert "Thing" in str(e.value)
    assert "result['bad']" in str(e.value)
    assert e.value.hint


def test_unpicklable_argument_is_a_serialization_error_before_anything_runs():
    import threading

    with pytest.raises(airlock.SerializationError) as e:
        add(threading.Lock(), 1)
    assert "add()" in str(e.value)


def test_ten_megabytes_of_bytes_come_back():
    @airlock.sandbox(memory_mb=256)
    def blob(n):
        import hashlib
        import os

        data = os.urandom(n)
        return data, hashlib.sha256(data).hexdigest()

    data, digest = blob(10 << 20)
    assert len(data) == 10 << 20
    assert hashlib.sha256(data).hexdigest() == digest


def test_large_arguments_travel_as_a_file():
    @airlock.sandbox(memory_mb=256)
    def digest(data):
        import hashlib

        return hashlib.sha256(data).hexdigest(), len(data)

    data = os.urandom(7 << 20)  # over the inline limit: sent as /workspace/.airlock/call.pkl
    assert digest(data) == (hashlib.sha256(data).hexdigest(), len(data))
    from airlock import _decorator

    # Served by an engine without pools: a pool keyed by this call's file would never be reused.
    assert _decorator._UNPOOLED and _decorator._UNPOOLED[0].warm_started() == 0


def test_prints_are_forwarded(capfd):
    @airlock.sandbox
    def chatty():
        import sys

        print("to stdout")
        print("to stderr", file=sys.stderr)
        return 1

    assert chatty() == 1
    out, err = capfd.readouterr()
    assert "to stdout" in out
    assert "to stderr" in err


def test_value_types():
    @airlock.sandbox
    def values():
        import datetime
        import decimal
        import pathlib
        import uuid

        return {
            "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "day": datetime.date(2024, 1, 2),
            "span": datetime.timedelta(seconds=90),
            "money": decimal.Decimal("1.10"),
            "id": uuid.UUID(int=5),
            "path": pathlib.Path("/workspace/x"),
            "c": 1 + 2j,
            "s": {1, 2},
            "fs": frozenset({"a"}),
            "ba": bytearray(b"xy"),
        }

    import datetime
    import decimal
    import pathlib
    import uuid

    assert values() == {
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "day": datetime.date(2024, 1, 2),
        "span": datetime.timedelta(seconds=90),
        "money": decimal.Decimal("1.10"),
        "id": uuid.UUID(int=5),
        "path": pathlib.Path("/workspace/x"),
        "c": 1 + 2j,
        "s": {1, 2},
        "fs": frozenset({"a"}),
        "ba": bytearray(b"xy"),
    }


def test_same_python_in_the_sandbox():
    @airlock.sandbox
    def version():
        import sys

        return tuple(sys.version_info[:3]), sys.implementation.name

    assert version() == (tuple(sys.version_info[:3]), sys.implementation.name)


def test_bad_arguments_fail_at_decoration_time():
    with pytest.raises(airlock.InvalidRequestError) as e:
        airlock.sandbox(memory_mb=1)(lambda: None)
    assert e.value.field == "memory"
    with pytest.raises(ValueError):
        airlock.sandbox(network="everything")(add.__wrapped__)
    with pytest.raises(airlock.InvalidRequestError):
        airlock.sandbox(env={"LD_PRELOAD": "/x.so"})(add.__wrapped__)
    with pytest.raises(TypeError):
        airlock.sandbox(functools.partial(print))


def test_env_reaches_the_sandbox():
    @airlock.sandbox(env={"GREETING": "hi"})
    def greet():
        import os

        return os.environ.get("GREETING")

    assert greet() == "hi"


# ---------------------------------------------------------------------------------------------
# With packages from the index


@pytest.mark.registry
def test_dependencies_requests_version():
    @airlock.sandbox(dependencies=["requests==2.31.0"])
    def version():
        import requests

        return requests.__version__

    assert version() == "2.31.0"


@pytest.mark.registry
def test_numpy_mean():
    @airlock.sandbox(dependencies=["numpy==1.26.4"])
    def mean(xs):
        import numpy as np

        return np.mean(np.array(xs))  # a numpy.float64: a float subclass, comes back as float

    got = mean([1, 2, 3, 4])
    assert got == 2.5 and type(got) is float


@pytest.mark.registry
def test_pandas_dataframe_as_dict_and_the_hint_for_a_raw_frame():
    @airlock.sandbox(dependencies=["pandas==2.2.3"], memory_mb=1024)
    def frame(rows):
        import pandas as pd

        df = pd.DataFrame(rows)
        df["total"] = df["a"] + df["b"]
        return df.to_dict(orient="list")

    assert frame([{"a": 1, "b": 2}, {"a": 3, "b": 4}]) == {"a": [1, 3], "b": [2, 4], "total": [3, 7]}

    @airlock.sandbox(dependencies=["pandas==2.2.3"], memory_mb=1024)
    def raw_frame():
        import pandas as pd

        return pd.DataFrame({"a": [1]})

    with pytest.raises(airlock.SerializationError) as e:
        raw_frame()
    assert "to_dict" in str(e.value)


def _runner_was_preloaded():
    import sys

    return sys.modules["_airlock_runner"]._state.get("preloaded", False)


@pytest.mark.parametrize(
    "deps",
    [
        None,  # a zygote's child
        pytest.param(["requests==2.31.0"], marks=pytest.mark.registry),  # a use-once sandbox
    ],
)
def test_a_call_finds_the_runner_loaded_before_it_arrived(deps):
    # The sandbox's program is pid 2 (airlock's init is pid 1): it must still preload, or
    # every call with dependencies pays for importing cloudpickle.
    probe = airlock.sandbox(dependencies=deps)(_runner_was_preloaded)
    assert probe.prewarm(1, 120) >= 1
    assert probe() is True


def _exits_fast():
    import sys

    return "_airlock_exit" in sys.modules


def test_a_call_from_a_zygote_child_exits_without_waiting_for_its_memory():
    # The runner ends a zygote child's call through the zygote's fast exit (its status reaches
    # the host before the child's memory is torn down); os._exit would cost every call about
    # 0.8 ms.
    probe = airlock.sandbox(_exits_fast)
    assert probe.prewarm(1, 120) >= 1
    assert probe() is True
    assert probe() is True  # and the next child, after that exit, serves as well


@pytest.mark.registry
def test_two_functions_share_one_environment():
    deps = ["requests==2.31.0"]

    @airlock.sandbox(dependencies=deps)
    def one():
        import requests

        return requests.__file__

    @airlock.sandbox(dependencies=list(deps), timeout=15)
    def two():
        import requests

        return requests.__file__

    assert one() == two()
    assert one().startswith("/opt/airlock/env/")
    r = airlock.run("import requests", packages=deps)
    assert r.ok and r.environment_cached is True


def test_a_missing_dependency_says_to_add_it():
    @airlock.sandbox
    def needs_numpy():
        import numpy

        return numpy.__version__

    with pytest.raises(ModuleNotFoundError) as e:
        needs_numpy()
    assert "numpy" in e.value.message
    assert e.value.hint and "numpy" in e.value.hint


def test_a_call_in_another_format_or_python_version_is_an_infrastructure_error():
    import base64

    from airlock import _airlock

    spec = add.__airlock__
    for header in (b"AIRLOCK-CALL1 2.7\n", b"NOT-A-CALL\n"):
        code = b'import _airlock_runner\n_airlock_runner.main("' + base64.b64encode(header + b"junk") + b'")\n'
        d = _airlock.default_engine().run(spec.request, code)
        with pytest.raises(airlock.SandboxInfrastructureError):
            spec.outcome(d)
