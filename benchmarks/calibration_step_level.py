"""Step-level check of the calibrated model against Vidur's independent per-layer measurements.

    python benchmarks/calibration_step_level.py            # every model/GPU/TP both cover
    python benchmarks/calibration_step_level.py --tokens 1,64,512,4096

For each Vidur ``profiling/compute/<gpu>/<model>/mlp.csv`` (../shared/calibration-data)
whose model is in the catalog and whose GPU has a shipped profile, the linear layers of one
engine step of T tokens (QKV, O, MLP in and out, times the layers) are predicted by the
calibrated model (``simreplay run``'s step model, fitted on AIConfigurator's measurements)
and by the uncalibrated roofline, and compared with the sum of Vidur's measured operator
medians for the same T, times the layers. Vidur measured torch GEMMs without CUDA graphs on
an older stack, so a few percent of disagreement is expected at any T.

Then attention: Vidur's A100 FlashAttention profile of Llama-2-70B at TP 2
(``history/a100_llama2_70b_tp2_attention.csv``: decode of b sequences with c cached tokens
each, and prefill chunks of n tokens after k cached ones, per layer) against the decode and
prefill attention parts of the same step model, fed as the engine feeds them (decode
context b x c; prefill work n (k + n), context k + n). Vidur rounds times to 1 us, so the
smallest kernels (15-20 us) carry a few percent of rounding.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from simulator.calibration.select import step_model_for
from simulator.hardware import get_gpu
from simulator.models import get_model
from simulator.perf.roofline import roofline_model
from simulator.scenario import Scenario, resolve

VIDUR = Path(__file__).resolve().parents[2] / "shared" / "calibration-data" / "vidur"
GPUS = {"a100": "A100", "h100": "H100", "a40": "A40"}
MODELS = {
    "Llama-2-7b-hf": "llama-2-7b",
    "Llama-2-70b-hf": "llama-2-70b",
    "Meta-Llama-3-8B": "llama-3-8b",
    "Meta-Llama-3-70B": "llama-3-70b",
    "CodeLlama-34b-Instruct-hf": "codellama-34b",
    "phi-2": "phi-2",
}
OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="1,8,32,64,128,256,512,1024,2048,4096")
    args = parser.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")]
    if not VIDUR.is_dir():
        raise SystemExit(f"{VIDUR}: Vidur data not found (../shared/calibration-data)")
    print(
        "gpu   model          tp  source of ours                     "
        + "  ".join(f"T={t:>5}" for t in tokens)
        + "   median |err| ours / roofline"
    )
    for gpu_dir, gpu in GPUS.items():
        for path in sorted((VIDUR / "profiling" / "compute" / gpu_dir).glob("*/*/mlp.csv")):
            name = MODELS.get(path.parent.name)
            if name is None:
                continue
            model = get_model(name)
            with path.open() as handle:
                rows = list(csv.DictReader(handle))
            for tp in sorted({int(r["num_tensor_parallel_workers"]) for r in rows}):
                if model.num_heads % tp:
                    continue
                try:
                    step = resolve(Scenario(gpus=f"{tp}x{gpu}", model=name, tp=tp)).step_model
                except Exception as exc:  # noqa: BLE001 - a model that does not fit: skip
                    print(f"{gpu:5} {name:14} {tp:2}  skipped: {exc}")
                    continue
                roof = roofline_model(model, step_gpu(gpu), tp)
                by_tokens = {
                    int(r["num_tokens"]): r
                    for r in rows
                    if int(r["num_tensor_parallel_workers"]) == tp
                }
                cells, ours_err, roof_err = [], [], []
                for t in tokens:
                    row = by_tokens.get(t)
                    if row is None:
                        cells.append(f"{'n/a':>7}")
                        continue
                    vidur_s = (
                        model.num_layers
                        * sum(float(row[f"time_stats.{op}.median"]) for op in OPS)
                        * 1e-3
                    )
                    ours = step.predict_parts(num_decode_seqs=t, decode_context_tokens=t)
                    base = roof.predict_parts(num_decode_seqs=t, decode_context_tokens=t)
                    ours_err.append(ours["linear"] / vidur_s - 1)
                    roof_err.append(base["linear"] / vidur_s - 1)
                    cells.append(f"{ours_err[-1]:+7.0%}")
                label = step.source.split(";")[0].replace("calibrated: calibrated profile ", "")
                print(
                    f"{gpu:5} {name:14} {tp:2}  {label[:34]:34} "
                    + "  ".join(cells)
                    + f"   {statistics.median(abs(e) for e in ours_err):.1%} / "
                    f"{statistics.median(abs(e) for e in roof_err):.1%}"
                )
    compare_attention()


def step_gpu(name: str):
    """The catalog spec of a GPU name."""
    return get_gpu(name)


VIDUR_ATTENTION = VIDUR / "history" / "a100_llama2_70b_tp2_attention.csv"

#: The file's last 12 columns (its header names only 5 of them).
ATTENTION_TAIL = (
    "n_embd n_q_head n_kv_head block_size tp max_model_len batch_size prefill_chunk_size "
    "kv_cache_size is_prefill backend method"
).split()


def attention_rows() -> list[dict[str, str]]:
    """Vidur's A100 attention rows with every column named."""
    with VIDUR_ATTENTION.open() as handle:
        reader = csv.reader(handle)
        header = next(reader)
        names = header[:20] + ATTENTION_TAIL
        return [dict(zip(names, row, strict=True)) for row in reader]


