"""One entry point for the host: route each run to the backend for its runtime (and, for Python at
the strict level, runs with network grants to the backend that wires their egress)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rh_sandbox.errors import SandboxError
from rh_sandbox.types import Backend, RunResult, RunSpec, Runtime

__all__ = ["Dispatcher", "GrantedRunsApart"]


class Dispatcher:
    """Routes a :class:`RunSpec` by ``runtime`` to a backend, created on first use and closed once.

    ``factories`` maps a runtime to a zero-argument callable building its backend, so that a host
    that never meets a WASM plugin never starts a WASM worker.
    """

    def __init__(self, factories: dict[Runtime, Callable[[], Backend]]) -> None:
        self._factories = dict(factories)
        self._backends: dict[Runtime, Backend] = {}
        self._lock = threading.Lock()
        self._closed = False

    def backend(self, runtime: Runtime) -> Backend:
        with self._lock:
            if self._closed:
                raise SandboxError("dispatcher is closed")
            backend = self._backends.get(runtime)
            if backend is None:
                factory = self._factories.get(runtime)
                if factory is None:
                    raise SandboxError(f"no backend for runtime {runtime!r}")
                backend = self._backends[runtime] = factory()
            return backend

    def run(self, spec: RunSpec, payload: bytes) -> RunResult:
        return self.backend(spec.runtime).run(spec, payload)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            backend.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GrantedRunsApart:
    """Runs with network grants go to ``granted`` (built on first use), every other run to ``warm``.

    The fork server's children share their zygote's network namespace, so it cannot give one run a
    listener for its grants that another run of the group cannot reach; a cold strict sandbox per
    granted run can, and its ~50 ms start is small next to the network round trips it is made for.
    """

    def __init__(self, warm: Backend, granted: Callable[[], Backend]) -> None:
        self.warm = warm
        self._granted_factory = granted
        self._granted: Backend | None = None
        self._lock = threading.Lock()

    def granted(self) -> Backend:
        with self._lock:
            if self._granted is None:
                self._granted = self._granted_factory()
            return self._granted

    def run(self, spec: RunSpec, payload: bytes) -> RunResult:
        if spec.allowed_hosts:
            return self.granted().run(spec, payload)
        return self.warm.run(spec, payload)

    def close(self) -> None:
        self.warm.close()
        with self._lock:
            granted, self._granted = self._granted, None
        if granted is not None:
            granted.close()
