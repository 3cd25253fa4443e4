"""`calibrate fit` and `calibrate report` fixes found by a QA pass (stop 32)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
from test_calibration import _synthetic_gemm
from typer.testing import CliRunner

from simulator.calibration.profile import load_profile
from simulator.calibration.select import PROFILES_DIR
from simulator.calibration.sources import read_measurements
from simulator.cli import app

runner = CliRunner()


def _fit_h200(tmp_path, out, *extra):
    source = _synthetic_gemm(tmp_path / "src", [1, 16, 256, 4096], [1024, 4096])
    return runner.invoke(
        app,
        ["calibrate", "fit", "--source", str(source / "mygpu"), "--gpu", "H200", "-o", str(out)]
        + list(extra),
    )


def test_fit_prints_the_leave_one_gpu_out_error_it_stores(tmp_path):
    """QA: the profile got leave_one_out (from H100-SXM) but neither the table nor --json
    showed it."""
    out = tmp_path / "profiles"
    out.mkdir()
    shutil.copy(PROFILES_DIR / "h100-sxm.json", out)
    table = _fit_h200(tmp_path, out)
    assert table.exit_code == 0, table.output
    stored = json.loads((out / "h200.json").read_text())["leave_one_out"]["gemm_bfloat16"]
    header, row = table.stdout.strip().splitlines()[-2:]
    assert "GPU-out med%" in header and row.split()[-1] == "H100-SXM"
    assert row.split()[-3:-1] == [f"{stored['median_abs_pct']:.1f}", f"{stored['p90_abs_pct']:.1f}"]
    assert "leave-one-GPU-out not measured" not in table.stderr
    as_json = _fit_h200(tmp_path, out, "--json")
    assert json.loads(as_json.stdout)["leave_one_out"]["gemm_bfloat16"] == stored


def test_fit_into_a_folder_without_relatives_says_leave_one_out_was_not_measured(tmp_path):
    out = tmp_path / "alone"
    out.mkdir()
    result = _fit_h200(tmp_path, out)
    assert result.exit_code == 0, result.output
    written = json.loads((out / "h200.json").read_text())
    assert written["leave_one_out"] == {}
    assert f"note: leave-one-GPU-out not measured: {out} holds no profile" in result.stderr
    # Kept with the fit's notes too, without the folder's path (a QA pass: printed only).
    assert written["provenance"]["notes"][-1].startswith(
        "leave-one-GPU-out not measured: the output folder holds no profile"
    )
    assert result.stdout.strip().splitlines()[-1].split()[-1] == "n/a"


def test_report_counts_a_gpus_profile_once_and_marks_the_one_runs_do_not_read(tmp_path):
    """QA: h100-sxm.json and a copy my-profile.json (validate --fit's, say) listed every grid
    twice and counted both in the targets."""
    shutil.copy(PROFILES_DIR / "h100-sxm.json", tmp_path)
    shutil.copy(PROFILES_DIR / "h100-sxm.json", tmp_path / "my-profile.json")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(PROFILES_DIR / "h100-sxm.json", alone)

    def report(folder, *extra):
        result = runner.invoke(app, ["calibrate", "report", "--profiles", str(folder), *extra])
        assert result.exit_code == 0, result.output
        return result.stdout

    both = json.loads(report(tmp_path, "--json"))
    counted = {p["file"]: p["counted_in_targets"] for p in both["profiles"]}
    assert counted == {"h100-sxm.json": True, "my-profile.json": False}
    # Runs read the shipped folder only (a new-user pass read "used_by_runs": true here).
    assert not any(p["used_by_runs"] for p in both["profiles"])
    shipped = json.loads(runner.invoke(app, ["calibrate", "report", "--json"]).stdout)
    assert all(p["used_by_runs"] for p in shipped["profiles"])
    assert both["targets"] == json.loads(report(alone, "--json"))["targets"]
    text = report(tmp_path)
    assert "my-profile.json *" in text and "h100-sxm.json *" not in text
    assert "* my-profile.json: not what runs on H100-SXM read (they read h100-sxm.json)" in text
    assert f"profiles of {tmp_path}: runs read the shipped ones (" in text
    # Where the folder has no profile of that GPU, it is not named as what its runs read.
    (tmp_path / "h100-sxm.json").unlink()
    assert (
        f"* my-profile.json: not what runs on H100-SXM read ({tmp_path} holds no "
        "h100-sxm.json for them)"
    ) in report(tmp_path)


def test_report_shows_host_constants(tmp_path):
    shutil.copy(PROFILES_DIR / "a40.json", tmp_path)
    result = runner.invoke(app, ["calibrate", "report", "--profiles", str(tmp_path)])
    host = json.loads((PROFILES_DIR / "a40.json").read_text())["host_vllm_v0"]
    line = (
        f"a40.json: host overheads of --scheduler vllm-v0 {host['host_overhead_s'] * 1e3:.3f} "
        f"ms + {host['host_overhead_per_seq_s'] * 1e6:.1f} us per sequence a step"
    )
    assert line in result.stdout


def test_a_file_copied_twice_into_the_folder_is_read_once_and_named(tmp_path):
    """QA: the same parquet in run1/ and run2/ gave check gemm n=800 for 400 rows."""
    source = _synthetic_gemm(tmp_path / "src", [1, 16, 256, 4096], [1024, 4096])
    folder = source / "mygpu"
    first = folder / "gemm" / "x" / "gemm_perf.parquet"
    second = folder / "run2" / "gemm_perf.parquet"
    second.parent.mkdir()
    shutil.copy(first, second)
    once = read_measurements(folder)
    assert once.files == ["gemm/x/gemm_perf.parquet"]
    assert len(once.gemm["latency_s"]) == 4 * 2 * 2
    assert once.notes == [
        "1 file not read, byte for byte a copy of one read: run2/gemm_perf.parquet "
        "(= gemm/x/gemm_perf.parquet)"
    ]
    result = runner.invoke(app, ["calibrate", "check", str(folder), "--gpu", "H100", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["families"]["gemm"]["n"] == 4 * 2 * 2
    assert "byte for byte a copy" in result.stderr


def test_a_folder_mixing_aiconfigurator_and_vidur_files_is_refused(tmp_path):
    """QA: both were pooled into one GEMM grid, the Vidur rows (no device column) of
    another GPU unchecked."""
    source = _synthetic_gemm(tmp_path / "src", [1, 16, 256], [1024, 4096])
    folder = source / "mygpu"
    vidur = folder / "meta-llama" / "Llama-2-7b-hf" / "mlp.csv"
    vidur.parent.mkdir(parents=True)
    vidur.write_text(
        "n_head,n_kv_head,n_embd,n_expanded_embd,use_gated_mlp,num_tokens,"
        "num_tensor_parallel_workers,time_stats.mlp_up_proj.median\n"
        "32,32,4096,11008,true,8,1,0.05\n"
    )
    for command in ("fit", "check"):
        args = ["calibrate", command, "--gpu", "H100"]
        args += (
            ["--source", str(folder), "-o", str(tmp_path / "p.json")]
            if command == "fit"
            else [str(folder)]
        )
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        line = result.stderr.strip().splitlines()[-1]
        assert "holds both AIConfigurator operator files (gemm/x/gemm_perf.parquet)" in line
        assert "Vidur's mlp.csv (meta-llama/Llama-2-7b-hf/mlp.csv)" in line
    assert not (tmp_path / "p.json").exists()


def test_validation_milliseconds_below_one_keep_three_significant_digits():
    from simulator.cli.calibrate import _ms_text

    assert [_ms_text(v) for v in (0.045, 0.5, 0.0, 1.0, 1234.56, None)] == [
        "0.045",
        "0.5",
        "0.0",
        "1.0",
        "1,234.6",
        "n/a",
    ]


def test_a_profile_of_another_gpu_that_replaces_the_gpus_own_grids_is_noted():
    """A QA pass: --calibration a40.json on 4xH100 stepped H100 with A40's GEMM grid (TPOT
    7.3 -> 13.2 ms), said only in a clause of the step-times line."""
    from simulator.calibration.select import step_model_for
    from simulator.hardware import get_gpu
    from simulator.models import get_model

    model, h100 = get_model("llama-3.1-8b"), get_gpu("H100")
    _, other = step_model_for(model, h100, 1, calibration=PROFILES_DIR / "a40.json")
    assert any(
        "a40.json was measured on A40: its gemm_bfloat16 grid replaces H100-SXM's own" in w
        for w in other.get("warnings", ())
    )
    _, own = step_model_for(model, h100, 1, calibration=PROFILES_DIR / "h100-sxm.json")
    _, unmeasured = step_model_for(model, get_gpu("H200"), 1,
                                   calibration=PROFILES_DIR / "h100-sxm.json")  # fmt: skip
    assert not own.get("warnings") and not unmeasured.get("warnings")


def test_source_date_epoch_fixes_the_fitted_on_date(monkeypatch):
    """Same inputs, same bytes: a profile's date follows SOURCE_DATE_EPOCH when set."""
    import pytest

    from simulator.calibration.profile import fitted_on_today
    from simulator.errors import SimreplayError

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert fitted_on_today() == "2023-11-14"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(SimreplayError, match="SOURCE_DATE_EPOCH must be whole seconds"):
        fitted_on_today()
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert len(fitted_on_today()) == 10


