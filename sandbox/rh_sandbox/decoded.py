"""Bound what a guest's bytes cost the host once decoded, before they are decoded.

Byte caps bound bytes, not objects: one byte of MessagePack (``0x80``, an empty map) becomes a
64-byte dict in the host, so a 4 MiB reply of empty maps took ~300 MiB. Before anything a guest wrote
is decoded, it is scanned here without building objects: the scan charges every value an upper bound
of what CPython and msgspec allocate for it (measured with tracemalloc: container headers, dict tables
and list slots, str and number objects) and stops as soon as the charge passes the budget or the
nesting passes :data:`MAX_DEPTH`. A decode that the scan admitted allocates at most what it was
charged (plus :data:`DECODE_TRANSIENT` while it runs), so host memory per run is O(limit): at most
:data:`DECODED_PER_BYTE` times the byte cap.

MessagePack is walked header by header in Python (strings and binaries are skipped by their length,
runs of one-byte values counted at C speed); JSON is measured with regex and counting passes over the
bytes. A reply small enough that no shape could pass the budget (:data:`MAX_CHARGE_PER_BYTE`) is not
scanned: it is decoded, and only its nesting is checked (:func:`nested_deeper`).
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

from rh_sdk.protocol import Encoding, Reply, decode_reply

__all__ = [
    "DECODED_PER_BYTE",
    "DECODE_TRANSIENT",
    "MAX_CHARGE_PER_BYTE",
    "MAX_DEPTH",
    "DecodedTooLarge",
    "decode_within",
    "json_cost",
    "msgpack_cost",
    "nested_deeper",
]

DECODED_PER_BYTE = 24  # decoded size charged per byte of the cap (dicts of short strings: ~6x real, ~15x charged)
MAX_DEPTH = 64  # containers inside containers, the outermost one included
DECODE_TRANSIENT = 64 * 1024  # msgspec's own buffers during one decode, freed when it returns
# The most any byte is charged, whatever the shape (a chain of one-entry maps 64 deep, for MessagePack;
# tests/sandbox/test_decoded.py holds every shape to it): bytes that fit the budget at this rate need
# no scan, only the nesting check after decoding.
MAX_CHARGE_PER_BYTE = {"msgpack": 160, "json": 80}

# What one value costs once decoded, in bytes: upper bounds of CPython 3.11 + msgspec, measured.
_STR = 64  # str header (49) rounded up to the allocator's 16; plus its characters
_NUMBER = 48  # int up to 64 bits (28-36) or float (24), rounded up
_BYTES = 48  # bytes header (33), plus its length
_EXT = 128  # msgspec.msgpack.Ext or datetime, plus its data
_EMPTY_DICT = 64
_DICT = 104  # dict object and keys-table header, without indices and entries
_DICT_ENTRY = 24
_LIST = 64  # list header; plus 8 per slot
_SLOT = 8
_JSON_LIST = 96  # msgspec's JSON arrays start with spare slots
_JSON_DICT = 160  # with 72 per entry: a bound of every dict size (232 bytes up to five entries)
_JSON_ENTRY = 72  # amortized over the table's growth and one resize
_JSON_SLOT = 16


class DecodedTooLarge(Exception):
    """What a guest wrote would pass a cap once decoded; ``str(exc)`` says which, ``too_deep`` too."""

    def __init__(self, message: str, *, too_deep: bool = False) -> None:
        super().__init__(message)
        self.too_deep = too_deep


def _dict_bytes(entries: int) -> int:
    """A dict of ``entries`` keys as CPython sizes it: a power-of-two table, two thirds usable."""
    if entries == 0:
        return _EMPTY_DICT
    size = 8
    while size * 2 // 3 < entries:
        size *= 2
    index_bytes = 1 if size <= 128 else 2 if size <= 1 << 16 else 4
    return _DICT + size * index_bytes + (size * 2 // 3) * _DICT_ENTRY


def _too_deep() -> DecodedTooLarge:
    return DecodedTooLarge(f"nests deeper than {MAX_DEPTH} levels", too_deep=True)


def _too_big(budget: int) -> DecodedTooLarge:
    return DecodedTooLarge(f"would take more than {budget} bytes of host memory once decoded")


# Header byte -> (kind, fixed size or length-field width). Kinds below; _FIXED: a number, nil or bool.
_FIXED, _STRING, _BINARY, _EXTENSION, _ARRAY, _MAP, _BAD = range(7)


def _header_table() -> list[tuple[int, int]]:
    table = [(_BAD, 0)] * 256
    for b in range(0x00, 0x80):
        table[b] = (_FIXED, 1)  # positive fixint: a cached small int
    for b in range(0x80, 0x90):
        table[b] = (_MAP, 0)
    for b in range(0x90, 0xA0):
        table[b] = (_ARRAY, 0)
    for b in range(0xA0, 0xC0):
        table[b] = (_STRING, 0)
    for b in range(0xE0, 0x100):
        table[b] = (_FIXED, 1)  # negative fixint
    table[0xC0] = table[0xC2] = table[0xC3] = (_FIXED, 1)  # nil, false, true
    for b, width in ((0xC4, 1), (0xC5, 2), (0xC6, 4)):
        table[b] = (_BINARY, width)
    for b, width in ((0xC7, 1), (0xC8, 2), (0xC9, 4)):
        table[b] = (_EXTENSION, width)
    for b, size in ((0xCA, 5), (0xCB, 9), (0xCC, 2), (0xCD, 3), (0xCE, 5), (0xCF, 9)):
        table[b] = (_FIXED, size)  # float32/64, uint8..64
    for b, size in ((0xD0, 2), (0xD1, 3), (0xD2, 5), (0xD3, 9)):
        table[b] = (_FIXED, size)  # int8..64
    for b, size in ((0xD4, 3), (0xD5, 4), (0xD6, 6), (0xD7, 10), (0xD8, 18)):
        table[b] = (_EXTENSION, -size)  # fixext 1..16: negative = whole size, no length field
    for b, width in ((0xD9, 1), (0xDA, 2), (0xDB, 4)):
        table[b] = (_STRING, width)
    for b, width in ((0xDC, 2), (0xDD, 4)):
        table[b] = (_ARRAY, width)
    for b, width in ((0xDE, 2), (0xDF, 4)):
        table[b] = (_MAP, width)
    return table


_HEADERS = _header_table()
_SMALL_DICTS = [_dict_bytes(n) for n in range(16)]
# What a fixed-size value costs decoded: nothing for nil, booleans and small ints (CPython caches them).
_FIXED_CHARGES = [0 if b < 0x80 or b in (0xC0, 0xC2, 0xC3) else _NUMBER for b in range(256)]
# (values to read, charge) of a map or array whose count is in its header byte (0x80-0x9F, by first - 0x80)
_FIX_CONTAINERS = [(2 * n, _SMALL_DICTS[n]) for n in range(16)] + [(n, _LIST + _SLOT * n) for n in range(16)]
# Header bytes that are a whole value by themselves (small int, nil, bool, empty map or array): from the
# fourth in a row, the run is counted at C speed. Negative fixints do not start a run, only join one.
_RUN_STARTERS = bytes(charge == 0 or b in (0x80, 0x90) for b, charge in enumerate(_FIXED_CHARGES))
_ONE_BYTE_VALUES = re.compile(rb"[\x00-\x80\x90\xc0\xc2\xc3\xe0-\xff]+")
# At the deepest level an empty map or array is one level too many: a run there stops before one.
_ONE_BYTE_SCALARS = re.compile(rb"[\x00-\x7f\xc0\xc2\xc3\xe0-\xff]+")
_NOT_NEGATIVE = bytes(range(0xE0))  # deleting these leaves the negative fixints


def _charge_run(data: bytes, pos: int, stop: int, cost: int, budget: int, deepest: bool) -> tuple[int, int]:
    """(end, cost) after the run of one-byte values at ``pos`` (up to ``stop``), counted at C speed:
    a reply of millions of empty maps or small ints must not take a loop turn per byte. ``deepest``:
    the run is at :data:`MAX_DEPTH`, where it ends before an empty container, which is too deep."""
    run = (_ONE_BYTE_SCALARS if deepest else _ONE_BYTE_VALUES).match(data, pos, stop)
    if run is None:  # only at the deepest level, on an empty map or array: one level too many
        raise _too_deep()
    end = run.end()
    empties = data.count(b"\x80", pos, end) + data.count(b"\x90", pos, end)
    negatives = data[pos:end].translate(None, _NOT_NEGATIVE) if data[pos] >= 0xE0 or empties < end - pos else b""
    cost += _EMPTY_DICT * empties + _NUMBER * len(negatives)
    if cost > budget:
        raise _too_big(budget)
    return end, cost


def _wide_container(data: bytes, pos: int, kind: int, width: int) -> tuple[int, int, int]:
    """(values to read, charge, position after the header) of a map or array with a count field
    (16 entries or more: rare enough to leave the hot loop)."""
    count = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
    pos += 1 + width
    count = min(count, len(data) - pos)  # every value takes a byte: msgspec refuses a short one
    if kind == _MAP:
        return 2 * count, _SMALL_DICTS[count] if count < 16 else _dict_bytes(count), pos
    return count, _LIST + _SLOT * count, pos


def _skip_blob(data: bytes, pos: int, kind: int, width: int) -> tuple[int, int]:
    """(charge, position after it) of the binary or extension value at ``pos``, skipped by its length
    (rare in replies: out of the hot loop)."""
    if width < 0:  # fixext: no length field, the whole size is in the header byte
        length, pos = -width - 2, pos - width
    else:
        length = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
        pos += 1 + width + (kind == _EXTENSION) + length  # an extension's type byte, then its data
    return (_BYTES if kind == _BINARY else _EXT) + min(length, len(data)), pos


def msgpack_cost(data: bytes, budget: int) -> int:
    """Upper bound of the host memory decoding ``data`` (one MessagePack value) takes, or
    :class:`DecodedTooLarge` as soon as it passes ``budget`` or :data:`MAX_DEPTH`. A malformed or
    truncated value ends the scan: msgspec then refuses it having built no more than was charged.

    The frequent values (numbers, strings, containers of up to 15 entries) are charged inline: a call
    per value would cost more than the charge. Runs, binaries and wide headers go to the helpers."""
    size = len(data)
    pos = 0
    cost = 0
    pending = [1]  # values still to read in each open container; the bottom one is the top level
    streak = 0  # one-byte values in a row
    headers, run_starters, fixed_charges, fix_containers = _HEADERS, _RUN_STARTERS, _FIXED_CHARGES, _FIX_CONTAINERS
    fixed, string, map_, array = _FIXED, _STRING, _MAP, _ARRAY  # locals: the hot loop
    while pending:
        if pending[-1] == 0:  # a container read to its end (or an empty one)
            pending.pop()
            continue
        if pos >= size:
            break
        first = data[pos]
        kind, width = headers[first]
        if not run_starters[first]:
            streak = 0
        elif streak < 3:
            streak += 1
        else:  # the fourth one-byte value in a row: the rest of the run at C speed
            stop, deepest = min(size, pos + pending[-1]), len(pending) > MAX_DEPTH
            end, cost = _charge_run(data, pos, stop, cost, budget, deepest)
            pending[-1] -= end - pos
            pos = end
            continue
        pending[-1] -= 1
        if kind == fixed:
            cost += fixed_charges[first]
            pos += width
        elif kind == string:
            if width == 0:
                length, pos = first & 0x1F, pos + 1
            else:
                length = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
                pos += 1 + width
            length = min(length, size - pos)  # a truncated one is refused by msgspec before it is built
            wide = not data[pos : pos + length].isascii()
            cost += _STR + (4 * length if wide else length)  # UCS-4 at worst
            pos += length
        elif kind in (map_, array):
            if width:
                values, charge, pos = _wide_container(data, pos, kind, width)
            else:
                (values, charge), pos = fix_containers[first - 0x80], pos + 1
            cost += charge
            if len(pending) > MAX_DEPTH:
                raise _too_deep()
            pending.append(values)  # an empty one is closed at the top of the loop
        elif kind != _BAD:  # a binary or an extension
            charge, pos = _skip_blob(data, pos, kind, width)
            cost += charge
        else:
            break  # 0xC1, never used: msgspec refuses it
        if cost > budget:
            raise _too_big(budget)
    return cost


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = [0] * 256
_BRACKET_STEP[ord("[")] = _BRACKET_STEP[ord("{")] = 1
_BRACKET_STEP[ord("]")] = _BRACKET_STEP[ord("}")] = -1


def json_cost(data: bytes, budget: int) -> int:
    """Upper bound of the host memory decoding ``data`` (JSON) takes, or :class:`DecodedTooLarge`.

    Strings are cut out first (so brackets inside them do not count); the rest is counted. On
    malformed JSON the counts only grow (a lone quote leaves a string's inside to be counted)."""
    rest, strings = _JSON_STRING.subn(b'"', data)
    string_bytes = len(data) - len(rest) + strings
    wide = not data.isascii() or b"\\u" in data  # a string with one astral character is UCS-4
    dicts, lists = rest.count(b"{"), rest.count(b"[")
    entries = rest.count(b":")
    # list slots: commas not between dict entries (a dict of n entries has n - 1), plus each list's first
    slots = max(0, rest.count(b",") - entries + dicts) + lists
    # numbers that are objects: floats, negatives, exponents, three digits or more (-5..256 are cached)
    exponents = rest.count(b"e") + rest.count(b"E") - rest.count(b"true") - rest.count(b"false")
    numbers = rest.count(b".") + rest.count(b"-") + exponents + rest.translate(_DIGITS_AS_ZERO).count(b"000")
    cost = (
        _JSON_DICT * dicts
        + _JSON_ENTRY * entries
        + _JSON_LIST * lists
        + _JSON_SLOT * slots
        + _STR * strings
        + (4 if wide else 1) * string_bytes
        + _NUMBER * numbers
    )
    if cost > budget:
        raise _too_big(budget)
    if dicts + lists > MAX_DEPTH:
        brackets = rest.translate(None, _NOT_BRACKETS)
        if max(accumulate(map(_BRACKET_STEP.__getitem__, brackets))) > MAX_DEPTH:
            raise _too_deep()
    return cost


def decode_within(data: bytes, encoding: Encoding, budget: int) -> Reply:
    """The reply in ``data``, decoded only when its decoded size is known to be within ``budget`` and
    its nesting within :data:`MAX_DEPTH`. Raises :class:`DecodedTooLarge` or msgspec's decode errors."""
    if len(data) * MAX_CHARGE_PER_BYTE[encoding] > budget:  # could pass the budget: scan first
        (json_cost if encoding == "json" else msgpack_cost)(data, budget)
        return decode_reply(data, encoding)
    try:
        reply = decode_reply(data, encoding)  # within the budget whatever its shape
    except RecursionError:
        raise _too_deep() from None
    if nested_deeper(reply.output, MAX_DEPTH - 1):  # the reply itself is the first level
        raise _too_deep()
    return reply


def nested_deeper(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether containers nest more than ``limit`` deep in a decoded ``value`` (itself level 1).
    Walks containers only, without recursion; for values small enough to be decoded unscanned."""
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        container, level = stack.pop()
        if level > limit:
            return True
        items = container.values() if isinstance(container, dict) else container
        stack.extend((item, level + 1) for item in items if type(item) in (dict, list))
    return False
