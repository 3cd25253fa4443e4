"""Calibration profiles: defects found by a QA pass, one test (or a few) each.

1. A misspelt key of a profile (``dram_read_fractoin``, top-level ``hosts``, a grid's
   ``floor``, ``reference.peak_bf16_flop``) was ignored and the run went on with the
   default it meant to replace; a key given twice kept the last silently.
2. A profile measured on a CPU (``calibrate profile --device cpu``) fitted as an H200 ran as
   the H200's, with TTFTs of hours and no word that its times were a CPU's; the notes
   ``fit`` printed were not kept.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from test_calibration import _gemm_folder
from typer.testing import CliRunner

from simulator.calibration.profile import load_profile
from simulator.calibration.select import PROFILES_DIR, step_model_for
from simulator.cli import app
from simulator.errors import SimreplayError
from simulator.hardware import get_gpu
from simulator.models import get_model

runner = CliRunner()
TRACE = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
L40S = json.loads((PROFILES_DIR / "l40s.json").read_text())


def _profile(tmp_path: Path, edit, name: str = "typo.json") -> Path:
    """A copy of the shipped L40S profile changed by ``edit`` (a function of its JSON)."""
    data = copy.deepcopy(L40S)
    edit(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def _one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- 1. unknown and repeated keys ---------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (
            lambda d: _rename(d, "dram_read_fraction", "dram_read_fractoin"),
            ["dram_read_fractoin: unknown field", "did you mean 'dram_read_fraction'?"],
        ),
        (
            lambda d: _rename(d, "host", "hosts"),
            ["hosts: unknown field", "did you mean 'host'?", "leave_one_out"],
        ),
        (
            lambda d: _rename(d["grids"]["gemm_bfloat16"], "floor_s", "floor"),
            ["grids.gemm_bfloat16.floor: unknown field", "did you mean 'floor_s'?", "log_ratio"],
        ),
        (
            lambda d: _rename(d["reference"], "peak_bf16_flops", "peak_bf16_flop"),
            ["reference.peak_bf16_flop: unknown field", "did you mean 'peak_bf16_flops'?"],
        ),
        (
            lambda d: d["grids"]["generation_attention"]["terms"][0].update(flor_s=1e-6),
            ["grids.generation_attention.terms[0].flor_s: unknown field", "'floor_s'"],
        ),
        (
            lambda d: _rename(d["errors"]["moe"], "holdout_random_20pct", "holdout_random"),
            ["errors.moe.holdout_random: unknown field", "'holdout_random_20pct'"],
        ),
        (
            lambda d: d["errors"]["moe"]["fit"].update(median_pct=1.0),
            ["errors.moe.fit.median_pct: unknown field"],
        ),
        (
            lambda d: _rename(d["leave_one_out"]["moe"], "borrowed_from", "borrowed"),
            ["leave_one_out.moe.borrowed: unknown field", "'borrowed_from'"],
        ),
        (
            lambda d: _rename(d["grids"], "gemm_bfloat16", "gemm_bf16"),
            ["grids.gemm_bf16: unknown grid", "did you mean 'gemm_bfloat16'?"],
        ),
        (
            lambda d: d["host"].update(host_overhead=0.001),
            ["host.host_overhead: unknown constant", "did you mean 'host_overhead_s'?"],
        ),
    ],
)
def test_a_misspelt_key_is_one_line_naming_it(tmp_path, edit, fragments):
    """QA: ``run --calibration typo.json`` with ``dram_read_fractoin`` ran with exit 0 and
    other numbers (the published bandwidth instead of the measured rate)."""
    path = _profile(tmp_path, edit)
    with pytest.raises(SimreplayError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a valid calibration profile: "), message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_run_with_a_misspelt_key_fails_before_running(tmp_path):
    path = _profile(tmp_path, lambda d: _rename(d, "dram_read_fraction", "dram_read_fractoin"))
    args = ["run", str(TRACE), "--gpus", "1xL40S", "--calibration", str(path)]
    _one_line_error(runner.invoke(app, args), str(path), "dram_read_fractoin", "dram_read_fraction")


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('"dram_read_fraction"', '"dram_read_fraction": 0.5, "dram_read_fraction"', ""),
        ('"floor_s"', '"floor_s": 0.5, "floor_s"', "grids.allreduce."),
        ('"peak_bf16_flops"', '"peak_bf16_flops": 1e15, "peak_bf16_flops"', "reference."),
    ],
)
def test_a_key_given_twice_is_one_line_naming_it(tmp_path, old, new, where):
    """JSON keeps the last of two equal keys without a word: a profile's is refused."""
    text = json.dumps(L40S)
    assert old in text
    path = tmp_path / "twice.json"
    path.write_text(text.replace(old, new, 1))
    name = old.strip('"')
    with pytest.raises(SimreplayError, match=rf"field {where}{name} is given twice"):
        load_profile(path)


