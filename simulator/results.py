"""What a run produces: per-request records, the step log, and the summary; and their files.

``--out DIR`` writes ``requests.parquet``, ``steps.parquet`` and ``summary.json`` (each
atomically). Columns (seconds in files, NaN where a time does not exist):

requests.parquet, one row per request of the trace, in trace order. A trace is replayed
sorted by arrival: a raw file with rows out of order is sorted on import (stably, and its
note says so), so ``request_index`` is then not the file's row: join on ``request_id``; a
file without ids has ``request_index`` k for the k-th of its kept rows in arrival order (ties
in file order; traces/README.md).

| column | type | meaning |
|---|---|---|
| `request_index` | int64 | row of the request in the trace as replayed (by arrival: below) |
| `request_id` | string | the trace's id, when it has one |
| `replica` | int32 | replica that served it; -1 if rejected |
| `virtual_engine` | int32 | `--pp N > 1` only: its virtual engine, 0..N-1; -1 if rejected |
| `input_tokens`, `output_tokens` | int32 | from the trace |
| `arrival_time_s` | float64 | when the client sent it (the trace's arrival) |
| `engine_arrival_s` | float64 | when the engine received it: `arrival_time_s` + latency |
| `first_scheduled_s` | float64 | start of the first step that computed any of its tokens |
| `first_token_s` | float64 | end of the step that produced its first output token |
| `completion_s` | float64 | end of the step that produced its last token |
| `ttft_s`, `tpot_s`, `e2e_s`, `queue_s` | float64 | see ``metrics.py`` |
| `num_preemptions` | int32 | times it was preempted (and recomputed) |
| `cached_tokens` | int32 | prompt tokens found in the prefix cache when first admitted |
| `status` | string | `completed` or `rejected` |
| `reject_reason` | string | why it was rejected; null otherwise |
| `recorded_arrival_time_s` | float64 | the trace's arrival time (closed loop, concurrency limit) |

The latency is the scenario's ``api_server_latency_ms`` (``--api-server-latency-ms``): TTFT
and E2E count from `arrival_time_s`, as a client measures them; queueing from
`engine_arrival_s`.

With ``--closed-loop``, `arrival_time_s` is when the turn was sent (``closed_loop.py``);
with ``--max-concurrency``, when the client sent the request (at its recorded arrival, or
later when every slot was taken).

steps.parquet, one row per run of consecutive engine steps of one replica (a decode-only
step joins the previous run when its batch has the same decoding sequences and waiting
requests; every step with prefill tokens is its own row):

| column | type | meaning |
|---|---|---|
| `replica` | int32 | replica index |
| `virtual_engine` | int32 | with `--pp N > 1` only: the virtual engine whose steps these are |
| `start_s` | float64 | start of the run's first step |
| `duration_s` | float64 | total duration of the run |
| `num_steps` | int64 | engine steps in the run |
| `prefill_tokens` | int64 | prompt tokens computed in the run |
| `decode_seqs` | int32 | sequences decoding one token per step |
| `kv_blocks_used` | int64 | KV blocks in use during the run's last step (see below) |
| `num_waiting` | int32 | requests queued when each step was formed (its admissions included) |
| `cache_hit_tokens` | int64 | tokens of requests admitted in the run found in the cache |
| `cache_query_tokens` | int64 | tokens those requests asked for (prompt + output to redo) |

`kv_blocks_used` counts a step's blocks after its allocation and before the requests it
finishes free theirs, as vLLM reads its KV-cache usage after scheduling (the summary's
`kv_cache` fractions are of these). The two prefix-cache columns are 0 with prefix caching
off. Hit rate over time is
``cache_hit_tokens / cache_query_tokens`` over any window of rows. It counts a request when
it is admitted; vLLM's counters (v0.11) also count each step's lookup for a waiting request
that then found no free KV blocks, so where requests wait for KV they can read differently.
Readmissions after a preemption count too (with caching on, a preempted request finds its
own blocks again while they are not evicted, hashed prompt or not); the summary's
`readmission_cached_tokens` (with caching on and at least one preemption) is their share of
`cache_hit_tokens`.

With pipeline parallelism (``--pp N``, vLLM v0.6 virtual engines) each replica runs N
schedulers; the `virtual_engine` columns exist only then (without ``--pp`` the files are as
before). A step row is one virtual engine's micro-batch; its `kv_blocks_used` and
`num_waiting` are that virtual engine's (it holds ``kv_blocks_per_virtual_engine`` blocks).
In the summary, `kv_cache` fractions are then of one virtual engine's blocks, the unit
that runs out (a request lives in one virtual engine); `per_replica_peak_fraction` is the
largest over the replica's virtual engines and `per_virtual_engine_peak_fraction` lists
them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from simulator.engine.state import (
    FINISHED,
    L_DECODE_SEQS,
    L_END_S,
    L_HIT_TOKENS,
    L_KV_BLOCKS,
    L_NUM_STEPS,
    L_PREFILL_TOKENS,
    L_QUERY_TOKENS,
    L_REPLICA,
    L_START_S,
    L_WAITING,
    NUM_O_FLOAT,
    NUM_O_INT,
    NUM_R_FLOAT,
    O_BACKLOG,
    O_COMPLETED,
    O_FIRST_SENT_S,
    O_LAST_ARRIVAL_S,
    O_LAST_FINISH_S,
    O_OUTPUT_DONE,
    O_PREEMPTIONS,
    P_EVICTIONS,
    R_ARRIVAL_S,
    R_CACHED_TOKENS,
    R_FINISH_S,
    R_FIRST_SCHEDULED_S,
    R_FIRST_TOKEN_S,
    R_OUTPUT,
    R_PREEMPTIONS,
    R_PROMPT,
    R_REJECT,
    R_REPLICA,
    R_STATUS,
    REJECT_CAPPED_CONTEXT,
    REJECT_CONTEXT,
    REJECT_REASONS,
    EngineState,
)
from simulator.errors import SimreplayError
from simulator.io import output_folder, write_parquet_to, write_text_to, write_together
from simulator.metrics import describe_ms, itl_summary_ms, slo_report
from simulator.scenario import ResolvedScenario

RESULTS_FORMAT_VERSION = 1


def _table_metadata(kind: str) -> dict[bytes, bytes]:
    return {
        b"simreplay.kind": kind.encode(),
        b"simreplay.format_version": str(RESULTS_FORMAT_VERSION).encode(),
    }


class Result:
    """The outcome of one simulated run.

    Attributes
    ----------
    scenario : ResolvedScenario
    requests : pyarrow.Table
        One row per request (columns in the module docstring); built on first use, so
        callers that need only the summary (sweeps) never pay for it.
    steps : pyarrow.Table
        One row per run of engine steps; built on first use.
    summary : dict
        The object ``--json`` prints and ``summary.json`` holds.
    """

    def __init__(
        self,
        scenario: ResolvedScenario,
        summary: dict[str, Any],
        state: EngineState,
        request_ids: pa.Array | None = None,
    ) -> None:
        self.scenario = scenario
        self.summary = summary
        self._state = state
        self._request_ids = request_ids
        self._requests: pa.Table | None = None
        self._steps: pa.Table | None = None

    def __repr__(self) -> str:
        """One line a notebook shows: the deployment, the requests and the p99 latencies."""
        s = self.summary

        def p99(metric: str) -> str:
            value = (s.get(f"{metric}_ms") or {}).get("p99")
            return "n/a" if value is None else f"{value:,.1f} ms"

        scenario = s["scenario"]
        return (
            f"<Result {scenario['gpus']} {scenario['model']} tp={scenario['tp']}: "
            f"{s['num_completed']:,} of {s['num_requests']:,} requests completed, "
            f"TTFT p99 {p99('ttft')}, TPOT p99 {p99('tpot')}, E2E p99 {p99('e2e')}>"
        )

    @property
    def requests(self) -> pa.Table:
        if self._requests is None:
            self._requests = _request_table(
                self._state,
                self._request_ids,
                self.scenario.pp,
                _capped_context_limit(self.scenario),
            )
            self._release_state()
        return self._requests

    @property
    def steps(self) -> pa.Table:
        if self._steps is None:
            self._steps = _step_table(self._state, self.scenario.pp)
            self._release_state()
        return self._steps

    def _release_state(self) -> None:
        if self._requests is not None and self._steps is not None:
            self._state = None  # both tables exist: the engine's arrays can go

    def write(
        self, out_dir: Path | str, option: str | None = None, stale: Sequence[Path] = ()
    ) -> None:
        """Write ``requests.parquet``, ``steps.parquet`` and ``summary.json`` into ``out_dir``
        (created if missing; its parent must exist). ``option`` names it in errors as the
        CLI does (``--out``); the folder's path alone by default. ``stale`` files (an
        earlier run's report) are removed together with the three put in place, or kept if
        they are not."""
        out_dir = output_folder(str(out_dir), option)
        created = not out_dir.exists()
        try:
            out_dir.mkdir(exist_ok=True)
        except OSError as exc:
            name = out_dir if option is None else f"{option} {out_dir}"
            raise SimreplayError(f"{name}: cannot create it ({exc.strerror})") from None
        for file_name in RUN_FILES:
            # Checked before the first file is written: never one run's requests beside
            # another's summary.
            if (out_dir / file_name).is_dir():
                raise SimreplayError(
                    f"{out_dir / file_name}: is a directory; nothing was written to {out_dir}"
                )
        try:
            # All or none: a disk that fills (or an interrupt) part way leaves an earlier
            # run's files as they were, never one run's requests beside another's summary.
            write_together(
                [
                    (out_dir / "requests.parquet", partial(write_parquet_to, self.requests)),
                    (out_dir / "steps.parquet", partial(write_parquet_to, self.steps)),
                    (out_dir / "summary.json", partial(write_text_to, summary_json(self.summary))),
                ],
                stale,
            )
        except BaseException:
            if created:  # no empty folder this call made
                with contextlib.suppress(OSError):
                    out_dir.rmdir()
            raise


#: What ``Result.write`` (``run --out DIR``) writes into its folder.
RUN_FILES = ("requests.parquet", "steps.parquet", "summary.json")


def summary_json(summary: dict[str, Any]) -> str:
    """The summary as JSON text, the same bytes for the same summary."""
    return json.dumps(summary, indent=2, allow_nan=False) + "\n"


def build_result(
    resolved: ResolvedScenario,
    state: EngineState,
    request_ids: pa.Array | None,
    slo: dict[str, tuple[str, int, float]] | None,
) -> Result:
    """The summary of the engine's final state; its tables are built when first asked for.

    The engine rejects every request beyond max_model_len alike; those within the context
    asked for that a max_model_len capped by the KV cache rejected are counted apart (a QA
    pass: a sweep row said "longer than the model's context" of them). The state is not
    changed: ``simulate_many`` hands one run to scenarios that ask for other contexts."""
    outcomes = _Outcomes.of(state)
    limit = _capped_context_limit(resolved)
    if limit is not None:
        capped = _capped_rejections(state.req_i[:, R_REJECT], _request_tokens(state), limit)
        num_capped = int(capped.sum())
        counts = outcomes.reject_counts.copy()
        counts[REJECT_CONTEXT] -= num_capped
        counts[REJECT_CAPPED_CONTEXT] += num_capped
        outcomes = dataclasses.replace(outcomes, reject_counts=counts)
    summary = _summary(resolved, state, outcomes, slo)
    return Result(resolved, summary, state, request_ids)


#: Request rows read at a time (``_fields``): 16K rows of ``req_i`` and
#: ``req_f`` (3.4 MB) stay in the CPU's cache while each of their fields is read; smaller
#: blocks measured no faster and spend more time in Python per row.
_READ_ROWS = 1 << 14


def _fields(rows: np.ndarray, fields: Sequence[int]) -> np.ndarray:
    """``rows[:, fields]`` transposed into contiguous arrays, one row per field.

    The engine's request tables are row-major: a field read alone brings every request's
    cache line in from memory once per field, while a block of rows at a time brings each
    line in once for all its fields (four fields of ``req_i`` over 1M requests: 30 -> 19 ms).
    """
    out = np.empty((len(fields), rows.shape[0]), rows.dtype)
    for start in range(0, rows.shape[0], _READ_ROWS):
        block = rows[start : start + _READ_ROWS]
        for row, field in zip(out, fields, strict=True):
            row[start : start + _READ_ROWS] = block[:, field]
    return out


@dataclass(frozen=True)
class _Outcomes:
    """What the summary reads of every request (``engine/outcomes.py``, one compiled pass)."""

    completed: np.ndarray  # bool
    ttft_s: np.ndarray  # TTFT and E2E from the client's send, queueing from the receipt
    tpot_s: np.ndarray  # NaN for one output token or fewer
    e2e_s: np.ndarray
    queue_s: np.ndarray
    token_span_s: np.ndarray  # first to last token: the sum of the request's ITLs
    num_completed: int
    output_done: int  # output tokens of the completed requests
    num_preemptions: int
    backlog: int  # completed requests that arrived before the latest arrival, started after
    first_arrival_s: float  # the earliest send; 0 when there are no requests
    last_arrival_s: float  # the latest arrival at the engine, 0 if earlier
    last_finish_s: float  # the latest completion; NaN when none
    reject_counts: np.ndarray  # requests rejected for each reason code (0: not rejected)

    @classmethod
    def of(cls, state: EngineState) -> _Outcomes:
        """Read both request tables once, each request's rows while they are in cache.

        TTFT and E2E count from the client's send (``state.sent_s``, where an API-server
        latency separates it from the engine's receipt), queueing from the receipt."""
        from simulator.engine import compiled

        n = len(state.req_i)
        completed = np.empty(n, np.bool_)
        ttft, tpot, e2e, queue, span = (np.empty(n) for _ in range(5))
        reject_counts = np.zeros(max(REJECT_REASONS) + 1, np.int64)
        totals_i = np.zeros(NUM_O_INT, np.int64)
        totals_f = np.zeros(NUM_O_FLOAT, np.float64)
        # Empty: every request was sent when it arrived at the engine.
        sent_s = np.zeros(0) if state.sent_s is None else state.sent_s
        compiled.read_outcomes()(
            state.req_i,
            state.req_f,
            np.ascontiguousarray(sent_s, dtype=np.float64),
            completed,
            ttft,
            tpot,
            e2e,
            queue,
            span,
            reject_counts,
            totals_i,
            totals_f,
        )
        return cls(
            completed,
            ttft,
            tpot,
            e2e,
            queue,
            span,
            num_completed=int(totals_i[O_COMPLETED]),
            output_done=int(totals_i[O_OUTPUT_DONE]),
            num_preemptions=int(totals_i[O_PREEMPTIONS]),
            backlog=int(totals_i[O_BACKLOG]),
            first_arrival_s=float(totals_f[O_FIRST_SENT_S]) if n else 0.0,
            last_arrival_s=float(totals_f[O_LAST_ARRIVAL_S]),
            last_finish_s=float(totals_f[O_LAST_FINISH_S]),
            reject_counts=reject_counts,
        )

    def of_completed(self, values: np.ndarray) -> np.ndarray:
        """``values[completed]``; ``values`` itself (no copy) when every request completed."""
        return values if self.num_completed == len(values) else values[self.completed]


