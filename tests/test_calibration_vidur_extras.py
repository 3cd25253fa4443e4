"""``calibrate fit`` on a Vidur tree also reads its NCCL all-reduce timings
(``profiling/network/<node>/all_reduce.csv``) and vLLM V0's per-step host times
(``history/<gpu>_cpu_overheads.csv``); the host line is kept apart, as ``host_vllm_v0``,
for ``--scheduler vllm-v0`` runs only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from simulator.calibration.fit import fit_from_source, fit_vidur_host
from simulator.calibration.profile import load_profile, save_profile
from simulator.calibration.select import PROFILES_DIR, step_model_for
from simulator.calibration.sources import Measurements, add_vidur_host_overheads
from simulator.cli import app
from simulator.errors import SimreplayError
from simulator.hardware import get_gpu
from simulator.models import get_model
from simulator.perf import layout
from simulator.perf.roofline import DEFAULT_EFFICIENCIES

runner = CliRunner()

SHARED_VIDUR = Path(__file__).resolve().parents[2] / "shared" / "calibration-data" / "vidur"

#: The known constants the synthetic files are made from.
HOST_S, HOST_PER_SEQ_S = 0.9e-3, 35e-6
#: TP > 1 rows carry a Ray messaging cost the fit must leave out.
RAY_S = 6e-3
#: Output processing, which vLLM v0.6 overlaps with the next step: the fit leaves it out.
OUTPUTS_S, OUTPUTS_PER_SEQ_S = 0.07e-3, 15e-6
LATENCY_S = {2: 8e-6, 4: 11e-6, 8: 15e-6}
BUS_BYTES_PER_S = {2: 150e9, 4: 120e9, 8: 100e9}

_MLP_HEADER = (
    "n_head,n_kv_head,n_embd,n_expanded_embd,use_gated_mlp,num_tokens,"
    "num_tensor_parallel_workers,time_stats.mlp_up_proj.median,time_stats.mlp_down_proj.median"
)
_ALLREDUCE_HEADER = (
    ",time_stats.all_reduce.median,rank,num_workers,size,collective,devices_per_node,"
    "max_devices_per_node"
)
_HOST_PHASES = (
    "schedule_median",
    "prepare_inputs_e2e_median",
    "sampler_e2e_median",
    "process_model_outputs_median",
)
_HOST_HEADER = ",".join(("", *_HOST_PHASES, "model_name", "batch_size", "tensor_parallel_degree"))
BATCHES = (8, 16, 32, 48, 64, 96, 128)


def _allreduce_s(gpus: int, size: float) -> float:
    return LATENCY_S[gpus] + size / BUS_BYTES_PER_S[gpus]


def _host_rows(batches=BATCHES) -> list[str]:
    """Each row's three serial phases sum to HOST_S + HOST_PER_SEQ_S * batch (ms) at TP 1;
    its output processing takes OUTPUTS_S + OUTPUTS_PER_SEQ_S * batch more."""
    rows = []
    for tp in (1, 2):
        for model in ("meta-llama/Llama-2-7b-hf", "microsoft/phi-2"):
            for batch in batches:
                total_ms = (HOST_S + HOST_PER_SEQ_S * batch + (RAY_S if tp > 1 else 0.0)) * 1e3
                outputs_ms = (OUTPUTS_S + OUTPUTS_PER_SEQ_S * batch) * 1e3
                shares = (0.2, 0.3, 0.5)
                phases = ",".join(f"{total_ms * share!r}" for share in shares)
                phases += f",{outputs_ms!r}"
                rows.append(f"{len(rows)},{phases},{model},{batch},{tp}")
    return rows


def _vidur_tree(
    root: Path, gpu: str = "a100", *, network: bool = True, history: bool = True
) -> Path:
    """A tiny Vidur layout: one model's GEMMs, the DGX node's all-reduce (2-8 GPUs, 2 KiB
    to 64 MiB) with its send_recv.csv and a pairwise node beside it, and the host file."""
    model = root / "profiling" / "compute" / gpu / "meta-llama" / "Llama-2-7b-hf"
    model.mkdir(parents=True)
    mlp = [
        f"32,32,4096,11008,true,{t},{tp},{0.004 * t / tp + 0.1},{0.004 * t / tp + 0.1}"
        for t in (1, 2, 4, 8, 16, 64, 256, 1024)
        for tp in (1, 2)
    ]
    (model / "mlp.csv").write_text(_MLP_HEADER + "\n" + "\n".join(mlp) + "\n")
    if network:
        node = root / "profiling" / "network" / f"{gpu}_dgx"
        node.mkdir(parents=True)
        sizes = [2048 * 2**i for i in range(16)] + [3 * 2**20, 5 * 2**20, 40 * 2**20]
        rows = []
        for gpus in (2, 4, 8):
            for size in sizes:
                ms = _allreduce_s(gpus, size) * 1e3
                rows.append(f"{len(rows)},{ms!r},0,{gpus},{size},all_reduce,8,8")
        # Two nodes of 8 (InfiniBand): skipped and counted.
        rows.append(f"{len(rows)},0.5,0,16,2048,all_reduce,8,8")
        (node / "all_reduce.csv").write_text(_ALLREDUCE_HEADER + "\n" + "\n".join(rows) + "\n")
        (node / "send_recv.csv").write_text("size,time\n2048,0.01\n")
        pairwise = root / "profiling" / "network" / f"{gpu}_pairwise_nvlink"
        pairwise.mkdir(parents=True)
        (pairwise / "send_recv.csv").write_text("size,time\n2048,0.01\n")
    if history:
        (root / "history").mkdir()
        (root / "history" / f"{gpu}_cpu_overheads.csv").write_text(
            _HOST_HEADER + "\n" + "\n".join(_host_rows()) + "\n"
        )
    return root


def _fit(root: Path, gpu: str) -> tuple:
    notes: list[str] = []
    profile = fit_from_source(root, gpu, fitted_on="2026-12-02", progress=notes.append)
    return profile, [line for line in notes if line.startswith("note:")]


def test_fit_recovers_the_all_reduce_latency_and_bandwidth(tmp_path):
    profile, notes = _fit(_vidur_tree(tmp_path / "vidur"), "A100")
    assert "allreduce" in profile.grids
    assert "profiling/network/a100_dgx/all_reduce.csv" in profile.provenance["files"]
    assert profile.provenance["rows_skipped"] == {
        "allreduce: Vidur rows across nodes (InfiniBand)": 1
    }
    # Measured sizes are nodes (stored to 0.1 % of a log-ratio): the line through two of
    # them gives back the bandwidth and the latency; between nodes the ratio to the ring
    # roofline is interpolated, within 1 %.
    for gpus in (2, 4, 8):
        sizes = np.array([2048.0, 4096.0, 16 * 2**20, 64 * 2**20, 6 * 2**20, 24 * 2**20])
        predicted = profile.predict(
            "allreduce", {"num_gpus": np.full(len(sizes), float(gpus)), "message_bytes": sizes}
        )
        truth = np.array([_allreduce_s(gpus, s) for s in sizes])
        np.testing.assert_allclose(predicted[:4], truth[:4], rtol=1e-3)
        np.testing.assert_allclose(predicted[4:], truth[4:], rtol=1e-2)
        slope = (predicted[3] - predicted[2]) / (sizes[3] - sizes[2])
        assert 1 / slope == pytest.approx(BUS_BYTES_PER_S[gpus], rel=2e-3)
        small = (predicted[1] - predicted[0]) / (sizes[1] - sizes[0])
        assert predicted[0] - small * sizes[0] == pytest.approx(LATENCY_S[gpus], rel=1e-2)
    assert profile.errors["allreduce"]["fit"]["p90_abs_pct"] < 0.1
    not_read = profile.provenance["files_not_read"]
    assert set(not_read) == {
        "profiling/network/a100_dgx/send_recv.csv",
        "profiling/network/a100_pairwise_nvlink/send_recv.csv",
    }
    named = [line for line in notes if "Vidur file" in line]
    assert len(named) == 1 and "a100_dgx/send_recv.csv" in named[0], notes
    assert any("nccl_eager" in line for line in notes), notes


def test_fit_recovers_the_v0_host_line_from_tp1_rows_only(tmp_path):
    profile, notes = _fit(_vidur_tree(tmp_path / "vidur"), "A100")
    host = profile.host_vllm_v0
    assert host["host_overhead_s"] == pytest.approx(HOST_S, rel=1e-6)
    assert host["host_overhead_per_seq_s"] == pytest.approx(HOST_PER_SEQ_S, rel=1e-6)
    assert profile.host == {}  # the default (V1) runs' constants are not touched
    record = profile.provenance["host_vllm_v0"]
    assert record["rows_fitted"] == 2 * len(BATCHES)
    assert record["rows_tp_above_1_left_out"] == 2 * len(BATCHES)
    assert record["engine"].startswith("vLLM v0.6") and "less output processing" in record["engine"]
    assert "process_model_outputs_median" not in record["phases"]
    assert record["error"]["p90_abs_pct"] < 1e-3
    # Its own file list: ``files`` stays the files the grids are fitted from.
    assert record["files"] == ["history/a100_cpu_overheads.csv"]
    assert not any("history" in f for f in profile.provenance["files"])
    line = next(line for line in notes if "host_vllm_v0" in line)
    assert "14 rows of TP above 1 left out" in line and "Ray" in line, line


def test_the_v0_host_line_round_trips_and_old_profiles_load_without_it(tmp_path):
    profile, _ = _fit(_vidur_tree(tmp_path / "vidur"), "A100")
    path = tmp_path / "p.json"
    save_profile(profile, path)
    data = json.loads(path.read_text())
    assert list(data).index("host_vllm_v0") == list(data).index("host") + 1
    again = load_profile(path)
    assert again.host_vllm_v0 == profile.host_vllm_v0
    assert again.to_json() == profile.to_json()
    # A profile without it (every one written before) loads as before and keeps its bytes.
    shipped = PROFILES_DIR / "h100-sxm.json"
    old = load_profile(shipped)
    assert old.host_vllm_v0 == {} and "host_vllm_v0" not in old.to_json()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"host_overhead_s": -1.0}, "host_vllm_v0.host_overhead_s must be from 0 to 10"),
        ({"host_overhead_s": "1ms"}, "host_vllm_v0.host_overhead_s must be a number"),
        ({"per_token_s": 1e-6}, "host_vllm_v0.per_token_s: unknown constant"),
        ([1e-3, 1e-5], "host_vllm_v0 must be an object"),
    ],
)
def test_a_bad_v0_host_block_is_one_line(tmp_path, value, fragment):
    data = json.loads((PROFILES_DIR / "a40.json").read_text())
    data["host_vllm_v0"] = value
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SimreplayError, match="not a valid calibration profile") as caught:
        load_profile(path)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def _host_params(path: Path, scheduler: str) -> tuple[float, float, str, float]:
    step, info = step_model_for(
        get_model("llama-3.1-8b"), get_gpu("A100"), 1, path, scheduler=scheduler
    )
    decode = step.predict(num_decode_seqs=64, decode_context_tokens=64 * 1024)
    return step.params[layout.HOST_S], step.params[layout.HOST_S_PER_SEQ], info["source"], decode


def test_only_vllm_v0_runs_use_host_vllm_v0(tmp_path):
    profile, _ = _fit(_vidur_tree(tmp_path / "vidur"), "A100")
    path = tmp_path / "p.json"
    save_profile(profile, path)
    v0_s, v0_per_seq, v0_source, v0_step = _host_params(path, "vllm-v0")
    assert (v0_s, v0_per_seq) == pytest.approx((HOST_S, HOST_PER_SEQ_S), rel=1e-6)
    assert "host overheads of vLLM v0.6" in v0_source and "p.json" in v0_source
    for scheduler in ("vllm", "sarathi"):
        s, per_seq, source, step = _host_params(path, scheduler)
        assert (s, per_seq) == (
            DEFAULT_EFFICIENCIES.host_overhead_s,
            DEFAULT_EFFICIENCIES.host_overhead_per_seq_s,
        )
        assert "host overheads" not in source
        # The same grids: the steps differ by the host constants alone.
        expected = (HOST_S - s) + 64 * (HOST_PER_SEQ_S - per_seq)
        assert v0_step - step == pytest.approx(expected, rel=1e-6)
    # A profile with both blocks: each scheduler reads its own.
    profile.host = {"host_overhead_s": 2e-3, "host_overhead_per_seq_s": 0.0}
    save_profile(profile, path)
    assert _host_params(path, "vllm")[:2] == (2e-3, 0.0)
    assert _host_params(path, "vllm-v0")[:2] == pytest.approx((HOST_S, HOST_PER_SEQ_S))


def test_a40_without_network_files_says_so_in_one_line(tmp_path):
    profile, notes = _fit(_vidur_tree(tmp_path / "vidur", "a40", network=False), "A40")
    assert "allreduce" not in profile.grids and list(profile.grids) == ["gemm_bfloat16"]
    said = [line for line in notes if "all-reduce" in line]
    assert len(said) == 1 and "Vidur has no all-reduce timings for A40" in said[0], notes
    assert profile.host_vllm_v0["host_overhead_s"] == pytest.approx(HOST_S, rel=1e-6)
    # With the send_recv.csv of its pairwise node, as Vidur ships it: named, not read.
    (tmp_path / "vidur" / "profiling" / "network" / "a40_pairwise_nvlink").mkdir(parents=True)
    send_recv = tmp_path / "vidur" / "profiling" / "network" / "a40_pairwise_nvlink"
    (send_recv / "send_recv.csv").write_text("size,time\n2048,0.01\n")
    profile, notes = _fit(tmp_path / "vidur", "A40")
    assert list(profile.provenance["files_not_read"]) == [
        "profiling/network/a40_pairwise_nvlink/send_recv.csv"
    ]


def test_without_a_host_file_the_profile_has_no_v0_host_and_says_so(tmp_path):
    profile, notes = _fit(_vidur_tree(tmp_path / "vidur", "h100", history=False), "H100")
    assert profile.host_vllm_v0 == {} and "host_vllm_v0" not in profile.to_json()
    assert any("Vidur has no host overheads for H100-SXM" in line for line in notes), notes


def _edit_host_file(root: Path, edit) -> Path:
    path = root / "history" / "a100_cpu_overheads.csv"
    path.write_text(edit(path.read_text()))
    return path


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            lambda text: text.replace(",sampler_e2e_median", ",sampler"),
            "missing column(s) sampler_e2e_median (expected Vidur's",
        ),
        (
            lambda text: text.replace(text.splitlines()[2].split(",")[1], "abc", 1),
            "row 2: column 'schedule_median' must be a number, got 'abc'",
        ),
        (
            lambda text: text.replace(",8,1\n", ",eight,1\n", 1),
            "row 1: column 'batch_size' must be a number, got 'eight'",
        ),
        (lambda text: text.splitlines()[0] + "\n", "no rows (expected Vidur's"),
        (lambda text: "", "no rows (expected Vidur's"),
    ],
    ids=["missing-column", "non-numeric-time", "non-numeric-batch", "header-only", "empty"],
)
def test_a_bad_host_file_is_one_error_naming_file_and_column(tmp_path, edit, fragment):
    root = _vidur_tree(tmp_path / "vidur")
    path = _edit_host_file(root, edit)
    with pytest.raises(SimreplayError) as caught:
        fit_from_source(root, "A100")
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and fragment in message, message
    assert "\n" not in message
    result = runner.invoke(app, ["calibrate", "fit", "--source", str(root), "--gpu", "A100"])
    assert result.exit_code in (1, 2), result.output


def test_a_bad_host_file_through_the_cli_is_exit_1_and_writes_nothing(tmp_path):
    root = _vidur_tree(tmp_path / "vidur")
    _edit_host_file(root, lambda text: text.replace(",sampler_e2e_median", ",x"))
    out = tmp_path / "out"
    out.mkdir()
    result = runner.invoke(
        app, ["calibrate", "fit", "--source", str(root), "--gpu", "A100", "-o", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert "a100_cpu_overheads.csv: missing column(s) sampler_e2e_median" in (result.output)
    assert not list(out.iterdir())


def test_a_bad_all_reduce_file_is_one_error_naming_file_and_column(tmp_path):
    root = _vidur_tree(tmp_path / "vidur")
    path = root / "profiling" / "network" / "a100_dgx" / "all_reduce.csv"
    path.write_text(path.read_text().replace(",num_workers,", ",workers,"))
    with pytest.raises(SimreplayError, match=r"missing column\(s\) num_workers") as caught:
        fit_from_source(root, "A100")
    assert str(caught.value).startswith(f"{path}: ")


def test_one_batch_size_fits_no_line_and_says_so(tmp_path):
    root = _vidur_tree(tmp_path / "vidur", history=False)
    (root / "history").mkdir()
    (root / "history" / "a100_cpu_overheads.csv").write_text(
        _HOST_HEADER + "\n" + "\n".join(_host_rows(batches=(32,))) + "\n"
    )
    profile, notes = _fit(root, "A100")
    assert profile.host_vllm_v0 == {}
    assert any("a line needs two" in line for line in notes), notes


@pytest.mark.skipif(not SHARED_VIDUR.is_dir(), reason="../shared calibration data absent")
def test_vidurs_host_files_give_the_documented_v0_figures_and_a40_ships_them():
    """The roofline's documented V0 figures (A100 TP 1: 0.75 ms + 27 us a sequence before
    outputs, which v0.6 overlaps) are this line; the shipped A40 profile holds the A40
    file's line, and A40's tree has no all-reduce."""
    fitted = {}
    for gpu in ("A100-80GB-SXM", "A40"):
        meas = Measurements()
        not_read = add_vidur_host_overheads(SHARED_VIDUR, gpu, meas)
        host, record = fit_vidur_host(meas, gpu)
        fitted[gpu] = host
        assert record["rows_fitted"] == 26 and record["rows_tp_above_1_left_out"] > 0
        assert set(not_read) == (
            {"history/a100_llama2_70b_tp2_attention.csv"} if gpu != "A40" else set()
        )
    a100 = fitted["A100-80GB-SXM"]
    assert a100["host_overhead_s"] == pytest.approx(0.75e-3, rel=0.05)
    assert a100["host_overhead_per_seq_s"] == pytest.approx(27e-6, rel=0.05)
    shipped = load_profile(PROFILES_DIR / "a40.json")
    assert shipped.host_vllm_v0 == fitted["A40"]
    assert shipped.host == {} and "allreduce" not in shipped.grids
    assert shipped.provenance["host_vllm_v0"]["files"] == ["history/a40_cpu_overheads.csv"]


def test_a_scenario_passes_its_scheduler_to_the_step_model(tmp_path):
    """The helper that added host_vllm_v0 left scenario.py calling step_model_for without
    the scheduler, so ``run --scheduler vllm-v0`` never read it; each scheduler's resolved
    step model now carries its own host constants, and the two are cached apart."""
    from simulator.scenario import Scenario, resolve

    profile, _ = _fit(_vidur_tree(tmp_path / "vidur"), "A100")
    path = tmp_path / "p.json"
    save_profile(profile, path)
    common = {"gpus": "1xA100", "model": "llama-3.1-8b", "calibration": str(path)}
    v0 = resolve(Scenario(scheduler="vllm-v0", **common)).step_model
    v1 = resolve(Scenario(**common)).step_model
    assert (v0.params[layout.HOST_S], v0.params[layout.HOST_S_PER_SEQ]) == pytest.approx(
        (HOST_S, HOST_PER_SEQ_S), rel=1e-6
    )
    assert v1.params[layout.HOST_S] == DEFAULT_EFFICIENCIES.host_overhead_s
    assert "host overheads of vLLM v0.6" in v0.source
    assert "host overheads" not in v1.source


@pytest.mark.parametrize("scheduler", ["vllm", "vllm-v0"])
def test_validate_fit_trials_are_not_overridden_by_the_base_profiles_v0_host(scheduler):
    """``validate --fit`` prices each trial host constant over the base profile's grids; a
    base holding host_vllm_v0 (the shipped A40) would have answered every vllm-v0 trial
    with Vidur's constants, making the search flat."""
    from simulator.calibration.validate import _base_profile, _with_host
    from simulator.scenario import Scenario, resolve

    resolved = resolve(Scenario(gpus="1xA40", model="llama-3.1-8b", scheduler=scheduler))
    base = _base_profile(resolved)
    assert base is not None and base.host_vllm_v0  # the shipped A40 profile
    trial = {"host_overhead_s": 2.5e-3, "host_overhead_per_seq_s": 7e-6}
    step = _with_host(resolved, base, trial).step_model
    assert (step.params[layout.HOST_S], step.params[layout.HOST_S_PER_SEQ]) == (2.5e-3, 7e-6)


