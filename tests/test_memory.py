"""Memory planning: KV bytes per token, KV blocks per replica, TP choice and validation."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.errors import SimreplayError
from simulator.hardware import GPUS, get_gpu
from simulator.memory import (
    activation_reserve_bytes,
    choose_tp,
    cuda_total_memory_bytes,
    default_batch_knobs,
    has_useful_kv,
    kv_bytes_per_token,
    plan_memory,
    validate_tp,
)
from simulator.models import MODELS, get_model, weight_bytes

GIB = 2**30
LLAMA_8B = MODELS["llama-3.1-8b"]
LLAMA_70B = MODELS["llama-2-70b"]
A100 = GPUS["A100-80GB-SXM"]
H100 = GPUS["H100-SXM"]


def test_kv_bytes_per_token_llama_3_1_8b_tp1():
    assert kv_bytes_per_token(LLAMA_8B, 1) == 2 * 32 * 8 * 128 * 2 == 131_072


def test_kv_bytes_per_token_llama_2_70b_tp4():
    assert kv_bytes_per_token(LLAMA_70B, 4) == 2 * 80 * 8 * 128 * 2 / 4 == 81_920


def test_kv_bytes_per_token_fp8_cache_halves_it():
    assert kv_bytes_per_token(LLAMA_8B, 2, kv_dtype_bytes=1) == 131_072 / 4


@pytest.mark.parametrize(
    ("name", "tp", "heads_per_gpu"),
    [
        ("llama-3.1-8b", 8, 1),  # 8 KV heads over 8 GPUs: one each
        ("llama-3.1-8b", 16, 1),  # replicated: still one per GPU, not half
        ("qwen3-30b-a3b", 8, 1),  # 4 KV heads replicated over 8
        ("qwen2.5-7b", 2, 2),
    ],
)
def test_kv_heads_are_replicated_when_tp_exceeds_them(name, tp, heads_per_gpu):
    model = MODELS[name]
    expected = 2 * model.num_layers * heads_per_gpu * model.head_dim * 2
    assert kv_bytes_per_token(model, tp) == expected


def test_plan_llama_3_1_8b_on_one_h100_is_in_vllms_range():
    # vLLM v0.11 reports roughly 50-60 GiB of KV cache for Llama-3.1-8B on one H100-80GB at
    # --gpu-memory-utilization 0.9 (its startup log: "Available KV cache memory"), about
    # 410k-490k tokens; the range is chosen wide enough for driver-reported totals.
    plan = plan_memory(LLAMA_8B, H100, 1)
    assert 50 * GIB <= plan.kv_cache_bytes_per_gpu <= 60 * GIB
    assert 400_000 <= plan.kv_capacity_tokens <= 500_000
    assert plan.weights_bytes_per_gpu == pytest.approx(14.96 * GIB, rel=0.01)
    assert plan.kv_bytes_per_token == 131_072
    assert plan.block_size == 16
    assert plan.kv_capacity_tokens == plan.num_kv_blocks * 16
    assert plan.kv_cache_bytes_per_gpu == plan.num_kv_blocks * 16 * 131_072
    # vLLM's budget is the memory CUDA reports (79.22 GiB on an H100-80GB), not 80 GiB.
    assert plan.memory_budget_bytes == 0.9 * 79.22 * GIB


def test_plan_spends_no_more_than_the_budget():
    plan = plan_memory(LLAMA_70B, A100, 4)
    spent = (
        plan.weights_bytes_per_gpu
        + plan.activation_reserve_bytes
        + plan.non_torch_bytes
        + plan.kv_cache_bytes_per_gpu
    )
    block_bytes = plan.kv_bytes_per_token * plan.block_size
    assert plan.memory_budget_bytes - block_bytes < spent <= plan.memory_budget_bytes
    assert plan.weights_bytes_per_gpu == weight_bytes(LLAMA_70B) / 4
    assert plan.tp == 4


@given(
    utilization=st.floats(min_value=0.5, max_value=1.0),
    gpu_name=st.sampled_from(["H100-SXM", "A100-80GB-SXM", "L40S", "B200", "MI300X"]),
    block_size=st.sampled_from([8, 16, 32]),
)
def test_kv_blocks_fill_what_is_left_and_never_more(utilization, gpu_name, block_size):
    gpu = GPUS[gpu_name]
    plan = plan_memory(LLAMA_8B, gpu, 1, gpu_memory_utilization=utilization, block_size=block_size)
    assert plan.memory_budget_bytes == cuda_total_memory_bytes(gpu) * utilization
    left = (
        plan.memory_budget_bytes
        - plan.weights_bytes_per_gpu
        - plan.activation_reserve_bytes
        - plan.non_torch_bytes
    )
    block_bytes = plan.kv_bytes_per_token * block_size
    assert plan.num_kv_blocks == math.floor(left / block_bytes)
    assert plan.kv_cache_bytes_per_gpu <= left < plan.kv_cache_bytes_per_gpu + block_bytes


def test_more_utilization_and_more_tp_give_more_kv_tokens():
    low = plan_memory(LLAMA_70B, A100, 4, gpu_memory_utilization=0.8)
    high = plan_memory(LLAMA_70B, A100, 4, gpu_memory_utilization=0.95)
    wider = plan_memory(LLAMA_70B, A100, 8)
    assert low.kv_capacity_tokens < high.kv_capacity_tokens
    assert plan_memory(LLAMA_70B, A100, 4).kv_capacity_tokens < wider.kv_capacity_tokens


def test_bigger_batch_knobs_reserve_more_activation_memory():
    small = plan_memory(LLAMA_8B, H100, 1, max_num_batched_tokens=2048, max_num_seqs=256)
    large = plan_memory(LLAMA_8B, H100, 1, max_num_batched_tokens=16384, max_num_seqs=1024)
    assert small.activation_reserve_bytes < large.activation_reserve_bytes
    assert small.num_kv_blocks > large.num_kv_blocks
    # v0.11's H100 defaults sample 1,024 rows of 128,256 logits: the sampler's ~4.8 GiB
    # outweighs the forward pass's 0.8 GiB (activation_reserve_bytes).
    assert 4.5 * GIB < plan_memory(LLAMA_8B, H100, 1).activation_reserve_bytes < 5 * GIB


def test_70b_on_one_a100_fails_with_one_clear_line():
    with pytest.raises(SimreplayError) as info:
        plan_memory(LLAMA_70B, A100, 1)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "llama-2-70b does not fit on 1xA100-80GB-SXM with --tp 1: weights need 128.5 GiB per "
        "GPU, 71.2 GiB usable at --gpu-memory-utilization 0.9; try --tp 2 or more"
    )


def test_no_room_for_a_kv_block_fails_with_one_clear_line():
    with pytest.raises(SimreplayError) as info:
        plan_memory(LLAMA_8B, GPUS["L4"], 1, gpu_memory_utilization=0.7)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("llama-3.1-8b does not fit on 1xL4 with --tp 1: ")
    assert "leaving no room for one 16-token KV block" in message
    assert message.endswith("try --tp 2 or more")


def test_a_batch_reserve_that_fills_the_gpu_advises_a_smaller_batch():
    with pytest.raises(SimreplayError) as info:
        plan_memory(LLAMA_8B, A100, 1, max_num_batched_tokens=2**31 - 1)
    assert str(info.value).endswith(
        "; lower --max-num-batched-tokens or --max-num-seqs, or try --tp 2 or more"
    )
    with pytest.raises(SimreplayError) as info:
        choose_tp(LLAMA_8B, A100, 1, max_num_batched_tokens=2**31 - 1)
    assert "(tried --tp 1): lower --max-num-batched-tokens or --max-num-seqs, use more" in str(
        info.value
    )


def test_automatic_tp_that_fits_nowhere_does_not_advise_a_tp_beyond_the_gpus():
    """Found by a new-user pass: with --tp not given, 2 GPUs were told to 'try --tp 4'."""
    with pytest.raises(SimreplayError) as info:
        choose_tp(LLAMA_8B, A100, 2, gpu_memory_utilization=0.1)
    message = str(info.value)
    assert "try --tp" not in message and "\n" not in message
    assert message.endswith(
        "; no TP that divides 2 GPUs fits (tried --tp 1, 2): a higher "
        "--gpu-memory-utilization, use more GPUs (a larger TP), or GPUs with more memory"
    )


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"gpu_memory_utilization": 0.0}, "--gpu-memory-utilization must be > 0 and <= 1"),
        ({"gpu_memory_utilization": 1.5}, "--gpu-memory-utilization must be > 0 and <= 1"),
        ({"block_size": 0}, "--block-size must be at least 1"),
        ({"max_num_batched_tokens": 0}, "--max-num-batched-tokens must be at least 1"),
        ({"max_num_seqs": -1}, "--max-num-seqs must be at least 1"),
    ],
)
def test_bad_knobs_name_their_flag(kwargs, fragment):
    with pytest.raises(SimreplayError, match=fragment):
        plan_memory(LLAMA_8B, H100, 1, **kwargs)


def test_choose_tp_picks_4_for_llama_2_70b_on_8_a100s():
    # TP 1 does not fit; TP 2 fits with 5.9 GiB of KV per GPU against 64 GiB of weights
    # (about 39k tokens per replica), not useful; TP 4 leaves 38 GiB per GPU.
    gpu = get_gpu("A100-80GB")
    assert not has_useful_kv(plan_memory(LLAMA_70B, gpu, 2), LLAMA_70B.max_context_tokens)
    assert choose_tp(LLAMA_70B, gpu, 8) == 4


@pytest.mark.parametrize(("gpu", "num_gpus"), [("A100-80GB", 8), ("H100", 1), ("H100", 8)])
def test_choose_tp_picks_1_for_llama_3_1_8b(gpu, num_gpus):
    assert choose_tp(LLAMA_8B, get_gpu(gpu), num_gpus) == 1


def test_choose_tp_wants_one_full_context_sequence():
    # On an L40S at 0.6 an 8B model keeps about 12 GiB of KV at TP 1 (more than half its
    # weights) but only about 100k tokens, less than its 131,072 context: vLLM would refuse
    # to start. TP 2 holds a full-context sequence; a shorter context is fine at TP 1.
    l40s = GPUS["L40S"]
    plan = plan_memory(LLAMA_8B, l40s, 1, gpu_memory_utilization=0.6)
    assert plan.kv_cache_bytes_per_gpu > 0.5 * plan.weights_bytes_per_gpu
    assert plan.kv_capacity_tokens < LLAMA_8B.max_context_tokens
    assert choose_tp(LLAMA_8B, l40s, 2, gpu_memory_utilization=0.6) == 2
    assert choose_tp(LLAMA_8B, l40s, 2, gpu_memory_utilization=0.6, max_context_tokens=8192) == 1


def test_choose_tp_wants_kv_worth_its_weights():
    # On an L4 an 8B model leaves about 5 GiB of KV at TP 1 against 15 GiB of weights.
    l4 = GPUS["L4"]
    assert choose_tp(LLAMA_8B, l4, 2, max_context_tokens=8192) == 2


def test_choose_tp_falls_back_to_the_largest_tp_that_fits():
    assert choose_tp(LLAMA_70B, A100, 2) == 2  # fits, though its KV cache is small
    assert choose_tp(LLAMA_8B, GPUS["L4"], 1) == 1
    assert choose_tp(LLAMA_8B, GPUS["L4"], 3) == 1  # only TP 1 divides 3


def test_choose_tp_skips_tps_that_do_not_split_the_heads():
    # 28 attention heads: TP 8 is never a candidate, even when only it would fit.
    heavy = replace(MODELS["qwen2.5-7b"], name="heavy-28-heads", num_layers=800)
    assert weight_bytes(heavy) / 8 < 0.9 * A100.hbm_bytes < weight_bytes(heavy) / 4
    with pytest.raises(SimreplayError, match="with --tp 4"):
        choose_tp(heavy, A100, 8)


def test_choose_tp_errors_when_nothing_fits():
    with pytest.raises(SimreplayError) as info:
        choose_tp(LLAMA_70B, GPUS["L4"], 1)
    assert str(info.value).startswith("llama-2-70b does not fit on 1xL4 with --tp 1")


def test_a_model_larger_than_a_server_is_told_the_tp_and_pp_that_fit():
    """QA (stop 36): a 405B-shaped model on 16 and 32 H100s was told to "use more GPUs",
    though --tp 8 --pp 2 and --tp 16 run it; the automatic choice stays within a server."""
    big = replace(
        LLAMA_70B, name="big-405b", num_layers=126, hidden_size=16384,
        intermediate_size=53248, num_heads=128, num_kv_heads=8, vocab_size=128256,
    )  # fmt: skip
    h100 = get_gpu("H100")
    for num_gpus, advice in (
        (16, "give --tp 8 --pp 2 (pipeline stages across servers) or --tp 16 (one TP group"),
        (32, "give --tp 8 --pp 2 (pipeline stages across servers) or --tp 16 (one TP group"),
        (24, "give --tp 8 --pp 3 (pipeline stages across servers)"),
    ):
        with pytest.raises(SimreplayError) as info:
            choose_tp(big, h100, num_gpus)
        assert "fits within a server (tried --tp 1, 2, 4, 8" in str(info.value)
        assert str(info.value).endswith(advice) or advice + " over servers)" in str(info.value)
        stages = int(advice.split("--pp ")[1][0])
        plan_memory(big, h100, 8, pp=stages)  # the advice fits
    with pytest.raises(SimreplayError, match="use more GPUs"):
        choose_tp(big, h100, 8)
    # Stages that fit in one server are not "across servers" (a QA pass: 3 H100s for a 70B).
    with pytest.raises(SimreplayError) as info:
        choose_tp(get_model("llama-3.1-70b"), h100, 3)
    assert str(info.value).endswith("give --tp 1 --pp 3 (pipeline stages in one server)")


def test_choose_tp_falls_back_to_tp_1_when_no_larger_tp_splits_the_heads():
    odd = replace(LLAMA_8B, name="odd-heads", num_heads=33, num_kv_heads=11)
    assert choose_tp(odd, GPUS["L4"], 8) == 1


@pytest.mark.parametrize(
    ("model", "num_gpus", "tp", "fragment"),
    [
        ("llama-3.1-8b", 4, 0, "--tp must be at least 1, got 0"),
        ("llama-3.1-8b", 4, -2, "--tp must be at least 1"),
        ("llama-3.1-8b", 4, 3, "--tp 3 does not divide the 4 GPUs of --gpus"),
        ("llama-3.1-8b", 1, 2, "--tp 2 does not divide the 1 GPU of --gpus"),  # not "1 GPUs"
        ("qwen2.5-7b", 8, 8, "--tp 8: qwen2.5-7b's 28 attention heads"),
    ],
)
def test_validate_tp_errors_name_the_flag(model, num_gpus, tp, fragment):
    with pytest.raises(SimreplayError) as info:
        validate_tp(MODELS[model], num_gpus, tp)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_validate_tp_kv_heads_must_split_or_replicate_evenly():
    model = replace(LLAMA_8B, name="six-kv-heads", num_heads=24, num_kv_heads=6)
    validate_tp(model, 12, 12)  # 24 % 12 == 0 and 12 % 6 == 0: replicated twice
    validate_tp(model, 6, 3)  # 6 % 3 == 0: split
    with pytest.raises(SimreplayError, match="--tp 4: six-kv-heads's 6 KV heads"):
        validate_tp(model, 8, 4)


def test_validate_tp_accepts_good_settings():
    validate_tp(LLAMA_70B, 16, 4)
    validate_tp(LLAMA_8B, 1, 1)
    validate_tp(MODELS["qwen3-30b-a3b"], 8, 8)  # 4 KV heads replicated over 8


@pytest.mark.parametrize(
    ("gpu", "knobs"),
    [
        ("H100-SXM", (8192, 1024)),
        ("H200", (8192, 1024)),
        ("B200", (8192, 1024)),
        ("MI300X", (8192, 1024)),
        ("RTX-PRO-6000", (8192, 1024)),
        ("A100-80GB-SXM", (2048, 256)),
        ("A100-80GB-PCIe", (2048, 256)),
        ("L40S", (2048, 256)),
        ("L4", (2048, 256)),
    ],
)
def test_default_batch_knobs_follow_vllm_0_11(gpu, knobs):
    assert default_batch_knobs(GPUS[gpu]) == knobs


def test_vllm_v0_plans_its_kv_cache_with_its_own_defaults():
    """Found by a new-user pass: with --scheduler vllm-v0 the KV cache was planned for
    v0.11's 8,192-token budget on an H100 while the engine then used v0's
    max(max_model_len, 2048) = 131,072 (vLLM profiles activations with the budget it runs),
    and max_num_seqs was v0.11's 1,024, not v0.6's 256."""
    from simulator.scenario import Scenario, resolve

    v0 = resolve(Scenario(gpus="1xH100", scheduler="vllm-v0"))
    explicit = resolve(Scenario(gpus="1xH100", scheduler="vllm-v0", max_num_batched_tokens=131_072))
    assert v0.max_num_seqs == 256 and v0.max_num_batched_tokens == 131_072
    assert v0.memory.num_kv_blocks == explicit.memory.num_kv_blocks
    assert v0.memory.activation_reserve_bytes == explicit.memory.activation_reserve_bytes
    short = resolve(Scenario(gpus="1xH100", scheduler="vllm-v0", max_model_len=8192))
    assert short.max_num_batched_tokens == 8192
    assert short.memory.num_kv_blocks > v0.memory.num_kv_blocks
    # A model whose context the KV cache cannot hold: max_model_len is capped, and the
    # budget (and the memory profiled for it) with it; the cache still holds max_model_len.
    capped = resolve(Scenario(gpus="1xL4", scheduler="vllm-v0", gpu_memory_utilization=0.8))
    assert capped.max_model_len < get_model("llama-3.1-8b").max_context_tokens
    assert capped.max_num_batched_tokens == max(capped.max_model_len, 2048)
    assert capped.memory.kv_capacity_tokens >= capped.max_model_len


# KV caches vLLM logged at start-up, with the settings each run used (stated in the source,
# or vLLM's defaults for that version). ``vllm_kv_bytes`` is per GPU. V0 (v0.6) runs
# profile ``max_num_batched_tokens = max(max_model_len, 2048)`` tokens and 256 sequences;
# v0.6.4+ measures memory with the same ``memory_profiling`` that v0.11's V1 worker uses.
# Left out: vllm-project/vllm PR #17122 (Llama-3.1-8B, L40S, v0.8.4 V1: 158,656 tokens,
# we plan 192,624): before v0.9 the V1 worker counted every byte on the device not
# allocated by PyTorch after the profile run (``gpu_worker.py`` at that version), not the
# growth since a start-up snapshot, so its figure is not what v0.11 computes.
RTX_3090 = replace(GPUS["RTX-4090"], name="RTX-3090", hbm_bytes=24 * GIB)
VLLM_LOGGED_KV_CACHES = [
    pytest.param(
        "llama-3-8b",
        H100,
        1,
        0.9,
        8192,
        256,
        53.29 * GIB,
        id="v0.6.5.dev-llama-3-8b-1xH100",
        # https://github.com/vllm-project/vllm/pull/10511 ("vllm serve
        # meta-llama/Meta-Llama-3-8B", max_model_len 8192): available_kv_cache_memory
        # 53.29GiB. Its non_torch_memory (1.79 GiB) predates the snapshot taken after CUDA
        # init; later versions log 0.02-0.35 GiB, hence most of our +2.9 %.
    ),
    pytest.param(
        "llama-3-8b",
        H100,
        2,
        0.9,
        8192,
        256,
        (71.29 - 7.48 - 3.58 - 1.26) * GIB,
        id="v0.6.5.dev-llama-3-8b-2xH100-tp2",
        # Same PR, "-tp 2": 71.29 usable - 7.48 weights - 3.58 non-torch - 1.26 activations.
    ),
    pytest.param(
        "llama-3.1-8b",
        RTX_3090,
        1,
        0.9,
        20_000,
        256,
        1952 * 16 * 131_072,
        id="v0.6.4-llama-3.1-8b-3090-20k",
        # https://github.com/vllm-project/vllm/issues/10517 (--max-model-len 20k):
        # "# GPU blocks: 1952", kv_cache_size=3.81GiB.
    ),
    pytest.param(
        "llama-3.1-8b",
        RTX_3090,
        1,
        0.9,
        29_000,
        256,
        1478 * 16 * 131_072,
        id="v0.6.4-llama-3.1-8b-3090-29k",
        # Same issue, --max-model-len 29k: "# GPU blocks: 1478", kv_cache_size=2.89GiB.
    ),
]
#: How far our plan may be from vLLM's logged KV cache, relative.
KV_TOLERANCE = 0.06


@pytest.mark.parametrize(
    ("model", "gpu", "tp", "utilization", "tokens", "seqs", "vllm_kv_bytes"),
    VLLM_LOGGED_KV_CACHES,
)
def test_kv_cache_is_within_6_percent_of_vllms_logs(
    model, gpu, tp, utilization, tokens, seqs, vllm_kv_bytes
):
    plan = plan_memory(
        MODELS[model],
        gpu,
        tp,
        gpu_memory_utilization=utilization,
        max_num_batched_tokens=tokens,
        max_num_seqs=seqs,
    )
    assert plan.kv_cache_bytes_per_gpu == pytest.approx(vllm_kv_bytes, rel=KV_TOLERANCE)


@pytest.mark.parametrize(
    ("model", "tokens", "seqs", "vllm_gib"),
    [
        # vllm-project/vllm issue #10517 (v0.6.4, RTX 3090): peak_torch_memory minus the
        # 14.99 GiB of weights; the forward pass's peak, growing with the tokens.
        ("llama-3.1-8b", 20_000, 256, 17.06 - 14.99),
        ("llama-3.1-8b", 29_000, 256, 17.98 - 14.99),
        # vllm-project/vllm PR #10511 (v0.6.5.dev, H100): "PyTorch activation peak memory
        # 1.26GiB" at 8,192 tokens, where the sampler's 256 x 128,256 logits peak higher.
        ("llama-3-8b", 8192, 256, 1.26),
    ],
    ids=["v0.6.4-20k-tokens", "v0.6.4-29k-tokens", "v0.6.5.dev-8k-tokens-sampler"],
)
def test_activation_peak_matches_vllms_logs(model, tokens, seqs, vllm_gib):
    reserve = activation_reserve_bytes(MODELS[model], 1, tokens, seqs)
    assert reserve / GIB == pytest.approx(vllm_gib, rel=0.03)


@pytest.mark.parametrize(
    ("gpu_name", "cuda_gib"),
    [
        ("H100-SXM", 79.22),  # vllm-project/vllm PR #10511: "total_gpu_memory 79.22GiB"
        ("A100-40GB-SXM", 39.38),  # vllm-project/vllm issue #16570: "(39.38GiB)"
    ],
)
def test_budget_is_the_memory_cuda_reports_not_the_marketing_capacity(gpu_name, cuda_gib):
    plan = plan_memory(LLAMA_8B, GPUS[gpu_name], 1, gpu_memory_utilization=0.9)
    assert plan.memory_budget_bytes == pytest.approx(0.9 * cuda_gib * GIB)


def test_an_fp8_checkpoint_still_computes_activations_in_16_bit():
    fp8 = replace(LLAMA_8B, name="llama-3.1-8b-fp8", weight_bytes_per_param=1.0)
    assert activation_reserve_bytes(fp8, 1, 8192, 256) == activation_reserve_bytes(
        LLAMA_8B, 1, 8192, 256
    )


@pytest.mark.parametrize(("scheduler", "usable_blocks"), [("vllm", 3), ("sarathi", 3)])
def test_v1_null_block_is_not_allocatable(scheduler, usable_blocks):
    """vLLM v0.11's V1 ``BlockPool`` keeps one of its ``num_gpu_blocks`` as the null block,
    so with 4 blocks a request needing all 4 never fits. The block count is vLLM's logged
    one (``--num-kv-blocks``). v0.6 (``vllm-v0``) has no null block (below), but a request
    filling every block is refused there by its own rule (a decode needs a free block)."""
    import numpy as np

    from simulator.api import replay_resolved
    from simulator.calibration.validate import resolve_for_benchmark
    from simulator.engine.state import R_FINISH_S, R_REJECT, REJECT_KV
    from simulator.scenario import Scenario

    scenario = Scenario(
        gpus="1xH100", model="llama-3.1-8b", tp=1, scheduler=scheduler, max_model_len=4096
    )
    resolved = resolve_for_benchmark(scenario, 4)
    assert resolved.engine_kv_blocks == usable_blocks
    block = resolved.memory.block_size
    # Each needs (input + output - 1) / block_size blocks: 3 and exactly 4.
    inputs = np.array([3 * block - 4, 4 * block - 4], np.int64)
    outputs = np.array([5, 5], np.int64)
    state = replay_resolved(resolved, np.array([0.0, 10.0]), inputs, outputs)
    assert np.isfinite(state.req_f[0, R_FINISH_S])
    fits = usable_blocks >= 4
    assert np.isfinite(state.req_f[1, R_FINISH_S]) == fits
    assert (state.req_i[1, R_REJECT] == REJECT_KV) == (not fits)


def test_vllm_v0_has_no_null_block():
    from simulator.calibration.validate import resolve_for_benchmark
    from simulator.scenario import Scenario

    scenario = Scenario(
        gpus="1xH100", model="llama-3.1-8b", tp=1, scheduler="vllm-v0", max_model_len=4096
    )
    assert resolve_for_benchmark(scenario, 4).engine_kv_blocks == 4


def test_explicit_max_model_len_above_the_kv_cache_is_noted():
    """Found by a fidelity pass: --max-model-len 131,072 on one L4 (a KV cache of about
    28,000 tokens) ran without a word, while vLLM v0.11 refuses to start with it
    (``check_enough_kv_cache_memory``)."""
    from simulator.scenario import Scenario, resolve

    long = resolve(Scenario(gpus="1xL4", tp=1, max_model_len=131_072))
    assert long.memory.kv_capacity_tokens < 131_072
    assert any("refuses to start" in note for note in long.notes)
    fits = resolve(Scenario(gpus="1xL4", tp=1, max_model_len=long.memory.kv_capacity_tokens))
    assert not any("refuses to start" in note for note in fits.notes)
    # It names what one request can hold too, the number the cap without --max-model-len
    # quotes (a QA pass read 25,504 tokens in one note and 25,488 in the other).
    capped = resolve(Scenario(gpus="1xL4", tp=1)).max_model_len
    assert capped == long.memory.kv_capacity_tokens - long.memory.block_size
    assert any(
        f"the {long.memory.kv_capacity_tokens:,} tokens the KV cache holds ({capped:,} for "
        "one request, less vLLM V1's null block)" in note
        for note in long.notes
    ), long.notes


def test_vllm_v0_long_context_notes_v0_6_chunked_prefill_default():
    """vLLM v0.6 turns chunked prefill on by default for max_model_len > 32,000
    (``EngineArgs.create_engine_config``), so vllm-v0 at 131,072 is not v0.6's default."""
    from simulator.scenario import Scenario, resolve

    def noted(**knobs):
        notes = resolve(Scenario(gpus="1xH100", **knobs)).notes
        return any("chunked prefill on by default" in note for note in notes)

    assert noted(scheduler="vllm-v0")
    assert noted(scheduler="vllm-v0", max_model_len=32_001)
    assert not noted(scheduler="vllm-v0", max_model_len=32_000)
    assert not noted(scheduler="vllm")


