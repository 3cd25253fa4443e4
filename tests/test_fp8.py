"""FP8 deployments: ``--quantization fp8`` and ``--kv-cache-dtype fp8`` (vLLM v0.11 names)."""

from __future__ import annotations

import json

import pytest
from test_models import LLAMA_31_8B_CONFIG
from typer.testing import CliRunner

from simulator.cli import app
from simulator.errors import SimreplayError
from simulator.hardware import get_gpu
from simulator.models import fp8_weights, get_model, load_hf_config, param_count, weight_bytes
from simulator.perf.roofline import roofline_model
from simulator.scenario import Scenario, check_knobs, resolve
from simulator.sweep.spec import coerce

LLAMA_8B_CONFIG = LLAMA_31_8B_CONFIG
#: As neuralmagic's / RedHatAI's Meta-Llama-3.1-8B-Instruct-FP8 ships it (llm-compressor).
COMPRESSED_TENSORS_FP8 = {
    "quant_method": "compressed-tensors",
    "format": "float-quantized",
    "ignore": ["lm_head"],
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {"num_bits": 8, "type": "float", "strategy": "channel"},
            "input_activations": {"num_bits": 8, "type": "float", "dynamic": True},
        }
    },
}


def _resolved(**knobs):
    return resolve(Scenario(**knobs))


@pytest.mark.parametrize("gpus", ["1xH100", "1xA100"])
def test_an_fp8_kv_cache_doubles_the_kv_blocks(gpus):
    auto = _resolved(gpus=gpus, model="llama-3.1-8b", tp=1)
    fp8 = _resolved(gpus=gpus, model="llama-3.1-8b", tp=1, kv_cache_dtype="fp8")
    blocks = auto.memory.num_kv_blocks
    # Same free memory, half the bytes a block: twice the blocks, within block rounding.
    assert 2 * blocks <= fp8.memory.num_kv_blocks <= 2 * blocks + 1
    assert fp8.memory.kv_bytes_per_token == auto.memory.kv_bytes_per_token / 2
    assert fp8.to_dict()["kv_cache_dtype"] == "fp8_e4m3"
    assert auto.to_dict()["kv_cache_dtype"] == "auto"


def test_fp8_weights_halve_the_linear_layers_and_keep_the_embedding_16_bit():
    model = get_model("llama-3.1-70b")
    counts = param_count(model)
    sixteen_bit = counts["embedding"] + counts["lm_head"] + counts["norms"]
    fp8 = fp8_weights(model)
    assert weight_bytes(fp8) == pytest.approx((counts["total"] - sixteen_bit) + 2 * sixteen_bit)
    bf16 = _resolved(gpus="4xH100", model="llama-3.1-70b", tp=4)
    quant = _resolved(gpus="4xH100", model="llama-3.1-70b", tp=4, quantization="fp8")
    ratio = quant.memory.weights_bytes_per_gpu / bf16.memory.weights_bytes_per_gpu
    assert 0.5 < ratio < 0.52  # 2.1B of 70.6B parameters (embedding, LM head) stay 16-bit
    # The freed weights become KV cache.
    assert quant.memory.num_kv_blocks > bf16.memory.num_kv_blocks
    assert quant.to_dict()["weights_dtype"] == "fp8"
    assert quant.to_dict()["quantization"] == "fp8"


def _linear_s(resolved, tokens: int) -> float:
    return resolved.step_model.predict_parts(
        num_prefill_tokens=tokens, num_prefill_seqs=1, prefill_attn_work=tokens * tokens / 2
    )["linear"]


@pytest.mark.parametrize("calibrated", [True, False])
def test_fp8_gemms_on_h100_are_faster_at_every_batch(calibrated, tmp_path):
    knobs = {"gpus": "1xH100", "model": "llama-3.1-8b", "tp": 1, "enforce_eager": True}
    if not calibrated:
        knobs["gpus"] = "1xMI300X"  # no measured relative: the uncalibrated roofline
    bf16 = _resolved(**knobs)
    fp8 = _resolved(**knobs, quantization="fp8")
    assert fp8.gemm_mode == "fp8"
    for tokens in (1, 8192):  # memory bound (weight read), compute bound (FP8 peak)
        assert _linear_s(fp8, tokens) < 0.8 * _linear_s(bf16, tokens), tokens


