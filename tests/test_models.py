"""The model catalog, the ``config.json`` loader, parameter counts, ``simreplay models list``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulator.cli.catalog import models_app
from simulator.errors import SimreplayError
from simulator.models import (
    DEFAULT_MODEL,
    MODELS,
    get_model,
    load_hf_config,
    param_count,
    weight_bytes,
)

REQUIRED_MODELS = {
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3-8b",
    "llama-3-70b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "mistral-7b",
    "mixtral-8x7b",
    "qwen2.5-7b",
    "qwen2.5-32b",
    "qwen2.5-72b",
    "qwen3-8b",
    "qwen3-32b",
    "qwen3-30b-a3b",
    "codellama-34b",
    "phi-2",
}

LLAMA_31_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rope_scaling": {
        "factor": 8.0,
        "rope_type": "llama3",
        "original_max_position_embeddings": 8192,
    },
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
}

QWEN3_32B_CONFIG = {
    "model_type": "qwen3",
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 5120,
    "intermediate_size": 25600,
    "max_position_embeddings": 40960,
    "num_attention_heads": 64,
    "num_hidden_layers": 64,
    "num_key_value_heads": 8,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 151936,
}

MIXTRAL_CONFIG = {
    "model_type": "mixtral",
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "num_attention_heads": 32,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 32000,
}

QWEN3_MOE_CONFIG = {
    "model_type": "qwen3_moe",
    "decoder_sparse_step": 1,
    "head_dim": 128,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "max_position_embeddings": 40960,
    "mlp_only_layers": [],
    "num_attention_heads": 32,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 48,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 151936,
}

PHI2_CONFIG = {
    "model_type": "phi",
    "hidden_act": "gelu_new",
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "max_position_embeddings": 2048,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": None,
    "partial_rotary_factor": 0.4,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "vocab_size": 51200,
}


def write_config(directory: Path, config: dict, name: str = "config.json") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(config))
    return path


def test_catalog_covers_the_required_models_and_the_default():
    assert REQUIRED_MODELS <= set(MODELS)
    assert DEFAULT_MODEL == "llama-3.1-8b"
    assert DEFAULT_MODEL in MODELS


@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
def test_every_catalog_model_resolves_by_name_and_alias_and_is_consistent(model):
    assert get_model(model.name) is model
    assert get_model(model.name.upper()) is model
    for alias in model.aliases:
        assert get_model(alias) is model
    assert model.name == model.name.lower()
    assert model.num_heads % model.num_kv_heads == 0
    assert model.num_experts_per_token <= model.num_experts
    assert model.max_context_tokens >= 2048
    assert model.source.endswith("config.json") and "/" in model.source


#: (layers, hidden, heads, KV heads, head dim, FFN, vocab, context, experts, top-k) as the
#: published config.json files give them.
PUBLISHED_SHAPES = {
    "llama-2-7b": (32, 4096, 32, 32, 128, 11008, 32000, 4096, 0, 0),
    "llama-2-13b": (40, 5120, 40, 40, 128, 13824, 32000, 4096, 0, 0),
    "llama-2-70b": (80, 8192, 64, 8, 128, 28672, 32000, 4096, 0, 0),
    "llama-3-8b": (32, 4096, 32, 8, 128, 14336, 128256, 8192, 0, 0),
    "llama-3-70b": (80, 8192, 64, 8, 128, 28672, 128256, 8192, 0, 0),
    "llama-3.1-8b": (32, 4096, 32, 8, 128, 14336, 128256, 131072, 0, 0),
    "llama-3.1-70b": (80, 8192, 64, 8, 128, 28672, 128256, 131072, 0, 0),
    "mistral-7b": (32, 4096, 32, 8, 128, 14336, 32768, 32768, 0, 0),
    "mistral-7b-v0.1": (32, 4096, 32, 8, 128, 14336, 32000, 32768, 0, 0),
    "mixtral-8x7b": (32, 4096, 32, 8, 128, 14336, 32000, 32768, 8, 2),
    "qwen2.5-7b": (28, 3584, 28, 4, 128, 18944, 152064, 32768, 0, 0),
    "qwen2.5-32b": (64, 5120, 40, 8, 128, 27648, 152064, 32768, 0, 0),
    "qwen2.5-72b": (80, 8192, 64, 8, 128, 29568, 152064, 32768, 0, 0),
    "qwen3-8b": (36, 4096, 32, 8, 128, 12288, 151936, 40960, 0, 0),
    "qwen3-32b": (64, 5120, 64, 8, 128, 25600, 151936, 40960, 0, 0),
    "qwen3-30b-a3b": (48, 2048, 32, 4, 128, 768, 151936, 40960, 128, 8),
    "codellama-34b": (48, 8192, 64, 8, 128, 22016, 32000, 16384, 0, 0),
    "phi-2": (32, 2560, 32, 32, 80, 10240, 51200, 2048, 0, 0),
}


@pytest.mark.parametrize("name", list(PUBLISHED_SHAPES))
def test_catalog_shapes_match_the_published_configs(name):
    m = MODELS[name]
    shape = (
        m.num_layers,
        m.hidden_size,
        m.num_heads,
        m.num_kv_heads,
        m.head_dim,
        m.intermediate_size,
        m.vocab_size,
        m.max_context_tokens,
        m.num_experts,
        m.num_experts_per_token,
    )
    assert shape == PUBLISHED_SHAPES[name]
    assert m.gated_mlp == (name != "phi-2")
    assert not m.tied_embeddings
    assert set(PUBLISHED_SHAPES) == set(MODELS)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Llama-3.1-8B", "llama-3.1-8b"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("meta-llama/Meta-Llama-3-70B-Instruct", "llama-3-70b"),
        ("meta-llama/Llama-2-7b-chat-hf", "llama-2-7b"),
        # Found by QA: the Hub's ids of Mistral's fine-tunes put the version last.
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b"),
        ("mistralai/Mistral-7B-Instruct-v0.1", "mistral-7b-v0.1"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
        ("mistralai/Mistral-7B-Instruct-v0.2", None),  # v0.2 is not in the catalog
        ("Mixtral_8x7B", "mixtral-8x7b"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b"),
        ("QWEN3 30B A3B", "qwen3-30b-a3b"),
        ("microsoft/phi-2", "phi-2"),
        ("CodeLlama-34b-hf", "codellama-34b"),
    ],
)
def test_model_names_are_forgiving(text, name):
    if name is None:
        with pytest.raises(SimreplayError):
            get_model(text)
    else:
        assert get_model(text) is MODELS[name]


def test_unknown_model_lists_the_catalog():
    with pytest.raises(SimreplayError) as info:
        get_model("gpt-5")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unknown model 'gpt-5'; known: ")
    for name in MODELS:
        assert name in message


def test_a_directory_without_config_json_does_not_shadow_the_catalog(tmp_path, monkeypatch):
    (tmp_path / "phi-2").mkdir()
    monkeypatch.chdir(tmp_path)
    assert get_model("phi-2") is MODELS["phi-2"]
    (tmp_path / "mine").mkdir()
    with pytest.raises(SimreplayError, match="config.json: no such file"):
        get_model("mine")


def test_missing_config_path_says_so(tmp_path):
    with pytest.raises(SimreplayError, match="no config.json at that path"):
        get_model(str(tmp_path / "nowhere"))
    # A QA pass: a .json path that is not there got the catalog's "unknown model" list.
    with pytest.raises(SimreplayError, match=r"nowhere/config.json: no such file \(--model"):
        get_model(str(tmp_path / "nowhere" / "config.json"))


def test_an_empty_model_and_a_misspelt_name_get_one_clear_line():
    """A QA pass: --model "" read ./config.json (Path("") is the current folder); a
    misspelt name only listed the catalog."""
    with pytest.raises(SimreplayError, match=r"^--model: empty value"):
        get_model("  ")
    with pytest.raises(SimreplayError, match=r"\(did you mean llama-3.1-8b\?\)"):
        get_model("lama-3.1-8b")
    assert get_model("Qwen/Qwen3-30B-A3B-Instruct-2507").name == "qwen3-30b-a3b"


@pytest.mark.parametrize(
    ("name", "published_total", "published_active"),
    [
        ("llama-3.1-8b", 8.03e9, None),
        ("llama-2-7b", 6.74e9, None),
        ("llama-2-13b", 13.0e9, None),
        ("llama-2-70b", 6.9e10, None),
        ("llama-3.1-70b", 70.6e9, None),
        ("mistral-7b", 7.25e9, None),
        ("mixtral-8x7b", 4.67e10, 1.29e10),
        ("qwen2.5-7b", 7.61e9, None),
        ("qwen2.5-72b", 72.7e9, None),
        ("qwen3-8b", 8.2e9, None),
        ("qwen3-32b", 32.8e9, None),
        ("qwen3-30b-a3b", 30.5e9, 3.3e9),
        ("codellama-34b", 33.7e9, None),
        ("phi-2", 2.78e9, None),
    ],
)
def test_param_counts_match_published_totals(name, published_total, published_active):
    counts = param_count(MODELS[name])
    assert counts["total"] == pytest.approx(published_total, rel=0.02)
    if published_active is None:
        assert counts["active"] == counts["total"]
    else:
        assert counts["active"] == pytest.approx(published_active, rel=0.02)
    parts = ("embedding", "attention", "mlp", "norms", "lm_head")
    assert counts["total"] == sum(counts[part] for part in parts)


def test_param_count_parts_for_llama_3_1_8b():
    counts = param_count(MODELS["llama-3.1-8b"])
    assert counts["embedding"] == 128256 * 4096
    assert counts["lm_head"] == 128256 * 4096
    assert counts["attention"] == 32 * (2 * 4096 * 4096 + 2 * 1024 * 4096)
    assert counts["mlp"] == 32 * 3 * 4096 * 14336
    assert weight_bytes(MODELS["llama-3.1-8b"]) == 2 * counts["total"]


def test_tied_embeddings_count_the_lm_head_once():
    from dataclasses import replace

    untied = MODELS["llama-3.1-8b"]
    tied = replace(untied, tied_embeddings=True)
    assert param_count(tied)["lm_head"] == 0
    assert param_count(untied)["total"] - param_count(tied)["total"] == 128256 * 4096


def test_config_json_of_llama_3_1_8b_matches_the_catalog(tmp_path):
    spec = get_model(str(write_config(tmp_path / "Llama-3.1-8B", LLAMA_31_8B_CONFIG)))
    catalog = MODELS["llama-3.1-8b"]
    assert spec.name == "Llama-3.1-8B"
    for field in (
        "num_layers",
        "hidden_size",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "intermediate_size",
        "vocab_size",
        "max_context_tokens",  # rope_type llama3 does not extend the context
        "gated_mlp",
        "tied_embeddings",
        "weight_bytes_per_param",
    ):
        assert getattr(spec, field) == getattr(catalog, field), field
    assert param_count(spec) == param_count(catalog)


def test_directory_holding_config_json_is_accepted(tmp_path):
    write_config(tmp_path / "qwen3-32b-local", QWEN3_32B_CONFIG)
    spec = get_model(str(tmp_path / "qwen3-32b-local"))
    assert spec.name == "qwen3-32b-local"


def test_qwen3_style_explicit_head_dim_wins_over_hidden_over_heads(tmp_path):
    spec = load_hf_config(write_config(tmp_path, QWEN3_32B_CONFIG))
    assert spec.head_dim == 128  # not 5120 / 64 = 80
    assert param_count(spec)["total"] == param_count(MODELS["qwen3-32b"])["total"]


def test_mixtral_style_moe(tmp_path):
    spec = load_hf_config(write_config(tmp_path, MIXTRAL_CONFIG))
    assert (spec.num_experts, spec.num_experts_per_token) == (8, 2)
    assert spec.intermediate_size == 14336
    assert spec.is_moe
    assert param_count(spec) == param_count(MODELS["mixtral-8x7b"])
    # Found by a QA pass: num_local_experts 0 beside num_experts_per_tok 2 ran as dense.
    with pytest.raises(
        SimreplayError,
        match=r"num_experts_per_tok is 2 but num_local_experts is 0: an MoE model needs its "
        r"number of experts",
    ):
        load_hf_config(write_config(tmp_path / "zero", {**MIXTRAL_CONFIG, "num_local_experts": 0}))


def test_qwen3_moe_uses_moe_intermediate_size(tmp_path):
    spec = load_hf_config(write_config(tmp_path, QWEN3_MOE_CONFIG))
    assert (spec.num_experts, spec.num_experts_per_token) == (128, 8)
    assert spec.intermediate_size == 768
    assert spec.num_kv_heads == 4
    assert param_count(spec)["active"] == pytest.approx(3.3e9, rel=0.02)


def test_phi_style_plain_mlp_and_null_kv_heads(tmp_path):
    spec = load_hf_config(write_config(tmp_path, PHI2_CONFIG))
    assert not spec.gated_mlp
    assert spec.num_kv_heads == 32
    assert spec.head_dim == 80
    assert spec.weight_bytes_per_param == 2
    assert param_count(spec) == param_count(MODELS["phi-2"])


def test_float32_checkpoint_is_served_in_16_bit(tmp_path):
    """vLLM's --dtype auto "will use FP16 precision for FP32 and FP16 models" (engine
    arguments, v0.11): a float32 config.json counted 4 bytes a weight, twice what vLLM
    loads, while its KV cache and step times were those of 16-bit."""
    spec = load_hf_config(write_config(tmp_path, {**PHI2_CONFIG, "torch_dtype": "float32"}))
    assert spec.weight_bytes_per_param == 2
    assert weight_bytes(spec) == 2 * param_count(spec)["total"]
    # A QA pass: results identical to bfloat16's without a word; vLLM warns as it downcasts.
    assert any("a float32 checkpoint, served with 16-bit weights" in n for n in spec.notes)
    bf16 = load_hf_config(write_config(tmp_path / "b", {**PHI2_CONFIG, "torch_dtype": "bfloat16"}))
    assert not any("float32" in n for n in bf16.notes)


GEMMA2_9B_CONFIG = {
    "architectures": ["Gemma2ForCausalLM"],
    "model_type": "gemma2",
    "num_hidden_layers": 42,
    "hidden_size": 3584,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "intermediate_size": 14336,
    "vocab_size": 256000,
    "max_position_embeddings": 8192,
    "hidden_activation": "gelu_pytorch_tanh",
    "torch_dtype": "float32",
}


def test_gemma_ties_its_embeddings_unless_the_file_says_otherwise(tmp_path):
    """transformers' Gemma config classes default tie_word_embeddings to true, and Gemma-2's
    published config.json leaves the key out: 10.16B parameters were counted for a 9.24B
    model."""
    spec = load_hf_config(write_config(tmp_path, GEMMA2_9B_CONFIG))
    assert spec.tied_embeddings
    assert param_count(spec)["total"] / 1e9 == pytest.approx(9.24, abs=0.01)
    untied = load_hf_config(
        write_config(tmp_path, {**GEMMA2_9B_CONFIG, "tie_word_embeddings": False})
    )
    assert not untied.tied_embeddings
    llama = load_hf_config(
        write_config(
            tmp_path, {k: v for k, v in LLAMA_31_8B_CONFIG.items() if k != "tie_word_embeddings"}
        )
    )
    assert not llama.tied_embeddings


def test_yarn_rope_scaling_extends_the_context(tmp_path):
    config = {
        **QWEN3_32B_CONFIG,
        "rope_scaling": {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 32768,
        },
    }
    assert load_hf_config(write_config(tmp_path, config)).max_context_tokens == 131072


def test_multimodal_text_config_is_used(tmp_path):
    config = {"model_type": "llava", "torch_dtype": "bfloat16", "text_config": QWEN3_32B_CONFIG}
    spec = load_hf_config(write_config(tmp_path, config))
    assert spec.num_layers == 64 and spec.head_dim == 128


@pytest.mark.parametrize(
    "key",
    [
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
    ],
)
def test_missing_required_key_names_the_file_and_key(tmp_path, key):
    config = {k: v for k, v in LLAMA_31_8B_CONFIG.items() if k != key}
    path = write_config(tmp_path, config)
    with pytest.raises(SimreplayError) as info:
        get_model(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message == f"{path}: missing required key {key!r}"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"num_hidden_layers": 0}, "'num_hidden_layers' must be a positive integer"),
        ({"hidden_size": "4096"}, "'hidden_size' must be a positive integer"),
        ({"num_key_value_heads": 5}, "not a multiple of num_key_value_heads 5"),
        ({"torch_dtype": "int8"}, "torch_dtype 'int8'"),
        ({"kv_lora_rank": 512}, "multi-head latent attention"),
        ({"quantization_config": {"quant_method": "awq"}}, "quantized checkpoint"),
        ({"num_local_experts": 8}, "missing required key 'num_experts_per_tok'"),
    ],
)
def test_bad_configs_get_one_line(tmp_path, change, fragment):
    path = write_config(tmp_path, {**LLAMA_31_8B_CONFIG, **change})
    with pytest.raises(SimreplayError) as info:
        load_hf_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert fragment in message


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(SimreplayError, match="not valid JSON"):
        get_model(str(path))


runner = CliRunner()


def test_models_list_prints_an_aligned_table():
    result = runner.invoke(models_app, ["list"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "name"
    assert [line.split()[0] for line in lines[1:]] == list(MODELS)
    mixtral = next(line for line in lines if line.startswith("mixtral-8x7b "))
    assert "8/2" in mixtral and "46.70 (12.88)" in mixtral
    assert "llama-3.1-8b (default)" in result.stdout


def test_models_list_json_parses():
    result = runner.invoke(models_app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["default"] == DEFAULT_MODEL
    records = {r["name"]: r for r in payload["models"]}
    assert list(records) == list(MODELS)
    assert records["llama-3.1-8b"]["kv_bytes_per_token"] == 131072
    assert records["qwen3-30b-a3b"]["num_experts"] == 128


# --- configs as users download them (QA pass over real Hugging Face files) -------------

#: google/gemma-3-27b-it config.json, as published: its text_config leaves vocab_size,
#: max_position_embeddings and tie_word_embeddings to Gemma3TextConfig's defaults.
GEMMA3_27B_IT_CONFIG = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "model_type": "gemma3",
    "text_config": {
        "head_dim": 128,
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "model_type": "gemma3_text",
        "num_attention_heads": 32,
        "num_hidden_layers": 62,
        "num_key_value_heads": 16,
        "query_pre_attn_scalar": 168,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    },
    "torch_dtype": "bfloat16",
    "vision_config": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "model_type": "siglip_vision_model",
        "num_hidden_layers": 27,
    },
}


@pytest.mark.parametrize(
    ("rope_scaling", "fragment"),
    [
        ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": "abc"}, "'abc'"),
        ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": None}, "None"),
        ({"rope_type": "yarn", "factor": float("nan")}, "nan"),
        ({"rope_type": "dynamic", "factor": float("inf")}, "inf"),
        # A QA pass: 1e306 overflowed int() (a traceback), 1e-6 gave max_model_len 0 and
        # rejected every request, and the wrong types ran unextended without a word.
        ({"type": "linear", "factor": 1e306}, "1e+306"),
        ({"type": "linear", "factor": 1e-6}, "1e-06"),
        ({"type": "linear", "factor": "2.0"}, "'2.0'"),
        ("yarn", "must be an object"),
        ([1, 2], "must be an object"),
    ],
)
def test_bad_rope_scaling_is_one_line_not_a_traceback(tmp_path, rope_scaling, fragment):
    """A string or null original_max_position_embeddings raised ValueError/TypeError, a NaN
    or infinite factor (Python's json reads both) ValueError/OverflowError: tracebacks."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA_31_8B_CONFIG, "rope_scaling": rope_scaling}))
    with pytest.raises(SimreplayError) as info:
        load_hf_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: rope_scaling ")
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize("tied", ["false", 0, None])
def test_tie_word_embeddings_must_be_a_json_boolean(tmp_path, tied):
    """ "false" (a string) was read as true: 0.5B parameters of Llama-3.1-8B's LM head
    silently left out. null means the family default, as transformers has it."""
    path = write_config(tmp_path, {**LLAMA_31_8B_CONFIG, "tie_word_embeddings": tied})
    if tied is None:
        assert not load_hf_config(path).tied_embeddings
        return
    with pytest.raises(SimreplayError, match="'tie_word_embeddings' must be true or false"):
        load_hf_config(path)


def test_gemma3_published_config_is_read_with_its_family_defaults(tmp_path):
    """Gemma-3-27B's published file was refused ("missing required key 'vocab_size'");
    its linear rope factor of 8 must not extend the context (vLLM v0.11 skips rope
    scaling for gemma3: max_position_embeddings is already the scaled 128K)."""
    spec = load_hf_config(write_config(tmp_path, GEMMA3_27B_IT_CONFIG))
    assert spec.vocab_size == 262208
    assert spec.max_context_tokens == 131072
    assert spec.tied_embeddings and spec.head_dim == 128
    # 27.4B published, of which the SigLIP vision tower is about 0.4B
    assert param_count(spec)["total"] / 1e9 == pytest.approx(27.0, abs=0.05)


def test_quantization_config_at_the_top_of_a_multimodal_config_is_not_dropped(tmp_path):
    """vLLM reads quantization_config from the top level; it was dropped with the rest of
    the top level when text_config was used, so an AWQ checkpoint counted 2 bytes a weight."""
    config = {
        "model_type": "llava",
        "text_config": QWEN3_32B_CONFIG,
        "quantization_config": {"bits": 4, "quant_method": "awq"},
    }
    with pytest.raises(SimreplayError, match="quant_method 'awq'"):
        load_hf_config(write_config(tmp_path, config))


LLAMA4_SCOUT_TEXT = {
    "model_type": "llama4_text",
    "hidden_size": 5120,
    "intermediate_size": 8192,
    "intermediate_size_mlp": 16384,
    "num_hidden_layers": 48,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 202048,
    "max_position_embeddings": 10485760,
    "num_local_experts": 16,
    "num_experts_per_tok": 1,
    "interleave_moe_layer_step": 1,
    "attention_chunk_size": 8192,
}


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        # Llama-4 Scout: 101.7B counted for 109B, 11.1B active for 17B (no shared expert);
        # Maverick (interleave 2) 778B for 400B.
        (
            {"model_type": "llama4", "text_config": LLAMA4_SCOUT_TEXT},
            "Llama-4's MoE",
        ),
        # Jamba: Mamba layers counted as attention, every layer as MoE.
        (
            {**MIXTRAL_CONFIG, "model_type": "jamba", "attn_layer_period": 8},
            "model_type 'jamba' is not a family simreplay reads",
        ),
        (
            {**QWEN3_32B_CONFIG, "layer_types": ["full_attention", "linear_attention"] * 32},
            "layer_types linear_attention",
        ),
    ],
)
def test_families_with_unread_shape_keys_are_refused(tmp_path, config, fragment):
    path = write_config(tmp_path, config)
    with pytest.raises(SimreplayError) as info:
        load_hf_config(path)
    assert str(info.value).startswith(str(path)) and fragment in str(info.value)


