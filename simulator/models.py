"""Model catalog, a Hugging Face ``config.json`` loader, and parameter counts.

Every catalog shape is copied from the model's published Hugging Face ``config.json``
(the repository named in ``source``): ``num_hidden_layers``, ``hidden_size``,
``num_attention_heads``, ``num_key_value_heads``, ``head_dim``, ``intermediate_size`` (or
``moe_intermediate_size``), ``vocab_size``, ``max_position_embeddings``, the MoE expert
counts and ``tie_word_embeddings``. Choices where a family has several configs:

- ``mistral-7b`` is Mistral-7B-v0.3 (vocabulary 32,768, no sliding window);
  ``mistral-7b-v0.1`` is kept apart (vocabulary 32,000; its 4,096-token sliding window is
  not modelled, so its KV use is that of full attention, an upper bound).
- ``qwen2.5-*`` are the Instruct configs, whose ``max_position_embeddings`` is 32,768 (the
  base checkpoints say 131,072; the shapes are otherwise identical).

Parameter counts include embeddings, attention and MLP matrices, MoE routers and RMSNorm
weights; biases (Qwen2.5's QKV bias, phi-2's) and per-head Q/K norms are left out (under
0.1 % of any catalog model).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from simulator.checks import RepeatedKey, object_once
from simulator.errors import SimreplayError
from simulator.specs import ModelSpec

#: The model ``--model`` means when omitted.
DEFAULT_MODEL = "llama-3.1-8b"


#: Dense Llama-style models (SwiGLU MLP, head_dim = hidden / heads, untied embeddings):
#: name, layers, hidden, heads, KV heads, FFN, vocab, max context, Hugging Face repo.
_DENSE_LLAMA_LIKE = (
    ("llama-2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, "meta-llama/Llama-2-7b-hf"),
    ("llama-2-13b", 40, 5120, 40, 40, 13824, 32000, 4096, "meta-llama/Llama-2-13b-hf"),
    ("llama-2-70b", 80, 8192, 64, 8, 28672, 32000, 4096, "meta-llama/Llama-2-70b-hf"),
    ("llama-3-8b", 32, 4096, 32, 8, 14336, 128256, 8192, "meta-llama/Meta-Llama-3-8B"),
    ("llama-3-70b", 80, 8192, 64, 8, 28672, 128256, 8192, "meta-llama/Meta-Llama-3-70B"),
    ("llama-3.1-8b", 32, 4096, 32, 8, 14336, 128256, 131072, "meta-llama/Llama-3.1-8B"),
    ("llama-3.1-70b", 80, 8192, 64, 8, 28672, 128256, 131072, "meta-llama/Llama-3.1-70B"),
    ("mistral-7b", 32, 4096, 32, 8, 14336, 32768, 32768, "mistralai/Mistral-7B-v0.3"),
    ("mistral-7b-v0.1", 32, 4096, 32, 8, 14336, 32000, 32768, "mistralai/Mistral-7B-v0.1"),
    ("qwen2.5-7b", 28, 3584, 28, 4, 18944, 152064, 32768, "Qwen/Qwen2.5-7B-Instruct"),
    ("qwen2.5-32b", 64, 5120, 40, 8, 27648, 152064, 32768, "Qwen/Qwen2.5-32B-Instruct"),
    ("qwen2.5-72b", 80, 8192, 64, 8, 29568, 152064, 32768, "Qwen/Qwen2.5-72B-Instruct"),
    ("codellama-34b", 48, 8192, 64, 8, 22016, 32000, 16384, "codellama/CodeLlama-34b-hf"),
)

_ALIASES = {
    "llama-3-8b": ("meta-llama-3-8b",),
    "llama-3-70b": ("meta-llama-3-70b",),
    "llama-3.1-8b": ("meta-llama-3.1-8b",),
    "llama-3.1-70b": ("meta-llama-3.1-70b",),
    "mistral-7b": ("mistral-7b-v0.3",),
    "mixtral-8x7b": ("mixtral-8x7b-v0.1",),
    "codellama-34b": ("code-llama-34b",),
}


def _dense(row: tuple[str, int, int, int, int, int, int, int, str]) -> ModelSpec:
    name, layers, hidden, heads, kv_heads, ffn, vocab, context, repo = row
    return ModelSpec(
        name=name,
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=hidden // heads,
        intermediate_size=ffn,
        vocab_size=vocab,
        max_context_tokens=context,
        aliases=_ALIASES.get(name, ()),
        source=f"{repo} config.json",
    )


def _sliding_window_note(name: str, window_tokens: int) -> str:
    return (
        f"{name}: sliding-window attention ({window_tokens:,} tokens) is not modelled: the KV "
        "cache is counted as full attention on every layer, more than vLLM allocates, so KV "
        "capacity is understated (results err pessimistic)"
    )


_SPECS = {
    spec.name: spec
    for spec in (
        *(_dense(row) for row in _DENSE_LLAMA_LIKE),
        ModelSpec(
            name="mixtral-8x7b",
            num_layers=32,
            hidden_size=4096,
            num_heads=32,
            num_kv_heads=8,
            head_dim=128,
            intermediate_size=14336,
            vocab_size=32000,
            max_context_tokens=32768,
            num_experts=8,
            num_experts_per_token=2,
            aliases=_ALIASES["mixtral-8x7b"],
            source="mistralai/Mixtral-8x7B-v0.1 config.json",
        ),
        ModelSpec(
            name="qwen3-8b",
            num_layers=36,
            hidden_size=4096,
            num_heads=32,
            num_kv_heads=8,
            head_dim=128,
            intermediate_size=12288,
            vocab_size=151936,
            max_context_tokens=40960,
            source="Qwen/Qwen3-8B config.json",
        ),
        ModelSpec(
            name="qwen3-32b",
            num_layers=64,
            hidden_size=5120,
            num_heads=64,
            num_kv_heads=8,
            head_dim=128,  # explicit in the config: 64 x 128 = 8192 != hidden 5120
            intermediate_size=25600,
            vocab_size=151936,
            max_context_tokens=40960,
            source="Qwen/Qwen3-32B config.json",
        ),
        ModelSpec(
            name="qwen3-30b-a3b",
            num_layers=48,
            hidden_size=2048,
            num_heads=32,
            num_kv_heads=4,
            head_dim=128,
            intermediate_size=768,  # moe_intermediate_size; the dense 6144 is unused
            vocab_size=151936,
            max_context_tokens=40960,
            num_experts=128,
            num_experts_per_token=8,
            source="Qwen/Qwen3-30B-A3B config.json",
        ),
        ModelSpec(
            name="phi-2",
            num_layers=32,
            hidden_size=2560,
            num_heads=32,
            num_kv_heads=32,
            head_dim=80,
            intermediate_size=10240,
            vocab_size=51200,
            max_context_tokens=2048,
            gated_mlp=False,  # fc1 -> gelu_new -> fc2; partial rotary (0.4) does not change shape
            source="microsoft/phi-2 config.json",
        ),
    )
}

_SPECS["mistral-7b-v0.1"] = replace(
    _SPECS["mistral-7b-v0.1"], notes=(_sliding_window_note("mistral-7b-v0.1", 4096),)
)

#: Canonical name -> spec. Plain dict registry; order is the order of ``models list``.
MODELS: dict[str, ModelSpec] = {
    name: _SPECS[name]
    for name in (
        "llama-2-7b",
        "llama-2-13b",
        "llama-2-70b",
        "llama-3-8b",
        "llama-3-70b",
        "llama-3.1-8b",
        "llama-3.1-70b",
        "mistral-7b",
        "mistral-7b-v0.1",
        "mixtral-8x7b",
        "qwen2.5-7b",
        "qwen2.5-32b",
        "qwen2.5-72b",
        "qwen3-8b",
        "qwen3-32b",
        "qwen3-30b-a3b",
        "codellama-34b",
        "phi-2",
    )
}


def _key(name: str) -> str:
    """Lookup key: case, hyphens, underscores and spaces do not matter (dots do)."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def _build_lookup(models: dict[str, ModelSpec]) -> dict[str, str]:
    lookup: dict[str, str] = {}
    for spec in models.values():
        for name in (spec.name, *spec.aliases):
            key = _key(name)
            if lookup.setdefault(key, spec.name) != spec.name:
                raise ValueError(f"model alias {name!r} names both {lookup[key]} and {spec.name}")
    return lookup


