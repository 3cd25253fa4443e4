"""Benchmark: how fast `simreplay run` replays traces, and how much memory it takes.

    python benchmarks/replay_speed.py                  # all cases below
    python benchmarks/replay_speed.py --only azure     # or: synthetic

Cases (from the replay issue):
- the Azure 2023 conversation trace (19,366 requests, ../shared/traces) on
  `16xA100 --model llama-2-70b --tp 4` (4 replicas) and on the default model on `4xA100`;
- a synthetic 1,000,000-request trace (Poisson, lognormal lengths with mean 1,000 prompt and
  250 output tokens) on `16xH100` at 240 req/s, ~80% of the ~300 req/s this fleet sustains
  (offered 400-500 req/s, it completes ~303 req/s).

For each: the replay alone (``simulate`` on an in-memory table, JIT already compiled;
median of repeats), and the whole command in a fresh process: cold as a new user runs it
(empty user cache, no numba settings: the shipped ahead-of-time engine runs, see
``simulator/engine/compiled.py``), warm (same, cache filled), warm through numba's build
(``SIMREPLAY_AOT=0``: the shipped cached kernels are loaded by numba), and cold compiling
(``SIMREPLAY_AOT=0`` and an empty ``NUMBA_CACHE_DIR``, which skips every shipped build, so
JIT compilation is included: what a machine the shipped builds do not fit sees); plus the
command's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AZURE = ROOT.parent / "shared" / "traces" / "azure2023" / "AzureLLMInferenceTrace_conv.csv"


def replay_alone_s(trace: Path, gpus: str, extra: dict, repeats: int) -> tuple[float, float, dict]:
    """Median wall times of ``simulate`` on a table already in memory (kernels compiled),
    and of the engine alone within it (``cluster.run_all_numba``: the fused replay, without
    building its state or reading the results)."""
    from simulator import Scenario, cluster, simulate
    from simulator.trace.importer import load_trace

    engine_s: list[float] = []
    engine = cluster.run_all_numba

    def timed_engine(*args: object) -> object:
        started = time.perf_counter()
        try:
            return engine(*args)
        finally:
            engine_s.append(time.perf_counter() - started)

    table = load_trace(trace)
    scenario = Scenario(gpus=gpus, **extra)
    result = simulate(table, scenario)  # compile or load the kernels
    summary = result.summary
    times = []
    cluster.run_all_numba = timed_engine
    try:
        for _ in range(repeats):
            # Free the previous run's state first: its ~0.4 GB (1M requests) would otherwise
            # be released inside the timed call, which a single run never pays.
            del result
            started = time.perf_counter()
            result = simulate(table, scenario)
            times.append(time.perf_counter() - started)
            summary = result.summary
    finally:
        cluster.run_all_numba = engine
    return statistics.median(times), statistics.median(engine_s), summary


def command_s(
    args: list[str], cache_dir: str, *, user_cache: bool = False, aot: bool = True
) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of ``simreplay ARGS`` in a fresh process.

    ``cache_dir`` is ``NUMBA_CACHE_DIR``, or with ``user_cache`` the ``XDG_CACHE_HOME`` of a
    user who set no numba variable. The peak is read by GNU time around the command: a
    child's ``ru_maxrss`` seen from this process would count the pages it shared with this
    (large) process between fork and exec. ``aot=False`` sets ``SIMREPLAY_AOT=0`` (numba's
    build of the engine instead of the shipped ahead-of-time one).
    """
    # As a user runs it: no numba settings, and Python caching bytecode (some CI images
    # set PYTHONDONTWRITEBYTECODE, which recompiles every module of the package each run).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NUMBA_", "SIMREPLAY_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update({"XDG_CACHE_HOME": cache_dir} if user_cache else {"NUMBA_CACHE_DIR": cache_dir})
    if not aot:
        env["SIMREPLAY_AOT"] = "0"
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        command = [sys.executable, "-m", "simulator", *args]
        if Path("/usr/bin/time").exists():
            command = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *command]
        started = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"simreplay {' '.join(args)} failed: {proc.stderr.strip()}")
        text = rss_file.read().strip()
    peak_kib = int(text.splitlines()[-1]) if text else 0
    return elapsed, peak_kib * 1024


