"""Summaries from per-request records: latency percentiles, throughput, SLO attainment.

Definitions (times in seconds in the records, milliseconds in summaries):

- TTFT = first token time - arrival; E2E = completion - arrival, where arrival is the
  client's send: the engine receives the request the scenario's ``api_server_latency_ms``
  later (default 8 ms; ``scenario.DEFAULT_API_SERVER_LATENCY_MS``), so both include it, as
  a client such as ``vllm bench serve`` measures them;
  queueing delay = first scheduled - the engine's receipt;
- TPOT = (E2E - TTFT) / (output tokens - 1), for requests with more than one output token;
- makespan = last completion (last arrival when none completed) - first send;
  throughput = completed requests / makespan; goodput = requests meeting every bound / makespan;
- ITL = every gap between consecutive tokens of a request (counted in the engine in
  bins at most 0.8% wide, so ITL percentiles and max are within 0.4%; the mean is exact).

Percentiles use numpy's default (linear) method over completed requests. Rejected requests
have no latencies; they count against SLO attainment, and a percentile target is met only
when it holds with them counted as never done (except those longer than the context asked
for, which every deployment rejects): ``slo_report``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from simulator.checks import plain_number
from simulator.engine.state import itl_bin_bounds_s
from simulator.errors import SimreplayError

PERCENTILES = (50, 90, 95, 99)
#: Metrics an SLO can bound: name -> per-request array name in ``latency_arrays``.
SLO_METRICS = ("ttft", "tpot", "e2e", "queue")


def describe_ms(values_s: np.ndarray, *, reorder: bool = False) -> dict[str, float | None]:
    """``{mean, p50, p90, p95, p99, max}`` in ms of the finite values (None if there are none).

    ``reorder``: ``values_s`` may be reordered in place, which spares a copy (8 MB for 1M
    values) when they are all finite.
    """
    finite = np.isfinite(values_s)
    # percentiles_of reorders what it is given: a copy unless the caller allows it.
    values = values_s if reorder and finite.all() else values_s[finite]
    if values.size == 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}, "max": None}
    # The mean first: its float depends on the order of the values, which the percentiles change.
    mean_s = float(values.mean())
    quantiles = percentiles_of(values, PERCENTILES)
    return {
        "mean": mean_s * 1e3,
        **{f"p{p}": float(q) * 1e3 for p, q in zip(PERCENTILES, quantiles, strict=True)},
        "max": float(values.max()) * 1e3,
    }


def percentiles_of(values: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, percentiles)`` (its default linear method) of values without
    NaN, the same floats; reorders ``values`` in place (pass a copy that may change).

    numpy partitions for all the ranks it needs at once with a scalar introselect (19 ms for
    the summary's four percentiles of 1M values); one rank at a time, each over what lies
    above the one before, it uses its SIMD partition (about 5 ms). The interpolation is
    numpy's (``numpy.lib._function_base_impl._quantile`` and ``_lerp``), step for step.
    """
    count = values.size
    virtual = (count - 1) * np.true_divide(np.asarray(percentiles), 100)
    # The neighbouring ranks; -1 (the largest) for both at or past the last, as numpy has it.
    previous = np.floor(virtual)
    following = previous + 1
    at_last = virtual >= count - 1
    previous[at_last] = -1
    following[at_last] = -1
    previous, following = previous.astype(np.intp), following.astype(np.intp)
    _partition_at(values, np.unique(np.concatenate([previous, following]) % count))
    lower, upper = values[previous], values[following]
    gamma = np.asarray(virtual - previous, dtype=virtual.dtype)
    step = upper - lower
    result = np.add(lower, step * gamma)
    np.subtract(upper, step * (1 - gamma), out=result, where=gamma >= 0.5)
    return result


def _partition_at(values: np.ndarray, ranks: np.ndarray) -> None:
    """Reorder ``values`` so that ``values[r]`` is its ``r``-th smallest for each of
    ``ranks`` (ascending, distinct), partitioning only what lies above the previous rank."""
    start = 0
    for rank in ranks.tolist():
        rest = values[start:]
        if rank == start:  # the smallest of the rest: one pass, no partition
            smallest = int(rest.argmin())
            rest[0], rest[smallest] = rest[smallest], rest[0]
        else:
            rest.partition(rank - start)
        start = rank + 1