def test_every_shipped_profile_still_loads():
    for path in sorted(PROFILES_DIR.glob("*.json")):
        load_profile(path)


def test_provenance_stays_free_form(tmp_path):
    path = _profile(tmp_path, lambda d: d["provenance"].update(my_own_key={"any": [1, 2]}))
    assert load_profile(path).provenance["my_own_key"] == {"any": [1, 2]}


# --- 2. a profile measured on a CPU -------------------------------------------------------

EPYC = "AMD EPYC 7763 64-Core Processor"


def _on(device: str):
    return lambda d: d["provenance"].update(device=device)


@pytest.mark.parametrize("device", [EPYC, "cpu", "Intel(R) Xeon(R) Platinum 8480+"])
def test_a_cpu_measured_profile_says_so_in_the_source_line(tmp_path, device):
    profile = load_profile(_profile(tmp_path, _on(device), "cpu.json"))
    _, info = step_model_for(get_model("llama-3.1-8b"), get_gpu("L40S"), 1, profile)
    source = str(info["source"])
    assert f"WARNING: cpu.json (aiconfigurator, L40S) was measured on a CPU ({device})" in source
    assert "not a GPU: step times are that device's" in source
    assert info["warnings"] == [source.split("; ")[-1]]


@pytest.mark.parametrize("device", ["NVIDIA L40S", "unknown", ""])
def test_a_gpu_measured_profile_has_no_warning(tmp_path, device):
    profile = load_profile(_profile(tmp_path, _on(device), "gpu.json"))
    _, info = step_model_for(get_model("llama-3.1-8b"), get_gpu("L40S"), 1, profile)
    assert "WARNING" not in str(info["source"]) and "warnings" not in info