_LOOKUP = _build_lookup(MODELS)

#: Suffixes that name a fine-tune of the same shape, e.g. ``Llama-2-7b-chat-hf``, or a
#: dated release of one, ``Qwen3-30B-A3B-Instruct-2507``.
_VARIANT_SUFFIX = re.compile(r"([-_ ](instruct|chat|hf|base|it|\d{4}))+$", re.IGNORECASE)


#: A fine-tune's name before a version suffix, e.g. ``Mixtral-8x7B-Instruct-v0.1``.
_VARIANT_BEFORE_VERSION = re.compile(r"[-_ ](instruct|chat|it)(?=[-_ ]v\d)", re.IGNORECASE)


def known_model_names() -> str:
    """The canonical names, comma-separated, for error messages."""
    return ", ".join(MODELS)


def _catalog_lookup(name: str) -> ModelSpec | None:
    candidates = [name.strip()]
    if "/" in name:  # a Hugging Face repo id: the organisation does not matter
        candidates.append(name.strip().rsplit("/", 1)[1])
    for candidate in list(candidates):
        candidates.append(_VARIANT_SUFFIX.sub("", candidate))
        # Mistral's ids put the version after the fine-tune: Mistral-7B-Instruct-v0.3.
        candidates.append(_VARIANT_BEFORE_VERSION.sub("", candidate))
    for candidate in candidates:
        canonical = _LOOKUP.get(_key(candidate))
        if canonical is not None:
            return MODELS[canonical]
    return None


