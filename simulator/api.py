"""The Python API: ``simulate(trace, scenario) -> Result``. The CLI is a thin layer over it.

    trace (table or file) -> resolve(scenario) -> engine state -> cluster run -> Result

Example::

    from simulator import Scenario, simulate
    result = simulate("traces/chat-1h.parquet", Scenario(gpus="4xA100"))
    print(result.summary["ttft_ms"]["p99"])
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from simulator.closed_loop import session_turn_links, think_times_s, turn_numbers
from simulator.cluster import Router, replay
from simulator.engine.capacity import CapacityBounds, capacity_bounds
from simulator.engine.prefix_keys import (
    PrefixInputs,
    link_answers_to_next_turns,
    prefix_inputs,
    session_indices,
)
from simulator.engine.state import R_PREEMPTIONS, EngineState
from simulator.errors import SimreplayError, TraceError
from simulator.metrics import parse_slo
from simulator.results import Result, build_result
from simulator.scenario import ResolvedScenario, Scenario, check_knobs_read, resolve
from simulator.trace.importer import load_trace
from simulator.trace.options import ImportOptions
from simulator.trace.schema import TraceMetadata, build_trace_table, validate_trace

ORCHESTRATIONS = ("auto", "fused", "simpy")


def simulate(
    trace: pa.Table | str | Path,
    scenario: Scenario | None = None,
    *,
    router: Router | None = None,
    slo: str | dict | None = None,
    orchestration: str = "auto",
    import_options: ImportOptions | None = None,
) -> Result:
    """Replay ``trace`` through the deployment ``scenario`` describes.

    Parameters
    ----------
    trace : pyarrow.Table, str or Path
        A canonical trace table, or a trace file in any supported format.
    scenario : Scenario, optional
        The deployment; ``Scenario()`` (1xH100, Llama-3.1-8B, vLLM defaults) when omitted.
    router : callable, optional
        ``router(request: RequestView, replicas: list[ReplicaView]) -> int``; overrides the
        scenario's built-in router and runs the simpy orchestration.
    slo : str or dict, optional
        ``"ttft_p99_ms=2000,tpot_p99_ms=80"`` or the parsed form; adds ``summary["slo"]``.
    orchestration : str
        ``auto`` (all-numba when every policy is built in), ``fused`` or ``simpy``. Both give
        identical results; ``simpy`` is slower and is what custom routers use.
    import_options : ImportOptions, optional
        How to read ``trace`` when it is a file.

    Returns
    -------
    Result

    Raises
    ------
    SimreplayError
        For bad input, in one line; a bad ``Scenario`` value is named by its field
        (``Scenario.max_num_seqs``), where ``simreplay run`` names its option.
    TraceError
        For a trace that cannot be read or has no rows.
    """
    try:
        return _simulate(
            trace,
            scenario,
            router=router,
            slo=slo,
            orchestration=orchestration,
            import_options=import_options,
        )
    except SimreplayError as exc:
        message = scenario_field_names(str(exc))
        if message == str(exc):
            raise
        raise type(exc)(message) from exc.__cause__


@functools.cache
def _option_pattern() -> re.Pattern[str]:
    fields = [f.name.replace("_", "-") for f in dataclasses.fields(Scenario)]
    options = sorted([*fields, "slo"], key=len, reverse=True)
    # Not vLLM's or its benchmark's own flag, which a message may cite beside ours; a
    # switch's --no- form is one option ("--no-enable-prefix-caching").
    return re.compile(r"(?<!'s )(?<!serve )--(no-)?(" + "|".join(options) + r")(?![\w-])")


@functools.cache
def _switch_fields() -> frozenset[str]:
    """The ``Scenario`` fields a CLI switch sets (``--enforce-eager``, ``--no-...``)."""
    hints = typing.get_type_hints(Scenario)
    return frozenset(name for name, hint in hints.items() if hint in (bool, bool | None))


def scenario_field_names(message: str) -> str:
    """``message`` with each ``--option`` of a ``Scenario`` field named as the field.

    The resolver's messages name ``simreplay run``'s options; an API caller set fields:
    ``--max-num-seqs must be ...`` -> ``Scenario.max_num_seqs must be ...``, and ``--slo``
    is ``simulate``'s ``slo``. vLLM's own flags cited in a message (``vLLM's
    --max-model-len``) are kept.
    """

    def field(match: re.Match[str]) -> str:
        negated, name = match.group(1), match.group(2).replace("-", "_")
        if name in _switch_fields():  # "add Scenario.enable_prefix_caching" named no value
            return f"Scenario.{name}={not negated}"
        if negated:
            return match.group(0)
        return name if name == "slo" else f"Scenario.{name}"

    message = _option_pattern().sub(field, message)
    # The type checks name the field bare ("closed_loop must be true or false"): the CLI's
    # parser never lets such a value through, so only an API caller reads them.
    first = message.split(" ", 1)[0]
    if first in {f.name for f in dataclasses.fields(Scenario)}:
        message = f"Scenario.{message}"
    return message


def _simulate(
    trace: pa.Table | str | Path,
    scenario: Scenario | None = None,
    *,
    router: Router | None = None,
    slo: str | dict | None = None,
    orchestration: str = "auto",
    import_options: ImportOptions | None = None,
) -> Result:
    """``simulate`` with the CLI's wording: messages name ``simreplay run``'s options."""
    if orchestration not in ORCHESTRATIONS:
        raise SimreplayError(
            f"orchestration must be one of {ORCHESTRATIONS}, got {orchestration!r}"
        )
    if router is not None and orchestration == "fused":
        raise SimreplayError("a custom router needs the simpy orchestration")
    if router is not None and not callable(router):
        raise SimreplayError(
            f"simulate's router must be a callable, got {type(router).__name__} (a built-in "
            "router by name is Scenario.router)"
        )
    if scenario is not None and not isinstance(scenario, Scenario):
        raise SimreplayError(
            f"scenario must be a simulator.Scenario, e.g. Scenario(gpus='2xH100'), got "
            f"{type(scenario).__name__}"
        )
    table = _trace_table(trace, import_options)
    scenario = scenario or Scenario()
    resolved = resolve(scenario)  # first: a field of the wrong type is named as such
    _check_knobs_read(scenario, router)
    bounds = slo_bounds(slo)

    input_tokens = table.column("input_tokens").to_numpy()
    arrival_time_s = table.column("arrival_time_s").to_numpy()
    state = replay_resolved(
        resolved,
        arrival_time_s,
        input_tokens,
        table.column("output_tokens").to_numpy(),
        orchestration="simpy" if orchestration == "simpy" else "fused",
        router=router,
        **_trace_inputs(resolved, table, input_tokens, arrival_time_s),
    )
    ids = table.column("request_id") if "request_id" in table.column_names else None
    result = build_result(resolved, state, ids, bounds)
    if router is not None:
        # The scenario's built-in router did not route this run: say whose did.
        name = getattr(router, "__name__", None) or type(router).__name__
        result.summary["scenario"]["router"] = f"custom ({name})"
    return result


#: ``trace import``'s options that make ``ImportOptions.arrival`` (an ``ArrivalProcess``)
#: -> the argument of ``arrival_process`` each is.
_ARRIVAL_OPTIONS = {
    "rate-profile": "rate_profile",
    "peak-to-trough": "peak_to_trough",
    "period-s": "period_s",
    "arrival": "kind",
    "rate": "rate_rps",
    "cv": "cv",
}


def import_field_names(message: str) -> str:
    """``message`` with each ``trace import`` option named as what an API caller sets.

    A reader's advice names the CLI's options: ``--time-col`` is ``ImportOptions.time_col``,
    ``--skip-invalid`` is ``ImportOptions.skip_invalid=True``, and ``--rate``, ``--arrival``
    and ``--cv`` are ``arrival_process``'s arguments, given as ``ImportOptions.arrival``.
    ``--seed`` there is ``ImportOptions.seed``, not ``Scenario.seed`` (a QA pass: a
    length-only file's advice named ``Scenario.seed``, which its arrivals do not read)."""
    fields = {f.name: f for f in dataclasses.fields(ImportOptions)}
    names = sorted([*(n.replace("_", "-") for n in fields), *_ARRIVAL_OPTIONS], key=len)
    pattern = re.compile(r"--(" + "|".join(reversed(names)) + r")(?![\w-])")
    arguments: list[str] = []

    def field(match: re.Match[str]) -> str:
        option = match.group(1)
        if option in _ARRIVAL_OPTIONS:
            arguments.append(_ARRIVAL_OPTIONS[option])
            return _ARRIVAL_OPTIONS[option]
        name = option.replace("-", "_")
        if fields[name].type in ("bool", bool):
            return f"ImportOptions.{name}=True"
        return f"ImportOptions.{name}"

    # A CLI command quoted whole (`simreplay trace import ... --format parquet`) stays one.
    parts = message.split("`")
    message = "`".join(
        part if index % 2 else pattern.sub(field, part) for index, part in enumerate(parts)
    )
    if arguments:
        message += (
            f" ({', '.join(dict.fromkeys(arguments))}: arguments of "
            "simulator.trace.arrivals.arrival_process, given as "
            "ImportOptions(arrival=arrival_process(kind, rate_rps, ...)))"
        )
    return message


def _check_knobs_read(scenario: Scenario, router: Router | None) -> None:
    """``check_knobs_read`` for fields set away from their defaults (a QA pass: the API ran
    the default budget without a word). ``simulate_many``, which sweeps run through, keeps
    such scenarios, as a sweep keeps their rows with a note."""
    defaults = Scenario()
    check_knobs_read(
        scenario.scheduler,
        scenario.router,
        scenario.chunk_size != defaults.chunk_size,
        router is None and scenario.prefix_load_cap != defaults.prefix_load_cap,
    )


def _trace_table(trace: object, import_options: ImportOptions | None) -> pa.Table:
    """The canonical table of ``trace``: a table, a record batch or any Arrow stream, or a
    trace file's path; one line for anything else. A reader's message names
    ``ImportOptions`` fields, not ``trace import``'s options (``import_field_names``)."""
    if import_options is not None and not isinstance(import_options, ImportOptions):
        raise SimreplayError(
            "import_options must be a simulator.trace.options.ImportOptions, e.g. "
            f"ImportOptions(format='azure'), got {type(import_options).__name__}"
        )
    if isinstance(trace, pa.RecordBatch):
        trace = pa.Table.from_batches([trace])
    elif not isinstance(trace, pa.Table) and hasattr(trace, "__arrow_c_stream__"):
        trace = pa.table(trace)
    if isinstance(trace, pa.Table):
        if import_options is not None:  # it was ignored without a word (a QA pass)
            raise SimreplayError(
                "import_options say how to read a trace file; a table is taken as it is "
                "(read a file with simulator.trace.importer.import_trace(path, options))"
            )
        return _as_trace(trace)
    if not isinstance(trace, str | os.PathLike):
        raise SimreplayError(
            "trace must be a pyarrow Table (or record batch) or the path of a trace file, "
            f"got {type(trace).__name__}"
        )
    try:
        return load_trace(trace, import_options)
    except SimreplayError as exc:
        message = import_field_names(str(exc))
        if message == str(exc):
            raise
        raise type(exc)(message) from None


def slo_bounds(slo: object) -> dict[str, tuple[str, int, float]] | None:
    """The SLO bounds of ``simulate(..., slo=...)``: None, ``"ttft_p99_ms=2000,..."``, a dict
    of bounds in ms (``{"ttft_p99_ms": 2000}``) or the parsed form ``parse_slo`` returns
    (``{"ttft_p99_ms": ("ttft", 99, 2000.0)}``); each checked as the text form is."""
    if slo is None:
        return None
    if isinstance(slo, str):
        return parse_slo(slo)
    if not isinstance(slo, dict) or not slo:
        raise SimreplayError(
            "slo must be text like 'ttft_p99_ms=2000' or a non-empty dict like "
            f"{{'ttft_p99_ms': 2000}}, got {slo!r}"
        )
    items = []
    for key, value in slo.items():
        if isinstance(value, tuple) and len(value) == 3:
            metric, percentile, bound_ms = value
            try:
                named = parse_slo(f"{key}=1") if isinstance(key, str) else {}
            except SimreplayError:
                named = {}
            if [bound[:2] for bound in named.values()] != [(metric, percentile)]:
                raise SimreplayError(
                    f"slo: {key!r} names another bound than its value, {metric} "
                    f"p{percentile} (expected {metric}_p{percentile}_ms)"
                )
            value = bound_ms
        if isinstance(value, np.integer | np.floating):  # a numpy scalar is a number too
            value = value.item()
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not isinstance(key, str)
        ):
            raise SimreplayError(f"slo: {key!r} must map to a bound in ms, got {value!r}")
        items.append(f"{key}={value!r}")
    return parse_slo(",".join(items))


