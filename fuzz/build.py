"""Builds ``service._fastpath`` with clang under ASan + UBSan + libFuzzer coverage into ``build/fuzz/service/``.

``python -m fuzz.build`` prints the path of the built extension. The normal build (setuptools, ``make install``)
is left alone: :mod:`fuzz.sanitized` puts this one in front of it for the fuzzer and the sanitizer test run.
Sanitizers: address, undefined (every check fatal), and ``fuzzer-no-link`` coverage for libFuzzer (atheris
supplies libFuzzer and the ASan runtime at run time, through ``LD_PRELOAD``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "service" / "_fastpath.c"
OUTPUT_DIR = ROOT / "build" / "fuzz" / "service"
FLAGS = [
    "-fsanitize=address,undefined,fuzzer-no-link",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
    "-O1",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-fPIC",
    "-shared",
]


def extension_path() -> Path:
    """Where the sanitizer build of the extension is written."""
    return OUTPUT_DIR / f"_fastpath{sysconfig.get_config_var('EXT_SUFFIX')}"


def build() -> Path:
    """Compile the extension if the source is newer than the build; returns its path."""
    target = extension_path()
    if target.exists() and target.stat().st_mtime >= SOURCE.stat().st_mtime:
        return target
    compiler = shutil.which("clang")
    if compiler is None:
        raise SystemExit("fuzz.build needs clang (apt-get install clang libclang-rt-14-dev)")
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    include = sysconfig.get_paths()["include"]
    command = [compiler, *FLAGS, f"-I{include}", str(SOURCE), "-lcrypto", "-o", str(target)]
    subprocess.run(command, check=True)
    return target


if __name__ == "__main__":
    print(build())
    sys.exit(0)
