"""Tiny, generic fixtures shared by every test directory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _unpin_this_process_at_exit() -> Iterator[None]:
    """Backends a test leaves unclosed keep their pins (empty cgroups that hold a group's dir) while
    this process lives; a later process's sweep would remove them, but the suite leaves the machine
    as it found it: at the end, this process's own pins go, and the group dirs they emptied."""
    yield
    mine = f"{os.getpid()}."
    for group_dir in Path("/sys/fs/cgroup").glob("*/rh-host/tenant[-=]*"):
        for pin in group_dir.glob(f"{mine}*-pin-*"):
            with contextlib.suppress(OSError):
                pin.rmdir()
        with contextlib.suppress(OSError):
            group_dir.rmdir()  # refused while another process's cgroups or pins are in it
