"""Where numba caches compiled kernels, and the compiled kernels shipped with the package.

numba invalidates a cached function when its own file changes, but not when a kernel it
calls (in another file) changes: the caller's stale machine code would keep running the
old callee. Keying the cache folder by a hash of every kernel source file (and the numba
version) makes any change start a fresh cache. The folder is in the user's cache directory,
so installs into read-only site-packages still cache. ``NUMBA_CACHE_DIR``, if set, wins.

Compiling the kernels takes 1-2 minutes on a 2-core machine, so the package ships them
compiled (``simulator/_jitcache/<hash>/``, built by ``python -m simulator.build_kernels``):
when the user's cache folder for this hash is empty and the shipped folder has the same
hash, its files are copied in and the first run only loads them (about 1 s).
They are compiled for LLVM's ``generic`` CPU (x86-64 without AVX: numba's documented way
to make a cache portable), so ``configure`` sets ``NUMBA_CPU_NAME=generic`` unless the user
set it; on this engine's scalar, branchy code that measured no slower than the host CPU's
own code (Azure conversation trace on 4xA100: min 55.0 ms against 54.0 ms). numba checks
the rest of the key itself: its version, the CPython version, the target triple and each
function's bytecode; on any mismatch (another OS or CPU architecture, another numba) the
shipped files are simply not used and the kernels compile as before.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

#: Every module that defines numba kernels, relative to the package.
KERNEL_SOURCES = (
    "engine/state.py",
    "engine/prefix_cache.py",
    "engine/kernels.py",
    "engine/fused.py",
    "engine/outcomes.py",
    "perf/layout.py",
    "perf/kernel.py",
)


#: The compiled kernels shipped with the package: ``<hash>/<kernel folder>/*.nbi, *.nbc``.
SHIPPED_DIR = Path(__file__).resolve().parent / "_jitcache"

#: The package's folder as Python names it (numba names cache sub-folders after the
#: un-resolved path of each kernel's source file).
_PACKAGE_AS_IMPORTED = os.path.dirname(os.path.abspath(__file__))

#: LLVM CPU the kernels are compiled for (numba: "generic" also empties the feature list).
PORTABLE_CPU = "generic"


def kernel_hash() -> str:
    """16 hex digits of a hash of the numba version and every kernel source file."""
    return _sources_digest(_numba_version_stamp())


def sources_hash() -> str:
    """16 hex digits of a hash of every kernel source file alone: what identifies the
    ahead-of-time engine (``engine/compiled.py``), which runs without numba, so another
    installed numba does not make it stale."""
    return _sources_digest(b"")


def _sources_digest(prefix: bytes) -> str:
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(prefix)
    for name in KERNEL_SOURCES:
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]


def configure() -> None:
    """Point numba's cache at ``<user cache>/simreplay/numba-<hash>`` unless the user chose.

    Does not import numba (commands that never compile should not pay for it): sets
    ``NUMBA_CACHE_DIR`` and ``NUMBA_CPU_NAME``, which numba reads when it is first
    imported, and seeds an empty cache folder from the shipped kernels.
    """
    if "NUMBA_CPU_NAME" not in os.environ:
        os.environ["NUMBA_CPU_NAME"] = PORTABLE_CPU
        if "numba" in sys.modules:  # imported before simulator: tell its live config too
            config = sys.modules["numba"].config
            if config.CPU_NAME is None and config.CPU_FEATURES is None:
                config.CPU_NAME, config.CPU_FEATURES = PORTABLE_CPU, ""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    key = kernel_hash()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "simreplay" / f"numba-{key}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # no writable cache folder: numba falls back to its own choice
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if "numba" in sys.modules:
        sys.modules["numba"].config.CACHE_DIR = str(folder)
    if os.environ.get("NUMBA_CPU_NAME") == PORTABLE_CPU and _is_empty(folder):
        seed_from_shipped(folder, key)


def cache_subfolder(kernel_folder: str, package_dir: str = _PACKAGE_AS_IMPORTED) -> str:
    """The sub-folder numba's ``UserProvidedCacheLocator`` uses for one kernel folder.

    numba (0.59-0.68, ``_CacheLocator.get_suitable_cache_subpath``) names it after the
    source file's folder and the SHA-1 of that folder's absolute path, so it differs
    between installs; the shipped files are stored under the plain folder name and copied
    to this name. Should numba change the rule, the copied files are just not found.
    """
    folder = os.path.join(package_dir, kernel_folder)
    return f"{kernel_folder}_{hashlib.sha1(folder.encode()).hexdigest()}"


def seed_from_shipped(folder: Path, key: str, shipped: Path = SHIPPED_DIR) -> int:
    """Copy the shipped compiled kernels of ``key`` into the cache ``folder``.

    Only into kernel sub-folders of this installation that index no kernel yet (the cache
    folder may hold another installation's). Each file is written under a temporary name
    and renamed, index files (``.nbi``) last, so a process that reads the cache meanwhile
    sees either nothing or whole files.
    Returns the number of files copied (0 when nothing is shipped for ``key`` or the
    folder cannot be written).
    """
    source = shipped / key
    if not source.is_dir() or not built_for_this_platform(source / "BUILD.json"):
        return 0
    copied = 0
    try:
        for kernel_dir in sorted(p for p in source.iterdir() if p.is_dir()):
            target = folder / cache_subfolder(kernel_dir.name)
            if target.is_dir() and any(target.glob("*.nbi")):
                continue  # this installation's kernels are there already: keep them
            target.mkdir(parents=True, exist_ok=True)
            files = sorted(kernel_dir.iterdir(), key=lambda p: (p.suffix == ".nbi", p.name))
            for path in files:
                temporary = target / f".{path.name}.{os.getpid()}.tmp"
                shutil.copyfile(path, temporary)
                os.replace(temporary, target / path.name)
                copied += 1
    except OSError:
        return copied
    return copied


def built_for_this_platform(manifest: Path) -> bool:
    """Whether the shipped build's CPython and machine are this process's (the numba version
    is part of the hash that named the folder). On another platform nothing is copied, so
    the cache stays empty and ``run`` says that it compiles; nor is the ahead-of-time engine
    loaded (``engine/compiled.py``). False for a missing or malformed manifest."""
    import json
    import platform

    try:
        built = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(built, dict)
        and built.get("python") == sys.implementation.cache_tag
        and built.get("machine") == platform.machine()
    )


#: The folders (relative to the package) that hold kernel sources: numba caches each
#: folder's kernels in its own sub-folder of the cache (``cache_subfolder``).
KERNEL_FOLDERS = tuple(sorted({name.split("/", 1)[0] for name in KERNEL_SOURCES}))


def _is_empty(folder: Path) -> bool:
    """Some kernel folder of *this* installation has no compiled kernel indexed in the cache
    ``folder`` (True too when it cannot be read).

    numba names the cache sub-folders after the installation's path, so one cache folder
    (one per kernel hash) can hold another checkout's or virtual environment's kernels and
    none of this one's: a second installation of the same version must be seeded too.
    """
    try:
        return any(
            not any((folder / cache_subfolder(name)).glob("*.nbi")) for name in KERNEL_FOLDERS
        )
    except OSError:
        return True


def is_cold() -> bool:
    """True when some kernel is not cached yet: the next run compiles it (all of them:
    1-2 minutes, 2 cores). Where a build is shipped for this numba and platform, every kernel it
    indexes must be indexed in the cache too: a first compile stopped part way (Ctrl-C) left
    some folders with some kernels, and the next run compiled the rest for ~40 s unannounced."""
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder or _is_empty(Path(folder)):
        return True
    return _lacks_a_shipped_kernel(Path(folder), SHIPPED_DIR / kernel_hash())


def _lacks_a_shipped_kernel(folder: Path, shipped: Path) -> bool:
    """Whether ``folder`` lacks an index (``.nbi``) that the shipped build ``shipped`` has
    (False when no build is shipped for this numba and platform: nothing to compare)."""
    if not shipped.is_dir() or not built_for_this_platform(shipped / "BUILD.json"):
        return False
    try:
        for kernel_dir in (p for p in shipped.iterdir() if p.is_dir()):
            target = folder / cache_subfolder(kernel_dir.name)
            if any(not (target / nbi.name).is_file() for nbi in kernel_dir.glob("*.nbi")):
                return True
    except OSError:
        return True
    return False


def lean_loads(namespace: dict) -> None:
    """Load the kernels of a module (its ``globals()``) from numba's cache without the
    target-context refresh numba does first.

    Before loading a cached function numba (0.59-0.68, ``Cache.load_overload``) refreshes
    its CPU target context: it imports some thirty modules of lowering implementations and
    installs their registries, 0.3 s of every command on a 2-core machine (1.6 -> 1.3 s for
    ``run`` on the shipped example). Machine code read from the cache needs none of it. The
    refresh also compiles the runtime's (NRT's) functions (``rtsys.initialize``, 35-55 ms):
    kernels compiled with ``_nrt=False`` reference none of them (their object code's only
    external symbols are CPython's, the C library's and numba's helper library's, which
    ``numba.core.base`` registers on import), so only dispatchers with that flag are
    changed. A cache miss, or any failure of the lean load, takes numba's own path, and
    compiling refreshes the context anyway (``CompilerBase``), runtime included. Only this
    package's dispatchers are changed, and only when numba has the private method this
    relies on.
    """
    for value in list(namespace.values()):
        cache = getattr(value, "_cache", None)
        no_runtime = getattr(value, "targetoptions", {}).get("_nrt") is False
        if no_runtime and cache is not None and callable(getattr(cache, "_load_overload", None)):
            cache.load_overload = functools.partial(_lean_load_overload, cache)


def _lean_load_overload(cache: Any, sig: Any, target_context: Any) -> Any:
    try:
        data = cache._load_overload(sig, target_context)
    except Exception:  # noqa: BLE001 - numba's own path below reports real problems
        data = None
    if data is None:
        return type(cache).load_overload(cache, sig, target_context)
    return data


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