def test_sarathi_plans_memory_as_a_v1_server_whose_budget_is_the_chunk():
    """Found by QA: sarathi is modelled as vLLM V1 with max_num_batched_tokens = --chunk-size,
    yet its KV cache was planned with the GPU's default budget (8,192 on an H100, and 1,024
    sequences, which such a server refuses): 26,243 blocks instead of 27,495."""
    from simulator.scenario import Scenario, resolve

    sarathi = resolve(Scenario(gpus="1xH100", scheduler="sarathi"))
    v1 = resolve(Scenario(gpus="1xH100", max_num_batched_tokens=512, max_num_seqs=512))
    assert sarathi.memory.num_kv_blocks == v1.memory.num_kv_blocks
    assert sarathi.max_num_seqs == 512 and sarathi.token_budget == 512
    assert sarathi.to_dict()["max_num_batched_tokens"] == 512
    with pytest.raises(SimreplayError, match="not used with --scheduler sarathi"):
        resolve(Scenario(gpus="1xH100", scheduler="sarathi", max_num_batched_tokens=4096))
    with pytest.raises(SimreplayError, match=r"--chunk-size 256 \(sarathi's"):
        resolve(Scenario(gpus="1xH100", scheduler="sarathi", chunk_size=256, max_num_seqs=300))


