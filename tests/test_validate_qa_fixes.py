"""``calibrate validate``: defects a QA pass found in reading benchmarks (per-request JSON
lines whose columns are not all on line 1, duplicate requests, error texts, vLLM fields that
do not agree). Each bad input is one line on stderr and exit 1; what is dropped or odd is a
note."""

from __future__ import annotations

import json

from test_calibration_validate import _validate

ROW = {
    "arrival_time_s": 0.0,
    "input_tokens": 100,
    "output_tokens": 20,
    "ttft_s": 0.05,
    "e2e_s": 0.3,
}


def _rows(count: int = 10) -> list[dict]:
    return [ROW | {"arrival_time_s": float(k), "ttft_s": 0.05 + k * 1e-3} for k in range(count)]


def _write_lines(path, rows: list[dict]):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _one_error_line(run) -> str:
    assert run.exit_code == 1, run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in run.stderr
    return lines[0]


def _notes(run) -> list[str]:
    assert run.exit_code == 0, run.stderr
    return json.loads(run.stdout)["validation"]["notes"]


def _num_requests(run) -> int:
    return json.loads(run.stdout)["validation"]["num_requests"]


def test_an_error_key_on_later_json_lines_drops_those_requests(tmp_path):
    """Lines 6 and 10 alone carry ``"error": "timeout"``; line 1 has no error key. They were
    replayed as served requests without a note."""
    rows = _rows()
    rows[5]["error"] = "timeout"
    rows[9]["error"] = "timeout"
    run = _validate(_write_lines(tmp_path / "b.jsonl", rows))
    assert _num_requests(run) == 8
    assert (
        "dropped 2 requests whose error column is set (failed in the benchmark; the first, "
        "line 6: 'timeout')"
    ) in _notes(run)


def test_a_failed_json_line_with_null_times_is_dropped_not_refused(tmp_path):
    """It was refused: "line 6: ttft_s must be a number, got None"."""
    rows = _rows()
    rows[5].update(error="timeout", ttft_s=None, e2e_s=None)
    run = _validate(_write_lines(tmp_path / "b.jsonl", rows))
    assert _num_requests(run) == 9
    assert any("dropped 1 request whose error column is set" in n for n in _notes(run))


def test_a_time_column_on_one_json_line_only_is_checked_against_the_other(tmp_path):
    """``first_token_time_s`` on line 6 alone, 0.5 s off its ``ttft_s``, was ignored."""
    rows = _rows()
    rows[5]["first_token_time_s"] = rows[5]["arrival_time_s"] + rows[5]["ttft_s"] + 0.5
    line = _one_error_line(_validate(_write_lines(tmp_path / "b.jsonl", rows)))
    assert line == (
        "error: b.jsonl: line 6: ttft_s 0.055 s but first_token_time_s - arrival_time_s "
        "0.555 s (1 row differs by more than 1 ms): keep the column that was measured"
    )


def test_json_lines_may_give_either_time_column(tmp_path):
    """Some lines give ``ttft_s``, others ``first_token_time_s``: each is read; a line with
    neither is named."""
    rows = _rows()
    for row in rows[5:]:
        row["first_token_time_s"] = row["arrival_time_s"] + row.pop("ttft_s")
    run = _validate(_write_lines(tmp_path / "b.jsonl", rows))
    assert _num_requests(run) == 10
    measured = json.loads(run.stdout)["validation"]["measured"]["ttft"]["mean"]
    assert abs(measured - 54.5) < 1e-6
    del rows[7]["first_token_time_s"]
    line = _one_error_line(_validate(_write_lines(tmp_path / "b.jsonl", rows)))
    assert "b.jsonl: line 8: ttft_s or first_token_time_s must be a number, got neither" in line


def test_a_key_missing_from_a_later_json_line_is_named(tmp_path):
    rows = _rows()
    del rows[3]["e2e_s"]
    line = _one_error_line(_validate(_write_lines(tmp_path / "b.jsonl", rows)))
    assert line == "error: b.jsonl: line 4: e2e_s must be a number, got no e2e_s key"
