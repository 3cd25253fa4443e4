"""The compiled kernels shipped in ``simulator/_jitcache``: fresh, found, and used.

A new user's first run loads them instead of compiling for 40-50 s. These tests fail when
a kernel source changed without ``python -m simulator.build_kernels``, when the copy into
an empty cache lands where numba does not look, or when numba recompiles anyway.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numba
import pytest
from numba.core.caching import UserProvidedCacheLocator

from simulator import _numba_cache
from simulator._numba_cache import SHIPPED_DIR, cache_subfolder, kernel_hash, seed_from_shipped

ROOT = Path(__file__).resolve().parents[1]


def _manifest() -> dict:
    found = sorted(SHIPPED_DIR.glob("*/BUILD.json"))
    assert len(found) == 1, f"expected one shipped build in {SHIPPED_DIR}, found {found}"
    return json.loads(found[0].read_text())


def _same_toolchain(manifest: dict) -> bool:
    return (
        manifest["numba"] == numba.__version__
        and manifest["python"] == sys.implementation.cache_tag
        and manifest["machine"] == platform.machine()
    )


def test_shipped_kernels_match_the_kernel_sources():
    manifest = _manifest()
    if manifest["numba"] != numba.__version__:
        pytest.skip(f"shipped kernels are for numba {manifest['numba']}, not {numba.__version__}")
    assert manifest["kernel_hash"] == kernel_hash(), (
        "a kernel source changed since the shipped kernels were built: run "
        "python -m simulator.build_kernels and commit simulator/_jitcache"
    )
    assert manifest["not_compiled"] == []
    names = {p.name for p in (SHIPPED_DIR / kernel_hash()).glob("*/*.nbi")}
    assert "fused.run_fused-" in " ".join(names) and any(n.startswith("kernel.") for n in names)


def test_cache_subfolder_is_the_one_numba_looks_in(tmp_path):
    source = tmp_path / "pkg" / "engine" / "fused.py"
    assert cache_subfolder("engine", str(tmp_path / "pkg")) == (
        UserProvidedCacheLocator.get_suitable_cache_subpath(str(source))
    )


def test_seeding_copies_whole_files_only_for_its_hash_and_platform(tmp_path):
    shipped = tmp_path / "shipped"
    (shipped / "abc" / "engine").mkdir(parents=True)
    (shipped / "abc" / "engine" / "f.run-1.py311.nbi").write_bytes(b"index")
    (shipped / "abc" / "engine" / "f.run-1.py311.1.nbc").write_bytes(b"code")
    manifest = shipped / "abc" / "BUILD.json"
    cache = tmp_path / "cache"
    for other in ({"python": "cpython-399", "machine": platform.machine()}, {}):
        manifest.write_text(json.dumps(other))
        assert seed_from_shipped(cache, "abc", shipped) == 0
    assert not cache.exists()
    here = {"python": sys.implementation.cache_tag, "machine": platform.machine()}
    manifest.write_text(json.dumps(here))
    assert seed_from_shipped(cache, "other", shipped) == 0
    assert seed_from_shipped(cache, "abc", shipped) == 2
    target = cache / cache_subfolder("engine")
    assert sorted(p.name for p in target.iterdir()) == ["f.run-1.py311.1.nbc", "f.run-1.py311.nbi"]
    assert (target / "f.run-1.py311.1.nbc").read_bytes() == b"code"


def test_a_second_installation_sharing_the_cache_folder_is_seeded_too(tmp_path):
    """The cache folder is per kernel hash, its sub-folders per installation path: a
    folder holding only another checkout's kernels must not count as warm for this one
    (a fresh clone next to an older one compiled for 44 s)."""
    shipped = tmp_path / "shipped"
    for name in _numba_cache.KERNEL_FOLDERS:
        (shipped / "abc" / name).mkdir(parents=True)
        (shipped / "abc" / name / "k.f-1.py311.nbi").write_bytes(b"index " + name.encode())
    here = {"python": sys.implementation.cache_tag, "machine": platform.machine()}
    (shipped / "abc" / "BUILD.json").write_text(json.dumps(here))
    cache = tmp_path / "cache"
    other = cache / "engine_0123456789abcdef0123456789abcdef01234567"
    other.mkdir(parents=True)
    (other / "k.f-1.py311.nbi").write_bytes(b"another installation's")
    assert _numba_cache._is_empty(cache)
    assert seed_from_shipped(cache, "abc", shipped) == len(_numba_cache.KERNEL_FOLDERS)
    assert not _numba_cache._is_empty(cache)
    assert (other / "k.f-1.py311.nbi").read_bytes() == b"another installation's"
    # Already seeded (or compiled here): nothing is copied over this installation's files.
    mine = cache / cache_subfolder("engine") / "k.f-1.py311.nbi"
    mine.write_bytes(b"compiled here")
    assert seed_from_shipped(cache, "abc", shipped) == 0
    assert mine.read_bytes() == b"compiled here"


def test_a_first_run_with_an_empty_cache_loads_the_shipped_kernels(tmp_path):
    """A fresh user (no cache, no numba settings) simulates without compiling anything."""
    manifest = _manifest()
    if not _same_toolchain(manifest) or manifest["kernel_hash"] != kernel_hash():
        pytest.skip("the shipped kernels are for another numba, CPython or machine")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "home-cache")
    # numba's build of the fused path, not the ahead-of-time one (test_compiled_engine.py).
    env["SIMREPLAY_AOT"] = "0"
    code = """
