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
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

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


def step_gpu(name: str):
    """The catalog spec of a GPU name."""
    from simulator.hardware import get_gpu

    return get_gpu(name)


if __name__ == "__main__":
    main()
