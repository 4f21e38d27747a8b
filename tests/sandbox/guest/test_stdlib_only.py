"""guest/ runs inside the sandbox, copied in by path: it may import the stdlib, the other guest files
under their in-guest names, and what the guest runtime holds (the SDK and msgspec), nothing else."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import rh_sandbox.guest
from rh_sandbox.python.runtime import GuestRuntime

GUEST = Path(rh_sandbox.guest.__file__).parent
IN_GUEST = {"_rh_boot", "_rh_confine", "_rh_zygote", "_rh_egress"}  # the guest files' names in the site dir
RUNTIME = {"rh_sdk", "msgspec"}  # the packages the guest runtime copies in


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: a relative import cannot work once copied into the site dir"
            found.add((node.module or "").split(".")[0])
    return found


@pytest.mark.parametrize("path", sorted(GUEST.glob("*.py")), ids=lambda p: p.name)
def test_guest_file_imports_only_the_stdlib(path: Path) -> None:
    outside = imports(path) - set(sys.stdlib_module_names) - IN_GUEST - RUNTIME - {"__future__"}
    assert outside == set(), f"{path.name} imports {sorted(outside)}, which the sandbox does not have"


def test_guest_files_are_importable_by_the_host_without_the_runtime() -> None:
    """The host imports confine, forwarder and wire: they must not need the guest's site dir."""
    for path in ("confine", "forwarder"):
        assert imports(GUEST / f"{path}.py") <= set(sys.stdlib_module_names) | {"__future__"}


def test_the_guest_runtime_copies_every_guest_file(tmp_path: Path) -> None:
    runtime = GuestRuntime.prepare(root=tmp_path, interpreter=sys.executable)
    copied = {path.stem for path in runtime.site.glob("_rh_*.py")}
    assert copied == IN_GUEST
    assert (runtime.site / "_rh_confine.py").read_bytes() == (GUEST / "confine.py").read_bytes()
    shipped = {p.stem for p in GUEST.glob("*.py")} - {"__init__"}
    assert shipped - {"wire"} == {"boot", "confine", "zygote", "forwarder"}
