"""Results saved by ``vllm bench serve --save-result --save-detailed`` (and the older
``benchmarks/benchmark_serving.py --save-result``): one JSON object per file.

Per-request lists, one entry per request in send order: ``input_lens`` (prompt tokens),
``output_lens`` (tokens generated; 0 for a failed request), ``errors`` (empty text when the
request succeeded), ``start_times`` (client ``time.perf_counter()`` seconds when the
request was sent; newer vLLM only), and the measured ``ttfts``, ``itls``, ``latencies``
(not imported). Run-level fields used: ``model_id`` (becomes ``model``), ``request_rate``
(a number, or the text ``"inf"``), ``burstiness``, ``max_concurrency``,
``ramp_up_strategy``. Without ``--save-detailed`` newer vLLM leaves the per-request lists
out, and there is nothing to import.

Arrivals are the recorded ``start_times`` when present. Otherwise they are synthetic, in
this order of preference: the process given with ``--rate``/``--arrival``; the benchmark's
own process at its finite ``request_rate`` (Poisson, or gamma inter-arrivals of shape
``burstiness`` as vLLM draws them), seeded with ``--seed``; all at 0 s when the benchmark
sent every request at once (infinite rate, no concurrency limit). Failed requests (a
non-empty ``errors`` entry, or 0 output tokens, as ``calibrate validate`` reads them) are
dropped and counted. Messages name requests by their
position in the lists counted from 1 ("request 17" is index 16), as ``calibrate validate``
names them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from simulator.errors import TraceError
from simulator.trace import arrivals
from simulator.trace.options import ImportOptions
from simulator.trace.raw import RawTrace
from simulator.trace.readers.tabular import float_values, int_values, open_input

_SNIFF_KEYS = ('"request_throughput"', '"total_input_tokens"')


def sniff(path: Path, head_text: str) -> bool:
    """True for a single JSON object carrying vLLM's benchmark summary keys."""
    return head_text.lstrip().startswith("{") and all(key in head_text for key in _SNIFF_KEYS)


def read(path: Path, options: ImportOptions) -> RawTrace:
    """Read a saved vLLM serving-benchmark result into a ``RawTrace``."""
    result = _load(path)
    if "input_lens" not in result or "output_lens" not in result:
        raise TraceError(
            f"{path.name}: no per-request lengths (input_lens, output_lens): the benchmark "
            "was saved without them; re-run it with --save-result --save-detailed"
        )
    input_lens = _numbers(path, result, "input_lens")
    num_requests = len(input_lens)
    output_lens = _numbers(path, result, "output_lens", num_requests)
    start_times = (
        _numbers(path, result, "start_times", num_requests)
        if result.get("start_times") is not None
        else None
    )
    notes: list[str] = []
    arrival_time_s = _arrivals(path, result, start_times, num_requests, options, notes)

    extra = {}
    model_id = result.get("model_id")
    if isinstance(model_id, str) and model_id:
        extra["model"] = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(num_requests, dtype=np.int32)), pa.array([model_id])
        )
    raw = RawTrace(
        arrival_time_s=arrival_time_s,
        input_tokens=int_values(input_lens),
        output_tokens=int_values(output_lens),
        source_file=path.name,
        source_format="vllm-bench",
        source_columns={
            "arrival_time_s": "start_times",
            "input_tokens": "input_lens",
            "output_tokens": "output_lens",
        },
        extra=extra,
        first_line=1,  # request 1 is the lists' first entry, as calibrate validate counts
        location_word="request",
        notes=notes,
    )
    failed = _failed(path, result, num_requests)
    num_failed = int(failed.sum())
    # vLLM's client also records a failed request as 0 output tokens with an empty error
    # text (the stream ended without a token); calibrate validate drops those, and `run`
    # refused the file for them (a QA pass).
    outputs = output_lens.to_numpy(zero_copy_only=False).astype(np.float64)
    empty = ~failed & (outputs == 0)
    num_empty = int(empty.sum())
    if num_failed or num_empty:
        raw.take(~(failed | empty))
    if num_failed:
        notes.append(
            f"dropped {num_failed:,} request{'' if num_failed == 1 else 's'} that failed in "
            "the benchmark (non-empty errors)"
        )
    if num_empty:
        notes.append(
            f"dropped {num_empty:,} request{'' if num_empty == 1 else 's'} with 0 output tokens "
            f"and no error text, which vLLM's bench serve writes for a failed request (the "
            f"first, request {int(np.argmax(empty)) + 1})"
        )
    return raw