def test_sliding_window_and_vision_tower_are_noted(tmp_path):
    """Mistral-7B-v0.1's 4,096-token window and Gemma-3's vision tower were dropped without
    a word; Qwen2's use_sliding_window false (vLLM get_sliding_window) is no window."""
    mistral = {**LLAMA_31_8B_CONFIG, "model_type": "mistral", "sliding_window": 4096}
    notes = load_hf_config(write_config(tmp_path / "m", mistral)).notes
    assert len(notes) == 1 and "sliding-window attention (4,096 tokens)" in notes[0]
    gemma3 = load_hf_config(write_config(tmp_path / "g", GEMMA3_27B_IT_CONFIG)).notes
    assert any("vision_config" in note for note in gemma3)
    qwen2 = {**QWEN3_32B_CONFIG, "sliding_window": 4096, "use_sliding_window": False}
    assert load_hf_config(write_config(tmp_path / "q", qwen2)).notes == ()
    assert load_hf_config(write_config(tmp_path / "l", LLAMA_31_8B_CONFIG)).notes == ()
    assert "sliding-window attention (4,096 tokens)" in MODELS["mistral-7b-v0.1"].notes[0]
    assert MODELS["mistral-7b"].notes == ()


def test_run_prints_the_model_notes(tmp_path):
    from simulator.cli import app
    from simulator.io import write_parquet_atomic
    from simulator.trace.arrivals import arrival_process
    from simulator.trace.synth import synthesize

    trace = tmp_path / "t.parquet"
    write_parquet_atomic(synthesize(arrival_process("poisson", 2.0), num_requests=20), trace)
    mistral = {**LLAMA_31_8B_CONFIG, "model_type": "mistral", "sliding_window": 4096}
    config = write_config(tmp_path / "mistral-v0.1", mistral)
    result = runner.invoke(app, ["run", str(trace), "--gpus", "1xH100", "--model", str(config)])
    assert result.exit_code == 0, result.output
    assert "mistral-v0.1: sliding-window attention (4,096 tokens)" in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",  # RecursionError in json
        '{"num_hidden_layers": ' + "9" * 5000 + "}",  # int above Python's 4,300 digits
    ],
)
def test_json_python_cannot_parse_is_one_line_not_a_traceback(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(SimreplayError) as info:
        load_hf_config(path)
    assert str(info.value).startswith(f"{path}: not valid JSON")
    assert "\n" not in str(info.value)


def test_tie_word_embeddings_at_the_top_of_a_nested_config_applies(tmp_path):
    """Qwen2.5-VL-3B saved in transformers' nested layout keeps tie_word_embeddings at the
    top level: it was dropped with the top level, counting a 0.31B LM head that is not
    there. A text_config's own value wins."""
    text = {k: v for k, v in QWEN3_32B_CONFIG.items() if k != "tie_word_embeddings"}
    config = {"model_type": "qwen2_5_vl", "tie_word_embeddings": True, "text_config": text}
    assert load_hf_config(write_config(tmp_path / "a", config)).tied_embeddings
    config["text_config"] = {**text, "tie_word_embeddings": False}
    assert not load_hf_config(write_config(tmp_path / "b", config)).tied_embeddings


def test_sweep_and_plan_print_the_model_notes(tmp_path):
    """run printed a config's notes; sweep and plan resolved the same model and said nothing."""
    from simulator.cli import app
    from simulator.io import write_parquet_atomic
    from simulator.trace.arrivals import arrival_process
    from simulator.trace.synth import synthesize

    trace = tmp_path / "t.parquet"
    write_parquet_atomic(synthesize(arrival_process("poisson", 2.0), num_requests=20), trace)
    mistral = {**LLAMA_31_8B_CONFIG, "model_type": "mistral", "sliding_window": 4096}
    config = str(write_config(tmp_path / "mistral-v0.1", mistral))
    expected = "note: mistral-v0.1: sliding-window attention (4,096 tokens)"
    sweep = runner.invoke(
        app,
        ["sweep", str(trace), "--gpus", "1xH100", "--model", config, "--out",
         str(tmp_path / "sweep"), "--workers", "1"],
    )  # fmt: skip
    assert sweep.exit_code == 0, sweep.output
    assert sum(line.startswith(expected) for line in sweep.stderr.splitlines()) == 1
    plan = runner.invoke(
        app,
        ["plan", str(trace), "--slo", "ttft_p99_ms=100000", "--gpu-types", "H100",
         "--tp", "1", "--max-gpus", "1", "--model", config],
    )  # fmt: skip
    assert plan.exit_code == 0, plan.output
    assert sum(line.startswith(expected) for line in plan.stderr.splitlines()) == 1


def test_a_known_family_mlp_is_gated_whatever_hidden_act_says(tmp_path):
    """transformers' LlamaMLP (and Qwen2's, Mistral's, Phi-3's) applies hidden_act to a gate
    projection: a Llama config with "gelu" lost a third of its MLP weights. A config without
    model_type is still judged by its activation."""
    gelu = load_hf_config(
        write_config(tmp_path / "a", {**LLAMA_31_8B_CONFIG, "hidden_act": "gelu"})
    )
    assert gelu.gated_mlp
    assert param_count(gelu) == param_count(MODELS["llama-3.1-8b"])
    untyped = {k: v for k, v in LLAMA_31_8B_CONFIG.items() if k != "model_type"}
    plain = load_hf_config(write_config(tmp_path / "b", {**untyped, "hidden_act": "gelu"}))
    assert not plain.gated_mlp
    assert not load_hf_config(write_config(tmp_path / "c", PHI2_CONFIG)).gated_mlp


def test_a_key_missing_from_text_config_is_named_there(tmp_path):
    """A text_config of a family without known defaults that leaves out its layers while
    the top level has a vocab_size: "missing required key 'num_hidden_layers'" did not say
    where."""
    text = {"model_type": "granite", "max_position_embeddings": 4096, "vocab_size": 32064}
    path = write_config(tmp_path, {"model_type": "llava", "vocab_size": 32064, "text_config": text})
    with pytest.raises(SimreplayError) as info:
        load_hf_config(path)
    assert str(info.value) == f"{path}: missing required key 'text_config.num_hidden_layers'"
    path = write_config(tmp_path, {"model_type": "llava", "text_config": [1, 2]})
    with pytest.raises(SimreplayError) as info:
        load_hf_config(path)
    assert str(info.value) == f"{path}: 'text_config' must be a JSON object, got list"


def test_llavas_text_config_reads_the_llama_and_mistral_defaults_it_leaves_out(tmp_path):
    """A QA pass: llava-1.5-7b-hf's published config was refused (its text_config leaves
    the shape to LlamaConfig's defaults, as transformers writes it), though the README says
    LLaVA is read; a top-level Llama config without its layers is still refused."""
    text = {"model_type": "llama", "max_position_embeddings": 4096, "vocab_size": 32064,
            "rms_norm_eps": 1e-05, "torch_dtype": "float16"}  # fmt: skip
    path = write_config(tmp_path, {"model_type": "llava", "vocab_size": 32064, "text_config": text})
    spec = load_hf_config(path)
    assert (spec.num_layers, spec.hidden_size, spec.num_heads, spec.num_kv_heads) == (
        32, 4096, 32, 32
    )  # fmt: skip
    assert spec.intermediate_size == 11008 and spec.max_context_tokens == 4096
    assert 6.7e9 < param_count(spec)["total"] < 7.0e9  # Vicuna-7B, as Llama-2-7B
    assert any("text_config leaves out" in n and "num_hidden_layers" in n for n in spec.notes)
    mistral = write_config(tmp_path, {"model_type": "llava_next",
                                      "text_config": {"model_type": "mistral"}})  # fmt: skip
    assert load_hf_config(mistral).num_kv_heads == 8
    top = write_config(tmp_path, {"model_type": "llama", "vocab_size": 32000})
    with pytest.raises(SimreplayError, match="missing required key 'num_hidden_layers'"):
        load_hf_config(top)


def test_an_explicit_null_in_text_config_is_not_a_left_out_key(tmp_path):
    """QA (stop 36): Mistral-Small-3.1's text_config says "sliding_window": null (no
    window, to transformers and vLLM); it was filled with MistralConfig's 4,096, with
    notes that a window was left unmodelled."""
    text = {"model_type": "mistral", "head_dim": 128, "hidden_size": 5120,
            "intermediate_size": 32768, "num_hidden_layers": 40, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 131072,
            "max_position_embeddings": 131072, "sliding_window": None}  # fmt: skip
    path = write_config(tmp_path, {"model_type": "mistral3", "text_config": text})
    spec = load_hf_config(path)
    assert not any("sliding" in n for n in spec.notes), spec.notes
    assert not any("sliding_window" in n for n in spec.notes if "leaves out" in n)
    left_out = write_config(tmp_path, {"model_type": "mistral3", "text_config": {
        k: v for k, v in text.items() if k != "sliding_window"}})  # fmt: skip
    assert any("sliding-window attention (4,096 tokens)" in n for n in (
        load_hf_config(left_out).notes))  # fmt: skip


def test_cross_attention_layers_and_mllama_are_refused(tmp_path):
    """A QA pass: Llama-3.2-Vision ran with its 8 cross-attention layers counted as
    self-attention KV (25 % too much); vLLM v0.11 does not serve it."""
    base = {"hidden_size": 4096, "num_hidden_layers": 40, "num_attention_heads": 32,
            "intermediate_size": 14336, "vocab_size": 128256}  # fmt: skip
    text = {**base, "model_type": "mllama_text_model", "cross_attention_layers": [3, 8]}
    path = write_config(tmp_path, {"model_type": "mllama", "text_config": text})
    with pytest.raises(SimreplayError, match="cross-attention layers"):
        load_hf_config(path)
    for family in ("mllama", "falcon"):  # falcon: was "missing key 'intermediate_size'"
        path = write_config(tmp_path, {**base, "model_type": family})
        with pytest.raises(SimreplayError, match=f"model_type '{family}' is not a family"):
            load_hf_config(path)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        # A QA pass: "1" (and true, 0, [1]) was "an MoE with decoder_sparse_step != 1 is not
        # modelled", a string read as a sparse step; true read as 1.
        ({"decoder_sparse_step": "1"}, "'decoder_sparse_step' must be a positive integer, got '1'"),
        ({"decoder_sparse_step": True}, "'decoder_sparse_step' must be a positive integer"),
        ({"decoder_sparse_step": 0}, "'decoder_sparse_step' must be a positive integer, got 0"),
        ({"decoder_sparse_step": 2}, "decoder_sparse_step != 1 is not modelled"),
        ({"n_shared_experts": "0"}, "'n_shared_experts' must be an integer >= 0, got '0'"),
        ({"first_k_dense_replace": -1}, "'first_k_dense_replace' must be an integer >= 0"),
    ],
)
def test_moe_layout_keys_of_the_wrong_type_name_the_key(tmp_path, change, fragment):
    path = write_config(tmp_path, {**QWEN3_MOE_CONFIG, **change})
    with pytest.raises(SimreplayError) as info:
        load_hf_config(path)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("top_has_layers", [True, False])