@pytest.mark.parametrize("gpus", ["1xA100", "1xA10G"])
def test_fp8_on_ampere_is_weight_only(gpus):
    knobs = {"gpus": gpus, "model": "llama-3.1-8b", "tp": 1, "enforce_eager": True}
    bf16 = _resolved(**knobs)
    fp8 = _resolved(**knobs, quantization="fp8")
    assert fp8.gemm_mode == "fp8-weight-only"
    assert "weight-only" in fp8.to_dict()["gemm"]
    # Large batches: the same 16-bit GEMM compute; one token: half the weight bytes.
    assert _linear_s(fp8, 8192) == pytest.approx(_linear_s(bf16, 8192), rel=0.02)
    assert _linear_s(fp8, 1) < 0.7 * _linear_s(bf16, 1)


def test_the_lm_head_keeps_16_bit_weights_in_the_roofline():
    gpu = get_gpu("H100")
    model = get_model("llama-3.1-8b")
    bf16 = roofline_model(model, gpu, 1).predict_parts(num_decode_seqs=1, decode_context_tokens=1)
    fp8 = roofline_model(fp8_weights(model), gpu, 1).predict_parts(
        num_decode_seqs=1, decode_context_tokens=1
    )
    assert fp8["lm_head"] == bf16["lm_head"]
    assert fp8["linear"] < 0.6 * bf16["linear"]


@pytest.mark.parametrize("gpus", ["1xH100", "1xMI300X"])
def test_an_fp8_kv_cache_reads_less_in_decode_attention(gpus):
    knobs = {"gpus": gpus, "model": "llama-3.1-8b", "tp": 1}
    auto = _resolved(**knobs)
    fp8 = _resolved(**knobs, kv_cache_dtype="fp8")
    batch = {"num_decode_seqs": 256, "decode_context_tokens": 256 * 8192}
    auto_s = auto.step_model.predict_parts(**batch)["decode_attention"]
    fp8_s = fp8.step_model.predict_parts(**batch)["decode_attention"]
    # Bandwidth bound: the roofline halves the KV term; the calibrated table applies the
    # measured FP8 / 16-bit ratio (0.7). Never more than the 16-bit time, never below half.
    assert 0.45 * auto_s < fp8_s < 0.8 * auto_s


@pytest.mark.parametrize(
    ("knobs", "fragment"),
    [
        ({"quantization": "awq"}, "--quantization must be fp8, or none (omitted)"),
        ({"quantization": "FP8"}, "--quantization must be fp8"),
        (
            {"kv_cache_dtype": "fp8_e5m2"},
            "--kv-cache-dtype must be one of auto, bfloat16, fp8, fp8_e4m3",
        ),
        ({"kv_cache_dtype": None}, "--kv-cache-dtype must be one of"),
    ],
)
def test_bad_precision_knobs_are_one_line(knobs, fragment):
    with pytest.raises(SimreplayError) as info:
        check_knobs(Scenario(**knobs))
    assert "\n" not in str(info.value)
    assert fragment in str(info.value)


def test_run_refuses_a_bad_kv_cache_dtype_with_one_line(tmp_path):
    result = CliRunner().invoke(
        app,
        ["run", "traces/chat-1h.parquet", "--gpus", "1xH100", "--kv-cache-dtype", "int4"],
    )
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--kv-cache-dtype must be one of" in lines[0], lines
    assert "Traceback" not in result.output


def test_sweep_axes_take_none_and_fp8():
    assert [coerce("quantization", v, "--quantization") for v in ("none", "fp8")] == [None, "fp8"]
    assert coerce("kv_cache_dtype", "fp8", "--kv-cache-dtype") == "fp8"


