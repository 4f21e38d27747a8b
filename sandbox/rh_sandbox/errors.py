"""rh_sandbox's exceptions: one root, so that the host catches the layer's faults in one place.

A plugin's misbehaviour is never an exception: it is a :class:`~rh_sandbox.types.RunResult` with a
status. These are faults of the host's own input or of the sandbox itself::

    SandboxError              cannot start or finish a run (no interpreter, a closed dispatcher, ...)
    ├── GrantError            a network grant or policy entry is malformed or not permitted (also ValueError)
    └── WasmModuleError       a WASM module cannot run here, in terms its author can act on (also ValueError)

Internal to ``wasm/`` and subclasses of :class:`SandboxError` too: ``ModuleTooLarge`` (a module file
over the size cap), ``FrameError`` (a malformed frame on a worker's pipe), ``WorkerDied``,
``WorkerTimeout``, ``ModuleRefused`` (raised inside the worker). The guest's
``EgressRefused`` (``guest/forwarder.py``) is stdlib-only and stays outside this tree.
"""

from __future__ import annotations

__all__ = ["GrantError", "SandboxError", "WasmModuleError"]


class SandboxError(Exception):
    """A fault of the sandbox itself (cannot start a run), never a plugin's misbehaviour."""


class GrantError(SandboxError, ValueError):
    """A grant or a policy entry is malformed, or a grant exceeds what the operator allows."""


class WasmModuleError(SandboxError, ValueError):
    """The module cannot be run here; the message says why in terms a plugin author can act on."""