def get_model(name_or_path: str | os.PathLike[str]) -> ModelSpec:
    """Resolve ``--model``: a catalog name or alias, or a Hugging Face ``config.json``.

    Parameters
    ----------
    name_or_path : str
        A catalog name (``"llama-3.1-8b"``; case, ``-``, ``_`` and spaces are ignored, a
        Hugging Face organisation prefix and ``-Instruct``/``-chat``/``-hf`` suffixes are
        dropped, as is ``-Instruct`` before a version: ``Mistral-7B-Instruct-v0.3``), or the
        path of a ``config.json`` or of a directory that holds one. An
        existing config wins over a catalog name.

    Returns
    -------
    ModelSpec

    Raises
    ------
    SimreplayError
        For an unknown name (the message lists the catalog) or an unreadable config.
    """
    if isinstance(name_or_path, os.PathLike):  # Scenario(model=Path(...)) in the API
        name_or_path = os.fspath(name_or_path)
    if not name_or_path.strip():
        # Path("") is the current folder: an unset $MODEL ran whatever ./config.json held.
        raise SimreplayError("--model: empty value (expected a catalog name or a config.json path)")
    path = Path(name_or_path).expanduser()
    if path.is_file() or (path / "config.json").is_file():
        spec = load_hf_config(path)
        if _catalog_lookup(name_or_path) is not None and not any(c in name_or_path for c in "/\\"):
            # The output named the catalog model while it ran the file's.
            read = path if path.is_file() else path / "config.json"
            spec = replace(
                spec,
                notes=(
                    *spec.notes,
                    f"--model {name_or_path}: read {read} (a file here of that name), not "
                    f"the catalog's {name_or_path}; give ./{name_or_path} to say you mean the "
                    "file, or run from another folder for the catalog's",
                ),
            )
        return spec
    spec = _catalog_lookup(name_or_path)
    if spec is not None:
        return spec
    if path.is_dir():
        return load_hf_config(path)  # names the missing config.json
    if name_or_path.lower().endswith(".json"):
        raise SimreplayError(
            f"{name_or_path}: no such file (--model takes a catalog name or the path of a "
            "Hugging Face config.json)"
        )
    looks_like_path = "/" in name_or_path
    where = " (and no config.json at that path)" if looks_like_path else ""
    close = difflib.get_close_matches(_key(name_or_path), list(_LOOKUP), n=1, cutoff=0.8)
    hint = f" (did you mean {_LOOKUP[close[0]]}?)" if close else ""
    raise SimreplayError(
        f"unknown model {name_or_path!r}{where}{hint}; known: {known_model_names()}; "
        "or give the path of a Hugging Face config.json"
    )


def model_notes(names_or_paths: list[str]) -> list[str]:
    """Each model's ``ModelSpec.notes`` in order, for commands that resolve many scenarios
    (``sweep``, ``plan``) and print a model's notes once instead of per scenario."""
    return [message for name in names_or_paths for message in get_model(name).notes]


