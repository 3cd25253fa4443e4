"""A stopped sweep says how far it got; the store records the scenarios it was asked for.

Sweeps are stopped deterministically, in this process: ``--workers 1`` evaluates groups
here, and ``runner.evaluate_group`` is replaced by one that raises what a signal raises
(KeyboardInterrupt for Ctrl-C, ``runner.Stopped`` for SIGTERM) on a given call. The same
lines under real signals and worker processes are checked in ``test_sweep.py``.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from test_sweep import _trace, invoke

from simulator.fingerprint import build_id
from simulator.report import sweep_page
from simulator.sweep import runner, store
from simulator.sweep.store import PLANNED_FIELD, PLANNED_TRACES_FIELD, ResultStore

#: 2 x 3 = 6 scenarios, one group each (no capacity knob varies), so one row per call.
GRID = ["--gpus", "1xH100,2xH100", "--rate-scale", "1,2,4", "--workers", "1"]


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    return _trace(tmp_path_factory.mktemp("trace") / "t.parquet", 120, 7)


def stop_at_call(monkeypatch, call: int, raised: BaseException) -> None:
    """Make the ``call``-th ``evaluate_group`` (1-based) raise ``raised``: the stop lands
    after ``call - 1`` groups' rows are stored."""
    real = runner.evaluate_group
    calls = []

    def evaluate_group(tasks, table=None):
        calls.append(1)
        if len(calls) == call:
            raise raised
        return real(tasks, table)

    monkeypatch.setattr(runner, "evaluate_group", evaluate_group)


def num_rows(out: Path) -> int:
    return len(list((out / "rows").glob("*.parquet")))


def planned_record(out: Path) -> dict:
    return json.loads((out / "sweep.json").read_text())[PLANNED_FIELD]


def show(out: Path, *args):
    result = invoke("sweep", "show", out, *args)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.mark.parametrize(
    ("raised", "status", "head"),
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (runner.Stopped(signal.SIGINT), 130, "interrupted"),
        (runner.Stopped(signal.SIGTERM), 143, "terminated"),
    ],
)
def test_a_stopped_sweep_says_how_many_scenarios_are_stored_and_a_rerun_finishes(
    tmp_path, monkeypatch, trace, raised, status, head
):
    out = tmp_path / "sw"
    stop_at_call(monkeypatch, 4, raised)
    result = invoke("sweep", trace, *GRID, "--out", out)
    assert result.exit_code == status, result.stderr
    assert num_rows(out) == 3
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"{head}: 3 of 6 scenarios stored in {out}; run the same command again to simulate "
        "the other 3"
    )
    assert not [line for line in lines if line.startswith((head, "error"))][:-1], lines
    assert "Traceback" not in result.stderr and result.stdout == ""

    shown = show(out)
    assert shown.stderr == (
        f"{out}: 3 of 6 planned scenarios stored; 3 not simulated yet (the sweep was "
        "stopped): run the same sweep command again to finish\n"
    )
    assert "planned" not in shown.stdout  # the table stays the table
    assert len(shown.stdout.strip().splitlines()) == 1 + 3
    payload = json.loads(show(out, "--json").stdout)
    assert list(payload) == ["rows", "planned"] and len(payload["rows"]) == 3
    assert payload["planned"] == {
        "num_planned": 6,
        "num_stored": 3,
        "num_missing": 3,
        "still_writing": False,
    }

    monkeypatch.undo()
    result = invoke("sweep", trace, *GRID, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "3/3 scenarios (3 already in the store)" in result.stderr
    assert show(out).stderr == ""
    assert json.loads(show(out, "--json").stdout)["planned"] == {
        "num_planned": 6,
        "num_stored": 6,
        "num_missing": 0,
        "still_writing": False,
    }


def test_the_plan_is_recorded_before_the_first_scenario(tmp_path, monkeypatch, trace):
    out = tmp_path / "sw"
    stop_at_call(monkeypatch, 1, KeyboardInterrupt())
    result = invoke("sweep", trace, *GRID, "--out", out)
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted: 0 of 6 scenarios stored in {out}; run the same command again to "
        "simulate the other 6"
    )
    assert len(planned_record(out)[build_id()]) == 6
    shown = show(out)
    assert shown.stdout == "no rows yet\n"
    assert shown.stderr.startswith(f"{out}: 0 of 6 planned scenarios stored; 6 not simulated")


def test_a_dead_worker_says_how_many_scenarios_are_stored(tmp_path, monkeypatch, trace):
    out = tmp_path / "sw"
    cause = "a worker process ended abruptly (killed by SIGKILL; out of memory?)"
    stop_at_call(monkeypatch, 3, runner.WorkerDied(cause))
    result = invoke("sweep", trace, *GRID, "--out", out)
    assert result.exit_code == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {cause}: 2 of 6 scenarios stored in {out}; run the same command again to "
        "simulate the other 4"
    )


