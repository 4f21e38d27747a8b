"""One run's egress, as the strict sandbox wires it: a private dir, a broker, and what to bind where.

The host makes a dir no one can list (0711, random name), starts the run's :class:`EgressBroker` in
it, and binds the generated ``/etc/hosts`` and ``/etc/nsswitch.conf``, the CA certificates and the
broker socket into the sandbox. The broker accepts a connection only from a process of the run's own
cgroup (``peer_check``), so knowing the socket's path is not enough to borrow another run's grants.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rh_sandbox.egress.broker import EgressBroker, EgressCaps, EgressSetup, Resolver
from rh_sandbox.egress.grants import GrantError, OperatorPolicy, parse_grants
from rh_sandbox.types import RunResult, RunStatus

__all__ = ["CA_CERTIFICATES", "EgressSettings", "RunEgress", "default_run_root", "run_with_egress"]

CA_CERTIFICATES = "/etc/ssl/certs"  # public data; TLS clients without certifi find the system CAs here


def default_run_root() -> Path:
    """Short (unix socket paths are capped at 107 bytes) and host-private."""
    if os.geteuid() == 0:
        return Path("/run/rh-host/egress")
    return Path(tempfile.gettempdir()) / f"rh-egress-{os.geteuid()}"


@dataclass(frozen=True)
class EgressSettings:
    """The operator's side of network grants: the cap on what plugins may ask for, and per-run caps.

    The default policy permits no grant at all: an operator who wants plugins on the network says
    which hosts (``OperatorPolicy.allowed``) and which internal addresses (``internal_allowed``).
    """

    policy: OperatorPolicy = field(default_factory=OperatorPolicy)
    caps: EgressCaps = field(default_factory=EgressCaps)
    resolver: Resolver | None = None  # None: the host's resolver
    run_root: Path | None = None  # None: default_run_root()


class RunEgress:
    """The egress of one run with grants: ``start()`` before the sandbox, ``close()`` after it.

    Raises :class:`~rh_sandbox.egress.GrantError` from the constructor when a grant is malformed or
    the operator's policy does not permit it: the run must then not start.
    """

    def __init__(
        self,
        allowed_hosts: Sequence[str],
        settings: EgressSettings,
        peer_check: Callable[[int], bool] | None = None,
    ) -> None:
        self.broker = EgressBroker(
            parse_grants(allowed_hosts),
            settings.policy,
            caps=settings.caps,
            resolver=settings.resolver,
            peer_check=peer_check,
        )
        self._root = settings.run_root or default_run_root()
        self._dir: Path | None = None
        self.setup: EgressSetup | None = None

    def start(self) -> EgressSetup:
        self._root.mkdir(parents=True, exist_ok=True, mode=0o711)
        self._dir = Path(tempfile.mkdtemp(prefix="", dir=self._root))
        os.chmod(self._dir, 0o711)  # the sandbox uid (bwrap binds as that uid) may traverse, not list
        self.setup = self.broker.start(self._dir)
        return self.setup

    @property
    def ro_binds(self) -> list[tuple[str, str]]:
        setup = self._started()
        binds = [(str(setup.hosts_path), "/etc/hosts"), (str(setup.nsswitch_path), "/etc/nsswitch.conf")]
        if os.path.isdir(CA_CERTIFICATES):
            binds.append((CA_CERTIFICATES, CA_CERTIFICATES))
        return binds

    @property
    def binds(self) -> list[tuple[str, str]]:
        setup = self._started()
        return [(str(setup.socket_path), setup.guest_socket)]

    @property
    def forwarder_config(self) -> dict[str, Any]:
        return self._started().forwarder_config

    @property
    def ports(self) -> list[int]:
        """The TCP ports the plugin connects to inside the sandbox (its grants' ports)."""
        return sorted({int(item["port"]) for item in self.forwarder_config["listen"]})

    def summary(self) -> list[dict[str, Any]]:
        return self.broker.summary()

    def close(self) -> None:
        self.broker.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _started(self) -> EgressSetup:
        if self.setup is None:
            raise RuntimeError("RunEgress.start() first")
        return self.setup


def run_with_egress(
    allowed_hosts: Sequence[str],
    settings: EgressSettings,
    peer_check: Callable[[int], bool] | None,
    isolation: str,
    run: Callable[[RunEgress], RunResult],
) -> RunResult:
    """``run`` with this run's egress started, closed after it, and its connection log in the result.

    A grant the operator's policy does not permit ends the run ``failed`` before ``run`` is called.
    """
    try:
        egress = RunEgress(allowed_hosts, settings, peer_check)
    except GrantError as exc:
        return RunResult(status=RunStatus.FAILED, error=f"network grant refused: {exc}", isolation=isolation)
    try:
        egress.start()
        result = run(egress)
    finally:
        egress.close()
    result.egress = egress.summary()
    return result
