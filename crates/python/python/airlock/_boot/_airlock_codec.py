"""airlock's data-only wire format for values coming *out* of a sandbox.

This file is the trust boundary of ``@airlock.sandbox``. The sandbox side (``encode``) turns a
return value into bytes; the host side (``decode``) turns bytes back into a value. Nothing from
a sandbox is ever unpickled on the host: ``decode`` reads a small tagged format and can only
construct

    None, bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset,
    datetime.datetime, datetime.date, datetime.time, datetime.timedelta, decimal.Decimal,
    uuid.UUID, pathlib.Path

— never a class named by the data, never a call of anything the data chooses. It is written
for hostile input: every length is checked against the bytes that remain, nesting depth,
total objects and integer sizes are bounded, it is iterative (a deep input cannot exhaust the
host's stack), it rejects trailing bytes, and large dicts and sets are checked for engineered
hash collisions (which would otherwise cost quadratic time on the host).

The file uses only the standard library: it is also bound read-only into sandboxes (as
``/airlock/boot/_airlock_codec.py``) for the encoder.

Format (version 1), all integers big-endian::

    record  := MAGIC kind value           kind: b"V" a return value, b"E" an exception,
                                                b"U" an unencodable value (see _airlock_runner)
    value   := tag payload
      N T F                               None, True, False
      i  int64                            int in [-2**63, 2**63)
      I  u32 n, n bytes                   any other int (two's complement)
      f  float64     c  float64 float64   float, complex
      s  u32 n, n bytes                   str (UTF-8, lone surrogates kept)
      b / a  u32 n, n bytes               bytes / bytearray
      l t S Z  u32 n, n values            list, tuple, set, frozenset
      d  u32 n, n (key, value) pairs      dict
      D A M  u8 n, n ASCII bytes          datetime, date, time (ISO 8601, as isoformat())
      R  int64 int64 int64                timedelta(days, seconds, microseconds)
      X  u32 n, n ASCII bytes             Decimal (its str())
      U  16 bytes                         UUID
      P  u32 n, n bytes                   pathlib.Path (os.fsencode of the path)
"""

import datetime as _dt
import decimal as _decimal
import os as _os
import pathlib as _pathlib
import struct as _struct
import uuid as _uuid

MAGIC = b"AIRLOCK1"

#: Deepest nesting of containers either side accepts.
MAX_DEPTH = 200
#: Most objects one decoded value may hold (containers and scalars together).
MAX_ITEMS = 10_000_000
#: Largest encoded integer, in bytes (about 2.5 million decimal digits).
MAX_INT_BYTES = 1 << 20
#: Largest input ``decode`` accepts; the runtime caps what a sandbox can send at the same.
MAX_INPUT = 256 << 20
#: Containers larger than this are checked for many keys sharing one hash value.
_COLLISION_CHECK_OVER = 1024
_MAX_SAME_HASH = 64

_I64 = _struct.Struct(">q")
_U32 = _struct.Struct(">I")
_F64 = _struct.Struct(">d")
_C128 = _struct.Struct(">dd")
_TD = _struct.Struct(">qqq")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class DecodeError(ValueError):
    """The bytes are not a well-formed value of this format (or exceed its limits)."""


class Unencodable(TypeError):
    """A value (somewhere inside the result) has no data-only encoding.

    ``type_name`` is its qualified type, ``path`` where it sits (``result['rows'][3]``),
    ``hint`` how to turn it into plain data.
    """

    def __init__(self, type_name, hint, reason=""):
        super().__init__(type_name)
        self.type_name = type_name
        self.hint = hint
        self.reason = reason
        self.steps = []

    @property
    def path(self):
        return "result" + "".join(reversed(self.steps))


# ---------------------------------------------------------------------------------------------
# Encoding (runs in the sandbox)


def _qualname(t):
    module = getattr(t, "__module__", None) or ""
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", "?")
    return name if module in ("builtins", "") else f"{module}.{name}"