def test_a_tp_chosen_without_a_useful_kv_cache_is_not_called_useful():
    """A QA pass: 70B on 2xH100 chose tp=2 'smallest with a useful KV cache' for replicas
    holding 1,920 tokens (vLLM refuses to start at the model's context); 9,780 of the
    Mooncake trace's 12,031 requests were then rejected."""
    from simulator.scenario import Scenario, resolve

    cramped = resolve(Scenario(gpus="2xH100", model="llama-3.1-70b"))
    (note,) = [n for n in cramped.notes if n.startswith("--tp not given")]
    assert note.startswith("--tp not given: no TP on 2 H100-SXM leaves a useful KV cache")
    assert f"chose tp=2, the largest that fits, whose replicas hold {1_920:,} tokens" in note
    roomy = resolve(Scenario(gpus="8xH100", model="llama-3.1-70b"))
    assert "--tp not given: chose tp=4 (smallest with a useful KV cache)" in roomy.notes


def test_an_uncalibrated_gpu_is_said_to_be_optimistic():
    """A QA pass: Mixtral on 1xMI300X (roofline at default efficiencies) answered TTFT p99
    312 ms against a measured B200's 574 ms, the source named only in a table line."""
    from simulator.scenario import Scenario, resolve

    mi300x = resolve(Scenario(gpus="1xMI300X", model="mixtral-8x7b"))
    assert any(n.startswith("MI300X has no measured profile") for n in mi300x.notes)
    h100 = resolve(Scenario(gpus="1xH100"))
    assert not any("no measured profile" in n for n in h100.notes)


