"""Which batch sizes vLLM captures as CUDA graphs, and so up to which size it pads a step.

vLLM runs a step as a CUDA graph captured for a fixed token count and pads the step's
token rows up to the next captured size (``kernel.graph_rows`` does that in closed form).
This module works out the largest captured size of a deployment, the one number the
kernel needs besides the capture list's shape (1, 2, 4, then multiples of 8).

vLLM v0.11 (V1 engine; ``vllm`` and ``sarathi``)
    ``SchedulerConfig.cuda_graph_sizes`` defaults to ``[min(2 * max_num_seqs, 512)]``
    (``vllm/config/scheduler.py``), which ``VllmConfig._set_cudagraph_sizes`` expands to
    ``[1, 2, 4] + list(range(8, cuda_graph_sizes[0] + 1, 8))`` and then drops the sizes
    above ``max_num_batched_tokens``. ``gpu_model_runner.py`` pads a step of
    ``num_scheduled_tokens <= cudagraph_batch_sizes[-1]`` with ``pad_for_cudagraph``
    whatever the batch's mix (``cudagraph_mode`` FULL_AND_PIECEWISE, the V1 default since
    v0.11: full graphs for uniform decode batches, piecewise graphs with attention left
    out for the others). vLLM v0.11.1 (PR #26016) changed the list to step 16 from 256 on;
    that is not modelled. ``sarathi`` is modelled on the V1 engine with a token budget of
    ``chunk_size``, so its capture sizes stop at that budget.
vLLM v0.6 (``vllm-v0``)
    ``vllm/worker/model_runner.py``: only decode-only batches run as graphs
    (``_use_captured_graph``), padded by ``_get_graph_batch_size`` (1, 2, 4, then
    multiples of 8) up to ``max_batchsize_to_capture``, the padded ``max_num_seqs`` at
    most 8192 (``_BATCH_SIZES_TO_CAPTURE``). A decode batch never holds more than
    ``max_num_seqs`` requests, so every decode-only step is padded. Not modelled: such a
    batch runs eager in v0.6 when its longest context exceeds ``max_seq_len_to_capture``
    (8192 by default).

``--enforce-eager`` turns graphs off in both, as in vLLM.
"""

from __future__ import annotations

#: vLLM v0.11's cap on the default largest capture size (``min(2 * max_num_seqs, 512)``).
V1_MAX_DEFAULT_CAPTURE = 512
#: vLLM v0.6's largest entry of ``_BATCH_SIZES_TO_CAPTURE`` (8 x 1024).
V0_MAX_CAPTURE = 8192


def v1_capture_sizes(max_num_seqs: int, max_num_batched_tokens: int) -> list[int]:
    """vLLM v0.11's default CUDA-graph capture sizes, ascending, built as vLLM builds them."""
    largest = min(2 * max_num_seqs, V1_MAX_DEFAULT_CAPTURE)
    sizes = [1, 2, 4] + list(range(8, largest + 1, 8))
    return [size for size in sizes if size <= max_num_batched_tokens]


def v0_max_capture(max_num_seqs: int) -> int:
    """vLLM v0.6's ``max_batchsize_to_capture`` for ``max_num_seqs``."""
    if max_num_seqs <= 2:
        padded = max_num_seqs
    elif max_num_seqs <= 4:
        padded = 4
    else:
        padded = (max_num_seqs + 7) // 8 * 8
    return min(padded, V0_MAX_CAPTURE)


def max_graph_tokens(
    scheduler: str, max_num_seqs: int, token_budget: int, *, enforce_eager: bool = False
) -> tuple[int, bool]:
    """The largest CUDA-graph size of a replica and whether only decode-only steps use one.

    Parameters
    ----------
    scheduler : str
        ``vllm``, ``sarathi`` (vLLM V1 rules) or ``vllm-v0`` (vLLM v0.6 rules).
    max_num_seqs : int
        Running requests per engine, >= 1.
    token_budget : int
        Tokens per step (``max_num_batched_tokens``; ``chunk_size`` for ``sarathi``), >= 1.
    enforce_eager : bool
        No graphs at all.

    Returns
    -------
    (int, bool)
        The largest captured size (0: none) and the decode-only flag.
    """
    if enforce_eager:
        return 0, False
    if scheduler == "vllm-v0":
        return v0_max_capture(max_num_seqs), True
    sizes = v1_capture_sizes(max_num_seqs, token_budget)
    return (sizes[-1] if sizes else 0), False
