"""The report of a sweep: one row per scenario (parquet files under a directory) -> one page.

Reads whatever flat columns the rows have and draws what they support; the columns used,
when present (``simreplay sweep``'s row format):

| column | use |
|---|---|
| `gpus` (``4xA100``), or `gpu` / `gpu_type` and `num_gpus` | GPU type and count |
| `ttft_p99_ms`, `tpot_p99_ms` (and any other `*_ms`, `throughput_rps`) | latency figures, table |
| `cost_per_hour_usd` | cost against p99, Pareto frontier |
| `slo_met`, `slo_attainment_all` / `attainment_all` / `slo_attainment` | heat map, answer |
| `status` (`ok` or anything else), `reason` | infeasible scenarios are listed, not drawn |
| knobs: `model`, `tp`, `rate_scale`, `max_num_seqs`, ... | series, heat-map axes, table |

The `plan` answer is read from ``plan.json`` in the directory when present (the object
``simreplay plan --json`` prints) and marked on the row of its fleet, the TP degree it used
(`tp_used`), its rate scale and every knob the plan assumed, or said to match none;
otherwise the cheapest scenario meeting the SLO is marked, and the page says which it is
(with seeds, one meeting it on every seed, as ``plan --seeds`` judges; over several rate
scales, the cheapest at scale 1, else at the highest scale some fleet meets; over several
traces, none).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from simulator.errors import SimreplayError
from simulator.report import figures as F
from simulator.report.html import esc, figure_div, key_value_table, number_cell, page, table
from simulator.report.run_page import read_table
from simulator.results import backlog_kind
from simulator.sweep.store import check_row_values, no_slo_status

PLAN_FILE = "plan.json"
#: The store's manifest (``simulator/sweep/store.py``).
STORE_MANIFEST = "sweep.json"
#: Scenario knobs, in the order heat-map axes and series are chosen from: every ``Scenario``
#: field (a test checks), so any knob a sweep varies is named in the lines and the table.
KNOBS = (
    "rate_scale",
    "num_gpus",
    "gpu",
    "gpus",
    "tp",
    "pp",
    "model",
    "quantization",
    "kv_cache_dtype",
    "max_num_seqs",
    "max_num_batched_tokens",
    "scheduler",
    "router",
    "enable_prefix_caching",
    "prefix_load_cap",
    "closed_loop",
    "max_concurrency",
    "enforce_eager",
    "async_scheduling",
    "scheduler_reserve_full_isl",
    "api_server_latency_ms",
    "block_size",
    "gpu_memory_utilization",
    "max_model_len",
    "chunk_size",
    "calibration",
    "trace",
    "seed",
)
#: Knobs the table lists only when they vary (a store has every knob as a column; these
#: rarely change and would widen every table with a constant column).
SHOWN_WHEN_VARIED = (
    "pp",
    "quantization",
    "kv_cache_dtype",
    "enable_prefix_caching",
    "prefix_load_cap",
    "closed_loop",
    "enforce_eager",
    "async_scheduling",
    "scheduler_reserve_full_isl",
    "api_server_latency_ms",
    "max_model_len",
)
ATTAINMENT_COLUMNS = ("slo_attainment_all", "attainment_all", "slo_attainment")
LATENCY_COLUMNS = ("ttft_p99_ms", "tpot_p99_ms")
#: Most rows the page's table lists (all rows stay in the parquet files).
MAX_TABLE_ROWS = 500
#: Most lines of one "p99 against GPU count" figure before other knobs are folded.
MAX_GROUPS = 10
STAR = "\u2605"
_GPUS = re.compile(r"^\s*(\d+)\s*[xX]\s*(\S+)\s*$")


@dataclass
class SweepRows:
    """A sweep's rows, read back and normalised.

    Attributes
    ----------
    directory : Path
    rows : list of dict
        One dict per scenario, the parquet columns plus ``gpu`` (type), ``num_gpus`` and
        ``ok`` (bool) filled in.
    columns : list of str
        The parquet columns, in file order.
    slo : dict
        ``{"ttft": (percentile, bound_ms), ...}`` when known, else empty.
    answer : dict or None
        The ``plan`` answer (``plan.json``) when present.
    still_writing : bool
        A ``sweep run`` holds the store's lock: more rows are coming.
    num_planned : int or None
        Scenarios the sweeps into this store were asked for (its ``sweep.json`` record for
        this simreplay version); None when it records none, or rows carry no
        ``scenario_key``.
    num_planned_stored : int or None
        How many of those have a row here.
    unchecked_store : bool
        The rows are a simreplay sweep store's (``scenario_key`` and ``simreplay_build``
        columns) whose ``sweep.json`` is lost: drawn from the rows alone, unchecked.
    rejudged : bool
        ``slo_met`` was recomputed for the ``--slo`` given to ``report`` (the rows were
        judged against another SLO, or one not recorded), and the attainment columns,
        measured against the sweep's SLO, are dropped.
    """

    directory: Path
    rows: list[dict[str, Any]]
    columns: list[str]
    slo: dict[str, tuple[int, float]]
    answer: dict[str, Any] | None
    rejudged: bool = False
    still_writing: bool = False
    num_planned: int | None = None
    num_planned_stored: int | None = None
    unchecked_store: bool = False
    #: Lines for stderr about what the page left out or changed (``report`` prints them).
    notes: list[str] = field(default_factory=list)
    #: GPU type -> $/GPU-hour from ``plan.json`` the rows' costs were set from, where the
    #: plan priced a type otherwise than the rows (``--price``); empty otherwise.
    plan_prices: dict[str, float] = field(default_factory=dict)

    @property
    def num_missing(self) -> int:
        """Planned scenarios with no row yet (0 when nothing is planned on record)."""
        if self.num_planned is None or self.num_planned_stored is None:
            return 0
        return self.num_planned - self.num_planned_stored


def sweep_files(directory: Path) -> list[Path]:
    """Parquet files under ``directory`` (recursively), hidden and temporary files excluded."""
    return sorted(
        path
        for path in Path(directory).rglob("*.parquet")
        if not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def load_sweep(directory: Path, slo: dict[str, tuple[str, int, float]] | None = None) -> SweepRows:
    """Read every scenario row under ``directory``.

    Parameters
    ----------
    slo : dict, optional
        Parsed ``--slo`` bounds (``metrics.parse_slo``); otherwise taken from a ``slo``
        column holding one value for every row, when there is one.

    Raises
    ------
    SimreplayError
        One line when there are no rows, a file is unreadable, or the rows lack the
        columns a sweep page needs.
    """
    from simulator.metrics import parse_slo

    directory = Path(directory)
    files = sweep_files(directory)
    planned = _planned_keys(directory)
    if not files and (directory / STORE_MANIFEST).is_file():
        # ``sweep run`` writes sweep.json first and a row as each scenario finishes.
        of = f" of {len(planned):,} planned" if planned else ""
        raise SimreplayError(
            f"{directory}: a sweep store where no scenario{of} has finished yet (sweep.json, "
            "no rows); run the same `simreplay sweep run` command again to fill it, then report"
        )
    if not files:
        raise SimreplayError(
            f"{directory}: neither a run's outputs (summary.json, requests.parquet, "
            "steps.parquet) nor a sweep's rows (*.parquet)"
        )
    if (directory / STORE_MANIFEST).is_file():
        # A simreplay sweep store: read as ``sweep show`` reads it, every row checked (a
        # copy of a row under another name was drawn as a sixth scenario of five).
        from simulator.sweep.store import ResultStore

        store = ResultStore(directory)
        combined = store.read()  # every row's status and numbers checked
        where = [store.path_of(key) for key in combined.column("scenario_key").to_pylist()]
    else:
        tables = [read_table(path) for path in files]
        try:
            combined = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowException, TypeError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise SimreplayError(
                f"{directory}: sweep rows do not share one schema: {reason}"
            ) from None
        where = [path for path, table in zip(files, tables, strict=True) for _ in range(len(table))]
    columns = combined.column_names
    has_gpus = "gpus" in columns or (
        ("gpu" in columns or "gpu_type" in columns) and "num_gpus" in columns
    )
    if not has_gpus:
        if "arrival_time_s" in columns and not (directory / STORE_MANIFEST).is_file():
            # QA: a folder holding a trace read as sweep rows "need a gpus column".
            raise SimreplayError(
                f"{directory}: neither a run's outputs (summary.json, requests.parquet, "
                "steps.parquet) nor a sweep's rows: its parquet files hold requests "
                f"(arrival_time_s, ...), a trace: `simreplay run {files[0]} --gpus ...` "
                "replays it, `simreplay run ... --out DIR` writes what report reads"
            )
        raise SimreplayError(
            f"{directory}: sweep rows need a gpus column (e.g. 4xA100) or gpu and num_gpus; "
            f"found {', '.join(columns)}"
        )
    if not any(name in columns for name in LATENCY_COLUMNS):
        raise SimreplayError(
            f"{directory}: sweep rows need {' or '.join(LATENCY_COLUMNS)}; "
            f"found {', '.join(columns)}"
        )
    rows = [_normalise(row, path) for row, path in zip(combined.to_pylist(), where, strict=True)]
    stored = {row.get("slo") for row in rows} - {None, ""} if "slo" in columns else set()
    rejudged = slo is not None and [parse_slo(text) for text in stored] != [slo]
    if rejudged:
        missing = [key for key in slo if key not in columns]
        if missing:
            # A QA pass: ttft_p99.9_ms left every row's verdict blank without a word.
            raise SimreplayError(
                f"{directory}: --slo {missing[0]}: the rows hold no {missing[0]} column (a "
                "sweep row keeps p50, p90, p95, p99 and max of each latency); give the bound "
                "to `simreplay sweep --slo`, which judges each run as it ends"
            )
        _judge(rows, slo)
        columns = [name for name in columns if name not in ATTAINMENT_COLUMNS]
    if slo is None and len(stored) == 1:
        slo = parse_slo(stored.pop())
    bounds = {metric: (p, bound) for _, (metric, p, bound) in (slo or {}).items()}
    notes: list[str] = []
    sweep = SweepRows(
        directory,
        rows,
        columns,
        bounds,
        _read_plan(directory, notes),
        rejudged,
        _still_writing(directory),
        notes=notes,
    )
    _price_as_the_plan(sweep)
    sweep.unchecked_store = not (directory / STORE_MANIFEST).is_file() and {
        "scenario_key",
        "simreplay_build",
    } <= set(columns)
    if planned is not None and "scenario_key" in columns:
        sweep.num_planned = len(planned)
        sweep.num_planned_stored = len(planned & {row.get("scenario_key") for row in rows})
    return sweep


def _planned_keys(directory: Path) -> set[str] | None:
    """The scenario keys the store's ``sweep.json`` records as asked for by sweeps of this
    simreplay version; None without that record (a store written before it existed, one of
    another version, or no store)."""
    from simulator.sweep.store import ResultStore

    return ResultStore(directory).planned_keys()


def _still_writing(directory: Path) -> bool:
    """Whether a ``sweep run`` holds the store's lock (an ``flock`` on ``.sweep.lock``,
    released by the system when its holder ends, however it ends)."""
    from simulator.sweep.store import ResultStore

    return ResultStore(directory).being_written()


def _judge(rows: list[dict[str, Any]], slo: dict[str, tuple[str, int, float]]) -> None:
    """Set each row's ``slo_met`` from its percentile columns (``ttft_p99_ms`` ...) against
    ``slo``, as ``metrics.slo_report`` judges a run (value <= bound); None where a column
    is missing. Mutates ``rows``."""
    for row in rows:
        for name in ATTAINMENT_COLUMNS:
            row.pop(name, None)
        values = [_number(row.get(key)) for key in slo]
        if not row["ok"] or not all(math.isfinite(v) for v in values):
            row["slo_met"] = None
            continue
        row["slo_met"] = all(
            value <= bound for value, (_, _, bound) in zip(values, slo.values(), strict=True)
        )


def _normalise(row: dict[str, Any], path: Path) -> dict[str, Any]:
    check_row_values(row, path)
    row = dict(row)
    gpu = row.get("gpu") or row.get("gpu_type")
    num_gpus = row.get("num_gpus")
    match = _GPUS.match(str(row.get("gpus") or ""))
    if match:
        num_gpus = num_gpus if num_gpus is not None else int(match.group(1))
        gpu = gpu or match.group(2)
    if gpu is None or num_gpus is None or (row.get("gpus") and match is None):
        raise SimreplayError(f"{path}: gpus is {row.get('gpus')!r}; expected NxNAME, e.g. 4xA100")
    row["gpu"], row["num_gpus"] = str(gpu), int(num_gpus)
    if not row.get("gpus"):
        row["gpus"] = f"{row['num_gpus']}x{row['gpu']}"
    row["ok"] = str(row.get("status") or "ok").lower() in ("ok", "completed", "feasible")
    return row


def _read_plan(directory: Path, notes: list[str]) -> dict[str, Any] | None:
    path = directory / PLAN_FILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            # `plan --json > DIR/plan.json` empties the file before the plan runs: a plan
            # stopped or failed leaves it so (a QA pass: the page could not be drawn).
            notes.append(
                f"{path}: empty (a `simreplay plan --json > {path}` that did not finish?): "
                "no plan answer drawn; run the plan again to write it"
            )
            return None
        plan = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SimreplayError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(plan, dict) or "answer" not in plan:
        raise SimreplayError(f"{path}: expected the object `simreplay plan --json` prints")
    answer = plan["answer"]
    if answer is not None and not isinstance(answer, dict):
        raise SimreplayError(f"{path}: answer must be an object or null")
    if answer is None:
        return {"none": plan.get("reason", "no answer")}
    assumed = plan.get("assumed")
    if assumed is not None and not isinstance(assumed, dict):
        raise SimreplayError(f"{path}: assumed must be an object (knob -> value)")
    # The knobs the plan fixed besides the fleet: the answer holds for them only; and the
    # trace and SLO it was searched for (plans written before they were recorded: None).
    prices = plan.get("prices_usd_per_hour")
    valid = isinstance(prices, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        for v in prices.values()
    )
    if prices is not None and not valid:
        raise SimreplayError(
            f"{path}: prices_usd_per_hour must map GPU types to positive $/GPU-hour"
        )
    return {
        **answer,
        "assumed": assumed or {},
        "plan_trace_sha256": plan.get("trace_sha256"),
        "plan_slo": plan.get("slo"),
        "plan_prices": prices or {},
    }


def _price_as_the_plan(sweep: SweepRows) -> None:
    """Cost the rows of each GPU type ``plan.json`` priced otherwise (``plan --price``) at
    the plan's price, and say so, so the answer and the rows are compared alike."""
    prices = (sweep.answer or {}).get("plan_prices") or {}
    if not prices or _plan_of_other_workload(sweep) is not None:
        # A plan of another trace or SLO is not this page's answer: its prices are not
        # this sweep's either (a review).
        return
    from simulator.hardware import get_gpu

    used: dict[str, float] = {}
    for row in sweep.rows:
        try:
            name = get_gpu(row["gpu"]).name
        except SimreplayError:
            name = row["gpu"]
        price = prices.get(name)
        cost = _number(row.get("cost_per_hour_usd"))
        if price is None or not math.isfinite(cost):
            continue
        repriced = round(row["num_gpus"] * float(price), 6)
        if abs(repriced - cost) > 1e-6:
            row["cost_per_hour_usd"] = repriced
            used[name] = float(price)
    if used:
        sweep.plan_prices = used
        sweep.notes.append(
            f"{sweep.directory / PLAN_FILE}: the plan priced "
            + ", ".join(f"{name} at ${price:,.2f}/GPU-hour" for name, price in sorted(used.items()))
            + " (its --price, or another build's catalog); the page costs those rows alike"
        )


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def varying_knobs(sweep: SweepRows) -> list[str]:
    """Knob columns with more than one value over the rows, in ``KNOBS`` order; not a knob
    that only follows the scheduler and pp as the engine's default (``derived_knobs``)."""
    from simulator.sweep.spec import derived_knobs

    derived = derived_knobs(sweep.rows)
    out = []
    for knob in KNOBS:
        if knob in derived:
            continue
        values = {json.dumps(row.get(knob), default=str) for row in sweep.rows}
        if len(values) > 1:
            out.append(knob)
    return out


