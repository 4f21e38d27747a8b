"""Host side of egress: one broker per run, on a unix socket that only that run's sandbox can reach.

For each connection the guest forwarder names a grant; the broker checks it against the run's grants,
resolves the name itself, refuses internal addresses the operator did not allow, connects to the vetted
address (never to the name again, so a DNS answer cannot change between check and use), replies
``OK`` or ``NO reason``, and splices bytes under a time and byte cap.

A connection is admitted against the run's caps (in flight, in total) by the accepting thread, before
it gets a thread of its own: a flood costs the host at most ``max_concurrent`` threads and
``max_connections`` records per run. Every admitted connection is recorded; the ones refused at the door
are counted, one record per reason with its ``count``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from rh_sandbox.egress.grants import Grant, GrantError, OperatorPolicy, check_grants, is_internal, parse_grant
from rh_sandbox.egress.plan import GUEST_SOCKET, plan_guest
from rh_sandbox.guest.forwarder import HEADER, splice

__all__ = ["ConnectionRecord", "EgressBroker", "EgressCaps", "EgressSetup", "Resolver", "system_resolver"]

Resolver = Callable[[str, int], list[str]]
_log = logging.getLogger("rh.egress")
_MAX_UNIX_PATH = 107


def system_resolver(host: str, port: int) -> list[str]:
    """The host's resolver: every TCP address of ``host``, in the order getaddrinfo gives them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class EgressCaps:
    """Per-run limits on egress; units in the names."""

    connect_timeout_seconds: float = 5.0
    connection_seconds: float = 60.0  # wall clock of one connection
    idle_seconds: float = 30.0
    max_bytes_per_connection: int = 64 * 1024 * 1024  # both directions together
    max_connections: int = 256  # admitted per run, whatever their outcome: each costs a thread and a record
    max_concurrent: int = 16  # admitted and not finished: the most threads one run's connections hold


class ConnectionRecord(msgspec.Struct, kw_only=True):
    """One connection as the host saw it; plain data for the run's outcome."""

    grant: str
    outcome: str  # "ok", "refused", "failed"
    reason: str | None = None  # why refused or failed, or how an ok connection ended
    address: str | None = None
    bytes_sent: int = 0  # guest -> target
    bytes_received: int = 0  # target -> guest
    wall_ms: float = 0.0
    count: int = 1  # >1: this many connections refused at the door for ``reason`` (not admitted, no thread)


@dataclass(frozen=True)
class EgressSetup:
    """What the isolation layer needs to wire a run's egress into its sandbox."""

    socket_path: Path  # host path of the broker socket: bind it at ``guest_socket``
    guest_socket: str
    hosts_path: Path  # generated /etc/hosts (host path): --ro-bind it at /etc/hosts
    nsswitch_path: Path  # generated /etc/nsswitch.conf ("hosts: files")
    hosts_text: str
    forwarder_config: dict[str, Any]  # JSON argument of guest_forwarder.start()


class _Refused(Exception):
    pass