def test_a_shape_key_that_differs_from_text_config_is_refused(tmp_path, top_has_layers):
    """A QA pass: a config with a full top-level shape and a text_config of another was read
    from the top level without a word; which the language model is, is not knowable. A
    wrapper's top level without layers of its own (LLaVA's) is not a model: its keys are
    its own, and text_config is the language model."""
    top = (
        dict(LLAMA_31_8B_CONFIG) if top_has_layers else {"model_type": "llava", "hidden_size": 4096}
    )
    text = {**LLAMA_31_8B_CONFIG, "num_hidden_layers": 40, "hidden_size": 5120}
    path = write_config(tmp_path, {**top, "text_config": text})
    if not top_has_layers:
        spec = load_hf_config(path)
        assert (spec.num_layers, spec.hidden_size) == (40, 5120)
        return
    with pytest.raises(SimreplayError) as info:
        load_hf_config(path)
    assert str(info.value).startswith(
        f"{path}: num_hidden_layers 32 at the top level and text_config.num_hidden_layers 40 differ"
    )
    # The same values in both (Qwen2.5-VL's files, written by newer transformers) are read.
    same = {**LLAMA_31_8B_CONFIG, "text_config": dict(LLAMA_31_8B_CONFIG)}
    assert load_hf_config(write_config(tmp_path / "same", same)).num_layers == 32


