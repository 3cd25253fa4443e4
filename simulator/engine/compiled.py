"""The fused engine compiled ahead of time: a replay with built-in policies without numba.

``fused.run_fused`` replays a whole trace when every policy of the run is built in (what
``simreplay run`` does unless a closed loop or a Python router is asked for). Through numba
it costs every command an import of numba (about 0.37 s on a 2-core machine) and the load
of its cached machine code (0.1-0.15 s) before the replay starts, about as long as the rest
of a one-hour trace's whole command. ``python -m simulator.build_kernels`` therefore also
compiles ``run_fused`` (with every kernel it calls) into a CPython extension module with
numba's ahead-of-time compiler (``numba.pycc``), shipped beside the cached kernels:
``simulator/_jitcache/<kernel hash>/_fused_aot<extension suffix>``, named in that folder's
``BUILD.json``, with the passes that read the summary's per-request outcomes and KV use
from the final state (``outcomes.py``) and the step-time breakdown (``perf/kernel.py``).
Importing it takes about a millisecond and needs numpy only.

It is the same source through the same LLVM for the same portable CPU (``generic``), with
no fast-math, so it computes the same floats: a test replays scenarios covering every
scheduler, router and engine feature through both and requires identical state, bit for
bit. It is used only when all of these hold, and numba's path runs otherwise:

- its manifest's ``sources_hash`` is the hash of the current kernel sources
  (``_numba_cache.sources_hash``), so an edited kernel is never served by a stale build
  (another numba version is no reason to refuse it: it does not use numba);
- the build's manifest names this CPython and machine, and the module imports (another C
  library, numpy ABI or platform raises ``ImportError``; the shipped build links only the
  C and math libraries and needs glibc 2.29 or later);
- ``NUMBA_DISABLE_JIT`` is not set (debugging and coverage run the Python source) and
  ``SIMREPLAY_AOT`` is not ``0`` (tests and benchmarks compare the two builds).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from simulator import _numba_cache

#: The extension's module name (its file is this plus the interpreter's extension suffix).
MODULE_NAME = "_fused_aot"

#: numba type signature of ``run_fused`` as ``state.EngineState.kernel_args`` passes it,
#: plus the router's draws and each session's replica (all C-contiguous).
RUN_FUSED_SIGNATURE = (
    "i8(i8[:, ::1], f8[:, ::1], i8[:, ::1], f8[:, ::1], i8[:, ::1], i8[::1], f8[::1], "
    "f8[:, ::1], i8[:, ::1], f8[:, ::1], i8[::1], i8[::1], i8[:, ::1], i8[::1], f8[::1], "
    "i8[::1])"
)

#: numba type signature of ``outcomes.read_outcomes``, also in the extension: with it a
#: replay's summary reads the request tables without numba too.
READ_OUTCOMES_SIGNATURE = (
    "void(i8[:, ::1], f8[:, ::1], f8[::1], b1[::1], f8[::1], f8[::1], f8[::1], f8[::1], "
    "f8[::1], i8[::1], i8[::1], f8[::1])"
)
#: And of ``outcomes.read_kv_usage``.
READ_KV_USAGE_SIGNATURE = "f8(i8[:, ::1], f8[:, ::1], i8, i8, f8, f8[::1], f8[::1], f8[::1])"
#: And of ``perf.kernel.step_time_parts_s``: ``resolve`` times one prompt step of a TP group
#: (its all-reduce note), so a run with tp > 1 needs no numba either.
STEP_TIME_PARTS_SIGNATURE = "f8(f8[::1], i8, i8, f8, i8, i8, i8, f8[::1])"


def file_name() -> str:
    """The extension's file name for this interpreter."""
    return MODULE_NAME + importlib.machinery.EXTENSION_SUFFIXES[0]


def shipped_path(shipped: Path = _numba_cache.SHIPPED_DIR) -> Path | None:
    """The shipped extension built from the current kernel sources, or None.

    Found through the build manifests (``BUILD.json``) in ``shipped``: the one whose
    ``sources_hash`` is that of the kernel sources now (``_numba_cache.sources_hash``). The
    numba version is not part of it: the extension does not use numba.
    """
    want = _numba_cache.sources_hash()
    for manifest in sorted(shipped.glob("*/BUILD.json")):
        try:
            built = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(built, dict):
            continue
        name = built.get("ahead_of_time")
        if built.get("sources_hash") == want and isinstance(name, str) and name:
            return manifest.parent / name
    return None


def enabled() -> bool:
    """False when the environment asks for numba's path (see the module docstring)."""
    return os.environ.get("SIMREPLAY_AOT", "1") != "0" and os.environ.get(
        "NUMBA_DISABLE_JIT", "0"
    ) in ("", "0")


@functools.cache
def shipped_module() -> ModuleType | None:
    """The shipped extension when it matches this installation and imports, else None."""
    return load(shipped_path())


def load(path: Path | None) -> ModuleType | None:
    """The extension module at ``path`` if its folder's ``BUILD.json`` names this CPython
    and machine and it imports; None otherwise (nothing is raised)."""
    if path is None or not path.is_file():
        return None
    if not path.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return None
    if not _numba_cache.built_for_this_platform(path.parent / "BUILD.json"):
        return None
    spec = importlib.util.spec_from_file_location(f"simulator.engine.{MODULE_NAME}", path)
    if spec is None or spec.loader is None:
        return None
    try:
        module = importlib.util.module_from_spec(spec)  # loads the shared library
        spec.loader.exec_module(module)
    except ImportError:
        return None
    return module


def available() -> bool:
    """Whether a fused replay runs the shipped extension (no numba import, no compiling)."""
    return enabled() and shipped_module() is not None


def run_fused() -> Callable[..., int]:
    """``fused.run_fused``: the shipped extension's when ``available()``, else numba's."""
    if available():
        return shipped_module().run_fused
    from simulator.engine import fused

    return fused.run_fused


def read_outcomes() -> Callable[..., None]:
    """``outcomes.read_outcomes``: the shipped extension's when ``available()``, else
    numba's."""
    if available():
        return shipped_module().read_outcomes
    from simulator.engine import outcomes

    return outcomes.read_outcomes


def read_kv_usage() -> Callable[..., float]:
    """``outcomes.read_kv_usage``: the shipped extension's when ``available()``, else
    numba's."""
    if available():
        return shipped_module().read_kv_usage
    from simulator.engine import outcomes

    return outcomes.read_kv_usage


def step_time_parts_s() -> Callable[..., float]:
    """``perf.kernel.step_time_parts_s``: the shipped extension's when ``available()`` and
    it has it, else numba's."""
    if available():
        aot = getattr(shipped_module(), "step_time_parts_s", None)
        if aot is not None:
            return aot
    from simulator.perf import kernel

    return kernel.step_time_parts_s