def hint_for_type(value):
    """How to turn ``value`` into something ``encode`` accepts, as one sentence."""
    t = type(value)
    name = _qualname(t)
    module = (getattr(t, "__module__", "") or "").split(".")[0]
    if module == "pandas":
        if t.__name__ == "DataFrame":
            return 'return df.to_dict(orient="list") (or df.to_dict(orient="records")) instead of the DataFrame'
        if t.__name__ == "Series":
            return "return s.tolist() (or s.to_dict()) instead of the Series"
        if t.__name__ in ("Index", "RangeIndex", "MultiIndex", "DatetimeIndex"):
            return "return idx.tolist() instead of the Index"
        return f"convert the {t.__name__} to plain Python data (to_dict(), tolist() or str())"
    if module == "numpy":
        if t.__name__ == "ndarray":
            return "return arr.tolist() instead of the array"
        return f"return x.item() (a plain Python number) instead of the numpy {t.__name__}"
    if hasattr(value, "model_dump") and callable(getattr(value, "model_dump")):
        return "return obj.model_dump() instead of the model"
    if hasattr(t, "__dataclass_fields__"):
        return "return dataclasses.asdict(obj) instead of the dataclass instance"
    try:
        import enum

        if isinstance(value, enum.Enum):
            return "return member.value (or member.name) instead of the enum member"
    except Exception:
        pass
    if t.__name__ in ("generator", "async_generator", "map", "filter", "zip", "range"):
        return f"return list(...) of the {t.__name__} instead"
    if t.__name__ in ("dict_keys", "dict_values", "dict_items"):
        return f"return list(...) of the {t.__name__} instead"
    if t.__name__ in ("function", "builtin_function_or_method", "method", "type", "module"):
        return f"a {t.__name__} cannot leave the sandbox: return the data it computes instead"
    if isinstance(value, BaseException):
        return "raise the exception instead of returning it, or return str(exc)"
    if isinstance(value, memoryview):
        return "return bytes(view) instead of the memoryview"
    return (
        f"return plain data instead of the {name} (None, bool, int, float, complex, str, "
        "bytes, list, tuple, dict, set, datetime, Decimal, UUID or Path): for example "
        "vars(obj), str(obj) or a dict of its fields"
    )


def encode(value):
    """The encoding of ``value`` (without a record header), or ``Unencodable``."""
    out = bytearray()
    _encode(value, out, 0, set())
    return bytes(out)


def encode_record(kind, value):
    """A complete record: ``MAGIC``, the kind byte (``b"V"``, ``b"E"``, ``b"U"``), the value."""
    out = bytearray(MAGIC)
    out += kind
    _encode(value, out, 0, set())
    return bytes(out)


def _str_bytes(s):
    return s.encode("utf-8", "surrogatepass")


def _encode(v, out, depth, active):
    t = type(v)
    if v is None:
        out += b"N"
    elif v is True:
        out += b"T"
    elif v is False:
        out += b"F"
    elif t is int:
        _encode_int(v, out)
    elif t is str:
        b = _str_bytes(v)
        out += b"s"
        out += _U32.pack(len(b))
        out += b
    elif t is float:
        out += b"f"
        out += _F64.pack(v)
    elif t is bytes:
        out += b"b"
        out += _U32.pack(len(v))
        out += v
    elif t in (list, tuple, dict, set, frozenset):
        _encode_container(v, t, out, depth, active)
    else:
        _encode_other(v, t, out, depth, active)


def _encode_int(v, out):
    if _INT64_MIN <= v <= _INT64_MAX:
        out += b"i"
        out += _I64.pack(v)
        return
    n = (v.bit_length() + 8) // 8  # room for the sign bit
    if n > MAX_INT_BYTES:
        raise Unencodable("int", "return str(n) for an integer this large", "too large")
    out += b"I"
    out += _U32.pack(n)
    out += v.to_bytes(n, "big", signed=True)


def _encode_container(v, t, out, depth, active):
    if depth >= MAX_DEPTH:
        raise Unencodable(_qualname(t), "flatten the data", f"nested deeper than {MAX_DEPTH}")
    key = id(v)
    if key in active:
        raise Unencodable(_qualname(t), "return data without reference cycles", "it contains itself")
    active.add(key)
    try:
        if t is dict or isinstance(v, dict):
            items = list(dict.items(v))
            out += b"d"
            out += _U32.pack(len(items))
            for k, item in items:
                try:
                    _encode(k, out, depth + 1, active)
                except Unencodable as u:
                    u.steps.append(f"[key {k!r:.40}]")
                    raise
                try:
                    _encode(item, out, depth + 1, active)
                except Unencodable as u:
                    u.steps.append(f"[{k!r:.60}]")
                    raise
            return
        if t is list or isinstance(v, list):
            tag, items = b"l", list(v)
        elif t is tuple or isinstance(v, tuple):
            tag, items = b"t", tuple(v)
        elif t is frozenset or isinstance(v, frozenset):
            tag, items = b"Z", list(v)
        else:
            tag, items = b"S", list(v)
        out += tag
        out += _U32.pack(len(items))
        for i, item in enumerate(items):
            try:
                _encode(item, out, depth + 1, active)
            except Unencodable as u:
                u.steps.append(f"[{i}]" if tag in (b"l", b"t") else " (an element)")
                raise
    finally:
        active.discard(key)


