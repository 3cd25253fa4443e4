"""Benchmark: the prefix cache on the Mooncake conversation trace (issue: prefix caching).

    python benchmarks/prefix_cache.py [--gpus 8xH100] [--model llama-3.1-8b] [--repeats 5]

For caching off, on with least-outstanding routing, and on with prefix-aware routing:
p50/p99 TTFT, the hit rate (tokens found at admission over tokens asked) and the share of
prompt tokens cached at first admission, and the replay speed (``simulate`` on an in-memory
table, kernels compiled; median of repeats) in requests per second.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOONCAKE = ROOT.parent / "shared" / "traces" / "mooncake" / "conversation_trace.jsonl"

CASES = {
    "caching off": {"enable_prefix_caching": False},
    "on, least-outstanding": {"enable_prefix_caching": True},
    "on, prefix-aware": {"enable_prefix_caching": True, "router": "prefix-aware"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", default="8xH100")
    parser.add_argument("--model", default="llama-3.1-8b")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not MOONCAKE.exists():
        raise SystemExit(f"{MOONCAKE} is missing (../shared/traces)")

    from simulator import Scenario, simulate
    from simulator.trace.importer import load_trace

    table = load_trace(MOONCAKE)
    print(f"Mooncake conversation trace, {table.num_rows:,} requests, on {args.gpus} {args.model}")
    print(
        f"{'case':<24} {'TTFT p50 ms':>12} {'TTFT p99 ms':>12} {'hit rate':>9} "
        f"{'cached@1st':>11} {'replay s':>9} {'req/s':>9}"
    )
    for name, extra in CASES.items():
        scenario = Scenario(gpus=args.gpus, model=args.model, **extra)
        result = simulate(table, scenario)  # compile or load the kernels
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = simulate(table, scenario)
            times.append(time.perf_counter() - started)
        s = result.summary
        cache = s.get("prefix_cache", {})
        elapsed = statistics.median(times)
        print(
            f"{name:<24} {s['ttft_ms']['p50']:>12,.0f} {s['ttft_ms']['p99']:>12,.0f} "
            f"{cache.get('hit_rate', 0.0):>9.1%} "
            f"{cache.get('prompt_tokens_cached_fraction', 0.0):>11.1%} "
            f"{elapsed:>9.3f} {table.num_rows / elapsed:>9,.0f}"
        )


if __name__ == "__main__":
    main()