def compare_attention() -> None:
    """Decode and prefill attention per layer: ours and the roofline against Vidur's."""
    if not VIDUR_ATTENTION.is_file():
        print(f"skipping attention: {VIDUR_ATTENTION} not found")
        return
    model = get_model("llama-2-70b")
    gpu = get_gpu("A100")
    ours, info = step_model_for(model, gpu, 2)
    roof = roofline_model(model, gpu, 2)
    layers = model.num_layers
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in attention_rows():
        batch = int(row["batch_size"])
        cached = int(row["kv_cache_size"])
        if row["is_prefill"] == "True":
            chunk = int(row["prefill_chunk_size"])
            vidur_ms = float(row["time_stats.attn_prefill.median"] or "nan")
            features = {
                "num_prefill_tokens": chunk,
                "num_prefill_seqs": 1,
                "prefill_attn_work": float(chunk) * (cached + chunk / 2.0),
                "prefill_context_tokens": cached + chunk,
            }
            part, key = "prefill_attention", ("prefill", _bucket(chunk, "chunk"))
        else:
            vidur_ms = float(row["time_stats.attn_decode.median"] or "nan")
            features = {"num_decode_seqs": batch, "decode_context_tokens": batch * cached}
            part, key = "decode_attention", ("decode", _bucket(batch, "batch"))
        if not vidur_ms > 0:
            continue
        vidur_s = vidur_ms * 1e-3
        ours_s = ours.predict_parts(**features)[part] / layers
        roof_s = roof.predict_parts(**features)[part] / layers
        groups.setdefault(key, []).append((ours_s / vidur_s - 1, roof_s / vidur_s - 1))
    print()
    source = info.get("source", info) if isinstance(info, dict) else info
    print(f"attention per layer vs Vidur's A100 FlashAttention (Llama-2-70B, TP 2): {source}")
    print("kind     group            points  ours median / p90 |err|  signed median  roofline")
    for (kind, group), errs in sorted(groups.items(), key=lambda kv: (kv[0][0], _order(kv[0][1]))):
        ours_abs = sorted(abs(e[0]) for e in errs)
        print(
            f"{kind:8} {group:15} {len(errs):7,}  "
            f"{statistics.median(ours_abs):6.1%} / {ours_abs[int(0.9 * (len(ours_abs) - 1))]:6.1%}"
            f"          {statistics.median(e[0] for e in errs):+6.1%}"
            f"    {statistics.median(abs(e[1]) for e in errs):6.1%}"
        )


def _bucket(value: int, name: str) -> str:
    for low, high in ((1, 1), (2, 8), (9, 32), (33, 128), (129, 512), (513, 4096)):
        if low <= value <= high:
            return f"{name} {low}-{high}" if low != high else f"{name} {low}"
    return f"{name} > 4096"


def _order(group: str) -> int:
    return int(group.split()[1].split("-")[0].replace(">", "").strip() or 0)


if __name__ == "__main__":
    main()