def test_an_extended_grid_plans_the_union(tmp_path, monkeypatch, trace):
    out = tmp_path / "sw"
    first = ["--gpus", "1xH100", "--rate-scale", "1,2", "--workers", "1"]
    assert invoke("sweep", trace, *first, "--out", out).exit_code == 0
    assert len(planned_record(out)[build_id()]) == 2
    # The wider grid holds the first one: its first two scenarios are found stored.
    stop_at_call(monkeypatch, 2, KeyboardInterrupt())
    wider = ["--gpus", "1xH100,2xH100", "--rate-scale", "1,2", "--workers", "1"]
    result = invoke("sweep", trace, *wider, "--out", out)
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted: 3 of 4 scenarios stored in {out}; run the same command again to "
        "simulate the other 1"
    )
    monkeypatch.undo()
    other = ["--gpus", "4xH100", "--rate-scale", "1", "--workers", "1"]
    assert invoke("sweep", trace, *other, "--out", out).exit_code == 0
    assert len(planned_record(out)[build_id()]) == 5
    assert show(out).stderr.startswith(
        f"{out}: 4 of 5 planned scenarios stored; 1 not simulated yet (the sweep was stopped)"
    )
    assert invoke("sweep", trace, *wider, "--out", out).exit_code == 0
    record = planned_record(out)
    assert record == {build_id(): sorted(ResultStore(out).done_keys())}
    assert show(out).stderr == ""


