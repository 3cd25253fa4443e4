"""``simreplay calibrate``: defects found by a QA pass (device checks, what ``-o`` replaces,
which folder is read, how ``check`` predicts, what a profile may hold), one test each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_calibration import _gemm_folder, _write, run_with_edited_profile
from typer.testing import CliRunner

from simulator.calibration.profile import load_profile
from simulator.calibration.select import PROFILES_DIR
from simulator.cli import app

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, ["calibrate", *map(str, args)])


def _one_at_a_time(path: Path, tpot_s: float = 0.012) -> Path:
    """A per-request benchmark of six requests sent 10 s apart."""
    rows = [f"{10 * i},{500 + 100 * i},101,0.05,{0.05 + 100 * tpot_s}" for i in range(6)]
    path.write_text("arrival_time_s,input_tokens,output_tokens,ttft_s,e2e_s\n" + "\n".join(rows))
    return path


# --- 2. validate --fit -o another GPU's profile -------------------------------------------


def test_validate_fit_refuses_to_replace_another_gpus_profile(tmp_path):
    """QA: ``validate --gpus 1xH100 --fit -o a100-80gb-sxm.json`` replaced the A100 profile
    with an H100 one ("replaced the profile it held"), which later A100 runs used; ``fit``
    refuses the same."""
    a100 = tmp_path / "a100-80gb-sxm.json"
    a100.write_bytes((PROFILES_DIR / "a100-80gb-sxm.json").read_bytes())
    before = a100.read_bytes()
    bench = _one_at_a_time(tmp_path / "b.csv")
    args = ["validate", bench, "--gpus", "1xH100", "--model", "llama-3.1-8b", "--fit"]
    result = _invoke(*args, "-o", a100)
    assert result.exit_code == 1, result.stdout
    assert result.stderr.strip() == (
        f"error: -o {a100}: {a100} is A100-80GB-SXM's profile, not H100-SXM's: fit replaces "
        "only a profile of the same GPU; choose another name"
    )
    assert a100.read_bytes() == before
    # Its own GPU's profile is still replaced, with a note.
    mine = tmp_path / "mine.json"
    assert _invoke(*args, "-o", mine).exit_code == 0
    again = _invoke(*args, "-o", mine)
    assert again.exit_code == 0, again.stderr
    assert f"note: -o {mine}: replaced the profile it held" in again.stderr


# --- 3. fit -o over a profile with more grids ----------------------------------------------


def test_fit_over_a_profile_with_more_grids_is_refused_without_replace(tmp_path):
    """QA: a Vidur A100 fit over the AIConfigurator A100 profile left only gemm_bfloat16,
    with no word of what it replaced."""
    source = _gemm_folder(tmp_path / "mine", "NVIDIA H100 80GB HBM3")
    out = tmp_path / "profiles" / "h100-sxm.json"
    out.parent.mkdir()
    out.write_bytes((PROFILES_DIR / "h100-sxm.json").read_bytes())
    before = out.read_bytes()
    lost = sorted(set(load_profile(out).grids) - {"gemm_bfloat16"})
    result = _invoke("fit", "--source", source, "--gpu", "H100", "-o", out)
    assert result.exit_code == 1, result.stdout
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: -o {out}: {out} holds H100-SXM's profile from aiconfigurator")
    assert f"the new fit has no {', '.join(lost)} grids" in line
    assert "give --replace to replace it anyway" in line and "nothing was written" in line
    assert out.read_bytes() == before
    result = _invoke("fit", "--source", source, "--gpu", "H100", "-o", out, "--replace")
    assert result.exit_code == 0, result.stderr
    assert f"; the new profile has no {', '.join(lost)}" in result.stderr
    assert set(load_profile(out).grids) == {"gemm_bfloat16"}
    # Replacing a profile of the same grids needs no --replace, and says so.
    again = _invoke("fit", "--source", source, "--gpu", "H100", "-o", out)
    assert again.exit_code == 0, again.stderr
    assert (
        f"note: -o {out}: replaced H100-SXM's profile from measured operator files "
        "(gemm_bfloat16)" in again.stderr
    )


def test_validate_fit_into_a_name_without_json_gives_advice_it_takes(tmp_path):
    """QA: ``validate --fit -o NAME`` advised "as <gpu>.json into a folder that exists",
    but ``-o existing_dir/`` is refused there ("is a directory; give a file name")."""
    bench = _one_at_a_time(tmp_path / "b.csv")
    args = ["validate", bench, "--gpus", "1xH100", "--model", "llama-3.1-8b", "--fit"]
    result = _invoke(*args, "-o", tmp_path / "fit")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: -o {tmp_path / 'fit'}: not a .json file name: a profile is written to NAME.json"
    )
    assert "folder" not in result.stderr


# --- 5. check on a GPU without a profile predicts as a run does ----------------------------


def test_uncalibrated_check_prices_calls_as_the_runs_step_model():
    """QA: ``check DIR --gpu MI300X`` (no profile, no relative) predicted with the bare
    roofline bound, where a run applies DEFAULT_EFFICIENCIES and kernel latencies.
    Differential: per-call times against the run's step parts for one layer's calls."""
    import dataclasses

    from simulator.calibration.check import uncalibrated_latency_s
    from simulator.hardware import get_gpu
    from simulator.models import get_model
    from simulator.perf.roofline import roofline_model

    gpu = get_gpu("MI300X")
    model = dataclasses.replace(get_model("llama-3.1-8b"), num_layers=1)
    h, g, d = model.num_heads, model.num_kv_heads, model.head_dim
    step = roofline_model(model, gpu, 1)
    # Decode of b sequences of context c: attention (its latency counted with the prefill
    # part) and the LM head, a GEMM of m = b, n = vocab, k = hidden.
    b, c = 16, 3000
    parts = step.predict_parts(num_decode_seqs=b, decode_context_tokens=b * c)
    attention = {"batch": b, "context": c, "kv_heads": g, "head_dim": d, "gqa": h / g}
    got = uncalibrated_latency_s("generation_attention", attention, gpu)
    assert got == pytest.approx(parts["prefill_attention"] + parts["decode_attention"])
    head = {"m": b, "n": model.vocab_size, "k": model.hidden_size}
    assert uncalibrated_latency_s("gemm_bfloat16", head, gpu) == pytest.approx(parts["lm_head"])
    # A fresh prompt of s tokens for each of b sequences.
    s = 2048
    parts = step.predict_parts(
        num_prefill_tokens=b * s,
        num_prefill_seqs=b,
        prefill_attn_work=b * s * s / 2.0,
        prefill_context_tokens=b * s,
    )
    prefill = {"batch": b, "isl": s, "heads": h, "head_dim": d, "gqa": h / g}
    got = uncalibrated_latency_s("context_attention", prefill, gpu)
    assert got == pytest.approx(parts["prefill_attention"])
    # Two all-reduces per layer of T x hidden 16-bit elements at TP 2.
    t = 512
    parts = roofline_model(model, gpu, 2).predict_parts(num_decode_seqs=t, decode_context_tokens=t)
    message = {"num_gpus": 2, "message_bytes": t * model.hidden_size * 2}
    got = 2 * uncalibrated_latency_s("allreduce", message, gpu)
    assert got == pytest.approx(parts["allreduce"])


def test_check_on_a_gpu_without_profile_or_relative_names_the_default_efficiencies(tmp_path):
    _gemm_folder(tmp_path, None)
    result = _invoke("check", tmp_path, "--gpu", "MI300X", "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["profile"] is None
    gemm = out["families"]["gemm"]
    assert gemm["predicted_by"] == {
        "gemm_bfloat16": "roofline with default efficiencies (uncalibrated)"
    }


# --- 8. the profile loader's type and range checks -----------------------------------------


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            lambda d: d.update(gpu="Z100"),
            "gpu 'Z100' is not a GPU of the catalog (simreplay hardware list)",
        ),
        (
            lambda d: d["grids"]["gemm_bfloat16"].update(floor_s=100),
            "grids.gemm_bfloat16.floor_s must be a time in seconds above 0 and at most 1 "
            "(the 1st percentile of the measured calls), got 100",
        ),
        (lambda d: d.update(model=5), "model must be null or a model's name, got 5"),
        (
            lambda d: d.update(provenance=None),
            "provenance must be an object (source, files, ...), got null",
        ),
        (
            lambda d: d["grids"].update(gemm_bfloat16=None),
            "grids.gemm_bfloat16 must be an object (axes, log_ratio, ...), got null",
        ),
        (
            lambda d: d["grids"]["context_attention"].update(terms=[{}]),
            "grids.context_attention.terms[0]: missing field 'axes'",
        ),
    ],
)
def test_a_profile_field_of_the_wrong_type_or_range_is_one_line_naming_it(tmp_path, edit, fragment):
    """QA: gpu "Z100" ran; floor_s 100 (seconds), model 5 and provenance null were
    accepted; a null grid gave "'NoneType' object is not subscriptable" and terms [{}]
    "missing field 'axes'" without the field's path."""
    path, lines = run_with_edited_profile(tmp_path, edit)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {path}: not a valid calibration profile: {fragment}")