def answer_row(sweep: SweepRows) -> tuple[dict[str, Any] | None, str]:
    """The scenario to highlight and what it is: the plan answer, or the cheapest meeting
    the SLO among these rows."""
    if sweep.answer is not None and "none" not in sweep.answer:
        other = _plan_of_other_workload(sweep)
        if other is not None:
            return None, other
        for row in sweep.rows:
            if row["ok"] and _is_plan_answer(row, sweep.answer):
                return row, "plan answer"
        want = sweep.answer
        where = ", ".join(
            f"{name}={want[name]}" for name in ("tp", "rate_scale") if want.get(name) is not None
        )
        return None, (
            f"plan answer {want.get('gpus')}"
            + (f" ({where}, and the plan's other knobs)" if where else "")
            + " matches none of these rows exactly"
        )
    if sweep.answer is not None:
        return None, f"plan found no answer: {sweep.answer['none']}"
    # A scenario run with several seeds meets the SLO only if every seed does, as ``plan
    # --seeds`` judges it (a QA pass: the page named "2xH100 seed=10" while 3 of its 11
    # seeds missed).
    seeds: dict[tuple, list[dict[str, Any]]] = {}
    for row in sweep.rows:
        key = tuple(str(row.get(knob)) for knob in KNOBS if knob != "seed")
        seeds.setdefault(key, []).append(row)

    def meets(row: dict[str, Any]) -> bool:
        # An overloaded fleet never meets it, as plan judges (a review: one was starred);
        # nor one whose replicas reject requests the context admits (a QA pass).
        no_slo = _meets_no_slo(row, sweep.columns)
        return bool(row["ok"] and row.get("slo_met") is True and no_slo is None)

    met = [
        row
        for group in seeds.values()
        if all(meets(row) for row in group)
        for row in group[:1]
        if not math.isnan(_number(row.get("cost_per_hour_usd")))
    ]
    if not met:
        # Said, not left blank (a QA pass: a sweep of infeasible rows had no answer line).
        if not any(row["ok"] for row in sweep.rows):
            return None, "no scenario could run: every one is infeasible (see its status)"
        if sweep.slo:
            return None, "no scenario meets the SLO"
        return None, ""
    traces = {str(row.get("trace")) for row in sweep.rows}
    if len(traces) > 1:
        # A QA pass: the cheapest over rows of two traces was one for the lighter trace.
        # Fleets are compared on one trace; each has its own cheapest (the table).
        return None, (
            f"no one cheapest scenario: the rows replay {len(traces):,} traces, each with its "
            "own cheapest fleet (see the table)"
        )
    # Rate scales are workloads of their own, as traces are (a QA pass: the page starred
    # 2xH100 at rate_scale=0.5 beside fleets serving the trace at its own rate): the star
    # goes to the cheapest at rate scale 1 (the trace as recorded), else at the highest
    # scale some fleet meets.
    scales = sorted({_number(row.get("rate_scale")) for row in sweep.rows})
    at_scale = ""
    if len(scales) > 1:
        met_scales = {_number(row.get("rate_scale")) for row in met}
        scale = 1.0 if 1.0 in met_scales else max(met_scales)
        met = [row for row in met if _number(row.get("rate_scale")) == scale]
        at_scale = f" at rate_scale={scale:g}, one of {len(scales):,} workloads"
    # Cost first; at one cost the lower p99 TTFT (a QA pass: max_num_seqs=32 was starred
    # beside 128 at the same cost and a lower p99), then the fleet's name.
    best = min(met, key=lambda r: (*_cost_and_p99(r), r["gpus"]))
    num_seeds = max(len(group) for group in seeds.values())
    if num_seeds > 1:
        return best, (
            f"cheapest scenario meeting the SLO{at_scale} on every one of its seeds ({num_seeds:,})"
        )
    return best, f"cheapest scenario meeting the SLO{at_scale}"


