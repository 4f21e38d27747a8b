"""Real servers on loopback for the integration tests, each started and stopped by a fixture."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {seconds} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- HTTP receiver -------------------------------------------------------------------------------


@dataclass
class Receiver:
    """Records every POST; ``script`` says how to answer the next ones: a status code or ("slow", seconds)."""

    port: int
    script: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    stored: dict[str, Any] = field(default_factory=dict)  # by Idempotency-Key (or path), like a real receiver
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self, *script: Any) -> None:
        with self.lock:
            self.script[:] = list(script)
            self.requests.clear()
            self.stored.clear()


def _receiver_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                action = receiver.script.pop(0) if receiver.script else 200
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if isinstance(action, tuple) and action[0] == "slow":
                time.sleep(action[1])
                action = 200
            if action == 200:
                key = self.headers.get("Idempotency-Key") or self.path
                with receiver.lock:
                    receiver.stored[key] = json.loads(body)
            try:
                self.send_response(action)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the timeout tests)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def http_receiver() -> Iterator[Receiver]:
    receiver = Receiver(port=0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _receiver_handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


# --- PostgreSQL ----------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@contextmanager
def postgres_server(password: str) -> Iterator[str]:
    """initdb in a temp dir as the ``postgres`` user, a free port, the socket dir in the temp dir; yields a DSN."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries")
    root = Path(tempfile.mkdtemp(prefix="rh-pg-"))
    shutil.chown(root, "postgres", "postgres")
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    shutil.chown(pwfile, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    proc = None
    try:
        subprocess.run(
            [*as_postgres, str(bindir / "initdb"), "-D", str(root / "data"), "-U", "rh", f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        proc = subprocess.Popen(
            [*as_postgres, str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port), "-k", str(root),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
             "-c", "shared_buffers=16MB"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(port, proc)
        dsn = f"postgresql://rh:{password}@127.0.0.1:{port}/postgres"
        _wait_for_postgres(dsn)
        yield dsn
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_postgres(dsn: str) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- Redis ---------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    port: int
    password: str

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def cli(self, *args: str) -> str:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REDISCLI_AUTH": self.password}
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10, env=env, check=True
        )
        return done.stdout.strip()


@contextmanager
def redis_server(password: str) -> Iterator[RedisServer]:
    root = tempfile.mkdtemp(prefix="rh-redis-")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--requirepass", password, "--dir", root, "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, proc)
        yield RedisServer(port, password)
    finally:
        stop(proc)
        shutil.rmtree(root, ignore_errors=True)


# --- SMTP (aiosmtpd) -----------------------------------------------------------------------------


@dataclass
class MailSink:
    port: int
    messages: list[Any] = field(default_factory=list)  # email.message.Message
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes

        message = message_from_bytes(envelope.original_content or envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


@contextmanager
def smtp_server(username: str, password: str) -> Iterator[MailSink]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    sink = MailSink(port=free_port())

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = auth_data.login == username.encode() and auth_data.password == password.encode()
        if ok:
            sink.logins.append(username)
        return AuthResult(success=ok)

    controller = Controller(
        sink, hostname="127.0.0.1", port=sink.port, authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


# --- S3 (moto in server mode) --------------------------------------------------------------------


@contextmanager
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