def test_a_profile_naming_its_gpu_by_an_alias_loads_as_the_catalog_names_it(tmp_path):
    data = json.loads((PROFILES_DIR / "h100-sxm.json").read_text())
    data["gpu"] = "H100"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    assert load_profile(path).gpu == "H100-SXM"


# --- 10. failed or cut-short requests in a benchmark -------------------------------------


def _validate_json(path: Path):
    return _invoke("validate", path, "--gpus", "1xH100", "--model", "llama-3.1-8b", "--json")


def _validation(path: Path) -> dict:
    """``validate --json``'s validation object for ``path``, which must succeed."""
    result = _validate_json(path)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["validation"]


def test_per_request_rows_with_an_error_are_dropped_and_counted(tmp_path):
    """QA: rows whose "error" column said "timeout" were replayed as served requests."""
    path = tmp_path / "b.csv"
    path.write_text(
        "arrival_time_s,input_tokens,output_tokens,ttft_s,e2e_s,error\n"
        "0,100,11,0.05,0.2,\n"
        "1,100,11,0.05,0.2,timeout\n"
        "2,100,11,0.05,0.2,None\n"
    )
    validation = _validation(path)
    assert validation["num_requests"] == 2
    assert (
        "dropped 1 request whose error column is set (failed in the benchmark; the first, "
        "line 3: 'timeout')" in validation["notes"]
    )
    lines = tmp_path / "b.jsonl"
    lines.write_text(
        '{"arrival_time_s": 0, "input_tokens": 9, "output_tokens": 5, "ttft_s": 0.1, '
        '"e2e_s": 0.3, "error": "timeout"}\n'
    )
    lines.write_text(
        '{"arrival_time_s": 0, "input_tokens": 9, "output_tokens": 5, "ttft_s": 0.1, '
        '"e2e_s": 0.3, "error": []}\n'
        '{"arrival_time_s": 1, "input_tokens": 9, "output_tokens": 5, "ttft_s": 0.1, '
        '"e2e_s": 0.3, "error": null}\n'
    )
    assert _validation(lines)["num_requests"] == 2
    lines.write_text(
        '{"arrival_time_s": 0, "input_tokens": 9, "output_tokens": 5, "ttft_s": 0.1, '
        '"e2e_s": 0.3, "error": "timeout"}\n'
    )
    result = _validate_json(lines)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: b.jsonl: no successful requests to replay: every line's error column is set "
        "(the first, line 1: 'timeout')"
    )


def test_a_vllm_request_with_far_fewer_gaps_than_tokens_is_dropped_and_counted(tmp_path):
    """QA: a result without latencies whose request had 200 output tokens and 3 itls was
    replayed with E2E = TTFT + 3 gaps."""
    result = {
        "input_lens": [5, 6, 7],
        "output_lens": [200, 3, 3],
        "ttfts": [0.1, 0.1, 0.1],
        "itls": [[0.01, 0.01, 0.01], [0.1, 0.1], [0.1, 0.1]],
        "start_times": [10.0, 11.0, 12.0],
        "errors": ["", "", ""],
    }
    path = tmp_path / "v.json"
    path.write_text(json.dumps(result))
    validation = _validation(path)
    assert validation["num_requests"] == 2
    assert (
        "dropped 1 request with fewer than one itls gap per 16 output tokens (the first, "
        "request 1: 3 gaps for 200 tokens): a list cut short, so its E2E and TPOT are "
        "unknown" in validation["notes"]
    )
    # Speculative decoding's chunks of a few tokens are kept.
    result.update(output_lens=[40, 3, 3])
    path.write_text(json.dumps(result))
    assert _validation(path)["num_requests"] == 3
    result.update(output_lens=[200, 200, 200])
    path.write_text(json.dumps(result))
    run = _validate_json(path)
    assert run.exit_code == 1
    assert run.stderr.strip() == (
        "error: v.json: none of the 3 requests can be replayed (3 with fewer than one itls "
        "gap per 16 output tokens (cut short)): their E2E is unknown without latencies"
    )


# --- 6. Vidur's network collectives ----------------------------------------------------------

_VIDUR_MLP = (
    "n_head,n_kv_head,n_embd,n_expanded_embd,use_gated_mlp,num_tokens,"
    "num_tensor_parallel_workers,time_stats.mlp_up_proj.median,time_stats.mlp_down_proj.median\n"
    "32,32,4096,11008,true,16,1,0.1,0.2\n"
)
_VIDUR_ALLREDUCE = (
    ",time_stats.all_reduce.median,rank,num_workers,size,collective,devices_per_node,"
    "max_devices_per_node\n"
)


def _vidur_tree(root: Path) -> Path:
    """A Vidur tree: one H100 mlp.csv; all-reduce of the DGX node (2 rows on one node, 1
    across two) and of an NVLink-bridged node, and a send_recv file."""
    compute = root / "profiling" / "compute" / "h100" / "meta-llama" / "Llama-2-7b-hf"
    compute.mkdir(parents=True)
    (compute / "mlp.csv").write_text(_VIDUR_MLP)
    dgx = root / "profiling" / "network" / "h100_dgx"
    dgx.mkdir(parents=True)
    (dgx / "all_reduce.csv").write_text(
        _VIDUR_ALLREDUCE
        + "0,0.030,0,2,2048,all_reduce,2,8\n"
        + "1,0.300,0,8,67108864,all_reduce,8,8\n"
        + "2,1.500,0,16,67108864,all_reduce,8,8\n"
    )
    (dgx / "send_recv.csv").write_text(_VIDUR_ALLREDUCE.replace("all_reduce", "send_recv"))
    pairs = root / "profiling" / "network" / "h100_pairwise_nvlink"
    pairs.mkdir(parents=True)
    (pairs / "all_reduce.csv").write_text(_VIDUR_ALLREDUCE + "0,0.03,0,2,2048,all_reduce,2,4\n")
    return root