def _ascii(tag, text, out):
    b = text.encode("ascii")
    out += tag
    out += bytes([len(b)])
    out += b


def _encode_other(v, t, out, depth, active):
    if isinstance(v, _dt.datetime):
        try:
            iso = _dt.datetime.isoformat(v)
        except Exception as e:
            raise Unencodable(_qualname(t), "return dt.isoformat() instead", str(e)) from None
        _ascii(b"D", iso, out)
    elif isinstance(v, _dt.date):
        _ascii(b"A", _dt.date.isoformat(v), out)
    elif isinstance(v, _dt.time):
        try:
            iso = _dt.time.isoformat(v)
        except Exception as e:
            raise Unencodable(_qualname(t), "return t.isoformat() instead", str(e)) from None
        _ascii(b"M", iso, out)
    elif isinstance(v, _dt.timedelta):
        out += b"R"
        out += _TD.pack(v.days, v.seconds, v.microseconds)
    elif isinstance(v, int):  # IntEnum, IntFlag and other int subclasses: the number
        _encode_int(int.__index__(v), out)
    elif isinstance(v, float):  # numpy.float64 and other float subclasses: the number
        out += b"f"
        out += _F64.pack(float(v))
    elif isinstance(v, complex):
        c = complex(v)
        out += b"c"
        out += _C128.pack(c.real, c.imag)
    elif isinstance(v, str):
        b = _str_bytes(str.__str__(v))
        out += b"s"
        out += _U32.pack(len(b))
        out += b
    elif isinstance(v, (bytes, bytearray)):
        out += b"a" if isinstance(v, bytearray) else b"b"
        b = bytes(v)
        out += _U32.pack(len(b))
        out += b
    elif isinstance(v, (list, tuple, dict, set, frozenset)):
        _encode_container(v, t, out, depth, active)
    elif isinstance(v, _decimal.Decimal):
        b = str(v).encode("ascii")
        out += b"X"
        out += _U32.pack(len(b))
        out += b
    elif isinstance(v, _uuid.UUID):
        out += b"U"
        out += v.bytes
    elif isinstance(v, _pathlib.PurePath):
        b = _os.fsencode(str(v))
        out += b"P"
        out += _U32.pack(len(b))
        out += b
    else:
        raise Unencodable(_qualname(t), hint_for_type(v), "not plain data")


# ---------------------------------------------------------------------------------------------
# Decoding (runs on the host: must be safe for any input)

_SCALAR_TAGS = frozenset(b"NTFiIfcsbaDAMRXUP")
_CONTAINER_TAGS = frozenset(b"ltSZd")


