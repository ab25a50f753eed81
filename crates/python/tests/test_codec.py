"""The data-only result format: round trips, and the host decoder against hostile input.

No sandbox is needed here: these test ``airlock._boot._airlock_codec`` directly. The decoder is
the trust boundary, so most of this file feeds it bytes an attacker controlling the sandbox
could send.
"""

import collections
import datetime as dt
import decimal
import enum
import os
import pathlib
import pickle
import random
import struct
import time
import uuid

import pytest

from airlock._boot import _airlock_codec as codec

ALLOWED = (
    type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset,
    dt.datetime, dt.date, dt.time, dt.timedelta, decimal.Decimal, uuid.UUID, pathlib.PosixPath,
)


def walk_types(v, seen=None):
    """Every type inside a decoded value."""
    out = {type(v)}
    if isinstance(v, dict):
        for k, x in v.items():
            out |= walk_types(k) | walk_types(x)
    elif isinstance(v, (list, tuple, set, frozenset)):
        for x in v:
            out |= walk_types(x)
    return out


def roundtrip(v):
    return codec.decode_record(codec.encode_record(b"V", v))[1]


SAMPLES = [
    None, True, False, 0, 1, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**400, -(10**400),
    0.0, -0.0, 1.5, float("inf"), 3 + 4j, "", "héllo ✓", "\ud800 lone surrogate", b"", b"\x00\xff" * 100,
    bytearray(b"abc"), [], [1, [2, [3]]], (), (1, "a", None), {}, {"a": 1, 2: [3], (1, 2): {"x": None}},
    set(), {1, 2, 3}, frozenset({"a", (1, 2)}), {frozenset({1}): "k"},
    dt.datetime(2024, 5, 6, 7, 8, 9, 123456), dt.datetime(2024, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
    dt.date(1999, 12, 31), dt.time(23, 59, 59, 999999), dt.time(1, 2, tzinfo=dt.timezone.utc),
    dt.timedelta(days=-3, seconds=5, microseconds=7), dt.timedelta.max, dt.timedelta.min,
    decimal.Decimal("3.14159265358979323846264338327950288"), decimal.Decimal("-Infinity"), decimal.Decimal("1E+999999"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"), pathlib.Path("/tmp/a b/c"), pathlib.Path("rel/x.txt"),
]


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_round_trip_of_every_allowed_type(value):
    got = roundtrip(value)
    assert type(got) is type(value)
    if isinstance(value, float) and value != value:
        assert got != got
    else:
        assert got == value


def test_nan_and_nested_structures():
    got = roundtrip({"nan": float("nan"), "deep": [[[[[[{"k": (1, 2.5, b"x")}]]]]]]})
    assert got["nan"] != got["nan"]
    assert got["deep"] == [[[[[[{"k": (1, 2.5, b"x")}]]]]]]


def test_subclasses_come_back_as_their_base_type():
    Pt = collections.namedtuple("Pt", "x y")

    class Color(enum.IntEnum):
        RED = 1

    class S(str):
        pass

    class F(float):
        pass

    value = {
        "nt": Pt(1, 2),
        "od": collections.OrderedDict(a=1),
        "dd": collections.defaultdict(list, b=[1]),
        "counter": collections.Counter("aab"),
        "enum": Color.RED,
        "str": S("s"),
        "float": F(2.5),
        "path": pathlib.PurePosixPath("/x"),
    }
    got = roundtrip(value)
    assert got == {"nt": (1, 2), "od": {"a": 1}, "dd": {"b": [1]}, "counter": {"a": 2, "b": 1}, "enum": 1,
                   "str": "s", "float": 2.5, "path": pathlib.Path("/x")}
    assert walk_types(got) <= set(ALLOWED)
    assert type(got["nt"]) is tuple and type(got["od"]) is dict and type(got["enum"]) is int


def test_unencodable_values_name_the_type_the_path_and_a_fix():
    class Thing:
        pass

    with pytest.raises(codec.Unencodable) as e:
        codec.encode({"rows": [1, 2, Thing()]})
    assert e.value.type_name.endswith("Thing")
    assert e.value.path == "result['rows'][2]"
    assert "vars(obj)" in e.value.hint

    @__import__("dataclasses").dataclass
    class DC:
        a: int

    with pytest.raises(codec.Unencodable) as e:
        codec.encode(DC(1))
    assert "dataclasses.asdict" in e.value.hint

    with pytest.raises(codec.Unencodable) as e:
        codec.encode((x for x in range(3)))
    assert "list(" in e.value.hint

    cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(codec.Unencodable) as e:
        codec.encode(cyclic)
    assert "itself" in e.value.reason

    deep = []
    for _ in range(codec.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(codec.Unencodable):
        codec.encode(deep)


def test_fake_pandas_and_numpy_types_get_their_conversion_hint():
    DataFrame = type("DataFrame", (), {"__module__": "pandas.core.frame"})
    ndarray = type("ndarray", (), {"__module__": "numpy"})
    assert 'to_dict(orient="list")' in codec.hint_for_type(DataFrame())
    assert "tolist()" in codec.hint_for_type(ndarray())


# ---------------------------------------------------------------------------------------------
# Hostile input


def expect_decode_error(data, **kw):
    with pytest.raises(codec.DecodeError):
        codec.decode_record(data, **kw)


def rec(body):
    return codec.MAGIC + b"V" + body


def test_a_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps(Evil())
    # Control: unpickling it on the host really would run the command.
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()
    for data in (payload, codec.MAGIC + b"V" + payload, codec.MAGIC + b"E" + payload):
        expect_decode_error(data)
    assert not marker.exists()


def test_malformed_headers_tags_lengths_and_trailing_bytes():
    for data in (b"", b"AIRLOCK", b"AIRLOCK2V" + b"N", codec.MAGIC, codec.MAGIC + b"X" + b"N", rec(b""),
                 rec(b"N" + b"N"), rec(b"?"), rec(b"\xff"), rec(b"i\x00"), rec(b"s" + struct.pack(">I", 5) + b"abc"),
                 rec(b"l" + struct.pack(">I", 3) + b"N"), rec(b"d" + struct.pack(">I", 1) + b"N"),
                 rec(b"s\x00\x00\x00\x02\xc3\x28"), rec(b"I" + struct.pack(">I", 0)), rec(b"D\x05bogus"),
                 rec(b"R" + struct.pack(">qqq", 10**12, 0, 0)), rec(b"X\x00\x00\x00\x03abc")):
        expect_decode_error(data)


def test_huge_declared_lengths_fail_fast_without_allocating():
    t = time.perf_counter()
    for tag in b"sbaIX":
        expect_decode_error(rec(bytes([tag]) + struct.pack(">I", 0xFFFFFFFF) + b"x"))
    for tag in b"ltSZd":
        expect_decode_error(rec(bytes([tag]) + struct.pack(">I", 0xFFFFFFFF) + b"N" * 10))
    assert time.perf_counter() - t < 0.5


def test_deep_nesting_is_refused_without_recursion():
    one_level = b"l" + struct.pack(">I", 1)
    expect_decode_error(rec(one_level * 1_000_000 + b"N"))
    ok = rec(one_level * (codec.MAX_DEPTH - 1) + b"N")
    v = codec.decode_record(ok)[1]
    depth = 0
    while isinstance(v, list):
        v, depth = v[0], depth + 1
    assert depth == codec.MAX_DEPTH - 1


def test_object_count_is_bounded():
    n = 1000
    data = rec(b"l" + struct.pack(">I", n) + b"N" * n)
    assert len(codec.decode_record(data)[1]) == n
    expect_decode_error(data, max_items=n)


def test_hash_collision_floods_are_refused_quickly():
    # Ints whose hashes are all equal (multiples of the hash modulus) would make building a
    # dict or set quadratic on the host.
    modulus = (1 << 61) - 1
    keys = [k * modulus for k in range(1, 20001)]
    assert len({hash(k) for k in keys}) == 1
    body = bytearray(b"d" + struct.pack(">I", len(keys)))
    sbody = bytearray(b"S" + struct.pack(">I", len(keys)))
    for k in keys:
        enc = codec.encode(k)
        body += enc + b"N"
        sbody += enc
    t = time.perf_counter()
    expect_decode_error(rec(bytes(body)))
    expect_decode_error(rec(bytes(sbody)))
    assert time.perf_counter() - t < 2.0
    # Many ordinary keys are fine.
    ordinary = {i: i for i in range(50_000)}
    assert roundtrip(ordinary) == ordinary


def test_unhashable_members_are_a_decode_error():
    lst = codec.encode([1])
    expect_decode_error(rec(b"S" + struct.pack(">I", 1) + lst))
    expect_decode_error(rec(b"d" + struct.pack(">I", 1) + lst + b"N"))
    expect_decode_error(rec(b"S" + struct.pack(">I", 1) + b"X" + struct.pack(">I", 4) + b"sNaN"))


def test_random_mutations_only_ever_raise_decode_error():
    rng = random.Random(1234)
    bases = [codec.encode_record(b"V", v) for v in SAMPLES] + [
        codec.encode_record(b"E", {"type": "ValueError", "message": "m", "traceback": "t", "args": ("m",)}),
    ]
    for _ in range(20_000):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            i = rng.randrange(len(data))
            if op < 0.5:
                data[i] = rng.randrange(256)
            elif op < 0.75:
                del data[i]
            else:
                data.insert(i, rng.randrange(256))
        try:
            kind, v = codec.decode_record(bytes(data))
        except codec.DecodeError:
            continue
        assert kind in (b"V", b"E", b"U")
        assert walk_types(v) <= set(ALLOWED), walk_types(v)


def test_random_bytes_only_ever_raise_decode_error():
    rng = random.Random(99)
    for _ in range(5_000):
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        try:
            _, v = codec.decode_record(codec.MAGIC + b"V" + body)
        except codec.DecodeError:
            continue
        assert walk_types(v) <= set(ALLOWED)
