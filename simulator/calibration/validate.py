"""Replay a measured serving benchmark and compare predicted with measured latencies.

Inputs (``read_benchmark``):

- ``vllm bench serve --save-result --save-detailed`` JSON: per-request ``input_lens``,
  ``output_lens``, ``ttfts`` (s), ``latencies`` (s, end to end, where saved; vLLM v0.6 to
  v0.11 save none, and E2E is then the TTFT plus the request's ``itls``, its inter-token
  gaps), ``errors`` and ``start_times`` (client send times, newer vLLM). Without
  ``start_times`` only a benchmark of ``request_rate`` inf can be replayed: every request at
  once, or with ``max_concurrency`` as its closed-loop client sent them
  (``closed_loop.py``'s ``client_slots``); failed
  requests (an error text, or 0 output tokens: vLLM's mark of a failure whose HTTP reason
  was empty) are dropped and counted. An error entry counts as none when it is null, blank,
  or "None", "null", "nan", "false" or "0" in any case (``_failed``), in a per-request
  table's ``error`` column too. Every per-request list (``generated_texts`` and ``itls``
  too) must have one entry per request, a served request's ``latencies`` entry must cover
  its TTFT plus its ``itls`` (to 1 ms), and ``duration``, where given, be seconds > 0.
- A per-request JSONL or CSV with ``arrival_time_s``, ``input_tokens``, ``output_tokens``,
  ``ttft_s`` or ``first_token_time_s`` (absolute), and ``e2e_s`` or ``completion_time_s``
  (absolute). Times in seconds; the earliest arrival becomes 0. The columns are every
  row's keys together (a JSON line may hold a key the others lack): a row may give either
  time of a pair, and one giving both must agree to 1 ms; a row whose ``error`` (or
  ``errors``) column is set failed, and is dropped and counted.

Requests that repeat an earlier one exactly (send time, tokens, TTFT and E2E) are noted and
replayed.

The requests are replayed through the simulator with the engine configuration given
(``--max-num-seqs``, ``--max-num-batched-tokens``, ``--gpu-memory-utilization`` or
``--num-kv-blocks``) and the mean, p50, p90 and p99 of TTFT, TPOT and E2E compared, signed
% error = predicted / measured - 1. TPOT is (E2E - TTFT) / (output tokens - 1) for requests
with more than one output token, on both sides. Every request of a benchmark completed in
the engine that ran it, so a configuration under which the simulator rejects any of them is
refused (``_refuse_rejections``): it is not the one that ran.

``fit_host_overhead`` adjusts the two host-overhead constants (per step, per scheduled
sequence) by a deterministic search: a log-spaced 13 x 10 grid (0 and 0.05-10 ms; 0 and
1-100 us per sequence), then a pattern search from each of the three best nodes (eight
neighbours in log space, step halved when none improves), minimising the mean |log ratio|
of each request's TPOT (requests are matched one to one; requests of one output token
have no TPOT and are left out of the loss, and a benchmark with no other request is refused
rather than fitted to nothing). The constants never exceed the ``host`` ranges a profile
may hold (``profile.HOST_RANGES``). A search that ends at zero host overhead with the
requests' median TPOT still more than 10 % off is refused (``_check_lower_bound``): the
kernels alone are slower than measured. The two constants
are told apart only by steps of different batch sizes: a benchmark at one steady load
fixes their sum at that batch size, not each one.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simulator.calibration.profile import HOST_RANGES, Profile, fitted_on_today, load_profile
from simulator.calibration.select import borrow_order, shipped_profile, step_model_for
from simulator.checks import RepeatedKey, format_number, object_once
from simulator.engine.state import REJECT_CONTEXT, REJECT_REASONS
from simulator.errors import SimreplayError
from simulator.io import check_input_file
from simulator.perf.roofline import DEFAULT_EFFICIENCIES
from simulator.scenario import (
    KV_TOO_SMALL_MARK,
    NO_USEFUL_TP_NOTE,
    ResolvedScenario,
    Scenario,
    engine_text,
    kv_too_small_note,
    resolve,
    served_step_model,
)
from simulator.trace.schema import INT32_MAX, MAX_ARRIVAL_S, farthest_time_row

METRICS = ("ttft", "tpot", "e2e")
#: Run-level keys of every vLLM bench serve result (v0.6 on), kept without --save-detailed.
VLLM_SUMMARY_KEYS = ("request_throughput", "total_input_tokens", "completed", "duration")
STATS = ("mean", "p50", "p90", "p99")


@dataclasses.dataclass
class Benchmark:
    """Measured requests: arrays of one entry per request, in send order.

    Attributes
    ----------
    arrival_time_s, ttft_s, e2e_s : numpy.ndarray
        float64; arrivals start at 0.
    input_tokens, output_tokens : numpy.ndarray
        int64.
    source : str
        File name and format.
    notes : list of str
        What was dropped or assumed.
    model_id : str or None
        The model the benchmark names (a vLLM result's ``model_id``), if any.
    max_concurrency : int or None
        The client's limit on requests in flight (a vLLM result's ``max_concurrency``).
    closed_loop : bool
        No send times were recorded: the requests are replayed as ``max_concurrency``'s
        client sends them (``closed_loop.run_closed_loop``'s ``client_slots``), not at
        ``arrival_time_s``.
    """

    arrival_time_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_s: np.ndarray
    e2e_s: np.ndarray
    source: str
    notes: list[str]
    model_id: str | None = None
    max_concurrency: int | None = None
    closed_loop: bool = False
    #: The send times were drawn (``--draw-arrivals``), not recorded: a request's replayed
    #: times are not comparable with its measured ones, only the distributions are.
    drawn_arrivals: bool = False
    #: Requests of the file left out on reading (failed, or without usable times; the
    #: notes say which and why).
    num_dropped: int = 0
    #: A vLLM result without start_times: a release from before they were saved (January
    #: 2026), perhaps v0.11 or earlier, whose server scheduled without async scheduling.
    older_vllm: bool = False


def read_benchmark(path: Path, draw_arrivals_seed: int | None = None) -> Benchmark:
    """Read a measured benchmark (vLLM result JSON, or per-request JSONL / CSV).

    ``draw_arrivals_seed``: a vLLM result of a finite request_rate without start_times gets
    send times drawn as its client drew them, with this seed (``--draw-arrivals``); None
    refuses such a result.

    Raises
    ------
    SimreplayError
        One line naming the file and the missing field or column, or the row at fault.
    """
    path = Path(path)
    check_input_file(path, "a benchmark file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.object[:4] == b"PAR1":
            # A QA pass: run's own requests.parquet was called "byte 7 is not UTF-8 text".
            raise SimreplayError(
                f"{path.name}: a Parquet file; a benchmark is a vLLM result JSON, or a "
                "per-request JSON lines or CSV file (write the table as CSV, e.g. with "
                "pyarrow.csv.write_csv)"
            ) from None
        if exc.object[:2] == b"\x1f\x8b":
            raise SimreplayError(
                f"{path.name}: gzip-compressed; decompress it first (gunzip -k {path.name})"
            ) from None
        if exc.object[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise SimreplayError(
                f"{path.name}: UTF-16 text (it starts with a UTF-16 byte-order mark, as files "
                "Windows PowerShell's > writes do): save it as UTF-8"
            ) from None
        raise SimreplayError(
            f"{path.name}: byte {exc.start} is not UTF-8 text: a benchmark is a vLLM result "
            "JSON, or a per-request JSON lines or CSV file"
        ) from None
    except OSError as exc:
        raise SimreplayError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if "\0" in text:  # valid UTF-8, but no JSON or CSV holds NUL: UTF-16 without a BOM
        raise SimreplayError(
            f"{path.name}: character {text.index(chr(0)) + 1} is NUL: UTF-16 text without a "
            "byte-order mark, or not text; a benchmark is UTF-8 text (a vLLM result JSON, or "
            "a per-request JSON lines or CSV file)"
        )
    stripped = text.lstrip()
    if stripped.startswith("{"):
        document_error = None
        try:
            data = json.loads(text, object_pairs_hook=object_once)
        except RepeatedKey as exc:
            raise SimreplayError(
                f"{path.name}: key {exc.key!r} appears twice in one JSON object: keep one"
            ) from None
        except json.JSONDecodeError as exc:
            data = None  # JSON lines: one object per line
            document_error = exc
        if isinstance(data, dict) and "input_lens" in data:
            return _from_vllm(path, data, draw_arrivals_seed)
        if data == {}:
            raise SimreplayError(
                f"{path.name}: an empty JSON object: expected a vLLM bench serve result "
                "(input_lens, output_lens, ttfts, ...) or a per-request table"
            )
        offline = _offline_benchmark(data)
        if offline is not None:
            raise SimreplayError(
                f"{path.name}: {offline}, not a serving benchmark: validate replays the "
                "requests of `vllm bench serve --save-result --save-detailed`"
            )
        if (
            isinstance(data, dict)
            and "arrival_time_s" not in data
            and any(key in data for key in VLLM_SUMMARY_KEYS)
        ):
            raise SimreplayError(
                f"{path.name}: a JSON object without input_lens: not a vLLM bench result "
                "saved with --save-result --save-detailed"
            )
        if isinstance(data, dict):
            return _from_rows(path, [data], "line", typed=True)  # JSON lines of one request
        rows, line_nos = [], []
        lines = text.splitlines()
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line, object_pairs_hook=object_once)
            except RepeatedKey as exc:
                raise SimreplayError(
                    f"{path.name}: line {line_no}: key {exc.key!r} appears twice in one "
                    "request: keep one"
                ) from None
            except json.JSONDecodeError as exc:
                if not rows and document_error is not None:
                    # Not JSON lines either: one document (a vLLM result, perhaps
                    # pretty-printed), damaged where json says.
                    raise _bad_document(path, text, document_error) from None
                # The last line, without its newline or closing brace: a write or a copy cut
                # short, as ``_bad_document`` says of one JSON document.
                cut = (
                    line_no == len(lines)
                    and not text.endswith(("\n", "\r"))
                    and not line.rstrip().endswith("}")
                )
                raise SimreplayError(
                    f"{path.name}: line {line_no}: not JSON ({exc.msg})"
                    + ("; the file ends inside it: cut short (truncated)?" if cut else "")
                ) from None
            if not isinstance(row, dict):
                raise SimreplayError(
                    f"{path.name}: line {line_no}: expected a JSON object (one request), "
                    f"got {type(row).__name__}"
                )
            rows.append(row)
            line_nos.append(line_no)
        num_results = sum(1 for row in rows if "input_lens" in row)
        if num_results:
            raise SimreplayError(
                f"{path.name}: {num_results:,} vLLM bench serve results, one per line (saved "
                "with --append-result?); validate takes one run: put each line in a file of "
                "its own"
            )
        return _from_rows(path, rows, "line", line_nos, typed=True)
    if not stripped:
        raise SimreplayError(f"{path.name}: file is empty")
    kind = _other_json_document(stripped)
    if kind is not None:
        raise SimreplayError(f"{path.name}: {kind}")
    if stripped.startswith("["):  # else read as a CSV whose header is the whole array
        target = f"{path.stem}.jsonl" if path.suffix != ".jsonl" else f"{path.stem}-lines.jsonl"
        raise SimreplayError(
            f"{path.name}: a JSON array; a benchmark is a vLLM bench serve result (one JSON "
            "object) or a per-request table in JSON lines, one object per line (convert it "
            f"with: jq -c '.[]' {path.name} > {target})"
        )
    rows = []
    header = stripped.splitlines()[0]
    if header.startswith("#"):
        # A QA pass: a leading comment was read as the header ("line 2: 5 fields, the
        # header has 1"). The file's first line is the header; comments are not read.
        raise SimreplayError(
            f"{path.name}: line 1 is a comment ({header[:40]!r}): the first line of a "
            "per-request CSV is its header (arrival_time_s, input_tokens, ...); remove the "
            "comment lines"
        )
    # Commas, else the tabs of a TSV or the semicolons of a spreadsheet in a comma-decimal
    # locale, as the header shows.
    delimiter = next((d for d in (",", "\t", ";") if d in header), ",")
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    if reader.fieldnames is not None:  # spreadsheets write " name" after ", "
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
        twice = sorted({n for n in reader.fieldnames if reader.fieldnames.count(n) > 1})
        if twice:  # DictReader keeps the last cell under a repeated name, silently
            raise SimreplayError(
                f"{path.name}: the header names column {twice[0]!r} twice: keep one"
            )
    # A CSV's rows are named by their line in the file ("line 7"), as JSON lines and
    # ``trace import`` name them: blank lines and quoted line breaks keep the count true.
    line_nos: list[int] = []
    for row in reader:
        num_header = len(reader.fieldnames or [])
        # DictReader keeps a row's cells beyond the header under None, and fills the
        # cells of a short row with None.
        num_fields = num_header + len(row.get(None) or []) - list(row.values()).count(None)
        if num_fields != num_header:
            raise SimreplayError(
                f"{path.name}: line {reader.line_num}: "
                f"{num_fields} fields, the header has {num_header}"
            )
        rows.append(row)
        line_nos.append(reader.line_num)
    return _from_rows(path, rows, "line", line_nos)


def _check_within_duration(
    path: Path,
    duration_s: Any,
    arrival_s: np.ndarray,
    ttft_s: np.ndarray,
    e2e_s: np.ndarray,
    starts: Any,
    positions: np.ndarray,
) -> None:
    """Refuse times that do not fit in the benchmark's own ``duration`` (seconds, from its
    first send to its last answer): no request's TTFT or E2E is longer, nor do its send
    times span more. Times in milliseconds (a hand-converted file) are 1,000 times too
    long and would be replayed as such. A tolerance of 5 % and 1 s covers rounding."""
    if duration_s is None:  # ``_check_duration`` refused any other non-number
        return
    bound_s = duration_s * 1.05 + 1.0
    for name, values in (("ttfts", ttft_s), ("latencies (E2E)", e2e_s)):
        finite = values[np.isfinite(values)]
        if finite.size and finite.max() > bound_s:
            raise SimreplayError(
                f"{path.name}: {name} reach {finite.max():,.6g} s, longer than the whole "
                f"benchmark (duration {duration_s:,.6g} s): are they in milliseconds? vLLM "
                "writes seconds"
            )
    if starts is not None and arrival_s.size and np.isfinite(arrival_s).all():
        # (A start time that is not finite is named by ``_finish``, not read as a span.)
        span_s = float(arrival_s.max() - arrival_s.min())
        if span_s > bound_s:
            # The request farthest from the rest, named: one bad entry (a QA pass: -10 s
            # among seconds read as "are they in milliseconds?" with no request named).
            far = farthest_time_row(arrival_s)
            raise SimreplayError(
                f"{path.name}: start_times span {span_s:,.6g} s, longer than the whole "
                f"benchmark (duration {duration_s:,.6g} s), and request "
                f"{int(positions[far]) + 1}'s {float(arrival_s[far]):,.6g} s lies farthest "
                "from the rest: are they in milliseconds (vLLM writes seconds), or is that "
                "one wrong?"
            )


def _check_duration(path: Path, duration_s: Any) -> None:
    """Refuse a ``duration`` that is not a positive number of seconds (a QA pass: "abc"
    turned off ``_check_within_duration`` without a word); absent or null is taken."""
    if duration_s is None:
        return
    if _is_number(duration_s) and math.isfinite(_as_float(duration_s)) and duration_s > 0:
        return
    raise SimreplayError(
        f"{path.name}: field duration must be a positive number of seconds (from the first "
        f"send to the last answer), got {_shown(duration_s)}"
    )


def _rate_is_inf(path: Path, rate: object) -> bool:
    """Whether ``request_rate`` is ``"inf"`` (or Infinity): every request sent at once;
    refuse one that is neither that, absent nor a positive number of requests per second."""
    at_once = rate == "inf" or (isinstance(rate, float) and rate == math.inf)
    positive = _is_number(rate) and math.isfinite(_as_float(rate)) and _as_float(rate) > 0
    if not (at_once or positive or rate is None):
        raise SimreplayError(
            f"{path.name}: request_rate must be a positive number of requests per second "
            f'or "inf" (as vLLM\'s bench serve writes it), got {_shown(rate)}'
        )
    return at_once


def _in_flight_at_sends(send_s: np.ndarray, latency_s: np.ndarray) -> np.ndarray:
    """Requests in flight at each send, in send order: those sent at or before it, less
    those finished by then (each from its send to send + latency; NaN latency: none)."""
    sends = np.sort(send_s)
    ends = np.sort(send_s + np.nan_to_num(latency_s, nan=0.0))
    sent = np.searchsorted(sends, sends, side="right")
    return sent - np.searchsorted(ends, sends, side="right")


def _offline_benchmark(data: object) -> str | None:
    """What an offline vLLM benchmark's JSON is (``vllm bench throughput`` or ``latency``:
    totals, no requests to replay), else None (a QA pass: read as one request, "missing
    column(s) arrival_time_s, ...")."""
    if not isinstance(data, dict):
        return None
    if "elapsed_time" in data and "requests_per_second" in data:
        return "an offline throughput benchmark (vllm bench throughput)"
    if "avg_latency" in data and "percentiles" in data:
        return "an offline latency benchmark (vllm bench latency)"
    return None


#: Keys of a prompt dataset's records (ShareGPT, chat messages, vLLM's custom JSONL).
_DATASET_KEYS = {"conversations", "conversation", "messages", "prompt"}


def _other_json_document(text: str) -> str | None:
    """Why a JSON document that is no benchmark and no table cannot be validated (a
    dataset, vLLM's PyTorch-format sidecar, a bare value), else None."""
    if not text.startswith(("[", "null", "true", "false", "-", *"0123456789", '"')):
        return None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(data, list):
        what = (
            "null"
            if data is None
            else "true or false"
            if isinstance(data, bool)
            else "string"
            if isinstance(data, str)
            else "number"
        )
        return (
            f"a JSON {what}, not a benchmark: expected a vLLM bench serve result (a JSON "
            "object) or a per-request table"
        )
    if not data:
        return "an empty JSON array: no requests"
    first = data[0]
    if isinstance(first, dict) and {"benchmark", "metric"} <= first.keys():
        return (
            "vLLM's PyTorch benchmark-format summary (its .pytorch.json sidecar), which holds "
            "no per-request times: give the result JSON `vllm bench serve --save-result "
            "--save-detailed` wrote beside it"
        )
    if isinstance(first, dict) and (
        _DATASET_KEYS & first.keys() and not {"arrival_time_s", "ttft_s", "e2e_s"} & first.keys()
    ):
        return (
            "a dataset of prompts or conversations, not a benchmark result: serve it with "
            "`vllm bench serve --save-result --save-detailed` and validate that result"
        )
    return None


#: Most a vLLM result's ``latencies`` entry may fall short of its ``ttfts`` entry plus the sum
#: of its ``itls`` (s): both are differences of the same clock readings.
_LATENCY_SLACK_S = 1e-3


def _check_latencies_cover_itls(
    path: Path, itls: Any, ok: np.ndarray, ttft_s: np.ndarray, e2e_s: np.ndarray
) -> None:
    """Refuse a served request whose ``latencies`` entry is shorter than its TTFT plus its
    inter-token gaps by more than ``_LATENCY_SLACK_S``: vLLM measures all three from the
    same send time, so the fields were edited or come from different runs (a QA pass:
    latencies halved were replayed as measured)."""
    if not isinstance(itls, list):
        return
    short = []
    for k in np.flatnonzero(ok):
        gaps = itls[k]
        if not isinstance(gaps, list) or not gaps or not all(_is_number(g) for g in gaps):
            continue
        covered = float(ttft_s[k]) + math.fsum(_as_float(g) for g in gaps)
        if e2e_s[k] < covered - _LATENCY_SLACK_S:  # False for NaN: ``_finish`` names it
            short.append((int(k), covered))
    if short:
        k, covered = short[0]
        others = len(short) - 1
        if not math.isfinite(float(ttft_s[k])):
            # A QA pass: "plus the sum of its itls, inf s" hid which field was infinite.
            raise SimreplayError(
                f"{path.name}: request {k + 1}: ttfts must be a finite number of seconds, "
                f"got {_time_text(ttft_s[k])}"
            )
        if not float(e2e_s[k]) > 0:
            # A QA pass: a negative latency was asked whether the ttfts were in ms.
            raise SimreplayError(
                f"{path.name}: request {k + 1}: latencies must be a positive number of "
                f"seconds, got {_time_text(e2e_s[k])}"
            )
        # TTFTs alone in milliseconds: each TTFT near 1,000 times its whole latency.
        unit = "; are the ttfts in milliseconds?" if float(ttft_s[k]) > 100 * e2e_s[k] else ""
        raise SimreplayError(
            f"{path.name}: request {k + 1}: latencies {_time_text(e2e_s[k])} is shorter than "
            f"its ttfts plus the sum of its itls, {_time_text(covered)} (by more than "
            f"{_LATENCY_SLACK_S * 1e3:g} ms"
            + (f"; {others:,} more request{'' if others == 1 else 's'} like it" if others else "")
            + "): vLLM measures all three from the send time, so the fields do not belong "
            "together" + unit
        )


#: Most requests, as a share of the served ones, whose ``output_lens`` undercount their
#: streamed chunks that are dropped and counted instead of refusing the file.
MAX_UNDERCOUNTED_SHARE = 0.05


def _check_outputs_cover_itls(
    path: Path, itls: Any, ok: np.ndarray, output_lens: np.ndarray
) -> np.ndarray:
    """Served requests with more inter-token gaps than output tokens, to drop (bool, one
    per request), or refuse the file when they are more than a few: vLLM's client records
    one gap per streamed chunk after the first, and every chunk holds at least one token
    (one more is allowed, for a chunk a server may send without a token). Fewer
    ``output_lens`` than that undercount the tokens (vLLM writes 1 when the server reports
    no count and the client skips the tokenizer), and the TPOT and a ``--fit`` would be
    built on them (a QA pass: output_lens of 1 beside 63-255 gaps replayed with E2E -99 %,
    and halved ones fitted 15.4 ms of host time per step). A few such requests
    (``MAX_UNDERCOUNTED_SHARE``) are a count taken otherwise for those alone (older
    clients re-tokenized the generated text, which can come out a token or two short):
    they are dropped, and ``_from_vllm`` says how many."""
    undercounted = np.zeros(len(ok), dtype=bool)
    if not isinstance(itls, list):
        return undercounted
    counts = np.array([len(g) if isinstance(g, list) else 0 for g in itls], dtype=np.float64)
    undercounted = ok & (counts > output_lens)
    over = np.flatnonzero(undercounted)
    if len(over) and len(over) <= MAX_UNDERCOUNTED_SHARE * int(ok.sum()):
        return undercounted
    if len(over):
        k = int(over[0])
        others = len(over) - 1
        raise SimreplayError(
            f"{path.name}: request {k + 1}: {int(counts[k]):,} itls gaps (streamed chunks after "
            f"the first) but output_lens {output_lens[k]:g}"
            + (f"; {others:,} more request{'' if others == 1 else 's'} like it" if others else "")
            + ": each chunk holds a token at least, so output_lens undercounts the tokens "
            "(vLLM writes 1 when the server reports no count and the tokenizer is skipped); "
            "re-run the benchmark with the server's token counts"
        )
    return undercounted


def _bad_document(path: Path, text: str, exc: json.JSONDecodeError) -> SimreplayError:
    """One line for a JSON document that does not parse, saying so when the text ends
    inside it (a copy or a save cut short)."""
    cut = exc.pos >= len(text.rstrip())
    return SimreplayError(
        f"{path.name}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})"
        + ("; the file ends inside it: cut short (truncated)?" if cut else "")
    )


#: Most output tokens one gap of a vLLM result's ``itls`` may stand for: a streamed chunk
#: holds one token, or a few with speculative decoding (up to k + 1 for k draft tokens).
MAX_TOKENS_PER_GAP = 16


def _from_vllm(path: Path, data: dict, draw_arrivals_seed: int | None = None) -> Benchmark:
    # Newer vLLM releases save per-request "latencies" (2026); before that a detailed result has
    # the inter-token gaps ("itls") of each request, whose sum after the TTFT is its E2E.
    e2e_field = "latencies" if isinstance(data.get("latencies"), list) else "itls"
    if (
        isinstance(data.get("input_lens"), list)
        and isinstance(data.get("latencies"), list)
        and "output_lens" not in data
        and "ttfts" not in data
    ):
        # A pooling (embeddings) run: per-request lengths and latencies, no tokens out. A QA
        # pass was told to re-run with --save-detailed, which cannot help.
        raise SimreplayError(
            f"{path.name}: per-request input_lens and latencies but no output_lens or ttfts: "
            "an embeddings or other pooling benchmark? validate replays text generation "
            "(vllm bench serve of a completions or chat endpoint)"
        )
    for name in ("input_lens", "output_lens", "ttfts", e2e_field):
        if not isinstance(data.get(name), list):
            missing = "latencies (or itls)" if name == "itls" else name
            raise SimreplayError(
                f"{path.name}: field {missing} is missing or not a list: re-run `vllm bench "
                "serve` with --save-result --save-detailed"
            )
    count = len(data["input_lens"])
    # Every per-request list has one entry per request, those the replay does not read
    # too (a QA pass: itls of 199 requests, or generated_texts cut short, beside latencies
    # of 200 were taken without a word).
    for name in ("output_lens", "ttfts", "latencies", "itls", "errors", "start_times"):
        if name in data and data[name] is not None:
            if not isinstance(data[name], list):
                raise SimreplayError(f"{path.name}: field {name} must be a list")
            if len(data[name]) != count:
                raise SimreplayError(
                    f"{path.name}: field {name} has {len(data[name])} entries, input_lens {count}"
                )
    texts = data.get("generated_texts")
    if isinstance(texts, list) and len(texts) != count:
        raise SimreplayError(
            f"{path.name}: field generated_texts has {len(texts)} entries, input_lens {count}"
        )
    _check_duration(path, data.get("duration"))
    notes: list[str] = []
    errors = data.get("errors") or [""] * count
    ok = np.array([not _failed(e) for e in errors], dtype=bool)
    output_lens = _numbers(path, "output_lens", data["output_lens"])
    known = ok & ~np.isnan(output_lens)
    bad = known & ((output_lens < 0) | (output_lens != np.floor(output_lens)))
    if bad.any():
        # Before the itls count is checked against it (a QA pass: -3 was dropped as "more
        # itls gaps than output_lens tokens").
        k = int(np.argmax(bad))
        raise SimreplayError(
            f"{path.name}: request {k + 1}: output_lens must be a whole number of tokens >= 0, "
            f"got {_time_text(output_lens[k], '')}"
        )
    _check_gaps(path, data.get("itls"), ok)
    # vLLM's bench serve (v0.6 benchmark_serving.py to v0.11+) writes 0 output tokens for
    # every failed request, whose error text is the HTTP reason and may be empty.
    silent = ok & (output_lens == 0)
    ok &= ~silent
    undercounted = _check_outputs_cover_itls(path, data.get("itls"), ok, output_lens)
    ok &= ~undercounted
    # More than one output token and not one inter-token gap: the E2E (TTFT + the gaps) and
    # so the TPOT are unknown. Read as TPOT 0, such a request lowered the measured mean.
    gapless = np.zeros(count, dtype=bool)
    few_gaps = np.zeros(count, dtype=bool)
    if e2e_field == "itls":
        gapless = ok & (output_lens > 1) & np.array([g == [] for g in data["itls"]], dtype=bool)
        ok &= ~gapless
        # vLLM records one gap per streamed chunk, which holds one token, or a few with
        # speculative decoding; far fewer gaps than tokens is a list cut short, whose sum
        # would read as the E2E (200 tokens and 3 gaps were replayed as such).
        num_gaps = np.array(
            [len(g) if isinstance(g, list) else math.inf for g in data["itls"]], dtype=np.float64
        )
        few_gaps = ok & (num_gaps * MAX_TOKENS_PER_GAP < output_lens - 1)
        ok &= ~few_gaps
    if not ok.any():
        raise _nothing_succeeded(
            path, count, errors, int(silent.sum()), int(gapless.sum()), int(few_gaps.sum())
        )
    starts = data.get("start_times")
    limit = data.get("max_concurrency")
    closed_loop = drawn = never_bound = unbound_said = False
    if starts is not None:
        arrival = _numbers(path, "start_times", starts)
        # vLLM's client applies a limit only when one is set: 0 (``--max-concurrency 0``)
        # is none, as null and Infinity are.
        no_limit = (
            limit is None
            or (isinstance(limit, float) and limit == math.inf)
            or (_is_number(limit) and limit == 0)
        )
        if not no_limit and _whole_number(limit) is None:
            raise SimreplayError(
                f"{path.name}: max_concurrency must be a whole number >= 1, or null, 0 or "
                f"Infinity (no limit), got {_shown(limit)}"
            )
        # At request_rate inf vLLM's client yields every request at once and each waits on
        # the semaphore (vllm/benchmarks/serve.py: get_request, limited_request_func), and
        # start_time is taken inside it: the recorded send times are the measured server's
        # completions, and the client's own rule replays them for the simulated server (a
        # QA pass: replayed as recorded, a slower simulated server had 173 requests in
        # flight against a limit of 32, TPOT +323 % where the client's rule read +93 %).
        # Checked with recorded sends too (a QA pass: -1 was taken).
        at_once = _rate_is_inf(path, data.get("request_rate"))
        closed_loop = not no_limit and at_once and data.get("ramp_up_strategy") is None
    else:
        rate = data.get("request_rate")
        all_at_once = _rate_is_inf(path, rate) or rate is None
        closed_loop = _whole_number(limit) is not None
        ramp = data.get("ramp_up_strategy")
        if ramp is not None:  # vLLM sets request_rate inf for a ramp-up
            raise SimreplayError(
                f"{path.name}: no start_times (older vLLM), and the client ramped its request "
                f"rate ({ramp} from {data.get('ramp_up_start_rps')} to "
                f"{data.get('ramp_up_end_rps')} req/s) with random send times, so they cannot "
                "be matched; re-run with a vLLM that saves start_times"
            )
        if not all_at_once and draw_arrivals_seed is None:
            raise SimreplayError(
                f"{path.name}: no start_times (older vLLM), and at request_rate {_shown(rate)} the "
                "client drew its send times at random (Poisson or gamma gaps), so they cannot "
                "be matched; re-run with a vLLM that saves start_times, or give "
                "--draw-arrivals to compare the distributions over send times drawn alike"
            )
        if not (closed_loop or limit in (None, 0)):
            raise SimreplayError(
                f"{path.name}: no start_times (older vLLM): max_concurrency must be a whole "
                f"number >= 1 or null to replay the client's sends, got {_shown(limit)}"
            )
        arrival = np.zeros(count)
        num_sent = int(ok.sum())
        drawn = not all_at_once
        if drawn:
            arrival, drawn_note = _drawn_send_times(
                path, data, _as_float(rate), count, draw_arrivals_seed
            )
            notes.append(
                drawn_note
                + (
                    f", each sent once fewer than max_concurrency {limit:g} are in flight"
                    if closed_loop
                    else ""
                )
            )
        elif closed_loop and limit >= num_sent:
            notes.append(
                f"no start_times: every request sent at 0 s (request_rate inf, max_concurrency "
                f"{limit:g}, not below the {num_sent:,} requests)"
            )
        elif closed_loop:
            first = "the first" if limit == 1 else f"the first {limit:,g}"
            notes.append(
                f"no start_times: replayed as the benchmark's client sent them (request_rate "
                f"inf, max_concurrency {limit:g}): {first} at 0 s, each later one "
                "in list order when a simulated request finishes"
            )
        elif rate is None:
            # A QA pass: the note read as if the file said "inf".
            notes.append(
                "no start_times and no request_rate: every request sent at 0 s, as at "
                "vLLM's default request_rate inf"
            )
        else:
            notes.append("no start_times: every request sent at 0 s (request_rate inf)")
    ttft = _numbers(path, "ttfts", data["ttfts"])
    if e2e_field == "latencies":
        e2e = _numbers(path, "latencies", data["latencies"])
        _check_latencies_cover_itls(path, data.get("itls"), ok, ttft, e2e)
    else:
        # Each served request's gaps are a list of numbers (``_check_gaps``).
        after_first_s = [
            math.fsum(_as_float(g) for g in gaps) if ok[k] else math.nan
            for k, gaps in enumerate(data["itls"])
        ]
        e2e = ttft + np.array(after_first_s, dtype=np.float64)
        # Not "older vLLM": releases that save start_times and itls without latencies exist.
        notes.append(
            "no latencies field: E2E is TTFT plus the sum of the request's itls (its "
            "inter-token gaps)"
        )
    _check_within_duration(
        path, data.get("duration"), arrival[ok], ttft[ok], e2e[ok], starts, np.flatnonzero(ok)
    )
    slots = _whole_number(limit)
    if starts is not None and slots is not None:
        # The most requests in flight in the benchmark, failed ones counted as in flight
        # throughout: below the limit, it never held a send back.
        most = int(_in_flight_at_sends(arrival[ok], e2e[ok]).max(initial=0)) + int((~ok).sum())
        never_bound = most < slots
    if starts is not None and closed_loop:
        if never_bound:
            # The limit never bound: a client sending on its own clock (vLLM's timed_trace
            # dataset keeps request_rate inf and writes max_concurrency all the same; a QA
            # pass: replayed closed, TTFT p99 +441 % where the recorded sends read -48 %).
            closed_loop, unbound_said = False, True
            notes.append(
                f"max_concurrency {limit:g} never bound: at most {most:,} requests were in "
                "flight in the benchmark (its start_times and latencies, failed requests "
                "counted as in flight throughout), so the recorded send times are replayed as "
                "they are (open loop)"
            )
    if starts is not None and closed_loop:
        arrival = np.zeros(count)
        notes.append(
            f"start_times not replayed: at request_rate inf with max_concurrency {limit:g} "
            "the benchmark's client sent each request when one of its slots freed, so the "
            "requests are sent as that client would have sent them to the simulated server "
            "(the first ones at 0 s, each later one in list order when a simulated request "
            "finishes)"
        )
    num_failed = (
        int((~ok).sum())
        - int(silent.sum())
        - int(gapless.sum())
        - int(few_gaps.sum())
        - int(undercounted.sum())
    )
    gap_counts = (
        (undercounted, "with more itls gaps than output_lens tokens", "each streamed chunk "
         "holds a token at least, so {their} token count is short"),
        (few_gaps, f"with fewer than one itls gap per {MAX_TOKENS_PER_GAP} output tokens",
         "a list cut short, so {their} E2E and TPOT are unknown"),
    )  # fmt: skip
    for dropped, which, why in gap_counts:
        if dropped.any():
            num = int(dropped.sum())
            k = int(np.argmax(dropped))
            notes.append(
                f"dropped {num:,} request{'' if num == 1 else 's'} {which} (the first, "
                f"request {k + 1}: {len(data['itls'][k])} gaps for {int(output_lens[k]):,} "
                f"tokens): " + why.format(their="its" if num == 1 else "their")
            )
    if gapless.any():
        num_gapless = int(gapless.sum())
        notes.append(
            f"dropped {num_gapless:,} request{'' if num_gapless == 1 else 's'} of 2 or more "
            "output tokens with an empty itls list (no inter-token gap recorded): "
            f"{'its' if num_gapless == 1 else 'their'} E2E and TPOT are unknown"
        )
    if num_failed:
        notes.append(
            f"dropped {num_failed:,} request{'' if num_failed == 1 else 's'} that failed in "
            "the benchmark"
        )
    if silent.any():
        num_silent = int(silent.sum())
        notes.append(
            f"dropped {num_silent:,} request{'' if num_silent == 1 else 's'} with 0 output "
            "tokens, which vLLM's bench serve writes for a failed request (its error text "
            "was empty)"
        )
    bench = _finish(
        path,
        arrival[ok],
        _numbers(path, "input_lens", data["input_lens"])[ok],
        output_lens[ok],
        ttft[ok],
        e2e[ok],
        "vLLM bench serve result",
        notes,
        # Failed requests are gone: name the others by their place in the file.
        [f"request {k + 1}" for k in np.flatnonzero(ok)],
    )
    model_id = data.get("model_id")
    bench.model_id = model_id if isinstance(model_id, str) and model_id.strip() else None
    bench.drawn_arrivals = drawn
    bench.num_dropped = count - len(bench.arrival_time_s)
    bench.older_vllm = starts is None
    if closed_loop:
        bench.max_concurrency, bench.closed_loop = slots, True
        num_dropped = int((~ok).sum())
        if num_dropped and slots < int(ok.sum()):
            bench.notes.append(
                f"the {num_dropped:,} dropped request{'' if num_dropped == 1 else 's'} held "
                "client slots in the benchmark for times vLLM did not record; the replay's "
                "client sends each later request without waiting for them"
            )
    elif starts is not None and slots is not None:
        # vLLM's client sends a request once a semaphore of max_concurrency slots lets it:
        # a closed loop, whose send times depend on the measured server's speed.
        bench.max_concurrency = slots
    if starts is not None and slots is not None and not closed_loop and not unbound_said:
        if never_bound:
            # A QA pass: a limit of 512 with 18 in flight at most was said to have held
            # each send until a slot freed.
            bench.notes.append(
                f"max_concurrency {slots:,} never bound: at most {most:,} requests were in "
                "flight in the benchmark, so its recorded send times are replayed as they are "
                "(open loop)"
            )
        else:
            bench.notes.append(
                f"the benchmark's client allowed at most {slots:,} "
                f"request{'' if slots == 1 else 's'} in flight (max_concurrency {slots}) and "
                "reached that: a send due while every slot was busy waited for one; the "
                "recorded send times are replayed as they are (open loop), which a simulated "
                "server slower than the measured one cannot delay"
            )
    return bench


#: The least ``burstiness`` ``--draw-arrivals`` draws with: gaps of CV 1/sqrt(1e-4) = 100,
#: the most the arrival draw takes (``trace.arrivals``).
MIN_BURSTINESS = 1e-4


def _drawn_send_times(
    path: Path, data: dict, rate: float, count: int, seed: int
) -> tuple[np.ndarray, str]:
    """Send times for a result of finite ``request_rate`` without start_times, drawn as
    vLLM's client draws them (``--draw-arrivals``), and the note that says so."""
    from simulator.trace.readers.vllm_bench import client_send_times_s

    burstiness = data.get("burstiness", 1.0)
    if burstiness is None:
        burstiness = 1.0
    if burstiness == "inf":  # as request_rate may be written
        burstiness = math.inf
    # vLLM's gaps have CV 1/sqrt(burstiness); the draw takes a CV up to 100.
    if not (_is_number(burstiness) and _as_float(burstiness) >= MIN_BURSTINESS):
        raise SimreplayError(
            f"{path.name}: burstiness must be a number of at least {MIN_BURSTINESS:g} (1 for "
            f"Poisson, Infinity for even spacing), got {_shown(burstiness)}"
        )
    times_s, shape = client_send_times_s(
        rate, _as_float(burstiness), count, np.random.default_rng(seed)
    )
    note = (
        f"no start_times: send times drawn as vLLM's client draws them ({shape} at "
        f"request_rate {rate:g} req/s, --draw-arrivals seed {seed}): compare the "
        "distributions; a request's own replayed times are not its measured ones"
    )
    return times_s, note


def _nothing_succeeded(
    path: Path,
    count: int,
    errors: list,
    num_silent: int,
    num_gapless: int = 0,
    num_few_gaps: int = 0,
) -> SimreplayError:
    """One line for a vLLM result with no request to replay: how many failed or were left
    out, and how."""
    if not count:
        return SimreplayError(f"{path.name}: input_lens is empty: the result holds no requests")
    texts = [str(e).strip() for e in errors if _failed(e)]
    how = []
    if texts:
        # vLLM saves the client's traceback as the error text: its last line says what.
        last = texts[0].splitlines()[-1] if texts[0] else ""
        how.append(f"{len(texts):,} with an error text, the first {last[:120]!r}")
    if num_silent:
        how.append(f"{num_silent:,} with 0 output tokens and no error text")
    if num_gapless:
        how.append(f"{num_gapless:,} of 2 or more output tokens with an empty itls list")
    if num_few_gaps:
        how.append(
            f"{num_few_gaps:,} with fewer than one itls gap per {MAX_TOKENS_PER_GAP} output "
            "tokens (cut short)"
        )
    if num_gapless or num_few_gaps:
        return SimreplayError(
            f"{path.name}: none of the {count:,} requests can be replayed ({'; '.join(how)}): "
            "their E2E is unknown without latencies"
        )
    return SimreplayError(
        f"{path.name}: all {count:,} requests failed in the benchmark ({'; '.join(how)}): "
        "nothing to replay"
    )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_float(value: Any) -> float:
    """``float(value)``, with an integer beyond float's range (JSON allows any number of
    digits) as +-inf, which the range checks then name, instead of an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _whole_number(value: object) -> int | None:
    """``value`` as an int if it is a finite whole JSON number >= 1, else None."""
    if not _is_number(value) or not math.isfinite(_as_float(value)) or value < 1:  # type: ignore[operator]
        return None
    return int(value) if value == int(value) else None  # type: ignore[arg-type]


def _numbers(path: Path, name: str, values: list) -> np.ndarray:
    """A per-request field of a vLLM result (seconds or token counts) as float64, None as
    NaN; anything but a number is one error line naming the field and the request
    (``_finish`` checks the ranges)."""
    out = np.empty(len(values), dtype=np.float64)
    for k, value in enumerate(values):
        if value is None:
            out[k] = math.nan
        elif _is_number(value):
            out[k] = _as_float(value)
        else:
            raise SimreplayError(
                f"{path.name}: request {k + 1}: field {name} must hold numbers, got {_shown(value)}"
            )
    return out


def _check_gaps(path: Path, itls: Any, ok: np.ndarray) -> None:
    """Refuse a served request's ``itls`` entry that is not a list of seconds, and a gap in
    it below 0 or NaN: vLLM takes them as differences of ``time.perf_counter`` readings, a
    monotonic clock (QA passes: a gap of -0.5 s was summed into E2E without a word; an
    entry 0.01, or a gap "x", was taken without a word where latencies were given). Read by
    the replay or not, each is checked."""
    if not isinstance(itls, list):
        return
    for k in np.flatnonzero(ok):
        gaps = itls[k] if k < len(itls) else None
        if not isinstance(gaps, list):
            raise SimreplayError(
                f"{path.name}: request {k + 1}: itls must be a list of seconds, got "
                f"{_shown(gaps, 60)}"
            )
        for n, gap in enumerate(gaps):
            if not _is_number(gap):
                # Read or not (beside latencies), a gap is a number of seconds (a QA pass:
                # "x" was taken without a word where latencies were given).
                raise SimreplayError(
                    f"{path.name}: request {k + 1}: itls gap {n + 1} is {_shown(gap)}; "
                    "expected a number of seconds"
                )
            # (An infinite gap makes E2E infinite, which ``_finish`` names.)
            if not _as_float(gap) >= 0:
                raise SimreplayError(
                    f"{path.name}: request {k + 1}: itls gap {n + 1} is {_shown(gap)} s; "
                    "inter-token gaps are differences of a monotonic clock, never below 0"
                )


def _column(
    rows: list[dict],
    names: tuple[str, ...],
    path: Path,
    word: str,
    required: bool = True,
    positions: list[int] | None = None,
    absent_ok: bool = False,
    typed: bool = False,
) -> np.ndarray | None:
    """The column of ``rows`` named by the first of ``names`` that any row has, as float64;
    a row without it, or whose value is not a number, is one error line naming the row.
    With ``absent_ok`` a row without the key, or with null or an empty cell, reads NaN (the
    caller takes that row's value from another column); None when no row has the column
    and it is not ``required``."""
    if not rows:
        raise SimreplayError(f"{path.name}: no requests")
    # Any line may name a column (a JSON line holds only the keys its request has): the
    # union of every row's keys, not the first row's.
    keys = _union_of_keys(rows)
    name = next((n for n in names if n in keys), None)
    if name is None:
        if not required:
            return None
        raise SimreplayError(
            f"{path.name}: missing column {' or '.join(names)} (have: {', '.join(keys)})"
        )
    values = np.empty(len(rows))
    for idx, row in enumerate(rows):
        if absent_ok and _absent(row, name):
            values[idx] = math.nan
            continue
        value = row.get(name)
        try:
            if isinstance(value, bool):  # JSON true/false: float() would take it as 1 or 0
                raise TypeError
            if typed and isinstance(value, str):  # JSON "800": a QA pass saw it read as 800
                raise TypeError
            values[idx] = _as_float(value)
        except (TypeError, ValueError):
            where = idx + 1 if positions is None else positions[idx]
            got = f"no {name} key" if name not in row else f"{_shown(value)}"
            if isinstance(value, str) and _comma_number(value):  # a spreadsheet's locale
                got += ": write numbers with a decimal point and no thousands separator"
            elif typed and isinstance(value, str) and _is_number_text(value):
                got += " (a JSON string: write the number without quotes)"
            raise SimreplayError(
                f"{path.name}: {word} {where}: {name} must be a number, got {got}"
            ) from None
    return values


#: Most a latency column and its absolute-time twin may differ by (s): rounding to the
#: millisecond, or a Unix-epoch time's float resolution (0.2 us), is not a conflict.
_AGREE_S = 1e-3


def _check_agree(
    path: Path,
    span: str,
    given: np.ndarray,
    absolute: str,
    since: np.ndarray,
    where: list[str] | str,
) -> None:
    """Refuse a table whose ``span`` column (``ttft_s``) and ``absolute`` one less the
    arrival (``first_token_time_s``) disagree: which one is the measurement is not known."""
    with np.errstate(invalid="ignore"):
        off = np.flatnonzero(np.abs(given - since) > _AGREE_S)
    if len(off):
        k = int(off[0])
        row = where[k] if isinstance(where, list) else f"{where} {k + 1}"
        raise SimreplayError(
            f"{path.name}: {row}: {span} {given[k]:.6g} s but {absolute} - arrival_time_s "
            f"{since[k]:.6g} s ({len(off):,} {'row differs' if len(off) == 1 else 'rows differ'} "
            f"by more than {_AGREE_S * 1e3:g} ms): "
            "keep the column that was measured"
        )


#: A JSON number (as its grammar writes one), with spaces around it.
_JSON_NUMBER = re.compile(r"\s*-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?\s*")


def _is_number_text(text: str) -> bool:
    """Whether ``text`` is a JSON number written as text ("800", " 0.25 "): unquoted, it
    would read (not "", "n/a", Python's "1_000")."""
    return _JSON_NUMBER.fullmatch(text) is not None


def _comma_number(text: str) -> bool:
    """Whether ``text`` is a number but for its commas: a decimal comma ("0,25") or
    thousands separators ("1,024")."""
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return "," in text


#: Columns of a per-request table: each group needs one of its names.
TABLE_COLUMNS = (
    ("arrival_time_s",),
    ("input_tokens",),
    ("output_tokens",),
    ("ttft_s", "first_token_time_s"),
    ("e2e_s", "completion_time_s"),
)


def _from_rows(
    path: Path,
    rows: list[dict],
    word: str,
    positions: list[int] | None = None,
    typed: bool = False,
) -> Benchmark:
    """A per-request table; ``positions`` are the rows' numbers as ``word`` counts them
    (JSON lines: the line numbers, blank lines included), else 1, 2, ... ``typed``: JSON
    lines, whose numbers are JSON numbers (a string is refused, as the vLLM result reader
    refuses it), where a CSV's cells are all text."""
    if rows:
        keys = _union_of_keys(rows)
        missing = [
            " or ".join(names) for names in TABLE_COLUMNS if not any(n in keys for n in names)
        ]
        if missing and _DATASET_KEYS & set(keys) and not {"ttft_s", "e2e_s"} & set(keys):
            # A review: JSON lines of prompts (vLLM's custom dataset format) read as a table
            # missing its columns.
            raise SimreplayError(
                f"{path.name}: {word}s of prompts or conversations (a dataset), not a "
                "benchmark result: serve it with `vllm bench serve --save-result "
                "--save-detailed` and validate that result"
            )
        if missing:
            raise SimreplayError(
                f"{path.name}: missing column(s) {', '.join(missing)} (a per-request table "
                "needs arrival_time_s, input_tokens, output_tokens, ttft_s or "
                "first_token_time_s, and e2e_s or completion_time_s, times in seconds; have: "
                f"{', '.join(keys) or 'none'})"
            )

    notes: list[str] = []
    num_read = len(rows)
    rows, positions = _without_failed_rows(path, rows, word, positions, notes)

    def column(names: tuple[str, ...], required: bool = True) -> np.ndarray | None:
        return _column(rows, names, path, word, required, positions, typed=typed)

    arrival = column(("arrival_time_s",))
    inputs = column(("input_tokens",))
    outputs = column(("output_tokens",))
    where = None if positions is None else [f"{word} {n}" for n in positions]
    keys = _union_of_keys(rows)
    latency = {}
    for span, absolute in (("ttft_s", "first_token_time_s"), ("e2e_s", "completion_time_s")):
        # Both columns in the table: a row may give either (a JSON line only the key it
        # has, a CSV row one cell of the two); one that gives both must agree.
        both = span in keys and absolute in keys
        given = _column(rows, (span,), path, word, False, positions, absent_ok=both, typed=typed)
        at = _column(rows, (absolute,), path, word, False, positions, absent_ok=both, typed=typed)
        if at is not None:
            _check_same_clock(path, arrival, absolute, at, span)
            with np.errstate(over="ignore", invalid="ignore"):  # +-1e308: ``_finish`` says so
                since = at - arrival
            if given is not None:
                neither = np.flatnonzero(np.isnan(given) & np.isnan(at))
                if len(neither):
                    k = int(neither[0])
                    row = f"{word} {k + 1}" if where is None else where[k]
                    raise SimreplayError(
                        f"{path.name}: {row}: {span} or {absolute} must be a number, got "
                        f"neither ({len(neither):,} row{'' if len(neither) == 1 else 's'} "
                        "like it)"
                    )
                twice = ~np.isnan(given) & ~np.isnan(at)
                _check_agree(
                    path,
                    span,
                    given[twice],
                    absolute,
                    since[twice],
                    [
                        f"{word} {k + 1}" if where is None else where[k]
                        for k in np.flatnonzero(twice)
                    ],
                )
                given = np.where(np.isnan(given), since, given)
            else:
                given = since
        latency[span] = given
    ttft, e2e = latency["ttft_s"], latency["e2e_s"]
    bench = _finish(path, arrival, inputs, outputs, ttft, e2e, "per-request table", notes, where)
    bench.num_dropped = num_read - len(bench.arrival_time_s)
    return bench


#: Seconds above which a time reads as Unix time (1973-03-03); a benchmark's time since its
#: start is far below it.
UNIX_TIME_FROM_S = 1e8


def _check_same_clock(
    path: Path, arrival: np.ndarray, absolute: str, at: np.ndarray, span: str
) -> None:
    """Refuse ``absolute`` times on another clock than the start times: Unix times against
    times since the benchmark's start, or the reverse (a QA pass: first-token times in Unix
    time against start times from 0 gave a TTFT p50 of 1.7e12 ms, and ``--fit`` wrote an
    API-server latency of 60 s)."""
    starts, ends = arrival[np.isfinite(arrival)], at[np.isfinite(at)]
    if not len(starts) or not len(ends):
        return
    unix_ends = ends.min() > UNIX_TIME_FROM_S and np.abs(starts).max() < UNIX_TIME_FROM_S
    unix_starts = starts.min() > UNIX_TIME_FROM_S and np.abs(ends).max() < UNIX_TIME_FROM_S
    if not (unix_ends or unix_starts):
        return
    unix, relative = (absolute, "arrival_time_s") if unix_ends else ("arrival_time_s", absolute)
    raise SimreplayError(
        f"{path.name}: {unix} holds Unix times but {relative} counts from the benchmark's "
        f"start: give both on one clock (or {span}, the time since the request's start, "
        f"instead of {absolute})"
    )


def _union_of_keys(rows: list[dict]) -> list[str]:
    """Every key of ``rows``, in order of first appearance (a JSON line holds only the keys
    its request has: ``error`` may be on line 6 alone)."""
    return list(dict.fromkeys(key for row in rows for key in row if key is not None))


def _absent(row: dict, name: str) -> bool:
    """Whether ``row`` leaves column ``name`` out: no key, JSON null, or an empty cell."""
    value = row.get(name)
    return value is None or (isinstance(value, str) and not value.strip())


#: Columns of a per-request table that mark a failed request when set, and the texts that
#: mean it succeeded (an empty CSV cell, a spreadsheet's "None"), compared stripped and in
#: lower case: the one rule of ``_failed``, for these columns and a vLLM result's ``errors``.
ERROR_COLUMNS = ("error", "errors")
_NO_ERROR = ("", "none", "null", "nan", "false", "0")


def _failed(value: Any) -> bool:
    """Whether an error entry marks its request failed (a table's ``error`` cell, a vLLM
    result's ``errors`` entry): not when it is JSON null, false, 0 or NaN, a text that is
    blank or (any case) "None", "null", "nan", "false" or "0", or a list or object of such
    entries (``[]`` included); any other value is an error (a QA pass: vLLM's ``" "`` was
    counted a failure whose text was "", and "None" a failure there but not in a table)."""
    if value is None or value is False:
        return False
    if isinstance(value, list | tuple | dict):  # a JSON line's list of errors: [] is none
        return any(_failed(v) for v in (value.values() if isinstance(value, dict) else value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return not (value == 0 or math.isnan(value))
    return str(value).strip().lower() not in _NO_ERROR


#: A per-request table's ``success`` column (vLLM's own per-request record names it so):
#: the texts, compared stripped and in lower case, that say a request failed or succeeded.
SUCCESS_COLUMN = "success"
_UNSUCCESSFUL = ("false", "0", "no", "failed", "failure", "error")
_SUCCESSFUL = ("true", "1", "yes", "ok", "success", "succeeded")


def _unsuccessful(path: Path, value: Any, row: str) -> bool:
    """Whether a ``success`` cell says its request failed: JSON false or 0, or a text of
    ``_UNSUCCESSFUL``; absent (no key, null, an empty cell) or true is not a failure, and
    any other value is refused in one line naming the row."""
    if value is None or value is True or (isinstance(value, str) and not value.strip()):
        return False
    if value is False:
        return True
    if isinstance(value, int | float) and value in (0, 1):
        return value == 0
    text = str(value).strip().lower()
    if text in _UNSUCCESSFUL or text in _SUCCESSFUL:
        return text in _UNSUCCESSFUL
    raise SimreplayError(
        f"{path.name}: {row}: success must be true or false (or 1 / 0, yes / no), got "
        f"{_shown(value)}"
    )


def _without_failed_rows(
    path: Path, rows: list[dict], word: str, positions: list[int] | None, notes: list[str]
) -> tuple[list[dict], list[int] | None]:
    """The rows whose ``error`` (or ``errors``) column is empty and whose ``success`` column
    is not false (a QA pass: rows with error "timeout", and rows with success false, were
    replayed as served requests), with a note counting the others, as vLLM results' failed
    requests are; every row failed is one error line. The column may be on any row (a QA
    pass: JSON lines 6 and 10 alone had ``"error": "timeout"``, and were replayed as served
    because line 1 had no such key)."""
    keys = _union_of_keys(rows)
    names = [n for n in ERROR_COLUMNS if n in keys]
    success = SUCCESS_COLUMN in keys
    if not names and not success:
        return rows, positions

    def reason(k: int) -> str | None:
        row = rows[k]
        for n in names:
            if _failed(row.get(n)):
                return n
        where = f"{word} {k + 1 if positions is None else positions[k]}"
        if success and _unsuccessful(path, row.get(SUCCESS_COLUMN), where):
            return SUCCESS_COLUMN
        return None

    why = [reason(k) for k in range(len(rows))]
    failed = [w is not None for w in why]
    num_failed = sum(failed)
    if not num_failed:
        return rows, positions

    def marks(name: str) -> str:
        return "says it failed" if name == SUCCESS_COLUMN else "is set"

    def first_of(name: str) -> str:
        k = why.index(name)
        text = f"{_shown(str(rows[k][name]).strip(), 60)}"
        return f"{word} {k + 1 if positions is None else positions[k]}: {text}"

    if num_failed == len(rows):
        name = why[0]
        raise SimreplayError(
            f"{path.name}: no successful requests to replay: every {word}'s {name} column "
            f"{marks(name)} (the first, {first_of(name)})"
        )
    # One count per column, each with its first row (a QA pass: a row dropped for its error
    # column was counted under the success column of another).
    for name in dict.fromkeys(w for w in why if w is not None):
        num = why.count(name)
        notes.append(
            f"dropped {num:,} request{'' if num == 1 else 's'} whose {name} column "
            f"{marks(name)} (failed in the benchmark; the first, {first_of(name)})"
        )
    keep = [k for k, bad in enumerate(failed) if not bad]
    return [rows[k] for k in keep], None if positions is None else [positions[k] for k in keep]


def _finish(
    path: Path,
    arrival,
    inputs,
    outputs,
    ttft,
    e2e,
    kind: str,
    notes: list[str],
    where: list[str] | None = None,
) -> Benchmark:
    """Check and sort the requests; an error names the request as ``where`` does (its
    place in the file), else as "request N" in the order given."""

    def name(idx: int) -> str:
        return f"request {idx + 1}" if where is None else where[idx]

    arrival = np.asarray(arrival, dtype=np.float64)
    if len(arrival) == 0:
        raise SimreplayError(f"{path.name}: no successful requests to replay")
    inputs = np.asarray(inputs, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64)
    for what, values in (("input tokens", inputs), ("output tokens", outputs)):
        bad = ~(
            np.isfinite(values)
            & (values >= 1)
            & (values <= INT32_MAX)
            & (values == np.round(values))
        )
        if bad.any():
            got = values[bad][0]
            raise SimreplayError(
                f"{path.name}: {name(int(np.argmax(bad)))}: {what} must be a whole "
                f"number from 1 to {INT32_MAX:,}, got "
                # Nulls read as NaN: "got nan" for a null entry (a QA pass).
                + ("null (or NaN)" if np.isnan(got) else format_number(got))
            )
    if not np.isfinite(arrival).all():
        bad_at = int(np.argmax(~np.isfinite(arrival)))
        raise SimreplayError(
            f"{path.name}: {name(bad_at)}: its start time must be a finite number of "
            f"seconds, got {_time_text(arrival[bad_at], unit='')}"
        )
    # Clock readings (perf_counter, Unix time) are far inside +-MAX_ARRIVAL_S, and a replay
    # spans at most that; +-1e308 overflowed the rebased times to inf.
    with np.errstate(over="ignore"):
        since_first_s = arrival - arrival.min()
    far_from_zero = np.abs(arrival) > MAX_ARRIVAL_S
    if far_from_zero.any() or (since_first_s > MAX_ARRIVAL_S).any():
        # A time far from 0 is the culprit; else the one farthest from the rest (not the
        # row whose distance from an absurdly early time is what looks absurd).
        bad_at = (
            int(np.argmax(far_from_zero)) if far_from_zero.any() else farthest_time_row(arrival)
        )
        raise SimreplayError(
            f"{path.name}: {name(bad_at)}: start time {float(arrival[bad_at])!r} s is "
            f"not a clock reading: start times must be within {MAX_ARRIVAL_S:.0e} s (3,000 "
            "years) of 0 and of each other (a corrupt time, or a unit other than seconds?)"
        )
    # A served request's first token takes time: a TTFT of 0 is a failed or unfilled entry.
    bad = ~((ttft > 0) & (e2e >= ttft) & (e2e <= MAX_ARRIVAL_S))  # False for NaN
    if bad.any():
        raise SimreplayError(
            f"{path.name}: {name(int(np.argmax(bad)))}: needs 0 < TTFT <= E2E <= "
            f"{MAX_ARRIVAL_S:.0e} s, got "
            f"TTFT {_time_text(ttft[bad][0])}, E2E {_time_text(e2e[bad][0])}"
        )
    # E2E equal to TTFT with 2 or more tokens: no time for the rest, so TPOT 0, which
    # lowered the measured mean and drove --fit (a QA pass); vLLM's own failed or unfilled
    # entries look like that. Dropped and counted, as requests without inter-token gaps are.
    instant = (outputs >= 2) & (e2e == ttft)
    if instant.any():
        first = name(int(np.argmax(instant)))
        if instant.all():
            raise SimreplayError(
                f"{path.name}: no request to compare: every request of 2 or more output tokens "
                f"has E2E equal to its TTFT (the first, {first}), so no TPOT"
            )
        num = int(instant.sum())
        notes = [
            *notes,
            f"dropped {num:,} request{'' if num == 1 else 's'} of 2 or more output tokens whose "
            f"E2E equals {'its' if num == 1 else 'their'} TTFT (TPOT 0: the rest of the output "
            f"took no time; the first, {first})",
        ]
        keep = ~instant
        where = [name(k) for k in np.flatnonzero(keep)]  # ``name`` reads the kept rows' now
        arrival, inputs, outputs = arrival[keep], inputs[keep], outputs[keep]
        ttft, e2e = np.asarray(ttft)[keep], np.asarray(e2e)[keep]

    order = np.argsort(arrival, kind="stable")
    notes = [
        *notes,
        *_order_note(arrival, name),
        *_repeat_note(arrival, inputs, outputs, ttft, e2e, name),
    ]
    arrival = arrival[order] - arrival.min()
    return Benchmark(
        arrival,
        inputs[order].astype(np.int64),
        outputs[order].astype(np.int64),
        np.asarray(ttft, dtype=np.float64)[order],
        np.asarray(e2e)[order],
        f"{path.name} ({kind})",
        notes,
    )


def _order_note(arrival: np.ndarray, name: Callable[[int], str]) -> list[str]:
    """A note when some requests start before one listed ahead of them (a client sends in
    list order: a time far out of order is worth a look), none otherwise; the replay takes
    the requests in order of start time either way."""
    running_max = np.maximum.accumulate(arrival)
    early = arrival < running_max
    if not early.any():
        return []
    first = int(np.argmax(early))
    ahead = int(np.argmax(arrival[:first] == running_max[first]))
    num_early = int(early.sum())
    verb = "request starts" if num_early == 1 else "requests start"
    pronoun = "it" if num_early == 1 else "them"
    return [
        f"{num_early:,} {verb} before one listed ahead of {pronoun} (the first: "
        f"{name(first)}, {running_max[first] - arrival[first]:.3g} s before "
        f"{name(ahead)}); replayed in order of start time"
    ]


def _repeat_note(
    arrival: np.ndarray,
    inputs: np.ndarray,
    outputs: np.ndarray,
    ttft: np.ndarray,
    e2e: np.ndarray,
    name: Callable[[int], str],
) -> list[str]:
    """A note counting requests that repeat an earlier one exactly (send time, tokens,
    TTFT and E2E: measured times do not coincide to the last bit, so a file concatenated
    twice, as a QA pass's was), none otherwise. They are kept: nothing says which to drop."""
    first_seen: dict[tuple[float, ...], int] = {}
    repeats: list[tuple[int, int]] = []
    for k, key in enumerate(zip(arrival, inputs, outputs, ttft, e2e, strict=True)):
        earlier = first_seen.setdefault(tuple(float(v) for v in key), k)
        if earlier != k:
            repeats.append((k, earlier))
    if not repeats:
        return []
    count = len(repeats)
    k, earlier = repeats[0]
    return [
        f"{count:,} request{' is an exact repeat' if count == 1 else 's are exact repeats'} "
        f"of an earlier one (same send time, tokens and times; the first: {name(k)}, a "
        f"repeat of {name(earlier)}): a file concatenated twice? "
        f"{'it is' if count == 1 else 'they are'} kept and replayed"
    ]


def _describe_ms(values_s: np.ndarray) -> dict[str, float | None]:
    values = values_s[np.isfinite(values_s)]
    if values.size == 0:
        return dict.fromkeys(STATS)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "mean": float(values.mean()) * 1e3,
        "p50": float(p50) * 1e3,
        "p90": float(p90) * 1e3,
        "p99": float(p99) * 1e3,
    }


def _metrics(ttft_s: np.ndarray, e2e_s: np.ndarray, outputs: np.ndarray) -> dict[str, dict]:
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(outputs > 1, (e2e_s - ttft_s) / (outputs - 1), np.nan)
    return {"ttft": _describe_ms(ttft_s), "tpot": _describe_ms(tpot), "e2e": _describe_ms(e2e_s)}


def _replay(
    bench: Benchmark, resolved: ResolvedScenario
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Per-request predicted TTFT and E2E (s, NaN if rejected) and the rejected count per
    reason.

    ``simulate`` with an already resolved scenario, so that the step model and the KV block
    count can be set directly (``--num-kv-blocks``, host search).
    """
    from simulator.api import replay_resolved
    from simulator.results import build_result

    # vLLM's client of --max-concurrency N without recorded send times: the first N at
    # once, then one whenever a request finishes (``closed_loop.run_closed_loop``).
    slots = bench.max_concurrency if bench.closed_loop else None
    state = replay_resolved(
        resolved,
        bench.arrival_time_s,
        bench.input_tokens,
        bench.output_tokens,
        client_slots=slots,
    )
    result = build_result(resolved, state, None, None)
    requests = result.requests
    ttft = requests.column("ttft_s").to_numpy(zero_copy_only=False)
    e2e = requests.column("e2e_s").to_numpy(zero_copy_only=False)
    return ttft, e2e, dict(result.summary.get("rejected_by_reason", {}))


def _refuse_rejections(
    bench: Benchmark, rejected_by_reason: dict[str, int], max_model_len_given: bool
) -> None:
    """Refuse a configuration under which the simulator rejects requests of ``bench``.

    Every request left in a benchmark completed in the engine that ran it (failed ones are
    dropped on reading), so a configuration that rejects one (context length, KV blocks,
    token budget) is not the one that ran: its statistics would compare the measured
    requests with a subset, and a fit would tune constants to the wrong deployment.
    """
    rejected = sum(rejected_by_reason.values())
    if not rejected:
        return
    total = len(bench.arrival_time_s)
    how_many = f"all {rejected:,}" if rejected >= total else f"{rejected:,} of {total:,}"
    # As run prints them: "2: needs more KV cache than a replica has".
    reasons = "; ".join(f"{n:,}: {why}" for why, n in sorted(rejected_by_reason.items()))
    advice = (
        "give the benchmark's --max-model-len, --num-kv-blocks or --gpu-memory-utilization, "
        "--max-num-batched-tokens"
    )
    if set(rejected_by_reason) == {REJECT_REASONS[REJECT_CONTEXT]}:
        # Longer than the context asked for, which no engine option lengthens beyond the
        # model's (a QA pass: the advice named --max-model-len, refused above the model's).
        advice = (
            "no KV cache or budget option admits them: give the benchmark's --max-model-len "
            "if it was longer than this run's, else its --model, whose context is longer"
            if max_model_len_given
            # Without --max-model-len the model's whole context was asked for already (a
            # review: the advice named an option refused above it).
            else "they are longer than the model's context: the benchmark served another "
            "model (--model)"
        )
    raise SimreplayError(
        f"{bench.source}: the simulator rejected {how_many} requests, which all completed in "
        f"the benchmark ({reasons}), so this is not the configuration that ran; nothing was "
        f"compared or written ({advice})"
    )


def compare(predicted: dict[str, dict], measured: dict[str, dict]) -> dict[str, dict]:
    """Signed % error of every statistic: predicted / measured - 1 (None when undefined)."""
    out: dict[str, dict] = {}
    for metric in METRICS:
        out[metric] = {}
        for stat in STATS:
            p, m = predicted[metric][stat], measured[metric][stat]
            out[metric][stat] = None if p is None or not m else round((p / m - 1) * 100, 2)
    return out


#: How ``scenario.resolve``'s note of a max_model_len capped to the planned KV cache begins.
PLANNED_CAP_NOTE = "max_model_len capped from the model's"


def resolve_for_benchmark(scenario: Scenario, num_kv_blocks: int | None) -> ResolvedScenario:
    """Resolve ``scenario``; with ``num_kv_blocks``, use that many KV blocks per replica.

    vLLM logs its block count at start-up (v0.x: "# GPU blocks: N"; the V1 engine: "GPU KV
    cache size: T tokens", T / block size blocks); giving it replaces the memory plan's
    estimate, the way ``--num-gpu-blocks-override`` does in vLLM. A count whose bytes
    exceed the GPU's memory less the weights is refused: vLLM could not have allocated it
    (it is most likely V1's token count).
    """
    from simulator.memory import GIB, cuda_total_memory_bytes

    resolved = _with_replica_note(resolve(scenario))
    if num_kv_blocks is None:
        return resolved
    if isinstance(num_kv_blocks, bool) or not isinstance(num_kv_blocks, int) or (num_kv_blocks < 1):
        raise SimreplayError(f"--num-kv-blocks must be an integer >= 1, got {num_kv_blocks!r}")
    plan = resolved.memory
    kv_bytes = num_kv_blocks * plan.block_size * plan.kv_bytes_per_token
    room_bytes = cuda_total_memory_bytes(resolved.gpu) - plan.weights_bytes_per_gpu
    if kv_bytes > room_bytes:
        raise SimreplayError(
            f"--num-kv-blocks {num_kv_blocks:,} of {plan.block_size} tokens is "
            f"{kv_bytes / GIB:,.1f} GiB of KV cache per GPU, more than the "
            f"{room_bytes / GIB:,.1f} GiB left on each {resolved.gpu.name} beside "
            f"{resolved.model.name}'s weights at tp={resolved.tp}: no server held it (vLLM's V1 "
            f'engine logs "GPU KV cache size: T tokens": give T / {plan.block_size})'
        )
    memory = dataclasses.replace(
        resolved.memory,
        num_kv_blocks=num_kv_blocks,
        kv_capacity_tokens=num_kv_blocks * resolved.memory.block_size,
    )
    max_model_len = resolved.max_model_len
    # The measured cache replaces the planned one that resolve's notes compared with, and
    # the cap resolve drew from it (a QA pass: --gpu-memory-utilization 0.3 with
    # --num-kv-blocks 5000 kept the 30,496 tokens of the 0.3 estimate for max_model_len and
    # rejected every 40,000-token request the 80,000-token cache held).
    capped = any(note.startswith(PLANNED_CAP_NOTE) for note in resolved.notes)
    notes = [
        note
        for note in resolved.notes
        if KV_TOO_SMALL_MARK not in note and not note.startswith(PLANNED_CAP_NOTE)
    ]
    if scenario.max_model_len is None and capped:
        max_model_len = resolved.model.max_context_tokens
    # resolve's note on a TP without a useful cache quoted the planned cache's tokens.
    notes = [
        re.sub(
            r"hold [\d,]+ tokens of KV",
            f"hold {memory.kv_capacity_tokens:,} tokens of KV (--num-kv-blocks)",
            note,
        )
        if note.startswith(NO_USEFUL_TP_NOTE)
        else note
        for note in notes
    ]
    # vLLM V1's block pool keeps one block as its null block (as ``scenario.resolve``).
    capacity_tokens = memory.kv_capacity_tokens_per_virtual_engine
    if scenario.scheduler != "vllm-v0" and memory.pp == 1 and num_kv_blocks > 1:
        capacity_tokens -= memory.block_size
    if scenario.max_model_len is not None and memory.kv_capacity_tokens < max_model_len:
        notes.append(kv_too_small_note(max_model_len, memory.kv_capacity_tokens, capacity_tokens))
    if scenario.max_model_len is None and capacity_tokens < max_model_len:
        max_model_len = capacity_tokens
        notes.append(
            f"max_model_len capped to the {max_model_len:,} tokens of --num-kv-blocks one "
            "request can hold"
        )
    return dataclasses.replace(
        resolved, memory=memory, max_model_len=max_model_len, notes=tuple(notes)
    )


def _with_replica_note(resolved: ResolvedScenario) -> ResolvedScenario:
    """Say so when the GPUs make several replicas: one ``vllm bench serve`` result comes
    from one server, and replicas behind a router are another deployment."""
    if resolved.num_replicas <= 1:
        return resolved
    note = (
        f"simulating {resolved.num_replicas} replicas of tp={resolved.tp} behind a "
        f"{resolved.scenario.router} router; a `vllm bench serve` result comes from one "
        f"server: if it ran one server on all {resolved.num_gpus} GPUs, give --tp "
        f"{resolved.num_gpus}"
    )
    return dataclasses.replace(resolved, notes=(*resolved.notes, note))


def deployment(resolved: ResolvedScenario) -> dict[str, Any]:
    """The deployment a validation simulated: what ``validate`` reports beside its errors."""
    return {
        "gpus": f"{resolved.num_gpus}x{resolved.gpu.name}",
        "model": resolved.model.name,
        "tp": resolved.tp,
        "num_replicas": resolved.num_replicas,
        "kv_blocks_per_replica": resolved.memory.num_kv_blocks,
        "kv_capacity_tokens_per_replica": resolved.memory.kv_capacity_tokens,
        "max_num_seqs": resolved.max_num_seqs,
        "max_num_batched_tokens": resolved.max_num_batched_tokens,
        "max_model_len": resolved.max_model_len,
        "enforce_eager": resolved.scenario.enforce_eager,
        "async_scheduling": resolved.scenario.async_scheduling,
        "scheduler_reserve_full_isl": resolved.scenario.scheduler_reserve_full_isl,
        "step_time_model": {
            key: resolved.step_model.description[key]
            for key in (
                "efficiency_host_overhead_s",
                "efficiency_host_overhead_per_seq_s",
                "host_overhead_from",
            )
            if key in resolved.step_model.description
        },
        "cuda_graph_max_tokens": resolved.step_model.description.get("cuda_graph_max_tokens"),
        "scheduler": resolved.scenario.scheduler,
        "block_size": resolved.memory.block_size,
        "enable_prefix_caching": resolved.prefix_caching,
        "engine": engine_text(resolved),
        "api_server_latency_ms": resolved.scenario.api_server_latency_ms,
        "calibration": resolved.step_model.source,
    }


def model_mismatch(
    bench: Benchmark, model: str, resolved: ResolvedScenario, *, fitting: bool = False
) -> str | None:
    """A note when the benchmark's ``model_id`` clearly names another model than ``--model``;
    with ``fitting``, a ``model_id`` the catalog knows as another model is refused
    (``SimreplayError``): host constants fitted to another model's benchmark are wrong for
    this one (a QA pass: a Qwen2.5-7B benchmark fitted as llama-3.1-8b, with a note).

    The ``model_id`` is looked up in the catalog as ``--model`` would be (Hugging Face
    organisation and ``-Instruct`` suffixes do not matter); one the catalog does not know
    must contain the catalog name's words (case and punctuation ignored:
    ``meta-llama/Llama-3.1-8B-Instruct`` contains ``llama-3.1-8b``). Nothing is said
    without a ``model_id``, or when ``--model`` is a ``config.json`` path.
    """
    from simulator.models import get_model

    given = Path(model).expanduser()
    if bench.model_id is None or given.is_file() or (given / "config.json").is_file():
        return None
    named = None
    if not Path(bench.model_id).expanduser().exists():  # a served local folder: no lookup
        try:
            named = get_model(bench.model_id).name
        except SimreplayError:
            named = None
    if named is not None:
        differs = named != resolved.model.name
    else:

        def compact(text: str) -> str:
            return "".join(c for c in text.lower() if c.isalnum())

        differs = compact(resolved.model.name) not in compact(bench.model_id)
    if not differs:
        return _precision_mismatch(bench.model_id, resolved)
    if fitting and named is not None:
        raise SimreplayError(
            f"--fit: the benchmark served {bench.model_id!r} (its model_id), the catalog's "
            f"{named}, not --model {resolved.model.name}: give --model {named} to fit to "
            "it; nothing was written"
        )
    return (
        f"the benchmark served {bench.model_id!r} (its model_id), which does not look like "
        f"--model {resolved.model.name}: the simulated model may not be the one benchmarked"
    )


def _precision_mismatch(model_id: str, resolved: ResolvedScenario) -> str | None:
    """A note when the checkpoint's name says FP8 weights and the replay has 16-bit ones
    (``neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8`` with no ``--quantization fp8``: a QA
    pass saw it simulated as 16-bit without a word)."""
    words = re.split(r"[^a-z0-9]+", model_id.lower())
    if "fp8" in words and resolved.scenario.quantization != "fp8":
        return (
            f"the benchmark served {model_id!r}, an FP8 checkpoint by its name, and the replay "
            "has 16-bit weights: give --quantization fp8 if vLLM served FP8 weights"
        )
    # Integer-quantized checkpoints (a QA pass: an AWQ INT4 model was replayed as 16-bit
    # without a word): simreplay models 16-bit and FP8 weights only.
    named = sorted(set(words) & INTEGER_QUANTIZATION_WORDS)
    if named:
        return (
            f"the benchmark served {model_id!r}, a {'/'.join(named).upper()} checkpoint by its "
            "name, and the replay reads "
            + ("FP8" if resolved.scenario.quantization == "fp8" else "16-bit")
            + " weights (simreplay models no integer-quantized weights): its predicted steps "
            "read more weight bytes than the server's did"
        )
    return None


#: Words of a checkpoint's name that mark integer-quantized weights (AutoAWQ, GPTQ,
#: llm-compressor's W4A16 / W8A8 schemes, bitsandbytes).
INTEGER_QUANTIZATION_WORDS = frozenset(
    {"awq", "gptq", "int4", "int8", "w4a16", "w8a8", "w4a8", "w8a16", "nf4", "bnb", "4bit", "8bit"}
)


def _base_profile(resolved: ResolvedScenario) -> Profile | None:
    if resolved.scenario.calibration is not None:
        return load_profile(Path(resolved.scenario.calibration))
    for name in borrow_order(resolved.gpu.name):
        found = shipped_profile(name)
        if found is not None:
            return found
    return None


def _with_host(
    resolved: ResolvedScenario, base: Profile | None, host: dict[str, float]
) -> ResolvedScenario:
    if base is None:
        profile = _host_profile(resolved, None, host, provenance={"source": "host-overhead search"})
    else:  # the base's grids, named as the base names them, with trial host constants
        profile = dataclasses.replace(_host_profile(resolved, base, host, {}), path=base.path)
    step, info = step_model_for(
        resolved.model,
        resolved.gpu,
        resolved.tp,
        profile,
        kv_dtype_bytes=resolved.kv_dtype_bytes,
        scheduler=resolved.scenario.scheduler,
    )
    source = step.source.split("; host overheads from ")[0]
    source += "; host overheads fitted to this benchmark"
    description = {**step.description, "host_overhead_from": "this benchmark's fit"}
    step = dataclasses.replace(step, source=source, description=description)
    chosen = resolved.scenario
    step = served_step_model(step, chosen, resolved.max_num_seqs, resolved.token_budget)
    return dataclasses.replace(resolved, step_model=step, calibration={**info, "source": source})


def _host_profile(
    resolved: ResolvedScenario,
    base: Profile | None,
    host: dict[str, float],
    provenance: dict[str, Any],
) -> Profile:
    from simulator.calibration.select import reference_for

    if base is None:
        return Profile(
            gpu=resolved.gpu.name,
            reference=reference_for(resolved.gpu.name),
            grids={},
            provenance=provenance,
            host=dict(host),
        )
    # The trial constants are the host time of whichever scheduler the benchmark ran:
    # the base's vLLM V0 block (Vidur's) would stand in for them under ``vllm-v0``.
    return dataclasses.replace(
        base,
        host=dict(host),
        host_vllm_v0={},
        provenance=provenance or base.provenance,
        path=None,
        errors=dict(base.errors),
        errors_leave_one_out=dict(base.errors_leave_one_out),
    )


def validate(bench: Benchmark, resolved: ResolvedScenario) -> dict[str, Any]:
    """Predicted vs measured statistics of one benchmark under ``resolved``.

    Returns
    -------
    dict
        ``measured`` and ``predicted`` (``{metric: {mean, p50, p90, p99}}`` in ms),
        ``error_pct`` (signed), ``num_requests``, the step-time source, the ``deployment``
        simulated and the ``notes``: the benchmark's (what reading it dropped or assumed),
        the scenario's, and the replay's.

    Raises
    ------
    SimreplayError
        When the simulator rejects any request (``_refuse_rejections``).
    """
    return _validate(bench, resolved)[0]


def _validate(bench: Benchmark, resolved: ResolvedScenario) -> tuple[dict[str, Any], np.ndarray]:
    """``validate``'s report and each request's TPOT log ratio (``_tpot_log_ratios``)."""
    measured = _metrics(bench.ttft_s, bench.e2e_s, bench.output_tokens)
    ttft, e2e, rejected_by_reason = _replay(bench, resolved)
    _refuse_rejections(bench, rejected_by_reason, resolved.scenario.max_model_len is not None)
    predicted = _metrics(ttft, e2e, bench.output_tokens)
    report = {
        "benchmark": bench.source,
        "num_requests": int(len(bench.arrival_time_s)),
        "num_dropped": bench.num_dropped,
        "step_times": resolved.step_model.source,
        "deployment": deployment(resolved),
        "notes": [*bench.notes, *resolved.notes, *_concurrency_notes(bench, e2e)],
        "measured": measured,
        "predicted": predicted,
        "error_pct": compare(predicted, measured),
        "ttft_gap_ms": _ttft_gap_ms(bench, ttft),
        "ttft_gap_per_request": not bench.drawn_arrivals,
    }
    return report, _tpot_log_ratios(bench, ttft, e2e)


def _ttft_gap_ms(bench: Benchmark, predicted_s: np.ndarray) -> dict[str, float | None]:
    """Measured minus predicted TTFT per request, in ms: its median, p10 and p90. A gap
    that is about the same for every request is time the simulation leaves out at every
    request (the API server's, ``--api-server-latency-ms``); one that grows with load is
    queueing or step time. With send times drawn (``bench.drawn_arrivals``): each
    percentile of the measured TTFTs minus the same percentile of the predicted ones."""
    measured_s = bench.ttft_s
    served = np.isfinite(predicted_s)
    if not served.any():
        return {"median": None, "p10": None, "p90": None}
    if not bench.drawn_arrivals:
        gap_ms = (measured_s - predicted_s)[served] * 1e3
        p10, median, p90 = np.percentile(gap_ms, [10, 50, 90])
    else:
        measured = np.percentile(measured_s[served], [10, 50, 90])
        p10, median, p90 = (measured - np.percentile(predicted_s[served], [10, 50, 90])) * 1e3
    return {"median": float(median), "p10": float(p10), "p90": float(p90)}


def _concurrency_notes(bench: Benchmark, e2e_s: np.ndarray) -> list[str]:
    """A note when the replay had more requests in flight than the benchmark's client
    allowed (``max_concurrency``); none without a limit or within it.

    ``e2e_s`` is each request's predicted E2E (float64, NaN if rejected; not mutated).
    """
    limit = bench.max_concurrency
    if limit is None or bench.closed_loop or len(e2e_s) == 0:
        return []
    arrival = bench.arrival_time_s  # sorted
    predicted = _in_flight_at_sends(arrival, e2e_s)
    over = predicted > limit
    if not over.any():
        return []
    return [
        f"the replay had up to {int(predicted.max()):,} requests in flight (the measured "
        f"requests up to {int(_in_flight_at_sends(arrival, bench.e2e_s).max()):,}), above "
        f"the client's max_concurrency {limit:,}, at {int(over.sum()):,} of "
        f"{len(arrival):,} arrivals: where the simulated server is slower than the measured "
        "one, the later requests' predicted TTFT and E2E include queueing that the "
        "benchmark's client would have avoided by sending them later"
    ]


def _tpot_log_ratios(bench: Benchmark, ttft_s: np.ndarray, e2e_s: np.ndarray) -> np.ndarray:
    """log(predicted / measured TPOT) of each request with 2 or more output tokens
    (float64; NaN where undefined), each TPOT floored at 1 us."""
    many = bench.output_tokens > 1
    with np.errstate(invalid="ignore", divide="ignore"):
        pred = (e2e_s - ttft_s)[many] / (bench.output_tokens[many] - 1)
        meas = (bench.e2e_s - bench.ttft_s)[many] / (bench.output_tokens[many] - 1)
        return np.log(np.maximum(pred, 1e-6)) - np.log(np.maximum(meas, 1e-6))


def _request_loss(log_ratios: np.ndarray) -> float:
    """Mean |log ratio| of each request's TPOT, predicted against measured (an undefined
    one counts 1).

    Requests are matched one to one, so each one's TPOT tells which batches it shared
    steps with: far more than summary statistics, and what lets the per-step and
    per-sequence host overheads be told apart (requests of a quiet phase see small
    batches, those of a busy phase large ones). TTFT is left out: one request's TTFT
    depends chaotically on where its arrival falls in a step, which makes the loss rough.
    """
    if log_ratios.size == 0:
        return 0.0
    diff = np.abs(log_ratios)
    return float(np.mean(np.where(np.isfinite(diff), diff, 1.0)))


def fit_host_overhead(
    bench: Benchmark,
    resolved: ResolvedScenario,
    *,
    progress: Any = None,
) -> tuple[dict[str, float], dict[str, Any], Profile | None]:
    """Search the host-overhead constants that best reproduce ``bench``.

    Returns
    -------
    host : dict
        ``host_overhead_s`` and ``host_overhead_per_seq_s`` (seconds).
    report : dict
        ``validate``'s report at the best constants, plus ``loss``.
    base : Profile or None
        The profile whose grids the search used (None: uncalibrated roofline).
    """
    with_tpot = int((bench.output_tokens > 1).sum())
    if not with_tpot:
        raise SimreplayError(
            f"--fit: every request in {bench.source} has 1 output token, so there is no "
            "TPOT (decode-step time) to fit the host overheads to; nothing was written "
            "(benchmark outputs of 2 or more tokens, e.g. vllm bench serve --random-output-len 128)"
        )
    if with_tpot < len(bench.output_tokens) and progress is not None:
        progress(
            f"note: --fit matches TPOT, which {_requests(len(bench.output_tokens) - with_tpot)} "
            f"with 1 output token {'does' if len(bench.output_tokens) - with_tpot == 1 else 'do'} "
            f"not have: fitted to the other {_requests(with_tpot)}"
        )
    base = _base_profile(resolved)
    spread = decode_batch_spread(bench)
    per_seq_fixed = None
    if spread is not None and spread[1] <= NARROW_BATCH_RATIO * spread[0]:
        # Only fixed + batch x per-sequence is measured: the split would be arbitrary (a
        # one-at-a-time benchmark fitted 6.7 ms + 1,310 us per sequence, which made a
        # loaded run 50 times slower).
        per_seq_fixed = DEFAULT_EFFICIENCIES.host_overhead_per_seq_s
        if progress is not None:
            low, high = spread
            batches = f"{low:g} sequence" if high == 1 else f"{low:g}-{high:g} sequences"
            if low == high and high != 1:
                batches = f"{high:g} sequences"
            progress(
                f"note: --fit: the benchmark's decode steps ran {batches} at a time "
                "(10th-90th percentile of time): a per-step and a per-sequence overhead "
                "cannot be told apart, so only the per-step one is fitted, with "
                f"{per_seq_fixed * 1e6:g} us per sequence kept (benchmark a range of loads "
                "to fit both)"
            )
    # The grid's first evaluation refuses a configuration that rejects requests (admission
    # does not depend on host overhead), before anything is written.
    cache: dict[tuple[float, float], float] = {}

    def loss(fixed_s: float, per_seq_s: float) -> float:
        key = (round(fixed_s, 9), round(per_seq_s, 10))
        if key not in cache:
            host = {"host_overhead_s": key[0], "host_overhead_per_seq_s": key[1]}
            cache[key] = _request_loss(_validate(bench, _with_host(resolved, base, host))[1])
        return cache[key]

    fixed_grid = [0.0, *np.geomspace(5e-5, 1e-2, 12)]
    per_seq_grid = [0.0, *np.geomspace(1e-6, 1e-4, 9)] if per_seq_fixed is None else [0.0]
    nodes = sorted(
        (loss(f, p), (f, p))
        for f in fixed_grid
        for p in (per_seq_grid if per_seq_fixed is None else [per_seq_fixed])
    )
    # Pattern search from each of the three best nodes, in u = log(x + eps): move to the
    # best of the eight neighbours (diagonals follow the valley where fixed and
    # per-sequence costs trade off) while that improves, halve the step when it does not;
    # stop below 0.5 %. The loss is rough (a change of step time moves a few requests into
    # other batches), hence several starts.
    eps = (2e-5, 2e-7)

    # The search may walk past the grid; it stops at what a profile may hold.
    highest = (HOST_RANGES["host_overhead_s"][1], HOST_RANGES["host_overhead_per_seq_s"][1])

    def point(uu: tuple[float, float]) -> tuple[float, float]:
        fixed = min(max(math.exp(uu[0]) - eps[0], 0.0), highest[0])
        if per_seq_fixed is not None:
            return fixed, per_seq_fixed
        return fixed, min(max(math.exp(uu[1]) - eps[1], 0.0), highest[1])

    best_loss, best = math.inf, nodes[0][1]
    for start_idx, (_, start) in enumerate(nodes[:3]):
        u = (math.log(start[0] + eps[0]), math.log(start[1] + eps[1]))
        current = loss(*point(u))
        step = 0.4
        for _ in range(60):
            moves = (-1, 0, 1) if per_seq_fixed is None else (0,)
            trials = [
                (u[0] + i * step, u[1] + j * step) for i in (-1, 0, 1) for j in moves if i or j
            ]
            trial_loss, trial = min((loss(*point(t)), t) for t in trials)
            if trial_loss < current:
                current, u = trial_loss, trial
            else:
                step /= 2.0
                if step < 0.005:
                    break
        if current < best_loss:
            best_loss, best = current, point(u)
        if progress is not None:
            f_s, p_s = point(u)
            progress(
                f"start {start_idx + 1}: host {f_s * 1e3:.4f} ms + {p_s * 1e6:.3f} "
                f"us/seq, loss {current:.6f}"
            )
    host = {"host_overhead_s": round(best[0], 9), "host_overhead_per_seq_s": round(best[1], 10)}
    report, log_ratios = _validate(bench, _with_host(resolved, base, host))
    report["loss"] = round(_request_loss(log_ratios), 6)
    smallest_per_seq = per_seq_grid[1] if per_seq_fixed is None else math.inf
    _check_lower_bound(
        host,
        log_ratios,
        (fixed_grid[1], smallest_per_seq),
        progress,
        overlapped=bool(resolved.scenario.async_scheduling),
    )
    if (
        host["host_overhead_s"] > PLAUSIBLE_HOST_S
        or host["host_overhead_per_seq_s"] > PLAUSIBLE_PER_SEQ_S
    ):
        implausible = (
            f"--fit: {host['host_overhead_s'] * 1e3:.3f} ms per step + "
            f"{host['host_overhead_per_seq_s'] * 1e6:.1f} us per sequence is above what vLLM's "
            f"host work measures ({PLAUSIBLE_HOST_S * 1e3:g} ms and "
            f"{PLAUSIBLE_PER_SEQ_S * 1e6:g} us at most here; Vidur's V0 data: 0.82 ms + 42 us): "
            "check that --gpus, --model, --tp and the engine flags are what ran"
        )
        # In the fitted report's notes too, so that --json carries it (a QA pass: only
        # stderr said it).
        report["notes"] = [*report.get("notes", []), implausible]
        if progress is not None:
            progress(f"note: {implausible}")
    return host, report, base


#: ``--fit`` fits only the per-step overhead when the benchmark's decode batch varies less
#: than this factor (10th to 90th percentile of time, ``decode_batch_spread``).
NARROW_BATCH_RATIO = 1.5

#: Fitted host overheads above these get a note (Vidur's measured vLLM V0 host work on
#: A100, ``history/a100_cpu_overheads.csv``: about 0.82 ms + 42 us per sequence a step).
PLAUSIBLE_HOST_S = 3e-3
PLAUSIBLE_PER_SEQ_S = 100e-6

#: ``check_tpot_ratio`` refuses ``--fit`` when the measured TPOT (median) is more than
#: this many times the simulated one before the fit: no host overhead explains that.
MAX_TPOT_RATIO = 4.0


#: ``check_tpot_ratio`` refuses any validation whose measured TPOT (median) is more than
#: this many times the simulated: 100x is beyond a GPU off by a generation or a model off by
#: 10x in size, and is what times in milliseconds read as seconds give (~1,000x).
UNIT_TPOT_RATIO = 100.0


def decode_batch_spread(bench: Benchmark) -> tuple[float, float] | None:
    """The 10th and 90th percentiles, over time, of how many requests were decoding at once
    (between first token and completion) in the benchmark; None without send times.

    A closed-loop client (no send times) keeps its ``max_concurrency`` requests in flight:
    its decode batch is that, (k, k).
    """
    if bench.closed_loop:
        k = float(bench.max_concurrency or 1)
        return k, k
    start = bench.arrival_time_s + bench.ttft_s
    end = bench.arrival_time_s + bench.e2e_s
    decoding = end > start
    if not decoding.any():
        return None
    times = np.concatenate([start[decoding], end[decoding]])
    steps = np.concatenate([np.ones(decoding.sum()), -np.ones(decoding.sum())])
    order = np.lexsort((steps, times))  # ends before starts at the same time
    times, level = times[order], np.cumsum(steps[order])
    durations = np.diff(times)
    busy = level[:-1] > 0
    if not busy.any() or durations[busy].sum() <= 0:
        return None
    levels, weights = level[:-1][busy], durations[busy]
    by_level = np.argsort(levels, kind="stable")
    cumulative = np.cumsum(weights[by_level]) / weights.sum()
    low = float(levels[by_level][np.searchsorted(cumulative, 0.1)])
    high = float(levels[by_level][min(np.searchsorted(cumulative, 0.9), len(cumulative) - 1)])
    return low, high


def check_tpot_ratio(report: dict[str, Any], *, fitting: bool, file_name: str = "") -> str | None:
    """Refuse (``SimreplayError``) when the measured TPOT is more than ``UNIT_TPOT_RATIO``
    times the simulated (medians, before any fit), and with ``fitting`` when it is more than
    ``MAX_TPOT_RATIO`` times; return a note when it is more than half that (or more,
    without ``fitting``), else None. ``file_name`` (the benchmark's) starts the first
    refusal's line. A measured TTFT far above the simulated (``FAR_TTFT_RATIO``) is in the
    note too, and refused with ``fitting``.

    Host overhead is a fraction of a millisecond a step: a benchmark several times slower
    than this GPU's measured kernels ran on another GPU, model or TP, or its times are not in
    seconds (milliseconds read as seconds fitted 7,184 ms per step).
    """
    measured = (report.get("measured") or {}).get("tpot", {}).get("p50")
    predicted = (report.get("predicted") or {}).get("tpot", {}).get("p50")
    if not measured or not predicted or predicted <= 0:
        return None
    ratio = measured / predicted
    what = (
        f"measured TPOT p50 {measured:,.1f} ms is {ratio:,.1f} times the simulated "
        f"{predicted:,.2f} ms"
    )
    hint = (
        "the benchmark may be of another GPU, model, TP or precision than --gpus, --model, "
        "--tp and --quantization say, or its times not in seconds"
    )
    if ratio > UNIT_TPOT_RATIO:
        # Without --fit too (a QA pass: times in ms were compared, -99.9 %, with a note).
        raise SimreplayError(
            (f"{file_name}: " if file_name else "")
            + f"{what}, more than any GPU, model or TP explains: are the benchmark's times in "
            "milliseconds? (it needs seconds); nothing was compared"
        )
    if ratio > MAX_TPOT_RATIO and fitting:
        raise SimreplayError(
            f"--fit: {what}, more than any host overhead explains: {hint}; nothing was written"
        )
    far = _ttft_far_off(report, ratio)
    if far is not None and fitting:
        # An API-server latency fitted to it would be the queue or the unit (a QA pass:
        # TTFTs in ms fitted 41 s).
        raise SimreplayError(f"--fit: {far}; no latency fits that; nothing was written")
    notes = [f"{what}: {hint}"] if ratio > MAX_TPOT_RATIO / 2 else []
    notes += [far] if far is not None else []
    return "; ".join(notes) or None


#: ``check_tpot_ratio`` notes (and refuses for ``--fit``) a measured TTFT (median) more than
#: this many times the simulated and above ``FAR_TTFT_MIN_S``: the benchmark's server
#: queued where the replay of the same sends does not (a rate beyond its capacity, or
#: engine flags other than those that ran), or its TTFTs are in milliseconds, ~1,000 times
#: (a QA pass: a CSV of TTFTs in ms, without a duration to check them against, compared
#: -100.0 % and --fit wrote an API-server latency of 41 s; a review: refusing it also
#: refused an overloaded server's benchmark, the error validate is there to show).
FAR_TTFT_RATIO = 100.0
FAR_TTFT_MIN_S = 1.0


def _ttft_far_off(report: dict[str, Any], tpot_ratio: float) -> str | None:
    """What ``FAR_TTFT_RATIO`` says of the report's TTFTs, or None."""
    measured = (report.get("measured") or {}).get("ttft", {}).get("p50")
    predicted = (report.get("predicted") or {}).get("ttft", {}).get("p50")
    if not measured or not predicted or predicted <= 0:
        return None
    if measured <= FAR_TTFT_RATIO * predicted or measured <= FAR_TTFT_MIN_S * 1e3:
        return None
    return (
        f"measured TTFT p50 {measured:,.1f} ms is {measured / predicted:,.0f} times the "
        f"simulated {predicted:,.2f} ms, where TPOT p50 is {tpot_ratio:,.1f} times: the "
        "benchmark's server queued where the replay does not (a rate beyond what it "
        "served, or engine flags not those that ran), or its TTFTs are in milliseconds "
        "(they need seconds)"
    )


def fit_api_server_latency(
    bench: Benchmark,
    resolved: ResolvedScenario,
    base: Profile | None,
    host: dict[str, float],
    progress: Any = None,
) -> tuple[float, dict[str, Any], bool]:
    """The API server's latency (ms) that ``--fit`` finds after the host overheads,
    ``validate``'s report at both, and whether the TTFT gap varies across requests (then
    it is queueing the replay lacks, not that latency, and a note says so).

    The median over requests of measured TTFT minus the engine's (the replay at latency 0),
    at least 0 and at most ``MAX_API_SERVER_LATENCY_MS``, to 0.1 ms. A constant latency
    moves every open-loop arrival by the same time, so the engine's TTFTs do not depend on
    it; what is left is the time the engine does not see (HTTP, tokenization, streaming).
    Queueing that the replay gets wrong lands in it too: fit it to a benchmark at low
    load (one request at a time).
    """
    from simulator.scenario import MAX_API_SERVER_LATENCY_MS

    fitted = _with_host(resolved, base, host)
    engine_only = _with_latency(fitted, 0.0)
    ttft_s, _, _ = _replay(bench, engine_only)
    notes: list[str] = []
    gap = _ttft_gap_ms(bench, ttft_s)
    median_ms = gap["median"] or 0.0
    latency_ms = round(min(max(median_ms, 0.0), MAX_API_SERVER_LATENCY_MS), 1)
    spread_ms = (gap["p90"] or 0.0) - (gap["p10"] or 0.0)
    varies = spread_ms > max(GAP_SPREAD_MIN_MS, GAP_SPREAD_SHARE * abs(median_ms))
    if varies:
        # An API server's latency is about the same for every request; a gap that varies
        # is queueing the replay does not reproduce (a QA pass: TTFTs 60 times the engine's
        # fitted an "API-server latency" of 3,112 ms, p10 +2,580, p90 +5,090 ms).
        spread = (
            f"the measured TTFT exceeds the engine's by {median_ms:,.1f} ms (median) but by "
            f"{gap['p10']:+,.1f} to {gap['p90']:+,.1f} ms (p10 to p90) across requests: "
            "queueing the replay does not reproduce (a rate beyond what it serves, or "
            "engine flags other than those that ran), not the API server's about constant "
            "latency; fit that to a benchmark at low load"
        )
        notes.append(spread)
        if progress is not None:
            progress(f"note: {spread}")
    if median_ms > MAX_API_SERVER_LATENCY_MS and progress is not None:
        progress(
            f"note: measured TTFT exceeds the engine's by {median_ms:,.0f} ms (median), more "
            f"than the {MAX_API_SERVER_LATENCY_MS:,.0f} ms --api-server-latency-ms takes: the "
            "fit stops there; are the benchmark's times in seconds?"
        )
    report, log_ratios = _validate(bench, _with_latency(fitted, latency_ms))
    report["loss"] = round(_request_loss(log_ratios), 6)
    report["notes"] = [*report.get("notes", []), *notes]
    return latency_ms, report, varies


#: ``fit_api_server_latency`` notes a TTFT gap whose p10-p90 spread is above this share of
#: its median and this many ms: not an about-constant API-server latency. Wide enough that
#: a prefill error growing with the prompt is not read as queueing (a review: 15 % slower
#: prefills of 3,000-token prompts spread a 23 ms latency's gap over +26 to +48 ms).
GAP_SPREAD_SHARE = 1.0
GAP_SPREAD_MIN_MS = 100.0


def _with_latency(resolved: ResolvedScenario, latency_ms: float) -> ResolvedScenario:
    """``resolved`` with another API-server latency (nothing else depends on it)."""
    scenario = dataclasses.replace(resolved.scenario, api_server_latency_ms=latency_ms)
    return dataclasses.replace(resolved, scenario=scenario)


#: Largest |median log ratio| of the requests' TPOT (predicted / measured) a fit may leave
#: when it ends at zero host overhead: 10 %, above the shipped GEMM and decode-attention
#: grids' held-out p90 error (5-11 %), so a larger one is not the kernel model's error.
MAX_RESIDUAL_AT_ZERO_HOST = 0.10


def _check_lower_bound(
    host: dict[str, float],
    log_ratios: np.ndarray,
    smallest: tuple[float, float],
    progress: Any,
    overlapped: bool = False,
) -> None:
    """Refuse a fit that ends at zero host overhead with a large TPOT error left.
    ``overlapped``: the replay scheduled asynchronously, where host work the GPU's hides
    does not show in the benchmark at all (the note says so).

    Host overhead only adds time: when even none leaves the simulated decode steps slower
    than measured, the kernels alone are too slow for this benchmark (another GPU, TP,
    model or profile ran it), and a profile of zero overhead would be labelled a fit.
    Below ``smallest`` (the search grid's first non-zero nodes) a constant counts as 0.
    """
    at_zero = (
        host["host_overhead_s"] < smallest[0] and host["host_overhead_per_seq_s"] < smallest[1]
    )
    finite = log_ratios[np.isfinite(log_ratios)]
    if not at_zero or finite.size == 0:
        return
    residual = float(np.median(finite))
    error = f"{math.expm1(residual) * 100:+.1f}%"
    if abs(residual) > MAX_RESIDUAL_AT_ZERO_HOST:
        raise SimreplayError(
            f"--fit: with no host overhead at all the simulated TPOT is still {error} off the "
            f"measured (median over requests; at most +-{MAX_RESIDUAL_AT_ZERO_HOST:.0%} "
            "allowed): the kernels alone are slower than the benchmark, so no host overhead "
            "fits it; the profile, --model, --gpus or --tp may not be what ran; nothing was "
            "written"
        )
    if progress is not None:
        hidden = (
            "; with async scheduling the host work hides behind the GPU's, so this benchmark "
            "shows only that it was no longer than the GPU's steps, not that there was none"
            if overlapped
            else ""
        )
        progress(
            f"note: --fit ended at zero host overhead (median TPOT error {error}): the "
            f"kernels alone account for the measured decode steps{hidden}"
        )


def fitted_profile_gpu(resolved: ResolvedScenario) -> str:
    """The GPU a ``--fit`` profile is named for: the one its grids were measured on (the
    base profile's, a relative's for a GPU without measurements), else the run's GPU."""
    base = _base_profile(resolved)
    return resolved.gpu.name if base is None else base.gpu


def fitted_profile(
    resolved: ResolvedScenario,
    base: Profile | None,
    host: dict[str, float],
    report: dict[str, Any],
    before: dict[str, Any],
    model_id: str | None = None,
) -> Profile:
    """The profile ``--fit`` writes: the base grids plus the fitted host constants."""
    from simulator import __version__

    provenance = {
        "source": "benchmark",
        "benchmark": report["benchmark"],
        "base_profile": None if base is None else (base.path.name if base.path else base.gpu),
        "base_source": None if base is None else base.provenance.get("source"),
        "engine": None if base is None else base.provenance.get("engine"),
        "model": resolved.model.name,
        # The model the benchmark names (a vLLM result's model_id), and what was noted of
        # the replay: a reader of the profile sees what it was fitted to.
        "benchmark_model_id": model_id,
        "notes": list(report.get("notes", [])),
        "tp": resolved.tp,
        # Host constants fitted with the server's host work overlapping its GPU's are not
        # the ones a serial step adds: a run says so when its mode differs.
        "async_scheduling": resolved.scenario.async_scheduling,
        "fitted_on": fitted_on_today(),
        "fitted_by": f"simreplay {__version__} calibrate validate --fit",
        "default_host": {
            "host_overhead_s": DEFAULT_EFFICIENCIES.host_overhead_s,
            "host_overhead_per_seq_s": DEFAULT_EFFICIENCIES.host_overhead_per_seq_s,
        },
        "error_pct_before": before["error_pct"],
        "error_pct_after": report["error_pct"],
    }
    if base is not None and base.gpu != resolved.gpu.name:
        provenance["benchmark_gpu"] = resolved.gpu.name
    profile = _host_profile(resolved, base, host, provenance)
    # The GPU its grids were measured on: a base borrowed from a relative (L40S's for an
    # L4) stays that relative's, so a run says "measured on L40S, applied to L4".
    profile.gpu = resolved.gpu.name if base is None else base.gpu
    profile.model = resolved.model.name
    profile.tp = resolved.tp
    return profile


def _shown(value: object, limit: int = 40) -> str:
    """A value from a benchmark file for a message: JSON's true, false and null as JSON
    spells them, a text quoted and cut at about ``limit`` characters with its closing quote
    kept, anything else its repr cut at ``limit`` (a QA pass: "got True" of a JSON true; an
    error text cut mid-word with its quote left open)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[: limit - 3] + "...")
    return f"{value!r:.{limit}}"


def _requests(count: int) -> str:
    """``1 request``, ``2 requests``."""
    return f"{count:,} request{'' if count == 1 else 's'}"


def _time_text(value: float, unit: str = " s") -> str:
    """A time from a benchmark file for a message: ``0.25 s`` to 6 significant digits (a
    difference of two times read ``-0.03739999999999999``), or ``null (or NaN)`` where the
    file had either (both read as NaN)."""
    value = float(value)
    return "null (or NaN)" if math.isnan(value) else f"{value:.6g}{unit}"