def decode_record(data, *, max_items=MAX_ITEMS):
    """``(kind, value)`` of a complete record; ``DecodeError`` for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) + 2 or not data.startswith(MAGIC):
        raise DecodeError("not an airlock result record (bad header)")
    kind = data[len(MAGIC) : len(MAGIC) + 1]
    if kind not in (b"V", b"E", b"U"):
        raise DecodeError(f"unknown record kind {kind!r}")
    return kind, decode(data, start=len(MAGIC) + 1, max_items=max_items)


def decode(data, *, start=0, max_items=MAX_ITEMS):
    """The value encoded in ``data[start:]`` (which must hold exactly one value)."""
    if not isinstance(data, bytes):
        data = bytes(data)
    n = len(data)
    if n > MAX_INPUT:
        raise DecodeError(f"input of {n} bytes exceeds {MAX_INPUT}")
    pos = start
    # One frame per open container: [tag, items still to read, items read so far].
    stack = []
    items = 0
    unpack_u32 = _U32.unpack_from

    while True:
        if pos >= n:
            raise DecodeError("truncated input")
        tag = data[pos]
        pos += 1
        items += 1
        if items > max_items:
            raise DecodeError(f"more than {max_items} objects")

        if tag in _CONTAINER_TAGS:
            if pos + 4 > n:
                raise DecodeError("truncated input")
            (count,) = unpack_u32(data, pos)
            pos += 4
            slots = count * 2 if tag == 0x64 else count  # 'd': keys and values
            if slots > n - pos:  # every value takes at least one byte
                raise DecodeError("container length exceeds the input")
            if slots == 0:
                value = _build(tag, [])
            else:
                if len(stack) >= MAX_DEPTH:
                    raise DecodeError(f"nested deeper than {MAX_DEPTH}")
                stack.append([tag, slots, []])
                continue
        elif tag in _SCALAR_TAGS:
            value, pos = _scalar(tag, data, pos, n)
        else:
            raise DecodeError(f"unknown tag 0x{tag:02x} at offset {pos - 1}")

        # Hand the finished value to its container; close every container it completes.
        while stack:
            frame = stack[-1]
            frame[2].append(value)
            frame[1] -= 1
            if frame[1]:
                break
            stack.pop()
            value = _build(frame[0], frame[2])
        else:
            if pos != n:
                raise DecodeError(f"{n - pos} trailing bytes after the value")
            return value


def _need(pos, k, n):
    if k > n - pos:
        raise DecodeError("truncated input")


def _scalar(tag, data, pos, n):
    if tag == 0x4E:  # N
        return None, pos
    if tag == 0x54:  # T
        return True, pos
    if tag == 0x46:  # F
        return False, pos
    if tag == 0x69:  # i
        _need(pos, 8, n)
        return _I64.unpack_from(data, pos)[0], pos + 8
    if tag == 0x66:  # f
        _need(pos, 8, n)
        return _F64.unpack_from(data, pos)[0], pos + 8
    if tag == 0x63:  # c
        _need(pos, 16, n)
        re, im = _C128.unpack_from(data, pos)
        return complex(re, im), pos + 16
    if tag == 0x52:  # R
        _need(pos, 24, n)
        days, seconds, micros = _TD.unpack_from(data, pos)
        try:
            value = _dt.timedelta(days=days, seconds=seconds, microseconds=micros)
        except (OverflowError, ValueError) as e:
            raise DecodeError(f"bad timedelta: {e}") from None
        return value, pos + 24
    if tag == 0x55:  # U
        _need(pos, 16, n)
        return _uuid.UUID(bytes=data[pos : pos + 16]), pos + 16
    if tag in (0x44, 0x41, 0x4D):  # D A M: u8 length
        _need(pos, 1, n)
        k = data[pos]
        pos += 1
        _need(pos, k, n)
        raw = data[pos : pos + k]
        pos += k
        try:
            text = raw.decode("ascii")
            if tag == 0x44:
                value = _dt.datetime.fromisoformat(text)
            elif tag == 0x41:
                value = _dt.date.fromisoformat(text)
            else:
                value = _dt.time.fromisoformat(text)
        except ValueError as e:
            raise DecodeError(f"bad date/time {raw[:40]!r}: {e}") from None
        return value, pos
    # Length-prefixed: I s b a X P
    _need(pos, 4, n)
    (k,) = _U32.unpack_from(data, pos)
    pos += 4
    _need(pos, k, n)
    raw = data[pos : pos + k]
    pos += k
    if tag == 0x73:  # s
        try:
            return raw.decode("utf-8", "surrogatepass"), pos
        except UnicodeDecodeError as e:
            raise DecodeError(f"bad UTF-8 in a string: {e}") from None
    if tag == 0x62:  # b
        return raw, pos
    if tag == 0x61:  # a
        return bytearray(raw), pos
    if tag == 0x49:  # I
        if k == 0 or k > MAX_INT_BYTES:
            raise DecodeError(f"integer of {k} bytes")
        return int.from_bytes(raw, "big", signed=True), pos
    if tag == 0x58:  # X
        try:
            return _decimal.Decimal(raw.decode("ascii")), pos
        except (UnicodeDecodeError, _decimal.InvalidOperation, ValueError) as e:
            raise DecodeError(f"bad Decimal {raw[:40]!r}: {e}") from None
    if tag == 0x50:  # P
        try:
            return _pathlib.Path(_os.fsdecode(raw)), pos
        except (ValueError, TypeError) as e:
            raise DecodeError(f"bad path: {e}") from None
    raise DecodeError(f"unknown tag 0x{tag:02x}")  # not reached


def _check_collisions(keys):
    counts = {}
    for k in keys:
        h = hash(k)
        c = counts.get(h, 0) + 1
        if c > _MAX_SAME_HASH:
            raise DecodeError(
                f"more than {_MAX_SAME_HASH} keys share one hash value (a hash-collision attack?)"
            )
        counts[h] = c


def _build(tag, items):
    try:
        if tag == 0x6C:  # l
            return items
        if tag == 0x74:  # t
            return tuple(items)
        if tag == 0x64:  # d
            keys = items[0::2]
            if len(keys) > _COLLISION_CHECK_OVER:
                _check_collisions(keys)
            return dict(zip(keys, items[1::2]))
        if len(items) > _COLLISION_CHECK_OVER:
            _check_collisions(items)
        if tag == 0x53:  # S
            return set(items)
        return frozenset(items)  # Z
    except TypeError as e:  # an unhashable key or element (a list in a set, say)
        raise DecodeError(f"bad container: {e}") from None