def test_a_profile_given_for_another_gpu_quotes_the_leave_one_out_error():
    """A QA pass: H100's profile given for H200 quoted H100's own held-out 2.1 %, for the
    same numbers that without the file quote the leave-one-GPU-out 14 %."""
    from simulator.calibration.select import step_model_for
    from simulator.hardware import get_gpu
    from simulator.models import get_model

    model, h200 = get_model("llama-3.1-8b"), get_gpu("H200")
    _, given = step_model_for(model, h200, 1, calibration=PROFILES_DIR / "h100-sxm.json")
    _, chosen = step_model_for(model, h200, 1)
    clause = chosen["source"].split("; ")[-1]
    assert clause.endswith("(leave-one-GPU-out)") and given["source"].endswith(clause)
    _, own = step_model_for(model, get_gpu("H100"), 1)
    assert "leave-one-GPU-out" not in own["source"]


CHAT = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"


def test_a_host_block_with_one_constant_is_refused_by_report_and_run(tmp_path):
    """QA (stop 36): half a host block was a KeyError traceback in `calibrate report`, and
    `run --calibration` took the default for the missing half without saying so."""
    folder = tmp_path / "p"
    folder.mkdir()
    for block in ("host", "host_vllm_v0"):
        for given in ("host_overhead_s", "host_overhead_per_seq_s"):
            profile = json.loads((PROFILES_DIR / "a40.json").read_text())
            profile[block] = {given: 0.001}
            path = folder / "a40.json"
            path.write_text(json.dumps(profile))
            for args in (
                ["calibrate", "report", "--profiles", str(folder)],
                ["run", str(CHAT), "--gpus", "1xA40", "--calibration", str(path)],
            ):
                result = runner.invoke(app, args)
                assert result.exit_code == 1, result.output
                lines = result.stderr.strip().splitlines()
                assert len(lines) == 1 and "Traceback" not in result.output, result.output
                assert (
                    f"{block} must give both host_overhead_s and host_overhead_per_seq_s"
                    in (lines[0])
                )


