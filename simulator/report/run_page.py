"""The report of one run: read ``--out`` outputs, reduce them to figures, write the page.

summary.json + requests.parquet + steps.parquet -> figures (figures.py)
  -> report.html (html.py, inline SVG drawn by a small script) + plots/*.png (png.py)
"""

from __future__ import annotations

import itertools
import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from simulator.errors import SimreplayError
from simulator.io import read_parquet
from simulator.report import figures as F
from simulator.report.html import esc, figure_div, key_value_table, number_cell, page, table
from simulator.scenario_text import (
    api_server_text,
    delay_s_text,
    graphs_text,
    host_text,
    precision_text,
    token_budget_text,
)

SUMMARY_FILE = "summary.json"
REQUESTS_FILE = "requests.parquet"
STEPS_FILE = "steps.parquet"
REPORT_FILE = "report.html"
PLOTS_DIR = "plots"

#: Columns the report reads, per file (``simulator/results.py`` documents them).
REQUEST_COLUMNS = (
    "replica",
    "input_tokens",
    "output_tokens",
    "arrival_time_s",
    "first_scheduled_s",
    "first_token_s",
    "completion_s",
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "queue_s",
    "num_preemptions",
    "status",
)
#: Columns of the tables above that hold text; every other one holds numbers.
TEXT_COLUMNS = ("status", "reject_reason")
STEP_COLUMNS = (
    "replica",
    "start_s",
    "duration_s",
    "num_steps",
    "prefill_tokens",
    "decode_seqs",
    "kv_blocks_used",
)
#: Columns read only when the run had the prefix cache on (``summary.json`` has
#: ``prefix_cache``); outputs of runs without it need not have them.
CACHE_REQUEST_COLUMNS = ("cached_tokens",)
CACHE_STEP_COLUMNS = ("cache_hit_tokens", "cache_query_tokens")
SUMMARY_KEYS = (
    "num_requests",
    "num_completed",
    "num_rejected",
    "num_preemptions",
    "makespan_s",
    "ttft_ms",
    "tpot_ms",
    "itl_ms",
    "e2e_ms",
    "queue_ms",
    "kv_cache",
    "scenario",
)


def _usable_kv_blocks(scenario: dict) -> float:
    """The KV blocks a replica's scheduler allocates from, which the summary's KV use
    fractions are of (one fewer than the cache holds under vLLM V1, whose block pool keeps a
    null block); outputs written before this key existed give the cache's count."""
    return float(scenario.get("kv_blocks_usable_per_replica", scenario["kv_blocks_per_replica"]))


def _null_block_text(scenario: dict, usable_blocks: float) -> str:
    """Why the KV caption's block count is one below the scenario table's, when it is."""
    total = scenario.get("kv_blocks_per_replica")
    if not isinstance(total, int) or total == int(usable_blocks):
        return ""
    return f" (of its {total:,}, less the null block vLLM V1's block pool keeps)"


def _thousands(value: object) -> str:
    """An integer knob as ``run``'s table prints it (8,192); anything else as it is."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


SCENARIO_KEYS = ("gpus", "model", "tp", "num_replicas", "kv_blocks_per_replica", "calibration")
#: (label, summary key, per-request column) of each latency; ITL has no per-request column.
LATENCIES = (
    ("TTFT", "ttft_ms", "ttft_s"),
    ("TPOT", "tpot_ms", "tpot_s"),
    ("ITL", "itl_ms", None),
    ("E2E", "e2e_ms", "e2e_s"),
    ("Queueing", "queue_ms", "queue_s"),
)


@dataclass
class RunOutputs:
    """What ``simreplay run --out DIR`` wrote, read back and checked.

    Attributes
    ----------
    directory : Path
    summary : dict
        ``summary.json`` as written.
    requests : dict of numpy.ndarray
        The columns of ``requests.parquet`` the report uses, one row per request.
    steps : dict of numpy.ndarray
        The columns of ``steps.parquet`` the report uses.
    """

    directory: Path
    summary: dict[str, Any]
    requests: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]


def load_run_outputs(directory: Path) -> RunOutputs:
    """Read and check the outputs of one run.

    Raises
    ------
    SimreplayError
        One line naming the directory or file and what is missing or wrong.
    """
    directory = Path(directory)
    if not directory.exists():
        raise SimreplayError(f"{directory}: no such folder")
    if not directory.is_dir():
        raise SimreplayError(f"{directory}: not a directory")
    missing = [
        name
        for name in (SUMMARY_FILE, REQUESTS_FILE, STEPS_FILE)
        if not (directory / name).is_file()
    ]
    if missing:
        raise SimreplayError(
            f"{directory}: missing {', '.join(missing)}; expected the outputs of "
            f"`simreplay run TRACE --out {shlex.quote(str(directory))}`"
        )
    summary = read_summary(directory / SUMMARY_FILE)
    cached = "prefix_cache" in summary
    requests = _columns(
        directory / REQUESTS_FILE,
        REQUEST_COLUMNS + (CACHE_REQUEST_COLUMNS if cached else ()),
        optional=("engine_arrival_s",),  # runs before the API server's latency lack it
    )
    steps = _columns(
        directory / STEPS_FILE,
        STEP_COLUMNS + (CACHE_STEP_COLUMNS if cached else ()),
        optional=("virtual_engine",),
    )
    num_rows = len(requests["arrival_time_s"])
    if num_rows != summary["num_requests"]:
        raise SimreplayError(
            f"{directory / REQUESTS_FILE}: {num_rows:,} rows but {SUMMARY_FILE} says "
            f"{summary['num_requests']:,} requests: are they from different runs?"
        )
    num_completed = int((requests["status"] == "completed").sum())
    if num_completed != summary["num_completed"]:
        raise SimreplayError(
            f"{directory / REQUESTS_FILE}: {num_completed:,} rows with status 'completed' but "
            f"{SUMMARY_FILE} says {summary['num_completed']:,}: are they from different runs?"
        )
    done = requests["status"] == "completed"
    for column in ("ttft_s", "e2e_s", "queue_s", "tpot_s"):
        values = requests[column].astype(np.float64, copy=False)
        # NaN where undefined (a rejected request's TTFT, a one-token answer's TPOT).
        with np.errstate(invalid="ignore"):
            bad = (values < 0) | (done & np.isinf(values))
        if column in ("ttft_s", "e2e_s"):
            bad |= done & np.isnan(values)
        if bad.any():
            row = int(np.argmax(bad))
            raise SimreplayError(
                f"{directory / REQUESTS_FILE}: row {row + 1}: {column} is {float(values[row]):g}"
                f" ({int(bad.sum()):,} rows like this); a run writes a time >= 0 for every "
                "completed request: not the outputs of a run?"
            )
    _check_same_run(directory, summary, requests, done)
    num_replicas = summary["scenario"]["num_replicas"]
    for name, columns in ((REQUESTS_FILE, requests), (STEPS_FILE, steps)):
        replica = columns["replica"]
        if replica.size and (replica.max() >= num_replicas or replica.min() < -1):
            raise SimreplayError(
                f"{directory / name}: column replica has values outside -1..{num_replicas - 1} "
                f"({SUMMARY_FILE} says {num_replicas} replicas)"
            )
    return RunOutputs(directory, summary, requests, steps)


def read_summary(path: Path) -> dict[str, Any]:
    """``summary.json`` as a dict, checked for the keys the report reads."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise SimreplayError(f"{path}: not UTF-8 text (corrupt?)") from None
    except json.JSONDecodeError as exc:
        raise SimreplayError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # _no_constant
        raise SimreplayError(f"{path}: {exc}") from None
    if not isinstance(summary, dict):
        raise SimreplayError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        raise SimreplayError(
            f"{path}: missing {', '.join(missing)}; not the summary of `simreplay run`?"
        )
    scenario = summary["scenario"]
    if not isinstance(scenario, dict):
        raise SimreplayError(f"{path}: scenario must be an object")
    missing = [key for key in SCENARIO_KEYS if key not in scenario]
    if missing:
        raise SimreplayError(f"{path}: scenario is missing {', '.join(missing)}")
    _check_summary_types(path, summary)
    return summary


