"""What a plugin or tenant name may be: one pattern, safe in paths, URLs, cgroup and archive names."""

from __future__ import annotations

import re

__all__ = ["NAME"]

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")  # lowercase, digits, "_.-"; 1 to 63 characters
