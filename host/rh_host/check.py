"""Does a plugin load? Its entry imported and its handler constructed with its config, in the sandbox its
runs get, and nothing else (neither ``enabled`` nor ``handle``): what an upload and ``rh-host plugin
check`` ask before a version can go live, so that a syntax error or a wrong class name is refused with
its line instead of failing every later batch.

A handler whose manifest declares secrets that are not set yet (a new plugin's) is only imported: its
``__init__`` may rightly refuse to construct without them.

Python only: a WASM module is checked by its backend's ``validate`` (compiled, start function run), and
WASM guests implement the protocol themselves.
"""

from __future__ import annotations

from rh_host.errors import HostError
from rh_host.manifest import Plugin
from rh_sandbox import Backend, Limits, RunResult
from rh_sdk.protocol import Invocation, RunStatus, encode_invocation

__all__ = ["CHECK_BATCH_ID", "PluginCheckFailed", "check_plugin"]

CHECK_BATCH_ID = "check"


class PluginCheckFailed(HostError):
    """The plugin's handler does not load; the message says why, with the file and line the guest gave."""


def check_plugin(
    backend: Backend, plugin: Plugin, *, group: str, limits: Limits | None = None, construct: bool = True
) -> RunResult:
    """Import ``plugin``'s entry and, with ``construct``, construct its handler in ``backend`` as a run
    of ``group`` would; the run's result when it loads. Raises :class:`PluginCheckFailed`, or the
    backend's ``SandboxError`` (not the plugin's fault)."""
    spec = plugin.run_spec(group, limits)
    invocation = Invocation(
        batch_id=CHECK_BATCH_ID,
        handler=plugin.name,
        config=plugin.config,
        check="construct" if construct else "import",
    )
    result = backend.run(spec, encode_invocation(invocation, spec.encoding))
    if result.status is RunStatus.SKIPPED and result.reply is not None and result.reply.output.get("checked"):
        return result
    error = result.error or "no error given"
    raise PluginCheckFailed(f"{plugin.manifest.entry}: the handler does not load ({result.status.value}): {error}")
