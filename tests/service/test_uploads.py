"""Every upload attack is refused with a message that names it, and nothing is stored or written."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from rh_testserver import TEST_PLUGINS, Server

from rh_host.service.artifacts import tree_digest

PLUGIN = TEST_PLUGINS / "slow_step"
GOOD_FILES = {p.name: p.read_bytes() for p in PLUGIN.iterdir() if p.is_file()}


def tar_gz(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def good_members() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    return [(tarfile.TarInfo(name), data) for name, data in GOOD_FILES.items()]


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.devmajor, info.devminor = 1, 3
    return info, None


def zip_bytes(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def zeros_tar_gz(size: int) -> bytes:
    class Zeros:
        left = size

        def read(self, n: int = -1) -> bytes:
            n = self.left if n < 0 else min(n, self.left)
            self.left -= n
            return bytes(n)

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for name, data in GOOD_FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        archive.addfile(info, Zeros())  # type: ignore[arg-type]
    return buffer.getvalue()


ATTACKS: dict[str, tuple[Callable[[], bytes], int, str]] = {
    "zip bomb (ratio)": (lambda: zip_bytes({**GOOD_FILES, "pad.bin": bytes(20 * 1024 * 1024)}), 400, "ratio"),
    "tar.gz bomb (size)": (lambda: zeros_tar_gz(200 * 1024 * 1024), 400, "unpacks to more than"),
    "zip path traversal": (lambda: zip_bytes({**GOOD_FILES, "../escaped.py": b"x"}), 400, "path traversal"),
    "tar path traversal": (lambda: tar_gz(*good_members(), (tarfile.TarInfo("a/../../escaped.py"), b"x")), 400, ".."),
    "zip absolute path": (lambda: zip_bytes({**GOOD_FILES, "/tmp/escaped.py": b"x"}), 400, "absolute"),
    "tar absolute path": (lambda: tar_gz(*good_members(), (tarfile.TarInfo("/tmp/escaped.py"), b"x")), 400, "absolute"),
    "tar symlink": (lambda: tar_gz(*good_members(), special("passwd", tarfile.SYMTYPE, "/etc/passwd")), 400, "symlink"),
    "zip symlink": (lambda: zip_bytes(GOOD_FILES, {"passwd": "/etc/passwd"}), 400, "symlink"),
    "tar hard link": (lambda: tar_gz(*good_members(), special("hl", tarfile.LNKTYPE, "/etc/shadow")), 400, "hard link"),
    "tar device file": (lambda: tar_gz(*good_members(), special("null", tarfile.CHRTYPE)), 400, "device"),
    "tar fifo": (lambda: tar_gz(*good_members(), special("pipe", tarfile.FIFOTYPE)), 400, "fifo"),
    "too many files": (
        lambda: tar_gz(*good_members(), *[(tarfile.TarInfo(f"f/{i}.txt"), b"") for i in range(2100)]),
        400,
        "entries",
    ),
    "oversize archive": (lambda: b"\x1f\x8b" + os.urandom(17 * 1024 * 1024), 413, "limit"),
    "invalid manifest": (
        lambda: tar_gz((tarfile.TarInfo("plugin.toml"), b'name = "x"\nruntime = "cobol"\n')),
        400,
        "plugin.toml",
    ),
    "manifest not TOML": (lambda: tar_gz((tarfile.TarInfo("plugin.toml"), b"[[[")), 400, "invalid TOML"),
    "no manifest": (lambda: tar_gz((tarfile.TarInfo("handler.py"), b"")), 400, "no plugin.toml"),
    "entry module missing": (
        lambda: tar_gz((tarfile.TarInfo("plugin.toml"), GOOD_FILES["plugin.toml"])),
        400,
        "not in the archive",
    ),
    "not an archive": (lambda: b"hello, world", 400, "neither a zip nor a tar.gz"),
    "tar file named '.'": (lambda: tar_gz(*good_members(), (tarfile.TarInfo("./"), b"x")), 400, "without a name"),
    "tar name too long": (lambda: tar_gz(*good_members(), (tarfile.TarInfo("n" * 300), b"x")), 400, "255 bytes"),
    "zip path too long": (lambda: zip_bytes({**GOOD_FILES, "/".join(["d" * 50] * 30): b"x"}), 400, "1024 bytes"),
    "tar entry under a file": (
        lambda: tar_gz(*good_members(), (tarfile.TarInfo("handler.py/x.py"), b"x")),
        400,
        "'handler.py' is a file in the archive",
    ),
    "zip entry under a file": (
        lambda: zip_bytes({**GOOD_FILES, "plugin.toml/x": b"x"}),
        400,
        "'plugin.toml' is a file in the archive",
    ),
    "tar directory over a file": (
        lambda: tar_gz(*good_members(), special("handler.py", tarfile.DIRTYPE)),
        400,
        "'handler.py' is both a file and a directory",
    ),
    "truncated gzip": (lambda: tar_gz(*good_members())[:60], 400, "not a readable"),
}


@pytest.fixture(scope="module")
def api(server: Server) -> httpx.Client:
    return server.tenant("uploader")


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_upload_attack_is_refused(server: Server, api: httpx.Client, attack: str) -> None:
    make, status, words = ATTACKS[attack]
    response = api.post("/v1/plugins", content=make())
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == ("payload_too_large" if status == 413 else "upload_rejected")
    assert words in error["message"], error["message"]
    assert api.get("/v1/plugins").json() == []
    assert not (server.data_dir.parent / "escaped.py").exists() and not os.path.exists("/tmp/escaped.py")
    assert list((server.data_dir / "artifacts" / ".staging").iterdir()) == []  # nothing left behind


def test_an_archive_of_dot_is_taken(server: Server) -> None:
    """`tar czf x.tgz -C plugin .` writes the root as "./" and every file as "./name"."""
    members = [special("./", tarfile.DIRTYPE)] + [(tarfile.TarInfo(f"./{n}"), d) for n, d in GOOD_FILES.items()]
    with server.tenant("dot-packer") as api:
        response = api.post("/v1/plugins", content=tar_gz(*members))
        assert response.status_code == 201, response.text


def test_the_same_files_packed_differently_are_the_same_version(server: Server, api: httpx.Client) -> None:
    """A version is its files: repacking (other timestamps, zip or tar.gz, a top-level dir or not) adds none."""
    nested = zip_bytes({f"slow_step/{name}": data for name, data in GOOD_FILES.items()})
    first = api.post("/v1/plugins", content=nested)
    assert first.status_code == 201 and first.json()["active_seq"] == 1, first.text
    stamped = []
    for mtime in (1_000_000_000, 2_000_000_000):
        members = good_members()
        for info, _data in members:
            info.mtime = mtime
        stamped.append(tar_gz(*members))
    assert stamped[0] != stamped[1] != nested  # three different archives...
    for archive in stamped:
        again = api.post("/v1/plugins", content=archive)
        assert again.status_code == 200 and again.json()["active_seq"] == 1, again.text  # ...one version
    changed = tar_gz(*good_members(), (tarfile.TarInfo("notes.txt"), b"one more file"))
    second = api.post("/v1/plugins", content=changed)
    assert second.status_code == 201 and second.json()["active_seq"] == 2, second.text
    assert [v["seq"] for v in api.get("/v1/plugins/slow_step").json()["versions"]] == [1, 2]
    stored = [p for p in (server.data_dir / "artifacts").glob("??/*") if p.is_dir()]
    assert len(stored) >= 2 and all(tree_digest(p) == p.name for p in stored)  # each is stored under its files' digest
    assert api.delete("/v1/plugins/slow_step").status_code == 204


def test_tree_digest_tells_trees_apart(tmp_path: Path) -> None:
    def digest(files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> str:
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        root.mkdir()
        for name in dirs:
            (root / name).mkdir(parents=True)
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return tree_digest(root)

    base = digest({"a.py": b"x", "b/c.py": b"y"})
    assert digest({"b/c.py": b"y", "a.py": b"x"}) == base  # the order files were written in does not count
    assert len({
        base,
        digest({"a.py": b"x", "b/c.py": b"z"}),  # a byte changed
        digest({"a.py": b"x", "b/d.py": b"y"}),  # a name changed
        digest({"a.py": b"x", "b/c.py": b"y"}, dirs=("empty",)),  # an empty directory added
        digest({"a.py": b"xb/c.py", "b": b"y"}),  # contents and names that run together the same way
        digest({"a.py": b"x"}, dirs=("b/c.py",)),  # a directory where a file was
    }) == 6  # fmt: skip


def wasm_plugin(name: str, wat: str) -> bytes:
    manifest = f'name = "{name}"\nversion = "1.0.0"\nruntime = "wasm"\nentry = "handler.wat"\n'
    return tar_gz((tarfile.TarInfo("plugin.toml"), manifest.encode()), (tarfile.TarInfo("handler.wat"), wat.encode()))


# A valid module whose start function calls rh::http_request (it imports rh-host's HTTP functions):
# checking an upload must link them as a run does, and must not trap on the "no network" answer.
NET_IMPORTING = """(module
 (import "rh" "http_request" (func $request (param i32 i32) (result i32)))
 (import "rh" "http_response" (func $response (param i32 i32) (result i32)))
 (memory (export "memory") 1)
 (data (i32.const 1024) "{\\"url\\":\\"http://127.0.0.1:9/\\"}")
 (func $s (if (i32.eqz (call $request (i32.const 1024) (i32.const 29))) (then unreachable)))
 (start $s)
 (func (export "_start")))"""
TRAPPING_START = '(module (memory (export "memory") 1) (func $s unreachable) (start $s) (func (export "_start")))'


def test_a_wasm_upload_is_checked_before_it_is_stored(server: Server, api: httpx.Client) -> None:
    refused = api.post("/v1/plugins", content=wasm_plugin("trapper", TRAPPING_START))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "upload_rejected"
    assert error["message"].startswith("handler.wat: start function trapped"), error["message"]
    assert str(server.data_dir) not in error["message"]  # names the file in the archive, not the host's path
    assert api.get("/v1/plugins").json() == []
    assert list((server.data_dir / "artifacts" / ".staging").iterdir()) == []

    accepted = api.post("/v1/plugins", content=wasm_plugin("net_importing", NET_IMPORTING))
    assert accepted.status_code == 201, accepted.text
    assert [p["name"] for p in api.get("/v1/plugins").json()] == ["net_importing"]
    assert api.delete("/v1/plugins/net_importing").status_code == 204
