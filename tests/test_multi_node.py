"""Replicas spanning servers: all-reduces and stage transfers over the inter-node network.

Every catalog GPU comes in servers of 8 (``GPUSpec.gpus_per_node``) joined by
``network_bytes_per_s`` per GPU (AIConfigurator's system files). A TP group larger than a
server pays, per all-reduce, NCCL's hierarchical step between servers on top of the
server-local all-reduce; a pipeline boundary between servers sends over the network.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from simulator import Scenario
from simulator.calibration.select import step_model_for
from simulator.cli import app
from simulator.hardware import GPUS, get_gpu
from simulator.models import get_model
from simulator.perf.roofline import (
    PP_P2P_LATENCY_S,
    nodes_spanned,
    roofline_model,
    stage_transfers_across_nodes,
    with_cross_node_allreduce,
    with_pipeline_stages,
)
from simulator.scenario import resolve

H100 = get_gpu("H100")
LLAMA_70B = get_model("llama-3.1-70b")


def _network_term_s(model, gpu, tp: int, tokens: int) -> float:
    """2 L all-reduces, each 2 (k - 1) latencies plus 2 (k - 1) / k of the per-GPU share."""
    k = -(-tp // gpu.gpus_per_node)
    g = gpu.gpus_per_node
    share_bytes = tokens * model.hidden_size * 2.0 / g
    one = 2 * (k - 1) * PP_P2P_LATENCY_S + 2 * (k - 1) / k * share_bytes / gpu.network_bytes_per_s
    return 2 * model.num_layers * one


def _allreduce_s(step, tokens: int) -> float:
    return step.predict_parts(num_decode_seqs=tokens, decode_context_tokens=tokens * 100)[
        "allreduce"
    ]


def test_every_catalog_gpu_has_a_server_and_a_network():
    for gpu in GPUS.values():
        # Servers of 8, but the GB200: an NVL72 rack is one NVLink domain of 72.
        assert gpu.gpus_per_node == (72 if gpu.name == "GB200" else 8)
        # Slower than the GPUs' own link, except PCIe parts on a 400 Gb/s NIC per GPU.
        assert 1e9 <= gpu.network_bytes_per_s <= 100e9
    assert get_gpu("H100").network_bytes_per_s == 50e9  # AIConfigurator h100_sxm.yaml


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_a_tp_group_inside_one_server_is_unchanged(tp):
    step = roofline_model(LLAMA_70B, H100, tp)
    assert nodes_spanned(H100, tp) == 1
    assert with_cross_node_allreduce(step, LLAMA_70B, H100, tp) is step


@pytest.mark.parametrize("tp", [16, 32])
@pytest.mark.parametrize("tokens", [1, 64, 8192])
def test_roofline_all_reduce_across_servers_adds_the_network_term(tp, tokens):
    base = roofline_model(LLAMA_70B, H100, tp)
    spanning = with_cross_node_allreduce(base, LLAMA_70B, H100, tp)
    added = _allreduce_s(spanning, tokens) - _allreduce_s(base, tokens)
    assert added == pytest.approx(_network_term_s(LLAMA_70B, H100, tp, tokens), rel=1e-9)
    assert spanning.description["tp_nodes"] == tp // 8


@pytest.mark.parametrize("tokens", [1, 7, 64, 1000, 8192])
def test_calibrated_all_reduce_across_servers_adds_the_network_term_to_its_table(tokens):
    """The table is linear in the tokens between nodes, so the term adds exactly."""
    spanning, _ = step_model_for(LLAMA_70B, H100, 16)
    one_server = dataclasses.replace(H100, gpus_per_node=16)  # same profile, no network
    base, _ = step_model_for(LLAMA_70B, one_server, 16)
    added = _allreduce_s(spanning, tokens) - _allreduce_s(base, tokens)
    assert added == pytest.approx(_network_term_s(LLAMA_70B, H100, 16, tokens), rel=1e-9)
    assert spanning.source == base.source


@pytest.mark.parametrize(
    ("tp", "pp", "across"),
    [(8, 2, 1), (4, 4, 1), (2, 4, 0), (16, 2, 1), (3, 3, 1), (1, 8, 0), (2, 8, 1)],
)
def test_stage_boundaries_between_servers(tp, pp, across):
    assert stage_transfers_across_nodes(H100, tp, pp) == across


def test_a_stage_transfer_between_servers_runs_at_the_network_bandwidth():
    base = roofline_model(LLAMA_70B, H100, 8)
    piped = with_pipeline_stages(base, LLAMA_70B, H100, 2, 8)
    inside = with_pipeline_stages(
        base, LLAMA_70B, dataclasses.replace(H100, gpus_per_node=16), 2, 8
    )
    per_token = 2 * LLAMA_70B.hidden_size * 2.0
    assert piped.description["pp_transfer_s_per_token"] == pytest.approx(
        per_token / H100.network_bytes_per_s
    )
    assert inside.description["pp_transfer_s_per_token"] == pytest.approx(
        per_token / H100.link_bytes_per_s
    )


def test_a_run_spanning_servers_says_so_and_pays_the_network_per_step():
    one = resolve(Scenario(gpus="16xH100", model="llama-3.1-70b", tp=8))
    # Host time added to the step, as step_model_for's (async scheduling would hide it).
    two = resolve(Scenario(gpus="16xH100", model="llama-3.1-70b", tp=16, async_scheduling=False))
    assert not any("servers" in note for note in one.notes)
    assert any("tp=16 spans 2 servers of 8 H100-SXM" in note for note in two.notes)
    # A lone decode pays 160 all-reduces across the network, each 20 us and its bytes, on
    # top of the same TP 16 in one (hypothetical) 16-GPU server.
    no_network, _ = step_model_for(LLAMA_70B, dataclasses.replace(H100, gpus_per_node=16), 16)
    lone = {"num_decode_seqs": 1, "decode_context_tokens": 1000}
    assert two.step_model.predict(**lone) - no_network.predict(**lone) == pytest.approx(
        _network_term_s(LLAMA_70B, H100, 16, 1), rel=1e-6
    )
    result = CliRunner().invoke(
        app,
        [
            "run",
            "traces/chat-1h.parquet",
            "--gpus",
            "16xH100",
            "--model",
            "llama-3.1-70b",
            "--tp",
            "8",
            "--pp",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    # Found by QA: it said '1 of the 1 stage-to-stage transfers cross the network'.
    assert "note: the stage-to-stage transfer crosses the network between servers" in result.stderr
    assert (
        "plus 1 stage-to-stage transfer; "
        in json.loads(result.stdout)["scenario"]["pipeline_parallel"]
    )


def test_the_stage_transfer_notes_count_in_words_that_agree():
    """Found by QA: '1 of the 3 stage-to-stage transfers cross' and 'transfer(s)'."""
    four = resolve(Scenario(gpus="16xH100", model="llama-3.1-70b", tp=4, pp=4))
    assert (
        "1 of the 3 stage-to-stage transfers crosses the network between servers of 8 H100-SXM"
        in " ".join(four.notes)
    )
    assert "plus 3 stage-to-stage transfers; " in four.to_dict()["pipeline_parallel"]
    eight = resolve(Scenario(gpus="32xH100", model="llama-3.1-70b", tp=2, pp=16))
    assert "3 of the 15 stage-to-stage transfers cross the network" in " ".join(eight.notes)


@pytest.mark.parametrize(
    ("gpus", "tp", "pp", "model", "unlike"),
    [
        ("12xH100", 2, 3, "llama-3.1-70b", "1 of the 2 splits"),
        ("24xH100", 2, 3, "llama-3.1-70b", "2 of the 4 split"),
        ("10xH100", 5, 1, "llama-2-13b", "1 of the 2 splits"),
    ],
)
def test_replicas_that_do_not_tile_servers_say_some_are_modelled_as_replica_0(
    gpus, tp, pp, model, unlike
):
    """Found by QA: 12xH100 --tp 2 --pp 3 puts replica 1 on GPUs 6-11, whose stage transfer
    from GPU 7 to GPU 8 crosses servers, but every replica got replica 0's step times (no
    network) without a word."""
    notes = resolve(Scenario(gpus=gpus, model=model, tp=tp, pp=pp)).notes
    size = tp * pp
    assert (
        f"replicas of {size} GPUs do not tile servers of 8 H100-SXM: laid out in order, "
        f"{unlike} TP groups or stage transfers between servers unlike replica 0, yet every "
        "replica is modelled with replica 0's step times"
    ) in notes, notes


@pytest.mark.parametrize(
    ("gpus", "tp", "pp"),
    [("16xH100", 8, 1), ("24xH100", 4, 3), ("16xH100", 16, 1), ("6xH100", 2, 3)],
)
def test_replicas_alike_across_servers_need_no_tiling_note(gpus, tp, pp):
    notes = resolve(Scenario(gpus=gpus, model="llama-3.1-70b", tp=tp, pp=pp)).notes
    assert not any("do not tile servers" in note for note in notes), notes


def test_tp_16_on_gb200_stays_on_nvlink():
    """An NVL72 rack joins 72 GPUs by NVLink: TP 16 pays no network, TP 144 does."""
    gb200 = get_gpu("GB200")
    assert nodes_spanned(gb200, 16) == 1 and nodes_spanned(gb200, 144) == 2
    step = roofline_model(LLAMA_70B, gb200, 16)
    assert with_cross_node_allreduce(step, LLAMA_70B, gb200, 16) is step
    assert not any("servers" in n for n in resolve(Scenario(gpus="16xGB200", tp=16)).notes)


def test_a_tp_group_bound_by_its_all_reduce_says_so():
    """A QA pass read 4xL40S at tp=4 as an error: a 1,000-token prompt took 3x longer than
    on one GPU. It is AIConfigurator's measured L40S all-reduce (3.8 GB/s of bus bandwidth
    per GPU at 4 GPUs); the run now says the all-reduce share and what it depends on, and
    says nothing where all-reduce is a minor part of the step."""
    from simulator.scenario import ALLREDUCE_PROBE_TOKENS, Scenario, resolve

    bound = resolve(Scenario(gpus="4xL40S", model="llama-3.1-8b", tp=4))
    notes = [n for n in bound.notes if "all-reduce is" in n]
    assert len(notes) == 1
    parts = bound.step_model.predict_parts(
        num_prefill_tokens=ALLREDUCE_PROBE_TOKENS,
        num_prefill_seqs=1,
        prefill_attn_work=ALLREDUCE_PROBE_TOKENS**2 / 2.0,
        prefill_context_tokens=ALLREDUCE_PROBE_TOKENS,
    )
    share = parts["allreduce"] / sum(parts.values())
    assert share > 0.5
    assert notes[0].startswith(f"tp=4: all-reduce is {share:.0%} of a 2,048-token prompt step (")
    assert "compare a smaller --tp, or measure your server" in notes[0]
    for gpus, tp in (("2xA100", 2), ("8xH100", 8), ("1xL40S", 1)):
        quiet = resolve(Scenario(gpus=gpus, model="llama-3.1-8b", tp=tp))
        assert not any("all-reduce is" in n for n in quiet.notes), gpus