def test_the_host_line_of_a_vllm_v0_run_names_v0_6_not_v0_11():
    """Found in review: a ``--scheduler vllm-v0`` run's Host overhead line said "as vLLM
    v0.11" while its engine line said v0.6."""
    from simulator.scenario_text import host_text

    model = {"efficiency_host_overhead_s": 1e-3, "efficiency_host_overhead_per_seq_s": 3e-5}
    v0 = host_text({"scheduler": "vllm-v0", "step_time_model": model})
    v1 = host_text({"scheduler": "vllm", "step_time_model": model})
    assert "v0.6" in v0 and "v0.11" not in v0 and v0.startswith("1 ms + 30 us")
    assert "v0.11" in v1


def test_the_host_line_names_where_its_constants_come_from():
    """QA (stop 36): the Host overhead line did not say whether its constants were the
    defaults or a profile's, and wrote 1 ms per sequence as "1e+03 us"."""
    from simulator.scenario import Scenario, resolve
    from simulator.scenario_text import host_text

    a40 = resolve(Scenario(gpus="1xA40", scheduler="vllm-v0")).to_dict()
    assert host_text(a40).startswith(
        "1.08 ms + 36.1 us per scheduled request a step from a40.json (vidur, A40), added"
    )
    h100 = resolve(Scenario(gpus="1xH100")).to_dict()
    assert "a step (simreplay's defaults; calibrate validate --fit measures yours)" in (
        host_text(h100)
    )
    model = {"efficiency_host_overhead_s": 12.5, "efficiency_host_overhead_per_seq_s": 1e-3}
    assert host_text({"step_time_model": model}).startswith("12,500 ms + 1,000 us per")
