"""``simreplay calibrate profile``: measure this machine's GEMMs, attention and all-reduce."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.common import domain_errors, err, note, print_json, print_table
from simulator.errors import SimreplayError
from simulator.models import DEFAULT_MODEL, get_model

PANEL = "What to measure"
TIMING = "How to time"


def _parse_tps(values: list[str]) -> list[int]:
    """``--tp 1,2 --tp 4`` -> [1, 2, 4]; a bad value is a one-line error."""
    tps = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part.isdigit() or int(part) < 1:
                raise SimreplayError(f"--tp {value}: expected positive integers, e.g. 1,2,4,8")
            tps.append(int(part))
    return tps


def _fmt_ms(value: float) -> str:
    return f"{value:.4f}" if value < 1 else f"{value:.3f}"


@domain_errors
def profile(
    out: Annotated[
        Path,
        typer.Option(
            "-o", "--out", help="Directory to write the profile to (created).", show_default=False
        ),
    ],
    device: Annotated[
        str, typer.Option("--device", help="cuda, cuda:N or cpu.", rich_help_panel=PANEL)
    ] = "cuda",
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help=f"Model whose layer shapes to time (repeatable; default {DEFAULT_MODEL}): a "
            "catalog name or a Hugging Face config.json path.",
            rich_help_panel=PANEL,
        ),
    ] = None,
    tp: Annotated[
        list[str] | None,
        typer.Option(
            "--tp",
            help="Tensor-parallel degrees, e.g. 1,2,4,8 (repeatable). GEMMs and attention are "
            "timed on each degree's shard; all-reduce on each degree up to the visible GPUs. "
            "Default: 1,2,4,8 on CUDA, 1 on CPU.",
            rich_help_panel=PANEL,
        ),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype",
            help="bf16, fp16 or fp32 (default bf16 on CUDA, fp32 on CPU).",
            rich_help_panel=PANEL,
        ),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="A small grid: seconds to minutes.", rich_help_panel=PANEL),
    ] = False,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-tokens",
            help="Largest GEMM token count and prefill batch x length "
            "(default 16384 on CUDA, 2048 on CPU; with --quick 1024 on CUDA, 64 on CPU).",
            rich_help_panel=PANEL,
        ),
    ] = None,
    repeats: Annotated[
        int | None,
        typer.Option(
            "--repeats",
            help="Timed samples per point; the median is kept (default 20 CUDA, 5 CPU, 3 quick).",
            rich_help_panel=TIMING,
        ),
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            "--warmup",
            help="Untimed calls per point first (default 3, 1 with --quick).",
            rich_help_panel=TIMING,
        ),
    ] = None,
    attention: Annotated[
        str,
        typer.Option(
            "--attention",
            help="Attention kernel: auto (flash-attn when importable on CUDA, else torch SDPA), "
            "sdpa or flash-attn.",
            rich_help_panel=TIMING,
        ),
    ] = "auto",
    cuda_graph: Annotated[
        bool,
        typer.Option(
            "--cuda-graph/--no-cuda-graph",
            help="On CUDA, time replays of captured CUDA graphs, as vLLM runs (default).",
            rich_help_panel=TIMING,
        ),
    ] = True,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace a previous profile's output directory (and all it holds)."
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Measure this machine's GPU operators with torch, for `calibrate fit`.

    Writes NVIDIA AIConfigurator's file names and columns (gemm_perf,
    context/generation_attention and nccl_perf parquet files, plus
    collection_meta.json). Then: `calibrate fit --source DIR --gpu NAME
    -o profile.json`, and `run --calibration profile.json`.
    """
    from simulator.calibration.profiler import (
        TABLES,
        check_options,
        check_out_dir,
        import_torch,
        plan_profile,
        run_profile,
    )

    # Any case, as --device takes it (a QA pass: --device CPU read, --dtype BF16 refused).
    dtype = None if dtype is None else dtype.strip().lower()
    check_out_dir(out, force)
    specs = [get_model(name) for name in (model or [DEFAULT_MODEL])]
    device_type = "cpu" if device.strip().lower() == "cpu" else "cuda"
    tps = _parse_tps(tp) if tp else ([1, 2, 4, 8] if device_type == "cuda" else [1])
    check_options(device, dtype, tps, max_tokens, warmup, repeats)
    import_torch()  # after the options: a wrong one is said without installing torch
    request = plan_profile(
        device,
        specs,
        tps,
        dtype=dtype,
        quick=quick,
        max_tokens=max_tokens,
        warmup=warmup,
        repeats=repeats,
        cuda_graph=cuda_graph,
        attention=attention,
    )
    for message in request.notes:
        note(message)
    r = request
    err.print(
        f"profiling {', '.join(m.name for m in r.models)} at TP {','.join(map(str, r.tps))} on "
        f"{r.device} ({str(r.dtype).removeprefix('torch.')}, {r.attention} attention, "
        f"{r.timing.warmup} warm-up + {r.timing.repeats} timed calls per point)",
    )
    started = time.perf_counter()
    results, metadata = run_profile(request, out, force=force, progress=lambda m: err.print(m))
    elapsed_s = time.perf_counter() - started
    err.print(f"wrote {out} in {elapsed_s:.1f} s")
    if str(r.dtype).removeprefix("torch.") == "float32":
        note(
            "float32 rows are not fitted by `calibrate fit` (it fits the 16-bit and FP8 "
            "operators vLLM serves with); measure with --dtype bf16 to fit this profile"
        )
    for res in results:
        if res.skipped:
            reasons = sorted({point["reason"] for point in res.skipped})
            note(
                f"{res.name}: {len(res.skipped)} points not measured ({'; '.join(reasons)}); "
                f"listed in {out / 'collection_meta.json'}"
            )
    if json_output:
        print_json(
            {
                "out": str(out),
                "device": metadata["device"],
                "runtime": metadata["runtime"],
                "dtype": metadata["dtype"],
                "elapsed_s": round(elapsed_s, 3),
                "tables": metadata["tables"],
                "notes": metadata["notes"],
            }
        )
        return
    rows: list[list[str]] = []
    for res in results:
        file_name = TABLES[res.name][0]
        if res.table is None or res.status == "skipped" or res.table.num_rows == 0:
            rows.append([res.name, "-", "0", str(len(res.skipped)), "-", "-", "-", "-"])
            continue
        latency = sorted(res.table.column("latency").to_pylist())
        rows.append(
            [
                res.name,
                file_name,
                f"{res.table.num_rows:,}",
                str(len(res.skipped)),
                _fmt_ms(latency[0]),
                _fmt_ms(statistics.median(latency)),
                _fmt_ms(latency[-1]),
                f"{res.elapsed_s:.1f}",
            ]
        )
    print_table(
        ["table", "file", "rows", "skipped", "min_ms", "median_ms", "max_ms", "time_s"],
        rows,
        numeric_from=2,
    )
    for res in results:
        if res.reason:
            typer.echo(f"{res.name}: {res.status} ({res.reason})")
    typer.echo(f"device: {metadata['device']['name']}; profile: {out}/")