def _no_constant(name: str) -> float:
    """``json.loads``' hook for NaN and Infinity, which ``simreplay run`` never writes."""
    raise ValueError(f"{name} is not a number JSON allows")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_summary_types(path: Path, summary: dict[str, Any]) -> None:
    """The types ``simreplay run`` writes for the fields the page reads (an edited or
    corrupted summary.json is one line, not a traceback from the drawing code)."""

    def fail(field: str, expected: str) -> SimreplayError:
        return SimreplayError(f"{path}: {field} must be {expected}; not the summary of a run?")

    for key in ("num_requests", "num_completed", "num_rejected", "num_preemptions"):
        value = summary[key]
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise fail(key, "a whole number >= 0")
    for key in ("makespan_s", "throughput_rps", "output_tokens_per_s"):
        value = summary.get(key)
        if value is not None and not (_is_number(value) and value >= 0):
            raise fail(key, "a number >= 0 or null")
    for _, key, _ in LATENCIES:
        stats = summary[key]
        if not isinstance(stats, dict):
            raise fail(key, "an object")
        for stat, value in stats.items():
            if value is not None and not (_is_number(value) and value >= 0):
                raise fail(f"{key}.{stat}", "a number >= 0 or null")
        ordered = [(stat, stats[stat]) for stat in _ORDERED_STATS if stats.get(stat) is not None]
        for (low_stat, low), (high_stat, high) in itertools.pairwise(ordered):
            if low > high:
                raise SimreplayError(
                    f"{path}: {key}.{low_stat} {low:g} is above {key}.{high_stat} {high:g}; "
                    "a run's percentiles never fall: not the summary of a run?"
                )
    kv = summary["kv_cache"]
    if not isinstance(kv, dict):
        raise fail("kv_cache", "an object")
    for key in ("peak_fraction", "mean_fraction"):
        if not (_is_number(kv.get(key)) and 0 <= kv[key] <= 1):
            raise fail(f"kv_cache.{key}", "a number from 0 to 1")
    peaks = kv.get("per_replica_peak_fraction", [])
    if not isinstance(peaks, list) or not all(_is_number(x) and 0 <= x <= 1 for x in peaks):
        raise fail("kv_cache.per_replica_peak_fraction", "a list of numbers from 0 to 1")
    reasons = summary.get("rejected_by_reason", {})
    if not isinstance(reasons, dict) or not all(_is_number(v) for v in reasons.values()):
        raise fail("rejected_by_reason", "an object of counts")
    for key in ("slo", "prefix_cache", "closed_loop", "max_concurrency"):
        if key in summary and not isinstance(summary[key], dict):
            raise fail(key, "an object")
    scenario = summary["scenario"]
    for key in ("tp", "num_replicas", "kv_blocks_per_replica"):
        value = scenario[key]
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise fail(f"scenario.{key}", "a whole number >= 1")
    for key in ("gpus", "model", "calibration"):
        if not isinstance(scenario[key], str):
            raise fail(f"scenario.{key}", "text")
    for key in _SCENARIO_NUMBERS:
        if scenario.get(key) is not None and not _is_number(scenario[key]):
            raise fail(f"scenario.{key}", "a number")
    for key in ("scheduler", "router", "engine"):
        if key in scenario and not isinstance(scenario[key], str):
            raise fail(f"scenario.{key}", "text")
    notes = scenario.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise fail("scenario.notes", "a list of text")
    trace_notes = summary.get("trace_notes", [])
    if not isinstance(trace_notes, list) or not all(isinstance(n, str) for n in trace_notes):
        raise fail("trace_notes", "a list of text")


#: A latency object's statistics in the order no run's can fall.
_ORDERED_STATS = ("p50", "p90", "p95", "p99", "max")

#: Optional scenario fields the page prints as numbers.
_SCENARIO_NUMBERS = (
    "kv_capacity_tokens_per_replica",
    "cost_per_hour_usd",
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "block_size",
    "pp",
    "token_budget_per_step",
    "kv_blocks_per_virtual_engine",
    "seed",
)


def _check_same_run(
    directory: Path, summary: dict[str, Any], requests: dict[str, np.ndarray], done: np.ndarray
) -> None:
    """Refuse a ``requests.parquet`` whose completed requests' TTFT and E2E are not the
    ones ``summary.json`` describes: another run's file of as many rows (a QA pass: a page
    drew one run's CDFs under another's p99). Both come from the same arrays, so they agree
    to the last digits."""
    from simulator.metrics import describe_ms

    for column, key in (("ttft_s", "ttft_ms"), ("e2e_s", "e2e_ms")):
        values = requests[column][done].astype(np.float64, copy=False)
        if not np.isfinite(values).all():
            return  # named by the checks that follow
        shown = summary.get(key) or {}
        described = describe_ms(values)
        for stat in ("p50", "max"):
            want, got = shown.get(stat), described.get(stat)
            if not (_is_number(want) and _is_number(got)):
                continue
            if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6):
                raise SimreplayError(
                    f"{directory / REQUESTS_FILE}: its completed requests' {key.split('_')[0]} "
                    f"{stat} is {got:,.6g} ms but {SUMMARY_FILE} says {want:,.6g} ms: are "
                    "they from different runs?"
                )


