"""Benchmark: scenarios per second of `simreplay sweep` (local processes and Ray).

    python benchmarks/sweep_speed.py                      # the 1,000-scenario sweep, 2 workers
    python benchmarks/sweep_speed.py --grid small --workers 1,2 --backend local,ray

Trace: the Azure 2023 conversation trace (19,366 requests, ../shared/traces). Grids:

- ``full`` (1,000 scenarios): --gpus 1xH100,2xH100,4xH100,2xA100,4xA100
  x --rate-scale 0.5,1,1.5,2,3 x --max-num-seqs 64,128,256,512
  x --gpu-memory-utilization 0.8,0.85,0.9,0.92,0.95 x --max-num-batched-tokens 2048,8192
  (5 x 5 x 4 x 5 x 2)
- ``small`` (80 scenarios): 5 GPU fleets x --rate-scale 0.5,1,2,3 x --max-num-seqs
  128,256,512,1024 (5 x 4 x 4), at --gpu-memory-utilization 0.85.

The scenario count printed is what the sweep stored (read back with ``sweep show
--json``), not the grid's intended size. Each run is the whole command in a fresh process
into an empty --out (numba cache warm), so the figure includes worker start-up, trace
loading and per-scenario row writes. A
second run of the same command (everything already stored) measures the resume overhead,
and ``sweep show --json`` the time to read the store back.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AZURE = ROOT.parent / "shared" / "traces" / "azure2023" / "AzureLLMInferenceTrace_conv.csv"

GRIDS = {
    "full": [
        "--gpus", "1xH100,2xH100,4xH100,2xA100,4xA100",
        "--rate-scale", "0.5,1,1.5,2,3",
        "--max-num-seqs", "64,128,256,512",
        "--gpu-memory-utilization", "0.8,0.85,0.9,0.92,0.95",
        "--max-num-batched-tokens", "2048,8192",
    ],
    "small": [
        "--gpus", "1xH100,2xH100,2xA100,4xA100,4xH100",
        "--rate-scale", "0.5,1,2,3",
        "--max-num-seqs", "128,256,512,1024",
        "--gpu-memory-utilization", "0.85",
    ],
}  # fmt: skip


def run(args: list[str]) -> tuple[float, str]:
    """Wall seconds of one ``simreplay sweep`` command, and its stdout."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "simulator", "sweep", *args], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full")
    parser.add_argument("--workers", default="2")
    parser.add_argument("--backend", default="local")
    options = parser.parse_args()
    if not AZURE.is_file():
        raise SystemExit(f"{AZURE} is not present")
    for backend in options.backend.split(","):
        for workers in options.workers.split(",") if backend == "local" else ["-"]:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "sweep"
                args = [str(AZURE), *GRIDS[options.grid], "--out", str(out)]
                args += ["--backend", backend]
                if backend == "local":
                    args += ["--workers", workers]
                elapsed, _ = run(args)
                resume, _ = run(args)
                show, shown = run(["show", str(out), "--json"])
                num = len(json.loads(shown)["rows"])
            label = f"{backend}, {workers} workers" if backend == "local" else "ray (local)"
            if backend == "ray":
                label += f", of which Ray start/stop {ray_start_stop_s():.1f} s"
            print(
                f"{options.grid} grid ({num} scenarios), {label}: {elapsed:.1f} s, "
                f"{num / elapsed:.1f} scenarios/s; resume with all stored: {resume:.1f} s; "
                f"sweep show --json: {show:.1f} s"
            )


def ray_start_stop_s() -> float:
    """Wall time of starting and stopping a local Ray instance (paid once per sweep)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import ray; ray.init(include_dashboard=False); ray.shutdown()"],
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