#: ``hidden_act`` values of SwiGLU-style MLPs (gate, up and down projections), for a config
#: without ``model_type``.
_GATED_ACTIVATIONS = {"silu", "swish", "swiglu"}
#: Known families with a plain two-matrix MLP; every other one in ``_KNOWN_MODEL_TYPES``
#: has gate, up and down projections whatever ``hidden_act`` is (transformers' LlamaMLP,
#: Qwen2MLP, GemmaMLP and Phi3MLP apply it to the gate).
_PLAIN_MLP_TYPES = {"phi"}
#: Bytes per weight as vLLM serves a checkpoint of each dtype with its default
#: ``--dtype auto``: float32 checkpoints are served in 16-bit (vLLM v0.11
#: ``_resolve_auto_dtype``: bfloat16 where the GPU supports it, else float16), as every
#: float32 config on the Hub would otherwise double its weights.
_DTYPE_BYTES = {"bfloat16": 2.0, "float16": 2.0, "half": 2.0, "float32": 2.0, "float": 2.0}
#: Model types whose transformers config class ties the LM head to the embeddings unless
#: the file says otherwise (GemmaConfig, Gemma2Config, Gemma3TextConfig); every other
#: family here defaults to untied.
_TIED_BY_DEFAULT_PREFIXES = ("gemma",)
#: Rope-scaling types whose ``factor`` does not extend ``max_position_embeddings``
#: (vLLM v0.11 ``_get_and_verify_max_len``).
_ROPE_TYPES_NOT_EXTENDING = {"su", "longrope", "llama3", "default", "mrope"}
#: ``model_type`` values whose configs this loader reads completely: every one of their
#: shape keys is one it knows (or refuses by name). Any other family (Falcon's
#: ``multi_query``, Jamba's Mamba layers, Llama-4's shared expert) could pass the key checks
#: and be simulated with the wrong shape, so it is refused; a config without ``model_type``
#: is read as Llama-shaped.
#: ``model_type`` values refused outright: state-space, recurrent, hybrid or
#: encoder-decoder families whose layers a Llama-shaped reading would get wrong. Other
#: unchecked families are read as Llama-shaped decoders with a note (most are: Granite,
#: OLMo, InternLM3, Yi, ...).
_UNLIKE_MODEL_TYPES = {
    "jamba",
    "bamba",
    "zamba",
    "zamba2",
    "falcon",  # parallel attention + MLP, multi-query heads: not a Llama-shaped layer
    "falcon_h1",
    "falcon_mamba",
    "nemotron_h",
    "granitemoehybrid",
    "qwen3_next",
    "recurrent_gemma",
    "lfm2",
    "minimax",
    "minimax_m1",
    "t5",
    "bart",
    "whisper",
    "bert",
    # Llama-3.2-Vision: cross-attention layers hold no per-token KV, and vLLM v0.11 no
    # longer serves encoder-decoder models (vllm-project/vllm#24907).
    "mllama",
    "mllama_text_model",
}
_KNOWN_MODEL_TYPES = {
    "",
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "qwen2_vl",
    "qwen2_vl_text",
    "qwen2_5_vl",
    "qwen2_5_vl_text",
    "phi",
    "phi3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "gpt_oss",
    "deepseek_v2",
    "deepseek_v3",
    "llava",
    "llava_next",
}
#: Defaults of transformers' config classes for keys published configs leave out
#: (``Gemma3TextConfig``: gemma-3-4b/12b/27b's ``text_config`` has no ``vocab_size``).
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
        "head_dim": 256,
        "num_key_value_heads": 4,
        "hidden_activation": "gelu_pytorch_tanh",
    },
}
#: Defaults of transformers' ``LlamaConfig`` and ``MistralConfig`` for the shape keys a
#: multimodal wrapper's ``text_config`` leaves out when they equal them (transformers writes
#: only keys that differ: llava-1.5-7b-hf's text_config holds no layer count). Read only
#: inside a ``text_config``: a top-level config without them is refused as incomplete.
_WRAPPED_TEXT_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
        "hidden_act": "silu",
    },
    "mistral": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 32000,
        "max_position_embeddings": 4096 * 32,
        "sliding_window": 4096,
        "hidden_act": "silu",
    },
}
#: Top-level keys of a multimodal config that apply to its ``text_config`` too, unless the
#: text_config has its own (vLLM reads ``quantization_config`` from the top level, where it
#: wins; transformers' nested layouts keep ``tie_word_embeddings`` there).
_TOP_LEVEL_KEYS_FOR_TEXT = ("torch_dtype", "dtype", "quantization_config", "tie_word_embeddings")
#: Shape keys read from the config: one given both in a top level that has its own layers
#: and in ``text_config``, with different values, leaves which model the file describes
#: open (transformers' ``get_text_config`` reads text_config; such a top level was read
#: here), so it is refused rather than one silently read.
_SHAPE_KEYS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "moe_intermediate_size",
    "num_experts",
    "num_local_experts",
    "num_experts_per_tok",
    "vocab_size",
    "max_position_embeddings",
)
#: Keys naming a non-text encoder whose weights are not counted.
_ENCODER_KEYS = ("vision_config", "audio_config")
#: Attention kinds of ``layer_types`` that the KV accounting covers (sliding as full).
_ATTENTION_LAYER_TYPES = {"full_attention", "sliding_attention"}