def test_an_unchecked_llama_shaped_family_is_read_with_a_note(tmp_path):
    """Granite, OLMo2, InternLM3 and the like carry Llama's keys: they are read as Llama,
    judged by their activation, with a note saying the family was not checked; a hybrid
    state-space family is refused instead (above)."""
    granite = {**LLAMA_31_8B_CONFIG, "model_type": "granite"}
    spec = load_hf_config(write_config(tmp_path / "g", granite))
    llama = load_hf_config(write_config(tmp_path / "l", LLAMA_31_8B_CONFIG))
    assert param_count(spec) == param_count(llama) and spec.gated_mlp
    assert len(spec.notes) == 1 and "model_type 'granite' is not a family" in spec.notes[0]
    assert "gated MLP" in spec.notes[0]
    plain = {**granite, "model_type": "starcoder2", "hidden_act": "gelu_pytorch_tanh"}
    spec = load_hf_config(write_config(tmp_path / "s", plain))
    assert not spec.gated_mlp and "plain MLP" in spec.notes[0]
    with pytest.raises(SimreplayError, match="model_type 'falcon_h1' is not a family"):
        load_hf_config(write_config(tmp_path / "f", {**granite, "model_type": "falcon_h1"}))


def test_a_config_folder_named_like_a_catalog_model_says_it_is_read(tmp_path, monkeypatch):
    # A QA pass: ./llama-3.1-70b/config.json (a Qwen 7B) ran, and the output said
    # "Model llama-3.1-70b" with nothing to tell it was not the catalog's 70B.
    folder = tmp_path / "llama-3.1-70b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA_31_8B_CONFIG))
    monkeypatch.chdir(tmp_path)
    spec = get_model("llama-3.1-70b")
    assert spec.num_layers == LLAMA_31_8B_CONFIG["num_hidden_layers"]
    assert any("not the catalog's llama-3.1-70b" in note for note in spec.notes)
    assert not any("catalog" in note for note in get_model("./llama-3.1-70b").notes)


