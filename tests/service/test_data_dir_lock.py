"""One service per data dir: a second ``serve`` on a live one's directory is refused in one line and
touches nothing of it; once the first has gone, however it went, the directory serves again."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rh_testserver import RH_HOST, SAMPLE_PLUGINS, Server, cleanup, free_port, pack, public_tempdir


@pytest.fixture
def root() -> Iterator[Path]:
    path = public_tempdir("rh-dir-lock-")
    yield path
    cleanup(path)


def second_serve(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [RH_HOST, "serve", "--port", str(free_port()), "--data-dir", str(data_dir), *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_a_second_serve_on_a_live_data_dir_is_refused_and_the_first_is_untouched(root: Path) -> None:
    first = Server(root / "data").start()
    try:
        assert first.proc is not None
        staged = root / "data" / "artifacts" / ".staging" / "upload-in-flight"
        staged.mkdir()  # what the first has in flight: a second start would have emptied the staging
        for extra in ((), ("--migrate-only",)):
            refused = second_serve(root / "data", *extra)
            assert refused.returncode == 2, refused.stderr
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1, refused.stderr
            assert f"data dir {root / 'data'} is in use by another rh-host serve (pid {first.proc.pid})" in lines[0]
        assert staged.is_dir()
        with first.tenant("still-served") as api:
            assert api.post("/v1/plugins", content=pack(SAMPLE_PLUGINS[0])).status_code == 201
    finally:
        first.kill()  # SIGKILL: the kernel releases the lock with the process
    again = Server(root / "data").start()
    again.stop()


def test_two_services_on_two_data_dirs_both_serve(root: Path) -> None:
    one, two = Server(root / "one"), Server(root / "two")
    try:
        one.start()
        two.start()
        for server in (one, two):
            assert server.create_tenant("beside")[1]
    finally:
        one.stop()
        two.stop()