def load_hf_config(path: Path | str) -> ModelSpec:
    """Read a model shape from a Hugging Face ``config.json``.

    Parameters
    ----------
    path : Path or str
        The file, or a directory containing ``config.json``.

    Returns
    -------
    ModelSpec
        Named after the directory holding the file; ``source`` is the file path.

    Raises
    ------
    SimreplayError
        One line naming the file and the problem: unreadable or invalid JSON, a missing or
        non-positive required key (``num_hidden_layers``, ``hidden_size``,
        ``num_attention_heads``, ``intermediate_size``, ``vocab_size``,
        ``max_position_embeddings``), a ``rope_scaling`` or ``tie_word_embeddings`` of the
        wrong type, a ``model_type`` outside ``_KNOWN_MODEL_TYPES``, or an architecture the
        simulator does not model (multi-head latent attention, shared experts, Llama-4's
        MoE, mixed dense/MoE layers, non-attention ``layer_types``, quantized weights).

    Notes
    -----
    Defaults follow transformers' config classes: ``num_key_value_heads`` = heads,
    ``head_dim`` = hidden / heads, ``tie_word_embeddings`` = false (true for Gemma
    families), ``hidden_act`` = silu, ``torch_dtype`` = bfloat16. Weights are 2 bytes each,
    float32 checkpoints included: vLLM's ``--dtype auto`` serves them in 16-bit. A
    multimodal config's ``text_config`` is used when the top level has no
    ``num_hidden_layers``, with the top level's ``torch_dtype`` and
    ``quantization_config``; keys a family's published files leave out take the family's
    transformers defaults (``_FAMILY_DEFAULTS``). A ``rope_scaling`` factor extends the
    context as vLLM v0.11 does (YaRN: ``original_max_position_embeddings`` x factor; never
    for Gemma-3). What is read but not modelled (a sliding window, a vision encoder) is
    said in ``ModelSpec.notes``, which ``simreplay run`` prints.
    """
    path = Path(path).expanduser()
    file = path / "config.json" if path.is_dir() else path
    try:
        raw = json.loads(file.read_text(), object_pairs_hook=object_once)
    except RepeatedKey as exc:
        raise SimreplayError(
            f"{file}: key {exc.key!r} is given twice in one object; keep the one meant "
            "(JSON readers differ on which wins)"
        ) from None
    except FileNotFoundError:
        raise SimreplayError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SimreplayError(f"{file}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SimreplayError(f"{file}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except (ValueError, RecursionError) as exc:  # nesting or an integer too large to parse
        reason = str(exc).split(";")[0] or type(exc).__name__
        raise SimreplayError(f"{file}: not valid JSON: {reason}") from None
    if not isinstance(raw, dict):
        raise SimreplayError(f"{file}: expected a JSON object, got {type(raw).__name__}")
    config: dict[str, Any] = raw
    where = ""  # prefix naming where a shape key was looked for
    filled_note = None
    text_config = raw.get("text_config")
    if text_config is not None and not isinstance(text_config, dict):
        raise SimreplayError(
            f"{file}: 'text_config' must be a JSON object, got {type(text_config).__name__}"
        )
    # Only a top level that describes a model itself (it has its layers) competes with
    # text_config: a wrapper's own keys (LLaVA's top-level vocab_size, counting its image
    # tokens) are not the language model's, and text_config is read instead.
    competing = text_config is not None and "num_hidden_layers" in raw
    for key in _SHAPE_KEYS if competing else ():
        ours, theirs = raw.get(key), text_config.get(key)
        if ours is not None and theirs is not None and ours != theirs:
            raise SimreplayError(
                f"{file}: {key} {ours!r} at the top level and text_config.{key} {theirs!r} "
                "differ; simreplay cannot tell which is the language model's (keep the one "
                "that is)"
            )
    if "num_hidden_layers" not in raw and text_config is not None:
        top = {key: raw[key] for key in _TOP_LEVEL_KEYS_FOR_TEXT if raw.get(key) is not None}
        config = {**top, **text_config}
        defaults = _WRAPPED_TEXT_DEFAULTS.get(str(text_config.get("model_type") or "").lower())
        # Only keys left out: an explicit null is the file's value (``"sliding_window":
        # null`` is no window, as transformers and vLLM read it; a QA pass saw Mistral-Small
        # 3.1's read as 4,096 tokens, with notes that the window was unmodelled).
        filled = sorted(set(defaults or {}) - set(config))
        if defaults and filled:
            # transformers writes a wrapped text_config without the keys equal to its
            # class's defaults (llava-1.5-7b-hf: no num_hidden_layers); vLLM reads them back.
            config = {**config, **{key: defaults[key] for key in filled}}
            filled_note = (
                f"{file}: text_config leaves out {', '.join(filled)}; read as transformers' "
                f"{text_config.get('model_type')} defaults, as vLLM reads them"
            )
        if "quantization_config" in top:
            config["quantization_config"] = top["quantization_config"]
        where = "text_config."
    encoders = [key for key in _ENCODER_KEYS if raw.get(key) is not None]
    spec = _spec_from_config(config, file, encoders, where)
    if filled_note is not None:
        spec = replace(spec, notes=(*spec.notes, filled_note))
    return spec


def _spec_from_config(
    config: dict[str, Any], file: Path, encoders: list[str], where: str = ""
) -> ModelSpec:
    model_type = str(config.get("model_type") or "").lower()
    config = {**_FAMILY_DEFAULTS.get(model_type, {}), **config}

    def value(key: str, default: Any = None) -> Any:
        found = config.get(key)
        return default if found is None else found

    def positive_int(key: str, default: Any = None) -> int:
        found = value(key, default)
        if found is None:
            raise SimreplayError(f"{file}: missing required key {where + key!r}")
        if isinstance(found, bool) or not isinstance(found, int) or found < 1:
            raise SimreplayError(
                f"{file}: {where + key!r} must be a positive integer, got {found!r}"
            )
        return found

    def count(key: str) -> int:
        # "0" or true read as shared experts or dense layers the file does not have.
        found = value(key, 0)
        if isinstance(found, bool) or not isinstance(found, int) or found < 0:
            raise SimreplayError(f"{file}: {where + key!r} must be an integer >= 0, got {found!r}")
        return found

    def unsupported(what: str) -> SimreplayError:
        return SimreplayError(f"{file}: {what} is not modelled by simreplay yet")

    if value("kv_lora_rank") is not None:
        raise unsupported("multi-head latent attention (kv_lora_rank)")
    if model_type.startswith("llama4") or value("intermediate_size_mlp") is not None:
        raise unsupported(
            "Llama-4's MoE (a shared expert beside the routed ones, dense layers by "
            "interleave_moe_layer_step, chunked attention)"
        )
    if value("cross_attention_layers") is not None:
        raise unsupported("cross-attention layers (cross_attention_layers)")
    if model_type in _UNLIKE_MODEL_TYPES or model_type.startswith(("mamba", "rwkv")):
        raise SimreplayError(
            f"{file}: model_type {model_type!r} is not a family simreplay reads: its layers "
            "are not all attention + MLP decoder layers (known: "
            f"{', '.join(sorted(_KNOWN_MODEL_TYPES - {''}))})"
        )
    unchecked = model_type not in _KNOWN_MODEL_TYPES
    layer_types = value("layer_types", [])
    if not isinstance(layer_types, list):  # a string listed its letters as layer kinds
        raise SimreplayError(
            f"{file}: layer_types must be a list of layer kinds, got {layer_types!r:.60}"
        )
    other_layers = sorted({str(kind) for kind in layer_types} - _ATTENTION_LAYER_TYPES)
    if other_layers:
        raise unsupported(f"layer_types {', '.join(other_layers)}")
    if count("shared_expert_intermediate_size") or count("n_shared_experts"):
        raise unsupported("an MoE with shared experts")
    if count("first_k_dense_replace") or value("mlp_only_layers", []):
        raise unsupported("an MoE with some dense layers")
    if positive_int("decoder_sparse_step", 1) != 1:
        raise unsupported("an MoE with decoder_sparse_step != 1")
    quantization = value("quantization_config")
    if quantization is not None and not isinstance(quantization, dict):
        # "fp8" or {} read as "quant_method None" (a QA pass).
        raise SimreplayError(
            f"{file}: {where}quantization_config must be a JSON object with a quant_method "
            f"(transformers writes one), got {json.dumps(quantization)[:40]}"
        )
    if quantization == {}:
        raise SimreplayError(
            f"{file}: {where}quantization_config is empty: give its quant_method, or leave it "
            "out for a 16-bit checkpoint"
        )
    fp8_note = _fp8_checkpoint(quantization, unsupported)

    num_layers = positive_int("num_hidden_layers")
    if layer_types and len(layer_types) != num_layers:
        # A QA pass: 4 kinds for 32 layers passed without a word.
        raise SimreplayError(
            f"{file}: {where}layer_types lists {len(layer_types):,} layers, "
            f"{where}num_hidden_layers is {num_layers:,}: expected one kind per layer"
        )
    window = value("sliding_window")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int) or window < 0
    ):
        # A QA pass: "4096" or -1 dropped the sliding-window note without a word.
        raise SimreplayError(
            f"{file}: {where + 'sliding_window'!r} must be an integer >= 0 or null, got {window!r}"
        )
    hidden = positive_int("hidden_size")
    num_heads = positive_int("num_attention_heads")
    num_kv_heads = positive_int("num_key_value_heads", num_heads)
    if num_heads % num_kv_heads:
        raise SimreplayError(
            f"{file}: num_attention_heads {num_heads} is not a multiple of "
            f"num_key_value_heads {num_kv_heads}"
        )
    if value("head_dim") is None and hidden % num_heads:
        raise SimreplayError(
            f"{file}: hidden_size {hidden} is not divisible by num_attention_heads {num_heads} "
            "and there is no head_dim"
        )
    head_dim = positive_int("head_dim", hidden // num_heads)

    num_experts = 0
    for key in ("num_local_experts", "num_experts", "n_routed_experts"):
        if value(key):
            num_experts = positive_int(key)
            break
    if not num_experts and value("num_experts_per_tok"):
        # A Mixtral config with num_local_experts 0 ran as a dense model without a word.
        named = next(
            (k for k in ("num_local_experts", "num_experts", "n_routed_experts") if k in config),
            "num_local_experts",
        )
        raise SimreplayError(
            f"{file}: {where}num_experts_per_tok is {value('num_experts_per_tok')!r} but "
            f"{where + named} is {value(named)!r}: an MoE model needs its number of experts "
            "(a dense model has neither)"
        )
    experts_per_token = positive_int("num_experts_per_tok") if num_experts else 0
    if experts_per_token > num_experts:
        raise SimreplayError(
            f"{file}: num_experts_per_tok {experts_per_token} exceeds the {num_experts} experts"
        )
    if num_experts and value("moe_intermediate_size") is not None:
        ffn = positive_int("moe_intermediate_size")
    else:
        ffn = positive_int("intermediate_size")

    dtype_name = str(value("torch_dtype", value("dtype", "bfloat16"))).lower()
    dtype_name = dtype_name.removeprefix("torch.")
    if dtype_name not in _DTYPE_BYTES:
        raise SimreplayError(
            f"{file}: torch_dtype {dtype_name!r} is not one of {', '.join(_DTYPE_BYTES)}"
        )
    activation = str(value("hidden_act", value("hidden_activation", "silu"))).lower()
    gated = model_type not in _PLAIN_MLP_TYPES and (
        (model_type != "" and not unchecked) or activation in _GATED_ACTIVATIONS
    )

    tied = value("tie_word_embeddings", model_type.startswith(_TIED_BY_DEFAULT_PREFIXES))
    if not isinstance(tied, bool):
        raise SimreplayError(f"{file}: 'tie_word_embeddings' must be true or false, got {tied!r}")
    max_context = _max_context(config, positive_int("max_position_embeddings"), file, model_type)
    name = file.parent.name if file.name == "config.json" and file.parent.name else file.stem
    notes = _approximation_notes(config, name, max_context, encoders)
    if fp8_note is not None:
        notes = (f"{name}: {fp8_note}", *notes)
    if dtype_name in ("float32", "float"):
        # As vLLM warns when it downcasts: the file's own dtype is not what is served.
        notes = (
            f"{name}: a float32 checkpoint, served with 16-bit weights as vLLM v0.11's "
            "--dtype auto serves it (downcast, with a warning)",
            *notes,
        )
    spec = ModelSpec(
        name=name,
        num_layers=num_layers,
        hidden_size=hidden,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        intermediate_size=ffn,
        vocab_size=positive_int("vocab_size"),
        max_context_tokens=max_context,
        num_experts=num_experts,
        num_experts_per_token=experts_per_token,
        gated_mlp=gated,
        tied_embeddings=tied,
        weight_bytes_per_param=_DTYPE_BYTES[dtype_name],
        source=f"{file}" + (f" ({model_type})" if model_type else ""),
        notes=notes,
    )
    if fp8_note is not None:
        spec = replace(
            fp8_weights(spec),
            weight_block=_weight_block(value("quantization_config"), file, where),
        )
    if not unchecked and model_type:
        return spec
    total = param_count(spec)["total"] / 1e9
    # Without a model_type nothing says which family's defaults apply (a QA pass: Gemma-2-9B
    # less its model_type read as 8.0B parameters, untied, without a word).
    what = (
        "has no model_type"
        if not model_type
        else f"model_type {model_type!r} is not a family simreplay has checked"
    )
    return replace(
        spec,
        notes=(
            f"{name}: {what}: read "
            f"as a Llama-shaped decoder ({'gated' if gated else 'plain'} MLP from hidden_act "
            f"{activation!r}, embeddings {'tied' if tied else 'untied'}) of {total:,.2f}B "
            "parameters; compare with the published count",
            *notes,
        ),
    )


def _fp8_checkpoint(quantization: Any, unsupported: Callable[[str], SimreplayError]) -> str | None:
    """What an FP8 ``quantization_config`` is (a note), None without one; raise for others.

    vLLM (v0.11) serves ``quant_method: "fp8"`` with ``Fp8Config`` (per-tensor or block FP8
    weights, ``vllm/model_executor/layers/quantization/fp8.py``) and ``"compressed-tensors"``
    whose groups hold float 8-bit weights and activations with ``CompressedTensorsW8A8Fp8``
    (``_is_fp8_w8a8`` in ``compressed_tensors.py``). Both quantize the linear and MoE layers
    only: the embedding and LM head stay 16-bit. Anything else (AWQ, GPTQ, MXFP4, INT8,
    FP8 weight-only W8A16 groups, ...) is refused, as its bytes or kernels are not modelled.
    """
    if quantization is None:
        return None
    method = quantization.get("quant_method") if isinstance(quantization, dict) else None
    if isinstance(method, str):
        method = method.lower()  # as vLLM reads it ("FP8" is fp8)

    def refuse(detail: str = "") -> SimreplayError:
        return unsupported(
            f"a quantized checkpoint (quantization_config, quant_method {method!r}{detail}: "
            "only FP8 W8A8 checkpoints, quant_method 'fp8' or 'compressed-tensors' with "
            "float 8-bit weights and activations, are read)"
        )

    if method == "fp8":
        return (
            "FP8 checkpoint (quant_method 'fp8'): linear weights 1 byte each, embedding and "
            "LM head 16-bit"
        )
    if method != "compressed-tensors":
        raise refuse()
    groups = quantization.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise refuse(", no config_groups")
    for group_name, group in groups.items():
        weights = group.get("weights") if isinstance(group, dict) else None
        inputs = group.get("input_activations") if isinstance(group, dict) else None
        for what, args in (("weights", weights), ("input_activations", inputs)):
            if not (
                isinstance(args, dict) and args.get("type") == "float" and args.get("num_bits") == 8
            ):
                shown = (
                    f"{args.get('type')!r} {args.get('num_bits')!r}-bit"
                    if isinstance(args, dict)
                    else repr(args)
                )
                raise refuse(f", config_groups.{group_name}.{what} {shown}")
    return (
        "FP8 checkpoint (compressed-tensors, float8 W8A8): linear weights 1 byte each, "
        "embedding and LM head 16-bit"
    )


def _weight_block(quantization: dict, file: Path, where: str) -> tuple[int, int] | None:
    """An FP8 checkpoint's ``weight_block_size`` as (n, k), None when it has none (per-tensor
    or per-channel scales); one line for a value that is not two positive integers."""
    block = quantization.get("weight_block_size")
    if block is None:
        return None
    if not (
        isinstance(block, list)
        and len(block) == 2
        and all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in block)
    ):
        raise SimreplayError(
            f"{file}: {where}quantization_config.weight_block_size must be two positive "
            f"integers [n, k], got {block!r}"
        )
    return block[0], block[1]


