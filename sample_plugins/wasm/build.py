"""Build the WebAssembly sample plugins: each <lang>_stats/ gets its handler.wasm (the plugin's entry).

    .venv/bin/python sample_plugins/wasm/build.py            # all of them
    .venv/bin/python sample_plugins/wasm/build.py c zig      # some

Toolchains (scripts/install.sh --test installs them): C needs Debian's clang, lld, wasi-libc,
libclang-rt-dev-wasm32 and libjsmn-dev; Zig needs PyPI `ziglang` (a test extra); AssemblyScript needs
node and `npm ci` in sdk/assemblyscript. A missing toolchain raises ToolchainMissing with what to install.
Outputs (handler.wasm, build/) are git-ignored.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SDK = ROOT / "sdk"
LANGS = ("c", "zig", "as")


class ToolchainMissing(RuntimeError):
    """The compiler for a language is not installed; the message says how to get it."""


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


def build_c(plugin: Path, out: Path) -> None:
    clang = shutil.which("clang")
    wasi_libc = Path("/usr/include/wasm32-wasi/stdio.h")
    if clang is None or not wasi_libc.exists() or not Path("/usr/include/jsmn.h").exists():
        raise ToolchainMissing("C: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32 libjsmn-dev")
    argv = [
        clang,
        "--target=wasm32-wasi",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wl,--strip-all",
        f"-I{SDK / 'c'}",
        "handler.c",
        "-o",
        str(out),
    ]
    _run(argv, plugin)


def build_zig(plugin: Path, out: Path) -> None:
    if importlib.util.find_spec("ziglang") is None:
        raise ToolchainMissing("Zig: pip install ziglang (a test extra: pip install -e '.[test]')")
    cache = plugin / "build" / "zig-cache"
    env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(ROOT / "build" / "zig-global-cache")}
    argv = [
        sys.executable,
        "-m",
        "ziglang",
        "build-exe",
        "-target",
        "wasm32-wasi",
        "-O",
        "ReleaseSmall",
        "-fstrip",
        "--stack",
        "1048576",
        "--cache-dir",
        str(cache),
        f"-femit-bin={out}",
        "--dep",
        "rh_plugin",
        "-Mroot=handler.zig",
        f"-Mrh_plugin={SDK / 'zig' / 'rh_plugin.zig'}",
    ]
    _run(argv, plugin, env)


def build_as(plugin: Path, out: Path) -> None:
    sdk = SDK / "assemblyscript"
    asc = sdk / "node_modules" / "assemblyscript" / "bin" / "asc.js"
    node = shutil.which("node")
    if node is None or not asc.exists():
        raise ToolchainMissing("AssemblyScript: install node + npm, then `npm ci` in sdk/assemblyscript")
    # asc resolves the wasi-shim library relative to the working directory: run it from the SDK.
    _run([node, str(asc), str(plugin / "handler.ts"), "--config", "asconfig.json", "-o", str(out)], sdk)


BUILDERS: dict[str, Callable[[Path, Path], None]] = {"c": build_c, "zig": build_zig, "as": build_as}


def build(lang: str) -> Path:
    """Compile <lang>_stats into its handler.wasm; returns the plugin directory."""
    plugin = HERE / f"{lang}_stats"
    (plugin / "build").mkdir(exist_ok=True)
    out = plugin / "build" / "handler.wasm"
    BUILDERS[lang](plugin, out)
    shutil.copyfile(out, plugin / "handler.wasm")
    return plugin


def main(argv: list[str]) -> int:
    status = 0
    for lang in argv or LANGS:
        try:
            print(f"built {build(lang) / 'handler.wasm'}")
        except ToolchainMissing as exc:
            print(f"skipped {lang}: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
