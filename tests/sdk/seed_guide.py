"""The seed's plugin guide and its code blocks, for tests that run them as printed.

``guide/plugin-guide.md`` is a verbatim copy of the seed's guide (the original lives outside the
repository; ruff leaves the copy alone).
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["GUIDE", "guide_steps"]

GUIDE = Path(__file__).with_name("guide") / "plugin-guide.md"
_STEP = re.compile(r"^### \*\*Step (\d): [^\n]*\n+```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def guide_steps() -> dict[int, str]:
    """Step number -> the code block printed under that heading."""
    return {int(number): code for number, code in _STEP.findall(GUIDE.read_text())}
