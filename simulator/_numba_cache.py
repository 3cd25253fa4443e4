"""Where numba caches compiled kernels: a folder keyed by the kernels' source code.

numba invalidates a cached function when its own file changes, but not when a kernel it
calls (in another file) changes: the caller's stale machine code would keep running the
old callee. Keying the cache folder by a hash of every kernel source file (and the numba
version) makes any change start a fresh cache. The folder is in the user's cache directory,
so installs into read-only site-packages still cache. ``NUMBA_CACHE_DIR``, if set, wins.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

#: Every module that defines numba kernels, relative to the package.
KERNEL_SOURCES = (
    "engine/state.py",
    "engine/prefix_cache.py",
    "engine/kernels.py",
    "engine/fused.py",
    "perf/kernel.py",
)


def configure() -> None:
    """Point numba's cache at ``<user cache>/simreplay/numba-<hash>`` unless the user chose.

    Does not import numba (commands that never compile should not pay for it): sets
    ``NUMBA_CACHE_DIR``, which numba reads when it is first imported.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(_numba_version_stamp())
    for name in KERNEL_SOURCES:
        digest.update((package / name).read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "simreplay" / f"numba-{digest.hexdigest()[:16]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # no writable cache folder: numba falls back to its own choice
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if "numba" in sys.modules:  # imported before simulator: tell its live config too
        sys.modules["numba"].config.CACHE_DIR = str(folder)


def is_cold() -> bool:
    """True when no compiled kernel is cached yet: the next run compiles them (40-50 s, 2 cores)."""
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder:
        return True
    try:
        return not any(Path(folder).rglob("*.nbi"))
    except OSError:
        return True


def _numba_version_stamp() -> bytes:
    """Bytes that change with the installed numba (its version file), without importing it.

    ``importlib.metadata`` would cost ~50 ms of start-up on every command.
    """
    spec = importlib.util.find_spec("numba")
    if spec is None or spec.origin is None:
        return b"no numba"
    version_file = Path(spec.origin).parent / "_version.py"
    try:
        return version_file.read_bytes()
    except OSError:
        return str(Path(spec.origin).stat().st_mtime_ns).encode()