import json
from simulator import Scenario, simulate
from simulator.engine import fused
from simulator.trace.importer import load_trace
trace = load_trace("traces/chat-1h.parquet").slice(0, 300)
simulate(trace, Scenario(gpus="2xA100"))
simulate(trace, Scenario(gpus="2xA100"), orchestration="simpy")
stats = [fused.run_fused.stats, fused.advance_all.stats]
print(json.dumps([[sum(s.cache_hits.values()), sum(s.cache_misses.values())] for s in stats]))
import sys
print(json.dumps("numba.np.linalg" in sys.modules))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    (fused_hits, fused_misses), (advance_hits, advance_misses) = json.loads(
        proc.stdout.splitlines()[-2]
    )
    # Loaded without numba's target-context refresh (``_numba_cache.lean_loads``), which
    # would have imported numba's lowering modules, linalg among them.
    assert json.loads(proc.stdout.splitlines()[-1]) is False
    assert fused_misses == 0 and fused_hits >= 1
    assert advance_misses == 0 and advance_hits >= 1
    assert list((tmp_path / "home-cache" / "simreplay").glob("numba-*/engine_*/*.nbi"))


def test_configure_leaves_a_chosen_cpu_alone(monkeypatch):
    monkeypatch.setenv("NUMBA_CPU_NAME", "znver3")
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/nonexistent-never-created")
    _numba_cache.configure()
    assert os.environ["NUMBA_CPU_NAME"] == "znver3"


LEAN_MODULE = """
from numba import njit
from simulator import _numba_cache

@njit(cache=True, _nrt=False)
def triangle(n):
    total = 0
    for i in range(n + 1):
        total += i
    return total

_numba_cache.lean_loads(globals())
"""

LEAN_CALL = """
import json, sys
sys.path.insert(0, sys.argv[1])
import lean_kernel
value = lean_kernel.triangle(100)
stats = lean_kernel.triangle.stats
from numba.core.runtime import rtsys
print(json.dumps([value, sum(stats.cache_hits.values()), sum(stats.cache_misses.values()),
                  "numba.np.linalg" in sys.modules, rtsys._init]))
"""


def test_lean_loads_compile_on_a_miss_and_load_without_refreshing_on_a_hit(tmp_path):
    """A kernel module under ``lean_loads``: the first process misses the cache and compiles
    (numba's own path); the second loads it from the cache without numba's context refresh
    (no lowering module imported) and computes the same."""
    (tmp_path / "lean_kernel.py").write_text(LEAN_MODULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    runs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", LEAN_CALL, str(tmp_path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.splitlines()[-1]))
    # Compiled: the refresh imported the lowering and set up the runtime (NRT).
    assert runs[0] == [5050, 0, 1, True, True]
    # Loaded lean: neither (an ``_nrt=False`` kernel's machine code references no NRT symbol).
    assert runs[1] == [5050, 1, 0, False, False]


def test_lean_loads_leaves_kernels_that_use_the_runtime_to_numba():
    """Only ``_nrt=False`` kernels skip the runtime's set-up; others keep numba's loader."""
    from numba import njit

    @njit(cache=True)
    def with_runtime(n):
        return n

    @njit(cache=True, _nrt=False)
    def without_runtime(n):
        return n

    namespace = {"with_runtime": with_runtime, "without_runtime": without_runtime}
    _numba_cache.lean_loads(namespace)
    assert "load_overload" not in vars(with_runtime._cache)
    assert isinstance(vars(without_runtime._cache)["load_overload"], functools.partial)


def test_a_cache_missing_some_shipped_kernels_reads_as_cold(tmp_path):
    """A QA pass: a first compile stopped part way (Ctrl-C) left some kernels indexed; the
    next run compiled the rest for ~40 s without the 'compiling' note, as if it hung."""
    shipped = tmp_path / "shipped"
    for name in _numba_cache.KERNEL_FOLDERS:
        for kernel in ("a", "b"):
            (shipped / name).mkdir(parents=True, exist_ok=True)
            (shipped / name / f"k.{kernel}-1.py311.nbi").write_bytes(b"index")
    here = {"python": sys.implementation.cache_tag, "machine": platform.machine()}
    (shipped / "BUILD.json").write_text(json.dumps(here))
    cache = tmp_path / "cache"
    for name in _numba_cache.KERNEL_FOLDERS:
        target = cache / _numba_cache.cache_subfolder(name)
        target.mkdir(parents=True)
        (target / "k.a-1.py311.nbi").write_bytes(b"index")
    assert not _numba_cache._is_empty(cache)
    assert _numba_cache._lacks_a_shipped_kernel(cache, shipped)
    for name in _numba_cache.KERNEL_FOLDERS:
        (cache / _numba_cache.cache_subfolder(name) / "k.b-1.py311.nbi").write_bytes(b"index")
    assert not _numba_cache._lacks_a_shipped_kernel(cache, shipped)
    assert not _numba_cache._lacks_a_shipped_kernel(cache, tmp_path / "nothing shipped")
