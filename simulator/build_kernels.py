"""Compile the engine's numba kernels into the package (``simulator/_jitcache/<hash>/``).

    python -m simulator.build_kernels

Run after changing any file in ``_numba_cache.KERNEL_SOURCES`` (a test fails until the
shipped kernels match the sources) and commit the result. The kernels are compiled for
LLVM's portable ``generic`` CPU in a child process with an empty cache, running every
scheduler, router, orchestration and engine feature once on slices of the example traces;
``_numba_cache.configure`` copies them into a user's empty cache (see that module).

The fused engine is also compiled ahead of time into a CPython extension module (see
``engine/compiled.py``), in another child process with numba's ``pycc``; that step needs a
C compiler and CPython's headers (users of the shipped build need neither).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from simulator._numba_cache import (
    KERNEL_SOURCES,
    PORTABLE_CPU,
    SHIPPED_DIR,
    cache_subfolder,
    kernel_hash,
    sources_hash,
)
from simulator.engine import compiled

#: What the shipped kernels were built with (numba checks the same when loading them).
MANIFEST = "BUILD.json"


def _warm_up() -> None:
    """Compile every kernel a user's commands reach: each scheduler, router and
    orchestration, prefix caching, closed-loop sessions and pipeline stages, on slices of
    the shipped example traces (run in the build's child process)."""
    from simulator import Scenario, simulate
    from simulator.scenario import resolve
    from simulator.trace.importer import load_trace

    traces = Path(__file__).resolve().parents[1] / "traces"
    chat = load_trace(traces / "chat-1h.parquet").slice(0, 400)
    sessions = load_trace(traces / "chat-sessions.parquet").slice(0, 400)
    for scheduler in ("vllm", "vllm-v0", "sarathi"):
        simulate(chat, Scenario(gpus="2xA100", scheduler=scheduler))
    for router in ("round-robin", "least-kv", "random", "vllm-dp"):
        simulate(chat, Scenario(gpus="2xA100", router=router))
    simulate(chat, Scenario(gpus="2xA100"), orchestration="simpy")
    simulate(chat, Scenario(gpus="4xA100", model="llama-3.1-70b", tp=2, pp=2))
    simulate(chat, Scenario(gpus="2xH100", model="mixtral-8x7b", tp=2, max_num_seqs=4))
    prefix = Scenario(gpus="2xA100", enable_prefix_caching=True, router="prefix-aware")
    simulate(sessions, prefix)
    simulate(sessions, Scenario(gpus="2xA100", enable_prefix_caching=True, closed_loop=True))
    simulate(sessions, Scenario(gpus="2xA100", router="session-affinity"))
    # Step-time breakdowns (calibrate validate, the step-level benchmark).
    step = resolve(Scenario(gpus="2xA100")).step_model
    step.predict_parts(num_decode_seqs=8, decode_context_tokens=8000)
    print(json.dumps({"not_compiled": _uncompiled_kernels()}))


def _uncompiled_kernels() -> list[str]:
    """Kernels the warm-up never compiled (they would compile on a user's first use);
    kernels inlined into their callers are not counted."""
    import importlib

    from numba.core.registry import CPUDispatcher

    missing = []
    for name in KERNEL_SOURCES:
        module = importlib.import_module("simulator." + name[:-3].replace("/", "."))
        for attr, value in sorted(vars(module).items()):
            if isinstance(value, CPUDispatcher) and value.__module__ == module.__name__:
                # inline="always" kernels are compiled into their callers, never alone.
                if not value.signatures and value.targetoptions.get("inline") != "always":
                    missing.append(f"{module.__name__}.{attr}")
    return missing


def _compile_ahead_of_time(output_dir: str) -> None:
    """Compile ``fused.run_fused`` into ``output_dir`` with numba's ``pycc`` (run in the
    build's second child process)."""
    import warnings

    from numba.pycc import CC

    from simulator.engine import fused, outcomes
    from simulator.perf import kernel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's own deprecation notice
        cc = CC(compiled.MODULE_NAME, source_module=fused)
    cc.output_dir = output_dir
    cc.target_cpu = PORTABLE_CPU
    # As the numba kernels (``_nrt=False``): nothing in the fused engine allocates, and with
    # numba's runtime pycc wraps every call between kernels in atomic reference counts of
    # its array arguments (3 % of a lightly loaded replay's time).
    cc.use_nrt = False
    cc.export("run_fused", compiled.RUN_FUSED_SIGNATURE)(fused.run_fused.py_func)
    cc.export("read_outcomes", compiled.READ_OUTCOMES_SIGNATURE)(outcomes.read_outcomes.py_func)
    cc.export("read_kv_usage", compiled.READ_KV_USAGE_SIGNATURE)(outcomes.read_kv_usage.py_func)
    cc.export("step_time_parts_s", compiled.STEP_TIME_PARTS_SIGNATURE)(
        kernel.step_time_parts_s.py_func
    )
    cc.compile()


def _build_ahead_of_time(staging: Path) -> int:
    """Compile the fused engine's extension module into ``staging``; return its size."""
    with tempfile.TemporaryDirectory(prefix="simreplay-aot-") as scratch:
        env = dict(os.environ, NUMBA_CACHE_DIR=scratch)
        code = (
            "from simulator.build_kernels import _compile_ahead_of_time; "
            f"_compile_ahead_of_time({scratch!r})"
        )
        subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        )
        name = compiled.file_name()
        built = Path(scratch) / name
        if not built.is_file():
            raise RuntimeError(f"numba.pycc wrote no {name} in {scratch}")
        shutil.copyfile(built, staging / name)
        return built.stat().st_size


