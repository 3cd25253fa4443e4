"""Files in and out: every output is written to a temporary file and renamed into place.

A crash, a kill or a failed check therefore never leaves a partial output behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from simulator.errors import SimreplayError, TraceError

#: Parquet options fixed so that the same table gives the same bytes on every run.
#: zstd level 1 over byte-stream-split numbers is ~4x faster to write than dictionary
#: encoding + zstd 3 on 10M-row traces, and smaller (72 vs 83 MB; benchmarks/import_csv.py).
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1, "write_statistics": True}


def _encodings(schema: pa.Schema) -> dict[str, list[str]]:
    """Dictionary pages for text, byte-stream-split for fixed-width numbers, per column."""
    numeric = [
        f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
    ]
    # Request ids are unique: a dictionary would only be built to be thrown away.
    text = [
        f.name
        for f in schema
        if (pa.types.is_string(f.type) or pa.types.is_dictionary(f.type)) and f.name != "request_id"
    ]
    return {"use_dictionary": text, "use_byte_stream_split": numeric}


def output_file(
    out: str,
    option: str,
    what: str = "a file name",
    in_folder: Callable[[Path], Path] | None = None,
) -> Path:
    """Where the file option ``option`` (``-o``) writes, checked before any work is done.

    ``out`` is the text given, not a ``Path``: ``Path`` turns ``""`` into the current folder
    and drops a trailing slash. An empty name is an error (not the current folder); a name
    ending in a slash must be an existing folder (it used to become a file of that name).
    An existing folder gets ``in_folder(folder)`` when that is given, else is an error.
    """
    if not out.strip():
        raise SimreplayError(f"{option}: give {what}, not an empty name")
    path = Path(out)
    if in_folder is not None and path.is_dir():
        return check_output_path(in_folder(path))
    if out.endswith(("/", os.sep)) and not path.is_dir():
        if in_folder is None:  # no folder is taken: making it would not help (a new-user pass)
            raise SimreplayError(f"{out}: names a folder; give {what}")
        raise SimreplayError(f"{out}: output folder does not exist")
    return check_output_path(path)


def output_folder(out: str, option: str | None) -> Path:
    """The folder the option ``option`` (``--out``) writes into, checked before any work.

    It may not exist yet (the command creates it) but its parent must; an empty name is an
    error, not the current folder. With ``option`` None (the Python API) messages name the
    folder alone.
    """
    name = out if option is None else f"{option} {out}"
    if not out.strip():
        raise SimreplayError(f"{option or 'output folder'}: give a folder, not an empty name")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise SimreplayError(f"{name}: exists and is not a directory")
    if not path.parent.is_dir():
        raise SimreplayError(f"{name}: parent {_missing_folder_text(path.parent)}")
    writable = path if path.exists() else path.parent
    if not os.access(writable, os.W_OK):
        raise SimreplayError(f"{name}: {writable} is not writable")
    if not path.exists():
        # Permissions alone do not say (root, /proc, a read-only mount): make it and take
        # it away again, so that a run fails here and not after its work.
        try:
            path.mkdir()
            path.rmdir()
        except OSError as exc:
            raise SimreplayError(f"{name}: cannot create it ({exc.strerror})") from None
    return path


def _missing_folder_text(folder: Path) -> str:
    """Why ``folder`` cannot hold a file: it is missing, or it is something else."""
    if folder.exists():
        return f"{folder} is not a directory"
    return f"directory {folder} is missing"


def refuse_overwriting_input(output: Path, inputs: list[Path], what: str) -> None:
    """Fail when ``output`` is one of ``inputs`` (also through a link): the command would
    replace a source it read, a raw log included, with its own output.

    ``what`` says what the input is to the command (``"the trace being imported"``).
    """
    if not output.exists():
        return
    for source in inputs:
        if Path(source).exists() and output.samefile(source):
            raise SimreplayError(
                f"-o {output}: is {what}; give another name (the command would replace it)"
            )


def check_output_path(path: Path) -> Path:
    """Fail early, before any work, when ``path`` cannot be written; return where to write.

    A symbolic link is followed: its target is written (the writers rename a temporary
    file onto the path they are given, which would otherwise replace the link itself). A
    device, named pipe or socket is refused: renaming a file onto it would replace it
    (``-o /dev/null`` run as root removed the device).
    """
    path = Path(path)
    try:
        # Through any link, as given: a pipe behind /dev/stdout has no path to resolve to
        # (a QA pass: "-o /dev/stdout" named /proc/<pid>/fd/pipe:[...]).
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None:
        kind = next((name for test, name in _SPECIAL_FILES if test(mode)), None)
        if kind is not None:
            raise SimreplayError(f"{path}: is {kind}, not a file to write; give a file name")
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        if parent.exists():
            raise SimreplayError(f"{path}: {parent} is not a directory")
        raise SimreplayError(f"{path}: output directory {parent} does not exist")
    if path.is_dir():
        raise SimreplayError(f"{path}: is a directory; give a file name")
    # The atomic writers create a temporary file beside ``path``: the folder must be writable.
    if not os.access(parent, os.W_OK):
        raise SimreplayError(f"{path}: output directory {parent} is not writable")
    # Permissions alone do not say (root, /proc, a read-only mount): create a file there
    # and take it away again, so that a command fails here and not after its work (a fit
    # of a minute ended with "-o /proc/x.json: cannot write it").
    try:
        _probe_writable(parent)
    except OSError as exc:
        raise SimreplayError(
            f"{path}: cannot create a file in {parent} ({exc.strerror or exc})"
        ) from None
    return path


#: Prefix of ``_probe_writable``'s named file, where an unnamed one cannot be made.
PROBE_PREFIX = ".simreplay-probe-"


def _probe_writable(folder: Path) -> None:
    """Create a file in ``folder`` and take it away again; OSError when it cannot be made.

    Linux's ``O_TMPFILE`` makes a file with no name, which a kill cannot leave behind (a
    QA pass found a named probe left in a sweep's rows/ by a SIGKILL); a file system
    without it gets a named one (``PROBE_PREFIX``), removed at once."""
    flag = getattr(os, "O_TMPFILE", 0)
    if flag:
        try:
            os.close(os.open(folder, flag | os.O_WRONLY, 0o600))
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    tempfile.NamedTemporaryFile(dir=folder, prefix=PROBE_PREFIX).close()


#: What a path that is not a regular file is, for messages.
_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def check_input_file(
    path: Path,
    what: str = "a file",
    label: str | None = None,
    error: type[SimreplayError] = SimreplayError,
) -> None:
    """Fail, with one line, unless ``path`` is an existing regular file.

    A named pipe would block the read until something writes to it (forever, typed by
    mistake), and a device may never end; a folder cannot be read as a file.

    Parameters
    ----------
    path : Path
        The file to read.
    what : str
        What it should be, for the message (``"a trace file"``).
    label : str, optional
        How the message names it (``"--calibration p.json"``); ``path`` by default.
    error : type
        The ``SimreplayError`` subclass to raise.
    """
    name = str(path) if label is None else label
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise error(f"{name}: is a directory, not {what}")
    kind = next((kind for test, kind in _SPECIAL_FILES if test(mode)), None)
    if kind is not None:
        raise error(f"{name}: is {kind}, not {what}; save it to a regular file first")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    On any exception (or KeyboardInterrupt) the temporary file is removed and ``path`` is
    left as it was. Temporaries a killed process left beside ``path`` are removed first
    (``remove_orphaned_temporaries``).
    """
    path = check_output_path(path)
    tmp = temporary_path(path)
    remove_orphaned_temporaries(path)
    try:
        with _named_errors(path, tmp):
            yield tmp
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_together(
    writers: Sequence[tuple[Path, Callable[[Path], None]]], stale: Sequence[Path] = ()
) -> None:
    """Write several files as one: each ``write(temporary)`` beside its path, then all of
    them put in place together, and the ``stale`` files (an earlier run's that would
    contradict the new ones) removed in the same step.

    All or none: an error or interrupt while writing (a disk that fills on the last file),
    or a rename refused part way (an immutable or foreign-owned file), leaves every path as
    it was, never one run's requests beside another's summary. Ctrl-C and SIGTERM arriving
    while the files are put in place take effect once that is done.
    """
    paths = [check_output_path(path) for path, _ in writers]
    temporaries = [temporary_path(path) for path in paths]
    for path in paths:
        remove_orphaned_temporaries(path)
    try:
        for (_, write), tmp, path in zip(writers, temporaries, paths, strict=True):
            with _named_errors(path, tmp):
                write(tmp)
        with _signals_deferred():
            _put_in_place(list(zip(temporaries, paths, strict=True)), list(stale))
    finally:
        for tmp in temporaries:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _put_in_place(moves: list[tuple[Path, Path]], stale: list[Path]) -> None:
    """Rename each temporary onto its path and remove ``stale``, or change nothing.

    Every existing target and stale file is first moved aside (``.NAME.PID.old``); a
    rename that fails puts back what was moved and removes what was placed, then raises
    the one-line error for that file. The files moved aside are removed at the end."""
    targets = [path for _, path in moves]
    targets += [path for path in stale if path not in targets]
    aside: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for path in targets:
            if os.path.lexists(path):
                backup = path.with_name(f".{path.name}.{os.getpid()}.old")
                with _named_errors(path, backup):
                    os.replace(path, backup)
                aside.append((path, backup))
        for tmp, path in moves:
            with _named_errors(path, tmp):
                os.replace(tmp, path)
            placed.append(path)
    except BaseException:
        for path in placed:
            with contextlib.suppress(OSError):
                path.unlink()
        for path, backup in reversed(aside):
            with contextlib.suppress(OSError):
                os.replace(backup, path)
        raise
    for _, backup in aside:
        with contextlib.suppress(OSError):
            backup.unlink()


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM for the block (a few renames): their handlers run after it,
    so an interrupt never lands between two renames. Only in the main thread, the one
    Python runs signal handlers in; elsewhere the block runs as is."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, _frame: received.append(signum))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for signum in received[:1]:
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)


