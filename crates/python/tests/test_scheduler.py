"""``airlock.Scheduler`` and ``airlock.run``: results, streaming, errors, concurrency."""

import asyncio
import threading
import time

import pytest

import airlock


def test_blocking_run_returns_a_result_with_design_fields():
    r = airlock.run("import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert isinstance(r, airlock.Result)
    assert r.ok and r.status == "ok" and r.exit_code == 0 and r.signal is None
    assert r.stdout == "out\n" and r.stderr == "err\n"
    assert r.stdout_bytes == b"out\n"
    assert r.stdout_truncated is False and r.stderr_truncated is False
    assert r.error is None
    assert r.pool in ("warm", "cold")
    assert r.timing.total_ms > 0 and r.usage.cpu_ms >= 0
    assert r.environment is None and r.environment_cached is None
    d = r.to_dict()
    assert set(d) >= {"status", "exit_code", "signal", "stdout", "stderr", "stdout_truncated", "stderr_truncated",
                      "error", "timing", "usage", "pool", "environment"}


def test_a_failing_program_is_a_result_with_a_parsed_error():
    r = airlock.run("def f():\n    return 1 / 0\nf()")
    assert r.status == "error" and r.exit_code == 1
    assert r.error.type == "ZeroDivisionError"
    assert r.error.line == 2
    assert r.error.traceback


def test_other_languages():
    assert airlock.run("console.log(1 + 1)", "javascript").stdout == "2\n"
    assert airlock.run("echo $((6 * 7))", language="shell").stdout == "42\n"


def test_files_and_env():
    r = airlock.run(
        "import os\nprint(open('/workspace/data/in.txt').read(), os.environ['MODE'], open('b.bin','rb').read())",
        files={"data/in.txt": "hello", "b.bin": b"\x00\x01"},
        env={"MODE": "test"},
    )
    assert r.stdout == "hello test b'\\x00\\x01'\n", r.stderr


def test_timeout_is_a_result():
    t = time.monotonic()
    r = airlock.run("import time\ntime.sleep(30)", timeout=1)
    assert r.status == "timeout"
    assert time.monotonic() - t < 5
    assert r.error.type == "Timeout"


def test_invalid_requests_raise_naming_the_field():
    with pytest.raises(airlock.InvalidRequestError) as e:
        airlock.run("print(1)", timeout=0)
    assert e.value.field == "timeout"
    with pytest.raises(airlock.InvalidRequestError) as e:
        airlock.run("print(1)", language="cobol")
    assert e.value.field == "language"
    with pytest.raises(ValueError):
        airlock.run("print(1)", env={"LD_PRELOAD": "x"})
    with pytest.raises(airlock.InvalidRequestError):
        airlock.run("print(1)", packages=["--index-url=http://evil/"])
    with pytest.raises(airlock.InvalidRequestError) as e:
        airlock.run("print(1)", trust_packages="yes")
    assert e.value.field == "trust_packages"


@pytest.mark.registry
def test_a_missing_package_version_is_a_dependency_install_error():
    with pytest.raises(airlock.DependencyInstallError) as e:
        airlock.run("print(1)", packages=["requests==0.0.0.999"])
    assert "requests" in str(e.value)


def test_async_scheduler_streams_chunks_as_they_are_produced():
    async def main():
        seen = []
        started = time.monotonic()

        def on_stdout(text):
            seen.append((time.monotonic() - started, text))

        errs = []
        async with airlock.Scheduler() as s:
            r = await s.run(
                "import sys, time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')\nprint('e', file=sys.stderr)",
                on_stdout=on_stdout,
                on_stderr=errs.append,
            )
        ended = time.monotonic() - started
        return r, seen, errs, ended

    r, seen, errs, ended = asyncio.run(main())
    assert r.ok
    assert "".join(t for _, t in seen) == "first\nsecond\n"
    assert seen[0][1].startswith("first")
    assert seen[0][0] < ended - 1.0, (seen, ended)  # delivered while the program still ran
    assert "".join(errs) == "e\n"


def test_async_callbacks_may_be_coroutines_and_run_on_the_loop_thread():
    async def main():
        got = []
        loop_thread = threading.get_ident()

        async def on_stdout(text):
            await asyncio.sleep(0)
            got.append((threading.get_ident() == loop_thread, text))

        async with airlock.Scheduler() as s:
            await s.run("print('x')", on_stdout=on_stdout)
        return got

    got = asyncio.run(main())
    assert got and all(on_loop for on_loop, _ in got)
    assert "".join(text for _, text in got) == "x\n"


def test_blocking_streaming_never_splits_a_character():
    chunks = []
    r = airlock.run(
        "import sys\nfor _ in range(2000):\n    sys.stdout.buffer.write('é✓'.encode()); sys.stdout.flush()",
        on_stdout=chunks.append,
    )
    assert r.ok
    assert "".join(chunks) == "é✓" * 2000
    assert "\ufffd" not in "".join(chunks)


def test_own_config_gets_its_own_pool_and_closes():
    async def main():
        cfg = airlock.SchedulerConfig(pool_size=1, max_concurrent=2)
        async with airlock.Scheduler(cfg) as s:
            assert await s.prewarm("python", 1) == 1
            r = await s.run("print(1)")
            assert r.pool == "warm" and r.stdout == "1\n"
        with pytest.raises(airlock.SandboxError):
            await s.run("print(1)")

    asyncio.run(main())


def test_max_pools_bounds_the_request_shapes_with_a_pool():
    async def main():
        async with airlock.Scheduler(pool_size=1, max_pools=1) as s:
            assert await s.prewarm("python", 1) == 1
            # A second shape finds no room while the first pool is in use: it runs cold.
            assert await s.prewarm("python", 1, memory_mb=256) == 0
            r = await s.run("print(1)", memory_mb=256)
            assert r.ok and r.pool == "cold"
            r = await s.run("print(1)")
            assert r.ok and r.pool == "warm"

    asyncio.run(main())


def test_unknown_config_is_refused():
    with pytest.raises(TypeError):
        airlock.Scheduler(pool_sizes=3)


def test_busy_when_the_queue_is_full():
    s = airlock.Scheduler(max_concurrent=1, max_queue=1, pool_size=0)
    try:
        results = []

        def run(i):
            try:
                results.append(s.run_sync("import time; time.sleep(1.5)"))
            except airlock.SandboxBusyError as e:
                results.append(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.1)
        for t in threads:
            t.join()
        assert any(isinstance(x, airlock.SandboxBusyError) for x in results), results
        assert any(isinstance(x, airlock.Result) and x.ok for x in results), results
    finally:
        s.close()


def test_cancelling_the_task_kills_the_sandbox():
    async def main():
        async with airlock.Scheduler() as s:
            task = asyncio.ensure_future(s.run("import time\ntime.sleep(30)"))
            await asyncio.sleep(0.5)
            task.cancel()
            t = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - t < 2
            # The engine still serves runs.
            assert (await s.run("print(2)")).stdout == "2\n"

    asyncio.run(main())


def test_the_gil_is_released_while_waiting():
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.01)

    t = threading.Thread(target=spin)
    t.start()
    try:
        airlock.run("import time\ntime.sleep(1)")
    finally:
        stop.set()
        t.join()
    assert len(ticks) > 30  # the other thread ran throughout the 1 s run


def test_ctrl_c_stops_a_blocking_run():
    import _thread

    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        airlock.run("import time\ntime.sleep(30)")
    assert time.monotonic() - t < 3
    assert airlock.run("print(3)").stdout == "3\n"