def itl_summary_ms(
    histogram: np.ndarray, itl_sum_s: float, tpot_max_ms: float | None = None
) -> dict[str, float | None]:
    """ITL ``{mean, p50, ..., max}`` in ms from the engine's binned histogram.

    A percentile or the max is read at its bin's geometric centre (within 0.4%);
    ``itl_sum_s`` (exact) gives the mean, and the max is never below it, nor below
    ``tpot_max_ms`` (the largest request's mean gap, when given): the last bin is open-ended
    (gaps of 1,024 s and more), so its centre would cap the max there.
    """
    count = int(histogram.sum())
    if count == 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}, "max": None}
    lower_s, upper_s = itl_bin_bounds_s()
    centres_s = np.sqrt(np.maximum(lower_s, 1e-12) * np.minimum(upper_s, lower_s[-1]))
    cumulative = np.cumsum(histogram)
    out: dict[str, float | None] = {"mean": itl_sum_s / count * 1e3}
    for p in PERCENTILES:
        rank = max(1, math.ceil(p / 100 * count))
        out[f"p{p}"] = float(centres_s[np.searchsorted(cumulative, rank)]) * 1e3
    # The largest gap is at least the mean: where they share a bin (a steady decode) the bin's
    # centre can fall below the exact mean, and a max below the mean contradicts itself.
    # Likewise each request's TPOT is the mean of its gaps, so the largest gap is at least the
    # largest TPOT (a gap past the last bin's edge would otherwise print as 1,024,000 ms).
    out["max"] = max(
        float(centres_s[np.flatnonzero(histogram)[-1]]) * 1e3,
        out["mean"],
        tpot_max_ms if tpot_max_ms is not None else 0.0,
    )
    return out


#: Largest SLO bound taken, ms (11.6 days): a larger one is a typo, and printed it filled a
#: table header with 300 digits.
MAX_SLO_BOUND_MS = 1e9


#: A percentile in an SLO key: digits, optionally with decimals (99, 99.9, 99.99).
_SLO_PERCENTILE = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_slo(text: str) -> dict[str, tuple[str, int | float, float]]:
    """Parse ``ttft_p99_ms=2000,tpot_p99_ms=80`` into ``{key: (metric, percentile, bound_ms)}``."""
    grammar = (
        "expected METRIC_pNN_ms=BOUND pairs, NN a percentile from 1 to 100 (decimals "
        "allowed), e.g. ttft_p99_ms=2000,tpot_p99.9_ms=80"
    )
    bounds: dict[str, tuple[str, int, float]] = {}
    items = [part.strip() for part in text.split(",")]
    if len(items) > 1 and not all(items):
        # As an empty item in a sweep axis is: a stray comma may have lost a bound.
        raise SimreplayError(f"--slo {text!r}: an empty item (a stray comma?); {grammar}")
    for item in items:
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()  # as --gpus and --model names: TTFT_P99_MS was refused
        parts = key.split("_")
        if (
            not sep
            or len(parts) != 3
            or parts[0] not in SLO_METRICS
            or not parts[1].startswith("p")
            or _SLO_PERCENTILE.fullmatch(parts[1][1:]) is None
            or parts[2] != "ms"
        ):
            raise SimreplayError(
                f"--slo: cannot read {item!r}; {grammar}; metrics: {', '.join(SLO_METRICS)}"
            )
        # A whole percentile stays an int (p99); a decimal one is a float (p99.9, a common
        # SLO: a QA pass had it refused).
        whole = float(parts[1][1:])
        percentile: int | float = int(whole) if whole.is_integer() else whole
        if not 1 <= percentile <= 100:
            raise SimreplayError(f"--slo: percentile in {key!r} must be 1 to 100")
        try:
            bound_ms = float(plain_number(value))
        except ValueError:
            raise SimreplayError(f"--slo: bound of {key} must be a number, got {value!r}") from None
        if not (math.isfinite(bound_ms) and bound_ms > 0):
            raise SimreplayError(
                f"--slo: bound of {key} must be a finite number of ms > 0, got {value!r}"
            )
        if bound_ms > MAX_SLO_BOUND_MS:
            raise SimreplayError(
                f"--slo: bound of {key} must be at most {MAX_SLO_BOUND_MS:,.0f} ms (11.6 days), "
                f"got {value.strip()!r:.40}"
            )
        key = f"{parts[0]}_p{percentile}_ms"  # one name a bound: p099 is p99
        if key in bounds:
            raise SimreplayError(f"--slo: {key} is given twice; give each bound once")
        bounds[key] = (parts[0], percentile, bound_ms)
    if not bounds:
        raise SimreplayError(f"--slo is empty; {grammar}")
    return bounds


