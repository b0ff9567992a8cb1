"""Loads the sanitizer build of ``service._fastpath`` (from :mod:`fuzz.build`) instead of the normal one.

Used by the fuzz target, and as a pytest plugin (``python -m pytest -p fuzz.sanitized ...``) so that the
hypothesis tests of the C path run against the instrumented extension. The process must run with the ASan
runtime preloaded (``LD_PRELOAD``, see the Makefile's ``fuzz`` targets); :func:`use_sanitized_build` refuses
to go on if the normal extension was imported first or the instrumented one is not what got loaded.
"""

from __future__ import annotations

import sys
from typing import Any

from fuzz.build import extension_path


def use_sanitized_build() -> None:
    """Put the sanitizer build first on ``service``'s path and import it; raises if that is not what loads."""
    import service

    target = extension_path()
    if not target.exists():
        raise RuntimeError(f"no sanitizer build at {target}: run `python -m fuzz.build`")
    if "service._fastpath" in sys.modules:
        raise RuntimeError("service._fastpath was imported before the sanitizer build could be put first")
    service.__path__.insert(0, str(target.parent))
    import service._fastpath as extension

    if extension.__file__ != str(target):
        raise RuntimeError(f"loaded {extension.__file__}, not the sanitizer build {target}")


def pytest_configure(config: Any) -> None:
    use_sanitized_build()


def pytest_report_header(config: Any) -> str:
    return f"service._fastpath: sanitizer build {extension_path()} (ASan + UBSan)"