def test_check_reads_vidurs_all_reduce_of_the_gpus_node_and_names_the_rest(tmp_path):
    """QA: Vidur's profiling/network/*/all_reduce.csv were neither read nor counted
    (``check vidur --gpu H100``: allreduce 0 rows, rows_skipped {})."""
    tree = _vidur_tree(tmp_path / "vidur")
    result = _invoke("check", tree, "--gpu", "H100", "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["families"]["allreduce"]["n"] == 2
    assert "profiling/network/h100_dgx/all_reduce.csv" in out["files"]
    assert out["rows_skipped"] == {"allreduce: Vidur rows across nodes (InfiniBand)": 1}
    assert set(out["files_not_read"]) == {
        "profiling/network/h100_dgx/send_recv.csv",
        "profiling/network/h100_pairwise_nvlink/all_reduce.csv",
    }
    assert "note: 2 Vidur network files of H100-SXM not read: " in result.stderr
    # The 8-GPU, 64 MiB row against the ring over H100's NVLink.
    from simulator.calibration.sources import Measurements, add_vidur_allreduce

    meas = Measurements()
    add_vidur_allreduce(tree, "H100-SXM", meas)
    np.testing.assert_array_equal(meas.allreduce["message_bytes"], [2048.0, 67108864.0])
    np.testing.assert_allclose(meas.allreduce["latency_s"], [30e-6, 300e-6])


def test_check_of_a_tree_says_which_folders_it_left_out_only_when_there_are_some(tmp_path):
    """QA: "the other GPUs' folders are left out" was printed with no other folder."""
    _gemm_folder(tmp_path / "h100_sxm", "NVIDIA H100 80GB HBM3")
    (tmp_path / "systems").mkdir()
    (tmp_path / "systems" / "h100_sxm.yaml").write_text("gpu: {}\n")
    result = _invoke("check", tmp_path, "--gpu", "H100")
    assert result.exit_code == 0, result.stderr
    assert (
        f"note: read H100-SXM's folder h100_sxm/ of the aiconfigurator tree {tmp_path}"
        in result.stderr.splitlines()
    )


# --- 1. a device string must be the --gpu's own ------------------------------------------


@pytest.mark.parametrize("command", ["fit", "check"])
@pytest.mark.parametrize(
    ("device", "gpu", "why"),
    [
        ("NVIDIA H20", "H200", "that device is no catalog GPU"),
        ("NVIDIA H800", "H100", "that device is no catalog GPU"),
        ("NVIDIA GH200 480GB", "H100", "that device is no catalog GPU"),
        ("NVIDIA H100 NVL", "H100", "that device is no catalog GPU"),
        (
            "NVIDIA A100-SXM4-80GB MIG 3g.40gb",
            "A100",
            "a MIG slice of NVIDIA A100-SXM4-80GB has a fraction of the GPU's compute",
        ),
        ("NVIDIA A800-SXM4-80GB", "A100", "that device is no catalog GPU"),
        ("NVIDIA L40", "L40S", "that device is no catalog GPU"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX-PRO-6000", "that device is no catalog GPU"),
        ("Intel(R) Data Center GPU Max 1550", "H100", "that device is no catalog GPU"),
    ],
)
def test_files_of_a_device_not_in_the_catalog_are_refused(tmp_path, command, device, gpu, why):
    """QA: only devices naming a catalog GPU were checked, so NVIDIA H20 files fitted with
    --gpu H200 wrote an H200 profile (provenance.device "NVIDIA H20", no note); H800, GH200,
    H100 NVL passed as H100, a MIG slice and A800 as A100, L40 as L40S, RTX 6000 Ada as
    RTX PRO 6000."""
    from simulator.hardware import get_gpu

    folder = _gemm_folder(tmp_path / "mine", device)
    out = tmp_path / "p.json"
    args = ["fit", "--source", folder, "-o", out] if command == "fit" else ["check", folder]
    result = _invoke(*args, "--gpu", gpu)
    assert result.exit_code == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    name = get_gpu(gpu).name
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {folder}: the files were measured on {device}, not {name} (whose files say "
    ), lines
    assert f"): {why}" in lines[0] and f"{command} reads only files of the --gpu itself" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("device", "gpu"),
    [
        ("NVIDIA H200", "H200"),
        ("H200", "H200"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("cpu", "H200"),
        ("AMD EPYC 7763 64-Core Processor", "H200"),
        ("Intel(R) Xeon(R) Platinum 8480C", "H100"),
    ],
)
def test_the_gpus_own_device_names_and_processors_are_taken(tmp_path, device, gpu):
    folder = _gemm_folder(tmp_path / "mine", device)
    result = _invoke("check", folder, "--gpu", gpu, "--json")
    assert result.exit_code == 0, result.stderr


def test_every_device_name_of_the_catalog_is_its_gpus_alone():
    from simulator.calibration.sources import DEVICE_NAMES, device_gpu, is_unchecked_device
    from simulator.hardware import GPUS

    assert set(DEVICE_NAMES) <= set(GPUS)
    for gpu, names in DEVICE_NAMES.items():
        for name in names:
            assert device_gpu(name) == gpu and not is_unchecked_device(name), name
        for name in (gpu, *GPUS[gpu].aliases):
            assert device_gpu(name) == gpu, name


SHARED = Path(__file__).resolve().parents[2] / "shared" / "calibration-data"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared calibration data absent")
def test_every_device_in_the_shared_data_is_its_own_gpu():
    """Each published system folder's device strings (and Vidur's folder names) pass the
    device check under the GPU the folder is, and no other."""
    from simulator.calibration.fit import read_gpu_measurements
    from simulator.calibration.select import AICONFIGURATOR_SYSTEMS, VIDUR_SYSTEMS
    from simulator.calibration.sources import check_devices, device_gpu, is_unchecked_device

    for tree, systems in (("aiconfigurator", AICONFIGURATOR_SYSTEMS), ("vidur", VIDUR_SYSTEMS)):
        for system, gpu in systems.items():
            folder = SHARED / tree / system
            if tree == "vidur":
                folder = SHARED / tree / "profiling" / "compute" / system
            if not folder.is_dir():
                continue
            meas, _, _ = read_gpu_measurements(SHARED / tree, gpu)
            devices = meas.device.split(", ")
            assert devices and not any(is_unchecked_device(d) for d in devices), devices
            assert {device_gpu(d) for d in devices} == {gpu}, (system, devices)
            check_devices(meas.device, gpu, folder)


# --- 9. plain words ------------------------------------------------------------------------


def test_an_absurd_latency_is_said_in_plain_words(tmp_path):
    """QA: "column 'latency' must be from -inf to 2**40, got 1e+30"."""
    _write(
        {"m": [1.0, 2.0], "n": [8.0, 8.0], "k": [8.0, 8.0], "latency": [0.01, 1e30]},
        tmp_path / "gemm_perf.parquet",
    )
    result = _invoke("check", tmp_path, "--gpu", "H100")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {tmp_path / 'gemm_perf.parquet'}: row 2: column 'latency' must be at most "
        "2**40 (1.1e+12) ms, got 1e+30 ms"
    )


def test_fit_names_the_one_request_of_one_output_token_in_the_singular(tmp_path):
    """QA: "1 requests with 1 output token"."""
    path = _one_at_a_time(tmp_path / "b.csv")
    path.write_text(path.read_text() + "\n70,100,1,0.05,0.05")
    args = ["validate", path, "--gpus", "1xH100", "--model", "llama-3.1-8b", "--fit"]
    result = _invoke(*args, "-o", tmp_path / "p.json")
    assert result.exit_code == 0, result.stderr
    assert (
        "note: --fit matches TPOT, which 1 request with 1 output token does not have: fitted "
        "to the other 6 requests"
    ) in result.stderr


def test_fit_checks_the_relatives_it_reads_in_the_output_folder_before_fitting(tmp_path):
    """QA: ``fit -o DIR`` with a damaged relative's profile in DIR failed only after the
    whole fit, without saying it was read for the leave-one-GPU-out measurement."""
    source = _gemm_folder(tmp_path / "mine", "NVIDIA H200")
    out = tmp_path / "profiles"
    out.mkdir()
    (out / "h100-sxm.json").write_text("{not json")
    result = _invoke("fit", "--source", source, "--gpu", "H200", "-o", f"{out}/")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {out / 'h100-sxm.json'}: not a calibration profile: invalid JSON at line 1, "
        "column 2 (Expecting property name enclosed in double quotes) (fit reads H100-SXM's "
        f"profile in the output's folder {out} to measure H200's leave-one-GPU-out error; "
        "repair or move it, or write the profile elsewhere)"
    ], lines
    assert not (out / "h200.json").exists()