def _plan_of_other_workload(sweep: SweepRows) -> str | None:
    """Why ``plan.json``'s answer is not an answer for these rows: the plan searched another
    trace (none of the rows' ``trace_sha256``) or judged another SLO; None when it may be
    (a QA pass: a plan of another trace and SLO was ringed as the sweep's answer)."""
    answer = sweep.answer or {}
    sha = answer.get("plan_trace_sha256")
    row_shas = {row.get("trace_sha256") for row in sweep.rows} - {None}
    if isinstance(sha, str) and row_shas and sha not in row_shas:
        return (
            f"plan.json's answer {answer.get('gpus')} is for another trace (SHA-256 "
            f"{sha[:12]}) than these rows: not ringed"
        )
    plan_slo = answer.get("plan_slo")
    if isinstance(plan_slo, dict) and plan_slo and sweep.slo:
        from simulator.metrics import parse_slo

        text = ",".join(f"{k}={v}" for k, v in sorted(plan_slo.items()))
        try:
            theirs = {m: (p, bound) for m, p, bound in parse_slo(text).values()}
        except SimreplayError:
            theirs = None  # not an SLO this build reads: nothing to compare
        if theirs is not None and theirs != sweep.slo:
            return (
                f"plan.json's answer {answer.get('gpus')} was searched for another SLO "
                f"({text}) than these rows are judged by: not ringed"
            )
    return None