def read_table(path: Path) -> pa.Table:
    """A whole parquet file; unreadable, one line naming its path (``simulator.io``'s
    message names the file alone, which is enough for a trace given on the command line but
    not for one of a folder's files)."""
    try:
        return read_parquet(path)
    except SimreplayError as exc:
        _, _, reason = str(exc).partition(": ")
        raise SimreplayError(f"{path}: {reason}") from None


def _columns(
    path: Path, names: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    table = read_table(path)
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise SimreplayError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        )
    out = {}
    for name in (*names, *(n for n in optional if n in table.column_names)):
        column = table.column(name)
        is_text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        if name in TEXT_COLUMNS and is_text:
            out[name] = np.asarray(column.to_pylist(), dtype=object)
        elif name not in TEXT_COLUMNS and (
            pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        ):
            out[name] = column.to_numpy(zero_copy_only=False)
        else:
            expected = "text" if name in TEXT_COLUMNS else "numbers"
            raise SimreplayError(f"{path}: column {name} must hold {expected}, not {column.type}")
    return out


def run_figures(outputs: RunOutputs) -> list[dict[str, Any]]:
    """Every figure of the run page, in page order (specs as in ``figures.py``)."""
    summary, req, steps = outputs.summary, outputs.requests, outputs.steps
    figures = [*_distribution_figures(summary, req, steps)]
    figures.extend(_timeline_figures(summary, req, steps))
    figures.extend(_balance_figures(summary, req, steps))
    if "prefix_cache" in summary:
        figures.append(_cached_fraction_figure(summary, req))
    return figures


