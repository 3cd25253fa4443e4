"""``simreplay run``: replay a trace on a deployment and report latency, throughput and KV use."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer

from simulator import _numba_cache
from simulator.cli.common import (
    count,
    domain_errors,
    err,
    note,
    print_json,
    print_rows,
    print_table,
)
from simulator.cli.import_options import reads_trace
from simulator.engine import compiled
from simulator.engine.state import (
    DEFAULT_PREFIX_LOAD_CAP,
    DEFAULT_SARATHI_CHUNK,
    REJECT_CAPPED_CONTEXT,
    REJECT_CONTEXT,
    REJECT_REASONS,
    ROUTERS,
    SCHEDULERS,
)
from simulator.errors import SimreplayError
from simulator.io import output_folder
from simulator.metrics import parse_slo
from simulator.models import DEFAULT_MODEL
from simulator.results import asked_context, backlog_kind
from simulator.scenario import DEFAULT_API_SERVER_LATENCY_MS, check_knobs_read
from simulator.scenario_text import (
    api_server_text,
    delay_s_text,
    graphs_text,
    host_text,
    precision_text,
    token_budget_text,
)
from simulator.trace.importer import import_trace
from simulator.trace.options import ImportOptions

PANEL = "Deployment"

#: p99 queueing delay from which a run that keeps up overall says it falls behind at times.
_QUEUEING_NOTE_MS = 1000.0


def _opt(*names: str, help: str) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=PANEL)


@domain_errors
@reads_trace
def run(
    trace: Annotated[
        Path, typer.Argument(help="Trace file in any supported format.", show_default=False)
    ],
    gpus: Annotated[str, _opt("--gpus", help="GPUs as NxNAME, e.g. 4xA100, 8xH100.")] = "1xH100",
    model: Annotated[
        str, _opt("--model", help="Catalog model name or a Hugging Face config.json path.")
    ] = DEFAULT_MODEL,
    tp: Annotated[
        int | None, _opt("--tp", help="Tensor-parallel degree; chosen when omitted.")
    ] = None,
    pp: Annotated[
        int,
        _opt(
            "--pp",
            help="Pipeline-parallel stages per replica (vLLM v0.6 virtual engines); "
            "replicas = GPUs / (TP x PP).",
        ),
    ] = 1,
    scheduler: Annotated[
        str, _opt("--scheduler", help=f"Engine scheduler: {', '.join(SCHEDULERS)}.")
    ] = "vllm",
    router: Annotated[str, _opt("--router", help=f"Router: {', '.join(ROUTERS)}.")] = (
        "least-outstanding"
    ),
    max_num_seqs: Annotated[
        int | None,
        _opt(
            "--max-num-seqs",
            help="Most running requests per replica (default: vLLM v0.11's for the GPU, at "
            "most the token budget per step, as vLLM lowers it; 256 with vllm-v0).",
        ),
    ] = None,
    max_num_batched_tokens: Annotated[
        int | None,
        _opt(
            "--max-num-batched-tokens",
            help="Token budget per step (default: vLLM v0.11's for the GPU; "
            "max(max_model_len, 2048) with vllm-v0).",
        ),
    ] = None,
    chunk_size: Annotated[
        int | None,
        _opt(
            "--chunk-size",
            help="Token budget per step of the sarathi scheduler "
            f"(default {DEFAULT_SARATHI_CHUNK}).",
        ),
    ] = None,
    block_size: Annotated[int, _opt("--block-size", help="Tokens per KV block.")] = 16,
    gpu_memory_utilization: Annotated[
        float, _opt("--gpu-memory-utilization", help="Fraction of GPU memory vLLM may use.")
    ] = 0.9,
    max_model_len: Annotated[
        int | None,
        _opt(
            "--max-model-len",
            help="Longest request served, input + output tokens (default: the model's "
            "context, capped to what the KV cache holds).",
        ),
    ] = None,
    enable_prefix_caching: Annotated[
        bool | None,
        _opt(
            "--enable-prefix-caching/--no-enable-prefix-caching",
            help="vLLM's automatic prefix caching over the trace's hash_ids (V1 cache "
            "manager: shared blocks, LRU eviction of unused ones; a preempted request finds "
            "its own blocks again). Default: the scheduler's engine default, on for vllm (as "
            "vLLM V1), off for vllm-v0 and sarathi.",
        ),
    ] = None,
    prefix_load_cap: Annotated[
        int,
        _opt(
            "--prefix-load-cap",
            help="Router prefix-aware: replicas within this many outstanding requests of the "
            f"least loaded compete on cached prefix length (default {DEFAULT_PREFIX_LOAD_CAP}).",
        ),
    ] = None,
    closed_loop: Annotated[
        bool,
        _opt(
            "--closed-loop",
            help="Send a session's turn only after the previous turn's answer plus its "
            "think_time_s (needs session ids in the trace).",
        ),
    ] = False,
    max_concurrency: Annotated[
        int,
        _opt(
            "--max-concurrency",
            help="Send the requests as `vllm bench serve --max-concurrency N` does: at most N "
            "in flight; a request arriving while N are waits for the first to finish.",
        ),
    ] = None,
    api_server_latency_ms: Annotated[
        float,
        _opt(
            "--api-server-latency-ms",
            help="Milliseconds from a client's send to the engine's receipt (HTTP, "
            "tokenization, hand-off to the engine process): TTFT and E2E include it, as a "
            f"client measures them (default {DEFAULT_API_SERVER_LATENCY_MS:g}; 0: the "
            "engine's own latencies).",
        ),
    ] = DEFAULT_API_SERVER_LATENCY_MS,
    enforce_eager: Annotated[
        bool,
        _opt(
            "--enforce-eager",
            help="As vLLM's --enforce-eager: no CUDA graphs, so no step is padded up to a "
            "captured batch size.",
        ),
    ] = False,
    async_scheduling: Annotated[
        bool | None,
        _opt(
            "--async-scheduling/--no-async-scheduling",
            help="As vLLM's async scheduling: the engine's host work overlaps the GPU's, so a "
            "step takes the larger of the two instead of their sum, and a request arriving "
            "mid-step joins the step after next. Default: on for the vllm and sarathi "
            "schedulers without --pp, as vLLM releases after v0.11 (off in v0.11: "
            "--no-async-scheduling).",
        ),
    ] = None,
    scheduler_reserve_full_isl: Annotated[
        bool | None,
        _opt(
            "--scheduler-reserve-full-isl/--no-scheduler-reserve-full-isl",
            help="As vLLM's option of that name: the vllm scheduler admits a waiting request "
            "only when its whole prompt fits in the free KV blocks, not only its first chunk. "
            "Default: on for --scheduler vllm without --pp, as vLLM since PR #37307 (2026; off: "
            "as v0.11 and --pp's v0.6 virtual engines).",
        ),
    ] = None,
    quantization: Annotated[
        str | None,
        _opt(
            "--quantization",
            help="As vLLM's --quantization: fp8 serves a 16-bit checkpoint with FP8 weights "
            "(FP8 GEMMs where the GPU has FP8 tensor cores, weight-only on Ampere); default: "
            "the checkpoint's own precision.",
        ),
    ] = None,
    kv_cache_dtype: Annotated[
        str,
        _opt(
            "--kv-cache-dtype",
            help="As vLLM's --kv-cache-dtype: auto (the model's 16-bit dtype), bfloat16, or "
            "fp8 / fp8_e4m3 (1 byte per element: twice the KV blocks).",
        ),
    ] = "auto",
    calibration: Annotated[
        Path | None,
        _opt(
            "--calibration",
            help="Calibration profile JSON (from `simreplay calibrate fit` or `validate --fit`);"
            " default: the shipped profile of the GPU or its nearest measured architecture.",
        ),
    ] = None,
    slo: Annotated[
        str | None,
        typer.Option(
            "--slo",
            help="Latency bounds in ms, METRIC_pNN_ms=BOUND with METRIC ttft, tpot, e2e or "
            "queue and NN a percentile from 1 to 100 (decimals allowed), e.g. "
            "ttft_p99_ms=2000,tpot_p99.9_ms=80,e2e_p99_ms=30000.",
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out", help="Write requests.parquet, steps.parquet and summary.json to this folder."
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
    with_report: Annotated[
        bool,
        typer.Option(
            "--report", help="Also write report.html and plots/*.png into --out (see `report`)."
        ),
    ] = False,
    *,
    import_options: ImportOptions,
) -> None:
    """Replay a trace through a model of vLLM on the given GPUs and report what it would see."""
    # imports numba: only the commands that need it; messages name the options, not fields
    from simulator.api import _simulate as simulate
    from simulator.scenario import Scenario, check_knobs

    bounds = parse_slo(slo) if slo is not None else None
    check_knobs_read(scheduler, router, chunk_size is not None, prefix_load_cap is not None)
    if with_report and out is None:
        raise SimreplayError("--report needs --out DIR: the page is written beside the outputs")
    if calibration is not None:
        from simulator.calibration.profile import load_profile

        load_profile(calibration)  # a bad profile fails before the trace is read
    out_dir = None if out is None else output_folder(out, "--out")
    if out_dir is not None:
        _check_out_folder(out_dir, trace, with_report)
    scenario = Scenario(
        gpus=gpus,
        model=model,
        tp=tp,
        pp=pp,
        scheduler=scheduler,
        router=router,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        chunk_size=DEFAULT_SARATHI_CHUNK if chunk_size is None else chunk_size,
        block_size=block_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        seed=import_options.seed,
        calibration=None if calibration is None else str(calibration),
        enable_prefix_caching=enable_prefix_caching,
        prefix_load_cap=DEFAULT_PREFIX_LOAD_CAP if prefix_load_cap is None else prefix_load_cap,
        closed_loop=closed_loop,
        max_concurrency=max_concurrency,
        enforce_eager=enforce_eager,
        async_scheduling=async_scheduling,
        scheduler_reserve_full_isl=scheduler_reserve_full_isl,
        api_server_latency_ms=api_server_latency_ms,
        quantization=None if quantization in (None, "none") else quantization,
        kv_cache_dtype=kv_cache_dtype,
    )
    check_knobs(scenario)  # before a long trace is read
    table, report = import_trace(trace, import_options)
    for message in report.notes:
        note(message)
    if closed_loop:
        for message in _incomplete_sessions_notes(table):
            note(message)
    if enable_prefix_caching and "hash_ids" not in table.column_names:
        note(
            "the trace has no prefix hashes (hash_ids): no request can find another's blocks "
            "in the cache, only a preempted request its own on readmission"
        )
    if router == "least-kv" and (same := _same_instant_note(table)) is not None:
        note(same)
    if router == "prefix-aware" and "hash_ids" not in table.column_names:
        note(
            "--router prefix-aware: the trace has no prefix hashes (hash_ids), so no replica "
            "holds a request's prefix before it arrives: it routes as least-outstanding"
        )
    # A fused replay runs the shipped ahead-of-time engine when it matches: nothing compiles.
    ahead_of_time = not closed_loop and max_concurrency is None and compiled.available()
    if not ahead_of_time and _numba_cache.is_cold():
        note(
            "first run with this version: compiling the simulation kernels (a minute or two, "
            "once; later runs load them from the cache)"
        )
    started = time.perf_counter()
    result = simulate(table, scenario, slo=bounds)
    elapsed_s = time.perf_counter() - started
    if enable_prefix_caching is None and "prefix_cache" in result.summary:
        note(
            "prefix caching is on over the trace's hash_ids, as vLLM's V1 engine has it by "
            "default (--no-enable-prefix-caching to model a deployment without it)"
        )
    for message in result.scenario.notes:
        note(message)
    if report.notes:
        # What the import changed or drew (rows skipped or sorted, synthetic arrivals) goes
        # with the run's saved outputs too (a QA pass: summary.json had no word of a row
        # --skip-invalid dropped).
        result.summary["trace_notes"] = list(report.notes)
    err.print(
        f"simulated {count(table.num_rows, 'request')} in "
        f"{elapsed_s:.2f} s "
        f"({table.num_rows / max(elapsed_s, 1e-9):,.0f} req/s"
        + (")" if ahead_of_time else ", including loading or compiling the numba kernels)"),
    )
    if out_dir is not None:
        from simulator.results import RUN_FILES

        earlier = [n for n in RUN_FILES if (out_dir / n).is_file()]
        # An earlier run's page beside these outputs would contradict them, and so would a
        # stopped redraw's: it goes in the same step as the new files are put in place
        # (kept if they are not), before anything is drawn.
        report_files = _report_files(out_dir)
        had_report = any(path.parent == out_dir for path in report_files)  # the page
        result.write(out_dir, option="--out", stale=report_files)
        if earlier:
            note(f"{out_dir} held an earlier run's {', '.join(earlier)}: replaced by this run's")
        err.print(f"wrote {out_dir}/requests.parquet, steps.parquet, summary.json")
        if with_report or had_report:
            from simulator.cli.report import announce
            from simulator.report import write_run_report
            from simulator.report.run_page import PLOTS_DIR, REPORT_FILE

            if not with_report:
                note(
                    f"{out_dir / REPORT_FILE} showed an earlier run's outputs: redrawing it "
                    "for these"
                )
            pngs = with_report or (out_dir / PLOTS_DIR).is_dir()
            announce(write_run_report(out_dir, pngs=pngs))
    if json_output:
        print_json(result.summary)
    else:
        _print_human(result, trace.name)


def _incomplete_sessions_notes(table: pa.Table) -> list[str]:
    """A closed loop's notes on sessions it replays in part (a sampled or windowed trace's:
    turns missing from their start or middle), or in an order the trace did not record
    (turn numbers repeated, or running against the arrival times)."""
    if "session_id" not in table.column_names or "turn" not in table.column_names:
        return []
    from simulator.closed_loop import (
        disordered_sessions,
        first_turns_with_think_time,
        incomplete_sessions,
        think_times_s,
        turn_numbers,
    )
    from simulator.engine.prefix_keys import session_indices

    session_idx = session_indices(table.column("session_id"), table.num_rows)
    turn = turn_numbers(table)
    sessions, without_first, gapped = incomplete_sessions(session_idx, turn)
    repeated, backwards = disordered_sessions(session_idx, turn)
    notes = []
    if without_first or gapped:
        notes.append(
            f"{without_first:,} of the trace's {sessions:,} sessions lack turn 1 and "
            f"{gapped:,} more miss or repeat turns between their first and last (a sampled "
            "or windowed trace?): the closed loop replays the turns each has, in turn "
            "order, its first sent at its recorded arrival"
        )
    # A QA pass: reversed turn numbers and turns all numbered 1 were told only "lack turn 1"
    # or "miss turns", while the replay sent turns in an order the trace never had.
    if repeated:
        notes.append(
            f"{repeated:,} of the trace's {sessions:,} sessions number two or more turns "
            "alike: the closed loop sends those in arrival order"
        )
    # A QA pass: a first turn's think time was ignored without a word.
    first_with_think = first_turns_with_think_time(session_idx, turn, think_times_s(table))
    if first_with_think:
        carry = "first turns carry" if first_with_think > 1 else "first turn carries"
        notes.append(
            f"{first_with_think:,} {carry} a think_time_s, which the closed loop does not "
            "use: a session's first turn is sent at its recorded arrival"
        )
    if backwards:
        notes.append(
            f"{backwards:,} of the trace's {sessions:,} sessions number their turns against "
            "their arrival times (a later turn recorded first): the closed loop sends turns "
            "in turn order, each after the one numbered before it is answered"
        )
    return notes


def _check_out_folder(out_dir: Path, trace: Path, with_report: bool) -> None:
    """Refuse an ``--out`` whose writes would replace the trace being replayed (named like
    an output file in it), or that holds a sweep's store (``report`` would then draw this
    run and not the sweep)."""
    from simulator.report.run_page import PLOTS_DIR, REPORT_FILE
    from simulator.results import RUN_FILES

    for name in (*RUN_FILES, REPORT_FILE):
        if (out_dir / name).is_dir() and (with_report or name != REPORT_FILE):
            # Found before the replay, not after it wrote the rest (a QA pass).
            raise SimreplayError(
                f"--out {out_dir}: its {name} is a folder, where this run writes a file; "
                "remove it or give another folder"
            )
        with contextlib.suppress(OSError):
            if (out_dir / name).exists() and os.path.samefile(out_dir / name, trace):
                raise SimreplayError(
                    f"--out {out_dir}: its {name} is the trace being replayed, which this "
                    "run's outputs would replace; give another folder"
                )
    if with_report and (out_dir / PLOTS_DIR).exists() and not (out_dir / PLOTS_DIR).is_dir():
        raise SimreplayError(
            f"--out {out_dir}: its {PLOTS_DIR} is a file, where a report writes a folder of "
            "PNGs; remove it or give another folder"
        )
    if (out_dir / "sweep.json").is_file():
        raise SimreplayError(
            f"--out {out_dir}: holds a sweep's store (sweep.json); give a folder of its own "
            "to this run's outputs"
        )


def _report_files(out_dir: Path) -> list[Path]:
    """The page and PNGs an earlier ``run --report`` (or ``report``) drew in ``out_dir``,
    those that exist: the page first. Only files the report writes."""
    from simulator.report.png import FIGURE_IDS
    from simulator.report.run_page import PLOTS_DIR, REPORT_FILE

    candidates = [out_dir / REPORT_FILE]
    candidates += [out_dir / PLOTS_DIR / f"{figure_id}.png" for figure_id in sorted(FIGURE_IDS)]
    return [path for path in candidates if path.is_file()]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _replicas_text(scenario: dict[str, Any]) -> str:
    pp = scenario.get("pp", 1)
    if pp == 1:
        gpus = "GPU" if scenario["tp"] == 1 else "GPUs"
        return f"{scenario['num_replicas']} x {scenario['tp']} {gpus}"
    return f"{scenario['num_replicas']} x (tp {scenario['tp']} x pp {pp}) GPUs"


def _pipeline_rows(scenario: dict[str, Any]) -> list[tuple[str, str]]:
    if scenario.get("pp", 1) == 1:
        return []
    return [("Pipeline", f"pp={scenario['pp']}: {scenario['pipeline_parallel']}")]


def _per_virtual_engine_text(scenario: dict[str, Any]) -> str:
    if scenario.get("pp", 1) == 1:
        return ""
    return f"; {scenario['kv_blocks_per_virtual_engine']:,} per virtual engine"


def _rate_text(per_s: float, decimals: int = 2) -> str:
    """A rate with ``decimals`` places, or three significant digits where those would show
    a rate that is not zero as 0 (a deployment that barely serves its trace)."""
    if 0 < per_s < 10.0**-decimals:
        return f"{per_s:.3g}"
    return f"{per_s:,.{decimals}f}"


def _preemptions_text(summary: dict[str, Any]) -> str:
    """The count, and what readmissions found in the prefix cache (vLLM V1 keeps a preempted
    request's blocks cached until they are evicted)."""
    text = f"{summary['num_preemptions']:,}"
    found = summary.get("readmission_cached_tokens")
    if found is not None:
        text += f" (their readmissions found {found:,} tokens in the prefix cache)"
    return text


def _profile_file_text(scenario: dict) -> str:
    """The profile's path when ``--calibration`` named one outside the shipped profiles: the
    one line names the file only (``h100-sxm.json``), the same as the shipped profile's."""
    from simulator.calibration.select import SHIPPED_PREFIX

    path = (scenario.get("calibration_profile") or {}).get("path")
    if not path or path.startswith(SHIPPED_PREFIX):
        return ""
    return f" (file {path})"


def _full_isl_text(scenario: dict[str, Any]) -> str:
    """How the ``vllm`` scheduler admits a waiting request when not by its whole prompt
    (which the engine's line names): by the chunk it would prefill first."""
    if scenario.get("scheduler") != "vllm" or scenario.get("scheduler_reserve_full_isl"):
        return ""
    if isinstance(scenario.get("pp"), int) and scenario["pp"] > 1:
        return "; a waiting request is admitted when its first chunk fits (v0.6's virtual engines)"
    return "; a waiting request is admitted when its first chunk fits (as v0.11)"


def _no_hits(summary: dict[str, Any]) -> str:
    """What the engine line adds when the cache is on but the trace gives it nothing to find
    (prefix caching is on by default, and most traces carry no hash_ids)."""
    if summary["scenario"].get("enable_prefix_caching") and "prefix_cache" not in summary:
        return "; the trace has no hash_ids: hits only on readmission after a preemption"
    return ""


def _print_human(result: Any, trace_name: str) -> None:
    summary = result.summary
    scenario = summary["scenario"]
    memory = result.scenario.memory
    print_rows(
        f"{trace_name} on {scenario['gpus']}",
        [
            (
                "Model",
                f"{scenario['model']}, tp={scenario['tp']}"
                + (" (chosen)" if scenario["tp_chosen_automatically"] else ""),
            ),
            ("Replicas", _replicas_text(scenario)),
            *_pipeline_rows(scenario),
            (
                "KV cache per replica",
                f"{scenario['kv_blocks_per_replica']:,} blocks of "
                f"{scenario['block_size']} tokens ({memory.kv_capacity_tokens:,} tokens)"
                + _per_virtual_engine_text(scenario),
            ),
            (
                "Engine",
                f"{scenario['scheduler']} scheduler, {scenario['engine']}{_no_hits(summary)}"
                + _full_isl_text(scenario),
            ),
            (
                "Batch knobs",
                f"max_num_seqs={scenario['max_num_seqs']:,}, "
                f"max_num_batched_tokens={scenario['max_num_batched_tokens']:,}, "
                f"max_model_len={scenario['max_model_len']:,}" + token_budget_text(scenario),
            ),
            (
                "Router",
                scenario["router"]
                + (
                    f" (load cap {scenario['prefix_load_cap']})"
                    if "prefix_load_cap" in scenario
                    else ""
                ),
            ),
            ("API server", api_server_text(scenario)),
            ("Host overhead", host_text(scenario)),
            ("Precision", precision_text(scenario)),
            ("Step times", scenario["calibration"] + _profile_file_text(scenario)),
            ("CUDA graphs", graphs_text(scenario)),
            ("Cost", f"${scenario['cost_per_hour_usd']:,.2f}/hour (indicative)"),
        ],
    )
    print()
    rows = []
    for label, key in (
        ("TTFT", "ttft_ms"),
        ("TPOT", "tpot_ms"),
        ("ITL", "itl_ms"),
        ("E2E", "e2e_ms"),
        ("Queueing", "queue_ms"),
    ):
        stats = summary[key]
        rows.append([label, *(_ms(stats[k]) for k in ("mean", "p50", "p90", "p99", "max"))])
    print_table(["latency (ms)", "mean", "p50", "p90", "p99", "max"], rows, numeric_from=1)
    print()
    kv = summary["kv_cache"]
    throughput = summary["throughput_rps"]
    tokens_per_s = summary["output_tokens_per_s"]
    lines = [
        (
            "Requests",
            f"{summary['num_requests']:,} ({summary['num_completed']:,} completed, "
            f"{summary['num_rejected']:,} rejected)",
        ),
        ("Makespan", f"{summary['makespan_s']:,.1f} s"),
        (
            "Throughput",
            "n/a"
            if throughput is None
            else f"{_rate_text(throughput)} req/s, {_rate_text(tokens_per_s, 0)} output tokens/s",
        ),
        ("Preemptions", _preemptions_text(summary)),
        ("KV cache use", f"peak {kv['peak_fraction']:.1%}, mean {kv['mean_fraction']:.1%}"),
    ]
    if "closed_loop" in summary:
        loop = summary["closed_loop"]
        lines.append(
            (
                "Closed loop",
                f"{count(loop['turns_delayed'], 'turn')} sent later than recorded (by "
                f"{delay_s_text(loop['max_delay_s'])} s at most; "
                f"{delay_s_text(loop['mean_delay_s'])} s on average over all "
                f"{count(summary['num_requests'], 'turn')})",
            )
        )
    if "max_concurrency" in summary:
        client = summary["max_concurrency"]
        lines.append(
            (
                "Concurrency",
                f"at most {client['slots']:,} in flight: "
                f"{count(client['requests_delayed'], 'request')} waited for a slot (by "
                f"{delay_s_text(client['max_delay_s'])} s at most; "
                f"{delay_s_text(client['mean_delay_s'])} s on average over all "
                f"{count(summary['num_requests'], 'request')})",
            )
        )
    if "prefix_cache" in summary:
        cache = summary["prefix_cache"]
        lines.append(
            (
                "Prefix cache",
                f"hit rate {cache['hit_rate']:.1%} of {cache['query_tokens']:,} tokens asked "
                f"at admission; {cache['prompt_tokens_cached_fraction']:.1%} of prompt tokens "
                f"cached on first admission; {cache['evicted_blocks']:,} blocks evicted",
            )
        )
    for reason, num in summary["rejected_by_reason"].items():
        if reason in (REJECT_REASONS[REJECT_CONTEXT], REJECT_REASONS[REJECT_CAPPED_CONTEXT]):
            # Which length: the context asked for, or the cap a small KV cache set (noted).
            length = summary["scenario"]["max_model_len"]
            if reason == REJECT_REASONS[REJECT_CONTEXT]:
                length = asked_context(result.scenario)
            reason = reason.removesuffix(")") + f" = {length:,} tokens)"
        lines.append(("Rejected", f"{num:,}: {reason}"))
    backlog = summary["backlog_at_last_arrival"]
    arrival_s = result.requests.column("arrival_time_s").to_numpy()
    span_s = float(arrival_s.max() - arrival_s.min()) if len(arrival_s) else 0.0
    kind = backlog_kind(backlog, summary["num_requests"], span_s)
    if kind is not None:
        if kind == "burst":
            # A burst (e.g. a benchmark sending every request at once) queues by design:
            # nothing says the replicas fall behind a steady rate.
            lines.append(
                (
                    "Backlog",
                    f"{backlog:,} requests had not started when the last one arrived: the "
                    f"trace sends them within {span_s:,.1f} s, a burst worked off over "
                    f"{summary['makespan_s']:,.1f} s",
                )
            )
        else:
            lines.append(
                (
                    "Overloaded",
                    f"{backlog:,} requests had not started when the last one "
                    "arrived: the queue grows, so latencies grow with the trace's length",
                )
            )
    elif (summary["queue_ms"]["p99"] or 0.0) >= _QUEUEING_NOTE_MS:
        # Found by a new-user pass: a queue that builds in a busy hour and drains before the
        # trace ends gave minutes of p99 TTFT and no word about why.
        queue = summary["queue_ms"]
        lines.append(
            (
                "Queueing",
                f"1% of requests waited {queue['p99'] / 1000:,.1f} s or more before their "
                f"first step (p90 {queue['p90'] / 1000:,.1f} s): the replicas fall behind "
                "in the trace's busiest periods and catch up later",
            )
        )
    print_rows("Totals", lines)
    if "slo" in summary:
        print()
        slo = summary["slo"]
        rows = [
            [
                key,
                _ms(b["bound_ms"]),
                _ms(b["value_ms"]),
                "yes" if b["met"] else "NO",
                _attainment_text(b["attainment"], b["met"]),
            ]
            for key, b in slo["bounds"].items()
        ]
        print_table(["SLO", "bound", "value", "met", "attainment"], rows, numeric_from=1)
        goodput = slo["goodput_rps"]
        # The value is the summary's percentile, over completed requests: say what 'met'
        # makes of the others, or a p99 within its bound could read as a miss-free run.
        others = []
        if slo.get("misses_not_completed"):
            others.append(
                f"'met' counts the {count(slo['misses_not_completed'], 'request')} not "
                "completed as misses"
            )
        if slo.get("beyond_context"):
            others.append(
                f"the {count(slo['beyond_context'], 'request')} longer than the context "
                "asked for, which any deployment rejects, count only in attainment"
            )
        vacuous = [
            key
            for key, b in slo["bounds"].items()
            if b["value_ms"] is None and b["met"] and key.startswith("tpot")
        ]
        if vacuous:
            # QA: "n/a yes" read as a measured pass; no request had a TPOT to miss it by.
            others.append(
                f"{', '.join(vacuous)} met only because no completed request has two or "
                "more output tokens, so none has a TPOT"
            )
        print(
            f"All met: {'yes' if slo['all_met'] else 'NO'}; requests meeting every bound: "
            f"{slo['attainment_all']:.1%}; goodput "
            f"{'n/a' if goodput is None else f'{goodput:,.2f} req/s'}"
            + (f" (value: over completed requests; {'; '.join(others)})" if others else "")
        )


def _attainment_text(attainment: float | None, met: bool) -> str:
    """A bound's attainment, to 0.1 %; a missed bound's with the digits that keep it below
    100 % (a QA pass: "NO 100.0%" for a p99.99 bound missed by 0.006 % of requests)."""
    if attainment is None:
        return "n/a"
    digits = 1
    while not met and attainment < 1 and round(attainment * 100, digits) >= 100:
        digits += 1
    return f"{attainment:.{digits}%}"


#: Share of a trace's requests arriving at the instant of the one before, from which a
#: ``--router least-kv`` run says they all go to one replica (``_same_instant_note``).
SAME_INSTANT_SHARE = 0.05


def _same_instant_note(table: pa.Table) -> str | None:
    """A note when many requests arrive at the same instant as the one before: ``least-kv``
    sees a request's KV blocks only once a step admits it, so a same-instant batch goes to
    one replica (``simulator/engine/README.md``). A QA pass saw half of 16 replicas idle on
    the raw Mooncake trace (3 s timestamp buckets) and 8, 12 and 16 H100s give the same
    numbers, without a word."""
    import numpy as np

    arrival_s = table.column("arrival_time_s").to_numpy()
    same = int(np.count_nonzero(arrival_s[1:] == arrival_s[:-1]))
    if same == 0 or same < SAME_INSTANT_SHARE * len(arrival_s):
        return None
    return (
        f"--router least-kv: {same:,} of {len(arrival_s):,} requests arrive at the same "
        "instant as the one before; none of them holds KV blocks before a step admits it, "
        "so each such burst goes to one replica (simulator/engine/README.md): --jitter "
        "spreads a timestamp bucket's requests, --router least-outstanding counts each as "
        "it is routed"
    )