# --- 4. a folder of one's own per-GPU subfolders ------------------------------------------


def test_a_folder_of_per_gpu_subfolders_reads_the_gpus_own(tmp_path):
    """QA: mine/h200_sxm/ and mine/l4/ (no device columns) were read whole: ``check mine
    --gpu H200`` took both GPUs' files; fit merged a100_40gb/ and a100_80gb_pcie/ too."""
    mine = tmp_path / "mine"
    _gemm_folder(mine / "h200_sxm", None)
    _gemm_folder(mine / "l4", None, scale=5.0)
    result = _invoke("check", mine, "--gpu", "H200", "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["families"]["gemm"]["n"] == 3
    assert out["system"] == "h200_sxm" and out["other_folders"] == ["l4"]
    assert (
        f"note: read H200's folder h200_sxm/ of the measured operator files tree {mine}; "
        "left out: l4/"
    ) in result.stderr
    profile = tmp_path / "l4.json"
    fit = _invoke("fit", "--source", mine, "--gpu", "L4", "-o", profile)
    assert fit.exit_code == 0, fit.stderr
    assert f"note: read L4's folder l4/ of {mine}; left out: h200_sxm/" in fit.stderr
    provenance = load_profile(profile).provenance
    assert provenance["files"] == ["gemm/vllm/0.24.0/gemm_perf.parquet"]
    assert provenance["source_dir"] == str(mine / "l4")
    a100 = tmp_path / "a100"
    _gemm_folder(a100 / "a100_40gb", None)
    _gemm_folder(a100 / "a100_80gb_pcie", None)
    refused = _invoke("fit", "--source", a100, "--gpu", "A100", "-o", tmp_path / "a.json")
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (
        f"error: {a100}: its folders hold other GPUs' measurements (a100_40gb/ "
        "(A100-40GB-SXM), a100_80gb_pcie/ (A100-80GB-PCIe)), none of A100-80GB-SXM: give the "
        "folder of A100-80GB-SXM's measurements, or read each under its own --gpu"
    )
    assert not (tmp_path / "a.json").exists()


# --- 7. very slow (microsecond or CPU) files ----------------------------------------------


def test_fit_refuses_before_writing_a_profile_the_loader_would_refuse(tmp_path):
    """Calls 4.6 million times their roofline (a CPU's, read in ms from microseconds) were
    fitted and written into a profile that every run then refused to load."""
    source = _gemm_folder(tmp_path / "slow", "AMD EPYC 7763 64-Core Processor", scale=3e6)
    out = tmp_path / "slow.json"
    result = _invoke("fit", "--source", source, "--gpu", "H100", "-o", out)
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {source}: the fitted profile would not load: grids.")
    assert line.endswith("; nothing was written")
    assert not out.exists()


def test_fit_of_far_slow_reads_keeps_no_dram_rate_and_says_why(tmp_path):
    """QA: microsecond-scale (or CPU) files were fitted with a note when few, but refused
    once a family had the 200 points that measure a DRAM rate ("microseconds read as
    milliseconds?"); now both are fitted, the rate left out with a note that names a slower
    device too."""
    from simulator.calibration.fit import DRAM_RATE_MIN_POINTS, DRAM_RATE_TOP_SHARE
    from simulator.calibration.profile import read_bytes

    count = int(DRAM_RATE_MIN_POINTS / DRAM_RATE_TOP_SHARE) + 40
    feats = {
        "m": np.resize([1.0, 2.0, 4.0, 8.0, 16.0], count),
        "n": np.resize([4096.0, 8192.0, 16384.0], count),
        "k": np.full(count, 16384.0),
    }
    latency_s = read_bytes("gemm_bfloat16", feats) / 2e9  # 2 GB/s: a thousandth of A100's
    _write(
        {
            "gemm_dtype": ["bfloat16"] * count,
            **feats,
            "latency": latency_s * 1e3,
            # A CPU's: a GPU's calls all 1,000 times the roofline are refused (microseconds).
            "device": ["AMD EPYC 7763 64-Core Processor"] * count,
        },
        tmp_path / "src" / "gemm_perf.parquet",
    )
    out = tmp_path / "p.json"
    result = _invoke("fit", "--source", tmp_path / "src", "--gpu", "A100", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert (
        "(a profile takes 0.05 to 1.5): the profile keeps no DRAM read rate (runs read at "
        "the published bandwidth); the latencies are far slower than the GPU's: in "
        "microseconds (read as milliseconds), or measured on a far slower device such as a CPU"
    ) in result.stderr
    assert load_profile(out).dram_read_fraction is None


@pytest.mark.parametrize("device", ["NVIDIA H100 80GB HBM3", None])
def test_fit_refuses_a_gpus_latencies_in_microseconds(tmp_path, device):
    """QA: 300 L40S GEMMs with latency x1000 were fitted with a note only ("this profile is
    1,000 times too slow"), and runs on the profile gave TTFTs of days without a word. A
    GPU's calls (or an unnamed device's) every one over 200 times the roofline are refused;
    a CPU's are fitted with the note, as before."""
    source = _gemm_folder(tmp_path / "micro", device, scale=1e3)
    out = tmp_path / "p.json"
    result = _invoke("fit", "--source", source, "--gpu", "H100", "-o", out)
    assert result.exit_code == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    said = (
        "the files name no device"
        if device is None
        else f"the files say they were measured on {device}"
    )
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"error: {source}: every gemm_bfloat16 call measured is at least "
    ), lines
    assert "times slower than H100-SXM's roofline (median " in lines[0]
    assert f"times) and {said}: the latency column is read in milliseconds; is it in " in lines[0]
    assert lines[0].endswith("; nothing was written")
    assert not out.exists()
    cpu = _gemm_folder(tmp_path / "cpu", "AMD EPYC 7763 64-Core Processor", scale=1e3)
    result = _invoke("fit", "--source", cpu, "--gpu", "H100", "-o", out)
    assert result.exit_code == 0, result.stderr
    # Since stop 36 a CPU's files get one plain warning instead of the unit note.
    assert f"WARNING: {cpu}: measured on a CPU (AMD EPYC 7763 64-Core Processor), not on " in (
        result.stderr
    )
    assert "with latency in microseconds" not in result.stderr
    assert out.exists()


# --- folders of a measurement tree that cannot be read -----------------------------------


@pytest.mark.parametrize("command", ["check", "fit"])
def test_a_link_to_nothing_in_a_measurement_tree_is_named(tmp_path, command):
    """QA: a folder link whose target was gone (``l40s/attention -> /nonexistent``) was
    skipped without a word, and ``check`` and ``fit`` ran on the rest with rc 0."""
    source = _gemm_folder(tmp_path / "tree", "NVIDIA H100 80GB HBM3")
    link = source / "attention"
    link.symlink_to(tmp_path / "gone", target_is_directory=True)
    out = tmp_path / "p.json"
    args = ["--source", source, "-o", out] if command == "fit" else [source]
    result = _invoke(command, *args, "--gpu", "H100")
    assert result.exit_code == 1, result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {link}: is a link to nothing ({tmp_path / 'gone'}); the folder or file of "
        "measurements it named would be left out (restore its target, or remove it)"
    )
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_a_folder_that_cannot_be_listed_is_named(tmp_path, monkeypatch):
    """QA: ``os.walk`` skipped a subfolder it could not list (mode 000) without a word."""
    import os

    source = _gemm_folder(tmp_path / "tree", "NVIDIA H100 80GB HBM3")
    locked = source / "attn"
    _gemm_folder(locked, "NVIDIA H100 80GB HBM3")
    scandir = os.scandir

    def refusing(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    # Root reads every folder whatever its mode: refuse to list it as a user's walk would.
    monkeypatch.setattr(os, "scandir", refusing)
    result = _invoke("check", source, "--gpu", "H100")
    assert result.exit_code == 1, result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {locked}: cannot read folder: Permission denied; its measurements would be "
        "left out (make it readable, or give a folder without it)"
    )


