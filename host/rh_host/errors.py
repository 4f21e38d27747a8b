"""rh_host's exception root. Each error is one line that names the problem (file, line, field).

HostError
 ├── ManifestError      an invalid plugin.toml (names the file and the field)
 └── BatchInputError    an unreadable or malformed batch (names the file and the line)
"""

from __future__ import annotations

__all__ = ["BatchInputError", "HostError", "ManifestError"]


class HostError(Exception):
    """Something the operator or tenant gave the host is wrong; the message says what and where."""


class ManifestError(HostError):
    """An invalid plugin manifest."""


class BatchInputError(HostError):
    """An unreadable or malformed batch file."""