def test_run_with_a_cpu_measured_profile_warns_in_its_step_times_line(tmp_path):
    path = _profile(tmp_path, _on(EPYC), "cpu.json")
    args = ["run", str(TRACE), "--gpus", "1xL40S", "--calibration", str(path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    step_times = [line for line in result.stdout.splitlines() if "Step times" in line]
    assert len(step_times) == 1
    warning = f"WARNING: cpu.json (aiconfigurator, L40S) was measured on a CPU ({EPYC})"
    assert warning in step_times[0]
    # And on stderr with the run's other notes, where a reader of --json output sees it,
    # once a warning ("note: WARNING:" said it twice, a new-user pass).
    assert any(line.startswith(warning) for line in result.stderr.splitlines())
    assert "note: WARNING" not in result.stderr


def test_fit_keeps_its_notes_and_a_cpus_files_run_with_a_warning(tmp_path):
    """QA: ``calibrate fit`` of a CPU's files as H200 printed "times slower than H200's
    roofline" notes, kept none of them, and the run that used it said nothing."""
    source = _gemm_folder(tmp_path / "cpu", EPYC, scale=1e4)
    out = tmp_path / "h200.json"
    result = runner.invoke(
        app, ["calibrate", "fit", "--source", str(source), "--gpu", "H200", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    printed = [line.removeprefix("note: ") for line in result.stderr.splitlines()]
    notes = load_profile(out).provenance["notes"]
    # Since stop 36 one warning says it plainly, instead of notes guessing at a unit.
    assert any(
        n.startswith(f"WARNING: {source}: measured on a CPU ({EPYC}), not on H200") for n in notes
    )
    assert not any("times slower than H200's roofline" in n for n in notes), notes
    # The CLI's own note on leave-one-GPU-out is kept without the folder's path.
    assert all(n in printed or n.startswith("leave-one-GPU-out not measured") for n in notes)
    assert load_profile(out).provenance["device"] == EPYC
    args = ["run", str(TRACE), "--gpus", "1xH200", "--calibration", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"was measured on a CPU ({EPYC}), not a GPU" in result.stdout


def test_fit_of_gpu_files_stores_the_notes_it_printed(tmp_path):
    source = _gemm_folder(tmp_path / "gpu", "NVIDIA H100 80GB HBM3")
    out = tmp_path / "h100-sxm.json"
    result = runner.invoke(
        app, ["calibrate", "fit", "--source", str(source), "--gpu", "H100", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    stored = load_profile(out).provenance.get("notes")
    # Every note fit printed, then the CLI's own on leave-one-GPU-out (no relative in the
    # output folder), kept without the folder's path.
    fit_notes = [n.removeprefix("note: ") for n in notes if "leave-one-GPU-out" not in n]
    assert stored[:-1] == fit_notes
    assert stored[-1].startswith("leave-one-GPU-out not measured: the output folder holds")


def test_calibrate_profile_on_the_cpu_then_fit_then_run_warns(tmp_path):
    """The QA pass's own chain: ``calibrate profile --device cpu --quick --dtype bf16``,
    ``fit --gpu H200``, ``run --gpus 1xH200``."""
    pytest.importorskip("torch")
    from test_calibration_profiler import TINY_CONFIG

    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    measured = tmp_path / "bf"
    result = runner.invoke(
        app,
        ["calibrate", "profile", "--device", "cpu", "--quick", "--dtype", "bf16",
         "--model", str(config), "--max-tokens", "16", "--warmup", "0", "--repeats", "1",
         "-o", str(measured)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "cpu-h200.json"
    result = runner.invoke(
        app, ["calibrate", "fit", "--source", str(measured), "--gpu", "H200", "-o", str(out)]
    )
    if result.exit_code == 1 and "times their roofline time; a measured GPU's lie" in (
        result.stderr
    ):
        # A loaded CPU times a prefill over 1e6 times H200's roofline, beyond what a profile
        # holds: fit refuses it in one line (seen under load), and there is no run to warn.
        assert not out.exists() and "Traceback" not in result.output
        pytest.skip("this CPU's timings lie beyond a profile's range (refused, as they should)")
    assert result.exit_code == 0, result.output
    profile = load_profile(out)
    assert profile.provenance["notes"], profile.provenance
    result = runner.invoke(app, ["run", str(TRACE), "--gpus", "1xH200", "--calibration", str(out)])
    assert result.exit_code == 0, result.output
    assert "was measured on a CPU (" in result.stdout and "not a GPU" in result.stdout


def test_check_of_a_cpus_files_says_they_are_a_cpus(tmp_path):
    """QA (stop 36): `check` of a CPU profile run's files only noted what a unit error
    would look like."""
    source = _gemm_folder(tmp_path / "cpu", EPYC, scale=1e4)
    result = runner.invoke(app, ["calibrate", "check", str(source), "--gpu", "H200", "--json"])
    assert result.exit_code == 0, result.output
    warning = f"WARNING: {source}: measured on a CPU ({EPYC}), not on H200: compared with"
    assert warning in result.stderr
    assert any(n.startswith(warning) for n in json.loads(result.stdout)["notes"])
    assert "latency in microseconds" not in result.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--device", "tpu"], "--device tpu: expected cpu, cuda or cuda:N"),
        (["--device", "cuda:x"], "--device cuda:x: expected cpu, cuda or cuda:N"),
        (["--dtype", "int8"], "--dtype int8: expected one of"),
        (["--tp", "0"], "--tp 0: expected positive integers"),
        (["--max-tokens", "-1"], "--max-tokens -1: expected a positive integer"),
        (["--repeats", "0"], "--repeats 0: expected 1 or more"),
        (["--model", "nosuch"], "nosuch"),
    ],
)
def test_profile_options_are_checked_before_torch_is_needed(tmp_path, monkeypatch, args, error):
    """A QA pass: without torch, every wrong option of `calibrate profile` answered that
    torch is not installed (several GB to install to learn a flag was wrong)."""
    from simulator.calibration import profiler

    def no_torch():
        raise SimreplayError("torch is not installed; install the profile extra")

    monkeypatch.setattr(profiler, "import_torch", no_torch)
    base = ["calibrate", "profile", "--device", "cpu", "-o", str(tmp_path / "out")]
    result = runner.invoke(app, [*base, *args])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and error in lines[0] and "torch" not in lines[0], lines
    # Options that are right reach the torch check.
    assert "torch is not installed" in runner.invoke(app, base).stderr


def test_a_profile_saved_with_a_byte_order_mark_loads_and_a_cut_one_says_so(tmp_path):
    """A QA pass: a profile an editor saved with a UTF-8 BOM was refused with Python's
    "Unexpected UTF-8 BOM (decode using utf-8-sig)", and a truncated one ended its line
    "Unterminated string starting at" with no word of the file being cut short."""
    text = (PROFILES_DIR / "l40s.json").read_text()
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_profile(bom).grids.keys() == load_profile(PROFILES_DIR / "l40s.json").grids.keys()
    for name, cut_at in (("mid-string.json", text.index('"grids"') + 3), ("mid.json", 2000)):
        path = tmp_path / name
        path.write_text(text[:cut_at])
        with pytest.raises(SimreplayError, match=r"cut short \(truncated\)\?$"):
            load_profile(path)
    whole_but_wrong = tmp_path / "wrong.json"
    whole_but_wrong.write_text("{not json}")
    with pytest.raises(SimreplayError) as raised:
        load_profile(whole_but_wrong)
    assert "cut short" not in str(raised.value)


def test_a_profile_without_format_version_is_missing_that_field(tmp_path):
    """A QA pass: "format_version None is not supported" for a field left out."""
    path = _profile(tmp_path, lambda data: data.pop("format_version"))
    with pytest.raises(SimreplayError, match="not a valid calibration profile: missing field "
                       "'format_version'$"):  # fmt: skip
        load_profile(path)
