"""``simreplay hardware list`` and ``simreplay models list``: what the catalogs hold."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from simulator.cli.common import domain_errors, print_json, print_table
from simulator.hardware import GPUS
from simulator.memory import GIB, kv_bytes_per_token
from simulator.models import DEFAULT_MODEL, MODELS, param_count, weight_bytes
from simulator.specs import GPUSpec, ModelSpec

hardware_app = typer.Typer(help="The GPU catalog behind --gpus.", no_args_is_help=True)
models_app = typer.Typer(help="The model catalog behind --model.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


@hardware_app.callback()
def _hardware() -> None:
    """The GPU catalog behind --gpus."""


@models_app.callback()
def _models() -> None:
    """The model catalog behind --model."""


def _gpu_record(gpu: GPUSpec) -> dict[str, Any]:
    return {
        "name": gpu.name,
        "aliases": list(gpu.aliases),
        "vendor": gpu.vendor,
        "peak_bf16_tflops": gpu.peak_bf16_flops / 1e12,
        "peak_fp8_tflops": None if gpu.peak_fp8_flops is None else gpu.peak_fp8_flops / 1e12,
        "memory_gib": gpu.hbm_bytes / GIB,
        "hbm_bytes": gpu.hbm_bytes,
        "hbm_tb_per_s": gpu.hbm_bytes_per_s / 1e12,
        "link_gb_per_s": gpu.link_bytes_per_s / 1e9,
        "gpus_per_node": gpu.gpus_per_node,
        "network_gb_per_s": gpu.network_bytes_per_s / 1e9,
        "usd_per_hour": gpu.usd_per_hour,
        "source": gpu.source,
    }


@hardware_app.command("list")
@domain_errors
def list_hardware(json_output: JsonOpt = False) -> None:
    """List the GPUs --gpus accepts: peak dense FLOP/s, memory, bandwidths, indicative $/h.

    Link bandwidth is GPU-to-GPU within a server (8 GPUs; a GB200 NVL72 rack: 72), network
    bandwidth each GPU's share between servers (what TP or pipeline stages across servers
    run at), both per direction. Sources are cited in --json output.
    """
    records = [_gpu_record(gpu) for gpu in GPUS.values()]
    if json_output:
        print_json({"gpus": records})
        return
    headers = ["name", "aliases", "bf16 TFLOP/s", "fp8 TFLOP/s", "mem GiB", "TB/s", "link GB/s"]
    headers += ["net GB/s", "$/h"]
    rows = [
        [
            r["name"],
            ", ".join(r["aliases"]),
            f"{r['peak_bf16_tflops']:,.0f}",
            "-" if r["peak_fp8_tflops"] is None else f"{r['peak_fp8_tflops']:,.0f}",
            f"{r['memory_gib']:.0f}",
            f"{r['hbm_tb_per_s']:.2f}",
            f"{r['link_gb_per_s']:.0f}",
            f"{r['network_gb_per_s']:.3g}",
            f"{r['usd_per_hour']:.2f}",
        ]
        for r in records
    ]
    print_table(headers, rows, numeric_from=2)


def _model_record(model: ModelSpec) -> dict[str, Any]:
    params = param_count(model)
    return {
        "name": model.name,
        "default": model.name == DEFAULT_MODEL,
        "aliases": list(model.aliases),
        "num_layers": model.num_layers,
        "hidden_size": model.hidden_size,
        "num_heads": model.num_heads,
        "num_kv_heads": model.num_kv_heads,
        "head_dim": model.head_dim,
        "intermediate_size": model.intermediate_size,
        "vocab_size": model.vocab_size,
        "max_context_tokens": model.max_context_tokens,
        "num_experts": model.num_experts,
        "num_experts_per_token": model.num_experts_per_token,
        "gated_mlp": model.gated_mlp,
        "tied_embeddings": model.tied_embeddings,
        "num_params": params["total"],
        "num_active_params": params["active"],
        "weight_bytes": weight_bytes(model),
        "kv_bytes_per_token": kv_bytes_per_token(model, 1),
        "source": model.source,
    }


@models_app.command("list")
@domain_errors
def list_models(json_output: JsonOpt = False) -> None:
    """List the models --model accepts by name (or give --model a config.json path).

    FFN is the width of one expert for MoE models; params are in billions, with the
    parameters one token uses in parentheses for MoE models.
    """
    records = [_model_record(model) for model in MODELS.values()]
    if json_output:
        print_json({"default": DEFAULT_MODEL, "models": records})
        return
    headers = ["name", "layers", "hidden", "heads/kv", "head dim", "FFN", "vocab", "context"]
    headers += ["experts/top-k", "params B"]
    rows = []
    for r in records:
        params = f"{r['num_params'] / 1e9:.2f}"
        if r["num_experts"]:
            params += f" ({r['num_active_params'] / 1e9:.2f})"
        rows.append(
            [
                r["name"] + (" (default)" if r["default"] else ""),
                str(r["num_layers"]),
                str(r["hidden_size"]),
                f"{r['num_heads']}/{r['num_kv_heads']}",
                str(r["head_dim"]),
                str(r["intermediate_size"]),
                str(r["vocab_size"]),
                str(r["max_context_tokens"]),
                f"{r['num_experts']}/{r['num_experts_per_token']}" if r["num_experts"] else "-",
                params,
            ]
        )
    print_table(headers, rows, numeric_from=1)


@models_app.command("show")
@domain_errors
def show_model(
    model: Annotated[
        str,
        typer.Argument(
            help="A catalog name or alias, or a Hugging Face config.json (or its folder).",
            show_default=False,
        ),
    ],
    json_output: JsonOpt = False,
) -> None:
    """Show what --model reads from a name or a config.json: shape, parameters, weight and
    KV-cache bytes, and the notes a run would print (what is not modelled)."""
    from simulator.models import get_model

    spec = get_model(model)
    precision = "FP8 checkpoint" if spec.weight_bytes_per_param == 1 else "16-bit"
    record = {**_model_record(spec), "weights": precision, "notes": list(spec.notes)}
    if json_output:
        print_json(record)
        return
    params = f"{record['num_params'] / 1e9:,.2f} B"
    if record["num_experts"]:
        params += f" ({record['num_active_params'] / 1e9:,.2f} B active per token)"
    rows = [
        ("name", record["name"]),
        ("layers", f"{record['num_layers']:,}"),
        ("hidden size", f"{record['hidden_size']:,}"),
        ("heads / KV heads", f"{record['num_heads']} / {record['num_kv_heads']}"),
        ("head dim", str(record["head_dim"])),
        (
            "FFN (per expert)" if record["num_experts"] else "FFN",
            f"{record['intermediate_size']:,}",
        ),
        ("vocab", f"{record['vocab_size']:,}"),
        ("context", f"{record['max_context_tokens']:,} tokens"),
        (
            "experts / top-k",
            f"{record['num_experts']} / {record['num_experts_per_token']}"
            if record["num_experts"]
            else "-",
        ),
        ("parameters", params),
        ("weights", f"{record['weight_bytes'] / GIB:,.2f} GiB ({precision})"),
        ("KV cache", f"{record['kv_bytes_per_token']:,.0f} bytes per token (16-bit, TP 1)"),
        ("source", record["source"]),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    for text in record["notes"]:
        print(f"note: {text}")