def _load(path: Path) -> dict:
    try:
        with open_input(path) as stream:
            text = stream.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceError(
            f"{path.name}: byte {exc.start}: not UTF-8 text, so not a vLLM result JSON file"
        ) from None
    try:
        result = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            raise TraceError(
                f"{path.name}: line {exc.lineno}: a second JSON document follows the first "
                "(several runs saved with --append-result?); split it into one file per run"
            ) from None
        raise TraceError(
            f"{path.name}: line {exc.lineno} column {exc.colno}: not valid JSON "
            f"({exc.msg[:-3] if exc.msg.endswith(' at') else exc.msg})"
        ) from None
    if not isinstance(result, dict):
        raise TraceError(
            f"{path.name}: expected one JSON object as written by `vllm bench serve "
            f"--save-result`, found a JSON {type(result).__name__}"
        )
    return result


def _numbers(path: Path, result: dict, name: str, length: int | None = None) -> pa.Array:
    """One per-request list as a numeric Arrow array (nulls kept), converted in one go."""
    values = result[name]
    if not isinstance(values, list):
        raise TraceError(
            f"{path.name}: field {name}: expected a list with one entry per request, "
            f"got {json.dumps(values)[:40]}"
        )
    if length is not None and len(values) != length:
        raise TraceError(
            f"{path.name}: field {name} has {len(values):,} entries but input_lens has "
            f"{length:,}; expected one per request"
        )
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        array = None
    if array is None or not (
        pa.types.is_integer(array.type)
        or pa.types.is_floating(array.type)
        or pa.types.is_null(array.type)
    ):
        for index, value in enumerate(values):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise TraceError(
                    f"{path.name}: request {index + 1}: field {name}: expected a number, "
                    f"got {json.dumps(value)[:60]}"
                )
        raise TraceError(f"{path.name}: field {name}: expected a list of numbers")
    return array


def _failed(path: Path, result: dict, num_requests: int) -> np.ndarray:
    """Boolean mask of requests whose ``errors`` entry is non-empty text."""
    import pyarrow.compute as pc  # imported here: 0.1 s

    errors = result.get("errors")
    if errors is None:
        return np.zeros(num_requests, dtype=bool)
    if not isinstance(errors, list) or len(errors) != num_requests:
        raise TraceError(
            f"{path.name}: field errors: expected a list with one entry per request "
            f"({num_requests:,})"
        )
    try:
        array = pa.array(errors)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = None
    if array is None or not (pa.types.is_string(array.type) or pa.types.is_null(array.type)):
        index = next(i for i, e in enumerate(errors) if e is not None and not isinstance(e, str))
        raise TraceError(
            f"{path.name}: request {index + 1}: field errors: expected text, "
            f"got {json.dumps(errors[index])[:60]}"
        )
    if pa.types.is_null(array.type):
        return np.zeros(num_requests, dtype=bool)
    failed = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(array)), 0).fill_null(False)
    return failed.to_numpy(zero_copy_only=False)


