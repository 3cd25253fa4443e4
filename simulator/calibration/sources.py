"""Readers of measured operator latencies: AIConfigurator's per-op parquet tree and Vidur CSVs.

Both layouts are read into one ``Measurements`` record of flat numpy columns per operator
family, in seconds and elements, so the fitter and ``calibrate check`` never see a file
format.

AIConfigurator layout (NVIDIA AIConfigurator's silicon database, and what ``calibrate
profile`` writes): files are found by name anywhere under the directory, recursively:

    gemm_perf.parquet                  gemm_dtype, m, n, k, latency (ms)
    context_attention_perf.parquet     batch_size, isl, num_heads, num_key_value_heads,
                                       head_dim, kv_cache_dtype, latency (ms); optional
                                       window_size (0 or -1 = full attention)
    generation_attention_perf.parquet  the same columns plus step; the cached context of
                                       each decoded token is isl + step
    custom_allreduce_perf.parquet      num_gpus, message_size (elements), latency (ms);
                                       optional allreduce_dtype, backend / kernel_source
    nccl_perf.parquet                  op_name, num_gpus, message_size, latency (ms);
                                       optional nccl_dtype
    moe_perf.parquet                   num_tokens, hidden_size, inter_size, topk,
                                       num_experts, latency (ms); optional moe_tp_size,
                                       moe_ep_size, moe_dtype, distribution (16-bit,
                                       balanced routing, no expert parallelism are used)

Vidur layout (``profiling/compute/<gpu>/<org>/<model>/mlp.csv``; an optional ``device`` column is
checked as the parquet files' is): the linear layers of one
transformer layer (``attn_pre_proj``, ``attn_post_proj``, ``mlp_up_proj``,
``mlp_down_proj``) become GEMM points with the shapes the file's model columns give.
Its ``profiling/network/<node>/all_reduce.csv`` (NCCL all-reduce by GPU count and bytes)
is read by ``add_vidur_allreduce`` for ``calibrate check`` and ``calibrate fit``, and its
``history/<gpu>_cpu_overheads.csv`` (vLLM V0's per-step host times) by
``add_vidur_host_overheads`` for ``calibrate fit``.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simulator.checks import count, format_number
from simulator.errors import SimreplayError

MS = 1e-3

#: AIConfigurator file name -> operator family.
AICONFIGURATOR_FILES = {
    "gemm_perf.parquet": "gemm",
    "context_attention_perf.parquet": "context_attention",
    "generation_attention_perf.parquet": "generation_attention",
    "custom_allreduce_perf.parquet": "allreduce",
    "nccl_perf.parquet": "nccl",
    "moe_perf.parquet": "moe",
}

_REQUIRED = {
    "gemm": ("m", "n", "k", "latency"),
    "context_attention": (
        "batch_size",
        "isl",
        "num_heads",
        "num_key_value_heads",
        "head_dim",
        "latency",
    ),
    "generation_attention": (
        "batch_size",
        "isl",
        "num_heads",
        "num_key_value_heads",
        "head_dim",
        "step",
        "latency",
    ),
    "allreduce": ("num_gpus", "message_size", "latency"),
    "nccl": ("op_name", "num_gpus", "message_size", "latency"),
    "moe": ("num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "latency"),
}

#: Bytes per element of the dtypes the collective files name.
_DTYPE_BYTES = {
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "fp16": 2,
    "bf16": 2,
    "int8": 1,
    "fp8": 1,
    "float32": 4,
    "float": 4,
}

#: Families the step-time model uses, in report order.
FAMILIES = ("gemm", "context_attention", "generation_attention", "allreduce", "moe")


@dataclass
class Measurements:
    """Measured operator latencies of one GPU, as flat columns per family.

    Attributes
    ----------
    gemm : dict of str to numpy.ndarray
        ``dtype`` (object: ``bfloat16``, ``fp8``, ...), ``m``, ``n``, ``k`` (float64) and
        ``latency_s`` (float64), one entry per measured point.
    context_attention : dict
        ``batch``, ``isl``, ``heads``, ``kv_heads``, ``head_dim``, ``latency_s``: fresh
        prompts of ``isl`` tokens, full attention with a 16-bit KV cache only.
    generation_attention : dict
        ``batch``, ``context``, ``heads``, ``kv_heads``, ``head_dim``, ``latency_s``: one
        new token per sequence reading ``context`` cached tokens.
    allreduce : dict
        ``num_gpus``, ``message_bytes``, ``latency_s``: vLLM's custom all-reduce under
        CUDA graphs where measured, else NCCL all-reduce (``backend`` says which; the NCCL
        rows left out beside custom ones are counted in ``skipped``).
    moe : dict
        ``num_tokens``, ``num_experts``, ``topk``, ``hidden``, ``inter_per_gpu`` (expert
        intermediate size / moe_tp_size), ``latency_s``: one fused MoE layer, 16-bit
        weights, balanced routing, tensor-parallel experts only.
    host : dict
        ``batch_size``, ``tensor_parallel_degree``, ``model``, ``file`` and ``host_s``: vLLM V0's
        per-step host time measured by Vidur (``add_vidur_host_overheads``); not an
        operator family, fitted apart (``fit.fit_vidur_host``).
    files : list of str
        The files read, relative to the directory given.
    engine : str
        Engine and version the files name (e.g. ``vLLM 0.24.0``), or ``unknown``.
    device : str
        The device string of the files (e.g. ``NVIDIA H100 80GB HBM3``), or ``unknown``.
    skipped : dict of str to int
        Rows left out per reason (e.g. sliding-window or FP8-KV attention rows).
    unread_files : list of str
        Parquet and CSV files under the directory that are not operator tables of a known
        name (``gemm_perf (1).parquet``, Vidur's ``attention.csv``), relative to it.
    empty_files : list of str
        Operator tables read that hold no row, relative to the directory.
    notes : list of str
        Other things a reader should be told (a Vidur file without some layer's column).
    """

    gemm: dict[str, np.ndarray] = field(default_factory=dict)
    context_attention: dict[str, np.ndarray] = field(default_factory=dict)
    generation_attention: dict[str, np.ndarray] = field(default_factory=dict)
    allreduce: dict[str, np.ndarray] = field(default_factory=dict)
    moe: dict[str, np.ndarray] = field(default_factory=dict)
    host: dict[str, np.ndarray] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    engine: str = "unknown"
    device: str = "unknown"
    num_moe_rows_read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    unread_files: list[str] = field(default_factory=list)
    empty_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, family: str) -> int:
        """Measured points of ``family`` (0 when absent)."""
        columns = getattr(self, family)
        return int(len(columns["latency_s"])) if columns else 0

    def families(self) -> list[str]:
        """Families with at least one point, in ``FAMILIES`` order."""
        return [name for name in FAMILIES if self.count(name)]


def read_measurements(directory: Path, *, system: str | None = None) -> Measurements:
    """Read every operator measurement under ``directory``, in either supported layout.

    Parameters
    ----------
    directory : Path
        A folder holding AIConfigurator-named parquet files (at any depth) or Vidur's
        ``profiling/compute`` CSVs, or a single such file.
    system : str, optional
        Keep only files whose path has a folder of this name (e.g. ``h100_sxm`` under an
        AIConfigurator tree holding several systems, or ``a40`` under Vidur's tree).

    Returns
    -------
    Measurements

    Raises
    ------
    SimreplayError
        If the path is missing, a file lacks a required column or cannot be read, or
        nothing measurable is found.
    """
    root = Path(directory)
    if not root.exists():
        raise SimreplayError(f"{root}: no such file or directory")
    unreadable: dict[Path, str] = {}
    paths = [root] if root.is_file() else _listed_files(root, unreadable)
    if system is not None:
        # An unreadable folder is listed itself (``_listed_files``): the system folder may be it.
        paths = [
            p
            for p in paths
            if system in _rel(p, root).parts[: None if p in unreadable else -1]
            or root.name == system
        ]
    result = Measurements()
    engines: set[str] = set()
    devices: set[str] = set()
    read_by_digest: dict[str, str] = {}
    copies: list[str] = []
    vidur_rows: Counter = Counter()
    for path in paths:
        if path in unreadable:
            raise SimreplayError(
                f"{path}: cannot read folder: {unreadable[path]}; its measurements would be "
                "left out (make it readable, or give a folder without it)"
            )
        family = AICONFIGURATOR_FILES.get(path.name)
        if (family is not None or path.name == "mlp.csv") and not path.is_file():
            kind = "a folder" if path.is_dir() else "a link to nothing, or not a regular file"
            raise SimreplayError(f"{path}: is {kind}; expected an operator table of that name")
        if path.is_symlink() and not path.exists():
            raise SimreplayError(
                f"{path}: is a link to nothing ({os.readlink(path)}); the folder or file of "
                "measurements it named would be left out (restore its target, or remove it)"
            )
        if family is not None or path.name == "mlp.csv":
            # A run copied twice into one folder (run1/, run2/) counted every point twice
            # in a fit's or check's statistics without a word (QA): read such a copy once.
            digest = _file_digest(path)
            if digest in read_by_digest:
                copies.append(f"{_rel(path, root)} (= {read_by_digest[digest]})")
                continue
            read_by_digest[digest] = str(_rel(path, root))
        if family is not None:
            table = _read_parquet(path)
            if table.num_rows == 0:
                result.empty_files.append(str(_rel(path, root)))
            _check_columns(table.column_names, _REQUIRED[family], path)
            columns = table.to_pydict()
            _check_op_name(columns, family, path)
            # Every row's device, not the first: one file may hold several GPUs' rows.
            devices.update(str(d) for d in set(columns.get("device") or ()) if d is not None)
            if family != "nccl" and "framework" in columns:
                # Every row's engine, not the first: one file may hold several versions' rows.
                versions = columns.get("version") or ["?"] * len(columns["framework"])
                for framework, version in set(zip(columns["framework"], versions, strict=True)):
                    if framework is None:
                        continue
                    name = "vLLM" if str(framework).lower() == "vllm" else str(framework)
                    engines.add(f"{name} {'?' if version is None else version}")
            _ADD[family](result, columns, path)
            result.files.append(str(_rel(path, root)))
        elif path.name == "mlp.csv":
            devices.update(_add_vidur_mlp(result, path, vidur_rows))
            result.files.append(str(_rel(path, root)))
        elif path.suffix.lower() in (".parquet", ".csv"):
            result.unread_files.append(str(_rel(path, root)))
    _prefer_custom_allreduce(result)
    if copies:
        result.notes.append(
            f"{len(copies):,} file{'' if len(copies) == 1 else 's'} not read, byte for byte a "
            f"copy of one read: {'; '.join(copies)}"
        )
    repeated = _repeated_rows(result, vidur_rows)
    if repeated:
        result.notes.append(repeated)
    conflicting = None if vidur_rows else _conflicting_shapes(result)
    if conflicting:
        result.notes.append(conflicting)
    vidur = [f for f in result.files if Path(f).name == "mlp.csv"]
    if vidur and len(vidur) < len(result.files):
        # Both kinds pooled into one grid (QA): Vidur's rows name no device, so another
        # GPU's CSVs went unchecked into the profile, and the two time different kernels.
        aic = [f for f in result.files if Path(f).name != "mlp.csv"]
        raise SimreplayError(
            f"{root}: holds both AIConfigurator operator files ({aic[0]}"
            f"{f' and {len(aic) - 1:,} more' if len(aic) > 1 else ''}) and Vidur's mlp.csv "
            f"({vidur[0]}{f' and {len(vidur) - 1:,} more' if len(vidur) > 1 else ''}): "
            "they time different kernels and Vidur's name no device; give one source's "
            "folder at a time"
        )
    if not result.files:
        raise SimreplayError(
            f"{root}: no operator measurements found (expected files named "
            f"{', '.join(AICONFIGURATOR_FILES)} or Vidur's mlp.csv"
            + (f" under a folder named {system!r}" if system else "")
            + ")"
        )
    result.engine = ", ".join(sorted(engines)) or (
        "Vidur (vLLM V0 kernels, torch)"
        if any(f.endswith("mlp.csv") for f in result.files)
        else "unknown"
    )
    result.device = ", ".join(sorted(devices)) or "unknown"
    return result


def _repeated_rows(result: Measurements, vidur_rows: Counter) -> str | None:
    """A note counting the rows read that repeat an earlier row, or None: the same rows in
    two files that are not byte-identical copies (another compression), or a file with its
    rows repeated, counted each point twice in a fit's and ``check``'s statistics without a
    word (QA). They are kept: the fit is not changed.

    An operator table's row repeats one when its family's every column (shape, dtype and
    latency) is equal; a Vidur ``mlp.csv`` row when every cell is (``vidur_rows``: each
    row's cells -> how often read). Vidur's rounded times meet exactly in different models'
    rows of one shape (376 of A40's GEMM points), which are not repeats.
    """
    if vidur_rows:
        count = sum(times - 1 for times in vidur_rows.values())
        what = "Vidur mlp.csv row" + ("" if count == 1 else "s")
        same = "cells, every one"
        per_family = ""
    else:
        counts = {}
        for family in FAMILIES:
            columns = getattr(result, family)
            if columns:
                rows = list(zip(*(columns[k].tolist() for k in sorted(columns)), strict=True))
                counts[family] = len(rows) - len(set(rows))
        counts = {family: n for family, n in counts.items() if n}
        count = sum(counts.values())
        what = "measured row" + ("" if count == 1 else "s")
        same = "exact shape and latency"
        per_family = " (" + ", ".join(f"{f} {n:,}" for f, n in counts.items()) + ")"
    if not count:
        return None
    return (
        f"{count:,} {what} repeat{'s' if count == 1 else ''} an earlier row's {same}"
        f"{per_family}: kept, so each counts again in the fit and its errors (the same rows in "
        "two files, or rows repeated in one?)"
    )


#: Two latencies of one shape further apart than this ratio are noted (``_conflicting_shapes``).
CONFLICTING_LATENCY_RATIO = 1.1


def _conflicting_shapes(result: Measurements) -> str | None:
    """A note counting the shapes measured more than once whose latencies lie more than
    10 % apart, or None. The fit takes each node's median and ``check`` compares every
    row, so a second run of the same shapes 1.5 times slower moved a GEMM median error to
    -16.7 % without a word (a QA pass); exact repeats are ``_repeated_rows``'. In
    AIConfigurator's data for six GPUs only one shape does (A100 prefill attention).
    """
    counts = {}
    first = None
    for family in FAMILIES:
        columns = getattr(result, family)
        if not columns:
            continue
        keys = [k for k in sorted(columns) if k != "latency_s"]
        low: dict[tuple, float] = {}
        high: dict[tuple, float] = {}
        for *shape, latency in zip(
            *(columns[k].tolist() for k in keys), columns["latency_s"].tolist(), strict=True
        ):
            shape = tuple(shape)
            low[shape] = min(low.get(shape, latency), latency)
            high[shape] = max(high.get(shape, latency), latency)
        far = [k for k in low if high[k] > CONFLICTING_LATENCY_RATIO * low[k]]
        if far:
            counts[family] = len(far)
            if first is None:
                shape = dict(zip(keys, far[0], strict=True))
                text = ", ".join(
                    f"{k} {format_number(v) if isinstance(v, float) else v}"
                    for k, v in shape.items()
                )
                first = f"{family} {text}: {low[far[0]] * 1e3:.4g} and {high[far[0]] * 1e3:.4g} ms"
    if not counts:
        return None
    total = sum(counts.values())
    per_family = ", ".join(f"{f} {n:,}" for f, n in counts.items())
    return (
        f"{total:,} shape{'' if total == 1 else 's'} measured more than once with latencies "
        f"over 10 % apart ({per_family}; first: {first}): the fit takes each shape's median "
        "and check compares every row (two runs of the same shapes in one folder?)"
    )


def _file_digest(path: Path) -> str:
    """SHA-256 of a measurement file's bytes (one that cannot be read is left to the
    reader, which names it)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return f"unreadable:{path}"
    return digest.hexdigest()


def _listed_files(root: Path, unreadable: dict[Path, str]) -> list[Path]:
    """Every file under ``root``, sorted, following links to folders (each real folder
    once, so a link back up is not walked again), plus any non-file entry named as an
    operator table (a folder ``gemm_perf.parquet``, a dangling link), so that it is named
    rather than skipped. ``Path.rglob`` follows no folder links before Python 3.13: a tree
    whose ``gemm`` folder was a link lost every GEMM without a word.

    A folder that cannot be listed is listed itself, and added to ``unreadable`` (mutated:
    folder -> the reason), so that the reader names it; ``os.walk`` skipped it without a
    word and ``check`` and ``fit`` ran on part of the data. A link to nothing is listed
    among the files (``os.walk`` puts it there)."""
    found: list[Path] = []
    seen: set[str] = set()

    def _unreadable(error: OSError) -> None:
        folder = Path(error.filename)
        unreadable[folder] = error.strerror or type(error).__name__
        found.append(folder)

    for folder, dirnames, filenames in os.walk(root, onerror=_unreadable, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        base = Path(folder)
        found.extend(base / name for name in filenames)
        found.extend(
            base / name for name in dirnames if name in AICONFIGURATOR_FILES or name == "mlp.csv"
        )
    return sorted(found)


def _rel(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root) if root.is_dir() else Path(path.name)
    except ValueError:
        return path


def _read_parquet(path: Path) -> pa.Table:
    try:
        # The schema first: a column named twice made pyarrow's reader fail with its own
        # text ("Multiple matches for FieldRef.Name(latency) in framework: string ...").
        _check_unique_columns(pq.read_schema(path).names, path)
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SimreplayError(f"{path}: not a readable parquet file: {reason}") from None


def _check_unique_columns(names: list[str], path: Path) -> None:
    """Refuse a table that names a column more than once (which copy holds the data?)."""
    twice = [name for name, count in Counter(names).items() if count > 1 and name]
    if twice:
        raise SimreplayError(
            f"{path}: column {twice[0]!r}: expected each column once, got it "
            f"{names.count(twice[0])} times"
            + (f" (and {', '.join(map(repr, twice[1:]))} too)" if len(twice) > 1 else "")
        )


def _check_columns(
    names: list[str],
    required: tuple[str, ...],
    path: Path,
    expected: str = "AIConfigurator's {columns}; latency in ms",
) -> None:
    missing = [name for name in required if name not in names]
    if missing:
        what = expected.format(columns=", ".join(required))
        raise SimreplayError(f"{path}: missing column(s) {', '.join(missing)} (expected {what})")


#: The ``op_name`` each family's rows carry, as AIConfigurator and ``calibrate profile``
#: write it (nccl_perf.parquet holds several collectives and is sorted by it instead).
_OP_NAMES = {
    "gemm": "gemm",
    "context_attention": "context_attention",
    "generation_attention": "generation_attention",
    "allreduce": "all_reduce",
    "moe": "moe",
}


def _check_op_name(columns: dict, family: str, path: Path) -> None:
    """Refuse a file whose rows say, in ``op_name``, that they measure another operator
    (generation-attention rows copied as ``context_attention_perf.parquet`` were fitted and
    checked as prefill without a word)."""
    expected = _OP_NAMES.get(family)
    if expected is None or "op_name" not in columns:
        return
    names = Counter(str(v) for v in columns["op_name"] if v is not None)
    other = {name: n for name, n in names.items() if name.lower() != expected}
    if other:
        name, n = min(other.items(), key=lambda item: (-item[1], item[0]))
        raise SimreplayError(
            f"{path}: {n:,} of {len(columns['op_name']):,} rows have op_name {name!r}; "
            f"{path.name} must hold {expected} rows (op_name {expected!r})"
        )


# Errors name a file's rows from 1 (its first row of data), as trace checks and the Vidur
# CSV reader do.

#: Largest value a measured column may hold (sizes, counts, milliseconds): 2 ** 40. Larger
#: ones are corrupt data and would overflow the rooflines.
MAX_COLUMN_VALUE = float(2**40)


def _numeric(values: list, path: Path, column: str, hint: str = "") -> np.ndarray:
    """A column's values as a 1-D float64 array, or one line naming the file and column.

    A column of lists (a list-typed parquet column) is refused too: numpy would make a 2-D
    array of equal-length lists, which broadcasts silently or fails far from the file; so
    is one of booleans, which numpy reads as 1.0 and 0.0 (a boolean latency was checked as
    1 ms and fitted).
    """
    if any(isinstance(value, bool | np.bool_) for value in values):
        raise SimreplayError(f"{path}: column {column!r} must be a number, got booleans{hint}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 1:
        nested = next((v for v in values if isinstance(v, list | tuple | dict)), None)
        got = f", not {type(nested).__name__}s" if nested is not None else ""
        row = None if nested is not None else _first_non_number(values)
        if row is not None:
            raise SimreplayError(
                f"{path}: row {row + 1}: column {column!r} must be a number, got "
                f"{values[row]!r}{hint}"
            )
        raise SimreplayError(
            f"{path}: column {column!r} must be numeric, one number per row{got}{hint}"
        )
    return array


def _first_non_number(values: list) -> int | None:
    """The index of the first value ``float`` cannot read (a string such as "abc"), if any."""
    for row, value in enumerate(values):
        try:
            float(value)
        except (TypeError, ValueError):
            return row
    return None


def _floats(
    values: list, path: Path, column: str, lowest: float = 1.0, *, whole: bool = True
) -> np.ndarray:
    """A numeric column as float64; every value finite and in [lowest, MAX_COLUMN_VALUE]
    (shapes and counts are >= 1 unless ``lowest`` says otherwise), and a whole number unless
    ``whole`` is False (a time): a GEMM of 8.5 rows is corrupt data, which the fit would
    otherwise take as a shape between grid nodes."""
    array = _numeric(values, path, column)
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argmax(bad))
        raise SimreplayError(f"{path}: row {row + 1}: column {column!r} is not a finite number")
    out = (array < lowest) | (array > MAX_COLUMN_VALUE)
    if out.any():
        row = int(np.argmax(out))
        # A latency has no lower bound here (``_latency_s`` says what its least is).
        bounds = (
            f"at most 2**40 ({MAX_COLUMN_VALUE:.4g})"
            if lowest == -math.inf
            else f"from {lowest:g} to 2**40 ({MAX_COLUMN_VALUE:.4g})"
        )
        unit = " ms" if column == "latency" else ""
        raise SimreplayError(
            f"{path}: row {row + 1}: column {column!r} must be {bounds}{unit}, "
            f"got {array[row]:g}{unit}"
        )
    if whole:
        fractional = array != np.floor(array)
        if fractional.any():
            row = int(np.argmax(fractional))
            raise SimreplayError(
                f"{path}: row {row + 1}: column {column!r} must be a whole number (a size or "
                f"count), got {array[row]:g}"
            )
    return array


def _latency_s(columns: dict, path: Path) -> np.ndarray:
    # Any value below 1 ns, negative ones too, gets the one message that names the rule.
    latency_ms = _floats(columns["latency"], path, "latency", lowest=-math.inf, whole=False)
    # No GPU operator call takes under a nanosecond: smaller values are a unit mix-up.
    if (latency_ms < 1e-6).any():
        row = int(np.argmax(latency_ms < 1e-6))
        raise SimreplayError(
            f"{path}: row {row + 1}: latency must be at least 1e-6 ms (1 ns), got "
            f"{latency_ms[row]:g}"
        )
    return latency_ms * MS


def _append(target: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> None:
    for key, values in new.items():
        target[key] = np.concatenate([target[key], values]) if key in target else values


def describe_skipped(skipped: dict[str, int]) -> str:
    """``"12 gemm: float32 rows; 3 ..."``: the non-zero counts of ``Measurements.skipped``,
    by reason ("" when none)."""
    return "; ".join(f"{n:,} {why}" for why, n in sorted(skipped.items()) if n)


def _skip(result: Measurements, reason: str, count: int) -> None:
    if count:
        result.skipped[reason] = result.skipped.get(reason, 0) + int(count)


#: GEMM data types of the 16-bit grid, and of every grid (16-bit and FP8; ``fit.grid_points``).
GEMM_16BIT_DTYPES = ("bfloat16", "float16", "bf16", "fp16")
FITTED_GEMM_DTYPES = (*GEMM_16BIT_DTYPES, "fp8")
#: Every spelling of a 16-bit type the files' dtype columns use (after ``_dtype_name``).
SIXTEEN_BIT_DTYPES = (*GEMM_16BIT_DTYPES, "half")


def _dtype_name(value: object) -> str:
    """A dtype column's value as one spelling: ``BF16`` -> ``bf16``, ``torch.bfloat16`` ->
    ``bfloat16`` (what ``str`` of a torch dtype gives), so a 16-bit row is not skipped as
    another type for its case or prefix."""
    return str(value).strip().lower().removeprefix("torch.")


#: Other spellings of the per-tensor FP8 (E4M3) GEMM AIConfigurator calls ``fp8``: torch's
#: dtype name and its parts (a QA pass: rows of ``float8_e4m3fn`` were skipped "16-bit and
#: FP8 GEMMs are fitted"). Block-scaled ``fp8_block`` is another kernel and stays apart.
_FP8_GEMM_SPELLINGS = frozenset(
    {"float8_e4m3fn", "float8_e4m3fnuz", "float8_e4m3", "fp8_e4m3", "e4m3", "float8"}
)


def _gemm_dtype_name(value: object) -> str:
    """``_dtype_name``, with ``_FP8_GEMM_SPELLINGS`` read as ``fp8``."""
    name = _dtype_name(value)
    return "fp8" if name in _FP8_GEMM_SPELLINGS else name


def _add_gemm(result: Measurements, columns: dict, path: Path) -> None:
    num_rows = len(columns["latency"])
    if columns.get("gemm_dtype") is None:
        # A new-user pass: a file of bf16 and FP8 rows without the column was fitted as one
        # 16-bit grid (p90 92 %), and the only hint was a note on repeated shapes.
        result.notes.append(
            f"{path}: no gemm_dtype column: its {num_rows:,} GEMM rows are read as bfloat16; "
            "a file that also holds FP8 (or other) rows needs the column to tell them apart"
        )
    dtype = [_gemm_dtype_name(d) for d in columns.get("gemm_dtype") or ["bfloat16"] * num_rows]
    for other in sorted(set(dtype) - set(FITTED_GEMM_DTYPES)):
        count = sum(1 for d in dtype if d == other)
        _skip(result, f"gemm: {other} rows (16-bit and FP8 GEMMs are fitted)", count)
    _append(
        result.gemm,
        {
            "dtype": np.asarray(dtype, dtype=object),
            "m": _floats(columns["m"], path, "m"),
            "n": _floats(columns["n"], path, "n"),
            "k": _floats(columns["k"], path, "k"),
            "latency_s": _latency_s(columns, path),
        },
    )


def _attention_keep(result: Measurements, columns: dict, family: str, path: Path) -> np.ndarray:
    num_rows = len(columns["latency"])
    keep = np.ones(num_rows, dtype=bool)
    if "kv_cache_dtype" not in columns and num_rows:
        # As for GEMMs' gemm_dtype (a QA pass: FP8-KV rows were pooled with 16-bit ones).
        # A file without window_size gets no note: AIConfigurator's vLLM 0.14 collection
        # (A100) has none and holds full attention only.
        result.notes.append(
            f"{path}: no kv_cache_dtype column: its {num_rows:,} {family} rows are read "
            "with a 16-bit KV cache; a file that also holds FP8-cache rows needs the column "
            "to tell them apart"
        )
    if "window_size" in columns:
        window = _numeric(columns["window_size"], path, "window_size", " (0 = full attention)")
        if not np.isfinite(window).all():
            row = int(np.argmax(~np.isfinite(window)))
            raise SimreplayError(
                f"{path}: row {row + 1}: column 'window_size' is not a finite number "
                "(0 = full attention)"
            )
        # AIConfigurator writes 0 for full attention; flash-attn and vLLM's kernels take -1.
        sliding = window > 0
        _skip(result, f"{family}: sliding-window rows", int((sliding & keep).sum()))
        keep &= ~sliding
    if "kv_cache_dtype" in columns:
        kv_dtypes = np.asarray([_dtype_name(d) for d in columns["kv_cache_dtype"]], dtype=object)
        kv16 = np.isin(kv_dtypes, (*SIXTEEN_BIT_DTYPES, "auto"))
        for other in sorted(set(kv_dtypes[~kv16 & keep].tolist())):
            label = "FP8" if "8" in other else other
            count = int(((kv_dtypes == other) & keep).sum())
            _skip(result, f"{family}: {label} KV-cache rows", count)
        keep &= kv16
    if "attn_dtype" in columns:
        # The attention's compute dtype: the step model prices 16-bit attention (a QA pass:
        # rows of 'int4' were fitted as 16-bit without a word). Every shipped row is bf16.
        attn_dtypes = np.asarray([_dtype_name(d) for d in columns["attn_dtype"]], dtype=object)
        attn16 = np.isin(attn_dtypes, SIXTEEN_BIT_DTYPES)
        for other in sorted(set(attn_dtypes[~attn16 & keep].tolist())):
            count = int(((attn_dtypes == other) & keep).sum())
            _skip(result, f"{family}: {other} attention rows (16-bit attention is fitted)", count)
        keep &= attn16
    return keep


def _attention_heads(columns: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Query and KV heads per row; a row of more KV heads than query heads (none can have
    them: each KV head serves one or more query heads) is refused, as swapped columns."""
    heads = _floats(columns["num_heads"], path, "num_heads")
    kv_heads = _floats(columns["num_key_value_heads"], path, "num_key_value_heads")
    if (kv_heads > heads).any():
        row = int(np.argmax(kv_heads > heads))
        raise SimreplayError(
            f"{path}: row {row + 1}: num_key_value_heads {kv_heads[row]:g} is more than "
            f"num_heads {heads[row]:g} (each KV head serves one or more query heads; are the "
            "two columns swapped?)"
        )
    return heads, kv_heads


def _add_context_attention(result: Measurements, columns: dict, path: Path) -> None:
    keep = _attention_keep(result, columns, "context_attention", path)
    heads, kv_heads = _attention_heads(columns, path)
    _append(
        result.context_attention,
        {
            "batch": _floats(columns["batch_size"], path, "batch_size")[keep],
            "isl": _floats(columns["isl"], path, "isl")[keep],
            "heads": heads[keep],
            "kv_heads": kv_heads[keep],
            "head_dim": _floats(columns["head_dim"], path, "head_dim")[keep],
            "latency_s": _latency_s(columns, path)[keep],
        },
    )


def _add_generation_attention(result: Measurements, columns: dict, path: Path) -> None:
    keep = _attention_keep(result, columns, "generation_attention", path)
    heads, kv_heads = _attention_heads(columns, path)
    context = _floats(columns["isl"], path, "isl") + _floats(
        columns["step"], path, "step", lowest=0.0
    )
    _append(
        result.generation_attention,
        {
            "batch": _floats(columns["batch_size"], path, "batch_size")[keep],
            "context": context[keep],
            "heads": heads[keep],
            "kv_heads": kv_heads[keep],
            "head_dim": _floats(columns["head_dim"], path, "head_dim")[keep],
            "latency_s": _latency_s(columns, path)[keep],
        },
    )


def _collective(
    result: Measurements,
    columns: dict,
    path: Path,
    keep: np.ndarray,
    dtype_column: str,
    backend: np.ndarray,
) -> None:
    dtypes = columns.get(dtype_column) or ["bfloat16"] * len(columns["latency"])
    try:
        elem_bytes = np.asarray([_DTYPE_BYTES[_dtype_name(d)] for d in dtypes], dtype=np.float64)
    except KeyError as exc:
        raise SimreplayError(
            f"{path}: column {dtype_column!r}: unknown dtype {exc.args[0]!r} "
            f"(known: {', '.join(_DTYPE_BYTES)})"
        ) from None
    message_bytes = _floats(columns["message_size"], path, "message_size") * elem_bytes
    _append(
        result.allreduce,
        {
            # An all-reduce needs two GPUs; a 1-GPU row has no ring to time (its roofline is 0).
            "num_gpus": _floats(columns["num_gpus"], path, "num_gpus", lowest=2.0)[keep],
            "message_bytes": message_bytes[keep],
            "latency_s": _latency_s(columns, path)[keep],
            "backend": backend[keep],
        },
    )


def _add_custom_allreduce(result: Measurements, columns: dict, path: Path) -> None:
    num_rows = len(columns["latency"])
    labels = columns.get("backend") or columns.get("kernel_source") or ["graph"] * num_rows
    # vLLM captures decode steps in CUDA graphs; eager timings include launch overhead the
    # engine does not pay, so only the graph rows are used when a file has both.
    is_graph = np.asarray(["graph" in str(label).lower() for label in labels], dtype=bool)
    is_eager = np.asarray(["eager" in str(label).lower() for label in labels], dtype=bool)
    unknown = ~is_graph & ~is_eager
    if unknown.any():
        # Rows of a mode it cannot tell were mixed in with the graph rows, or used alone,
        # without a word (a QA pass: all-reduce p90 0.0 -> 87.7 %).
        column = "backend" if columns.get("backend") else "kernel_source"
        first = labels[int(np.flatnonzero(unknown)[0])]
        raise SimreplayError(
            f"{path}: column {column}: expected labels naming CUDA-graph or eager mode "
            f"(AIConfigurator's vllm_graph, vllm_eager), got {first!r} on "
            f"{count(int(unknown.sum()), 'row')}; drop the column if every row was timed in "
            "a CUDA graph"
        )
    keep = is_graph if is_graph.any() else np.ones(num_rows, dtype=bool)
    _skip(result, "allreduce: eager-mode rows (graph rows used)", int((~keep).sum()))
    if not is_graph.any():
        result.notes.append(
            f"{path}: every all-reduce row was timed in eager mode (no CUDA-graph rows): "
            "used as they are, though vLLM runs decode steps in CUDA graphs, without the "
            "launch overhead eager timings include"
        )
    backend = np.asarray(["vllm_custom_graph"] * num_rows, dtype=object)
    _collective(result, columns, path, keep, "allreduce_dtype", backend)


def _add_nccl(result: Measurements, columns: dict, path: Path) -> None:
    num_rows = len(columns["latency"])
    keep = np.asarray([str(op) == "all_reduce" for op in columns["op_name"]], dtype=bool)
    _skip(result, "nccl: rows of other collectives (all_reduce is used)", int((~keep).sum()))
    if "nccl_dtype" in columns:
        is16 = np.asarray(
            [_dtype_name(d) in SIXTEEN_BIT_DTYPES for d in columns["nccl_dtype"]], dtype=bool
        )
        _skip(result, "nccl: all-reduce rows not in a 16-bit dtype", int((keep & ~is16).sum()))
        keep &= is16
    backend = np.asarray(["nccl"] * num_rows, dtype=object)
    _collective(result, columns, path, keep, "nccl_dtype", backend)


def _prefer_custom_allreduce(result: Measurements) -> None:
    """Where vLLM's custom all-reduce was measured, leave out (and count) the NCCL
    all-reduce rows: the engine uses the custom kernel wherever it applies."""
    columns = result.allreduce
    if not columns:
        return
    custom = columns["backend"] == "vllm_custom_graph"
    if custom.any() and not custom.all():
        _skip(
            result,
            "allreduce: NCCL rows (custom all-reduce measured, used instead)",
            int((~custom).sum()),
        )
        result.allreduce = {key: values[custom] for key, values in columns.items()}


#: MoE columns that tell rows apart, and what a file without one is read as.
_MOE_FILTERS = {
    "moe_dtype": "16-bit",
    "distribution": "balanced routing",
    "moe_ep_size": "without expert parallelism",
    "moe_tp_size": "at TP 1",
}


def _add_moe(result: Measurements, columns: dict, path: Path) -> None:
    num_rows = len(columns["latency"])
    result.num_moe_rows_read += num_rows
    keep = np.ones(num_rows, dtype=bool)
    missing = [name for name in _MOE_FILTERS if name not in columns]
    if missing and num_rows:
        # As for GEMMs' gemm_dtype (a QA pass: a file without moe_dtype had its quantised
        # rows fitted as 16-bit ones, median error 38.6 %, without a word).
        result.notes.append(
            f"{path}: no {', '.join(missing)} column{'' if len(missing) == 1 else 's'}: its "
            f"{num_rows:,} MoE rows are read as "
            f"{', '.join(_MOE_FILTERS[name] for name in missing)}; a file that also holds "
            "other rows needs the column to tell them apart"
        )
    if "moe_dtype" in columns:
        is16 = np.asarray(
            [_dtype_name(d) in SIXTEEN_BIT_DTYPES for d in columns["moe_dtype"]], dtype=bool
        )
        _skip(result, "moe: quantised rows", int((~is16).sum()))
        keep &= is16
    if "distribution" in columns:
        # AIConfigurator writes balanced, power_law_1.01 and power_law_1.2; any spelling of
        # balanced is balanced, and a routing it never writes is named rather than counted
        # as skewed (a QA pass: "Balanced" and "uniform" read as 6,360 skewed rows).
        labels = [str(d).strip().lower() for d in columns["distribution"]]
        balanced = np.asarray([label == "balanced" for label in labels], dtype=bool)
        skewed = np.asarray([label.startswith("power_law") for label in labels], dtype=bool)
        _skip(result, "moe: skewed-routing rows", int((keep & skewed).sum()))
        other = keep & ~balanced & ~skewed
        if other.any():
            first = columns["distribution"][int(np.flatnonzero(other)[0])]
            _skip(
                result,
                f"moe: rows of another routing than balanced or power_law (first: {first!r})",
                int(other.sum()),
            )
        keep &= balanced
    if "moe_ep_size" in columns:
        no_ep = _floats(columns["moe_ep_size"], path, "moe_ep_size") == 1
        _skip(result, "moe: expert-parallel rows", int((keep & ~no_ep).sum()))
        keep &= no_ep
    tp = (
        _floats(columns["moe_tp_size"], path, "moe_tp_size")
        if "moe_tp_size" in columns
        else np.ones(num_rows)
    )
    _append(
        result.moe,
        {
            "num_tokens": _floats(columns["num_tokens"], path, "num_tokens")[keep],
            "num_experts": _floats(columns["num_experts"], path, "num_experts")[keep],
            "topk": _floats(columns["topk"], path, "topk")[keep],
            "hidden": _floats(columns["hidden_size"], path, "hidden_size")[keep],
            "inter_per_gpu": (_floats(columns["inter_size"], path, "inter_size") / tp)[keep],
            "latency_s": _latency_s(columns, path)[keep],
        },
    )


_ADD = {
    "gemm": _add_gemm,
    "context_attention": _add_context_attention,
    "generation_attention": _add_generation_attention,
    "allreduce": _add_custom_allreduce,
    "nccl": _add_nccl,
    "moe": _add_moe,
}

# --- Vidur ---------------------------------------------------------------------------------
_VIDUR_REQUIRED = (
    "n_head",
    "n_kv_head",
    "n_embd",
    "n_expanded_embd",
    "use_gated_mlp",
    "num_tokens",
    "num_tensor_parallel_workers",
)
_VIDUR_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")


#: The model-shape columns ``vidur_gemm_shape`` reads as numbers.
_VIDUR_SHAPE = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "num_tensor_parallel_workers")


def _first_not_float(row: dict[str, str], names: tuple[str, ...]) -> str:
    """The first of ``names`` whose cell in ``row`` is not a number (for an error)."""
    for name in names:
        try:
            float(row[name])
        except ValueError:
            return name
    return names[0]


def vidur_gemm_shape(op: str, row: dict[str, str]) -> tuple[float, float]:
    """``(n, k)`` of a Vidur linear operator for one ``mlp.csv`` row (per TP rank)."""
    heads = float(row["n_head"])
    kv_heads = float(row["n_kv_head"])
    hidden = float(row["n_embd"])
    ffn = float(row["n_expanded_embd"])
    tp = float(row["num_tensor_parallel_workers"])
    head_dim = hidden / heads
    gated = str(row["use_gated_mlp"]).strip().lower() == "true"
    if op == "attn_pre_proj":
        return (heads / tp + 2.0 * max(kv_heads / tp, 1.0)) * head_dim, hidden
    if op == "attn_post_proj":
        return hidden, heads / tp * head_dim
    if op == "mlp_up_proj":
        return (2.0 if gated else 1.0) * ffn / tp, hidden
    return hidden, ffn / tp


def _add_vidur_mlp(result: Measurements, path: Path, seen: Counter) -> set[str]:
    """Add a Vidur ``mlp.csv``'s linear layers to ``result.gemm``; return the device names
    of its optional ``device`` column (Vidur's own files have none). ``seen`` (mutated)
    counts each row's cells, names and values stripped, to find rows read twice."""
    rows = _read_vidur_csv(path, "Vidur's per-operator timings")
    seen.update(tuple(sorted((k, v.strip()) for k, v in row.items())) for row in rows)
    header = list(rows[0])
    _check_columns(
        header,
        _VIDUR_REQUIRED,
        path,
        "Vidur's {columns} and time_stats.<op>.median in ms",
    )
    points: dict[str, list[float]] = {"m": [], "n": [], "k": [], "latency_s": []}
    present = [op for op in _VIDUR_OPS if f"time_stats.{op}.median" in header]
    absent = [op for op in _VIDUR_OPS if op not in present]
    if present and absent:
        # Vidur's own files time every one of these: one missing is said, not passed over.
        result.notes.append(
            f"{path}: no time_stats.<op>.median column for {', '.join(absent)}: "
            f"{'that layer is' if len(absent) == 1 else 'those layers are'} not read"
        )
    for row_idx, row in enumerate(rows):
        if row["use_gated_mlp"].strip().lower() not in ("true", "false"):
            raise SimreplayError(
                f"{path}: row {row_idx + 1}: use_gated_mlp must be True or False, "
                f"got {row['use_gated_mlp']!r}"
            )
        for op in _VIDUR_OPS:
            column = f"time_stats.{op}.median"
            if column not in row:
                continue
            if row[column].strip() == "":
                _skip(result, "gemm: Vidur cells without a time (blank median)", 1)
                continue
            try:
                latency_ms = float(row[column])
                m = float(row["num_tokens"])
                n, k = vidur_gemm_shape(op, row)
            except ValueError:
                name = _first_not_float(row, (column, "num_tokens", *_VIDUR_SHAPE))
                raise SimreplayError(
                    f"{path}: row {row_idx + 1}: column {name!r} must be a number, "
                    f"got {row[name].strip()!r}"
                ) from None
            except ZeroDivisionError:
                raise SimreplayError(
                    f"{path}: row {row_idx + 1}: n_head and num_tensor_parallel_workers must be "
                    f"at least 1, got {row['n_head'].strip()} and "
                    f"{row['num_tensor_parallel_workers'].strip()}"
                ) from None
            if not all(math.isfinite(v) and 1 <= v <= MAX_COLUMN_VALUE for v in (m, n, k)):
                raise SimreplayError(
                    f"{path}: row {row_idx + 1}: num_tokens and the model shape columns must "
                    f"give a GEMM of 1 to 2**40 per side, got m={m:g}, n={n:g}, k={k:g}"
                )
            if m != math.floor(m):
                raise SimreplayError(
                    f"{path}: row {row_idx + 1}: num_tokens must be a whole number, got {m:g}"
                )
            if math.isinf(latency_ms):
                raise SimreplayError(
                    f"{path}: row {row_idx + 1}: {column} is not a finite number of ms, got "
                    f"{row[column].strip()}"
                )
            if latency_ms < 0:
                # A negative time is corrupt data, refused as AIConfigurator's latency is;
                # a zero or NaN median is an operator Vidur did not time, skipped and counted.
                raise SimreplayError(
                    f"{path}: row {row_idx + 1}: {column} must be a time in ms of at least 0, "
                    f"got {row[column].strip()}"
                )
            if latency_ms > MAX_COLUMN_VALUE:
                # The bound AIConfigurator's latency has (``_floats``): a 1e300 median was
                # checked as a time (rc 0).
                raise SimreplayError(
                    f"{path}: row {row_idx + 1}: column {column!r} must be at most 2**40 "
                    f"({MAX_COLUMN_VALUE:.4g}) ms, got {latency_ms:g} ms"
                )
            if not (math.isfinite(latency_ms) and latency_ms > 0):
                _skip(result, "gemm: Vidur rows without a time (median 0 or NaN)", 1)
                continue
            points["m"].append(m)
            points["n"].append(n)
            points["k"].append(k)
            points["latency_s"].append(latency_ms * MS)
    if not points["m"] and present:
        raise SimreplayError(
            f"{path}: every time_stats.<op>.median cell is blank, 0 or NaN "
            f"({', '.join(present)}): no operator has a time"
        )
    if not points["m"]:
        raise SimreplayError(f"{path}: no time_stats.<op>.median column for {_VIDUR_OPS}")
    new = {key: np.asarray(values, dtype=np.float64) for key, values in points.items()}
    new["dtype"] = np.asarray(["bfloat16"] * len(points["m"]), dtype=object)
    _append(result.gemm, new)
    return {row["device"].strip() for row in rows if row.get("device", "").strip()}


# --- device strings -------------------------------------------------------------------------

#: The device names each catalog GPU reports (``nvidia-smi``, ``torch.cuda.get_device_name``,
#: ``rocm-smi``) beside its catalog name and aliases. A device string is that GPU only if its
#: words are exactly one of these names' (``device_gpu``): extra words name another part
#: (``NVIDIA H100 NVL``, ``NVIDIA H800``) or a slice of one (``MIG 3g.40gb``).
DEVICE_NAMES = {
    "A100-40GB-SXM": ("NVIDIA A100-SXM4-40GB",),
    "A100-80GB-SXM": ("NVIDIA A100-SXM4-80GB",),
    "A100-40GB-PCIe": ("NVIDIA A100-PCIE-40GB",),
    "A100-80GB-PCIe": ("NVIDIA A100 80GB PCIe",),
    "H100-SXM": ("NVIDIA H100 80GB HBM3",),
    "H100-PCIe": ("NVIDIA H100 PCIe",),
    "H200": ("NVIDIA H200",),
    "B200": ("NVIDIA B200",),
    "GB200": ("NVIDIA GB200",),
    "L40S": ("NVIDIA L40S",),
    "L4": ("NVIDIA L4",),
    "A10G": ("NVIDIA A10G",),
    "A40": ("NVIDIA A40",),
    "RTX-4090": ("NVIDIA GeForce RTX 4090",),
    "RTX-PRO-6000": (
        "NVIDIA RTX PRO 6000 Blackwell Server Edition",
        "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
    ),
    "MI300X": ("AMD Instinct MI300X",),
}

#: Vendor words a device string may carry or not (``NVIDIA H200`` and ``H200`` are one GPU).
_VENDOR_WORDS = frozenset({"nvidia", "amd"})
#: Words of a processor's name (``AMD EPYC 7763 64-Core Processor``, ``Intel(R) Xeon(R)
#: ...``: what ``calibrate profile --device cpu`` writes), and of a GPU's.
_CPU_WORDS = frozenset(
    {"cpu", "xeon", "epyc", "ryzen", "threadripper", "opteron", "core", "intel", "apple"}
    | {"processor", "x86", "x86_64", "aarch64", "arm64", "neoverse", "graviton", "power9"}
)
_GPU_WORDS = frozenset({"nvidia", "geforce", "tesla", "quadro", "rtx", "radeon", "instinct", "gpu"})


def _device_words(text: str) -> frozenset[str]:
    words = re.split(r"[^0-9a-z]+", text.lower())
    return frozenset(w for w in words if w and w not in _VENDOR_WORDS)


def _build_device_lookup() -> dict[frozenset[str], str]:
    from simulator.hardware import GPUS

    lookup: dict[frozenset[str], str] = {}
    for name, spec in GPUS.items():
        for written in (name, *spec.aliases, *DEVICE_NAMES.get(name, ())):
            words = _device_words(written)
            if lookup.setdefault(words, name) != name:
                raise ValueError(f"device name {written!r} names {lookup[words]} and {name}")
    return lookup


_DEVICE_LOOKUP: dict[frozenset[str], str] = {}


def _names_processor(words: frozenset[str]) -> bool:
    return bool(words & _CPU_WORDS) and not words & _GPU_WORDS


def is_unchecked_device(device: str) -> bool:
    """Whether a ``device`` value names no GPU: empty, ``unknown``, or a processor
    (``cpu``, ``AMD EPYC 7763 64-Core Processor``), whose files are not checked against
    ``--gpu``."""
    words = _device_words(device)
    return not words or words == {"unknown"} or _names_processor(words)


def is_cpu_device(devices: str) -> bool:
    """Whether every value of ``devices`` (``Measurements.device``: comma-joined) names a
    processor (``cpu``, ``AMD EPYC 7763 64-Core Processor``, what ``calibrate profile
    --device cpu`` writes); False for ``unknown`` or any GPU."""
    names = [d for d in devices.split(", ") if d]
    return bool(names) and all(_names_processor(_device_words(d)) for d in names)


def device_gpu(device: str) -> str | None:
    """The catalog GPU a ``device`` value is, or None when it is no catalog GPU.

    The value's words, less ``NVIDIA`` / ``AMD`` and case and punctuation, must be exactly
    those of the GPU's catalog name, an alias, or a name the GPU reports (``DEVICE_NAMES``):
    ``NVIDIA H100 80GB HBM3`` is H100-SXM, ``NVIDIA H100 PCIe`` H100-PCIe, ``H200`` H200;
    ``NVIDIA H20``, ``NVIDIA H100 NVL``, ``NVIDIA A800-SXM4-80GB`` and a MIG slice
    (``NVIDIA A100-SXM4-80GB MIG 3g.40gb``) are none.
    """
    if not _DEVICE_LOOKUP:
        _DEVICE_LOOKUP.update(_build_device_lookup())
    return _DEVICE_LOOKUP.get(_device_words(device))


def device_mismatch(device: str, gpu: str) -> str | None:
    """Why files whose ``device`` column says ``device`` are not ``gpu``'s measurements
    (None: they are, or the value names no GPU, ``is_unchecked_device``)."""
    if is_unchecked_device(device):
        return None
    found = device_gpu(device)
    if found == gpu:
        return None
    if found is not None:
        return f"they are {found}'s"
    words = re.split(r"[^0-9a-z.]+", device.lower())
    if "mig" in words:
        whole = re.split(r"(?i)\s*\bMIG\b", device)[0].strip()
        return (
            f"a MIG slice of {whole or 'a GPU'} has a fraction of the GPU's compute and "
            "memory, and is no catalog GPU"
        )
    return "that device is no catalog GPU (simreplay hardware list)"


def check_devices(devices: str, gpu: str, source: Path, command: str = "fit") -> None:
    """Refuse measurements whose ``device`` values (``Measurements.device``: comma-joined)
    are not ``gpu``, or are several GPUs; values that name no GPU (``is_unchecked_device``)
    are not checked.

    A device is ``gpu`` only if it is one of the names ``gpu`` goes by (``device_gpu``):
    ``NVIDIA H20`` is not H200, ``NVIDIA H100 NVL`` not H100-SXM, a MIG slice not its
    GPU. A profile fitted from another device's files under ``gpu``'s name would be taken
    by every run on ``gpu`` as its own measurements. ``command`` (``fit`` or ``check``) is
    the one the error advises to run under the files' GPU, where the catalog has it.
    """
    from simulator.calibration.select import NEAREST, UNCALIBRATED

    checked = [d for d in devices.split(", ") if d and not is_unchecked_device(d)]
    found = {d: device_gpu(d) for d in checked}
    if len({g or d for d, g in found.items()}) > 1:
        raise SimreplayError(
            f"{source}: the files were measured on several GPUs ({', '.join(checked)}); "
            "give the folder of one GPU's measurements"
        )
    for device, owner in found.items():
        if owner == gpu:
            continue
        if owner is not None:
            runs = (
                f"runs on {gpu} borrow measured GPUs' profiles scaled to {gpu}'s peaks"
                if NEAREST.get(gpu)
                # No measured relative (MI300X): nothing is borrowed, whatever is fitted.
                else f"runs on {gpu} use the {UNCALIBRATED}"
            )
            raise SimreplayError(
                f"{source}: the files were measured on {device}, not {gpu}: "
                f"{'check' if command == 'check' else 'fit'} them as --gpu {owner}; {runs}"
            )
        own = DEVICE_NAMES.get(gpu, ())
        names = f" (whose files say {' or '.join(own)})" if own else ""
        raise SimreplayError(
            f"{source}: the files were measured on {device}, not {gpu}{names}: "
            f"{device_mismatch(device, gpu)}; {command} reads only files of the --gpu itself"
        )


# --- Vidur's network collectives -----------------------------------------------------------

#: Vidur's ``profiling/network/<node>/`` folders whose all-reduce is a catalog GPU's: DGX
#: nodes, eight SXM GPUs on NVSwitch. Its ``*_pairwise_nvlink`` nodes (GPUs bridged in
#: pairs, PCIe between the pairs) are no catalog GPU's interconnect and are not read.
VIDUR_NETWORK_SYSTEMS = {"a100_dgx": "A100-80GB-SXM", "h100_dgx": "H100-SXM"}

_VIDUR_ALLREDUCE = (
    "time_stats.all_reduce.median",
    "num_workers",
    "size",
    "devices_per_node",
)


def vidur_folder(root: Path, name: str) -> Path | None:
    """The ``name`` folder (``network``, ``history``) of a Vidur tree given as its root,
    its ``profiling/`` or that folder itself; None when there is none."""
    root = Path(root)
    for candidate in (root / "profiling" / name, root / name, root):
        if candidate.name == name and candidate.is_dir():
            return candidate
    return None


def add_vidur_allreduce(root: Path, gpu: str, result: Measurements) -> dict[str, str]:
    """Add the all-reduce timings of ``gpu``'s Vidur node (``VIDUR_NETWORK_SYSTEMS``) to
    ``result.allreduce``; return the other network files under ``root``, each with why it
    was not read.

    Vidur's ``all_reduce.csv`` (``vidur/profiling/collectives``): NCCL all-reduce of
    ``size`` bytes (fp16 elements x 2) over ``num_workers`` GPUs, ``devices_per_node`` of
    them in one node, eager (no CUDA graph), the NCCL kernels' time in ms
    (``time_stats.all_reduce.median``). Rows spanning nodes (``devices_per_node`` below
    ``num_workers``: InfiniBand, which a TP group never crosses) are skipped and counted.
    """
    network = vidur_folder(root, "network")
    if network is None:
        return {}
    base = Path(root)
    not_read: dict[str, str] = {}
    for path in sorted(network.rglob("*.csv")):
        rel = str(_rel(path, base))
        node = path.parent.name
        if _node_gpu(node) != gpu:
            continue  # another GPU's node, left out as its compute folder is
        if path.name != "all_reduce.csv":
            not_read[rel] = "not an all-reduce (point-to-point sends: no grid uses them)"
            continue
        owner = VIDUR_NETWORK_SYSTEMS.get(node)
        if owner != gpu:
            not_read[rel] = (
                f"{owner}'s node, not {gpu}'s"
                if owner is not None
                else "GPUs bridged in pairs, PCIe between pairs: no catalog GPU's interconnect"
                if node.endswith("_pairwise_nvlink")
                else "a node of no catalog GPU"
            )
            continue
        _add_vidur_allreduce_file(result, path)
        result.files.append(rel)
    return not_read


def _node_gpu(node: str) -> str | None:
    """The catalog GPU of a Vidur network node's folder (``a100_pairwise_nvlink``: the
    A100 its name starts with), or None."""
    from simulator.hardware import get_gpu

    if node in VIDUR_NETWORK_SYSTEMS:
        return VIDUR_NETWORK_SYSTEMS[node]
    try:
        return get_gpu(node.split("_")[0]).name
    except SimreplayError:
        return None


def _read_vidur_csv(path: Path, expected: str) -> list[dict[str, str]]:
    """The rows of one of Vidur's CSVs (comma, tab or semicolon separated, as the header
    shows: a spreadsheet saving in a locale with decimal commas writes semicolons; names
    stripped: " n_head" names n_head), or one line naming the file: not readable, no rows
    (``expected`` says what it should hold), a column named twice in the header (each row
    kept the last copy's value without a word), or a row with more or fewer fields than
    the header."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = handle.readline()
            handle.seek(0)
            delimiter = next((d for d in (",", "\t", ";") if d in header), ",")
            reader = csv.DictReader(handle, delimiter=delimiter)
            if reader.fieldnames is not None:
                reader.fieldnames = [name.strip() for name in reader.fieldnames]
                _check_unique_columns(reader.fieldnames, path)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SimreplayError(f"{path}: cannot read CSV: {exc}") from None
    if not rows:
        raise SimreplayError(f"{path}: no rows (expected {expected})")
    for row_idx, row in enumerate(rows):
        if None in row or None in row.values():
            raise SimreplayError(
                f"{path}: row {row_idx + 1}: {'more' if None in row else 'fewer'} fields than "
                "the header (a truncated or malformed line)"
            )
    return rows


def _add_vidur_allreduce_file(result: Measurements, path: Path) -> None:
    rows = _read_vidur_csv(
        path, f"Vidur's {', '.join(_VIDUR_ALLREDUCE)}: time in ms, size in bytes"
    )
    _check_columns(
        list(rows[0]),
        _VIDUR_ALLREDUCE,
        path,
        "Vidur's {columns}: time in ms, size in bytes",
    )
    if "collective" in rows[0]:
        other = [r for r in rows if str(r["collective"]).strip() != "all_reduce"]
        _skip(result, "allreduce: Vidur rows of other collectives", len(other))
        rows = [r for r in rows if str(r["collective"]).strip() == "all_reduce"]
    columns = {name: [r[name] for r in rows] for name in _VIDUR_ALLREDUCE}
    gpus = _floats(columns["num_workers"], path, "num_workers")
    per_node = _floats(columns["devices_per_node"], path, "devices_per_node")
    size = _floats(columns["size"], path, "size")
    latency_ms = _floats(
        columns["time_stats.all_reduce.median"],
        path,
        "time_stats.all_reduce.median",
        lowest=1e-6,
        whole=False,
    )
    one_node = per_node >= gpus
    _skip(result, "allreduce: Vidur rows across nodes (InfiniBand)", int((~one_node).sum()))
    too_few = one_node & (gpus < 2)
    _skip(result, "allreduce: Vidur rows of 1 GPU", int(too_few.sum()))
    keep = one_node & ~too_few
    _append(
        result.allreduce,
        {
            "num_gpus": gpus[keep],
            "message_bytes": size[keep],
            "latency_s": latency_ms[keep] * MS,
            "backend": np.asarray(["nccl_eager"] * int(keep.sum()), dtype=object),
        },
    )


# --- Vidur's vLLM host overheads ----------------------------------------------------------

#: The per-step host phases of vLLM V0 that Vidur's ``history/<gpu>_cpu_overheads.csv``
#: times (medians, ms) and that lie on a step's critical path in vLLM v0.6, whose V0
#: scheduler ``--scheduler vllm-v0`` follows: the scheduler, building the model's inputs
#: and sampling (launch to result). ``model_execution_*`` is the GPU's step. Vidur's
#: ``process_model_outputs`` (detokenisation, stop checks: 0.07 ms + 15 us per sequence on
#: A100) is left out: v0.6 processes a step's outputs while the next step runs (async
#: output processing, on by default), off the critical path.
VIDUR_HOST_PHASES = (
    "schedule_median",
    "prepare_inputs_e2e_median",
    "sampler_e2e_median",
)

_VIDUR_HOST_COLUMNS = (*VIDUR_HOST_PHASES, "batch_size", "tensor_parallel_degree")

#: The suffix of Vidur's host-overhead files; the prefix names the GPU (``a100``, ``a40``).
VIDUR_HOST_SUFFIX = "_cpu_overheads.csv"


def add_vidur_host_overheads(root: Path, gpu: str, result: Measurements) -> dict[str, str]:
    """Add ``gpu``'s vLLM V0 host overheads from a Vidur tree's
    ``history/<gpu>_cpu_overheads.csv`` to ``result.host``; return the tree's other history
    files of ``gpu``, each with why it was not read.

    ``result.host`` gets, per row: ``batch_size`` (sequences in the step),
    ``tensor_parallel_degree``, ``model`` and ``file`` (object: the path relative to
    ``root``) and ``host_s``, the sum of the ``VIDUR_HOST_PHASES`` medians in seconds.
    The file is not added to ``result.files``, the files the grids are fitted from.
    Vidur measured vLLM V0 before v0.6; summed without output processing, which v0.6
    overlaps with the next step, these are v0.6's serial host times, not vLLM V1's.

    Raises
    ------
    SimreplayError
        One line naming the file and column: unreadable, no rows, a missing column, or a
        value that is not a number (times: finite and >= 0 ms; batch size and TP degree:
        whole numbers >= 1).
    """
    history = vidur_folder(root, "history")
    if history is None:
        return {}
    base = Path(root)
    not_read: dict[str, str] = {}
    for path in sorted(history.glob("*.csv")):
        if _node_gpu(path.name.split("_")[0]) != gpu:
            continue  # another GPU's file, left out as its compute folder is
        rel = str(_rel(path, base))
        if not path.name.endswith(VIDUR_HOST_SUFFIX):
            not_read[rel] = (
                "an older attention profile of one model, not fitted (its kernels are "
                "not vLLM's current ones; benchmarks/calibration_step_level.py compares "
                "the step model with it)"
                if "attention" in path.name
                else f"not a host-overhead file (*{VIDUR_HOST_SUFFIX})"
            )
            continue
        _add_vidur_host_file(result, path, rel)
    return not_read


def _add_vidur_host_file(result: Measurements, path: Path, rel: str) -> None:
    rows = _read_vidur_csv(path, f"Vidur's {', '.join(_VIDUR_HOST_COLUMNS)}: times in ms")
    _check_columns(
        list(rows[0]),
        _VIDUR_HOST_COLUMNS,
        path,
        "Vidur's {columns}: times in ms",
    )
    columns = {name: [r[name] for r in rows] for name in _VIDUR_HOST_COLUMNS}
    host_ms = np.zeros(len(rows))
    for name in VIDUR_HOST_PHASES:
        host_ms += _floats(columns[name], path, name, lowest=0.0, whole=False)
    model = [str(r.get("model_name") or "").strip() for r in rows]
    _append(
        result.host,
        {
            "batch_size": _floats(columns["batch_size"], path, "batch_size"),
            "tensor_parallel_degree": _floats(
                columns["tensor_parallel_degree"], path, "tensor_parallel_degree"
            ),
            "model": np.asarray(model, dtype=object),
            "host_s": host_ms * MS,
            "file": np.asarray([rel] * len(rows), dtype=object),
        },
    )


# --- folders of one's own, one per GPU ----------------------------------------------------


def gpu_subfolder(source: Path, gpu: str) -> tuple[str | None, list[str]]:
    """Of a folder whose subfolders are named for different GPUs (``mine/h200_sxm/``,
    ``mine/l4/``: one's own measurements, not a published tree's system folders), the one
    of ``gpu`` and the others, which are left out; ``(None, [])`` when the subfolders name
    fewer than two GPUs or the folder is a published tree (``fit.find_system`` reads those).

    A subfolder names a GPU when its name is one of the names the GPU goes by, case,
    ``_`` and ``-`` aside (``device_gpu``: ``h200_sxm``, ``a100_40gb``, ``l4``). Read whole,
    such a folder merged every GPU's files (``check mine --gpu H200`` took the L4's too).

    Raises
    ------
    SimreplayError
        When no subfolder, or several, are ``gpu``'s.
    """
    from simulator.calibration.select import AICONFIGURATOR_SYSTEMS, VIDUR_SYSTEMS

    source = Path(source)
    if not source.is_dir():
        return None, []
    folders = sorted(p.name for p in source.iterdir() if p.is_dir())
    if any(f in AICONFIGURATOR_SYSTEMS or f in VIDUR_SYSTEMS for f in folders):
        return None, []
    named = {f: g for f in folders if (g := device_gpu(f)) is not None}
    if len(set(named.values())) < 2:
        return None, []
    match = [f for f, g in named.items() if g == gpu]
    if not match:
        have = ", ".join(f"{f}/ ({g})" for f, g in named.items())
        raise SimreplayError(
            f"{source}: its folders hold other GPUs' measurements ({have}), none of {gpu}: "
            f"give the folder of {gpu}'s measurements, or read each under its own --gpu"
        )
    if len(match) > 1:
        raise SimreplayError(
            f"{source}: several folders hold {gpu}'s measurements ({', '.join(match)}); "
            "give one of them"
        )
    return match[0], [f for f in named if f != match[0]]
