"""Round-trip latency of a decorated call, `add(2, 3)`, against DESIGN §10's target (p50 <= 3 ms).

    python3 crates/python/bench/roundtrip.py [--runs 200] [--back-to-back] [--json]

By default each call finds a full warm pool whose interpreters have finished starting
(refilled off the clock, then `--settle` seconds), so what is measured is the round trip
itself: pickle the call, hand it to a pre-started sandbox, run it, decode the result. `--back-to-back` calls
without waiting, so refills compete with the calls (two cores). For comparison the script also
times `airlock.run("print(1)")` the same way, and the host-side share of a call. `--json` prints
the rows as one JSON object instead of a table (`airlock bench` runs this script that way).
"""

import argparse
import json
import statistics
import time

import airlock
from airlock._boot import _airlock_codec


@airlock.sandbox
def add(a, b):
    return a + b


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round((len(xs) - 1) * p))]


def measure(rows, runs, refill, settle):
    """Interleaves the rows (one call of each per round), so drift hits them alike."""
    samples = {name: [] for name, _, _ in rows}
    for _ in range(runs):
        for name, call, prewarm in rows:
            if refill:
                prewarm()
                time.sleep(settle)
            t = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - t) * 1e3)
    return samples


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--back-to-back", action="store_true")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument(
        "--settle",
        type=float,
        default=0.3,
        help="seconds to wait after the pool is full: a pool counts a sandbox as ready once it "
        "is built, while its interpreter may still be starting (importing site, preloading)",
    )
    a = ap.parse_args()
    refill = not a.back_to_back

    assert add(2, 3) == 5
    add.prewarm(2, 30)
    spec = add.__airlock__
    req_print = airlock._scheduler.request_for()
    engine = airlock._airlock.default_engine()
    engine.prewarm(req_print, 2, 30)

    floor = spec.request
    warm_add = lambda: add.prewarm(2, 30)  # noqa: E731
    rows = [
        ("@sandbox add(2, 3)", lambda: add(2, 3), warm_add),
        ('airlock.run("print(1)")', lambda: airlock.run("print(1)"), lambda: engine.prewarm(req_print, 2, 30)),
        ("`pass` in the decorator's shape", lambda: engine.run(floor, b"pass"), warm_add),
    ]
    samples = measure(rows, a.runs, refill, a.settle)

    # The host's own share: pickling the call, and decoding the result record.
    enc = []
    for _ in range(1000):
        t = time.perf_counter()
        spec.encode_call((2, 3), {})
        enc.append((time.perf_counter() - t) * 1e3)
    record = _airlock_codec.encode_record(b"V", 5)
    dec = []
    for _ in range(1000):
        t = time.perf_counter()
        _airlock_codec.decode_record(record)
        dec.append((time.perf_counter() - t) * 1e3)

    mode = "back to back" if a.back_to_back else f"full pool, settled {a.settle} s, before each call"
    table = [(name, samples[name]) for name, _, _ in rows]
    host = [("host: pickle the call", enc), ("host: decode the result", dec)]
    if a.json:
        stats = lambda xs: {"p50_ms": pct(xs, .5), "p90_ms": pct(xs, .9), "p99_ms": pct(xs, .99)}  # noqa: E731
        out = {
            "runs": a.runs,
            "mode": mode,
            "rows": [{"name": n, **stats(xs), "mean_ms": statistics.mean(xs)} for n, xs in table],
            "host": [{"name": n, **stats(xs)} for n, xs in host],
            "target": "decorated call add(2, 3) p50 <= 3 ms",
        }
        print(json.dumps(out))
        return
    print(f"{a.runs} runs each, {mode}")
    print(f"{'row':32} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, xs in table:
        print(f"{name:32} {pct(xs, .5):8.2f} {pct(xs, .9):8.2f} {pct(xs, .99):8.2f} {statistics.mean(xs):8.2f}")
    for name, xs in host:
        print(f"{name:32} {pct(xs, .5):8.3f} {pct(xs, .9):8.3f} {pct(xs, .99):8.3f}")
    print("target (DESIGN §10): decorated call add(2, 3) p50 <= 3 ms")


if __name__ == "__main__":
    main()