def replay_resolved(
    resolved: ResolvedScenario,
    arrival_time_s: np.ndarray,
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    *,
    orchestration: str = "fused",
    router: Router | None = None,
    prefix: PrefixInputs | None = None,
    session_idx: np.ndarray | None = None,
    next_turn: np.ndarray | None = None,
    think_s: np.ndarray | None = None,
    client_slots: int | None = None,
) -> EngineState:
    """Replay requests through an already resolved scenario; return the engine's final state.

    What ``simulate`` does after reading the trace and resolving the scenario, for callers
    that adjust a ``ResolvedScenario`` themselves (``calibrate validate`` sets the KV block
    count and the step model). ``orchestration`` is ``fused`` or ``simpy``. ``prefix``
    (``engine.prefix_keys.prefix_inputs``) runs the engine's prefix cache when the scenario
    has caching on; None runs without it, which gives the same results when no request
    carries ``hash_ids`` (the prefix-aware router gets the empty form, to read).
    ``next_turn`` and ``think_s`` (``closed_loop.session_turn_links`` and ``think_times_s``)
    are required for a closed-loop scenario. ``client_slots`` N sends the requests as a
    client keeping N in flight does (``vllm bench serve --max-concurrency N``): each at its
    arrival time or, while N are in flight, when one finishes; None takes the scenario's
    ``max_concurrency``.
    """
    if client_slots is None:
        client_slots = resolved.scenario.max_concurrency
    if resolved.scenario.closed_loop and next_turn is None:
        raise SimreplayError("--closed-loop needs the trace's sessions (next_turn)")
    if prefix is None and resolved.prefix_caching and resolved.scenario.router == "prefix-aware":
        # The router reads the (here empty) caches: it routes as least-outstanding.
        prefix = prefix_inputs(
            None, input_tokens, hash_block_tokens=None, block_size=resolved.memory.block_size
        )

    def run(prefix_used: PrefixInputs | None, stop_on_preemption: bool = False) -> EngineState:
        return replay(
            arrival_time_s,
            input_tokens,
            output_tokens,
            **_engine_knobs(resolved),
            draws=np.random.default_rng(resolved.scenario.seed).random(len(arrival_time_s)),
            orchestration=orchestration,
            router_fn=router,
            prefix=prefix_used,
            session_idx=session_idx,
            next_turn=next_turn if resolved.scenario.closed_loop else None,
            think_s=think_s,
            client_slots=client_slots,
            client_latency_s=resolved.scenario.api_server_latency_ms / 1000.0,
            stop_on_preemption=stop_on_preemption,
        )

    if not resolved.prefix_caching:
        return run(None)
    if prefix is not None:
        return run(prefix)
    # Caching on, no hash_ids: no request can find another's blocks, only a preempted
    # request its own. Without a preemption the cache changes nothing (tested) and the
    # engine runs faster without it; with one, the run is made again with the cache. Not
    # with a user's router, which would be asked twice per request (it may keep state).
    empty = prefix_inputs(
        None, input_tokens, hash_block_tokens=None, block_size=resolved.memory.block_size
    )
    if router is not None:
        return run(empty)
    # Given up soon after a first preemption: what it would have replayed after it was
    # thrown away (an overloaded 1M-request replay ran twice in full, 5.8 s of engine).
    state = run(None, stop_on_preemption=orchestration == "fused")
    if not state.stopped_at_preemption and int(state.req_i[:, R_PREEMPTIONS].sum()) == 0:
        return state
    return run(empty)


