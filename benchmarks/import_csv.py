"""Benchmark: import a large Azure-format CSV; report rows/s and peak RSS.

    python benchmarks/import_csv.py                 # 10,000,000 rows (the issue's target)
    python benchmarks/import_csv.py --rows 1000000 --repeat 5

The CSV is generated once into a temporary folder (Azure 2023 layout: 7 fractional digits,
Poisson arrivals at 50 req/s, lognormal lengths), then `simreplay trace import` runs in a
fresh child process per repeat, so peak RSS is the import's own. Reported: the median wall
time over the repeats, rows per second from it, and the largest peak RSS.
Target on the 2-core reference machine: >= 2,000,000 rows/s and peak RSS < 1.5 GB.
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv


def write_azure_csv(path: Path, num_rows: int, seed: int = 0) -> None:
    """Write ``num_rows`` Azure-2023-style rows to ``path`` in chunks (bounded memory)."""
    rng = np.random.default_rng(seed)
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    with open(path, "wb") as handle:
        handle.write(b"TIMESTAMP,ContextTokens,GeneratedTokens\n")
        _write_rows(handle, num_rows, rng, options)


def _write_rows(handle, num_rows: int, rng: np.random.Generator, options) -> None:
    start_ns = np.datetime64("2023-11-16T18:15:46", "ns").astype(np.int64)
    chunk = 1_000_000
    with pa_csv.CSVWriter(handle, _schema(), write_options=options) as writer:
        clock_ns = start_ns
        for offset in range(0, num_rows, chunk):
            n = min(chunk, num_rows - offset)
            gaps_ns = rng.exponential(1e9 / 50.0, n).astype(np.int64) + 1
            times_ns = clock_ns + np.cumsum(gaps_ns)
            clock_ns = int(times_ns[-1])
            text = pc.cast(pa.array(times_ns).cast(pa.timestamp("ns")), pa.string())
            text = pc.utf8_slice_codeunits(text, 0, 27)  # 7 fractional digits, like Azure
            context = np.maximum(1, rng.lognormal(6.6, 1.0, n)).astype(np.int64)
            generated = np.maximum(1, rng.lognormal(5.0, 0.9, n)).astype(np.int64)
            writer.write_table(
                pa.table(
                    {"TIMESTAMP": text, "ContextTokens": context, "GeneratedTokens": generated},
                    schema=_schema(),
                )
            )


def _schema() -> pa.Schema:
    return pa.schema(
        [("TIMESTAMP", pa.string()), ("ContextTokens", pa.int64()), ("GeneratedTokens", pa.int64())]
    )


def run_import(csv_path: Path, out_path: Path) -> tuple[float, int, float]:
    """Run the CLI import in a child process.

    Returns (seconds inside the command, peak RSS bytes, seconds for the whole process
    including interpreter start and imports).
    """
    script = (
        "import resource, sys, time\n"
        "from simulator.cli import app\n"
        "t = time.perf_counter()\n"
        "try:\n"
        "    app(sys.argv[1:], standalone_mode=False)\n"
        "finally:\n"
        "    print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " file=sys.stderr)\n"
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", script, "trace", "import", str(csv_path), "-o", str(out_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"import failed: {proc.stderr.strip()}")
    process_s = time.perf_counter() - started
    seconds, maxrss_kib = proc.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(maxrss_kib) * 1024, process_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="reuse/keep the generated CSV at this path")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = args.keep or Path(tmp) / "azure_big.csv"
        if not csv_path.exists():
            t0 = time.perf_counter()
            write_azure_csv(csv_path, args.rows)
            print(
                f"generated {args.rows:,} rows ({csv_path.stat().st_size / 1e6:,.0f} MB) "
                f"in {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
            )
        results = [run_import(csv_path, Path(tmp) / "out.parquet") for _ in range(args.repeat)]
    wall = statistics.median(r[0] for r in results)
    peak = max(r[1] for r in results)
    print(f"rows: {args.rows:,}  cores: {os.cpu_count()}  repeats: {args.repeat}")
    print(f"import wall time (median): {wall:.2f} s  ->  {args.rows / wall / 1e6:.2f} M rows/s")
    print(f"peak RSS (max over repeats): {peak / 2**20:,.0f} MiB")
    print(
        f"all wall times: {', '.join(f'{r[0]:.2f}' for r in results)} s; whole process "
        f"(median, with interpreter start): {statistics.median(r[2] for r in results):.2f} s"
    )


if __name__ == "__main__":
    main()
