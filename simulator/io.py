"""Files in and out: every output is written to a temporary file and renamed into place.

A crash, a kill or a failed check therefore never leaves a partial output behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from simulator.errors import SimreplayError, TraceError

#: Parquet options fixed so that the same table gives the same bytes on every run.
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "write_statistics": True}


def check_output_path(path: Path) -> Path:
    """Fail early, before any work, when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SimreplayError(f"{path}: output directory {parent} does not exist")
    if path.is_dir():
        raise SimreplayError(f"{path}: is a directory; give a file name")
    return path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    On any exception (or KeyboardInterrupt) the temporary file is removed and ``path`` is
    left as it was.
    """
    path = check_output_path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` as parquet, atomically and deterministically."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)


def read_parquet(path: Path) -> pa.Table:
    """Read a whole parquet file; a truncated or corrupt file is a one-line error."""
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise unreadable_parquet(path, exc) from None


def unreadable_parquet(path: Path, exc: Exception) -> TraceError:
    """The one-line error for a parquet file that pyarrow cannot read."""
    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
    return TraceError(
        f"{Path(path).name}: not a readable parquet file (truncated or corrupt?): {reason}"
    )