def fp8_weights(model: ModelSpec) -> ModelSpec:
    """``model`` with FP8 linear and MoE weights (1 byte each), as vLLM's ``--quantization
    fp8`` or an FP8 checkpoint serves it: the embedding, LM head and norms keep their 16-bit
    bytes (vLLM v0.11 ``Fp8Config.get_quant_method`` quantizes ``LinearBase`` and
    ``FusedMoE`` layers only). An FP8 model is returned unchanged."""
    if model.weight_bytes_per_param <= 1.0:
        return model
    return replace(
        model, weight_bytes_per_param=1.0, embedding_bytes_per_param=model.head_bytes_per_param
    )


def _approximation_notes(
    config: dict[str, Any], name: str, max_context_tokens: int, encoders: list[str]
) -> tuple[str, ...]:
    """What the config has that is not modelled, and which way the results err."""
    notes = []
    window = config.get("sliding_window")
    # vLLM v0.11 get_sliding_window: Qwen2-style configs switch it off with
    # use_sliding_window false; a window as long as the context changes nothing.
    if (
        config.get("use_sliding_window", True) is not False
        and isinstance(window, int)
        and not isinstance(window, bool)
        and 0 < window < max_context_tokens
    ):
        notes.append(_sliding_window_note(name, window))
    if encoders:
        notes.append(
            f"{name}: encoder weights ({', '.join(encoders)}) are not counted, only the "
            "language model's: the KV cache is larger than vLLM's by their size"
        )
    return tuple(notes)