def test_one_impossible_row_is_skipped_and_counted_not_fitted(tmp_path):
    """QA (stop 36): one GEMM row set to 1e-6 ms (4e7 times faster than the roofline) or to
    11.6 days passed the family's median checks and was written into a grid node."""
    import pyarrow.parquet as pq

    source = _synthetic_gemm(tmp_path / "src", [1, 16, 256, 4096], [1024, 4096])
    path = next((source / "mygpu").rglob("gemm_perf.parquet"))
    table = pq.read_table(path).to_pydict()
    table["latency"][5] = 1e-6
    table["latency"][9] = 1e9
    pq.write_table(pa.table(table), path)
    out = tmp_path / "h200.json"
    args = ["calibrate", "fit", "--source", str(source / "mygpu"), "--gpu", "H200", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "note: 2 measured rows not used:" in result.stderr
    assert "1 gemm_bfloat16: rows over 10 times faster than H200's roofline" in result.stderr
    assert "1 gemm_bfloat16: rows over 1e+06 times H200's roofline or 60 s long" in result.stderr
    profile = load_profile(out)
    assert sum(profile.provenance["rows_skipped"].values()) == 2
    ratios = np.exp(profile.grids["gemm_bfloat16"].values)
    assert ratios.min() > 0.5 and ratios.max() < 100


def test_fit_creates_the_folder_it_is_told_to_write_into(tmp_path):
    """A new-user pass: ``calibrate fit ... -o /tmp/new-profiles/`` was refused ("output
    folder does not exist"), where ``calibrate profile -o`` creates its folder."""
    out = tmp_path / "new" / "profiles"
    result = _fit_h200(tmp_path, f"{out}/")
    assert result.exit_code == 0, result.output
    # And it names what it read (a new-user pass: neither the data nor the engine).
    assert f"fitted from {tmp_path / 'src' / 'mygpu'} (measured operator files)" in (
        result.stderr.splitlines()
    )
    assert load_profile(out / "h200.json").gpu == "H200"
    file_out = tmp_path / "other" / "mine.json"
    assert _fit_h200(tmp_path, file_out).exit_code == 0
    assert file_out.is_file()