def slo_report(
    latencies_s: dict[str, np.ndarray],
    completed: np.ndarray,
    bounds: dict[str, tuple[str, int, float]],
    makespan_s: float,
    beyond_context: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per-bound attainment and whether each percentile target is met, plus goodput.

    Attainment is the fraction of all requests (rejected ones count as misses) whose metric
    is within the bound. ``value_ms`` is the metric's percentile over completed requests
    (the summary's); the target is met when the percentile over every request is within
    the bound, a request that did not complete (rejected, or unfinished when the run
    ended) counting as never done: a p99 bound is missed when more than 1% of the requests
    are rejected, whatever the completed ones' p99. Requests ``beyond_context`` (longer than
    the context asked for, which every deployment rejects, as ``plan`` has it) are left out
    of that (``beyond_context`` counts them); ``misses_not_completed`` counts the others,
    which 'met' counts as misses. Goodput is completed requests per
    second meeting every bound.
    """
    num_requests = len(completed)
    counted = ~completed if beyond_context is None else ~completed & ~beyond_context
    meets_all = completed.copy()
    report: dict[str, Any] = {"bounds": {}}
    for key, (metric, percentile, bound_ms) in bounds.items():
        values_ms = latencies_s[metric] * 1e3
        # TPOT is undefined for single-token outputs: they cannot miss a TPOT bound.
        ok = completed & ((values_ms <= bound_ms) | (np.isnan(values_ms) & (metric == "tpot")))
        meets_all &= ok
        kept = completed & np.isfinite(values_ms)
        # The percentile of the seconds, then in ms, as describe_ms takes it: the summary's
        # p99 and the bound's value are the same float. values_ms is this loop's own array:
        # it takes the seconds, so there is no copy to reorder when every value is kept.
        np.copyto(values_ms, latencies_s[metric])
        finite_s = values_ms if kept.all() else values_ms[kept]
        value = float(percentiles_of(finite_s, [percentile])[0]) * 1e3 if finite_s.size else None
        if value is None:
            # No value: met only where every request met the bound, as completed requests of
            # single output tokens all meet a TPOT bound (none has a TPOT); with no completed
            # request there is nothing that met it.
            met = bool(num_requests and ok.all())
        else:
            met = value <= bound_ms and _met_counting_incomplete(
                latencies_s[metric], kept, counted, percentile, bound_ms
            )
        report["bounds"][key] = {
            "bound_ms": bound_ms,
            "value_ms": value,
            "met": met,
            "attainment": float(ok.sum() / num_requests) if num_requests else None,
        }
    report["all_met"] = all(b["met"] for b in report["bounds"].values())
    report["misses_not_completed"] = int(counted.sum())
    report["beyond_context"] = int((~completed).sum()) - report["misses_not_completed"]
    report["attainment_all"] = float(meets_all.sum() / num_requests) if num_requests else None
    report["goodput_rps"] = float(meets_all.sum() / makespan_s) if makespan_s > 0 else None
    return report


#: What a request that never completed counts as in a percentile over every request: later
#: than any latency, finite so that numpy's interpolation towards it stays a number.
_NEVER_S = 1e300


def _met_counting_incomplete(
    values_s: np.ndarray, kept: np.ndarray, never_done: np.ndarray, percentile: int, bound_ms: float
) -> bool:
    """Whether the ``percentile`` of the ``kept`` values and the ``never_done`` requests,
    counting as later than any value, is within ``bound_ms``. Completed requests without a
    value (a single-token output's TPOT) stay out, as they do of the completed-only one."""
    if not never_done.any():
        return True  # the same population as the completed-only percentile, already met
    population = np.where(kept, values_s, _NEVER_S)[kept | never_done]
    return float(percentiles_of(population, [percentile])[0]) * 1e3 <= bound_ms
