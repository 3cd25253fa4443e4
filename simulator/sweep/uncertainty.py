"""How sure a simulated percentile is: spread across seed replicates, bootstrap intervals.

A replayed real trace is one sample of traffic. Resampling its completed requests with
replacement (a nonparametric bootstrap) gives a confidence interval for each latency
percentile. It treats requests as independent, which queueing makes only approximately
true (latencies of neighbouring requests are correlated), so the interval is a lower bound
on the real uncertainty; it still flags a plan whose margin is within sampling noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Bootstrap resamples, and how many are drawn at a time (bounds memory to ~chunk x n).
NUM_BOOTSTRAP = 500
_CHUNK = 50


def bootstrap_percentile_ci_ms(
    values_s: np.ndarray,
    percentile: float,
    *,
    confidence: float = 0.95,
    num_resamples: int = NUM_BOOTSTRAP,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the ``percentile``-th percentile of ``values_s``.

    Parameters
    ----------
    values_s : numpy.ndarray
        float64, shape (n,), seconds; NaN entries (no such latency) are ignored. Not mutated.
    percentile : float
        1 to 100.
    confidence : float
        Two-sided level of the interval.
    num_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of ``numpy.random.default_rng``: the same inputs give the same interval.

    Returns
    -------
    (low_ms, high_ms) or None
        None when there are no finite values.
    """
    values = np.asarray(values_s, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    rng = np.random.default_rng(seed)
    estimates = np.empty(num_resamples)
    for start in range(0, num_resamples, _CHUNK):
        stop = min(start + _CHUNK, num_resamples)
        rows = rng.integers(0, values.size, size=(stop - start, values.size))
        estimates[start:stop] = np.percentile(values[rows], percentile, axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(estimates, [tail, 100.0 - tail])
    return float(low) * 1e3, float(high) * 1e3


def seed_spread(values_ms: list[float | None]) -> dict[str, Any]:
    """``{min_ms, max_ms, values_ms}`` of one metric across seed replicates."""
    finite = [v for v in values_ms if v is not None]
    return {
        "min_ms": min(finite) if finite else None,
        "max_ms": max(finite) if finite else None,
        "values_ms": list(values_ms),
    }


#: Metrics whose spread across seeds ``sweep show --seed-spread`` reports.
SPREAD_METRICS = (
    "ttft_p50_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "tpot_p99_ms",
    "itl_p99_ms",
    "e2e_p99_ms",
    "queue_p99_ms",
    "throughput_rps",
)


def group_seeds(rows: list[dict[str, Any]], knobs: list[str]) -> list[dict[str, Any]]:
    """One row per scenario with its seed replicates folded: min and max of each metric.

    Parameters
    ----------
    rows : list of dict
        Store rows (``sweep show --json``), in the order groups should appear.
    knobs : list of str
        Knob columns; every one but ``seed`` identifies a group.

    Returns
    -------
    list of dict
        The knobs (``seed`` left out), ``num_seeds``, ``seeds``, ``status`` (``ok`` when
        every replicate is), ``{metric}_min`` / ``{metric}_max`` for ``SPREAD_METRICS``
        over the ok replicates, ``slo_met`` (every replicate met the SLO; None without
        one), ``slo_met_fraction``, ``cost_per_hour_usd``, ``reason`` (an infeasible
        replicate's, else the first ok one's: why requests were rejected; None),
        ``num_completed`` (fewest over the ok replicates; None when none is ok), ``backlog``
        (``overloaded`` if any ok replicate is, else ``burst`` if any is, else None) and
        ``num_rejected_capacity`` (most over the ok replicates), ``tp_used`` and
        ``num_replicas`` (the first ok replicate's; None when none is ok).
    """
    identity = [k for k in knobs if k != "seed"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(repr(row[k]) for k in identity), []).append(row)
    out = []
    for members in groups.values():
        ok = [m for m in members if m["status"] == "ok"]
        folded: dict[str, Any] = {k: members[0][k] for k in identity}
        folded["num_seeds"] = len(members)
        folded["seeds"] = sorted(m["seed"] for m in members)
        folded["status"] = "ok" if len(ok) == len(members) else "infeasible"
        for metric in SPREAD_METRICS:
            values = [m[metric] for m in ok if m[metric] is not None]
            folded[f"{metric}_min"] = min(values) if values else None
            folded[f"{metric}_max"] = max(values) if values else None
        verdicts = [m["slo_met"] for m in members if m["slo_met"] is not None]
        folded["slo_met"] = all(verdicts) if len(verdicts) == len(members) else None
        folded["slo_met_fraction"] = sum(verdicts) / len(members) if verdicts else None
        folded["cost_per_hour_usd"] = members[0]["cost_per_hour_usd"]
        # Why a replicate is infeasible, else why requests were rejected: `sweep show`
        # prints it (it raised KeyError on an infeasible scenario with --seed-spread).
        reasons = [m.get("reason") for m in members if m["status"] != "ok"]
        reasons += [m.get("reason") for m in ok]
        folded["reason"] = next((r for r in reasons if r is not None), None)
        completed = [m.get("num_completed") for m in ok if m.get("num_completed") is not None]
        folded["num_completed"] = min(completed) if completed else None
        # A replicate overloaded or rejecting what the context admits makes the scenario so
        # (a review: `sweep show --seed-spread` printed such rows "ok").
        kinds = [m.get("backlog") for m in ok]
        folded["backlog"] = next((k for k in ("overloaded", "burst") if k in kinds), None)
        capped = [m.get("num_rejected_capacity") or 0 for m in ok]
        folded["num_rejected_capacity"] = max(capped) if capped else None
        # The deployment chosen, the same for every seed (a review: `sweep show
        # --seed-spread` could not say a row had chosen another TP).
        for chosen in ("tp_used", "num_replicas"):
            folded[chosen] = next((m.get(chosen) for m in ok), None)
        out.append(folded)
    return out


def identical_seeds_note(option: str, num_seeds: int, routers: set[str]) -> str | None:
    """The note for seed replicates that cannot differ, or None.

    A replay's only random draws are the ``random`` router's (``api``: the seed seeds
    them); sweeps and plans read their traces as they are. Without that router every seed
    gives the same results: ``num_seeds`` times the work, and a spread of zero that says
    nothing about robustness.
    """
    if num_seeds <= 1 or "random" in routers:
        return None
    return (
        f"{option}: no scenario routes at random (--router random), the only random part of "
        f"a replay here, so its {num_seeds:,} seeds give identical results ({num_seeds:,} "
        "times the work, a spread of 0); for a spread that means something, vary the trace "
        "(`simreplay trace transform --sample 0.9 --seed N`, or `trace synth --seed N`)"
    )
