"""Fixture handlers for network grants: try each target and report what happened, never raise."""

import glob
import socket

from rh_sdk import ResultHandler


def _attempt(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=3) as conn:
            conn.sendall(b"ping")
            return "reply:" + conn.recv(100).decode()
    except OSError as exc:
        return f"error:{type(exc).__name__}:{exc.strerror or exc}"


def _threads() -> dict[str, list[str]]:
    """Seccomp mode and effective capabilities of every thread of this process."""
    found = {}
    for path in glob.glob("/proc/self/task/*/status"):
        try:
            with open(path) as f:
                fields = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        except (FileNotFoundError, ProcessLookupError):  # a relay thread that ended (before the open, or the read)
            continue
        found[path.split("/")[4]] = [fields["Seccomp"].strip(), fields["CapEff"].strip()]
    return found


class Connect(ResultHandler):
    """config: targets = [[host, port], ...]; returns each attempt's outcome and the threads' confinement."""

    def handle(self, batch_id, results, metadata):
        attempts = {f"{host}:{port}": _attempt(host, int(port)) for host, port in self.config["targets"]}
        return {"attempts": attempts, "threads": _threads()}


class AskBroker(ResultHandler):
    """Talks to the broker socket itself, naming config["grant"]: the host must check it all the same."""

    def handle(self, batch_id, results, metadata):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect("/run/rh-egress/egress.sock")
            conn.sendall(b"RHEG1 " + self.config["grant"].encode() + b"\n")
            return {"answer": conn.recv(1000).decode()}