def _is_plan_answer(row: dict[str, Any], answer: dict[str, Any]) -> bool:
    """Whether ``row`` is the scenario ``plan`` answered: its fleet, the TP degree it used
    (a row's ``tp`` knob is null when chosen automatically; ``tp_used`` is the one chosen),
    the answer's rate scale, and every other knob the plan fixed (``assumed``). Knobs the
    rows do not have (rows of another program) are not compared."""
    if row.get("gpu_type") is not None and answer.get("gpu_type") is not None:
        if (row["gpu_type"], row["num_gpus"]) != (answer["gpu_type"], answer.get("num_gpus")):
            return False
    elif row["gpus"] != answer.get("gpus"):
        return False
    if answer.get("tp") is not None:
        tp = row.get("tp_used") if row.get("tp_used") is not None else row.get("tp")
        if not _same_value(tp, answer["tp"]):
            return False
    fixed = dict(answer.get("assumed") or {})
    if answer.get("rate_scale") is not None:
        fixed["rate_scale"] = answer["rate_scale"]
    return all(
        _same_value(_engine_value(k, row[k], row), _engine_value(k, v, fixed))
        for k, v in fixed.items()
        if k in row
    )


def _engine_value(knob: str, value: Any, knobs: dict[str, Any]) -> Any:
    """``value`` of ``knob``, or for an engine default (None) the value it resolves to with
    ``knobs``' scheduler and pp: a sweep of `--async-scheduling true` and a plan left at the
    default ran the same engine (a review: "plan answer ... matches none of these rows")."""
    from simulator.scenario import ENGINE_DEFAULT_KNOBS, engine_default

    if value is not None or knob not in ENGINE_DEFAULT_KNOBS:
        return value
    return engine_default(knob, knobs)


