"""Length-only CSVs (``num_prefill_tokens,num_decode_tokens``), e.g. ShareGPT or arXiv stats.

They carry no arrival times; arrivals come from a synthetic process chosen on the command
line (``--arrival``, ``--rate``, ``--cv``, ``--seed``), one arrival per row, rows kept in
file order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from simulator.errors import TraceError
from simulator.trace.arrivals import arrival_times_s
from simulator.trace.options import ImportOptions
from simulator.trace.raw import RawTrace
from simulator.trace.readers.lines import kept_record_lines
from simulator.trace.readers.tabular import (
    csv_header,
    head_csv_header,
    int_values,
    read_csv_columns,
    require_columns,
)

COLUMNS = ["num_prefill_tokens", "num_decode_tokens"]

#: How the note on this reader's synthetic arrivals starts; a caller that uses only the
#: lengths (``trace synth --lengths-from``) leaves it out.
ARRIVALS_NOTE = "arrivals are synthetic: "


def read(path: Path, options: ImportOptions) -> RawTrace:
    """Read a length-only CSV and give it arrivals from ``options.arrival``.

    ``--input-col`` and ``--output-col`` name the two columns where they are not called
    ``num_prefill_tokens`` and ``num_decode_tokens`` (a request log's ``prompt_len,
    gen_len``).
    """
    input_col = options.input_col or COLUMNS[0]
    output_col = options.output_col or COLUMNS[1]
    if input_col == output_col:
        raise TraceError(
            f"{path.name}: --input-col and --output-col both name column {input_col!r}: "
            "input tokens and output tokens need a column each"
        )
    header = csv_header(path)  # before asking for --rate: is it a length-only file at all?
    missing = [c for c in (input_col, output_col) if c not in header]
    json_lines = bool(header) and header[0].lstrip().startswith("{")  # require_columns says
    if missing and not (options.input_col or options.output_col or json_lines):
        # A QA pass: prompt_len,gen_len were not pointed to the flags that name them.
        raise TraceError(
            f"{path.name}: missing column {missing[0]!r} expected in a length-only trace "
            f"(found: {', '.join(header)}); name its token columns with --input-col and "
            "--output-col"
        )
    require_columns(path, header, [input_col, output_col], "a length-only trace")
    if options.arrival is None:
        raise TraceError(
            f"{path.name}: a length-only file has no arrival times; give --rate "
            "(and optionally --arrival, --cv, --seed)"
        )
    read_notes: list[str] = []
    skipped: list[int] = []
    columns = read_csv_columns(
        path,
        {name: pa.int64() for name in (input_col, output_col)},
        skip_invalid=options.skip_invalid,
        notes=read_notes,
        skipped_records=skipped,
    )
    num_rows = len(columns[input_col])
    rng = np.random.default_rng(options.seed)
    arrival = (
        arrival_times_s(
            options.arrival,
            rng,
            num_requests=num_rows,
            count_from=f"the {num_rows:,} rows of {path.name}",
        )
        if num_rows
        else None
    )
    process = options.arrival
    return RawTrace(
        arrival_time_s=np.zeros(0) if arrival is None else arrival,
        input_tokens=int_values(columns[input_col]),
        output_tokens=int_values(columns[output_col]),
        source_file=path.name,
        source_format="lengths",
        source_columns={"input_tokens": input_col, "output_tokens": output_col},
        notes=[*read_notes, f"{ARRIVALS_NOTE}{process.summary()}, seed {options.seed}"],
        line_of_row=kept_record_lines(num_rows, skipped),
        num_source_rows=num_rows + len(skipped),  # a cut line is a source row too
    )


def sniff(path: Path, head_text: str) -> bool:
    """True when the header has the two length columns and no timestamp."""
    names = head_csv_header(head_text)  # a CSV header: names may be quoted
    return all(name in names for name in COLUMNS)
