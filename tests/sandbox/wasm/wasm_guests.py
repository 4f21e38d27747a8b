"""WAT guests for the wasm backend tests: each one reaches one status or attacks one limit."""

from __future__ import annotations

import json

# Imports, a memory, and $write(fd, ptr, len) -> errno; data from offset 1024 on is free for replies.
_PRELUDE = """
 (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
 (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
 (memory (export "memory") 1)
 (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
   (i32.store (i32.const 0) (local.get $ptr))
   (i32.store (i32.const 4) (local.get $len))
   (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
"""


def _escape(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return "".join(f"\\{b:02x}" for b in raw)


def module(body: str, data: dict[int, str | bytes] | None = None) -> str:
    segments = "".join(f'\n (data (i32.const {at}) "{_escape(text)}")' for at, text in (data or {}).items())
    return f"(module {_PRELUDE}{segments}\n {body})"


def replying(reply: dict[str, object], log: dict[str, object] | None = None, exit_code: int = 0) -> str:
    """Writes ``reply`` as JSON on stdout (and ``log`` as a JSON line on stderr), then exits."""
    out = json.dumps(reply)
    err = json.dumps(log) + "\n" if log else ""
    body = f"""(func (export "_start")
   (drop (call $write (i32.const 1) (i32.const 1024) (i32.const {len(out.encode())})))
   (drop (call $write (i32.const 2) (i32.const 8192) (i32.const {len(err.encode())})))
   {f"(call $proc_exit (i32.const {exit_code}))" if exit_code else ""})"""
    return module(body, {1024: out, 8192: err})


def writing(stdout: bytes, stderr: bytes = b"") -> str:
    """Writes the given bytes verbatim to stdout and stderr, then returns from _start."""
    body = f"""(func (export "_start")
   (drop (call $write (i32.const 1) (i32.const 1024) (i32.const {len(stdout)})))
   (drop (call $write (i32.const 2) (i32.const 16384) (i32.const {len(stderr)}))))"""
    return module(body, {1024: stdout, 16384: stderr})


# Writes 64 KiB to stderr again and again.
STDERR_FLOOD = module(
    """(func (export "_start")
   (loop $l (drop (call $write (i32.const 2) (i32.const 0) (i32.const 65536))) (br $l)))"""
)

ECHO = module(
    """(func (export "_start") (local $n i32)
   ;; read up to 60000 bytes of stdin at 1024 and write them back: the reply is the invocation
   (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 60000))
   (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
   (drop (call $write (i32.const 1) (i32.const 1024) (i32.load (i32.const 8)))))"""
)

SILENT = module('(func (export "_start"))')

GARBAGE = module(
    """(func (export "_start") (drop (call $write (i32.const 1) (i32.const 1024) (i32.const 9))))""",
    {1024: "not json!"},
)

UNREACHABLE = module('(func (export "_start") unreachable)')

SPIN = module('(func (export "_start") (loop $l (br $l)))')

# Grows memory a page at a time until refused, then traps, like malloc returning NULL and abort().
GROW_UNTIL_REFUSED = module(
    """(func (export "_start")
   (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
   unreachable)"""
)

# Needs 1000 pages (62.5 MiB) before its first instruction.
BIG_MINIMUM = '(module (memory (export "memory") 1000) (func (export "_start")))'

# Writes 64 KiB to stdout again and again.
STDOUT_FLOOD = module(
    """(func (export "_start")
   (loop $l (drop (call $write (i32.const 1) (i32.const 0) (i32.const 65536))) (br $l)))"""
)


def _sleep(seconds: float) -> str:
    """One poll_oneoff on a relative clock subscription: the guest is blocked in a host call."""
    nanos = int(seconds * 1e9)
    return f"""
   ;; subscription at 64: userdata u64, tag u8 = 0 (clock), clock id u32 at +16, timeout u64 at +24,
   ;; precision u64 at +32, flags u16 at +40 (0: relative)
   (i64.store (i32.const 64) (i64.const 1))
   (i32.store8 (i32.const 72) (i32.const 0))
   (i32.store (i32.const 80) (i32.const 1))
   (i64.store (i32.const 88) (i64.const {nanos}))
   (i64.store (i32.const 96) (i64.const 0))
   (i32.store16 (i32.const 104) (i32.const 0))
   (drop (call $poll_oneoff (i32.const 64) (i32.const 256) (i32.const 1) (i32.const 512)))"""


def sleeping(seconds: float) -> str:
    """Sleeps in ``_start``, then replies."""
    return module(
        f"""(func (export "_start") {_sleep(seconds)}
   (drop (call $write (i32.const 1) (i32.const 1024) (i32.const 22))))""",
        {1024: '{"ran":true,"ok":true}'},
    )


def sleeping_start(seconds: float) -> str:
    """Sleeps in its start function: instantiating it (as an upload check does) blocks in a host call."""
    return module(f'(func $s {_sleep(seconds)}) (start $s) (func (export "_start"))')


# Its start function asks rh::http_request for a URL: a check links the HTTP functions as a run does
# (a module importing them is valid) and answers with an error, for no check has a network.
NET_START = """(module
 (import "rh" "http_request" (func $request (param i32 i32) (result i32)))
 (import "rh" "http_response" (func $response (param i32 i32) (result i32)))
 (memory (export "memory") 1)
 (data (i32.const 1024) "{\\"url\\":\\"http://127.0.0.1:9/x\\"}")
 (func $s (if (i32.eqz (call $request (i32.const 1024) (i32.const 30))) (then unreachable)))
 (start $s)
 (func (export "_start")))"""

# Hostile modules for validation (and for a run: refused, never a host fault).
UNKNOWN_IMPORT = '(module (import "env" "steal" (func)) (memory (export "memory") 1) (func (export "_start")))'
TRAPPING_START = '(module (memory (export "memory") 1) (func $s unreachable) (start $s) (func (export "_start")))'
SPINNING_START = '(module (memory (export "memory") 1) (func $s (loop $l (br $l))) (start $s) (func (export "_start")))'
HUGE_TABLE = '(module (memory (export "memory") 1) (table 10000000 funcref) (func (export "_start")))'
NO_START = '(module (memory (export "memory") 1) (func (export "run")))'


def nested_blocks(depth: int) -> bytes:
    """A binary module whose one function nests ``depth`` blocks (compile time and memory grow with it)."""
    import wasmtime

    body = "(block " * depth + ")" * depth
    return bytes(wasmtime.wat2wasm(f'(module (memory (export "memory") 1) (func (export "_start") {body}))'))


def empty_maps_reply(chunks: int) -> str:
    """A JSON reply whose output holds ``chunks`` x 20,000 empty maps (3 bytes each, a dict each)."""
    head, tail, chunk = b'{"ran":true,"ok":true,"output":{"o":[', b"{}]}}", b"{}," * 20_000
    body = f"""(func (export "_start") (local $i i32)
   (drop (call $write (i32.const 1) (i32.const 1024) (i32.const {len(head)})))
   (loop $l
     (drop (call $write (i32.const 1) (i32.const 2048) (i32.const {len(chunk)})))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br_if $l (i32.lt_u (local.get $i) (i32.const {chunks}))))
   (drop (call $write (i32.const 1) (i32.const 1536) (i32.const {len(tail)}))))"""
    return module(body, {1024: head, 1536: tail, 2048: chunk})
# Spend their CPU in the host's code behind a WASI call, where no fuel is charged: a few wasm
# instructions per call, so fuel alone would let them run until the wall clock.
RANDOM_GET_LOOP = """(module
 (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
 (memory (export "memory") 2)
 (func (export "_start") (loop $l (drop (call $random_get (i32.const 0) (i32.const 65536))) (br $l))))"""

CLOCK_TIME_LOOP = """(module
 (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
 (memory (export "memory") 1)
 (func (export "_start") (loop $l (drop (call $clock_time_get (i32.const 1) (i64.const 0) (i32.const 0))) (br $l))))"""

# Its start function burns CPU in random_get: an upload check must refuse it on its CPU, not its timeout.
RANDOM_GET_START = """(module
 (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
 (memory (export "memory") 2)
 (func $s (loop $l (drop (call $random_get (i32.const 0) (i32.const 65536))) (br $l)))
 (start $s)
 (func (export "_start")))"""