def test_layer_types_given_as_text_is_named_not_spelled_out(tmp_path):
    # A QA pass: "full_attention" was read letter by letter ("layer_types _, a, e, f, ...
    # is not modelled").
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA_31_8B_CONFIG, "layer_types": "full_attention"}))
    with pytest.raises(SimreplayError, match="layer_types must be a list of layer kinds"):
        load_hf_config(path)


def test_quant_method_is_read_in_any_case_as_vllm_does(tmp_path):
    path = tmp_path / "config.json"
    fp8 = {"quant_method": "FP8", "activation_scheme": "dynamic"}
    path.write_text(json.dumps({**LLAMA_31_8B_CONFIG, "quantization_config": fp8}))
    lower = tmp_path / "lower.json"
    lower.write_text(
        json.dumps({**LLAMA_31_8B_CONFIG, "quantization_config": {**fp8, "quant_method": "fp8"}})
    )
    assert (
        load_hf_config(path).weight_bytes_per_param == load_hf_config(lower).weight_bytes_per_param
    )


def test_a_block_fp8_checkpoint_refuses_a_tp_that_splits_its_weight_blocks(tmp_path):
    """A QA pass: Qwen3-30B-A3B-FP8 (experts 768 wide, 128 x 128 weight blocks) ran at TP 4
    and 8, which vLLM refuses to load (768 / 4 = 192 is not whole blocks)."""
    from simulator.memory import validate_tp

    config = {
        "model_type": "qwen3_moe", "hidden_size": 2048, "moe_intermediate_size": 768,
        "intermediate_size": 6144, "num_hidden_layers": 48, "num_attention_heads": 32,
        "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128,
        "num_experts_per_tok": 8, "vocab_size": 151936, "max_position_embeddings": 40960,
    }  # fmt: skip
    block = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    spec = load_hf_config(write_config(tmp_path, {**config, "quantization_config": block}))
    assert spec.weight_block == (128, 128)
    for tp in (1, 2):
        validate_tp(spec, 8, tp)
    for tp in (4, 8):
        with pytest.raises(SimreplayError, match=f"--tp {tp}: .* not a multiple of its FP8"):
            validate_tp(spec, 8, tp)
    per_tensor = {"quant_method": "fp8"}  # no blocks: every TP the heads allow
    validate_tp(
        load_hf_config(write_config(tmp_path, {**config, "quantization_config": per_tensor})), 8, 8
    )
    bad = {"quant_method": "fp8", "weight_block_size": [128]}
    with pytest.raises(SimreplayError, match=r"weight_block_size must be two positive integers"):
        load_hf_config(write_config(tmp_path, {**config, "quantization_config": bad}))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            {"sliding_window": "4096"},
            "'sliding_window' must be an integer >= 0 or null, got '4096'",
        ),
        ({"sliding_window": -1}, "'sliding_window' must be an integer >= 0 or null, got -1"),
        ({"layer_types": ["full_attention"] * 4}, "layer_types lists 4 layers, num_hidden_layers"),
    ],
)
def test_a_sliding_window_or_layer_list_that_cannot_be_read_is_refused(tmp_path, change, fragment):
    """A QA pass: these were read without a word (the window's note lost)."""
    config = {"model_type": "mistral", "hidden_size": 4096, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
              "vocab_size": 32000, "max_position_embeddings": 32768}  # fmt: skip
    load_hf_config(write_config(tmp_path, config))
    with pytest.raises(SimreplayError, match=re.escape(fragment)):
        load_hf_config(write_config(tmp_path, {**config, **change}))


