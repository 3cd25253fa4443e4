"""The sweep's result store: a parquet dataset, one file per finished scenario.

Layout of ``--out DIR``::

    DIR/sweep.json                 what the rows mean: store format, SLO (written first);
                                   the scenarios sweeps were asked for (below)
    DIR/.sweep.lock                held by the sweep writing rows (one at a time)
    DIR/rows/<key>.parquet         one row: the scenario's knobs, status, metrics

Each row file is written to a temporary name and renamed into place (``simulator.io``), so
a file is either absent or complete; a sweep killed at any point leaves at most hidden
``.*.tmp`` files, which the next run removes. A scenario is done exactly when its file
exists, so a restarted sweep skips it, and no scenario can have two rows: the file name is
the scenario's key.

The key is the SHA-256 of the scenario's knobs (as coerced to their types), the trace's
*content* hash (SHA-256 of the file's bytes: a trace moved or touched keeps its results, a
trace rewritten with other requests does not), and the simreplay build
(``simulator.fingerprint.build_id``: the version and a hash of the package's sources and
shipped calibration profiles, so an upgrade that changes results never serves old rows).
Each row records its build; a sweep into a store holding rows of another build (or of one
from before builds were recorded) is refused, as a changed trace is: the old and new rows
of one scenario would show as duplicates. A ``--model`` that names a ``config.json`` and a
``--calibration`` profile count by content too (their SHA-256 joins the key and the row),
and a sweep whose file of that name changed since the store's rows were simulated from it
is refused the same way.

``sweep.json`` is ``{"kind": "simreplay-sweep", "format_version": 1, "slo": TEXT or null,
"planned_scenario_keys": {BUILD: [KEY, ...]}}``. ``planned_scenario_keys`` records, per
simreplay build (a key holds the build, so another build's keys are never its rows),
the keys of every scenario a sweep into ``DIR`` was asked for, sorted. A sweep adds its
keys once its inputs are checked, before it simulates anything (under the lock), so several
sweeps into one folder (a grid extended later) leave the union. A planned key without a row
file is a scenario not simulated yet: its sweep was stopped or is still running
(``ResultStore.planned``). A store written before this field existed has none, and then
nothing is said about scenarios it lacks; simreplay versions that do not know the field
read the store as before. ``"planned_scenario_traces": {BUILD: {TRACE: {SHA256: [KEY, ...]}}}``
records the trace (as typed) and its content each key was planned with: a sweep of a trace
whose content changed before the earlier content's scenarios were simulated drops those
keys from the record (they can never be finished), and says so.

Row columns (``sweep show --json`` prints the same names):

| column | type | meaning |
|---|---|---|
| each knob (`gpus`, `tp`, ..., `rate_scale`, `trace`) | its type | as given; null: default |
| `scenario_key` | string | the key above (hex) |
| `trace_sha256` | string | content hash of the trace file |
| `status` | string | `ok`, or `infeasible` (cannot be resolved: weights do not fit, ...) |
| `reason` | string | why infeasible; if ok, why requests were rejected (null: none was) |
| `gpu_type`, `num_gpus` | string, int64 | the GPU catalog name and count |
| `tp_used`, `num_replicas` | int64 | the TP degree used (chosen when `tp` is null) and replicas |
| `cost_per_hour_usd` | float64 | catalog price x GPUs |
| `step_time_source` | string | where step times came from (roofline or a calibration) |
| `num_requests`, `num_completed`, `num_rejected`, `num_preemptions` | int64 | counts |
| `makespan_s`, `throughput_rps`, `output_tokens_per_s` | float64 | totals |
| `{ttft,tpot,itl,e2e,queue}_{mean,p50,p90,p95,p99,max}_ms` | float64 | latency statistics |
| `kv_peak_fraction`, `kv_mean_fraction` | float64 | KV cache use |
| `prefix_cache_hit_rate` | float64 | summary's `prefix_cache.hit_rate`; null with caching off |
| `backlog_at_last_arrival` | int64 | requests arrived before the last one, not started then |
| `backlog` | string | `overloaded`, `burst` (sent within 1 s, unscaled, as `plan`), or null |
| `num_rejected_capacity` | int64 | rejected requests the asked context admits (KV too small) |
| `slo` | string | the SLO the row was judged against; null without one |
| `slo_met` | bool | every bound met; null without an SLO or when infeasible |
| `slo_attainment`, `goodput_rps` | float64 | share of requests meeting every bound; their rate |
| `simreplay_build` | string | the build that simulated the row (null: before builds were kept) |
| `model_sha256` | string | content hash of the `model`'s config.json (null: a catalog model) |
| `calibration_sha256` | string | content hash of the `calibration` file (null: none given) |
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from simulator.errors import SimreplayError
from simulator.fingerprint import build_id
from simulator.io import PROBE_PREFIX, atomic_path, output_folder, write_text_atomic
from simulator.sweep.spec import knob_types

STORE_FORMAT_VERSION = 1
#: ``sweep.json``'s record of the scenarios asked for: simreplay build -> sorted keys.
PLANNED_FIELD = "planned_scenario_keys"
#: ``sweep.json``'s record of the trace each planned key was asked for with: simreplay
#: build -> trace path -> trace content SHA-256 -> sorted keys.
PLANNED_TRACES_FIELD = "planned_scenario_traces"
#: The lock a sweep holds on its ``--out`` while it writes rows (``ResultStore.writing``).
LOCK_NAME = ".sweep.lock"
#: Temporary files of ``sweep.json``'s atomic writes (``simulator.io.atomic_path``): a kill
#: between the write and the rename leaves one (all such writes hold the lock).
MANIFEST_TMP_GLOB = ".sweep.json.*.tmp"
#: What ``simreplay report DIR`` writes into a store (``report.run_page.REPORT_FILE`` and
#: ``PLOTS_DIR``) and the ``plan.json`` it reads there (``report.sweep_page.PLAN_FILE``):
#: the store's own, not another program's files, when ``sweep.json`` was lost.
REPORT_NAMES = ("report.html", "plots", "plan.json")
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2e", "queue")
LATENCY_STATS = ("mean", "p50", "p90", "p95", "p99", "max")

#: Result columns after the knobs: name -> arrow type.
RESULT_COLUMNS: dict[str, pa.DataType] = {
    "scenario_key": pa.string(),
    "trace_sha256": pa.string(),
    "status": pa.string(),
    "reason": pa.string(),
    "gpu_type": pa.string(),
    "num_gpus": pa.int64(),
    "tp_used": pa.int64(),
    "num_replicas": pa.int64(),
    "cost_per_hour_usd": pa.float64(),
    "step_time_source": pa.string(),
    "num_requests": pa.int64(),
    "num_completed": pa.int64(),
    "num_rejected": pa.int64(),
    "num_preemptions": pa.int64(),
    "makespan_s": pa.float64(),
    "throughput_rps": pa.float64(),
    "output_tokens_per_s": pa.float64(),
    **{f"{m}_{s}_ms": pa.float64() for m in LATENCY_METRICS for s in LATENCY_STATS},
    "kv_peak_fraction": pa.float64(),
    "kv_mean_fraction": pa.float64(),
    "prefix_cache_hit_rate": pa.float64(),
    "backlog_at_last_arrival": pa.int64(),
    "backlog": pa.string(),
    "num_rejected_capacity": pa.int64(),
    "slo": pa.string(),
    "slo_met": pa.bool_(),
    "slo_attainment": pa.float64(),
    "goodput_rps": pa.float64(),
    "simreplay_build": pa.string(),
    "model_sha256": pa.string(),
    "calibration_sha256": pa.string(),
}

#: Knobs that may name a file whose content decides a scenario's results (besides the
#: trace): the row column holding its SHA-256 is ``<knob>_sha256``.
FILE_KNOBS = ("model", "calibration")


def _arrow_type(kind: Any) -> pa.DataType:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = args[0] if len(args) == 1 else str
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}.get(kind, pa.string())


@functools.cache
def row_schema() -> pa.Schema:
    """The schema of every row file: knob columns, then ``RESULT_COLUMNS`` (built once)."""
    knobs = [pa.field(name, _arrow_type(kind)) for name, kind in knob_types().items()]
    results = [pa.field(name, kind) for name, kind in RESULT_COLUMNS.items()]
    return pa.schema(
        knobs + results,
        metadata={
            b"simreplay.kind": b"sweep-row",
            b"simreplay.format_version": str(STORE_FORMAT_VERSION).encode(),
        },
    )


_ROW_FILE_OPTIONS = {
    "compression": "none",
    "use_dictionary": False,
    "write_statistics": False,
    # A CRC of each page, checked on every read (``_row_format``, ``_open_row``): without it
    # one flipped bit in a stored value read back as another number (a p99 of 353 ms for 177).
    "write_page_checksum": True,
}


def _row_format() -> Any:
    """The dataset format that reads row files checking their pages' CRCs (files from
    builds that wrote none are read unchecked)."""
    import pyarrow.dataset as ds

    options = ds.ParquetFragmentScanOptions(page_checksum_verification=True)
    return ds.ParquetFileFormat(default_fragment_scan_options=options)


def _open_row(path: Path | str) -> pq.ParquetFile:
    """One row file, its pages' CRCs checked as they are read."""
    return pq.ParquetFile(path, page_checksum_verification=True)


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def knob_file(knob: str, value: Any) -> Path | None:
    """The file a ``FILE_KNOBS`` value names, None when it names none (a catalog model, no
    ``--calibration``): a model's ``config.json`` (the path, or one in the folder), as
    ``models.get_model`` reads it; a calibration profile's path."""
    if knob not in FILE_KNOBS or not isinstance(value, str) or not value:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if knob == "model" and (path / "config.json").is_file():
        return path / "config.json"
    return None