def test_enforce_eager_says_what_it_leaves_out():
    """A QA pass: --enforce-eager predicted a faster TPOT (9.18 -> 9.09 ms) with only the
    README saying its launch overhead is not modelled."""
    from simulator.scenario import Scenario, resolve

    eager = resolve(Scenario(gpus="1xH100", enforce_eager=True))
    assert any(n.startswith("--enforce-eager is modelled as") for n in eager.notes)
    assert not any("enforce-eager" in n for n in resolve(Scenario(gpus="1xH100")).notes)


def test_the_chosen_tp_note_states_the_kv_cache_the_run_has():
    """A QA pass: with vllm-v0 (its budget settled after TP is chosen, which changes the
    activation reserve) the note said replicas hold 60,208 tokens of KV and the run's table
    38,032."""
    from simulator.scenario import Scenario, resolve

    for scenario in [
        Scenario(gpus="1xH100", gpu_memory_utilization=0.3, scheduler="vllm-v0"),
        Scenario(gpus="1xL4", scheduler="vllm-v0"),
        Scenario(gpus="2xH100", model="llama-3.1-70b"),
    ]:
        resolved = resolve(scenario)
        (note,) = [n for n in resolved.notes if n.startswith("--tp not given")]
        held = resolved.memory.kv_capacity_tokens
        assert f"whose replicas hold {held:,} tokens of KV" in note, (scenario, note)