def _same_value(a: Any, b: Any) -> bool:
    """Equal values; numbers (not bools) equal within float rounding."""
    numbers = [isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b)]
    if all(numbers):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def pareto_front(cost: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both cost and latency, by latency.

    A point is on the front when every point with lower or equal latency costs more.
    """
    finite = np.flatnonzero(np.isfinite(cost) & np.isfinite(latency))
    order = finite[np.lexsort((cost[finite], latency[finite]))]
    front, best = [], math.inf
    for i in order:
        if cost[i] < best:
            front.append(i)
            best = cost[i]
    return np.array(front, dtype=np.int64)


def _label(row: dict[str, Any], knobs: list[str]) -> str:
    extra = [f"{k}={row.get(k)}" for k in knobs if k not in ("gpus", "gpu", "num_gpus")]
    return " ".join([row["gpus"], *extra])


def sweep_figures(
    sweep: SweepRows, heatmap_axes: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every figure of the sweep page, in page order."""
    ok = [row for row in sweep.rows if row["ok"]]
    knobs = varying_knobs(sweep)
    answer, answer_kind = answer_row(sweep)
    figures = []
    for metric in ("ttft", "tpot"):
        column = f"{metric}_p99_ms"
        if column in sweep.columns:
            figures.append(_against_gpus(sweep, ok, knobs, metric, column, answer))
    if "cost_per_hour_usd" in sweep.columns and "ttft_p99_ms" in sweep.columns:
        figures.append(_cost_front(sweep, ok, knobs, answer, answer_kind))
    heat = _heatmap(sweep, knobs, heatmap_axes)
    if heat is not None:
        figures.append(heat)
    return figures


def _against_gpus(
    sweep: SweepRows,
    ok: list[dict[str, Any]],
    knobs: list[str],
    metric: str,
    column: str,
    answer: dict[str, Any] | None,
) -> dict[str, Any]:
    x_knob = _x_knob(ok, knobs)
    others = [k for k in knobs if k not in ("gpus", "gpu", "num_gpus", x_knob)]
    groups: dict[str, dict[float, list[float]]] = {}

    def key(row: dict[str, Any], folded: bool) -> str:
        if folded:
            return row["gpu"]
        return " ".join([row["gpu"], *(f"{k}={row.get(k)}" for k in others)])

    folded = len({key(row, False) for row in ok}) > MAX_GROUPS
    for row in ok:
        value = _number(row.get(column))
        if math.isfinite(value):
            point = _number(row[x_knob])
            groups.setdefault(key(row, folded), {}).setdefault(point, []).append(value)
    series = []
    for name in sorted(groups, key=_sort_key):  # numbers by value: 8, 32, 128
        xs = sorted(groups[name])
        # Several rows per point (folded knobs, seeds): the best one, as a planner would pick.
        series.append(
            F.series(
                name,
                np.array([min(groups[name][x]) for x in xs]),
                x=np.array(xs, dtype=np.float64),
                points=True,
                line=True,
            )
        )
    label = metric.upper()
    caption = "Scenarios that ran; infeasible ones are listed in the table."
    if folded:
        caption += f" Lines per GPU type, the lowest p99 over {', '.join(others)} at each point."
    xs_all = [x for points in groups.values() for x in points]
    # A knob over a wide range (max_num_seqs 8 to 256) is read on a log axis.
    wide = bool(xs_all) and min(xs_all) > 0 and max(xs_all) >= 8 * min(xs_all)
    figure = F.line_figure(
        f"sweep_{metric}_p99",
        f"p99 {label} against {'GPU count' if x_knob == 'num_gpus' else x_knob}",
        "GPUs" if x_knob == "num_gpus" else x_knob,
        f"p99 {label} (ms)",
        series,
        x_scale="log" if wide and x_knob != "num_gpus" else "linear",
        y_scale="log",
        caption=caption,
    )
    if x_knob == "num_gpus" or all(float(x).is_integer() for x in xs_all):
        figure["x"]["integer"] = True
    if x_knob != "num_gpus":
        figure["x"]["ticks"] = sorted(set(xs_all))  # the values swept, and no others
    if metric in sweep.slo:
        p, bound = sweep.slo[metric]
        if p == 99:
            figure["hlines"] = [{"y": bound, "label": f"SLO p{p} \u2264 {bound:,.0f} ms"}]
        else:
            figure["caption"] += _other_percentile_note(metric, p, bound)
    if answer is not None and math.isfinite(_number(answer.get(column))):
        figure["markers"] = [
            {
                "name": answer["gpus"],
                "x": _number(answer[x_knob]),
                "y": _number(answer[column]),
                "highlight": True,
            }
        ]
    return figure


def _x_knob(ok: list[dict[str, Any]], knobs: list[str]) -> str:
    """The p99 charts' x axis: the GPU count where it varies, else the first numeric knob
    that does (a QA pass: a sweep over ``--max-num-seqs`` alone drew its values as a stack
    of one-point lines at one GPU count)."""
    if len({row["num_gpus"] for row in ok}) > 1:
        return "num_gpus"
    for knob in knobs:
        if knob in ("gpus", "gpu", "num_gpus", "seed"):
            continue
        values = {row.get(knob) for row in ok}
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if len(values) > 1 and numeric:
            return knob
    return "num_gpus"


def _other_percentile_note(metric: str, percentile: int, bound_ms: float) -> str:
    """A chart of p99 values says why it draws no line for a bound on another percentile (a
    QA pass: "SLO p75 <= 100 ms" was drawn on p99 TTFTs, above the starred scenario that
    meets it)."""
    return (
        f" The SLO bound, p{percentile} {metric.upper()} \u2264 {bound_ms:,.0f} ms, is on "
        "another percentile than this chart's, so it is not drawn."
    )


def _cost_front(
    sweep: SweepRows,
    ok: list[dict[str, Any]],
    knobs: list[str],
    answer: dict[str, Any] | None,
    answer_kind: str,
) -> dict[str, Any]:
    cost = np.array([_number(r.get("cost_per_hour_usd")) for r in ok])
    p99 = np.array([_number(r.get("ttft_p99_ms")) for r in ok])
    types = sorted({r["gpu"] for r in ok})
    series = []
    for colour, gpu in enumerate(types):
        mine = [i for i, r in enumerate(ok) if r["gpu"] == gpu]
        series.append(
            {
                **F.series(gpu, cost[mine], x=p99[mine], points=True, color=colour),
                "labels": [_label(ok[i], knobs) for i in mine],
            }
        )
    # One frontier per traffic level: a scenario at half the rate is not a cheaper way to
    # serve the trace (QA: the frontier joined rate scales).
    scales = sorted({_number(r.get("rate_scale", 1.0)) for r in ok})
    for k, scale in enumerate(scales):
        mine = np.array(
            [i for i, r in enumerate(ok) if _number(r.get("rate_scale", 1.0)) == scale],
            dtype=np.int64,
        )
        front = mine[pareto_front(cost[mine], p99[mine])] if mine.size else mine
        if not front.size:
            continue
        name = "Pareto frontier" + (f", rate_scale={scale:g}" if len(scales) > 1 else "")
        series.append(
            {
                **F.series(name, cost[front], x=p99[front], dash=True, color=len(types) + k),
                "labels": [_label(ok[i], knobs) for i in front],
            }
        )
    figure = F.line_figure(
        "sweep_cost_front",
        "Cost per hour against p99 TTFT",
        "p99 TTFT (ms)",
        "$ per hour",
        series,
        x_scale="log",
        y_min=0.0,
        caption=(
            "Each point is a scenario; the dashed line joins the Pareto frontier (no scenario is "
            "both cheaper and faster), one per rate scale when the sweep varies it."
            + (f" Ringed: {answer_kind}." if answer is not None else "")
        ),
    )
    if "ttft" in sweep.slo:
        p, bound = sweep.slo["ttft"]
        if p == 99:
            figure["vlines"] = [{"x": bound, "label": f"SLO p{p} \u2264 {bound:,.0f} ms"}]
        else:
            figure["caption"] += _other_percentile_note("ttft", p, bound)
    if answer is not None:
        cost = _number(answer.get("cost_per_hour_usd"))
        figure["markers"] = [
            {
                "name": f"{_label(answer, knobs)} ${cost:,.2f}/h",
                "x": _number(answer.get("ttft_p99_ms")),
                "y": _number(answer.get("cost_per_hour_usd")),
                "highlight": True,
            }
        ]
    return figure


def _heatmap_value(row: dict[str, Any], columns: list[str]) -> float:
    if _meets_no_slo(row, columns) is not None:
        # Its queue outgrows the trace (a longer one would miss more), or its replicas
        # reject requests the context admits: plan and the answer never take it (a QA
        # pass: shown at 100 % beside the starred fleet).
        return 0.0
    for name in ATTAINMENT_COLUMNS:
        value = _number(row.get(name))
        if math.isfinite(value):
            return value
    met = row.get("slo_met")
    if not row["ok"]:
        return 0.0  # an infeasible scenario meets nothing
    return math.nan if met is None else float(bool(met))


def _sort_key(value: Any) -> tuple[int, float, tuple[Any, ...]]:
    number = _number(value)
    if math.isfinite(number):
        return (0, number, ())
    # Numbers inside text by value: 8xH100 before 16xH100 (as text, 16x came first).
    parts = re.split(r"(\d+)", str(value))
    return (1, 0.0, tuple(int(p) if i % 2 else p for i, p in enumerate(parts)))


def _mixed_note(sweep: SweepRows, knobs: list[str], axes: tuple[str, str]) -> str:
    """Which other knobs a heat-map cell averages over, when any varies."""
    on_axes = set(axes)
    if "gpus" in on_axes or {"gpu", "num_gpus"} <= on_axes:
        on_axes |= {"gpus", "gpu", "num_gpus"}
    others = [k for k in _shown_knobs(knobs) if k not in on_axes]
    if not others:
        return ""
    counts = ", ".join(
        f"{k} ({len({str(row.get(k)) for row in sweep.rows})} values)" for k in others
    )
    return f"; each cell mixes the scenarios of every {counts} (--heatmap picks other axes)"


def _heatmap(
    sweep: SweepRows, knobs: list[str], axes: tuple[str, str] | None
) -> dict[str, Any] | None:
    if axes is None:
        if "rate_scale" in knobs and len(knobs) > 1:
            second = "gpus" if "gpus" in knobs else next(k for k in knobs if k != "rate_scale")
            axes = ("rate_scale", second)
        elif "num_gpus" in knobs and "gpu" in knobs:
            axes = ("num_gpus", "gpu")
        else:
            # gpu and num_gpus are read from gpus: a sweep over --gpus alone drew a
            # num_gpus x gpus map, one axis twice (a QA pass).
            own = [
                k
                for k in knobs
                if k != "seed" and ("gpus" not in knobs or k not in ("gpu", "num_gpus"))
            ]
            if len(own) < 2:
                return None
            axes = (own[0], own[1])
    else:
        for name in axes:
            if name not in sweep.columns and name not in ("gpu", "num_gpus"):
                raise SimreplayError(
                    f"--heatmap: no column {name!r} in the sweep rows; columns: "
                    f"{', '.join(sweep.columns)}"
                )
    x_name, y_name = axes
    cells: dict[tuple[str, str], list[float]] = {}
    for row in sweep.rows:
        value = _heatmap_value(row, sweep.columns)
        if math.isfinite(value):
            cells.setdefault((str(row.get(x_name)), str(row.get(y_name))), []).append(value)
    if not cells:
        return None
    xs = sorted({row.get(x_name) for row in sweep.rows}, key=_sort_key)
    ys = sorted({row.get(y_name) for row in sweep.rows}, key=_sort_key)
    z = [
        [float(np.mean(cells[(str(x), str(y))])) if (str(x), str(y)) in cells else None for x in xs]
        for y in ys
    ]
    uses = next((c for c in ATTAINMENT_COLUMNS if c in sweep.columns), None)
    return {
        "id": "sweep_slo_heatmap",
        "title": f"SLO attainment over {x_name} and {y_name}",
        "kind": "heatmap",
        "x": {"label": x_name, "scale": "category", "time": False, "values": [str(x) for x in xs]},
        "y": {"label": y_name, "scale": "category", "values": [str(y) for y in ys]},
        "z": z,
        "series": [],
        "markers": [],
        "vlines": [],
        "hlines": [],
        "zoom": False,
        "caption": (
            f"Mean of {uses} over the scenarios in each cell"
            if uses
            else "Share of the scenarios in each cell whose percentiles meet every --slo bound "
            "(slo_met; the rows' per-request attainment was measured against the sweep's own "
            "SLO)"
            if sweep.rejudged
            else "Share of the scenarios in each cell that meet every SLO bound (slo_met)"
        )
        + _mixed_note(sweep, knobs, (x_name, y_name))
        + "; infeasible and overloaded scenarios, and those rejecting requests the context "
        "admits, count as 0; grey: no scenario.",
    }


#: Columns the table shows after the knobs, when present.
TABLE_METRICS = (
    "ttft_p50_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "tpot_p99_ms",
    "e2e_p99_ms",
    "throughput_rps",
    "cost_per_hour_usd",
)


def _backlog(row: dict[str, Any], columns: list[str]) -> str | None:
    """``overloaded`` or ``burst`` for a row that ran with a queue that outgrew its trace
    (the row's ``backlog``; a row of an earlier build, without the column, is judged
    from its backlog alone), else None."""
    if not row["ok"]:
        return None
    if "backlog" in columns:
        return row.get("backlog")
    backlog = _number(row.get("backlog_at_last_arrival"))
    num_requests = _number(row.get("num_requests"))
    if not (math.isfinite(backlog) and math.isfinite(num_requests)):
        return None
    return backlog_kind(int(backlog), int(num_requests), math.inf)


def _meets_no_slo(row: dict[str, Any], columns: list[str]) -> str | None:
    """``rejects`` for a fleet whose replicas reject requests its context admits,
    ``overloaded`` for one whose queue outgrows the trace, ``rejects, overloaded`` for
    both (as ``sweep show`` words them): each meets no SLO, whatever the percentiles of
    what it completed, as ``plan`` judges; else None."""
    return no_slo_status(bool(_capped(row)), _backlog(row, columns) == "overloaded")


def _cost_and_p99(row: dict[str, Any]) -> tuple[float, float]:
    """A row's cost and p99 TTFT for ordering: cheaper first, then faster (missing: last)."""
    cost, p99 = _number(row.get("cost_per_hour_usd")), _number(row.get("ttft_p99_ms"))
    return (cost if math.isfinite(cost) else math.inf, p99 if math.isfinite(p99) else math.inf)


def _capped(row: dict[str, Any]) -> int:
    """How many requests the row's replicas reject that its asked context admits (its KV
    cache holds less); 0 for a row of an earlier build, without the column."""
    value = _number(row.get("num_rejected_capacity"))
    return int(value) if row["ok"] and math.isfinite(value) else 0


def _knob_text(row: dict[str, Any], knob: str) -> str:
    """A knob's cell: empty where it was left to its default (None) or where the row's
    scheduler never reads it (``chunk_size`` outside ``sarathi``)."""
    value = row.get(knob)
    if knob == "tp" and value is None and row.get("tp_used") is not None:
        # Left to the sweep: the degree it chose for this row (the run's "tp=N (chosen)").
        return f"{row['tp_used']} (auto)"
    if value is None or (knob == "chunk_size" and row.get("scheduler") != "sarathi"):
        return ""
    return str(value)


def _scenario_table(sweep: SweepRows, answer: dict[str, Any] | None) -> str:
    varying = set(varying_knobs(sweep))
    knobs = [
        k
        for k in KNOBS
        if k in sweep.columns
        and k not in ("gpu", "num_gpus")
        and (k in varying or k not in SHOWN_WHEN_VARIED)
    ]
    metrics = [m for m in TABLE_METRICS if m in sweep.columns]
    ordered = sorted(
        sweep.rows,
        key=lambda r: (not r["ok"], *_cost_and_p99(r)),
    )
    rows = []
    for row in ordered[:MAX_TABLE_ROWS]:
        cells = [f"<td>{esc(_knob_text(row, k))}</td>" for k in knobs]
        for m in metrics:
            value = _number(row.get(m))
            cells.append(
                number_cell(
                    value if math.isfinite(value) else None,
                    f"{value:,.2f}" if math.isfinite(value) else "",
                )
            )
        met = row.get("slo_met")
        # A fleet rejecting requests its context admits, or whose queue outgrows the trace,
        # meets no SLO, whatever the percentiles of what it completed (as ``plan`` judges).
        word = _meets_no_slo(row, sweep.columns) or ("met" if met else "missed")
        badge = "" if word == "met" else "bad"
        cells.append(
            f'<td><span class="badge {badge}">{word}</span></td>'
            if met is not None and row["ok"]
            else "<td></td>"
        )
        status = "ok" if row["ok"] else f"{row.get('status')}: {row.get('reason') or ''}"
        kind = _backlog(row, sweep.columns)
        if kind is not None:
            # As run's Overloaded and Backlog lines (a QA pass: a 16 s p99 that grows with
            # the trace's length was shown as any other).
            backlog = int(_number(row.get("backlog_at_last_arrival")))
            status = (
                f"ok; overloaded: {backlog:,} requests had not started when the last arrived, "
                "so latencies grow with the trace's length"
                if kind == "overloaded"
                else f"ok; a burst: {backlog:,} requests queued when the last arrived (the "
                "trace sends them within a second)"
            )
        capped = _capped(row)
        if capped:
            status += (
                f"; {capped:,} requests rejected that the model's context admits (a "
                "replica's KV cache holds less), so it meets no SLO"
            )
        cells.append(f"<td>{esc(status)}</td>")
        mark = ' class="answer"' if row is answer else ""
        rows.append([f"<td{mark}>{STAR if row is answer else ''}</td>", *cells])
    html = table(["", *knobs, *metrics, "SLO", "status"], rows, "scenarios")
    if len(ordered) > MAX_TABLE_ROWS:
        html += (
            f'<p class="sub">The first {MAX_TABLE_ROWS:,} of {len(ordered):,} scenarios by cost; '
            "every row is in the parquet files.</p>"
        )
    return html


def _shown_knobs(knobs: list[str]) -> list[str]:
    # gpu and num_gpus are read from gpus: name gpus only, as the user gave it.
    return [k for k in knobs if "gpus" not in knobs or k not in ("gpu", "num_gpus")]


def still_writing_note(sweep: SweepRows) -> str:
    """What to say of a store a sweep is still writing."""
    if sweep.num_missing:
        shown = f"{sweep.num_planned_stored:,} of the {sweep.num_planned:,} scenarios planned"
    else:
        shown = f"the {len(sweep.rows):,} scenarios finished so far"
    return (
        f"a sweep is still writing rows into {sweep.directory}: this shows {shown}; report "
        "again when it ends"
    )


def partial_note(sweep: SweepRows) -> str | None:
    """What to say of a store that lacks planned scenarios (a sweep still writing it, or
    one stopped); None when it lacks none, or records none."""
    if sweep.still_writing:
        return still_writing_note(sweep)
    if sweep.unchecked_store:
        # `sweep show` refuses such a store; the page is still drawn (rows of the user's
        # own making have no sweep.json either), and says what it could not check.
        return (
            f"{sweep.directory}: a sweep store's rows without its {STORE_MANIFEST}: drawn "
            "from the rows alone, unchecked (whether every planned scenario ran, whether a "
            "row is a copy); rerun the `simreplay sweep` command that made it to write "
            f"{STORE_MANIFEST} again"
        )
    if not sweep.num_missing:
        return None
    return (
        f"{sweep.num_planned_stored:,} of {sweep.num_planned:,} planned scenarios stored; "
        f"{sweep.num_missing:,} not simulated yet (the sweep was stopped): run the same sweep "
        "command again, then report"
    )


def render_sweep_page(sweep: SweepRows, figures: list[dict[str, Any]]) -> str:
    """The sweep page as HTML text."""
    answer, answer_kind = answer_row(sweep)
    num_ok = sum(row["ok"] for row in sweep.rows)
    types = sorted({row["gpu"] for row in sweep.rows})
    # A store lacking planned scenarios: "k of N" (and the rows of no plan on record apart).
    count = f"{len(sweep.rows):,}"
    others = ""
    if sweep.num_missing:
        count = f"{sweep.num_planned_stored:,} of {sweep.num_planned:,}"
        num_others = len(sweep.rows) - (sweep.num_planned_stored or 0)
        others = f" planned, and {num_others:,} others" if num_others else ""
    facts = [
        (
            "Scenarios",
            esc(f"{count}{others} ({num_ok:,} ran, {len(sweep.rows) - num_ok:,} infeasible)"),
        ),
        ("GPU types", esc(", ".join(types))),
        ("Knobs varied", esc(", ".join(_shown_knobs(varying_knobs(sweep))) or "none")),
        (
            "SLO",
            esc(
                ", ".join(f"{m} p{p} \u2264 {b:,.0f} ms" for m, (p, b) in sweep.slo.items())
                or "not given"
            ),
        ),
    ]
    partial = partial_note(sweep)
    if partial is not None:
        facts.append(("Store", f'<span class="badge warn">{esc(partial)}</span>'))
    if sweep.plan_prices:
        priced = ", ".join(f"{n} ${p:,.2f}" for n, p in sorted(sweep.plan_prices.items()))
        facts.append(("Prices", esc(f"per GPU-hour, as plan.json's: {priced}")))
    if answer is not None:
        cost = _number(answer.get("cost_per_hour_usd"))
        # The knobs that vary say which scenario it is (e.g. which model met the SLO); not
        # its seed: the answer meets the SLO on every one (a review: "4xH100 seed=1").
        knobs = [k for k in varying_knobs(sweep) if k != "seed"]
        text = _label(answer, knobs) + (
            f", tp={answer['tp']}" if answer.get("tp") is not None and "tp" not in knobs else ""
        )
        if math.isfinite(cost):
            text += f", ${cost:,.2f}/hour"
        label = answer_kind[0].upper() + answer_kind[1:]
        facts.append((label, f'<span class="badge">{STAR} {esc(text)}</span>'))
    elif answer_kind:
        facts.append(("Answer", f'<span class="badge bad">{esc(answer_kind)}</span>'))
    title = f"simreplay sweep: {count} scenarios"
    parts = [
        f"<header><h1>{esc(title)}</h1>",
        f'<p class="sub">Rows from <code>{esc(sweep.directory.name or sweep.directory)}</code>.</p>'
        "</header>",
        key_value_table(facts),
        "<h2>Latency and cost</h2>",
        '<div class="grid">',
        *(figure_div(f) for f in figures if f["kind"] != "heatmap"),
        "</div>",
    ]
    heat = [f for f in figures if f["kind"] == "heatmap"]
    if heat:
        parts += ["<h2>SLO attainment</h2>", figure_div(heat[0])]
    parts += ["<h2>Scenarios</h2>", f'<div class="scroll">{_scenario_table(sweep, answer)}</div>']
    parts.append(
        "<footer>Written by <code>simreplay report</code> from the sweep's parquet rows. "
        "The same figures are in <code>plots/*.png</code>.</footer>"
    )
    summary = {
        "num_scenarios": len(sweep.rows),
        "num_ok": num_ok,
        "answer": None
        if answer is None
        else {k: answer.get(k) for k in ("gpus", "tp", "cost_per_hour_usd")},
        "answer_kind": answer_kind,
        "num_planned": sweep.num_planned,
        "num_planned_stored": sweep.num_planned_stored,
    }
    return page(title, "\n".join(parts), summary, figures)