def _write(tmp_path, quantization):
    path = tmp_path / "llama-fp8" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({**LLAMA_8B_CONFIG, "quantization_config": quantization}))
    return path


@pytest.mark.parametrize(
    "quantization",
    [
        {"quant_method": "fp8", "activation_scheme": "dynamic"},
        {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]},
        COMPRESSED_TENSORS_FP8,
    ],
)
def test_an_fp8_checkpoint_resolves_to_1_byte_weights(tmp_path, quantization):
    path = _write(tmp_path, quantization)
    model = load_hf_config(path)
    assert model.weight_bytes_per_param == 1.0
    assert model.head_bytes_per_param == 2.0
    assert any("FP8 checkpoint" in note for note in model.notes)
    resolved = _resolved(gpus="1xH100", model=str(path), tp=1)
    assert resolved.gemm_mode == "fp8"
    plain = _resolved(gpus="1xH100", model="llama-3.1-8b", tp=1)
    assert resolved.memory.weights_bytes_per_gpu == pytest.approx(
        weight_bytes(fp8_weights(plain.model))
    )


@pytest.mark.parametrize(
    ("quantization", "fragment"),
    [
        ({"quant_method": "awq", "bits": 4}, "quant_method 'awq'"),
        ({"quant_method": "gptq", "bits": 4}, "quant_method 'gptq'"),
        ({"quant_method": "mxfp4"}, "quant_method 'mxfp4'"),
        (
            {
                **COMPRESSED_TENSORS_FP8,
                "config_groups": {
                    "group_0": {"weights": {"num_bits": 8, "type": "float"}},
                },
            },
            "config_groups.group_0.input_activations None",
        ),
        (
            {
                **COMPRESSED_TENSORS_FP8,
                "config_groups": {
                    "group_0": {
                        "weights": {"num_bits": 4, "type": "int"},
                        "input_activations": None,
                    }
                },
            },
            "config_groups.group_0.weights 'int' 4-bit",
        ),
    ],
)
def test_other_quantized_checkpoints_are_still_refused(tmp_path, quantization, fragment):
    path = _write(tmp_path, quantization)
    with pytest.raises(SimreplayError) as info:
        load_hf_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    assert "quantized checkpoint" in message and fragment in message


@pytest.mark.parametrize("gpus", ["2xH100", "2xA100"])
def test_fp8_experts_are_priced_below_16_bit_ones(gpus):
    knobs = {"gpus": gpus, "model": "mixtral-8x7b", "tp": 2, "enforce_eager": True}
    bf16 = _resolved(**knobs)
    fp8 = _resolved(**knobs, quantization="fp8")
    assert fp8.step_model.description["calibrated_moe"].startswith("moe (16-bit measurements")

    def moe_s(resolved, tokens):
        return resolved.step_model.predict_parts(
            num_decode_seqs=tokens, decode_context_tokens=tokens
        )["moe"]

    assert moe_s(fp8, 1) < 0.75 * moe_s(bf16, 1)  # half the expert weights read
    large = moe_s(fp8, 8192) / moe_s(bf16, 8192)
    if fp8.gemm_mode == "fp8":
        assert large < 0.75  # FP8 tensor cores
    else:
        assert large == pytest.approx(1.0, rel=0.05)  # weight-only: same 16-bit compute


def test_run_prints_and_stores_the_precision(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "traces/chat-1h.parquet",
            "--gpus",
            "1xA100",
            "--quantization",
            "fp8",
            "--kv-cache-dtype",
            "fp8_e4m3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "FP8 weight-only" in result.stdout and "KV cache fp8_e4m3 (1 byte)" in result.stdout
    scenario = json.loads((out / "summary.json").read_text())["scenario"]
    assert scenario["gemm_mode"] == "fp8-weight-only"
    assert scenario["quantization"] == "fp8"
    assert scenario["kv_cache_dtype"] == "fp8_e4m3"
    assert scenario["kv_cache_bytes_per_element"] == 1.0