class EgressBroker:
    """The host-side egress broker of one run. ``with EgressBroker(grants, policy) as b: b.start(dir)``."""

    def __init__(
        self,
        grants: Sequence[Grant],
        policy: OperatorPolicy,
        *,
        caps: EgressCaps | None = None,
        resolver: Resolver | None = None,
        guest_socket: str = GUEST_SOCKET,
        peer_check: Callable[[int], bool] | None = None,
    ) -> None:
        """``peer_check(pid)``: whether a connecting process (SO_PEERCRED) belongs to the run."""
        self.grants = check_grants(grants, policy)  # defence in depth: the host checked at upload too
        self.peer_check = peer_check
        self.policy = policy
        self.caps = caps or EgressCaps()
        self.resolver = resolver or system_resolver
        self.guest_socket = guest_socket
        self._records: list[ConnectionRecord] = []
        self._lock = threading.Lock()
        self._active: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._total = 0  # connections admitted
        self._in_flight = 0  # admitted and not finished
        self._turned_away: dict[str, int] = {}  # refused at the door: reason -> count
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self._acceptor: threading.Thread | None = None

    def __enter__(self) -> EgressBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, run_dir: Path) -> EgressSetup:
        """Listen on ``run_dir/egress.sock`` and write the guest's /etc files beside it.

        ``run_dir`` should be private to the host (0700): the socket is reachable only through the bind
        mount into this run's sandbox.
        """
        if self._server is not None:
            raise RuntimeError("broker already started")
        run_dir = Path(run_dir)
        path = run_dir / "egress.sock"
        if len(os.fsencode(path)) > _MAX_UNIX_PATH:
            raise GrantError(f"egress socket path too long for a unix socket: {path}")
        plan = plan_guest(self.grants, self.guest_socket)
        hosts_path, nsswitch_path = run_dir / "hosts", run_dir / "nsswitch.conf"
        for target, text in ((hosts_path, plan.hosts_text), (nsswitch_path, plan.nsswitch_text)):
            target.write_text(text, encoding="ascii")
            os.chmod(target, 0o644)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server.bind(str(path))
        os.chmod(path, 0o666)  # the sandbox uid connects through the bind mount; run_dir hides it otherwise
        server.listen(64)
        server.settimeout(0.2)
        self._server = server
        self._acceptor = threading.Thread(target=self._accept_loop, name="rh-egress-broker", daemon=True)
        self._acceptor.start()
        return EgressSetup(
            socket_path=path,
            guest_socket=self.guest_socket,
            hosts_path=hosts_path,
            nsswitch_path=nsswitch_path,
            hosts_text=plan.hosts_text,
            forwarder_config=plan.forwarder_config,
        )

    def close(self) -> None:
        """Stop accepting, cut every open connection, wait for the threads."""
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self._server is not None:
            path = self._server.getsockname()
            self._server.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
        with self._lock:
            active = list(self._active)
        for sock in active:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def connections(self) -> list[ConnectionRecord]:
        """Every admitted connection that has ended, then one record per reason connections were turned
        away for (with their ``count``)."""
        with self._lock:
            turned_away = [
                ConnectionRecord(grant="?", outcome="refused", reason=reason, count=count)
                for reason, count in self._turned_away.items()
            ]
            return [*self._records, *turned_away]

    def summary(self) -> list[dict[str, Any]]:
        """The connection log as builtins, for the run's outcome."""
        return msgspec.to_builtins(self.connections)

    def _accept_loop(self) -> None:
        server = self._server
        while server is not None and not self._stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            refusal = self._admit()
            if refusal is not None:
                self._turn_away(conn, refusal)
                continue
            thread = threading.Thread(target=self._handle, args=(conn,), name="rh-egress-conn", daemon=True)
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _admit(self) -> str | None:
        """Take a slot for one more connection, or say why there is none (the caps of the run)."""
        with self._lock:
            if self._total >= self.caps.max_connections:
                return f"connection cap reached ({self.caps.max_connections} per run)"
            if self._in_flight >= self.caps.max_concurrent:
                return f"too many concurrent connections (cap {self.caps.max_concurrent})"
            self._total += 1
            self._in_flight += 1
            return None

    def _turn_away(self, conn: socket.socket, reason: str) -> None:
        """Refuse without a thread: the answer fits an empty socket buffer, so the send cannot block."""
        with self._lock:
            first = reason not in self._turned_away
            self._turned_away[reason] = self._turned_away.get(reason, 0) + 1
        with contextlib.suppress(OSError):
            conn.setblocking(False)
            conn.send(b"NO " + reason.encode() + b"\n")
        conn.close()
        if first:  # one log line per reason and run, not one per connection of a flood
            _log.warning("egress refused: %s (further refusals for this reason are only counted)", reason)

    def _handle(self, conn: socket.socket) -> None:
        started = time.monotonic()
        grant_text = "?"
        upstream: socket.socket | None = None
        record: ConnectionRecord
        try:
            conn.settimeout(self.caps.connect_timeout_seconds)
            self._check_peer(conn)
            grant_text, grant = self._read_grant(conn)
            upstream, address = self._connect(grant)
            conn.sendall(b"OK\n")
            with self._lock:
                self._active.update((conn, upstream))
            deadline = started + self.caps.connection_seconds
            sent, received, how = splice(
                conn, upstream, idle_seconds=self.caps.idle_seconds, deadline=deadline,
                max_bytes=self.caps.max_bytes_per_connection,
            )  # fmt: skip
            record = ConnectionRecord(
                grant=grant_text, outcome="ok", reason=how, address=address, bytes_sent=sent, bytes_received=received
            )
        except _Refused as exc:
            record = ConnectionRecord(grant=grant_text, outcome="refused", reason=str(exc))
            with contextlib.suppress(OSError):
                conn.sendall(b"NO " + str(exc).encode("utf-8", "replace")[:900] + b"\n")
        except OSError as exc:
            record = ConnectionRecord(grant=grant_text, outcome="failed", reason=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(OSError):
                conn.sendall(b"NO " + (record.reason or "").encode()[:900] + b"\n")
        finally:
            with self._lock:
                self._active.difference_update(s for s in (conn, upstream) if s is not None)
                self._in_flight -= 1
            conn.close()
            if upstream is not None:
                upstream.close()
        record.wall_ms = round((time.monotonic() - started) * 1000, 3)
        with self._lock:
            self._records.append(record)
        _log.info("egress %s %s: %s", record.grant, record.outcome, record.reason, extra={"egress": record.grant})

    def _check_peer(self, conn: socket.socket) -> None:
        if self.peer_check is None:
            return
        pid, _, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if pid <= 0 or not self.peer_check(pid):
            raise _Refused(f"connection from pid {pid}, which is not in this run's sandbox")

    def _read_grant(self, conn: socket.socket) -> tuple[str, Grant]:
        line = b""
        while not line.endswith(b"\n") and len(line) < 512:
            chunk = conn.recv(1)
            if not chunk:
                break
            line += chunk
        if not line.startswith(HEADER) or not line.endswith(b"\n"):
            raise _Refused("malformed request (expected the egress header)")
        text = line[len(HEADER) : -1].decode("ascii", "replace")
        try:
            grant = parse_grant(text)
        except GrantError as exc:
            raise _Refused(str(exc)) from None
        if grant not in self.grants:
            raise _Refused(f"{text} is not granted to this plugin (allowed_hosts: {', '.join(map(str, self.grants))})")
        return str(grant), grant

    def _connect(self, grant: Grant) -> tuple[socket.socket, str]:
        try:
            addresses = [grant.host] if grant.is_ip_literal else self.resolver(grant.host, grant.port)
        except (OSError, UnicodeError) as exc:
            raise _Refused(f"{grant}: cannot resolve {grant.host}: {exc}") from None
        if not addresses:
            raise _Refused(f"{grant}: {grant.host} has no address")
        allowed = [a for a in addresses if not is_internal(a) or self.policy.permits_internal(a, grant.port)]
        if not allowed:
            raise _Refused(
                f"{grant}: {grant.host} resolves to internal address {', '.join(addresses)}, "
                "which the operator has not allowed"
            )
        errors = []
        for address in allowed:
            try:
                return socket.create_connection(
                    (address, grant.port), timeout=self.caps.connect_timeout_seconds
                ), address
            except OSError as exc:
                errors.append(f"{address}: {exc.strerror or exc}")
        raise OSError(f"{grant}: cannot connect ({'; '.join(errors)})")