@contextlib.contextmanager
def _named_errors(path: Path, tmp: Path) -> Iterator[None]:
    """Permissions, a full or read-only disk, a folder that takes no new files: one line
    for the file asked for, not its temporary."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or ["?"])[0]
        reason = reason.replace(str(tmp), str(path))
        raise SimreplayError(f"{path}: cannot write it: {reason}") from None


def temporary_path(path: Path) -> Path:
    """The hidden temporary this process writes ``path`` through: ``.NAME.PID.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_orphaned_temporaries(path: Path) -> None:
    """Remove ``.NAME.PID.tmp`` files or folders beside ``path``, and ``.NAME.PID.old``
    files (``write_together``'s), whose process has ended (a write killed part way: SIGKILL
    runs no cleanup). Others' are left alone."""
    import shutil

    try:
        candidates = [
            *path.parent.glob(f".{path.name}.*.tmp"),
            *path.parent.glob(f".{path.name}.*.old"),
        ]
    except OSError:
        return
    for candidate in candidates:
        pid_text = candidate.name[len(path.name) + 2 : -len(candidate.suffix)]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _running(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (on this machine: a folder on a shared disk may hold
    another machine's temporaries, which are then kept while a local pid matches)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` as parquet, atomically and deterministically."""
    with atomic_path(path) as tmp:
        write_parquet_to(table, tmp)


def write_parquet_to(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` as parquet, deterministically (not atomically: for the
    temporary of ``atomic_path`` or ``write_together``)."""
    pq.write_table(table, path, **PARQUET_OPTIONS, **_encodings(table.schema))


def write_text_atomic(text: str, path: Path) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        write_text_to(text, tmp)


def write_text_to(text: str, path: Path) -> None:
    """Write ``text`` (UTF-8) to ``path`` (not atomically: see ``write_parquet_to``)."""
    path.write_text(text, encoding="utf-8")


def read_parquet(path: Path) -> pa.Table:
    """Read a whole parquet file; a truncated or corrupt file is a one-line error.

    ``ParquetFile.read`` rather than ``pq.read_table``: the latter goes through
    ``pyarrow.dataset``, whose import (with ``pyarrow.compute``) costs 0.1 s of every
    command on a 2-core machine; a single file needs neither.
    """
    try:
        with pq.ParquetFile(path) as parquet_file:
            return parquet_file.read()
    except (pa.ArrowException, OSError) as exc:
        raise unreadable_parquet(path, exc) from None


def unreadable_parquet(path: Path, exc: Exception) -> TraceError:
    """The one-line error for a parquet file that pyarrow cannot read."""
    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
    return TraceError(
        f"{Path(path).name}: not a readable parquet file (truncated or corrupt?): {reason}"
    )
