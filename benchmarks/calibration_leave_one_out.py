"""Measure again the leave-one-GPU-out error stored in every shipped calibration profile.

    python benchmarks/calibration_leave_one_out.py [--profiles DIR] [--source DIR]

Rewrites only each profile's ``leave_one_out`` table (``fallback.recompute_leave_one_out``):
each measured GPU predicted from the other profiles of the folder, as the simulator
predicts a GPU without measurements. Run it after refitting any profile (``calibrate fit``
measures a GPU against the others as they were then) or changing the fallback rule; then
``simreplay calibrate report`` shows the new numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator.calibration.fallback import recompute_leave_one_out
from simulator.calibration.select import PROFILES_DIR
from simulator.errors import SimreplayError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=Path, default=PROFILES_DIR, help="profiles folder")
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="measurements tree to read instead of each profile's provenance.source_dir",
    )
    args = parser.parse_args(argv)
    try:
        results = recompute_leave_one_out(
            args.profiles, args.source, progress=lambda line: print(line, file=sys.stderr)
        )
    except SimreplayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for gpu, table in results.items():
        for grid_name, stats in table.items():
            print(
                f"{gpu:14s} {grid_name:21s} median {stats['median_abs_pct']:5.1f}% "
                f"p90 {stats['p90_abs_pct']:6.1f}% from {stats['borrowed_from']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