def bench_case(name: str, trace: Path, gpus: str, extra: dict, repeats: int) -> None:
    alone_s, engine_s, summary = replay_alone_s(trace, gpus, extra, repeats)
    n = summary["num_requests"]
    args = ["run", str(trace), "--gpus", gpus, "--json"]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as cache:
        shipped_s, shipped_rss = command_s(args, home, user_cache=True)
        cold_s, cold_rss = command_s(args, cache, aot=False)
        warm = [command_s(args, home, user_cache=True) for _ in range(repeats)]
        warm_numba = [command_s(args, home, user_cache=True, aot=False) for _ in range(repeats)]
    warm_s = statistics.median(w[0] for w in warm)
    warm_numba_s = statistics.median(w[0] for w in warm_numba)
    print(f"{name}: {n:,} requests, {gpus} {extra or ''}")
    print(f"  replay alone (median of {repeats}): {alone_s:.3f} s  ({n / alone_s:,.0f} requests/s)")
    print(
        f"  of which the engine (median): {engine_s:.3f} s  ({n / engine_s:,.0f} requests/s); "
        "the rest builds its state and reads the results"
    )
    print(
        f"  whole command: cold {shipped_s:.2f} s (new user, shipped builds), warm {warm_s:.2f} s"
        f" (median of {repeats}); through numba: warm {warm_numba_s:.2f} s, cold "
        f"{cold_s:.2f} s (JIT compile included)"
    )
    peak = max([shipped_rss, *(w[1] for w in warm)])
    peak_numba = max([cold_rss, *(w[1] for w in warm_numba)])
    print(
        f"  peak RSS of the command: {peak / 2**20:,.0f} MiB "
        f"({peak_numba / 2**20:,.0f} MiB through numba)"
    )
    print(
        f"  p99 TTFT {summary['ttft_ms']['p99']:,.1f} ms, "
        f"p99 TPOT {summary['tpot_ms']['p99']:,.1f} ms, "
        f"preemptions {summary['num_preemptions']:,}"
    )


def synthetic_trace(path: Path, num_requests: int, rate_rps: float) -> None:
    from simulator.io import write_parquet_atomic
    from simulator.trace.arrivals import arrival_process
    from simulator.trace.synth import parse_length_distribution, synthesize

    table = synthesize(
        arrival_process("poisson", rate_rps),
        num_requests=num_requests,
        input_lengths=parse_length_distribution("lognormal:mean=1000,cv=1,max=16000"),
        output_lengths=parse_length_distribution("lognormal:mean=250,cv=1,max=4000"),
        seed=7,
    )
    write_parquet_atomic(table, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["azure", "synthetic"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rate",
        type=float,
        default=240.0,
        help="synthetic arrival rate (req/s): ~80%% of the ~300 req/s that 16xH100 sustain "
        "for Llama-3.1-8B at vLLM defaults (measured with this simulator)",
    )
    parser.add_argument("--num-requests", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    if args.only in (None, "azure"):
        if not AZURE.exists():
            print(f"skipping Azure cases: {AZURE} not found")
        else:
            bench_case(
                "azure-conv 70B", AZURE, "16xA100", {"model": "llama-2-70b", "tp": 4}, args.repeats
            )
            bench_case("azure-conv 8B", AZURE, "4xA100", {}, args.repeats)
    if args.only in (None, "synthetic"):
        with tempfile.TemporaryDirectory() as tmp:
            trace = Path(tmp) / "synthetic.parquet"
            synthetic_trace(trace, args.num_requests, args.rate)
            bench_case("synthetic 1M", trace, "16xH100", {}, args.repeats)


if __name__ == "__main__":
    main()