def test_a_store_without_the_record_is_read_and_nothing_is_claimed(tmp_path, trace):
    """A store written before the record existed: sweep.json holds kind, version and SLO."""
    out = tmp_path / "sw"
    assert invoke("sweep", trace, *GRID, "--out", out).exit_code == 0
    manifest = json.loads((out / "sweep.json").read_text())
    del manifest[PLANNED_FIELD], manifest[PLANNED_TRACES_FIELD]
    assert list(manifest) == ["kind", "format_version", "slo"]
    (out / "sweep.json").write_text(json.dumps(manifest))
    sorted((out / "rows").glob("*.parquet"))[0].unlink()  # a scenario it lacks

    shown = show(out)
    assert shown.stderr == "" and len(shown.stdout.strip().splitlines()) == 1 + 5
    payload = json.loads(show(out, "--json").stdout)
    assert payload["planned"] is None and len(payload["rows"]) == 5
    assert ResultStore(out).planned() is None
    result = invoke("report", out, "--no-png")
    assert result.exit_code == 0, result.stderr
    page = (out / "report.html").read_text()
    assert "<h1>simreplay sweep: 5 scenarios</h1>" in page
    assert "planned scenarios" not in page and "not simulated" not in page
    assert "planned" not in result.stderr

    # Rerunning the grid into it records its plan from then on.
    result = invoke("sweep", trace, *GRID, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert len(planned_record(out)[build_id()]) == 6
    assert json.loads(show(out, "--json").stdout)["planned"]["num_missing"] == 0


def test_another_versions_plan_is_kept_and_not_claimed(tmp_path, trace):
    # A key holds the simreplay version: another version's planned keys never get rows here.
    out = tmp_path / "sw"
    assert invoke("sweep", trace, *GRID, "--out", out).exit_code == 0
    manifest = json.loads((out / "sweep.json").read_text())
    manifest[PLANNED_FIELD] = {"0.0.1": ["0" * 32]}
    (out / "sweep.json").write_text(json.dumps(manifest))
    assert show(out).stderr == ""
    assert json.loads(show(out, "--json").stdout)["planned"] is None
    assert invoke("sweep", trace, *GRID, "--out", out).exit_code == 0
    record = planned_record(out)
    assert record["0.0.1"] == ["0" * 32] and len(record[build_id()]) == 6
    assert show(out).stderr == ""


def test_a_damaged_record_is_one_line(tmp_path, trace):
    out = tmp_path / "sw"
    assert invoke("sweep", trace, *GRID, "--out", out).exit_code == 0
    manifest = json.loads((out / "sweep.json").read_text())
    manifest[PLANNED_FIELD] = {build_id(): "not a list"}
    (out / "sweep.json").write_text(json.dumps(manifest))
    result = invoke("sweep", "show", out)
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and PLANNED_FIELD in line


def test_the_report_of_a_stopped_sweep_says_k_of_n(tmp_path, monkeypatch, trace):
    out = tmp_path / "sw"
    stop_at_call(monkeypatch, 3, KeyboardInterrupt())
    assert invoke("sweep", trace, *GRID, "--out", out).exit_code == 130
    result = invoke("report", out, "--no-png")
    assert result.exit_code == 0, result.stderr
    page = (out / "report.html").read_text()
    assert "<h1>simreplay sweep: 2 of 6 scenarios</h1>" in page
    note = (
        "2 of 6 planned scenarios stored; 4 not simulated yet (the sweep was stopped): run "
        "the same sweep command again, then report"
    )
    assert note in page
    assert f"note: {note}" in result.stderr
    sweep = sweep_page.load_sweep(out)
    assert (sweep.num_planned, sweep.num_planned_stored, sweep.num_missing) == (6, 2, 4)


def test_the_report_of_a_sweep_still_writing_says_k_of_n(tmp_path, monkeypatch, trace):
    import fcntl

    out = tmp_path / "sw"
    stop_at_call(monkeypatch, 3, KeyboardInterrupt())
    assert invoke("sweep", trace, *GRID, "--out", out).exit_code == 130
    with open(out / store.LOCK_NAME, "a+") as handle:  # a sweep writing in another process
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = invoke("report", out, "--no-png")
        shown = show(out, "--json")
        line = show(out).stderr
    assert result.exit_code == 0, result.stderr
    assert "this shows 2 of the 6 scenarios planned; report again" in result.stderr
    assert json.loads(shown.stdout)["planned"]["still_writing"] is True
    assert line == (
        f"{out}: 2 of 6 planned scenarios stored; 4 not simulated yet (a sweep is still "
        f"writing rows into {out})\n"
    )


def test_the_report_reads_the_stores_manifest_by_its_name():
    assert sweep_page.STORE_MANIFEST == "sweep.json"


def test_a_slow_sweep_progress_line_shows_its_rate(capsys):
    # A QA pass: scenarios of ~28 s each printed "1/8 scenarios, 0.0/s, ETA 3 min 15 s".
    from simulator.cli.sweep import _ProgressLine

    line = _ProgressLine()
    line(runner.Progress(done=1, total=8, skipped=0, elapsed_s=28.0))
    assert capsys.readouterr().err == "sweep: 1/8 scenarios, 0.036/s, ETA 3 min 16 s\n"
    line(runner.Progress(done=8, total=8, skipped=0, elapsed_s=4.0))
    assert capsys.readouterr().err == "sweep: 8/8 scenarios, 2.0/s\n"


def test_a_store_killed_before_its_rows_folder_shows_no_rows_and_what_is_missing(
    tmp_path, monkeypatch, trace
):
    # A QA pass: sweep.json written, rows/ not yet (a kill between the two): `sweep show`
    # said "not a sweep folder (no sweep.json and rows/)", where `report` said what it was.
    out = tmp_path / "sw"
    stop_at_call(monkeypatch, 1, KeyboardInterrupt())
    assert invoke("sweep", trace, *GRID, "--out", out).exit_code == 130
    (out / "rows").rmdir()
    shown = show(out)
    assert shown.stdout == "no rows yet\n"
    assert "0 of 6 planned scenarios stored; 6 not simulated yet" in shown.stderr
    assert json.loads(show(out, "--json").stdout)["planned"]["num_missing"] == 6


_POOL_SCRIPT = """
import os, sys
from multiprocessing import forkserver, resource_tracker
from simulator.sweep.runner import serve_driver, worker_pool

def work(x):
    os.write(2, b"a worker writes here\\n")
    return x + 1

if __name__ == "__main__":
    with worker_pool(1, serve_driver, (os.getpid(),), RuntimeError) as (pool, stopped):
        assert pool.submit(work, 1).result() == 2
        helpers = [resource_tracker._resource_tracker._pid, forkserver._forkserver._forkserver_pid]
        print([os.readlink(f"/proc/{pid}/fd/2") for pid in helpers])
"""


@pytest.mark.skipif(not Path("/proc/self/fd/2").exists(), reason="needs Linux's /proc")
def test_pool_helpers_write_nowhere_and_workers_to_the_drivers_stderr(tmp_path):
    """A QA pass: a sweep killed with SIGKILL left the resource tracker's "leaked semaphore"
    warning and a half-started worker's traceback on the terminal after the command ended.
    The helpers now start with stderr on the null device; the workers take the driver's."""
    import subprocess
    import sys

    script = tmp_path / "pool.py"
    script.write_text(_POOL_SCRIPT)
    err = tmp_path / "stderr.txt"
    with err.open("w") as handle:
        proc = subprocess.run(
            [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=handle, text=True
        )
    assert proc.returncode == 0, err.read_text()
    assert json.loads(proc.stdout.replace("'", '"')) == [os.devnull, os.devnull]
    assert "a worker writes here" in err.read_text()