def _engine_knobs(resolved: ResolvedScenario) -> dict[str, Any]:
    """The engine knobs ``replay_resolved`` passes to ``cluster.replay`` (trace aside)."""
    chosen = resolved.scenario
    return {
        "num_replicas": resolved.num_replicas,
        "scheduler": chosen.scheduler,
        "router": chosen.router,
        "max_num_seqs": resolved.max_num_seqs,
        "token_budget": resolved.token_budget,
        "block_size": resolved.memory.block_size,
        "num_kv_blocks": resolved.engine_kv_blocks,  # per virtual engine, V1 null block out
        "max_model_len": resolved.max_model_len,
        "params": resolved.step_model.params,
        "prefix_load_cap": chosen.prefix_load_cap,
        "pipeline_stages": resolved.pp,
        "reserve_full_isl": bool(chosen.scheduler_reserve_full_isl),
    }


def simulate_many(
    trace: pa.Table | str | Path,
    scenarios: list[Scenario],
    *,
    slo: str | dict | None = None,
    import_options: ImportOptions | None = None,
) -> list[Result | SimreplayError]:
    """``simulate`` for each of ``scenarios`` on one trace, running the engine less often.

    Scenarios that resolve to the same engine knobs except the KV blocks and
    ``max_num_seqs`` share one run when the capacities of the run made never held a request
    back (``engine/capacity.py``): its results are then exactly those of the other run, so
    each ``Result`` is what ``simulate`` would return. Runs with the prefix cache, closed
    loop or pipeline stages are never shared (prefix caching on over a trace without
    ``hash_ids`` runs without the cache, and is shared). Built-in routers only.

    Returns
    -------
    list
        In the order of ``scenarios``: a ``Result``, or the ``SimreplayError`` that
        ``simulate`` would have raised for that scenario (say, weights that do not fit),
        worded as ``simreplay sweep`` stores it: naming the options (``--tp``), not the
        ``Scenario`` fields (``scenario_field_names`` rewrites one).
    """
    # A generator is read once, into a list (a QA pass: the check consumed it, then len()
    # raised TypeError); None and other non-iterables get the same line as a wrong list.
    if not isinstance(scenarios, (str, Scenario)) and isinstance(scenarios, Iterable):
        scenarios = list(scenarios)
    if not isinstance(scenarios, list) or not all(
        isinstance(scenario, Scenario) for scenario in scenarios
    ):
        # A list of "2xA100" strings raised AttributeError: 'str' object has no attribute...
        raise SimreplayError(
            "simulate_many: scenarios must be a list of Scenario objects, e.g. "
            "[Scenario(gpus='2xA100'), Scenario(gpus='4xA100')]"
        )
    table = _trace_table(trace, import_options)
    bounds = slo_bounds(slo)  # as simulate reads it: a dict of bound texts too
    input_tokens = table.column("input_tokens").to_numpy()
    arrival_time_s = table.column("arrival_time_s").to_numpy()
    output_tokens = table.column("output_tokens").to_numpy()
    ids = table.column("request_id") if "request_id" in table.column_names else None
    results: list[Result | SimreplayError | None] = [None] * len(scenarios)
    resolved_at: dict[int, ResolvedScenario] = {}
    for k, scenario in enumerate(scenarios):
        # Each checked before the order below compares their fields (a QA pass: one
        # gpu_memory_utilization="0.9" lost the whole list to a TypeError).
        try:  # knobs no policy reads are kept, as a sweep (which comes here) notes them
            resolved_at[k] = resolve(scenario)
        except SimreplayError as exc:
            results[k] = exc
    # Smaller capacities first: a run that nothing held back answers every larger one.
    order = sorted(
        resolved_at,
        key=lambda k: (
            resolved_at[k].scenario.gpu_memory_utilization,
            resolved_at[k].scenario.max_num_seqs or 0,
        ),
    )
    kept: list[_SharedRun] = []
    for k in order:
        resolved = resolved_at[k]
        try:
            inputs = _trace_inputs(resolved, table, input_tokens, arrival_time_s)
            key = _share_key(resolved, cache_runs=inputs["prefix"] is not None)
            knobs = _engine_knobs(resolved)
            capacity = (knobs["num_kv_blocks"], knobs["max_num_seqs"])
            state = _shared_state(kept, key, capacity)
            if state is None:
                state = replay_resolved(
                    resolved, arrival_time_s, input_tokens, output_tokens, **inputs
                )
                _keep(kept, key, capacity, state)
            results[k] = build_result(resolved, state, ids, bounds)
        except SimreplayError as exc:
            results[k] = exc
    return results  # type: ignore[return-value]


