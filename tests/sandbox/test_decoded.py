"""The decoded-size scan: an upper bound of what decoding really allocates, and the caps it enforces."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from rh_sandbox.classify import Ending, bounded_reply, classify, classify_reply
from rh_sandbox.decoded import (
    DECODE_TRANSIENT,
    MAX_CHARGE_PER_BYTE,
    MAX_DEPTH,
    DecodedTooLarge,
    json_cost,
    msgpack_cost,
)
from rh_sdk.protocol import Encoding, Reply, RunStatus, decode_reply, encode_reply

N = 20_000


def _chain(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"": value}
    return value


def _nested_lists(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


SHAPES: dict[str, Any] = {
    "empty maps": [{}] * N,
    "empty lists": [[]] * N,
    "one-entry maps": [{"a": 0}] * N,
    "maps of maps": [{"": {}}] * N,
    "distinct keys": [{f"k{i}": 0} for i in range(N)],
    "six-entry maps": [dict.fromkeys("abcdef", 0)] * N,
    "one big map": {f"k{i}": [] for i in range(N)},
    "small ints": [1] * N,
    "negative ints": [-20] * N,
    "big ints": [2**64 - 1] * N,
    "floats": [0.5] * N,
    "one-char strings": ["a"] * N,
    "astral strings": ["a" * 20 + "\U0001f600"] * N,
    "one-item lists": [[0]] * N,
    "realistic": [{"custom_id": f"req-{i:05}", "label": "positive", "score": 0.93} for i in range(N)],
    "chains of one-entry maps": [_chain(60)] * (N // 60),
}
COSTS: dict[Encoding, Callable[[bytes, int], int]] = {"msgpack": msgpack_cost, "json": json_cost}


def _encode(value: Any, encoding: Encoding) -> bytes:
    return encode_reply(Reply(ran=True, ok=True, output={"o": value}), encoding)


def _peak(call: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_charge_bounds_what_decoding_allocates(shape: str, encoding: Encoding) -> None:
    data = _encode(SHAPES[shape], encoding)
    charged = COSTS[encoding](data, 1 << 40)
    allocated = _peak(lambda: decode_reply(data, encoding))
    assert allocated <= charged + DECODE_TRANSIENT, f"{shape}: charged {charged}, allocated {allocated}"
    assert charged <= MAX_CHARGE_PER_BYTE[encoding] * len(data)  # what lets small replies skip the scan


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_four_mib_of_empty_maps_is_refused_in_bounded_memory(encoding: Encoding) -> None:
    data = _encode([{}] * (4 << 20), encoding)
    with pytest.raises(DecodedTooLarge, match="host memory once decoded"):
        bounded_reply(data, encoding, max_output_kb=len(data) // 1024 + 1)

    def refuse() -> None:
        with pytest.raises(DecodedTooLarge):
            bounded_reply(data, encoding, len(data) // 1024 + 1)

    peak = _peak(refuse)
    assert peak < 3 * len(data), f"{peak / 2**20:.1f} MiB to refuse {len(data) / 2**20:.1f} MiB"


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_a_well_behaved_reply_near_the_cap_decodes_unchanged(encoding: Encoding) -> None:
    data = _encode(SHAPES["realistic"] * 2, encoding)  # ~2 MB
    reply = bounded_reply(data, encoding, max_output_kb=len(data) // 1024 + 1)
    assert reply == decode_reply(data, encoding)


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
@pytest.mark.parametrize("path", ["scanned", "decoded, then walked"])
def test_nesting_is_capped_and_never_a_recursion_error(encoding: Encoding, path: str) -> None:
    def check(data: bytes) -> None:
        if path == "scanned":
            COSTS[encoding](data, 1 << 40)
        else:
            assert len(data) * MAX_CHARGE_PER_BYTE[encoding] < 24 * 1024 * 1024  # small: not scanned
            bounded_reply(data, encoding, 1024)

    check(_encode(_nested_lists(MAX_DEPTH - 3), encoding))  # reply, output, "o": three levels more
    check(_encode([_chain(MAX_DEPTH - 4)], encoding))
    with pytest.raises(DecodedTooLarge, match=f"deeper than {MAX_DEPTH}"):
        check(_encode(_nested_lists(MAX_DEPTH - 2), encoding))
    with pytest.raises(DecodedTooLarge, match=f"deeper than {MAX_DEPTH}"):
        check(_encode([_chain(MAX_DEPTH - 3)], encoding))
    json_prefix = b'{"ran":true,"ok":true,"output":{"o":'
    prefix = json_prefix if encoding == "json" else b"\x83\xa3ran\xc3\xa2ok\xc3\xa6output\x81\xa1o"
    with pytest.raises(DecodedTooLarge, match=f"deeper than {MAX_DEPTH}"):
        check(prefix + (b"[" if encoding == "json" else b"\x91") * 50_000)


def test_a_small_well_behaved_reply_is_decoded_unchanged() -> None:
    data = _encode(SHAPES["realistic"][:100], "msgpack")
    assert bounded_reply(data, "msgpack", 1024) == decode_reply(data, "msgpack")


def _ending(stdout: bytes, memory_measured: str | None = None) -> Ending:
    return Ending(stdout, None, 0, 10.0, 1000.0, output_limit_kb=1024, memory_measured=memory_measured)


def test_an_over_cap_reply_is_output_limit_naming_the_cap() -> None:
    data = _encode([{}] * 1_000_000, "msgpack")
    status, reply, error = classify(_ending(data), "msgpack")
    assert (status, reply) == (RunStatus.OUTPUT_LIMIT, None)
    assert error is not None and "the cap: 24 x max_output_kb=1024" in error and "once decoded" in error
    status, _, error = classify(_ending(_encode(_nested_lists(100), "msgpack")), "msgpack")
    assert (status, error) == (RunStatus.OUTPUT_LIMIT, "reply nests deeper than 64 levels (the cap on nesting)")


def test_a_reply_cannot_claim_the_memory_limit() -> None:
    claim = Reply(ran=True, ok=False, error="memory limit reached (killed by the OOM killer)", error_type="MemoryError")
    status, _, error = classify(_ending(msgspec.msgpack.encode(claim)), "msgpack")
    assert status is RunStatus.FAILED and error == claim.error
    status, _, error = classify_reply(claim, memory_measured="a measured peak of 120 MiB of the 128 MiB limit")
    assert status is RunStatus.MEMORY_LIMIT and error is not None and "measured peak of 120 MiB" in error


@pytest.mark.parametrize("header", [b"\xdb\xff\xff\xff\xf0", b"\xdd\xff\xff\xff\xf0", b"\xdf\xff\xff\xff\xf0"])
def test_a_truncated_header_claiming_billions_is_undecodable_not_over_a_cap(header: bytes) -> None:
    data = b"\x83\xa3ran\xc3\xa2ok\xc3\xa6output\x81\xa1o" + header + b"abc"
    status, _, error = classify(_ending(data), "msgpack")
    assert status is RunStatus.PROTOCOL_ERROR and error is not None and "truncated" in error
    assert msgpack_cost(data, 4096) < 4096  # the scan charges what is there, not what the header claims
