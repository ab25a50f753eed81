"""``Scheduler.session``: state that persists across calls, files in and out, closing."""

import asyncio

import pytest

import airlock


def test_state_persists_between_calls_and_output_is_per_call():
    async def main():
        streamed = []
        async with airlock.Scheduler() as s, s.session() as session:
            first = await session.run("import json\nx = 41\nprint('one')")
            second = await session.run("print(json.dumps(x + 1))", on_stdout=streamed.append)
            failed = await session.run("raise ValueError('nope')")
            after = await session.run("print(x)")
            assert not session.closed
        assert session.closed
        return first, second, failed, after, streamed

    first, second, failed, after, streamed = asyncio.run(main())
    assert first.ok and first.stdout == "one\n" and first.pool == "warm"
    assert second.stdout == "42\n" and "".join(streamed) == "42\n"
    assert failed.status == "error" and failed.error.type == "ValueError"
    assert after.stdout == "41\n", "an exception ended the session"


def test_files_round_trip_as_bytes():
    async def main():
        s = airlock.Scheduler()
        session = await s.session()
        try:
            await session.write_file("in/data.bin", bytes(range(256)))
            await session.write_file("/tmp/note.txt", "héllo")
            r = await session.run(
                "d = open('in/data.bin', 'rb').read()\nopen('out.bin', 'wb').write(d[::-1])\nprint(open('/tmp/note.txt').read())"
            )
            back = await session.read_file("out.bin")
            with pytest.raises(airlock.InvalidRequestError) as e:
                await session.read_file("missing")
            with pytest.raises(airlock.InvalidRequestError):
                await session.write_file("x", 3)
            return r, back, e.value.field
        finally:
            await session.close()
            await session.close()  # twice is fine

    r, back, field = asyncio.run(main())
    assert r.stdout == "héllo\n", r.stderr
    assert back == bytes(range(256))[::-1]
    assert field == "path"


def test_a_timed_out_call_closes_the_session_and_later_calls_say_why():
    async def main():
        async with airlock.Scheduler() as s, s.session() as session:
            r = await session.run("while True: pass", timeout=0.5)
            assert session.closed
            with pytest.raises(airlock.SessionClosedError) as e:
                await session.run("print(1)")
            return r, e.value

    r, e = asyncio.run(main())
    assert r.status == "timeout"
    assert isinstance(e, airlock.SandboxError) and e.kind == "SessionClosed"
    assert "timeout" in str(e).lower() or "status" in str(e), str(e)


def test_sessions_are_isolated_from_each_other_and_from_runs():
    async def main():
        async with airlock.Scheduler() as s:
            a = await s.session()
            b = await s.session()
            await a.run("secret = 1\nopen('/workspace/a', 'w').write('a')\nopen('/tmp/a', 'w').write('a')")
            seen_b = await b.run(
                "import os\nprint('secret' in globals(), os.path.exists('/workspace/a'), os.path.exists('/tmp/a'))"
            )
            seen_run = await s.run("import os\nprint(os.path.exists('/workspace/a'), os.path.exists('/tmp/a'))")
            await a.close()
            await b.close()
            return seen_b, seen_run

    seen_b, seen_run = asyncio.run(main())
    assert seen_b.stdout == "False False False\n", seen_b
    assert seen_run.stdout == "False False\n", seen_run


def test_cancelling_a_call_closes_the_session():
    async def main():
        async with airlock.Scheduler() as s, s.session() as session:
            task = asyncio.ensure_future(session.run("import time\ntime.sleep(60)"))
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(100):
                if session.closed:
                    break
                await asyncio.sleep(0.05)
            assert session.closed
            with pytest.raises(airlock.SessionClosedError):
                await session.run("print(1)")

    asyncio.run(main())


def test_bad_session_arguments_name_the_field():
    async def main():
        async with airlock.Scheduler() as s:
            for kwargs, field in [
                ({"idle_timeout": "soon"}, "idle_timeout"),
                ({"idle_timeout": -1}, "idle_timeout"),
                ({"max_lifetime": 0}, "max_lifetime"),
                ({"language": "shell"}, "language"),
            ]:
                with pytest.raises(airlock.InvalidRequestError) as e:
                    await s.session(**kwargs)
                assert e.value.field == field, (kwargs, e.value)
            async with s.session() as session:
                with pytest.raises(airlock.InvalidRequestError) as e:
                    await session.run("print(1)", timeout="long")
                assert e.value.field == "timeout"
                assert (await session.run("print(2)")).stdout == "2\n"

    asyncio.run(main())


def test_a_cancelled_close_still_closes():
    async def main():
        async with airlock.Scheduler() as s:
            session = await s.session()
            closing = asyncio.ensure_future(session.close())
            closing.cancel()  # before its wait has even begun
            with pytest.raises(asyncio.CancelledError):
                await closing
            assert session.closed
            with pytest.raises(airlock.SessionClosedError) as e:
                await session.run("print(1)")
            return str(e.value)

    why = asyncio.run(main())
    assert "it was closed" in why
