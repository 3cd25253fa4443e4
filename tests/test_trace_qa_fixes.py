"""Trace-import defects found by QA, each held by a test that failed before its fix."""

from __future__ import annotations

import pytest
from test_cli_trace import assert_one_line_error, invoke, write


@pytest.mark.parametrize("cell", ["1_000", "\u0661\u0660"])
def test_an_integer_python_reads_but_pyarrow_does_not_is_not_called_out_of_range(tmp_path, cell):
    """'1_000' (and Arabic-Indic digits) are no integer to pyarrow; Python's int() read
    them, so the message said the count was beyond the column's 64-bit range."""
    path = write(tmp_path, "u.csv", f"arrival_time_s,input_tokens,output_tokens\n0,{cell},10\n")
    result = invoke("run", path)
    assert_one_line_error(result, "u.csv: line 2: column input_tokens: expected an integer")
    assert "beyond" not in result.stderr


def test_an_integer_past_int64_is_still_called_out_of_range(tmp_path):
    header = "arrival_time_s,input_tokens,output_tokens\n"
    path = write(tmp_path, "big.csv", header + "0,99999999999999999999,10\n")
    assert_one_line_error(invoke("run", path), "beyond the 64-bit range of the column")