@dataclass
class _SharedRun:
    key: tuple
    num_kv_blocks: int
    max_num_seqs: int
    bounds: CapacityBounds
    state: EngineState


#: Runs ``simulate_many`` keeps for reuse (each holds its engine state, ~0.5 kB a request):
#: up to 4, fewer for traces of over 500,000 requests.
_MAX_KEPT_RUNS = 4
_MAX_KEPT_REQUESTS = 2_000_000


def _share_key(resolved: ResolvedScenario, *, cache_runs: bool) -> tuple | None:
    """What must be equal for two scenarios to share a run; None when they never may.

    ``cache_runs``: whether the engine runs its prefix cache (caching on and a trace with
    ``hash_ids``, or the prefix-aware router). Caching on without them runs as off until a
    request is preempted, so on and off never share a run.
    """
    chosen = resolved.scenario
    if cache_runs or chosen.closed_loop or chosen.max_concurrency is not None or resolved.pp > 1:
        return None
    knobs = _engine_knobs(resolved)
    del knobs["max_num_seqs"]
    if chosen.router != "vllm-dp":
        # vllm-dp reads the share of KV blocks in use, which more blocks change even where
        # they never bound (a review: a sweep's row differed from its own run).
        del knobs["num_kv_blocks"]
    knobs["params"] = knobs["params"].tobytes()
    knobs["prefix_caching"] = resolved.prefix_caching
    knobs["api_server_latency_ms"] = chosen.api_server_latency_ms  # moves every arrival
    return (*sorted(knobs.items()), ("seed", chosen.seed))