def _rate_text(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` digits, or enough significant ones that a small rate is
    not shown as zero (a QA pass: one request over 236 s read "0.00" req/s)."""
    if 0 < value < 0.5 * 10.0**-decimals:  # would round to zero
        return f"{value:.2g}"
    return f"{value:,.{decimals}f}"


def _slo_for(summary: dict[str, Any], metric: str) -> list[tuple[float, float]]:
    """``metric``'s SLO bounds as (percentile, bound in ms): ``ttft_p99.9_ms`` is 99.9 (a
    QA pass: ``int('99.9')`` failed the report of a run given such a bound)."""
    bounds = summary.get("slo", {}).get("bounds", {})
    out = []
    for key, bound in bounds.items():
        name, percentile, _ = key.split("_")
        if name == metric:
            out.append((float(percentile[1:]), float(bound["bound_ms"])))
    return out


def itl_from_steps(steps: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Inter-token gaps implied by the step log, as (gap_s, weight) pairs.

    Each sequence decoding in a step waits that step's duration for its next token, so a
    run of ``num_steps`` steps with ``decode_seqs`` decoding sequences contributes
    ``num_steps * decode_seqs`` gaps, each taken as the run's mean step time (the log keeps
    only a run's total duration). Gaps a preempted request spends waiting are not in it.
    """
    count = steps["num_steps"].astype(np.float64) * steps["decode_seqs"]
    gap_s = steps["duration_s"] / np.maximum(steps["num_steps"], 1)
    keep = count > 0
    return gap_s[keep], count[keep]


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Quantiles of ``values`` each repeated ``weights`` times (the inverse of the CDF)."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cumulative = np.cumsum(w)
    if cumulative.size == 0:
        return np.full(probs.shape, np.nan)
    ranks = np.maximum(np.ceil(probs * cumulative[-1]), 1)
    return v[np.minimum(np.searchsorted(cumulative, ranks), v.size - 1)]


def _count(number: int, noun: str) -> str:
    """``1 request``, ``18,075 requests``."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def tail_top(num_values: int) -> float:
    """Top of a tail-scaled CDF axis: 99.9% up to 99.999%, as far as the sample supports."""
    digits = min(max(math.floor(math.log10(max(num_values, 1))), 3), 5)
    return 1.0 - 10.0**-digits


def _distribution_figures(
    summary: dict[str, Any], req: dict[str, np.ndarray], steps: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    out = []
    completed = req["status"] == "completed"
    for label, key, column in LATENCIES:
        if key == "queue_ms":
            continue
        stats = summary[key]
        if column is not None:
            values_ms, probs = F.cdf_points(req[column][completed] * 1e3)
            num_values = int(np.isfinite(req[column][completed]).sum())
            # Fewer values than quantiles: the curve has as many distinct points as values.
            num_points = min(values_ms.size, num_values)
            caption = (
                f"{_count(num_values, 'completed request')}; curve through "
                f"{_count(num_points, 'quantile')}."
            )
        else:
            gaps_s, weights = itl_from_steps(steps)
            probs = F.cdf_probabilities() if weights.size else np.empty(0)
            values_ms = weighted_quantiles(gaps_s * 1e3, weights, probs)
            num_values = int(weights.sum())
            caption = (
                "Curve: token gaps implied by the step log (each run's mean step time, for "
                f"{int(weights.sum()):,} gaps); dots: the summary's percentiles, from the "
                "engine's histogram of every gap (within 0.4%)."
            )
            if summary["num_preemptions"] and stats.get("max") is not None:
                caption += (
                    " The step log has no gap a preempted request spends waiting to be "
                    "readmitted: the curve leaves those out, so its tail can fall short of the "
                    f"engine's longest gap, {stats['max']:,.1f} ms."
                )
        if key == "tpot_ms":
            caption += " Requests with one output token have no TPOT."
        figure = F.line_figure(
            f"{key[:-3]}_cdf",
            f"{label} distribution",
            f"{label} (ms)",
            "fraction of requests" if column else "fraction of token gaps",
            [F.series(label, probs, x=values_ms, cdf=True)] if values_ms.size else [],
            x_scale="log",
            y_scale="tail",
            y_min=0.0,
            y_max=tail_top(num_values),
            caption=caption if values_ms.size else "",
        )
        if not values_ms.size:
            # Drawn in the empty frame by the page and the PNG (figures.py, "empty").
            figure["empty"] = (
                "Nothing to draw: no request completed (see Rejected in the summary)."
                if column is not None and not completed.any()
                else f"Nothing to draw: no {label} value in this run."
            )
        figure["markers"] = [
            {"name": f"p{p} {stats[f'p{p}']:,.1f} ms", "x": stats[f"p{p}"], "y": p / 100}
            for p in F.SUMMARY_PERCENTILES
            if stats.get(f"p{p}") is not None
        ]
        figure["vlines"] = [
            {"x": bound_ms, "label": f"SLO p{p:g} \u2264 {bound_ms:,.0f} ms"}
            for p, bound_ms in _slo_for(summary, key[:-3])
        ]
        figure["hlines"] = [
            {"y": p / 100, "label": f"p{p:g}"} for p, _ in _slo_for(summary, key[:-3])
        ]
        out.append(figure)
    return out


def _clock(req: dict[str, np.ndarray], steps: dict[str, np.ndarray]) -> tuple[float, float]:
    arrival = req["arrival_time_s"]
    ends = [arrival, req["completion_s"], steps["start_s"] + steps["duration_s"]]
    finite = [a[np.isfinite(a)] for a in ends]
    start = float(arrival.min()) if arrival.size else 0.0
    end = max((float(a.max()) for a in finite if a.size), default=start)
    return start, max(end, start)


def _timeline_figures(
    summary: dict[str, Any], req: dict[str, np.ndarray], steps: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    scenario = summary["scenario"]
    num_replicas = int(scenario["num_replicas"])
    start_s, end_s = _clock(req, steps)
    edges = F.time_bins(start_s, end_s)
    width_s = float(edges[1] - edges[0])
    centres = (edges[:-1] + edges[1:]) / 2
    bin_text = F.format_duration_s(width_s)
    arrival = req["arrival_time_s"]
    completed = req["status"] == "completed"
    figures = []

    rate = F.binned_count(arrival, edges) / width_s
    one_instant = arrival.size > 0 and float(arrival.max()) == float(arrival.min())
    figure = F.line_figure(
        "arrival_rate",
        "Arrival rate",
        "trace time",
        "requests/s",
        [] if one_instant else [F.series("arrivals", rate, step=True)],
        x_values=edges[:-1],
        time_axis=True,
        y_min=0.0,
        caption="" if one_instant else f"Requests arriving per second, in bins of {bin_text}.",
    )
    if one_instant:
        # A QA pass: one request drew a spike of 1 / bin width requests/s, a rate the
        # trace never had.
        figure["empty"] = (
            "Nothing to draw: one request, so no rate over time."
            if arrival.size == 1
            else "Nothing to draw: every request arrives at the same instant, so no rate over time."
        )
    figures.append(figure)

    sched, done = req["first_scheduled_s"][completed], req["completion_s"][completed]
    # Waiting in an engine's queue: from its receipt, the API server's latency after the send.
    received = req.get("engine_arrival_s", arrival)
    waiting, _ = F.binned_level(
        np.concatenate((received[completed], sched)),
        np.concatenate((np.ones(sched.size), -np.ones(sched.size))),
        edges,
    )
    running, _ = F.binned_level(
        np.concatenate((sched, done)),
        np.concatenate((np.ones(sched.size), -np.ones(sched.size))),
        edges,
    )
    figures.append(
        F.line_figure(
            "queue_depth",
            "Waiting and running requests (all replicas)",
            "trace time",
            "requests",
            [F.series("waiting", waiting), F.series("running", running)],
            x_values=centres,
            time_axis=True,
            y_min=0.0,
            caption=(
                f"Mean over bins of {bin_text}. Waiting: received by the engine (the API "
                "server's latency after the send), not yet scheduled; running: scheduled, not "
                "finished (a preempted request stays counted as running)."
            ),
        )
    )

    step_end = steps["start_s"] + steps["duration_s"]
    duration = np.maximum(steps["duration_s"], 1e-12)
    tokens = steps["prefill_tokens"] + steps["decode_seqs"].astype(np.int64) * steps["num_steps"]
    tok_rate, _ = F.binned_level(
        np.concatenate((steps["start_s"], step_end)),
        np.concatenate((tokens / duration, -tokens / duration)),
        edges,
    )
    step_rate, _ = F.binned_level(
        np.concatenate((steps["start_s"], step_end)),
        np.concatenate((steps["num_steps"] / duration, -steps["num_steps"] / duration)),
        edges,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_tokens = np.where(step_rate > 0, tok_rate / step_rate, np.nan)
    max_tokens = F.binned_max(
        steps["start_s"], steps["prefill_tokens"] + steps["decode_seqs"], edges
    )
    batch = F.line_figure(
        "batch_tokens",
        "Tokens per engine step",
        "trace time",
        "tokens",
        [F.series("mean", mean_tokens), F.series("largest step", max_tokens, dash=True)],
        x_values=centres,
        time_axis=True,
        y_min=0.0,
        caption=(
            f"Prompt plus decode tokens computed per engine step over all replicas, in bins of "
            f"{bin_text}; the line is the token budget per step."
        ),
    )
    budget = scenario.get("token_budget_per_step")
    if budget:
        batch["hlines"] = [{"y": budget, "label": f"budget {budget:,}"}]
    figures.append(batch)

    kv_bins = max(50, min(F.MAX_BINS, F.MAX_REPLICA_POINTS // max(num_replicas, 1)))
    kv_edges = F.time_bins(start_s, end_s, kv_bins)
    kv_blocks = _usable_kv_blocks(scenario)
    engines = _virtual_engines(scenario, steps)
    if engines is not None:  # pipeline parallel: the blocks a virtual engine holds
        kv_blocks = float(scenario["kv_blocks_per_virtual_engine"])
    kv_series = []
    for r in range(num_replicas):
        peak = np.zeros(len(kv_edges) - 1)
        for v in range(1 if engines is None else int(scenario["pp"])):
            mine = steps["replica"] == r
            if engines is not None:
                mine &= engines == v
            used = steps["kv_blocks_used"][mine].astype(np.float64)
            deltas = np.diff(used, prepend=0.0)
            _, engine_peak = F.binned_level(step_end[mine], deltas, kv_edges)
            peak = np.maximum(peak, engine_peak)
        kv_series.append(F.series(f"replica {r}", peak / kv_blocks * 100, step=True))
    figures.append(
        F.line_figure(
            "kv_cache",
            "KV-cache use per replica",
            "trace time",
            "% of KV blocks",
            kv_series,
            x_values=kv_edges[:-1],
            time_axis=True,
            y_min=0.0,
            caption=(
                (
                    f"Largest share of the replica's {int(kv_blocks):,} KV blocks in use"
                    + _null_block_text(scenario, kv_blocks)
                    if engines is None
                    else f"Largest share of the {int(kv_blocks):,} KV blocks of one of the "
                    f"replica's {scenario['pp']} virtual engines in use"
                )
                + f" in bins of {F.format_duration_s(float(kv_edges[1] - kv_edges[0]))} "
                f"(peak over the run: {summary['kv_cache']['peak_fraction']:.1%})."
            ),
        )
    )
    if "prefix_cache" in summary:
        figures.append(_hit_rate_figure(summary, steps, edges))

    preempted = completed & (req["num_preemptions"] > 0)
    in_flight, _ = F.binned_level(
        np.concatenate((req["first_scheduled_s"][preempted], req["completion_s"][preempted])),
        np.concatenate((np.ones(preempted.sum()), -np.ones(preempted.sum()))),
        edges,
    )
    figures.append(
        F.line_figure(
            "preemptions",
            f"Preempted requests in flight ({summary['num_preemptions']:,} preemptions in all)",
            "trace time",
            "requests",
            [F.series("preempted at least once", in_flight)],
            x_values=centres,
            time_axis=True,
            y_min=0.0,
            caption=(
                f"Mean over bins of {bin_text} of running requests that are preempted (and "
                "recomputed) at least once between their first scheduling and completion; "
                "the step log does not record the instant of each preemption."
            ),
        )
    )

    num_done = int(completed.sum())
    span_s = max(end_s - start_s, 1e-9)
    # Windows wide enough to hold ~200 requests at the mean rate, at least one bin and 10 s.
    window_s = min(max(200 * span_s / max(num_done, 1), width_s, 10.0), span_s)
    window_s = next((w for w in F.NICE_WIDTHS_S if w >= window_s), window_s)
    ttft_ms = req["ttft_s"] * 1e3
    roll_edges = F.time_bins(start_s, end_s, 400)
    roll_centres = (roll_edges[:-1] + roll_edges[1:]) / 2
    p99 = F.rolling_percentile(arrival, ttft_ms, roll_centres, window_s, 99)
    p50 = F.rolling_percentile(arrival, ttft_ms, roll_centres, window_s, 50)
    ttft = F.line_figure(
        "rolling_ttft",
        "TTFT over time (by arrival)",
        "trace time",
        "TTFT (ms)",
        [F.series("p99", p99), F.series("p50", p50, dash=True)],
        x_values=roll_centres,
        time_axis=True,
        y_min=0.0,
        caption=(
            f"Percentiles of the TTFT of requests arriving in a {F.format_duration_s(window_s)}"
            " window around each point (windows with fewer than 20 requests are left blank)."
            + (
                # A QA pass: two flat lines on a short run read as a steady TTFT.
                f" With {_count(num_done, 'request')} completed the window spans the whole "
                "run, so each point is close to the run's own percentile: the chart says "
                "little about change over time."
                if window_s >= span_s
                else ""
            )
        ),
    )
    ttft["hlines"] = [
        {"y": bound_ms, "label": f"SLO p{p:g} \u2264 {bound_ms:,.0f} ms"}
        for p, bound_ms in _slo_for(summary, "ttft")
    ]
    figures.append(ttft)
    return figures


def binned_hit_rate(
    steps: dict[str, np.ndarray], edges_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prefix-cache hit rate over the whole cluster per time bin, from the step log.

    A request's cache lookup happens when a step admits it, and every step that admits one
    computes prompt tokens, so it is a row of its own: its tokens are counted at the row's
    ``start_s``. Re-admissions after a preemption count again, as in the summary's
    ``prefix_cache.hit_rate``.

    Returns
    -------
    rate, hit_tokens, query_tokens : numpy.ndarray
        float64, shape (m,) each: ``hit / query`` per bin (NaN for a bin without an
        admission: a gap, not a zero), and the two sums.
    """
    num_bins = edges_s.size - 1
    idx = np.searchsorted(edges_s, steps["start_s"], side="right") - 1
    ok = (idx >= 0) & (idx < num_bins)
    hit = np.bincount(idx[ok], weights=steps["cache_hit_tokens"][ok], minlength=num_bins)
    query = np.bincount(idx[ok], weights=steps["cache_query_tokens"][ok], minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(query > 0, hit / query, np.nan)
    return rate, hit, query


def _hit_rate_figure(
    summary: dict[str, Any], steps: dict[str, np.ndarray], edges: np.ndarray
) -> dict[str, Any]:
    # One cluster-wide line: it is what the summary's hit rate measures, and a replica's
    # share of a bin holds few admissions (a handful at a few requests/s over 8 replicas),
    # so per-replica lines would be noise; the replica table gives each replica's rate.
    rate, _, _ = binned_hit_rate(steps, edges)
    cache = summary["prefix_cache"]
    bin_text = F.format_duration_s(float(edges[1] - edges[0]))
    figure = F.line_figure(
        "prefix_cache_hit_rate",
        "Prefix-cache hit rate (all replicas)",
        "trace time",
        "% of tokens found",
        [F.series("hit rate", rate * 100, step=True)],
        x_values=edges[:-1],
        time_axis=True,
        y_min=0.0,
        caption=(
            f"Tokens found in the prefix cache over tokens looked up, of the requests admitted "
            f"in bins of {bin_text} (re-admissions after a preemption included); bins with no "
            "admission are left blank. The dashed line is the whole run's rate."
        ),
    )
    figure["hlines"] = [
        {"y": cache["hit_rate"] * 100, "label": f"whole run {cache['hit_rate']:.1%}"}
    ]
    return figure


#: Bins of the cached share of a prompt, in %: none, then (0, 10), [10, 20), ..., [90, 100].
CACHED_FRACTION_BINS = ("0", *(f"{k}\u2013{k + 10}" for k in range(0, 100, 10)))


def cached_fraction_histogram(req: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Completed requests and their prompt tokens per bin of ``CACHED_FRACTION_BINS``.

    A request's bin is that of ``cached_tokens / input_tokens`` (the cache hit of its first
    admission): 0 when nothing was found, else ``1 + floor(10 * fraction)`` (at most 10).

    Returns
    -------
    requests, prompt_tokens : numpy.ndarray
        int64, shape (11,) each.
    """
    keep = (req["status"] == "completed") & (req["input_tokens"] > 0)
    prompt = req["input_tokens"][keep].astype(np.int64)
    cached = np.maximum(req["cached_tokens"][keep].astype(np.int64), 0)
    bins = np.where(cached > 0, 1 + np.minimum(cached * 10 // prompt, 9), 0)
    size = len(CACHED_FRACTION_BINS)
    return (
        np.bincount(bins, minlength=size).astype(np.int64),
        np.bincount(bins, weights=prompt, minlength=size).astype(np.int64),
    )


def _cached_fraction_figure(summary: dict[str, Any], req: dict[str, np.ndarray]) -> dict[str, Any]:
    requests, tokens = cached_fraction_histogram(req)
    fraction = summary["prefix_cache"]["prompt_tokens_cached_fraction"]
    return F.bar_figure(
        "prefix_cached_fraction",
        "Share of each prompt found in the prefix cache",
        list(CACHED_FRACTION_BINS),
        "% of the prompt cached at first admission",
        "%",
        [
            F.series("share of requests", requests / max(requests.sum(), 1) * 100),
            F.series("share of prompt tokens", tokens / max(tokens.sum(), 1) * 100),
        ],
        caption=(
            f"Completed requests ({int(requests.sum()):,}) by the share of their prompt found in "
            "the cache when first admitted (cached_tokens / input_tokens), and those requests' "
            f"share of all prompt tokens; over all of them {fraction:.1%} of prompt tokens were "
            "cached."
        ),
    )


def _virtual_engines(scenario: dict[str, Any], steps: dict[str, np.ndarray]) -> np.ndarray | None:
    """The steps' virtual engines with pipeline parallelism (``--pp`` > 1), else None."""
    if scenario.get("pp", 1) <= 1 or "virtual_engine" not in steps:
        return None
    return steps["virtual_engine"]


def replica_table(
    summary: dict[str, Any], req: dict[str, np.ndarray], steps: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Per replica: requests, tokens, busy share of the makespan, peak KV share.

    With pipeline parallelism busy time is the mean over the replica's virtual engines and
    KV shares are of one virtual engine's blocks. With the prefix cache on, also the
    replica's hit rate over its admissions (``prefix_hit_rate``, NaN without any).
    """
    num_replicas = int(summary["scenario"]["num_replicas"])
    makespan_s = float(summary["makespan_s"])
    kv_blocks = _usable_kv_blocks(summary["scenario"])
    num_engines = 1
    if _virtual_engines(summary["scenario"], steps) is not None:
        num_engines = int(summary["scenario"]["pp"])
        kv_blocks = float(summary["scenario"]["kv_blocks_per_virtual_engine"])
        makespan_s *= num_engines
    served = np.bincount(req["replica"][req["replica"] >= 0], minlength=num_replicas)
    out_tokens = np.bincount(
        req["replica"][req["replica"] >= 0],
        weights=req["output_tokens"][req["replica"] >= 0],
        minlength=num_replicas,
    )
    busy_s = np.bincount(steps["replica"], weights=steps["duration_s"], minlength=num_replicas)
    cached = "prefix_cache" in summary
    if cached:
        hit = np.bincount(
            steps["replica"], weights=steps["cache_hit_tokens"], minlength=num_replicas
        )
        query = np.bincount(
            steps["replica"], weights=steps["cache_query_tokens"], minlength=num_replicas
        )
    rows = []
    for r in range(num_replicas):
        mine = steps["replica"] == r
        rows.append(
            {
                "replica": r,
                "requests": int(served[r]),
                "output_tokens": int(out_tokens[r]),
                "busy_fraction": float(busy_s[r] / makespan_s) if makespan_s > 0 else math.nan,
                "peak_kv_fraction": float(steps["kv_blocks_used"][mine].max() / kv_blocks)
                if mine.any()
                else 0.0,
            }
        )
        if cached:
            rows[-1]["prefix_hit_rate"] = float(hit[r] / query[r]) if query[r] > 0 else math.nan
    return rows


def _balance_figures(
    summary: dict[str, Any], req: dict[str, np.ndarray], steps: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    rows = replica_table(summary, req, steps)
    names = [str(row["replica"]) for row in rows]
    total = max(sum(row["requests"] for row in rows), 1)
    total_tokens = max(sum(row["output_tokens"] for row in rows), 1)
    return [
        F.bar_figure(
            "replica_balance",
            "Load balance across replicas",
            names,
            "replica",
            "%",
            [
                F.series(
                    "share of requests", np.array([r["requests"] / total * 100 for r in rows])
                ),
                F.series(
                    "share of output tokens",
                    np.array([r["output_tokens"] / total_tokens * 100 for r in rows]),
                ),
                F.series(
                    "busy time (% of makespan)", np.array([r["busy_fraction"] * 100 for r in rows])
                ),
                F.series("peak KV use (%)", np.array([r["peak_kv_fraction"] * 100 for r in rows])),
            ],
            caption=(
                "An even router gives every replica the same share (100 / replicas %); busy "
                "time is the time the replica spent in engine steps."
            ),
        )
    ]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _scenario_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    s = summary["scenario"]
    tp_note = " (chosen)" if s.get("tp_chosen_automatically") else ""
    rows = [
        ("GPUs", esc(s["gpus"])),
        ("Model", esc(f"{s['model']}, tp={s['tp']}{tp_note}")),
        (
            "Replicas",
            esc(f"{s['num_replicas']} \u00d7 {_count(s['tp'], 'GPU')}")
            if s.get("pp", 1) <= 1
            else esc(
                f"{s['num_replicas']} \u00d7 (tp {s['tp']} \u00d7 pp {s['pp']}) GPUs; "
                f"{s['pipeline_parallel']}"
            ),
        ),
        (
            "KV cache per replica",
            esc(
                f"{s['kv_blocks_per_replica']:,} blocks"
                + (f" of {s['block_size']} tokens" if "block_size" in s else "")
                + (
                    f" ({s['kv_capacity_tokens_per_replica']:,} tokens)"
                    if "kv_capacity_tokens_per_replica" in s
                    else ""
                )
            ),
        ),
    ]
    if "scheduler" in s:
        rows.append(("Engine", esc(f"{s['scheduler']} scheduler, {s.get('engine', '')}")))
    if s.get("closed_loop"):
        rows.append(
            (
                "Closed loop",
                "on: a session's turn is sent no earlier than its previous turn's completion "
                "plus its think time",
            )
        )
    if s.get("max_concurrency"):
        rows.append(
            (
                "Concurrency limit",
                f"at most {int(s['max_concurrency']):,} requests in flight, as vllm bench "
                "serve --max-concurrency sends them: arrival times below are send times",
            )
        )
    if "max_num_seqs" in s:
        rows.append(
            (
                "Batch knobs",
                esc(
                    f"max_num_seqs={_thousands(s['max_num_seqs'])}, "
                    f"max_num_batched_tokens={_thousands(s.get('max_num_batched_tokens'))}, "
                    f"max_model_len={s.get('max_model_len', 0):,}" + token_budget_text(s)
                ),
            )
        )
    if "router" in s:
        rows.append(("Router", esc(s["router"])))
    if "api_server_latency_ms" in s:
        rows.append(("API server", esc(api_server_text(s))))
    if "async_scheduling" in s:
        rows.append(("Host overhead", esc(host_text(s))))
    if {"gemm", "kv_cache_dtype", "kv_cache_bytes_per_element"} <= s.keys():
        rows.append(("Precision", esc(precision_text(s))))
    calibration = str(s["calibration"])
    badge = "warn" if "uncalibrated" in calibration or "roofline" in calibration else ""
    rows.append(("Step times", f'<span class="badge {badge}">{esc(calibration)}</span>'))
    if isinstance(s.get("step_time_model"), dict):
        rows.append(("CUDA graphs", esc(graphs_text(s))))
    if "cost_per_hour_usd" in s:
        rows.append(("Cost", esc(f"${s['cost_per_hour_usd']:,.2f}/hour (indicative)")))
    if "seed" in s:
        rows.append(("Seed", esc(s["seed"])))
    for note in s.get("notes", []):
        rows.append(("Note", esc(note)))
    for note in summary.get("trace_notes", []):
        rows.append(("Trace note", esc(note)))
    return rows


def _latency_table(summary: dict[str, Any]) -> str:
    columns = ("mean", "p50", "p90", "p95", "p99", "max")
    rows = []
    for label, key, _ in LATENCIES:
        stats = summary[key]
        cells = [f"<td>{esc(label)}</td>"]
        cells += [number_cell(stats.get(c), _ms(stats.get(c)), f"{key}.{c}") for c in columns]
        rows.append(cells)
    return table(["latency (ms)", *columns], rows, "latency")


def _totals_table(summary: dict[str, Any]) -> str:
    kv = summary["kv_cache"]
    throughput = summary.get("throughput_rps")
    tokens = summary.get("output_tokens_per_s")

    def row(label: str, key: str, value: Any, text: str) -> list[str]:
        return [f"<td>{esc(label)}</td>", number_cell(value, text, key)]

    rows = [
        row("Requests", "num_requests", summary["num_requests"], f"{summary['num_requests']:,}"),
        row(
            "Completed", "num_completed", summary["num_completed"], f"{summary['num_completed']:,}"
        ),
        row("Rejected", "num_rejected", summary["num_rejected"], f"{summary['num_rejected']:,}"),
        row(
            "Preemptions",
            "num_preemptions",
            summary["num_preemptions"],
            f"{summary['num_preemptions']:,}",
        ),
        row("Makespan (s)", "makespan_s", summary["makespan_s"], f"{summary['makespan_s']:,.1f}"),
        row(
            "Throughput (req/s)",
            "throughput_rps",
            throughput,
            "n/a" if throughput is None else _rate_text(throughput, 2),
        ),
        row(
            "Output tokens/s",
            "output_tokens_per_s",
            tokens,
            "n/a" if tokens is None else _rate_text(tokens, 0),
        ),
        row(
            "KV cache peak",
            "kv_cache.peak_fraction",
            kv["peak_fraction"],
            f"{kv['peak_fraction']:.1%}",
        ),
        row(
            "KV cache mean",
            "kv_cache.mean_fraction",
            kv["mean_fraction"],
            f"{kv['mean_fraction']:.1%}",
        ),
    ]
    if "backlog_at_last_arrival" in summary:
        backlog = summary["backlog_at_last_arrival"]
        rows.append(
            row("Backlog at last arrival", "backlog_at_last_arrival", backlog, f"{backlog:,}")
        )
    for reason, count in summary.get("rejected_by_reason", {}).items():
        rows.append(row(f"Rejected: {reason}", f"rejected_by_reason.{reason}", count, f"{count:,}"))
    return table(["totals", "value"], rows, "totals")


def _slo_table(summary: dict[str, Any]) -> str:
    slo = summary.get("slo")
    if not slo:
        return ""
    rows = []
    for key, b in slo["bounds"].items():
        base = f"slo.bounds.{key}"
        attainment = b.get("attainment")
        rows.append(
            [
                f"<td>{esc(key)}</td>",
                number_cell(b["bound_ms"], _ms(b["bound_ms"]), f"{base}.bound_ms"),
                number_cell(b["value_ms"], _ms(b["value_ms"]), f"{base}.value_ms"),
                f'<td><span class="badge {"" if b["met"] else "bad"}">'
                f"{'met' if b['met'] else 'missed'}</span></td>",
                number_cell(
                    attainment,
                    "n/a" if attainment is None else f"{attainment:.1%}",
                    f"{base}.attainment",
                ),
            ]
        )
    goodput = slo.get("goodput_rps")
    all_att = slo.get("attainment_all")
    rows.append(
        [
            "<td>all bounds</td>",
            "<td></td>",
            "<td></td>",
            f'<td><span class="badge {"" if slo["all_met"] else "bad"}">'
            f"{'met' if slo['all_met'] else 'missed'}</span></td>",
            number_cell(
                all_att, "n/a" if all_att is None else f"{all_att:.1%}", "slo.attainment_all"
            ),
        ]
    )
    out = table(["SLO", "bound (ms)", "value (ms)", "", "attainment"], rows, "slo")
    out += (
        '<p class="sub">Goodput (requests/s meeting every bound): '
        f'<span data-key="slo.goodput_rps" data-value="{esc(json.dumps(goodput))}">'
        f"{'n/a' if goodput is None else f'{goodput:,.2f}'}</span></p>"
    )
    return out


def _replica_rows(rows: list[dict[str, Any]]) -> str:
    cached = bool(rows) and "prefix_hit_rate" in rows[0]
    cells = [
        [
            f"<td>{row['replica']}</td>",
            number_cell(row["requests"], f"{row['requests']:,}"),
            number_cell(row["output_tokens"], f"{row['output_tokens']:,}"),
            number_cell(
                None if math.isnan(row["busy_fraction"]) else row["busy_fraction"],
                f"{row['busy_fraction']:.1%}",
            ),
            number_cell(
                row["peak_kv_fraction"],
                f"{row['peak_kv_fraction']:.1%}",
                f"kv_cache.per_replica_peak_fraction.{row['replica']}",
            ),
        ]
        for row in rows
    ]
    headers = ["replica", "requests", "output tokens", "busy", "peak KV use"]
    if cached:
        headers.append("prefix-cache hit rate")
        for row, row_cells in zip(rows, cells, strict=True):
            rate = row["prefix_hit_rate"]
            row_cells.append(
                number_cell(None, "n/a") if math.isnan(rate) else number_cell(rate, f"{rate:.1%}")
            )
    return table(headers, cells, "replicas")


def _closed_loop_table(summary: dict[str, Any]) -> str:
    """``summary.json``'s ``closed_loop`` section (turns sent later than recorded), or its
    ``max_concurrency`` section (requests that waited for a client slot)."""
    if "closed_loop" in summary:
        key, count_key, unit, title = "closed_loop", "turns_delayed", "turns", "closed loop"
        counted = "Turns sent later than recorded"
    elif "max_concurrency" in summary:
        key, count_key, unit = "max_concurrency", "requests_delayed", "requests"
        title = f"at most {summary['max_concurrency']['slots']:,} in flight"
        counted = "Requests that waited for a slot"
    else:
        return ""
    loop = summary[key]
    rows = [
        [
            f"<td>{counted}</td>",
            number_cell(loop[count_key], f"{loop[count_key]:,}", f"{key}.{count_key}"),
        ],
        [
            f"<td>Mean delay over all {summary['num_requests']:,} {unit} (s)</td>",
            number_cell(
                loop["mean_delay_s"], delay_s_text(loop["mean_delay_s"]), f"{key}.mean_delay_s"
            ),
        ],
        [
            "<td>Max delay (s)</td>",
            number_cell(
                loop["max_delay_s"], delay_s_text(loop["max_delay_s"]), f"{key}.max_delay_s"
            ),
        ],
    ]
    return table([esc(title), "value"], rows, "closed-loop")


def _prefix_cache_table(summary: dict[str, Any]) -> str:
    cache = summary.get("prefix_cache")
    if cache is None:
        return ""

    def row(label: str, key: str, text: str) -> list[str]:
        return [f"<td>{esc(label)}</td>", number_cell(cache[key], text, f"prefix_cache.{key}")]

    rows = [
        row("Hit rate (all admissions)", "hit_rate", f"{cache['hit_rate']:.1%}"),
        row("Tokens found in the cache", "hit_tokens", f"{cache['hit_tokens']:,}"),
        row("Tokens looked up", "query_tokens", f"{cache['query_tokens']:,}"),
        row(
            "Prompt tokens cached at first admission",
            "prompt_tokens_cached_fraction",
            f"{cache['prompt_tokens_cached_fraction']:.1%}",
        ),
        row("Evicted blocks", "evicted_blocks", f"{cache['evicted_blocks']:,}"),
    ]
    return table(["prefix cache", "value"], rows, "prefix-cache")


def render_run_page(outputs: RunOutputs, figures: list[dict[str, Any]]) -> str:
    """The run page as HTML text (same outputs, same bytes)."""
    summary = outputs.summary
    scenario = summary["scenario"]
    by_id = {f["id"]: f for f in figures}
    distributions = [f for f in figures if f["id"].endswith("_cdf")]
    timelines = [f for f in figures if f["zoom"]]
    title = f"simreplay run: {scenario['gpus']}, {scenario['model']}"
    overloaded = ""
    backlog = summary.get("backlog_at_last_arrival", 0)
    if backlog > max(10, 0.01 * summary["num_requests"]):
        overloaded = (
            f'<p><span class="badge bad">overloaded</span> {backlog:,} requests had not '
            "started when the last one arrived: the queue grows, so latencies grow with the "
            "trace's length.</p>"
        )
    rejected = ""
    num_rejected = summary["num_rejected"]
    if num_rejected:
        reasons = sorted(summary.get("rejected_by_reason", {}).items(), key=lambda item: -item[1])
        why = "; ".join(f"{count:,} {reason}" for reason, count in reasons)
        rejected = (
            f'<p><span class="badge bad">rejected</span> {num_rejected:,} of '
            f"{_count(summary['num_requests'], 'request')} "
            f"({num_rejected / summary['num_requests']:.1%}) were never served"
            + (f": {esc(why)}" if why else "")
            + "; latencies are those of the completed requests.</p>"
        )
    parts = [
        f"<header><h1>{esc(title)}</h1>",
        f'<p class="sub">{_count(summary["num_requests"], "request")} replayed; outputs in '
        f"<code>{esc(outputs.directory.name or outputs.directory)}</code>. Step times: "
        f"<strong>{esc(scenario['calibration'])}</strong>.</p></header>",
        overloaded,
        rejected,
        "<h2>Scenario</h2>",
        key_value_table(_scenario_rows(summary)),
        "<h2>Summary</h2>",
        '<div class="tables">',
        _latency_table(summary),
        _totals_table(summary),
        f"<div>{_slo_table(summary)}</div>" if "slo" in summary else "",
        _prefix_cache_table(summary),
        _closed_loop_table(summary),
        "</div>",
        "<h2>Latency distributions</h2>",
        '<div class="grid">',
        *(figure_div(f) for f in distributions),
        "</div>",
        '<h2>Over the trace\'s clock</h2><section class="timelines">',
        '<p class="toolbar">Drag across any timeline to zoom all of them to that span; '
        'double-click or <button id="reset-zoom" type="button">reset zoom</button> to see the '
        'whole run. <span id="zoom-state"></span></p>',
        *(figure_div(f) for f in timelines),
        "</section>",
        "<h2>Replicas</h2>",
        figure_div(by_id["replica_balance"]),
        '<div class="tables" style="margin-top:12px">',
        _replica_rows(replica_table(summary, outputs.requests, outputs.steps)),
        "</div>",
        *(
            (
                "<h2>Prefix cache</h2>",
                '<div class="grid">',
                figure_div(by_id["prefix_cached_fraction"]),
                "</div>",
            )
            if "prefix_cache" in summary
            else ()
        ),
        "<footer>Written by <code>simreplay report</code> from summary.json, "
        "requests.parquet and steps.parquet. Tables show summary.json's numbers (exact values "
        "in each cell's data-value); figures are reduced for size: time series in bins, "
        "distributions through quantiles. The same figures are in "
        "<code>plots/*.png</code>.</footer>",
    ]
    return page(title, "\n".join(p for p in parts if p), summary, figures)
