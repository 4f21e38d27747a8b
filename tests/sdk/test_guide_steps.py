"""The plugin guide's Steps 1-3, extracted verbatim from the guide, run as printed in a fresh Python
process: ``from core.result_handlers.base import ...`` resolves through the installed public alias."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from seed_guide import GUIDE, guide_steps


def test_the_guide_has_the_three_steps() -> None:
    steps = guide_steps()
    assert sorted(steps) == [1, 2, 3]
    assert "from core.result_handlers.base import ResultHandler" in steps[1]
    assert "registry.process_results(" in steps[3]


def run_steps(tmp_path: Path, epilogue: str = "") -> subprocess.CompletedProcess[str]:
    steps = guide_steps()
    script = tmp_path / "guide_steps.py"
    script.write_text("\n".join([steps[1], steps[2], steps[3], epilogue]))
    # cwd and the script's dir are outside the repository: only the installed package can provide `core`
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_steps_1_to_3_run_as_printed(tmp_path: Path) -> None:
    epilogue = (
        "import rh_sdk\n"
        "assert registry is rh_sdk.get_registry() and isinstance(handler, rh_sdk.ResultHandler)\n"
        "[outcome] = registry.last_outcomes\n"
        "print(outcome.name, outcome.priority, outcome.status)\n"
    )
    proc = run_steps(tmp_path, epilogue)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Success: True", "my_custom_handler 50 ok"]


def test_a_handler_failing_in_step_3_makes_process_results_false(tmp_path: Path) -> None:
    # a result that is not a dict: the guide's handler catches the error and returns False
    epilogue = (
        "registry.clear()\n"
        "registry.register(MyCustomHandler(config={'api_key': 'K'}))\n"
        "print('Again:', registry.process_results('b2', [None], {}))\n"
    )
    proc = run_steps(tmp_path, epilogue)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Success: True", "Again: False"]
    assert "Failed to process results" in proc.stderr


@pytest.mark.parametrize("name", ["ResultHandler", "get_registry", "HandlerRegistry", "DEFAULT_PRIORITY"])
def test_the_alias_names_rh_sdks_own_objects(name: str) -> None:
    from core.result_handlers import base

    import rh_sdk

    assert getattr(base, name) is getattr(rh_sdk, name)


# SHA-256 of the original guide (../shared/seed/plugin-guide.md, where the project was started), taken
# when it was copied: the copy the steps are extracted from must stay that text, byte for byte.
SEED_GUIDE_SHA256 = "e5294a74eeb13c7e9186dba9b071c4d19b2259f0085ae52f82a0e983347ce308"


def test_the_copy_is_the_seeds_guide_verbatim() -> None:
    assert hashlib.sha256(GUIDE.read_bytes()).hexdigest() == SEED_GUIDE_SHA256