def _max_context(config: dict[str, Any], max_positions: int, file: Path, model_type: str) -> int:
    """``max_position_embeddings`` extended by a rope-scaling factor, as vLLM v0.11 does
    (not for Gemma-3, whose ``max_position_embeddings`` is already the scaled length)."""
    scaling = config.get("rope_scaling")
    if scaling is not None and not isinstance(scaling, dict):
        # "yarn" or [1, 2] ran with the unextended context, without a word.
        raise SimreplayError(
            f"{file}: rope_scaling must be an object (rope_type, factor, ...) or null, got "
            f"{scaling!r:.60}"
        )
    if scaling is None or "gemma3" in model_type:
        return max_positions
    rope_type = str(scaling.get("rope_type", scaling.get("type", "default"))).lower()
    factor = scaling.get("factor")
    if rope_type in _ROPE_TYPES_NOT_EXTENDING:
        return max_positions
    if factor is None:
        return max_positions
    if isinstance(factor, bool) or not isinstance(factor, int | float):
        raise SimreplayError(
            f"{file}: rope_scaling factor must be a number > 0, got {factor!r:.40}"
        )
    base = max_positions
    if rope_type == "yarn":
        base = scaling.get("original_max_position_embeddings", max_positions)
        if isinstance(base, bool) or not isinstance(base, int) or base < 1:
            raise SimreplayError(
                f"{file}: rope_scaling original_max_position_embeddings must be a positive "
                f"integer, got {base!r}"
            )
    # vLLM takes factors that extend or keep the context; one that leaves under a token
    # (1e-6: max_model_len 0, every request rejected) or overflows (1e306) is a typo.
    if not math.isfinite(factor) or factor <= 0 or not 1 <= base * factor <= 2**40:
        raise SimreplayError(
            f"{file}: rope_scaling factor must be a number > 0 that gives a context of 1 to "
            f"2**40 tokens ({base:,} positions x factor), got "
            f"{factor!r:.40}"
        )
    return int(base * factor)