def build(shipped: Path = SHIPPED_DIR) -> dict[str, int]:
    """Compile the kernels for the portable CPU into ``shipped/<hash>/`` (the only hash
    kept), from a child process with an empty cache. Returns files and bytes written."""
    key = kernel_hash()
    shipped.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="simreplay-jit-") as scratch:
        # SIMREPLAY_AOT=0: the warm-up must compile numba's kernels, not run a shipped
        # extension built from the same sources (a rebuild that changed no kernel).
        env = dict(
            os.environ, NUMBA_CACHE_DIR=scratch, NUMBA_CPU_NAME=PORTABLE_CPU, SIMREPLAY_AOT="0"
        )
        env.pop("NUMBA_CPU_FEATURES", None)
        code = "from simulator.build_kernels import _warm_up; _warm_up()"
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        )
        not_compiled = json.loads(proc.stdout.strip().splitlines()[-1])["not_compiled"]
        staging = shipped / f".{key}.building"
        shutil.rmtree(staging, ignore_errors=True)
        files = size = 0
        for kernel_folder in sorted({Path(name).parts[0] for name in KERNEL_SOURCES}):
            found = Path(scratch) / cache_subfolder(kernel_folder)
            if not found.is_dir():
                raise RuntimeError(f"no compiled kernels for {kernel_folder} in {found}")
            target = staging / kernel_folder
            target.mkdir(parents=True)
            for path in sorted(found.glob("*.nb[ic]")):
                shutil.copyfile(path, target / path.name)
                files += 1
                size += path.stat().st_size
        size += _build_ahead_of_time(staging)
        files += 1
        import numba

        manifest = {
            "kernel_hash": key,
            "numba": numba.__version__,
            "python": f"{sys.implementation.cache_tag}",
            "machine": platform.machine(),
            "cpu": PORTABLE_CPU,
            "files": files,
            "not_compiled": not_compiled,
            "sources_hash": sources_hash(),
            "ahead_of_time": compiled.file_name(),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    for old in shipped.iterdir():
        if old.is_dir() and old != staging:
            shutil.rmtree(old)
    staging.rename(shipped / key)
    return {"files": files, "bytes": size, "not_compiled": not_compiled}


def main() -> None:
    """``python -m simulator.build_kernels``: rebuild the shipped kernels, print what."""
    if sys.argv[1:]:
        sys.exit("usage: python -m simulator.build_kernels   (no arguments)")
    written = build()
    print(
        f"wrote {written['files']} files ({written['bytes'] / 2**20:.1f} MiB) to "
        f"{SHIPPED_DIR / kernel_hash()}"
    )
    if written["not_compiled"]:
        missed = ", ".join(written["not_compiled"])
        print(f"not reached by the warm-up (compiled on first use): {missed}")


if __name__ == "__main__":
    main()