def test_a_folder_of_mode_000_is_named(tmp_path):
    import os

    source = _gemm_folder(tmp_path / "tree", "NVIDIA H100 80GB HBM3")
    locked = source / "attn"
    _gemm_folder(locked, "NVIDIA H100 80GB HBM3")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("this user reads a folder of mode 000 (root)")
        result = _invoke("check", source, "--gpu", "H100")
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 1, result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {locked}: cannot read folder")


# --- a column named twice -------------------------------------------------------------------


def test_a_column_named_twice_is_refused_naming_file_and_column(tmp_path):
    """QA: a Vidur CSV whose header named num_tokens twice was read with the last copy's
    values without a word; a parquet naming latency twice failed with pyarrow's text
    ("Multiple matches for FieldRef.Name(latency) ...")."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_calibration import _VIDUR_HEADER

    vidur = tmp_path / "vidur" / "mlp.csv"
    vidur.parent.mkdir()
    vidur.write_text(_VIDUR_HEADER + ",num_tokens\n32,32,4096,11008,true,16,1,0.1,0.05,1024\n")
    result = _invoke("check", vidur.parent, "--gpu", "A40")
    assert result.exit_code == 1, result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {vidur}: column 'num_tokens': expected each column once, got it 2 times"
    )
    table = pa.Table.from_arrays(
        [pa.array(["bfloat16"]), *(pa.array([4096.0]) for _ in "mnk"), *(pa.array([0.1]),) * 2],
        names=["gemm_dtype", "m", "n", "k", "latency", "latency"],
    )
    parquet = tmp_path / "aic" / "gemm_perf.parquet"
    parquet.parent.mkdir()
    pq.write_table(table, parquet)
    result = _invoke("check", parquet.parent, "--gpu", "H100")
    assert result.exit_code == 1, result.stdout
    assert result.stderr.strip() == (
        f"error: {parquet}: column 'latency': expected each column once, got it 2 times"
    )


# --- a boolean numeric column -------------------------------------------------------------


@pytest.mark.parametrize("column", ["latency", "m"])
@pytest.mark.parametrize("command", ["check", "fit"])
def test_a_boolean_numeric_column_is_refused_at_read_time(tmp_path, command, column):
    """QA: a boolean latency column was read as 1.0 ms: ``check`` gave rc 0 and a 97 % error,
    ``fit`` ran 48 s and then refused with a misleading bandwidth message."""
    table = {
        "gemm_dtype": ["bfloat16"] * 3,
        "m": [16.0, 256.0, 2048.0],
        "n": [4096.0] * 3,
        "k": [4096.0] * 3,
        "latency": [0.01, 0.02, 0.1],
    }
    table[column] = [True, False, True]
    source = tmp_path / "src"
    _write(table, source / "gemm_perf.parquet")
    out = tmp_path / "p.json"
    args = ["--source", source, "-o", out] if command == "fit" else [source]
    result = _invoke(command, *args, "--gpu", "H100")
    assert result.exit_code == 1, result.stdout
    assert result.stderr.strip() == (
        f"error: {source / 'gemm_perf.parquet'}: column {column!r} must be a number, got booleans"
    )
    assert not out.exists()


# --- a huge Vidur time ----------------------------------------------------------------------


def test_a_vidur_time_over_2_to_the_40_ms_is_refused_as_aiconfigurators_is(tmp_path):
    """QA: a Vidur median cell of 1e300 was checked as a time (rc 0); AIConfigurator's
    latency over 2**40 ms was refused."""
    from test_calibration import _VIDUR_HEADER

    vidur = tmp_path / "mlp.csv"
    vidur.write_text(
        _VIDUR_HEADER
        + "\n32,32,4096,11008,true,16,1,0.1,0.05\n32,32,4096,11008,true,32,1,1e300,0.05\n"
    )
    result = _invoke("check", tmp_path, "--gpu", "A40")
    assert result.exit_code == 1, result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {vidur}: row 2: column 'time_stats.mlp_up_proj.median' must be at most 2**40 "
        "(1.1e+12) ms, got 1e+300 ms"
    )


# --- a profile's absolute errors and its grids ---------------------------------------------


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            lambda d: d["errors"]["gemm_bfloat16"]["holdout_model_shapes"].update(
                median_abs_pct=-4.0
            ),
            "errors.gemm_bfloat16.holdout_model_shapes.median_abs_pct must be a number >= 0 "
            "or null (an absolute error or a count), got -4.0",
        ),
        (
            lambda d: d["leave_one_out"]["gemm_bfloat16"].update(p90_abs_pct=-1),
            "leave_one_out.gemm_bfloat16.p90_abs_pct must be a number >= 0 or null (an "
            "absolute error or a count), got -1",
        ),
        (
            lambda d: d.update(grids={}),
            "grids: expected at least one grid (gemm_bfloat16, gemm_fp8, context_attention, "
            "generation_attention, allreduce, moe) or host constants (host, host_vllm_v0), "
            "got none: the profile calibrates nothing",
        ),
    ],
)
def test_a_negative_absolute_error_or_a_profile_of_nothing_is_refused(tmp_path, edit, fragment):
    """QA: a negative median_abs_pct was printed "median |err| -4.0%"; ``"grids": {}`` ran
    as "calibrated profile L40S" though every grid came from elsewhere."""
    path, lines = run_with_edited_profile(tmp_path, edit)
    assert lines == [f"error: {path}: not a valid calibration profile: {fragment}"]


def test_negative_signed_errors_and_host_constants_alone_still_load(tmp_path):
    data = json.loads((PROFILES_DIR / "h100-sxm.json").read_text())
    data["errors"]["gemm_bfloat16"]["holdout_model_shapes"]["median_signed_pct"] = -4.0
    # What ``validate --fit`` writes for a GPU without a measured relative.
    data.update(grids={}, host={"host_overhead_s": 1e-3, "host_overhead_per_seq_s": 1e-5})
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    profile = load_profile(path)
    assert profile.grids == {} and profile.host["host_overhead_s"] == 1e-3


# --- rows read twice ------------------------------------------------------------------------


def test_rows_repeating_an_earlier_row_are_kept_and_counted_in_a_note(tmp_path):
    """QA: the same AIConfigurator rows in two files of different compression, or a Vidur
    CSV with every row repeated, were counted twice with no word."""
    import pyarrow.parquet as pq
    from test_calibration import _VIDUR_HEADER

    source = _gemm_folder(tmp_path / "aic", "NVIDIA H100 80GB HBM3")
    table = pq.read_table(source / "gemm" / "vllm" / "0.24.0" / "gemm_perf.parquet")
    (source / "run2").mkdir()
    pq.write_table(table, source / "run2" / "gemm_perf.parquet", compression="gzip")
    # The same shapes at other latencies are no repeats.
    _write({**table.to_pydict(), "latency": [0.5, 0.6, 0.7]}, source / "run3" / "gemm_perf.parquet")
    kept = (
        ": kept, so each counts again in the fit and its errors (the same rows in two files, "
        "or rows repeated in one?)"
    )

    def notes_of_check(folder, gpu: str) -> list[str]:
        result = _invoke("check", folder, "--gpu", gpu)
        assert result.exit_code == 0, result.stderr
        return result.stderr.splitlines()

    assert (
        "note: 3 measured rows repeat an earlier row's exact shape and latency (gemm 3)" + kept
    ) in notes_of_check(source, "H100")
    assert (
        json.loads(_invoke("check", source, "--gpu", "H100", "--json").stdout)["families"]["gemm"][
            "n"
        ]
        == 9
    )
    vidur = tmp_path / "vidur"
    vidur.mkdir()
    rows = ["32,32,4096,11008,true,16,1,0.1,0.05", "32,32,4096,11008,true,32,1,0.2,0.1"]
    (vidur / "mlp.csv").write_text("\n".join([_VIDUR_HEADER, *rows, rows[0]]) + "\n")
    assert "note: 1 Vidur mlp.csv row repeats an earlier row's cells, every one" + kept in (
        notes_of_check(vidur, "A40")
    )
    _gemm_folder(tmp_path / "once", "NVIDIA H100 80GB HBM3")
    assert "repeat" not in _invoke("check", tmp_path / "once", "--gpu", "H100").stderr


def test_attention_rows_of_another_compute_dtype_are_skipped_and_counted(tmp_path):
    """QA: rows whose attn_dtype was 'int4' were read as 16-bit attention without a word."""
    from test_calibration import _write

    from simulator.calibration.sources import read_measurements

    _write(
        {
            "batch_size": [1, 2, 4, 8],
            "isl": [1] * 4,
            "step": [15] * 4,
            "num_heads": [32] * 4,
            "num_key_value_heads": [8] * 4,
            "head_dim": [128] * 4,
            "attn_dtype": ["bfloat16", "BF16", "int4", "fp8"],
            "kv_cache_dtype": ["bfloat16"] * 4,
            "window_size": [0] * 4,
            "latency": [0.01, 0.02, 0.03, 0.04],
        },
        tmp_path / "generation_attention_perf.parquet",
    )
    meas = read_measurements(tmp_path)
    assert len(meas.generation_attention["latency_s"]) == 2
    assert meas.skipped == {
        "generation_attention: fp8 attention rows (16-bit attention is fitted)": 1,
        "generation_attention: int4 attention rows (16-bit attention is fitted)": 1,
    }


def _allreduce_file(folder, labels):
    folder.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    pq.write_table(
        pa.table(
            {
                "num_gpus": [2] * n,
                "message_size": [4096 * (i + 1) for i in range(n)],
                "latency": [0.01 * (i + 1) for i in range(n)],
                "backend": labels,
            }
        ),
        folder / "custom_allreduce_perf.parquet",
    )
    return folder


def test_an_all_reduce_label_of_no_known_mode_is_refused(tmp_path):
    """QA (stop 36): labels naming neither graph nor eager were all kept, mixing the eager
    rows in (all-reduce p90 0.0 -> 87.7 %)."""
    from simulator.calibration.sources import read_measurements
    from simulator.errors import SimreplayError

    folder = _allreduce_file(tmp_path / "w", ["weird", "weird", "vllm_eager"])
    with pytest.raises(SimreplayError, match="column backend: expected labels naming CUDA-graph"):
        read_measurements(folder)


def test_all_reduce_timed_only_in_eager_mode_is_used_with_a_note(tmp_path):
    from simulator.calibration.sources import read_measurements

    meas = read_measurements(_allreduce_file(tmp_path / "e", ["vllm_eager"] * 3))
    assert meas.count("allreduce") == 3
    assert any("every all-reduce row was timed in eager mode" in text for text in meas.notes)
    mixed = read_measurements(_allreduce_file(tmp_path / "m", ["vllm_graph", "vllm_eager"] * 2))
    assert mixed.count("allreduce") == 2 and not mixed.notes


def test_moe_routing_labels_are_read_in_any_case_and_others_are_named(tmp_path):
    """QA (stop 36): "Balanced" and "uniform" were both counted as skewed-routing rows."""
    from simulator.calibration.sources import read_measurements

    pq.write_table(
        pa.table(
            {
                "moe_dtype": ["bf16"] * 4,
                "num_tokens": [16, 32, 64, 128],
                "hidden_size": [4096] * 4,
                "inter_size": [14336] * 4,
                "topk": [2] * 4,
                "num_experts": [8] * 4,
                "latency": [0.3, 0.4, 0.5, 0.6],
                "distribution": ["Balanced", " balanced", "power_law_1.2", "uniform"],
            }
        ),
        tmp_path / "moe_perf.parquet",
    )
    meas = read_measurements(tmp_path)
    assert meas.count("moe") == 2
    assert meas.skipped == {
        "moe: skewed-routing rows": 1,
        "moe: rows of another routing than balanced or power_law (first: 'uniform')": 1,
    }


def test_moe_rows_without_their_filter_columns_are_read_with_a_note(tmp_path):
    """A QA pass: a moe_perf.parquet without moe_dtype had its quantised rows checked as
    16-bit ones (median error 38.6 %) without a word, where a missing gemm_dtype or
    kv_cache_dtype is noted."""
    from simulator.calibration.sources import read_measurements

    columns = {
        "num_tokens": [16, 32],
        "hidden_size": [4096] * 2,
        "inter_size": [14336] * 2,
        "topk": [2] * 2,
        "num_experts": [8] * 2,
        "latency": [0.3, 0.4],
        "moe_tp_size": [1, 1],
        "moe_ep_size": [1, 1],
    }
    pq.write_table(pa.table(columns), tmp_path / "moe_perf.parquet")
    meas = read_measurements(tmp_path)
    assert meas.count("moe") == 2
    assert [n.split(": ", 1)[1] for n in meas.notes if "MoE rows" in n] == [
        "no moe_dtype, distribution columns: its 2 MoE rows are read as 16-bit, balanced "
        "routing; a file that also holds other rows needs the column to tell them apart"
    ]
    full = {**columns, "moe_dtype": ["bf16"] * 2, "distribution": ["balanced"] * 2}
    pq.write_table(pa.table(full), tmp_path / "moe_perf.parquet")
    assert not any("MoE rows" in n for n in read_measurements(tmp_path).notes)


def test_check_says_when_every_row_of_a_family_was_skipped():
    from simulator.cli.calibrate import _none_compared

    skipped = {"moe: skewed-routing rows": 6360, "gemm: float32 rows": 3}
    assert _none_compared("moe", skipped) == "(none used: 6,360 rows skipped, below)"
    assert _none_compared("gemm_fp8", skipped) == "(none used: 3 rows skipped, below)"
    assert _none_compared("allreduce", skipped) == "(no rows in these files)"


def test_a_signed_error_that_rounds_to_nothing_is_not_negative():
    from simulator.calibration.fit import error_stats
    from simulator.cli.calibrate import _fmt

    stats = error_stats(np.array([0.99999, 1.0, 1.0]), np.ones(3))
    assert str(stats["median_signed_pct"]) == "0.0" and str(stats["p90_signed_pct"]) == "0.0"
    assert _fmt(-0.04) == "0.0" and _fmt(-0.06) == "-0.1" and _fmt(None) == "n/a"


def test_a_shape_measured_twice_with_latencies_far_apart_is_noted(tmp_path):
    """QA (stop 36): a second run of the same shapes 1.5 times slower moved the GEMM median
    error to -16.7 % without a word (exact repeats were noted)."""
    from simulator.calibration.sources import read_measurements

    rows = {"gemm_dtype": ["bfloat16"] * 3, "m": [1, 2, 1], "n": [4096] * 3, "k": [4096] * 3}
    _write({**rows, "latency": [0.02, 0.021, 0.03]}, tmp_path / "a" / "gemm_perf.parquet")
    notes = read_measurements(tmp_path / "a").notes
    assert any(
        note.startswith("1 shape measured more than once with latencies over 10 % apart (gemm 1;")
        and "0.02 and 0.03 ms" in note
        for note in notes
    ), notes
    _write({**rows, "latency": [0.02, 0.021, 0.0201]}, tmp_path / "b" / "gemm_perf.parquet")
    assert not any("over 10 % apart" in note for note in read_measurements(tmp_path / "b").notes)


def test_check_json_carries_the_notes_it_printed(tmp_path):
    """QA (stop 36): the repeated-rows note reached stderr only; --json had no field."""
    rows = {"gemm_dtype": ["bfloat16"] * 3, "m": [1, 2, 1], "n": [4096] * 3, "k": [4096] * 3}
    _write({**rows, "latency": [0.02, 0.021, 0.02]}, tmp_path / "gemm_perf.parquet")
    result = runner.invoke(app, ["calibrate", "check", str(tmp_path), "--gpu", "H100", "--json"])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    assert any(note.startswith("1 measured row repeats an earlier row's") for note in notes)
    assert all(f"note: {note}" in result.stderr for note in notes)


def test_gemm_rows_without_a_dtype_column_are_read_as_bf16_with_a_note(tmp_path):
    """A new-user pass: gemm_perf.parquet without gemm_dtype (bf16 and FP8 rows mixed) was
    fitted as one 16-bit grid, p90 92 %, with only a note on repeated shapes for a hint."""
    import pyarrow.parquet as pq
    from test_calibration import _synthetic_gemm

    from simulator.calibration.sources import read_measurements

    root = _synthetic_gemm(tmp_path, [1, 16, 256], [1024, 4096])
    path = next(root.rglob("gemm_perf.parquet"))
    pq.write_table(pq.read_table(path).drop_columns(["gemm_dtype"]), path)
    meas = read_measurements(root)
    assert set(meas.gemm["dtype"].tolist()) == {"bfloat16"}
    assert any(
        note.endswith(
            "no gemm_dtype column: its 12 GEMM rows are read as bfloat16; a file that also "
            "holds FP8 (or other) rows needs the column to tell them apart"
        )
        for note in meas.notes
    ), meas.notes


def test_a_fit_of_float32_rows_alone_names_the_profilers_dtype_option(tmp_path):
    """A new-user pass: calibrate profile --device cpu measures float32 by default, and the
    fit of its output failed without saying how to measure what it fits."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_calibration import _synthetic_gemm
    from typer.testing import CliRunner

    from simulator.cli import app

    root = _synthetic_gemm(tmp_path, [1, 16, 256], [1024, 4096])
    path = next(root.rglob("gemm_perf.parquet"))
    table = pq.read_table(path)
    dtype = pa.array(["float32"] * table.num_rows)
    pq.write_table(
        table.set_column(table.column_names.index("gemm_dtype"), "gemm_dtype", dtype), path
    )
    args = ["calibrate", "fit", "--source", str(root / "mygpu"), "--gpu", "H200"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out.json")])
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(
        "; measure 16-bit kernels, as vLLM runs them: calibrate profile --dtype bf16"
    ), result.stderr


def test_check_json_keeps_the_rows_not_used_note(tmp_path):
    """A new-user pass: the "N measured rows not used" note went to stderr in text mode
    only; --json's notes, which hold what stderr shows, lacked it."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_calibration import _synthetic_gemm
    from typer.testing import CliRunner

    from simulator.cli import app

    root = _synthetic_gemm(tmp_path, [1, 16, 256], [1024, 4096])
    path = next(root.rglob("gemm_perf.parquet"))
    table = pq.read_table(path)
    dtype = pa.array(["float32"] * 3 + ["bfloat16"] * (table.num_rows - 3))
    column = table.column_names.index("gemm_dtype")
    pq.write_table(table.set_column(column, "gemm_dtype", dtype), path)
    args = ["calibrate", "check", str(root / "mygpu"), "--gpu", "H100"]
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0, text.output
    line = next(n for n in text.stderr.splitlines() if "measured rows not used" in n)
    payload = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)
    assert line.removeprefix("note: ") in payload["notes"]
    assert line.startswith("note: 3 measured rows not used: ")


@pytest.mark.parametrize(
    ("peak", "value"),
    [("hbm_bytes_per_s", 4.8e12), ("peak_fp8_flops", 1.5e15), ("link_bytes_per_s", 64e9)],
)
def test_a_profile_whose_peaks_are_another_gpus_is_refused(tmp_path, peak, value):
    """A QA pass: an H200 profile renamed H100 (HBM 1.43 times H100's) loaded as H100's
    own, its held-out error quoted; a factor of 2 was allowed, and FP8 and link not read."""
    _, lines = run_with_edited_profile(tmp_path, lambda d: d["reference"].update({peak: value}))
    assert len(lines) == 1 and f"reference.{peak} {value:.4g} is not H100-SXM's" in lines[0]
    assert "10% allowed): the profile was measured on another GPU, or edited" in lines[0]


@pytest.mark.parametrize("spelling", ["float8_e4m3fn", "torch.float8_e4m3fn", "FP8_E4M3"])
def test_torchs_fp8_spelling_is_read_as_fp8(tmp_path, spelling):
    """A QA pass: rows of float8_e4m3fn were skipped as "float8_e4m3fn rows (16-bit and
    FP8 GEMMs are fitted)": no FP8 grid, for a reason that contradicted itself."""
    import pyarrow.parquet as pq
    from test_calibration import _synthetic_gemm

    from simulator.calibration.sources import read_measurements

    root = _synthetic_gemm(tmp_path, [1, 16, 256], [1024, 4096])
    path = next(root.rglob("gemm_perf.parquet"))
    table = pq.read_table(path)
    dtype = pa.array([spelling] * table.num_rows)
    pq.write_table(
        table.set_column(table.column_names.index("gemm_dtype"), "gemm_dtype", dtype), path
    )
    meas = read_measurements(root)
    assert set(meas.gemm["dtype"].tolist()) == {"fp8"} and not meas.skipped


def test_an_empty_gemm_file_with_a_dtype_column_is_not_said_to_lack_it(tmp_path):
    """A QA pass: 'no gemm_dtype column: its 0 GEMM rows are read as bfloat16'."""
    import pyarrow.parquet as pq
    from test_calibration import _synthetic_gemm

    from simulator.calibration.sources import read_measurements

    root = _synthetic_gemm(tmp_path, [1, 16, 256], [1024, 4096])
    path = next(root.rglob("gemm_perf.parquet"))
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    assert not [note for note in read_measurements(root).notes if "gemm_dtype" in note]


_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "calibration-data"


@pytest.mark.skipif(not _SHARED_DATA.is_dir(), reason="needs ../shared/calibration-data")
@pytest.mark.parametrize(
    ("column", "read_as"), [("kv_cache_dtype", "with a 16-bit KV cache"), ("window_size", None)]
)
def test_attention_rows_without_their_kv_dtype_column_get_a_note(tmp_path, column, read_as):
    """A QA pass: without kv_cache_dtype, FP8-KV rows were fitted as 16-bit ones with no
    note (random-20 % p90 5.9 -> 17.3 %), where GEMMs without gemm_dtype get one."""
    import pyarrow.parquet as pq

    from simulator.calibration.sources import read_measurements

    name = "generation_attention_perf.parquet"
    source = _SHARED_DATA / "aiconfigurator/h100_sxm/attention/vllm/0.24.0" / name
    table = pq.read_table(source).slice(0, 500)
    path = tmp_path / "attention" / "vllm" / "0.24.0" / name
    path.parent.mkdir(parents=True)
    pq.write_table(table.drop_columns([column]), path)
    notes = read_measurements(tmp_path).notes
    if read_as is None:  # A100's vLLM 0.14 files have no window_size: full attention only
        assert not [note for note in notes if column in note], notes
        return
    assert any(
        f"no {column} column: its 500 generation_attention rows are read {read_as}" in note
        for note in notes
    ), notes


def test_report_skips_other_json_beside_the_profiles_with_a_note(tmp_path):
    """A QA pass: one benchmark result kept beside validate --fit's output failed the whole
    report, with no table for the profile. A file claiming to be a profile still fails."""
    import shutil

    shutil.copyfile(PROFILES_DIR / "a40.json", tmp_path / "a40.json")
    (tmp_path / "bench.json").write_text('{"date": "20261203", "ttfts": [0.1]}')
    result = runner.invoke(app, ["calibrate", "report", "--profiles", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.stderr
    assert [p["file"] for p in json.loads(result.stdout)["profiles"]] == ["a40.json"]
    assert result.stderr == (
        f'note: {tmp_path / "bench.json"}: not a calibration profile (JSON without a "format" '
        "field): skipped\n"
    )
    (tmp_path / "bad.json").write_text('{"format": "simreplay-calibration-profile"}')
    result = runner.invoke(app, ["calibrate", "report", "--profiles", str(tmp_path)])
    assert result.exit_code == 1 and "bad.json: not a valid calibration profile" in result.stderr


@pytest.mark.skipif(not _SHARED_DATA.is_dir(), reason="needs ../shared/calibration-data")
def test_moe_rows_read_are_those_fitted_and_those_skipped(tmp_path):
    """A QA pass: provenance's moe_rows_not_fitted held every MoE row read (49,862 on
    H100, of which 2,565 are fitted); it is moe_rows_read now, and adds up."""
    from simulator.calibration.sources import read_measurements

    meas = read_measurements(_SHARED_DATA / "aiconfigurator" / "h100_sxm")
    skipped = sum(n for reason, n in meas.skipped.items() if reason.startswith("moe:"))
    assert meas.num_moe_rows_read == len(meas.moe["latency_s"]) + skipped == 49_862
    shipped = json.loads((PROFILES_DIR / "h100-sxm.json").read_text())["provenance"]
    assert shipped["moe_rows_read"] == meas.num_moe_rows_read
    assert "moe_rows_not_fitted" not in shipped


def _mixed_unit_gemm(tmp_path: Path) -> Path:
    """Synthetic H100 GEMMs whose rows of m <= 16 were written in microseconds."""
    import pyarrow.parquet as pq
    from test_calibration import _synthetic_gemm

    root = _synthetic_gemm(tmp_path / "data", [1, 16, 256, 1024], [1024, 4096])
    path = next(root.rglob("gemm_perf.parquet"))
    table = pq.read_table(path)
    m = table.column("m").to_numpy()
    latency = table.column("latency").to_numpy() * np.where(m <= 16, 1000.0, 1.0)
    column = table.column_names.index("latency")
    pq.write_table(table.set_column(column, "latency", pa.array(latency)), path)
    return root


def test_a_fit_of_latencies_in_two_units_is_refused_and_check_notes_it(tmp_path):
    """A QA pass: GEMM rows of m <= 64 in us among rows in ms passed every check, the fit
    quoted a 2.1 % held-out error, and a run priced TPOT at 6 s."""
    root = _mixed_unit_gemm(tmp_path)
    out = tmp_path / "p.json"
    fitted = runner.invoke(
        app, ["calibrate", "fit", "--source", str(root), "--gpu", "H100", "-o", str(out)]
    )
    assert fitted.exit_code == 1 and not out.exists()
    line = fitted.stderr.strip().splitlines()[-1]
    assert (
        "gemm_bfloat16: 4 calls take 300 times or more as long as the same shape's at the "
        "next smaller m (beyond the growth of the work), or under 1/300 of it" in line
    )
    assert "(first: m 16 -> 256 at n 1024, k 1024:" in line
    assert line.endswith("latencies in two units? The latency column is read in milliseconds")
    checked = runner.invoke(app, ["calibrate", "check", str(root), "--gpu", "H100", "--json"])
    assert checked.exit_code == 0, checked.stderr
    assert any("latencies in two units?" in n for n in json.loads(checked.stdout)["notes"])


def test_a_family_in_another_unit_is_refused_before_any_family_is_fitted(tmp_path):
    """A QA pass: decode attention in us was refused only after 50 s of fitting the
    other families. Here FP8 GEMMs in us beside 16-bit ones in ms: no 16-bit fit first."""
    import pyarrow.parquet as pq
    from test_calibration import _synthetic_gemm

    root = _synthetic_gemm(tmp_path / "data", [1, 16, 256, 1024], [1024, 4096])
    path = next(root.rglob("gemm_perf.parquet"))
    table = pq.read_table(path)
    fp8 = table.set_column(
        table.column_names.index("gemm_dtype"), "gemm_dtype", pa.array(["fp8"] * table.num_rows)
    )
    fp8 = fp8.set_column(
        fp8.column_names.index("latency"),
        "latency",
        pa.array(fp8.column("latency").to_numpy() * 1000.0),
    )
    pq.write_table(pa.concat_tables([table, fp8]), path)
    out = tmp_path / "p.json"
    fitted = runner.invoke(
        app, ["calibrate", "fit", "--source", str(root), "--gpu", "H100", "-o", str(out)]
    )
    assert fitted.exit_code == 1 and not out.exists()
    assert "gemm_fp8" in fitted.stderr.strip().splitlines()[-1]
    assert "gemm_bfloat16:" not in fitted.stderr, fitted.stderr


def test_check_leaves_out_and_counts_the_rows_fit_skips_as_impossible(tmp_path):
    """A QA pass: five GEMM rows in seconds among 71,484 entered check's statistics with
    nothing in rows_skipped or the notes, where fit skips and counts them."""
    import pyarrow.parquet as pq
    from test_calibration import _synthetic_gemm

    root = _synthetic_gemm(tmp_path / "data", [1, 16, 256, 1024], [1024, 4096])
    path = next(root.rglob("gemm_perf.parquet"))
    table = pq.read_table(path)
    latency = table.column("latency").to_numpy().copy()
    latency[[3, 9]] /= 1000.0  # two calls in seconds
    pq.write_table(
        table.set_column(table.column_names.index("latency"), "latency", pa.array(latency)), path
    )
    checked = runner.invoke(app, ["calibrate", "check", str(root), "--gpu", "H100", "--json"])
    assert checked.exit_code == 0, checked.stderr
    payload = json.loads(checked.stdout)
    assert payload["families"]["gemm"]["n"] == table.num_rows - 2
    assert payload["rows_skipped"] == {
        "gemm_bfloat16: rows over 10 times faster than H100-SXM's roofline": 2
    }


def test_a_sparse_sweep_rising_with_its_work_is_no_unit_jump():
    """A reviewer: prefill at isl 1, 1536, 16384 (a 311 times step) and GEMMs at m 1 and
    32768 were refused as latencies in two units."""
    from simulator.calibration.fit import unit_jump

    three = np.ones(3)
    prefill = {"batch": 64 * three, "isl": np.array([1.0, 1536, 16384]), "kv_heads": 8 * three}
    assert unit_jump("context_attention", prefill, np.array([1e-5, 3.11e-3, 0.3])) is None
    gemm = {"m": np.array([1.0, 32768]), "n": np.full(2, 4096.0), "k": np.full(2, 4096.0)}
    assert unit_jump("gemm_bfloat16", gemm, np.array([1e-5, 5e-3])) is None
    # Rows of m 128 in us beside m 64 in ms: 2,000 times, where the work doubled.
    pair = {"m": np.array([64.0, 128]), "n": np.full(2, 4096.0), "k": np.full(2, 4096.0)}
    assert "latencies in two units?" in unit_jump("gemm_bfloat16", pair, np.array([1e-5, 2e-2]))