def _latencies_s(
    times_s: np.ndarray, output_tokens: np.ndarray, sent_s: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-request TTFT, TPOT, E2E and queueing delay (s, NaN where undefined) from the
    request times (``req_f``'s fields as rows, ``_fields``) and output tokens; TTFT and E2E
    from ``sent_s`` (the client's sends) when given, queueing from the engine's receipt."""
    arrival = times_s[R_ARRIVAL_S]
    sent = arrival if sent_s is None else sent_s
    ttft = times_s[R_FIRST_TOKEN_S] - sent
    e2e = times_s[R_FINISH_S] - sent
    queue = times_s[R_FIRST_SCHEDULED_S] - arrival
    return {"ttft": ttft, "tpot": _tpot_s(ttft, e2e, output_tokens), "e2e": e2e, "queue": queue}


def _tpot_s(ttft_s: np.ndarray, e2e_s: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    """(e2e - ttft) / (output - 1) where output > 1, else NaN; divided in place (each fresh
    1M-value array costs a few ms of page faults)."""
    tpot = e2e_s - ttft_s
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(tpot, output_tokens - 1, out=tpot)
    tpot[output_tokens <= 1] = np.nan
    return tpot


def _request_table(
    state: EngineState,
    request_ids: pa.Array | None,
    pp: int = 1,
    capped_limit: int | None = None,
) -> pa.Table:
    """The per-request table; ``capped_limit`` (``_capped_context_limit``) labels apart the
    requests a capped max_model_len rejected within it, as ``build_result`` counts them."""
    times_s = _fields(state.req_f, range(NUM_R_FLOAT))
    prompt, output, status, replica, preemptions, reject, cached = _fields(
        state.req_i,
        (R_PROMPT, R_OUTPUT, R_STATUS, R_REPLICA, R_PREEMPTIONS, R_REJECT, R_CACHED_TOKENS),
    )
    if capped_limit is not None:  # ``reject`` is a copy (``_fields``)
        capped = _capped_rejections(reject, prompt.astype(np.int64) + output, capped_limit)
        reject[capped] = REJECT_CAPPED_CONTEXT
    latencies_s = _latencies_s(times_s, output, state.sent_s)
    completed = status == FINISHED
    arrival = times_s[R_ARRIVAL_S] if state.sent_s is None else state.sent_s
    # Texts looked up by code in Arrow (a take from a tiny array), not per row in Python.
    reason_text = pa.array(
        [REJECT_REASONS.get(code) or None for code in range(max(REJECT_REASONS) + 1)],
        pa.string(),
    ).take(pa.array(reject))
    status_text = pa.array(["rejected", "completed"], pa.string()).take(
        pa.array(completed.view(np.int8))
    )
    columns: dict[str, Any] = {"request_index": np.arange(len(arrival), dtype=np.int64)}
    if request_ids is not None:
        columns["request_id"] = request_ids
    columns.update(
        replica=replica.astype(np.int32),
        input_tokens=prompt.astype(np.int32),
        output_tokens=output.astype(np.int32),
        arrival_time_s=arrival,
        engine_arrival_s=times_s[R_ARRIVAL_S],
        first_scheduled_s=times_s[R_FIRST_SCHEDULED_S],
        first_token_s=times_s[R_FIRST_TOKEN_S],
        completion_s=times_s[R_FINISH_S],
        ttft_s=latencies_s["ttft"],
        tpot_s=latencies_s["tpot"],
        e2e_s=latencies_s["e2e"],
        queue_s=latencies_s["queue"],
        num_preemptions=preemptions.astype(np.int32),
        cached_tokens=np.maximum(cached, 0).astype(np.int32),
        status=status_text,
        reject_reason=reason_text,
    )
    if state.recorded_arrival_s is not None:
        columns["recorded_arrival_time_s"] = state.recorded_arrival_s
    table = pa.table(columns, metadata=_table_metadata("requests"))
    if pp > 1:
        table = _pipeline_columns(table, replica, pp)
    return table


def _pipeline_columns(table: pa.Table, engine_replica: np.ndarray, pp: int) -> pa.Table:
    """``table`` with its engine replicas (virtual engines) split into `replica` and a
    `virtual_engine` column after it (-1 in both where the engine replica is -1)."""
    routed = engine_replica >= 0
    replica = np.where(routed, engine_replica // pp, -1).astype(np.int32)
    virtual_engine = np.where(routed, engine_replica % pp, -1).astype(np.int32)
    at = table.schema.get_field_index("replica")
    table = table.set_column(at, "replica", pa.array(replica))
    return table.add_column(at + 1, "virtual_engine", pa.array(virtual_engine))


def _step_table(state: EngineState, pp: int = 1) -> pa.Table:
    n = state.num_log_rows
    log_i, log_f = state.log_i[:, :n], state.log_f[:, :n]
    position = _replica_major_positions(log_i[L_REPLICA], state.rep_i.shape[1])

    def in_order(values: np.ndarray) -> np.ndarray:
        ordered = np.empty_like(values)
        ordered[position] = values
        return ordered

    replica = in_order(log_i[L_REPLICA])
    table = pa.table(
        {
            "replica": replica.astype(np.int32),
            "start_s": in_order(log_f[L_START_S]),
            "duration_s": in_order(log_f[L_END_S] - log_f[L_START_S]),
            "num_steps": in_order(log_i[L_NUM_STEPS]),
            "prefill_tokens": in_order(log_i[L_PREFILL_TOKENS]),
            "decode_seqs": in_order(log_i[L_DECODE_SEQS]).astype(np.int32),
            "kv_blocks_used": in_order(log_i[L_KV_BLOCKS]),
            "num_waiting": in_order(log_i[L_WAITING]).astype(np.int32),
            "cache_hit_tokens": in_order(log_i[L_HIT_TOKENS]),
            "cache_query_tokens": in_order(log_i[L_QUERY_TOKENS]),
        },
        metadata=_table_metadata("steps"),
    )
    if pp > 1:
        table = _pipeline_columns(table, replica, pp)
    return table


def _replica_major_positions(replica: np.ndarray, num_engines: int) -> np.ndarray:
    """Where each step-log row goes when the rows are ordered by replica, then time.

    Rows were logged as steps completed, each replica's in time order but the replicas'
    interleaved: a stable sort by replica orders them by replica then time (numpy's stable
    sort is a linear-time radix sort on 16-bit keys). The sort's order inverted: putting a
    column's values at their positions writes one sequential stream per replica, 4-7x
    faster than taking them in sorted order, which reads the column again for each replica.
    """
    key_type = np.int16 if num_engines <= np.iinfo(np.int16).max else np.int32
    order = np.argsort(replica.astype(key_type), kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return position


def _beyond_context(resolved: ResolvedScenario, state: EngineState) -> np.ndarray:
    """Requests longer (input + output) than the context asked for: ``--max-model-len``,
    else the model's. Every deployment rejects them, unlike those beyond a max_model_len a
    small KV cache capped."""
    return _request_tokens(state) > asked_context(resolved)


def _request_tokens(state: EngineState) -> np.ndarray:
    """Input + output tokens of each request (int64)."""
    return state.req_i[:, R_PROMPT].astype(np.int64) + state.req_i[:, R_OUTPUT]


def asked_context(resolved: ResolvedScenario) -> int:
    """The context asked for: ``--max-model-len``, else the model's."""
    return resolved.scenario.max_model_len or resolved.model.max_context_tokens


def _capped_context_limit(resolved: ResolvedScenario) -> int | None:
    """The context asked for where the KV cache capped max_model_len below it, else None."""
    asked = asked_context(resolved)
    return asked if resolved.max_model_len < asked else None


def _capped_rejections(reject: np.ndarray, tokens: np.ndarray, limit: int) -> np.ndarray:
    """Which requests were rejected for max_model_len within the context ``limit``."""
    return (reject == REJECT_CONTEXT) & (tokens <= limit)


def _summary(
    resolved: ResolvedScenario,
    state: EngineState,
    outcomes: _Outcomes,
    slo: dict[str, tuple[str, int, float]] | None,
) -> dict[str, Any]:
    completed = outcomes.completed
    latencies_s = {
        "ttft": outcomes.ttft_s,
        "tpot": outcomes.tpot_s,
        "e2e": outcomes.e2e_s,
        "queue": outcomes.queue_s,
    }
    num_requests = len(completed)
    last_arrival_s = outcomes.last_arrival_s
    last_s = outcomes.last_finish_s if outcomes.num_completed else last_arrival_s
    # From the first arrival, not time 0: a trace that is a slice of a longer log (first
    # arrival at 10,000 s) has the throughput of the same requests shifted to start at 0.
    makespan_s = max(last_s - outcomes.first_arrival_s, 0.0)
    itl_sum_s = _nansum(outcomes.of_completed(outcomes.token_span_s))
    reason_counts = outcomes.reject_counts
    # Before the latencies are described: that reorders them (reorder=True, no copies).
    slo_summary = (
        slo_report(
            latencies_s,
            completed,
            slo,
            makespan_s,
            _beyond_context(resolved, state) if outcomes.num_completed < num_requests else None,
        )
        if slo
        else None
    )
    tpot_ms = describe_ms(latencies_s["tpot"], reorder=True)
    summary: dict[str, Any] = {
        "num_requests": num_requests,
        "num_completed": outcomes.num_completed,
        "num_rejected": int(reason_counts[1:].sum()),
        "num_preemptions": outcomes.num_preemptions,
        "makespan_s": makespan_s,
        "throughput_rps": outcomes.num_completed / makespan_s if makespan_s > 0 else None,
        "output_tokens_per_s": outcomes.output_done / makespan_s if makespan_s > 0 else None,
        "ttft_ms": describe_ms(latencies_s["ttft"], reorder=True),
        "tpot_ms": tpot_ms,
        "itl_ms": itl_summary_ms(state.itl_histogram, itl_sum_s, tpot_ms["max"]),
        "e2e_ms": describe_ms(latencies_s["e2e"], reorder=True),
        "queue_ms": describe_ms(latencies_s["queue"], reorder=True),
        "kv_cache": _kv_usage(
            state,
            resolved.engine_kv_blocks,
            resolved.num_replicas,
            resolved.pp,
            resolved.memory.block_size,
        ),
        # Requests that arrived earlier and had not started when the last one arrived (its
        # own instant's left out): a backlog that grows with the trace means the deployment
        # does not keep up and tail latency has no ceiling.
        "backlog_at_last_arrival": outcomes.backlog,
        "rejected_by_reason": {
            REJECT_REASONS[code]: int(count)
            for code, count in enumerate(reason_counts)
            if code != 0 and count > 0
        },
    }
    if resolved.prefix_caching and len(state.prefix_ids):
        # Only where requests carried prefix hashes: without them only a preempted
        # request's readmission can hit (and without a preemption the engine ran without
        # the cache, ``api.replay_resolved``).
        summary["prefix_cache"] = _prefix_cache_usage(state, completed)
    if resolved.prefix_caching and outcomes.num_preemptions:
        # What preempted requests found again of their own blocks (or others') when
        # readmitted: every hit but those of first admissions.
        first_tokens = int(np.maximum(state.req_i[:, R_CACHED_TOKENS], 0).sum())
        hits = int(state.log_i[L_HIT_TOKENS, : state.num_log_rows].sum())
        summary["readmission_cached_tokens"] = hits - first_tokens
    if state.recorded_arrival_s is not None:
        sent_s = state.req_f[:, R_ARRIVAL_S] if state.sent_s is None else state.sent_s
        delay_s = sent_s - state.recorded_arrival_s
        delays = {
            "mean_delay_s": float(delay_s.mean()) if num_requests else 0.0,
            "max_delay_s": float(delay_s.max(initial=0.0)),
        }
        if resolved.scenario.max_concurrency is not None:
            # Requests the client held back until one of its slots was free.
            summary["max_concurrency"] = {
                "slots": resolved.scenario.max_concurrency,
                "requests_delayed": int((delay_s > 0).sum()),
                **delays,
            }
        else:
            summary["closed_loop"] = {"turns_delayed": int((delay_s > 0).sum()), **delays}
    if summary["throughput_rps"] is not None:
        summary["throughput_rps"] = float(summary["throughput_rps"])
    if slo_summary is not None:
        summary["slo"] = slo_summary
    summary["scenario"] = resolved.to_dict()
    return summary


def _nansum(values: np.ndarray) -> float:
    """``np.nansum(values)``, the same float, with NaNs zeroed in ``values`` itself (nansum
    copies the whole array first)."""
    values[np.isnan(values)] = 0.0
    return float(values.sum())


def _kv_usage(
    state: EngineState, num_kv_blocks: int, num_replicas: int, pp: int = 1, block_size: int = 16
) -> dict[str, Any]:
    """Peak and time-weighted mean fraction of KV blocks in use, over the replicas' steps.

    ``num_kv_blocks`` is each engine replica's (a virtual engine's when ``pp > 1``). A log
    row of a decode run holds the blocks in use in its last step, its peak; over the run its
    ``decode_seqs`` sequences each took a block every ``block_size`` steps, so its mean is
    taken as the last less half that growth (a 99,999-step decode of one request read 23.8 %
    for a mean of about 12 %).
    """
    n = state.num_log_rows
    if n == 0:
        # No step ran (every request rejected): still one entry per replica, as below.
        empty: dict[str, Any] = {
            "peak_fraction": 0.0,
            "mean_fraction": 0.0,
            "per_replica_peak_fraction": [0.0] * num_replicas,
        }
        if pp > 1:
            empty["per_virtual_engine_peak_fraction"] = [[0.0] * pp for _ in range(num_replicas)]
        return empty
    from simulator.engine import compiled

    num_engines = num_replicas * pp
    # Per engine replica, summed in its own step order (then across replicas): the same floats
    # whatever order the replicas' rows were logged in (runs may be brought up in any order).
    per_engine = np.zeros(num_engines)
    busy_s = np.zeros(num_engines)
    weighted_s = np.zeros(num_engines)
    peak = compiled.read_kv_usage()(
        state.log_i,
        state.log_f,
        n,
        num_kv_blocks,
        2.0 * max(block_size, 1) * num_kv_blocks,
        per_engine,
        busy_s,
        weighted_s,
    )
    per_replica = per_engine.reshape(num_replicas, pp).max(axis=1)
    busy = busy_s.sum()
    mean = float(weighted_s.sum() / busy) if busy > 0 else 0.0
    usage: dict[str, Any] = {
        "peak_fraction": peak,
        "mean_fraction": mean,
        "per_replica_peak_fraction": [float(x) for x in per_replica],
    }
    if pp > 1:
        usage["per_virtual_engine_peak_fraction"] = [
            [float(x) for x in row] for row in per_engine.reshape(num_replicas, pp)
        ]
    return usage


def _prefix_cache_usage(state: EngineState, completed: np.ndarray) -> dict[str, Any]:
    """Hit rates of the prefix cache: over every admission, and over first admissions."""
    n = state.num_log_rows
    hit = int(state.log_i[L_HIT_TOKENS, :n].sum())
    query = int(state.log_i[L_QUERY_TOKENS, :n].sum())
    cached = np.maximum(state.req_i[:, R_CACHED_TOKENS][completed], 0)
    prompts = state.req_i[:, R_PROMPT][completed]
    return {
        # Over every admission, re-admissions after a preemption included, as vLLM's
        # prefix-cache hit rate. vLLM (v0.11, KVCacheManager.get_computed_blocks) also counts
        # each step's lookup for a waiting request that then found no free blocks: under KV
        # pressure its counters weigh such retries, which this rate leaves out.
        "hit_rate": hit / query if query else 0.0,
        "hit_tokens": hit,
        "query_tokens": query,
        # Of the completed requests' prompts, the share found in the cache when first
        # admitted (the requests table's cached_tokens over input_tokens).
        "prompt_tokens_cached_fraction": float(cached.sum() / prompts.sum())
        if prompts.sum()
        else 0.0,
        "evicted_blocks": int(state.rep_i[P_EVICTIONS].sum()),
    }


#: A backlog at the last arrival counts as an overload above this share of the requests (and
#: above ``OVERLOAD_MIN_BACKLOG`` requests): a few waiting at that moment is chance.
OVERLOAD_MIN_SHARE = 0.01
OVERLOAD_MIN_BACKLOG = 10
#: Traces sent within less than this (s) are a burst: their backlog is by design.
BURST_SPAN_S = 1.0


def backlog_kind(backlog: int, num_requests: int, arrival_span_s: float) -> str | None:
    """``"overloaded"`` when the requests not started at the last arrival
    (``backlog_at_last_arrival``) say the queue grows through the trace, ``"burst"`` for
    such a backlog from a trace sent within ``BURST_SPAN_S``, else None."""
    if backlog <= max(OVERLOAD_MIN_BACKLOG, OVERLOAD_MIN_SHARE * num_requests):
        return None
    return "burst" if arrival_span_s < BURST_SPAN_S else "overloaded"
