"""Many callers at once: threads and asyncio tasks, every answer its own."""

import asyncio
import concurrent.futures

import airlock


@airlock.sandbox
def square_with_pid(i):
    import os

    open("/tmp/me", "w").write(str(i))
    return i * i, open("/tmp/me").read(), os.getpid()


@airlock.sandbox
async def async_square(i):
    import asyncio

    await asyncio.sleep(0.01)
    return i * i


def test_twenty_calls_through_a_ten_thread_pool():
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(square_with_pid, range(20)))
    assert [r[0] for r in results] == [i * i for i in range(20)]
    assert [r[1] for r in results] == [str(i) for i in range(20)]  # each saw only its own /tmp
    assert all(r[2] == 2 for r in results)  # each in its own pid namespace (pid 1: its init)


def test_twenty_calls_through_asyncio_gather():
    async def main():
        return await asyncio.gather(*(async_square(i) for i in range(20)))

    assert asyncio.run(main()) == [i * i for i in range(20)]


def test_twenty_scheduler_runs_through_asyncio_gather():
    async def main():
        async with airlock.Scheduler() as s:
            return await asyncio.gather(*(s.run(f"print({i} * 2)") for i in range(20)))

    results = asyncio.run(main())
    assert [r.stdout for r in results] == [f"{i * 2}\n" for i in range(20)]