def _arrivals(
    path: Path,
    result: dict,
    start_times: pa.Array | None,
    num_requests: int,
    options: ImportOptions,
    notes: list[str],
) -> np.ndarray:
    """Arrival seconds: recorded send times, else synthetic (see the module docstring)."""
    max_concurrency = result.get("max_concurrency")
    if start_times is not None:
        if options.arrival is not None:
            notes.append(
                "--rate/--arrival ignored: the file records each request's send time (start_times)"
            )
        if max_concurrency is not None:
            notes.append(
                f"arrivals are the benchmark's send times, after its client-side "
                f"max_concurrency {max_concurrency} limit held requests back"
            )
        return float_values(start_times)

    why = "the file records no per-request send times (start_times)"
    rng = np.random.default_rng(options.seed)
    if options.arrival is not None:
        process = options.arrival
        if process.kind == "piecewise":
            rate_text = f"rates {arrivals.format_rate_profile(process.rate_profile)}"
        else:
            rate_text = f"{process.rate_rps:g} req/s"
        if process.kind != "piecewise" and math.isinf(process.rate_rps):
            # Not "poisson at inf req/s" (a QA pass): every request is sent at 0 s.
            notes.append(f"arrivals are synthetic ({why}): all at 0 s (--rate inf)")
        else:
            notes.append(
                f"arrivals are synthetic ({why}): {process.kind} at {rate_text}"
                + (f", CV {process.cv:g}" if process.kind != "poisson" else "")
                + f", seed {options.seed}"
            )
        return arrivals.arrival_times_s(
            process,
            rng,
            num_requests=num_requests,
            count_from=f"the {num_requests:,} requests of {path.name}",
        )

    ask = "; give --rate (and optionally --arrival, --cv, --seed)"
    if result.get("ramp_up_strategy") is not None:
        raise TraceError(f"{path.name}: {why} and the benchmark ramped its request rate{ask}")
    rate = _positive_number(path, result, "request_rate")
    if rate is None:
        raise TraceError(f"{path.name}: {why} nor a request_rate{ask}")
    limit = (
        f" (the client's max_concurrency {max_concurrency} limit is not reproduced)"
        if max_concurrency is not None
        else ""
    )
    if math.isinf(rate):
        if max_concurrency is not None:
            raise TraceError(
                f"{path.name}: {why}, and the benchmark sent requests as fast as its "
                f"max_concurrency {max_concurrency} limit allowed; replay it as it ran with "
                f"simreplay run --rate inf --max-concurrency {max_concurrency}, or give --rate "
                "(and optionally --arrival, --cv, --seed)"
            )
        notes.append(
            f"all requests arrive at 0 s: {why}, and the benchmark sent them all at once "
            "(request_rate inf)"
        )
        return np.zeros(num_requests)
    burstiness = _positive_number(path, result, "burstiness") or 1.0
    arrival_time_s, shape = client_send_times_s(rate, burstiness, num_requests, rng)
    notes.append(
        f"arrivals are synthetic ({why}): {shape} at the benchmark's request_rate "
        f"{rate:g} req/s, seed {options.seed}{limit}"
    )
    return arrival_time_s


def client_send_times_s(
    rate: float, burstiness: float, num_requests: int, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """Send times (s) as vLLM's bench serve client draws them at ``request_rate`` ``rate``
    (finite) and ``burstiness``, and their description: gamma gaps of shape
    ``burstiness`` (CV 1/sqrt(burstiness); shape 1 is its Poisson process), evenly spaced
    at burstiness inf (``vllm/benchmarks/serve.py``, ``get_request``)."""
    if math.isinf(burstiness):
        return np.arange(1, num_requests + 1) / rate, "evenly spaced arrivals (burstiness inf)"
    if burstiness == 1.0:
        process = arrivals.arrival_process("poisson", rate)
        shape = "a Poisson process"
    else:
        process = arrivals.arrival_process("gamma", rate, cv=1.0 / math.sqrt(burstiness))
        shape = f"gamma inter-arrivals with burstiness {burstiness:g} (CV {process.cv:.3g})"
    return arrivals.arrival_times_s(process, rng, num_requests=num_requests), shape


def _positive_number(path: Path, result: dict, name: str) -> float | None:
    """A run-level number (JSON number or text such as ``"inf"``), None when absent."""
    value = result.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not number > 0:
        raise TraceError(f"{path.name}: field {name}: expected a number > 0, got {value!r}")
    return number
