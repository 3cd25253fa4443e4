"""Options of ``trace import`` that readers consult, in one object shared by all readers."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.checks import seed_value
from simulator.errors import SimreplayError
from simulator.trace.arrivals import ArrivalProcess
from simulator.trace.schema import INT32_MAX

TIME_UNITS = ("s", "ms", "us", "ns", "datetime")


@dataclass(frozen=True)
class ImportOptions:
    """How to read a source trace.

    Attributes
    ----------
    format : str or None
        Reader name; None detects it from the file's content.
    strict : bool
        Fail on out-of-order arrivals instead of sorting them.
    skip_invalid : bool
        Drop rows with missing or out-of-range values (counted and reported) instead of
        failing on the first.
    keep_failed : bool
        BurstGPT, and the formats read with a column mapping (CSV, JSONL, parquet): keep
        rows with 0 output tokens (failed requests) as requests of 1 output token, counted
        (their prompts still load the prefill). Default: BurstGPT drops and counts them;
        the others refuse them (``skip_invalid`` drops and counts them).
    jitter : bool
        Mooncake: spread requests uniformly inside their timestamp bucket.
    jitter_window_s : float or None
        Bucket width for ``jitter``; None detects it (the median gap between distinct
        timestamps, about 3 s in the Mooncake conversation trace).
    seed : int
        Seed for jitter and for synthetic arrivals of length-only files.
    arrival : ArrivalProcess or None
        Arrival process for length-only files (they have no timestamps).
    time_col, input_col, output_col, id_col, session_col, hash_col : str or None
        Column mapping for generic CSV / JSONL / parquet files.
    time_unit : str or None
        Unit of ``time_col``: one of ``TIME_UNITS``; None takes the unit its name ends in
        (``ts_ms``, ``time_us``), else seconds.
    hash_block_size : int or None
        Tokens per block of ``hash_col`` (generic files).
    """

    format: str | None = None
    strict: bool = False
    skip_invalid: bool = False
    keep_failed: bool = False
    jitter: bool = False
    jitter_window_s: float | None = None
    seed: int = 0
    arrival: ArrivalProcess | None = None
    time_col: str | None = None
    input_col: str | None = None
    output_col: str | None = None
    id_col: str | None = None
    session_col: str | None = None
    hash_col: str | None = None
    time_unit: str | None = None
    hash_block_size: int | None = None

    def __post_init__(self) -> None:
        # An API caller builds these directly: seed=-1 raised numpy's ValueError, and
        # arrival="poisson" an AttributeError (a QA pass).
        seed_value(self.seed, "ImportOptions.seed")
        # 16.0 was stored in the trace as '16.0', which every command then refused.
        check_hash_block_size(
            self.hash_block_size, "ImportOptions.hash_block_size", " (tokens per hash_col block)"
        )
        if self.arrival is not None and not isinstance(self.arrival, ArrivalProcess):
            raise SimreplayError(
                "ImportOptions.arrival must be an ArrivalProcess, e.g. "
                "simulator.trace.arrivals.arrival_process('poisson', rate_rps=2.0), got "
                f"{self.arrival!r}"
            )


def check_hash_block_size(value: object, name: str, what: str = "") -> None:
    """A ``SimreplayError`` naming ``name`` unless ``value`` is None or an integer from 1
    to ``INT32_MAX`` (tokens per block of a trace's prefix hashes)."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT32_MAX
    ):
        raise SimreplayError(
            f"{name} must be an integer from 1 to {INT32_MAX:,}{what}, got {value!r}"
        )