@pytest.mark.parametrize(
    ("knobs", "budget"),
    [
        ({"scheduler": "sarathi", "chunk_size": 100}, "--chunk-size"),
        ({"max_num_batched_tokens": 100}, "--max-num-batched-tokens"),
    ],
)
def test_a_token_budget_below_the_default_max_num_seqs_lowers_it_with_a_note(knobs, budget):
    """vLLM v0.11's EngineArgs takes min(the GPU's default, max_num_batched_tokens) for a
    max_num_seqs left unset. A QA pass: sarathi lowered it without a word; a scheduler-fidelity
    pass: the vllm scheduler refused --max-num-batched-tokens 512 on an H100, which vLLM
    starts with 512 sequences."""
    from simulator.scenario import Scenario, resolve

    lowered = resolve(Scenario(gpus="1xH100", **knobs))
    assert lowered.max_num_seqs == 100 and lowered.max_num_batched_tokens == 100
    assert (
        f"max_num_seqs lowered from the default 1,024 to 100, the token budget per step "
        f"({budget}), as vLLM (v0.11, EngineArgs) lowers it; pass --max-num-seqs to choose"
    ) in lowered.notes
    kept = resolve(Scenario(gpus="1xH100", max_num_seqs=64, **knobs))
    assert kept.max_num_seqs == 64 and not any("lowered" in n for n in kept.notes)
    at_default = resolve(Scenario(gpus="1xA100", max_num_batched_tokens=256))
    assert at_default.max_num_seqs == 256 and not any("lowered" in n for n in at_default.notes)


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi", "vllm-v0"])
def test_a_capped_max_model_len_is_what_one_request_can_be_given(scheduler):
    """Found by QA: 2xH100 with Llama-3.1-70B at tp=2 capped max_model_len to the 1,920
    tokens of its 120 blocks, then rejected every request of 1,906-1,920 tokens for KV:
    vLLM V1 keeps one block as its null block. The cap is now the blocks a request can
    take (all of them for vllm-v0, which has no null block)."""
    from simulator.scenario import Scenario, resolve

    resolved = resolve(Scenario(gpus="2xH100", model="llama-3.1-70b", tp=2, scheduler=scheduler))
    assert resolved.max_model_len < resolved.model.max_context_tokens  # capped
    block = resolved.memory.block_size
    if scheduler == "vllm-v0":
        # v0's cap settles with its token budget (the activation reserve), no null block.
        assert resolved.engine_kv_blocks == resolved.memory.num_kv_blocks
        assert resolved.max_model_len <= resolved.engine_kv_blocks * block
    else:
        assert resolved.engine_kv_blocks == resolved.memory.num_kv_blocks - 1
        assert resolved.max_model_len == resolved.engine_kv_blocks * block