def param_count(model: ModelSpec) -> dict[str, int]:
    """Count a model's parameters by part.

    Parameters
    ----------
    model : ModelSpec

    Returns
    -------
    dict of str to int
        ``embedding`` (input embedding), ``attention`` (Q, K, V and O projections of all
        layers), ``mlp`` (all experts and routers; the dense MLP of a dense model),
        ``mlp_active`` (what one token uses: top-k experts and the router), ``norms``
        (RMSNorm weights), ``lm_head`` (0 when tied to the embedding), ``total`` and
        ``active`` (``total`` with ``mlp`` replaced by ``mlp_active``).
    """
    hidden = model.hidden_size
    embedding = model.vocab_size * hidden
    lm_head = 0 if model.tied_embeddings else model.vocab_size * hidden
    q_and_o = 2 * model.num_heads * model.head_dim * hidden
    k_and_v = 2 * model.num_kv_heads * model.head_dim * hidden
    attention = model.num_layers * (q_and_o + k_and_v)
    per_expert = (3 if model.gated_mlp else 2) * hidden * model.intermediate_size
    router = hidden * model.num_experts
    mlp = model.num_layers * (max(model.num_experts, 1) * per_expert + router)
    mlp_active = model.num_layers * (max(model.num_experts_per_token, 1) * per_expert + router)
    norms = (2 * model.num_layers + 1) * hidden
    total = embedding + attention + mlp + norms + lm_head
    return {
        "embedding": embedding,
        "attention": attention,
        "mlp": mlp,
        "mlp_active": mlp_active,
        "norms": norms,
        "lm_head": lm_head,
        "total": total,
        "active": total - mlp + mlp_active,
    }


def weight_bytes(model: ModelSpec) -> float:
    """Bytes of all weights at the checkpoint's precision (tied embeddings counted once):
    linear and expert layers at ``weight_bytes_per_param``, the embedding, LM head and norms
    at ``head_bytes_per_param`` (16-bit in an FP8 deployment)."""
    counts = param_count(model)
    head = counts["embedding"] + counts["lm_head"] + counts["norms"]
    return (counts["total"] - head) * model.weight_bytes_per_param + (
        head * model.head_bytes_per_param
    )