def test_a_config_without_a_known_family_says_how_it_was_read(tmp_path):
    """A family simreplay has not checked, or a config with no model_type at all (a QA
    pass, stop 36: Gemma-2-9B less its model_type read as 8.0B untied parameters without a
    word), is read as a Llama-shaped decoder with a note giving its parameter count."""
    base = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
            "max_position_embeddings": 8192, "hidden_act": "silu"}  # fmt: skip
    for model_type, said in (
        (None, "has no model_type: read as a Llama-shaped decoder (gated MLP from hidden_act "
               "'silu', embeddings untied) of 8.03B parameters"),
        ("starcoder9", "model_type 'starcoder9' is not a family simreplay has checked: read "
                       "as a Llama-shaped decoder"),
    ):  # fmt: skip
        config = base if model_type is None else {**base, "model_type": model_type}
        spec = load_hf_config(write_config(tmp_path / str(model_type), config))
        assert any(said in note for note in spec.notes), spec.notes
    known = load_hf_config(write_config(tmp_path / "llama", {**base, "model_type": "llama"}))
    assert not any("Llama-shaped" in note for note in known.notes)


@pytest.mark.parametrize(
    ("quantization", "said"),
    [
        ("fp8", 'quantization_config must be a JSON object with a quant_method (transformers '
                'writes one), got "fp8"'),
        ({}, "quantization_config is empty: give its quant_method"),
    ],
)  # fmt: skip
def test_a_quantization_config_that_is_no_object_is_named(tmp_path, quantization, said):
    """QA (stop 36): both read as "quant_method None"."""
    config = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
              "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 128256,
              "max_position_embeddings": 8192, "quantization_config": quantization}  # fmt: skip
    with pytest.raises(SimreplayError, match=re.escape(said)):
        load_hf_config(write_config(tmp_path, config))


def test_a_key_given_twice_in_a_config_is_refused(tmp_path):
    """QA (stop 36): num_hidden_layers given twice was read as the second, silently."""
    path = tmp_path / "config.json"
    path.write_text(
        '{"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, '
        '"num_hidden_layers": 16, "intermediate_size": 14336, "num_attention_heads": 32, '
        '"vocab_size": 32000, "max_position_embeddings": 4096}'
    )
    with pytest.raises(SimreplayError, match="key 'num_hidden_layers' is given twice"):
        load_hf_config(path)