def test_a_kv_cache_capped_by_the_default_batch_knobs_names_smaller_ones():
    """A QA pass: Llama-3.1-70B on 8xH100 at tp=2 held 1,920 tokens of KV (8xA100: 25,568)
    because vLLM v0.11's H100 defaults (8,192 tokens, 1,024 sequences) reserve 4.9 GiB of
    activations and sampler logits; only the max_model_len note hinted at it."""
    from simulator.memory import plan_memory
    from simulator.scenario import Scenario, resolve

    resolved = resolve(Scenario(gpus="8xH100", model="llama-3.1-70b", tp=2))
    smaller = plan_memory(
        resolved.model, resolved.gpu, 2, max_num_seqs=256, max_num_batched_tokens=2048
    )
    assert smaller.kv_capacity_tokens > 10 * resolved.memory.kv_capacity_tokens
    (note,) = [n for n in resolved.notes if n.startswith("max_model_len capped")]
    assert note.endswith(
        f"; --max-num-seqs 256 --max-num-batched-tokens 2048 would leave "
        f"{smaller.kv_capacity_tokens:,} tokens of KV: vLLM reserves activation memory for a "
        "step of max_num_batched_tokens and the sampler's logits of max_num_seqs rows"
    )
    # Knobs the user chose, or defaults already that small, get no hint.
    for scenario in (
        Scenario(gpus="8xH100", model="llama-3.1-70b", tp=2, max_num_seqs=1024),
        Scenario(gpus="8xA100", model="llama-3.1-70b", tp=2),
    ):
        assert not any("would leave" in n for n in resolve(scenario).notes)


def test_vllm_v0s_default_budget_is_settled_before_max_num_seqs_is_checked():
    """A review: --scheduler vllm-v0 --max-num-seqs 4096 was refused against 2,048, the
    budget's provisional value, where v0.6 takes max(max_model_len, 2048) = 131,072."""
    from simulator.scenario import Scenario, resolve

    wide = resolve(Scenario(gpus="1xH100", scheduler="vllm-v0", max_num_seqs=4096))
    assert wide.max_num_seqs == 4096 and wide.max_num_batched_tokens >= 4096
    with pytest.raises(SimreplayError, match=r"max\(max_model_len, 2048\) = 2,048: vLLM \(v0.6"):
        resolve(Scenario(gpus="1xH100", scheduler="vllm-v0", max_num_seqs=4096, max_model_len=2048))