def _shared_state(
    kept: list[_SharedRun], key: tuple | None, capacity: tuple[int, int]
) -> EngineState | None:
    """A kept run that answers the scenario of ``key`` with (KV blocks, seats) ``capacity``."""
    if key is None:
        return None
    for run in kept:
        if run.key == key and run.bounds.covers(run.num_kv_blocks, run.max_num_seqs, *capacity):
            return run.state
    return None


def _keep(
    kept: list[_SharedRun], key: tuple | None, capacity: tuple[int, int], state: EngineState
) -> None:
    """Keep a finished run for reuse when some other capacity could share it."""
    if key is None:
        return
    bounds = capacity_bounds(state)
    if bounds.kv and bounds.seqs:
        return  # answers no other scenario
    kept.append(_SharedRun(key, *capacity, bounds, state))
    most = max(1, min(_MAX_KEPT_RUNS, _MAX_KEPT_REQUESTS // max(len(state.req_i), 1)))
    del kept[:-most]


def _trace_inputs(
    resolved: ResolvedScenario,
    table: pa.Table,
    input_tokens: np.ndarray,
    arrival_time_s: np.ndarray,
) -> dict[str, Any]:
    """``replay_resolved``'s keyword arguments that come from the trace's optional columns:
    prefix-cache keys (caching on), session indices, and turn links (closed loop)."""
    names = table.column_names
    prefix = None
    meta = TraceMetadata.from_arrow(table.schema.metadata)
    has_ids = bool("hash_ids" in names and meta is not None and meta.hash_block_size)
    # Without hash_ids no request can find another's blocks, and the engine without its
    # cache gives the same results (tested) faster: the cache runs only where it can hit,
    # or where the prefix-aware router reads it.
    if resolved.prefix_caching and (has_ids or resolved.scenario.router == "prefix-aware"):
        prefix = prefix_inputs(
            table.column("hash_ids") if has_ids else None,
            input_tokens,
            hash_block_tokens=meta.hash_block_size if has_ids else None,
            block_size=resolved.memory.block_size,
        )
    session_idx = None
    if "session_id" in names:
        session_idx = session_indices(table.column("session_id"), table.num_rows)
    has_sessions = session_idx is not None and bool((session_idx >= 0).any())
    why = sessions_needed(has_sessions, resolved.scenario.closed_loop, resolved.scenario.router)
    if why is not None:
        raise SimreplayError(why)
    next_turn = None
    if has_sessions:
        next_turn = session_turn_links(session_idx, turn_numbers(table), arrival_time_s)
        if prefix is not None and len(prefix.chained_ids):
            prefix = link_answers_to_next_turns(
                prefix,
                next_turn,
                input_tokens,
                table.column("output_tokens").to_numpy(),
                block_size=resolved.memory.block_size,
            )
    inputs: dict[str, Any] = {"prefix": prefix, "session_idx": session_idx}
    if resolved.scenario.closed_loop:
        inputs["next_turn"] = next_turn
        inputs["think_s"] = think_times_s(table)
    return inputs


def sessions_needed(has_sessions: bool, closed_loop: bool, router: str) -> str | None:
    """Why a trace without session ids cannot be replayed with these knobs (the one line
    run, sweep and plan refuse it with), or None."""
    if has_sessions:
        return None
    if router == "session-affinity":
        return (
            "--router session-affinity needs session ids in the trace (a session_id column); "
            "this trace has none"
        )
    if closed_loop:
        return (
            "--closed-loop replays sessions turn by turn: the trace has no session ids "
            "(a session_id column)"
        )
    return None


def trace_has_sessions(table: pa.Table) -> bool:
    """Whether some request of the trace has a session id."""
    if "session_id" not in table.column_names:
        return False
    return bool((session_indices(table.column("session_id"), table.num_rows) >= 0).any())


def _as_trace(table: pa.Table) -> pa.Table:
    """Validate an in-memory table; one built by hand (no trace metadata) is accepted too."""
    if TraceMetadata.from_arrow(table.schema.metadata) is None:
        columns = {name: table.column(name) for name in table.column_names}
        try:
            table = build_trace_table(columns, TraceMetadata("python", "in-memory table"))
        except TraceError as exc:
            raise TraceError(f"trace table: {exc}") from None
    table = validate_trace(table, "trace table")
    if table.num_rows == 0:  # as a trace file with no rows is refused (read_canonical)
        raise TraceError("trace table: no requests in the table (a trace with no rows)")
    return table