def scenario_key(
    knobs: dict[str, Any], trace_sha256: str, file_sha256: dict[str, str] | None = None
) -> str:
    """The stable key of a scenario: knobs (trace path excluded) + trace content + build,
    and the content of each knob's file (``file_sha256``: knob -> SHA-256), if any."""
    payload = {k: v for k, v in sorted(knobs.items()) if k != "trace"}
    payload["trace_sha256"] = trace_sha256
    if file_sha256:
        payload["knob_files_sha256"] = dict(sorted(file_sha256.items()))
    payload["simreplay_build"] = build_id()
    text = json.dumps(payload, sort_keys=True, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Planned:
    """How much of what sweeps into a store were asked for is stored (``ResultStore.planned``)."""

    num_planned: int
    num_stored: int

    @property
    def num_missing(self) -> int:
        """Planned scenarios with no row yet."""
        return self.num_planned - self.num_stored


@dataclass(frozen=True)
class StoredRows:
    """What ``ResultStore.scan`` found: keys of readable rows, trace path -> content hashes
    of their rows, the row files that cannot be read, build -> number of rows (None: rows
    from before builds were recorded), and (knob, file) -> content hashes of their rows
    (``FILE_KNOBS``)."""

    keys: set[str]
    traces: dict[str, set[str]]
    unreadable: list[Path]
    builds: dict[str | None, int]
    knob_files: dict[tuple[str, str], set[str]]


class ResultStore:
    """Rows of one sweep under ``root``; see the module docstring for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.rows_dir = self.root / "rows"
        #: Set by ``prepare`` when ``sweep.json`` was missing beside rows this sweep can
        #: keep: ``create`` writes it again.
        self.rebuilt_manifest = False

    def _check_kinds(self) -> None:
        """Refuse a ``sweep.json`` that is not a file or a ``rows`` that is not a folder
        (``show`` said "no rows yet" of a file named rows, the rerun "File exists")."""
        for path, what in ((self.root / "sweep.json", "file"), (self.rows_dir, "folder")):
            if path.exists() and not (path.is_file() if what == "file" else path.is_dir()):
                raise SimreplayError(f"{path}: not a {what}; remove it or use another --out")

    def _rows_slo(self, slo: str | None) -> tuple[bool, str | None]:
        """Whether every file in ``rows/`` is a row file judged against ``slo`` (the same
        bounds), so that a lost ``sweep.json`` can be written again from this command; and
        the rows' own words for those bounds (``slo`` when they differ among the rows)."""
        files = self._row_files()
        others = [p for p in self.rows_dir.iterdir() if not p.name.startswith(".")]
        if not files or len(files) != len(others):
            return False, slo
        import pyarrow.dataset as ds

        try:
            stored = ds.dataset(files, schema=row_schema(), format=_row_format()).to_table(["slo"])
        except (pa.ArrowException, OSError):
            return False, slo
        texts = set(stored.column("slo").to_pylist())
        if stored.num_rows != len(files) or not all(_same_slo(t, slo) for t in texts):
            return False, slo
        return True, texts.pop() if len(texts) == 1 else slo

    def prepare(self, slo: str | None) -> str | None:
        """Check ``root`` can hold this sweep; writes nothing (``create`` does).

        Returns the SLO text the sweep's rows carry: the store's own when ``slo`` says the
        same in other words (``2000.0`` for ``2000``, bounds in another order), else ``slo``.

        Raises
        ------
        SimreplayError
            When ``root`` is a file, its parent is missing, it holds files but no sweep (the
            output of ``simreplay run``, say), or it holds rows judged against another SLO
            (their ``slo_met`` would mean something else).
        """
        self.rebuilt_manifest = False
        output_folder(str(self.root), "--out")
        self._check_kinds()
        manifest = self.read_manifest()
        if manifest is None and self.root.is_dir():
            # A killed first run leaves nothing, an empty rows/, or the manifest's temporary
            # file (a SIGKILL before its rename): resumable, not another program's files.
            foreign = sorted(
                p.name
                for p in self.root.iterdir()
                if p.name not in ("rows", LOCK_NAME, *REPORT_NAMES)
                and not p.match(MANIFEST_TMP_GLOB)
            )
            rows = any(self.rows_dir.iterdir() if self.rows_dir.is_dir() else ())
            keep, rows_slo = self._rows_slo(slo) if rows and not foreign else (False, slo)
            if keep:
                # sweep.json lost (deleted, or removed as the damaged-manifest line says):
                # it holds only the SLO and the planned keys, so this run writes it again.
                self.rebuilt_manifest = True
                slo = rows_slo
            elif foreign or rows:
                shown = ", ".join((foreign or ["rows/"])[:3])
                raise SimreplayError(
                    f"--out {self.root}: holds other files ({shown}) and no sweep.json; "
                    "give a new or empty folder"
                    + (
                        " (rows/ holds files that are not rows judged against this --slo; if "
                        "sweep.json was lost, rerun the sweep's command with its own --slo to "
                        "write it again)"
                        if not foreign
                        else ""
                    )
                )
        if manifest is not None and _same_slo(manifest.get("slo"), slo):
            slo = manifest.get("slo")
        if manifest is not None and manifest.get("slo") != slo:
            raise SimreplayError(
                f"--out {self.root} holds a sweep run with {_slo_words(manifest.get('slo'))}; "
                f"this one has {_slo_words(slo)}: use another --out or the same --slo"
            )
        self.check_compatible()
        return slo

    @contextlib.contextmanager
    def writing(
        self, slo: str | None, unreadable: Iterable[Path] = (), planned: Iterable[str] = ()
    ) -> Iterator[None]:
        """Hold the store's lock while rows are written; ``create`` it under the lock.

        Two sweeps into one folder at once each simulated every missing scenario, and the
        second one's ``create`` removed the first one's temporary row files mid-write. The
        lock is an ``flock`` on ``DIR/.sweep.lock``: the system releases it when its holder
        dies, even by SIGKILL. Where there is no ``fcntl`` (Windows) nothing is locked.

        Raises
        ------
        SimreplayError
            When another process holds the lock.
        """
        with self.locked():
            self.create(slo, unreadable, planned)
            yield

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (``writing``) without creating anything else.

        A sweep checks the store (``prepare``, ``scan``) again under it: checked before, two
        sweeps with other SLOs started together on a new folder both passed, and the first
        ``create`` kept its SLO for the other's rows too.

        Raises
        ------
        SimreplayError
            When another process holds the lock.
        """
        try:
            self.root.mkdir(exist_ok=True)
        except OSError as exc:
            raise SimreplayError(f"--out {self.root}: cannot create: {_os_reason(exc)}") from None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        lock = self.root / LOCK_NAME
        try:
            # Unbuffered: a full disk fails the write here, not again in a close (an error
            # naming no file).
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            reason = _os_reason(exc)
            raise SimreplayError(f"{lock}: cannot open the sweep's lock: {reason}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise SimreplayError(
                    f"--out {self.root}: another sweep (pid {holder}) is writing to it; wait "
                    "for it to finish, then rerun to add what it lacks, or use another --out"
                ) from None
            try:
                pid = f"{os.getpid()}\n".encode()
                os.pwrite(fd, pid, 0)
                os.ftruncate(fd, len(pid))
            except OSError as exc:
                raise SimreplayError(
                    f"{lock}: cannot write the sweep's lock: {_os_reason(exc)}"
                ) from None
            yield
        finally:
            os.close(fd)

    def being_written(self) -> bool:
        """Whether a sweep holds the store's lock (``writing``) now: more rows are coming."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: nothing is locked there
            return False
        try:
            handle = open(self.root / LOCK_NAME, encoding="utf-8")  # noqa: SIM115
        except OSError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            except OSError:
                return False
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    def create(
        self,
        slo: str | None,
        unreadable: Iterable[Path] = (),
        planned: Iterable[str] = (),
        planned_traces: dict[str, tuple[str, str]] | None = None,
    ) -> dict[str, int]:
        """Create the folders and manifest (after ``prepare``); add the ``planned`` scenario
        keys to the manifest's record; remove stale temporary files and the ``unreadable``
        row files of ``scan`` (their scenarios are to be redone).

        ``planned_traces`` maps each planned key to its trace's (path, content SHA-256). The
        keys planned before with another content of one of those paths and still without a
        row can never be simulated (the trace changed before they were): they leave the
        record. Returns trace path -> how many keys left it so.
        """
        self.root.mkdir(exist_ok=True)
        manifest = self.read_manifest()
        new = manifest is None
        if manifest is None:
            manifest = {
                "kind": "simreplay-sweep",
                "format_version": STORE_FORMAT_VERSION,
                "slo": slo,
            }
        before = self._planned_record(manifest).get(build_id(), set())
        traces_before = self._planned_traces(manifest).get(build_id(), {})
        traces = {path: dict(by_sha) for path, by_sha in traces_before.items()}
        stale: dict[str, set[str]] = {}
        current = dict((planned_traces or {}).values())
        for path, sha in current.items():
            for old_sha in [old for old in traces.get(path, {}) if old != sha]:
                stale.setdefault(path, set()).update(traces[path].pop(old_sha))
        for key, (path, sha) in (planned_traces or {}).items():
            traces.setdefault(path, {}).setdefault(sha, set()).add(key)
        traces = {path: by_sha for path, by_sha in traces.items() if by_sha}
        # A key planned with another trace too (a copy's content) stays; a stored one always.
        still = {key for by_sha in traces.values() for keys in by_sha.values() for key in keys}
        still |= self.done_keys()
        dropped = {path: keys - still for path, keys in stale.items()}
        dropped = {path: keys for path, keys in dropped.items() if keys}
        keys = (before - set().union(*dropped.values())) | set(planned)
        if keys != before or traces != traces_before:
            # Other builds' records stay as they were; one atomic write of the whole file.
            record = {**manifest.get(PLANNED_FIELD, {}), build_id(): sorted(keys)}
            trace_record = {
                path: {sha: sorted(by_sha[sha]) for sha in sorted(by_sha)}
                for path, by_sha in sorted(traces.items())
            }
            manifest = {
                **manifest,
                PLANNED_FIELD: record,
                PLANNED_TRACES_FIELD: {
                    **manifest.get(PLANNED_TRACES_FIELD, {}),
                    build_id(): trace_record,
                },
            }
        if new or keys != before or traces != traces_before:
            write_text_atomic(json.dumps(manifest, indent=2) + "\n", self.root / "sweep.json")
        self.rows_dir.mkdir(exist_ok=True)
        stale_manifests = self.root.glob(MANIFEST_TMP_GLOB)  # under the lock: none is live
        probes = self.rows_dir.glob(f"{PROBE_PREFIX}*")  # where O_TMPFILE is not offered
        for stale in [*self.rows_dir.glob(".*.tmp"), *stale_manifests, *probes, *unreadable]:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        return {path: len(keys) for path, keys in sorted(dropped.items())}

    def read_manifest(self) -> dict[str, Any] | None:
        """``sweep.json`` as a dict, or None when there is none yet."""
        path = self.root / "sweep.json"
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise SimreplayError(
                f"{path}: not a readable sweep manifest ({reason}); it holds only the SLO and "
                "the scenarios asked for: remove it and rerun the sweep's command to write it "
                "again from the rows"
            ) from None
        if not isinstance(manifest, dict) or manifest.get("kind") != "simreplay-sweep":
            raise SimreplayError(f"{path}: not a simreplay sweep manifest")
        return manifest

    def _planned_record(self, manifest: dict[str, Any]) -> dict[str, set[str]]:
        """The manifest's ``PLANNED_FIELD`` as build -> keys; empty when it has none."""
        record = manifest.get(PLANNED_FIELD)
        if record is None:
            return {}
        if not isinstance(record, dict) or not all(
            isinstance(keys, list) and all(isinstance(k, str) for k in keys)
            for keys in record.values()
        ):
            raise SimreplayError(
                f"{self.root / 'sweep.json'}: {PLANNED_FIELD} is not a map of simreplay "
                "build to a list of scenario keys"
            )
        return {version: set(keys) for version, keys in record.items()}

    def _planned_traces(self, manifest: dict[str, Any]) -> dict[str, dict[str, dict]]:
        """The manifest's ``PLANNED_TRACES_FIELD`` as build -> path -> SHA-256 -> keys."""
        record = manifest.get(PLANNED_TRACES_FIELD)
        if record is None:
            return {}
        try:
            return {
                build: {
                    path: {sha: set(_strings(keys)) for sha, keys in by_sha.items()}
                    for path, by_sha in by_path.items()
                }
                for build, by_path in record.items()
            }
        except (AttributeError, TypeError):
            raise SimreplayError(
                f"{self.root / 'sweep.json'}: {PLANNED_TRACES_FIELD} is not a map of simreplay "
                "build to trace path to trace SHA-256 to a list of scenario keys"
            ) from None

    def planned_keys(self) -> set[str] | None:
        """Keys of the scenarios sweeps of this simreplay build asked for; None when the
        store records none (no sweep.json, one written before the record existed, or only
        another build's sweeps)."""
        manifest = self.read_manifest()
        if manifest is None:
            return None
        return self._planned_record(manifest).get(build_id())

    def planned(self, stored_keys: Iterable[str] | None = None) -> Planned | None:
        """How many planned scenarios (``planned_keys``) have a row; None without a record.

        ``stored_keys`` are the keys of the rows (``done_keys`` when None).
        """
        keys = self.planned_keys()
        if keys is None:
            return None
        stored = self.done_keys() if stored_keys is None else set(stored_keys)
        return Planned(len(keys), len(keys & stored))

    def check_compatible(self) -> None:
        """Fail when the manifest's format version is not this one."""
        manifest = self.read_manifest()
        if manifest is not None and manifest.get("format_version") != STORE_FORMAT_VERSION:
            raise SimreplayError(
                f"{self.root}: sweep store format {manifest.get('format_version')}, this "
                f"simreplay reads {STORE_FORMAT_VERSION}"
            )

    def path_of(self, key: str) -> Path:
        """Where the row of scenario ``key`` lives."""
        return self.rows_dir / f"{key}.parquet"

    def done_keys(self) -> set[str]:
        """Keys of the scenarios that have a row file (complete, unless corrupted since)."""
        return {p.stem for p in self._row_files()}

    def _row_files(self) -> list[Path]:
        if not self.rows_dir.is_dir():
            return []
        # A folder named like a row file is not one (it was "removed" as unreadable, then
        # failed the rerun with "Is a directory").
        return sorted(
            p for p in self.rows_dir.glob("*.parquet") if not p.name.startswith(".") and p.is_file()
        )

    def scan(self) -> StoredRows:
        """What the store holds: readable rows' keys and traces, and unreadable row files.

        A row file is written whole or not at all, so an unreadable one (truncated or
        corrupt) was damaged afterwards: its scenario counts as not done.
        """
        files = self._row_files()
        _check_row_names(files)
        columns = ["scenario_key", "trace", "trace_sha256", "simreplay_build", "slo"]
        columns += [c for knob in FILE_KNOBS for c in (knob, f"{knob}_sha256")]
        if not files:
            return StoredRows(set(), {}, [], {}, {})
        import pyarrow.dataset as ds  # ~80 ms to import: only when a store has rows

        try:  # one multi-threaded scan; file by file only when a file is damaged
            # Every column is read (one row each): each page's CRC is checked, so a damaged
            # value makes its row unreadable, and the rerun redoes it.
            whole = ds.dataset(files, schema=row_schema(), format=_row_format()).to_table()
            if whole.num_rows != len(files) or whole.column("scenario_key").to_pylist() != [
                p.stem for p in files
            ]:
                raise OSError("a file that is not its scenario's row")
            builds_read = whole.column("simreplay_build").to_pylist()
            if any(map(_names_damaged, files, builds_read)):
                raise OSError("a file whose column names are damaged")
            tables = [whole.select(columns)]
            readable = files
            unreadable: list[Path] = []
        except (pa.ArrowException, OSError):
            tables, readable, unreadable = [], [], []
            for path in files:
                table = _read_row_file(path)
                if table is None:
                    unreadable.append(path)
                else:
                    tables.append(table.select(columns))
                    readable.append(path)
        traces: dict[str, set[str]] = {}
        builds: dict[str | None, int] = {}
        knob_files: dict[tuple[str, str], set[str]] = {}
        manifest = self.read_manifest()
        slos = [slo for table in tables for slo in table.column("slo").to_pylist()]
        if manifest is not None and len(slos) == len(readable):  # one row a readable file
            for path, slo in zip(readable, slos, strict=True):
                self._check_row_slo(path, slo, manifest)
        for table in tables:
            for build in table.column("simreplay_build").to_pylist():
                builds[build] = builds.get(build, 0) + 1
            for knob in FILE_KNOBS:
                for value, sha in zip(
                    table.column(knob).to_pylist(),
                    table.column(f"{knob}_sha256").to_pylist(),
                    strict=True,
                ):
                    if value is not None and sha is not None:
                        knob_files.setdefault((knob, value), set()).add(sha)
            for trace, sha in zip(
                table.column("trace").to_pylist(),
                table.column("trace_sha256").to_pylist(),
                strict=True,
            ):
                traces.setdefault(trace, set()).add(sha)
        return StoredRows({p.stem for p in readable}, traces, unreadable, builds, knob_files)

    @staticmethod
    def _check_row_slo(path: Path | str, slo: str | None, manifest: dict[str, Any]) -> None:
        """Refuse a row judged against another SLO than the store's (a QA pass: rows copied
        in from another store were shown and reported beside these, their slo_met meaning
        another bound, while a store without sweep.json refused them)."""
        if slo != manifest.get("slo") and not _same_slo(slo, manifest.get("slo")):
            raise SimreplayError(
                f"{path}: a row judged against {_slo_words(slo)}, but this sweep's rows are "
                f"judged against {_slo_words(manifest.get('slo'))}: not a row of this sweep; "
                "move it out of the store's rows/"
            )

    def stored_values(self, knobs: tuple[str, ...]) -> dict[str, list[str]]:
        """The distinct values of ``knobs`` in the store's readable rows, in row-file order
        (``spec.merge_spellings`` keeps them over other spellings of the same thing)."""
        files = [p for p in self._row_files() if _KEY_NAME.fullmatch(p.stem)]
        if not files:
            return {}
        import pyarrow.dataset as ds

        try:
            table = ds.dataset(files, schema=row_schema(), format=_row_format()).to_table(
                list(knobs)
            )
        except (pa.ArrowException, OSError):
            return {}  # a damaged row: ``scan`` names it
        return {
            knob: [v for v in dict.fromkeys(table.column(knob).to_pylist()) if v is not None]
            for knob in knobs
        }

    def write_row(self, row: dict[str, Any]) -> None:
        """Write one scenario's row atomically."""
        table = pa.Table.from_pylist([row], schema=row_schema())
        # One row of ~70 columns: compression, dictionaries and statistics would cost more
        # than the whole row (4 ms against 1.3 ms a file); the bytes stay deterministic.
        with atomic_path(self.path_of(row["scenario_key"])) as tmp:
            pq.write_table(table, tmp, **_ROW_FILE_OPTIONS)

    def read(self) -> pa.Table:
        """Every row, sorted by ``scenario_key`` (a stable order for comparisons).

        Raises
        ------
        SimreplayError
            When ``root`` is not a sweep folder or a row file is unreadable.
        """
        self._check_kinds()
        if not (self.root / "sweep.json").is_file():
            if not self.root.exists():
                raise SimreplayError(f"{self.root}: no such folder")
            if self.rows_dir.is_dir():
                # Lost (deleted, or removed as a damaged one): said "not a sweep folder".
                raise SimreplayError(
                    f"{self.root}: no sweep.json beside its rows/; rerun the `simreplay sweep "
                    "run` command that made it to write it again"
                )
            raise SimreplayError(f"{self.root}: not a sweep folder (no sweep.json and rows/)")
        self.check_compatible()
        schema = row_schema()
        # No rows/ beside sweep.json: a first run killed between the two (``create``), which
        # ``sweep show`` called "not a sweep folder"; it has no rows yet.
        row_files = self._row_files()
        _check_row_names(row_files)
        files = [str(p) for p in row_files]
        if not files:
            return schema.empty_table()
        import pyarrow.dataset as ds  # ~80 ms to import: only when reading a store

        try:
            # One multi-threaded scan; columns a row file lacks (older build) read as null.
            table = ds.dataset(files, schema=schema, format=_row_format()).to_table()
        except (pa.ArrowException, OSError) as exc:
            # Name the file: arrow's text may not (a damaged page header), and a rerun's
            # ``scan`` reads only the key columns, so it may not find the damage itself.
            damaged = _damaged_files(files)
            if damaged:
                more = f" (and {len(damaged) - 1:,} more)" if len(damaged) > 1 else ""
                raise SimreplayError(
                    f"{damaged[0]}{more}: unreadable sweep row (truncated or corrupt); remove "
                    "it and rerun the sweep's command to redo it"
                ) from None
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise SimreplayError(
                f"{self.rows_dir}: unreadable sweep row: {reason}; rerun the sweep's command "
                "to redo it"
            ) from None
        # A file dropped into rows/ by something else reads as nulls: name it, do not show it.
        if table.num_rows != len(files):
            for path in files:
                num_rows = pq.ParquetFile(path).metadata.num_rows
                if num_rows != 1:
                    raise SimreplayError(
                        f"{path}: {num_rows} rows, not a row of this sweep (one row a file); "
                        "remove it"
                    )
        keys = table.column("scenario_key").to_pylist()
        statuses = table.column("status").to_pylist()
        for path, key, status in zip(files, keys, statuses, strict=True):
            if key is None or status is None or Path(path).stem != key:
                raise SimreplayError(
                    f"{path}: not a row of this sweep (scenario_key and status expected, and "
                    "the file named after its key); remove it"
                )
            if status not in ROW_STATUSES:
                raise SimreplayError(
                    f"{path}: status is {status!r}; a sweep row's is {' or '.join(ROW_STATUSES)}"
                )
        builds = table.column("simreplay_build").to_pylist()
        for path, build in zip(files, builds, strict=True):
            if _names_damaged(path, build):
                raise SimreplayError(
                    f"{path}: unreadable sweep row (its column names are not a row's: "
                    "corrupt); rerun the sweep's command to redo it"
                )
        # A hand-edited or damaged row (a p99 TTFT of -5 ms) was shown as it was.
        for path, row in zip(files, table.to_pylist(), strict=True):
            check_row_values(row, path)
        manifest = self.read_manifest()
        if manifest is not None:
            for path, slo in zip(files, table.column("slo").to_pylist(), strict=True):
                self._check_row_slo(path, slo, manifest)
        return table.sort_by("scenario_key")


#: A row file's name (``path_of``): the scenario key, 32 hex digits (``scenario_key``).
_KEY_NAME = re.compile(r"[0-9a-f]{32}")


def _check_row_names(files: list[Path]) -> None:
    """Refuse a file in rows/ not named after a scenario key: someone's (a trace copied in).
    Only a file named like a key can be a damaged row to remove and redo (a rerun deleted
    this one; ``sweep show`` and ``report`` called it a damaged row to remove and redo)."""
    for path in files:
        if not _KEY_NAME.fullmatch(path.stem):
            raise SimreplayError(
                f"{path}: not a row of this sweep (a row file is named after its scenario "
                "key); move it out of the store's rows/"
            )


#: What a row's status may be (``sweep.runner``).
ROW_STATUSES = ("ok", "infeasible")

#: A row's latency columns: ``<metric>_<stat>_ms``, stats in the order they must not fall.
_LATENCY_COLUMN = re.compile(r"^(ttft|tpot|itl|e2e|queue)_(mean|p\d+|max)_ms$")


#: What ``check_row_values`` tells to do with a row it refuses: the rerun's ``scan`` reads
#: such a row as a whole one, and said all was stored (a QA pass).
_REDO = " (edited or damaged: remove it and rerun the sweep's command to redo it)"


def no_slo_status(rejects: bool, overloaded: bool) -> str | None:
    """The words for a row that ran but meets no SLO whatever its ``slo_met``, as ``plan``
    judges: ``rejects`` (its replicas reject requests the asked context admits,
    ``num_rejected_capacity``), ``overloaded`` (its queue outgrew the trace, ``backlog``),
    or both, ``rejects, overloaded``; None for neither. ``sweep show`` and the sweep page
    say them alike."""
    words = [w for w, holds in (("rejects", rejects), ("overloaded", overloaded)) if holds]
    return ", ".join(words) or None


def check_row_values(row: dict[str, Any], path: Path | str) -> None:
    """Refuse a row whose numbers no run can produce (a hand-edited or damaged row was shown
    and drawn as is: a p99 TTFT of -5 ms, p50 above p99): latencies and costs finite and
    >= 0 (or empty), each metric's percentiles in order.

    Raises
    ------
    SimreplayError
        Naming ``path``, the column and its value.
    """
    by_metric: dict[str, list[tuple[float, str, float]]] = {}
    for name, value in row.items():
        match = _LATENCY_COLUMN.match(name)
        if match is None and name != "cost_per_hour_usd" or value is None:
            continue
        number = _row_number(value)
        if not (math.isfinite(number) and number >= 0):
            raise SimreplayError(
                f"{path}: {name} is {value!r}; expected a number >= 0 or empty{_REDO}"
            )
        if match is not None and match.group(2).startswith("p"):
            metric, stat = match.groups()
            by_metric.setdefault(metric, []).append((float(stat[1:]), name, number))
    for points in by_metric.values():
        points.sort()
        for (_, low_name, low), (_, high_name, high) in itertools.pairwise(points):
            if low > high:
                raise SimreplayError(
                    f"{path}: {low_name} {low:g} is above {high_name} {high:g}; a row's "
                    f"percentiles never fall{_REDO}"
                )


def _row_number(value: Any) -> float:
    """``value`` as a float; NaN for what is not a number (text, a bool)."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_row_file(path: Path) -> pa.Table | None:
    """A row file's table; None when it is not a whole row of its scenario (truncated,
    corrupt, or another scenario's row under this name: the rerun removes and redoes it).

    Raises
    ------
    SimreplayError
        When the file cannot be opened for reading (permissions): it may be intact and
        another user's, so it is neither called damaged nor removed.
    """
    _check_readable(path)
    import pyarrow.dataset as ds

    try:  # as the one-scan read does: columns a row of an older build lacks read as null
        table = ds.dataset([path], schema=row_schema(), format=_row_format()).to_table()
    except (pa.ArrowException, OSError):
        return None
    if table.num_rows != 1 or table.column("scenario_key")[0].as_py() != path.stem:
        return None
    if _names_damaged(path, table.column("simreplay_build")[0].as_py()):
        return None
    return table


def _names_damaged(path: Path | str, build: str | None) -> bool:
    """Whether a row file's column names were damaged: a flipped bit in its footer renames
    a column, whose value then read as null, silently. Damaged: a name twice, a name no row
    has, or, in a row of this build, a name missing (rows of earlier builds lack the columns
    added since; no column was ever removed or renamed, so none has a name unknown here:
    should one be, this must say which old names are rows' too)."""
    expected = row_schema().names
    try:
        names = pq.read_metadata(path).schema.names
    except (pa.ArrowException, OSError):
        return True
    if names == expected:
        return False
    if len(set(names)) != len(names) or not set(names) <= set(expected):
        return True
    return build == build_id()


def _check_readable(path: Path | str) -> None:
    """Refuse a row file this user may not read: it may be intact (and another user's), so
    it is neither called damaged nor removed."""
    if not os.access(path, os.R_OK):
        raise SimreplayError(
            f"{path}: permission denied (not readable by this user); fix its permissions or "
            "use another --out"
        )


def _damaged_files(paths: list[str]) -> list[str]:
    """The row files of ``paths`` that cannot be read whole."""
    damaged = []
    for path in paths:
        _check_readable(path)
        try:
            with _open_row(path) as parquet_file:
                parquet_file.read()
        except (pa.ArrowException, OSError):
            damaged.append(path)
    return damaged


def _os_reason(exc: OSError) -> str:
    """An OSError's words without its errno and file name ("No space left on device")."""
    return exc.strerror or str(exc) or type(exc).__name__


def _strings(values: Any) -> list[str]:
    """``values`` when it is a list of strings; TypeError otherwise."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TypeError("not a list of strings")
    return values


def _same_slo(stored: object, slo: str | None) -> bool:
    """Whether two SLO texts set the same bounds (a stored text that does not parse: no)."""
    if stored is None or slo is None or not isinstance(stored, str):
        return stored is None and slo is None
    from simulator.metrics import parse_slo

    try:
        return parse_slo(stored) == parse_slo(slo)
    except SimreplayError:
        return False


def _slo_words(slo: str | None) -> str:
    """An SLO as the command line gives it: ``--slo 'TEXT'``, or ``no --slo`` (not None)."""
    return "no --slo" if slo is None else f"--slo {slo!r}"
