"""Run the scenarios of a sweep on local processes or Ray and store one row per scenario.

Each scenario is independent. Workers load every trace of the sweep once (an executor
initializer locally; a per-process cache on Ray), simulate the scenarios sent to them and
return rows; the driver writes each row atomically as it arrives (``store.ResultStore``),
so whatever was finished before a kill is kept and the rest is redone on restart.

Local workers are started with ``forkserver`` (``spawn`` where it is missing): a script that
calls ``run_sweep`` with more than one worker must guard its entry point with
``if __name__ == "__main__":``, as ``multiprocessing`` requires.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from simulator.checks import format_number
from simulator.errors import SimreplayError, Stopped
from simulator.fingerprint import build_id
from simulator.hardware import parse_gpus
from simulator.metrics import parse_slo
from simulator.models import get_model
from simulator.results import backlog_kind
from simulator.scenario import Scenario
from simulator.sweep.spec import scenario_knobs
from simulator.sweep.store import (
    FILE_KNOBS,
    LATENCY_METRICS,
    LATENCY_STATS,
    RESULT_COLUMNS,
    ResultStore,
    StoredRows,
    file_sha256,
    knob_file,
    scenario_key,
)

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Task:
    """One scenario to simulate: its key, knobs, the SLO text (or None), and the content
    hash of each knob that names a file (``store.FILE_KNOBS``)."""

    key: str
    knobs: dict[str, Any]
    trace_sha256: str
    slo: str | None
    file_sha256: dict[str, str] = field(default_factory=dict)
    #: The build that keyed it (``fingerprint.build_id`` of the process that planned the
    #: sweep): its row records the same build as its key, whichever worker simulates it.
    build: str = field(default_factory=build_id)


@dataclass
class Progress:
    """What a progress callback is told after each scenario."""

    done: int
    total: int
    skipped: int
    elapsed_s: float
    num_infeasible: int = 0

    @property
    def rate_per_s(self) -> float:
        """Scenarios simulated per second in this run (skipped ones excluded)."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate, None before the first scenario."""
        rate = self.rate_per_s
        return (self.total - self.done) / rate if rate > 0 else None


def plan_tasks(
    scenarios: list[dict[str, Any]], slo: str | None
) -> tuple[list[Task], dict[str, str]]:
    """Key every scenario (hashing each trace file once); drop scenarios with equal keys.

    Returns
    -------
    tasks : list of Task
        In the order of ``scenarios``, without repeats.
    traces : dict
        Trace path -> content SHA-256.
    """
    hashes: dict[str, str] = {}
    for path in dict.fromkeys(s["trace"] for s in scenarios):
        try:
            hashes[path] = file_sha256(path)
        except OSError as exc:
            raise SimreplayError(f"trace {path}: cannot read: {exc}") from None
    knob_hashes: dict[tuple[str, str], str] = {}
    tasks: dict[str, Task] = {}
    for knobs in scenarios:
        sha = hashes[knobs["trace"]]
        files = {}
        for knob in FILE_KNOBS:
            path = knob_file(knob, knobs.get(knob))
            if path is None:
                continue
            if (knob, knobs[knob]) not in knob_hashes:
                try:
                    knob_hashes[knob, knobs[knob]] = file_sha256(path)
                except OSError as exc:
                    raise SimreplayError(f"--{knob} {path}: cannot read: {exc}") from None
            files[knob] = knob_hashes[knob, knobs[knob]]
        key = scenario_key(knobs, sha, files)
        tasks.setdefault(key, Task(key, knobs, sha, slo, files))
    return list(tasks.values()), hashes


# --- evaluating one scenario --------------------------------------------------------------

_TRACES: dict[str, pa.Table] = {}


def load_traces(
    paths: Iterable[str], note: Callable[[str], None] | None = None
) -> dict[str, pa.Table]:
    """Load each trace into this process's cache (once) and return the cache.

    ``note`` is told, once per trace read, each change the import made (rows dropped or
    reordered: ``ImportReport.notes``), prefixed with the trace's path.
    """
    for path in paths:
        if path not in _TRACES:
            _TRACES[path], report = import_with_defaults(path, "sweep")
            for message in report.notes if note is not None else ():
                note(f"{path}: {message}")
    return _TRACES


def import_with_defaults(path: Any, command: str) -> tuple[pa.Table, Any]:
    """``import_trace(path)`` with default options, for ``simreplay COMMAND``.

    A reader's advice names ``trace import``'s options (``--rate``, ``--skip-invalid``),
    which ``sweep`` and ``plan`` do not take: the line then says where to give them.
    """
    from simulator.trace.importer import import_trace

    try:
        return import_trace(path)
    except SimreplayError as exc:
        if "--" not in str(exc):
            raise
        raise SimreplayError(
            f"{exc}; simreplay {command} reads traces with default options: convert it with "
            "`simreplay trace import TRACE -o OUT.parquet` and those options first"
        ) from None


def _start_worker(tables: dict[str, pa.Table], driver_pid: int) -> None:
    """Worker initializer: keep the driver's parsed traces (no re-parsing per worker), and
    exit when the driver is gone (a SIGKILL of it once left the workers idle forever)."""
    _TRACES.update(tables)
    serve_driver(driver_pid)


def serve_driver(driver_pid: int) -> None:
    """In a worker (its pool's initializer): write to the driver's stderr, and exit when the
    driver is gone.

    The pool's helpers start with stderr on the null device (``_start_helpers``), so a
    worker inherits that; once started it takes the driver's again, through
    ``/proc/PID/fd/2`` (appending; where that cannot be opened it stays quiet).
    """
    with contextlib.suppress(OSError):
        fd = os.open(f"/proc/{driver_pid}/fd/2", os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 2)
        os.close(fd)
    threading.Thread(target=_exit_after, args=(driver_pid,), daemon=True).start()


def _exit_after(pid: int, poll_s: float = 0.5) -> None:
    # A worker's parent is the forkserver, not the driver, so PR_SET_PDEATHSIG would not
    # see the driver die; polling does, on any platform. A kernel holding the GIL delays
    # the exit until it returns.
    while _is_alive(pid):
        time.sleep(poll_s)
    os._exit(1)


def _is_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: not Linux
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


#: Knobs that change only the engine's capacities: scenarios that differ in nothing else
#: are evaluated together, so that one engine run can answer several
#: (``api.simulate_many``).
CAPACITY_KNOBS = ("gpu_memory_utilization", "max_num_seqs")


def group_tasks(tasks: list[Task]) -> list[list[Task]]:
    """Tasks that differ only in ``CAPACITY_KNOBS``, together; groups in first-seen order."""
    groups: dict[tuple, list[Task]] = {}
    for task in tasks:
        key = tuple(
            (name, value) for name, value in task.knobs.items() if name not in CAPACITY_KNOBS
        )
        groups.setdefault((key, task.slo), []).append(task)
    return list(groups.values())


def evaluate_group(tasks: list[Task], table: pa.Table | None = None) -> list[dict[str, Any]]:
    """The rows of ``tasks`` (``group_tasks``: one trace and rate scale), in their order.

    ``table`` is their trace; when None it comes from this process's cache
    (``load_traces``). The engine runs once for the scenarios that ``api.simulate_many``
    finds one run can answer; each row is the one the scenario would get alone. A
    ``SimreplayError`` while resolving or simulating makes an ``infeasible`` row with its
    reason; any other exception is a bug and propagates.
    """
    from simulator.api import simulate_many
    from simulator.trace.transform import scale_rate

    knobs = tasks[0].knobs
    if table is None:
        load_traces([knobs["trace"]])
        table = _TRACES[knobs["trace"]]
    rows = [_row_start(task) for task in tasks]
    arrival_s = table.column("arrival_time_s").to_numpy()
    # The trace as given: a burst is its own shape, judged unscaled (as ``plan`` does).
    unscaled_span_s = float(arrival_s.max() - arrival_s.min()) if arrival_s.size else 0.0
    scenarios = [
        Scenario(**{name: task.knobs[name] for name in scenario_knobs()}) for task in tasks
    ]
    try:
        if knobs["rate_scale"] != 1.0:
            table = scale_rate(table, knobs["rate_scale"])
        slo = parse_slo(tasks[0].slo) if tasks[0].slo else None
        results = simulate_many(table, scenarios, slo=slo)
    except SimreplayError as exc:  # the trace or SLO, so every scenario of the group
        results = [exc] * len(tasks)
    for row, scenario, result in zip(rows, scenarios, results, strict=True):
        if isinstance(result, SimreplayError):
            row.update(status="infeasible", reason=str(result))
        else:
            row.update(summary_columns(result.summary))
            row.update(status="ok")
            row["backlog"] = backlog_kind(
                row["backlog_at_last_arrival"], row["num_requests"], unscaled_span_s
            )
            # As ``plan`` judges a fleet: requests the asked context admits and a replica
            # still rejects (a QA pass: the sweep page starred such a fleet).
            row["num_rejected_capacity"] = max(
                row["num_rejected"] - context_rejections(table, scenario), 0
            )
    return rows


def context_rejections(table: pa.Table, scenario: Scenario) -> int:
    """Requests every fleet rejects: input + output tokens beyond the context asked for
    (``max_model_len``, else the model's). A fleet that rejects more cannot serve the
    trace (its KV cache holds less, which caps a replica's ``max_model_len`` below it),
    whatever its latencies over the requests it completes."""
    limit = scenario.max_model_len or get_model(scenario.model).max_context_tokens
    tokens = table.column("input_tokens").to_numpy().astype(np.int64)
    tokens = tokens + table.column("output_tokens").to_numpy()
    return int(np.count_nonzero(tokens > limit))


def _row_start(task: Task) -> dict[str, Any]:
    """A row's knobs, keys and cost; the result columns empty."""
    knobs = task.knobs
    row: dict[str, Any] = dict(knobs)
    row.update(dict.fromkeys(RESULT_COLUMNS))
    row.update(scenario_key=task.key, trace_sha256=task.trace_sha256, slo=task.slo)
    row.update(simreplay_build=task.build)
    row.update({f"{knob}_sha256": sha for knob, sha in task.file_sha256.items()})
    num_gpus, gpu = parse_gpus(knobs["gpus"])
    row.update(gpu_type=gpu.name, num_gpus=num_gpus, cost_per_hour_usd=num_gpus * gpu.usd_per_hour)
    return row


def evaluate(task: Task, table: pa.Table | None = None) -> dict[str, Any]:
    """Simulate one scenario and return its row (``store`` module docstring)."""
    return evaluate_group([task], table)[0]


def summary_columns(summary: dict[str, Any]) -> dict[str, Any]:
    """The flat result columns of one ``Result.summary``."""
    scenario = summary["scenario"]
    flat: dict[str, Any] = {
        "gpu_type": scenario["gpu"],
        "num_gpus": scenario["num_gpus"],
        "tp_used": scenario["tp"],
        "num_replicas": scenario["num_replicas"],
        "cost_per_hour_usd": scenario["cost_per_hour_usd"],
        "step_time_source": scenario["calibration"],
    }
    for name in (
        "num_requests",
        "num_completed",
        "num_rejected",
        "num_preemptions",
        "makespan_s",
        "throughput_rps",
        "output_tokens_per_s",
        "backlog_at_last_arrival",
    ):
        flat[name] = summary[name]
    for metric in LATENCY_METRICS:
        for stat in LATENCY_STATS:
            flat[f"{metric}_{stat}_ms"] = summary[f"{metric}_ms"][stat]
    rejected = summary.get("rejected_by_reason") or {}
    if rejected:  # else an ok row whose percentiles are null (none completed) said nothing
        flat["reason"] = (
            f"{summary['num_rejected']:,} of {summary['num_requests']:,} requests rejected: "
            + "; ".join(f"{why} ({count:,})" for why, count in rejected.items())
        )
    flat["kv_peak_fraction"] = summary["kv_cache"]["peak_fraction"]
    flat["kv_mean_fraction"] = summary["kv_cache"]["mean_fraction"]
    cache = summary.get("prefix_cache")
    if cache is not None:  # caching off: the column stays null
        flat["prefix_cache_hit_rate"] = cache["hit_rate"]
    slo = summary.get("slo")
    if slo is not None:
        flat["slo_met"] = slo["all_met"]
        flat["slo_attainment"] = slo["attainment_all"]
        flat["goodput_rps"] = slo["goodput_rps"]
    return flat


# --- backends -----------------------------------------------------------------------------


def default_workers() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _local(
    tasks: list[Task], tables: dict[str, pa.Table], workers: int
) -> Iterator[dict[str, Any]]:
    groups = group_tasks(tasks)
    if workers == 1:
        for group in groups:
            yield from evaluate_group(group)
        return
    with worker_pool(workers, _start_worker, (tables, os.getpid()), WorkerDied) as (
        pool,
        interrupted,
    ):
        pending = set()
        for group in groups:
            if interrupted:
                break
            pending.add(pool.submit(evaluate_group, group))
        while pending and not interrupted:
            done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            for future in done:
                if interrupted:
                    break
                yield from future.result()


@contextlib.contextmanager
def worker_pool(
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    death: Callable[[str], BaseException],
) -> Iterator[tuple[cf.ProcessPoolExecutor, list[int]]]:
    """A forkserver process pool whose Ctrl-C and SIGTERM only set a flag (the list).

    The body submits work and checks the flag; leaving it with the flag set raises
    ``Stopped``, otherwise the pool is shut down. A KeyboardInterrupt raised anywhere (in a
    finalizer, or the pool's start-up) printed tracebacks, and SIGTERM's default action
    killed the driver while it was sending a worker its start-up data. The helpers and
    workers start with SIGINT ignored (``_start_helpers``). A dead worker raises
    ``death(text)``; any other exit ends the workers at once. Used by sweeps (``_local``)
    and by ``plan --workers``.
    """
    # forkserver: no fork of a process that may hold numba or thread state.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    stopped: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()
    previous = (
        {num: signal.signal(num, lambda num, _: stopped.append(num)) for num in _STOP_SIGNALS}
        if in_main
        else {}
    )
    pool = None
    try:
        _start_helpers(method)
        pool = cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=initializer,
            initargs=initargs,
        )
        yield pool, stopped
        if stopped:
            raise Stopped(stopped[0])
        pool.shutdown()
    except (cf.process.BrokenProcessPool, BrokenPipeError):
        # BrokenPipeError: a worker died while the driver was still sending it its start-up
        # data (the traces); the command line took it for a closed stdout and exited 1
        # without a word.
        if stopped:  # a signal sent to the whole group ended a worker too
            _stop_workers(pool)
            raise Stopped(stopped[0]) from None
        raise death(_worker_death(pool)) from None
    except BaseException:  # Ctrl-C, a failed scenario, or the caller closing early
        if pool is not None:
            _stop_workers(pool)
        raise
    finally:
        for num, handler in previous.items():
            signal.signal(num, handler)


#: Signals that stop a sweep cleanly: workers ended, stored rows kept, exit 128 + signal.
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)
)


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within: SIGTERM raises ``Stopped`` as Ctrl-C raises KeyboardInterrupt (main thread).

    Its default action ended the process at once, wherever it was; now the atomic writers
    remove their temporary files and the command exits 143 with one line.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _: Any) -> None:
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class WorkerDied(SimreplayError):
    """A local worker process ended abruptly; ``cause`` says how (``_worker_death``)."""

    def __init__(self, cause: str) -> None:
        super().__init__(
            f"{cause}; the rows stored so far are kept: rerun the same command to simulate the rest"
        )
        self.cause = cause


def stopped_line(head: str, num_stored: int, num_scenarios: int, root: Any) -> str:
    """``head`` (what stopped the sweep) and how far it got, as one line.

    ``num_stored`` of the sweep's ``num_scenarios`` scenarios have a row in the store at
    ``root``.
    """
    left = num_scenarios - num_stored
    if left == 0:
        return f"{head}: all {num_scenarios:,} scenarios of the sweep are stored in {root}"
    return (
        f"{head}: {num_stored:,} of {num_scenarios:,} scenarios stored in {root}; run the same "
        f"command again to simulate the other {left:,}"
    )


def _worker_death(pool: cf.ProcessPoolExecutor | None) -> str:
    """What ended a worker process abruptly (the OOM killer, a kill -9), for a line."""
    codes = {
        process.exitcode
        for process in (getattr(pool, "_processes", None) or {}).values()
        if process.exitcode not in (None, 0)
    }
    # The pool sends SIGTERM to the other workers once one is gone: name the first cause.
    codes = sorted(codes - {-signal.SIGTERM} or codes)
    how = ", ".join(_exit_text(code) for code in codes)
    if pool is not None:
        _stop_workers(pool)
    return f"a worker process ended abruptly ({how or 'no status'}; out of memory?)"


def _exit_text(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    if code == _FORKSERVER_NO_STATUS:
        # A forkserver worker whose status the forkserver had not reported yet when the pool
        # broke (popen_forkserver.Popen.poll); under load a kill -9 reads so.
        return "exit status unknown"
    return f"exit status {code}"


#: What multiprocessing's forkserver popen reports for a worker whose exit status it could
#: not read (``Popen.poll``: "perhaps the forkserver process itself got killed").
_FORKSERVER_NO_STATUS = 255


def _start_helpers(method: str) -> None:
    """Start multiprocessing's resource tracker and forkserver with SIGINT ignored.

    A process started with SIGINT ignored keeps it so (Python installs its Ctrl-C handler
    only over the default), and the forkserver's workers inherit that. Ctrl-C, sent to the
    whole process group, then reaches only the driver, which ends the workers; before, the
    helpers and workers died with tracebacks of whatever they were importing or unpickling.
    A Ctrl-C during the two starts is lost: 30-90 ms on a loaded 2-core machine (QA, 2026-12-01).
    """
    if not hasattr(signal, "SIGINT") or threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import resource_tracker

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _quiet_children():
            resource_tracker.ensure_running()
            if method == "forkserver":
                from multiprocessing import forkserver

                forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _quiet_children() -> Iterator[None]:
    """Processes started in the block get the null device as stderr.

    When the driver is killed (SIGKILL runs nothing of it), the resource tracker warned of
    "leaked semaphore objects", and a worker the forkserver was starting printed the
    traceback of its truncated start-up data: lines on the user's terminal after the
    command had ended. Workers take the driver's stderr back once started
    (``serve_driver``). Only the file descriptor is swapped, for the block's duration.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _stop_workers(pool: cf.ProcessPoolExecutor) -> None:
    """End the workers now, so that leaving the pool does not wait for their scenarios.

    Futures are not cancelled: the pool's manager thread fails the unfinished ones as
    "broken" when the workers end, and on CPython 3.11 a cancelled one made it print an
    ``InvalidStateError`` traceback. The rows already stored stay, and a rerun of the same
    command runs only what is missing.
    """
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=True)


def check_ray(address: str | None) -> Any:
    """Import ray and connect (``address``) or start a local instance; return the module.

    Raises
    ------
    SimreplayError
        When ray is not installed or the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError:
        raise SimreplayError("--backend ray needs ray: pip install 'simreplay[ray]'") from None
    if not ray.is_initialized():
        if address not in (None, "auto", "local"):
            _check_reachable(address)
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if in_main else None
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError, ...
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise SimreplayError(f"--address {address}: cannot reach Ray: {first}") from None
        finally:
            # ray.init replaces the SIGTERM handler (its core worker's C++ one prints a stack
            # dump and aborts): the sweep's own (``stop_on_sigterm``) shuts Ray down and
            # exits 143; Ray's left its dashboard and runtime-env agents running.
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return ray


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes of Ray's retries, when nothing listens at ``address``."""
    host_port = address.removeprefix("ray://")
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise SimreplayError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=5.0):
            pass
    except OSError as exc:
        raise SimreplayError(f"--address {address}: cannot reach Ray: {exc}") from None


def _evaluate_on_ray(group: list[Task], table_ref: Any) -> list[dict[str, Any]]:
    # Ray resolves a top-level ObjectRef argument to the table (zero-copy from the object
    # store), and a worker process keeps it; nothing is re-read from disk per scenario.
    return evaluate_group(group, table_ref)


def _ray(
    tasks: list[Task], tables: dict[str, pa.Table], address: str | None
) -> Iterator[dict[str, Any]]:
    ray = check_ray(address)
    refs = {path: ray.put(table) for path, table in tables.items()}
    remote = ray.remote(num_cpus=1)(_evaluate_on_ray)
    pending = [remote.remote(group, refs[group[0].knobs["trace"]]) for group in group_tasks(tasks)]
    # No ray.cancel of the pending tasks when stopped early: a cancelled task whose reply was
    # on its way aborted the driver (Ray 2.x "Check failed: Tried to complete task that was
    # not pending", a C++ stack dump, exit 1 after Ctrl-C). Tasks share their driver's fate:
    # ray.shutdown, or the driver's exit on a cluster, ends them.
    while pending:
        # A timeout returns to Python now and then, so that a signal handler runs.
        ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
        for ref in ready:
            yield from ray.get(ref)


def run_sweep(
    scenarios: list[dict[str, Any]],
    store: ResultStore,
    *,
    slo: str | None,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> Progress:
    """Simulate every scenario not already in ``store`` and write its row.

    Every input is checked, and every trace read, before anything is written: a bad trace
    leaves no store behind.

    Parameters
    ----------
    scenarios : list of dict
        From ``SweepSpec.scenarios``.
    store : ResultStore
        Where rows go; ``prepare`` is called here before anything is written.
    slo : str or None
        SLO text every row is judged against.
    workers : int, optional
        Local processes (default: the cores this process may use).
    backend : str
        ``local`` or ``ray``.
    address : str, optional
        Ray cluster address (``auto``, ``ray://host:10001``); a local instance when None.
    progress : callable, optional
        Called after each scenario, and once before the first.
    note : callable, optional
        Told what the sweep changed: rows each trace's import dropped or reordered, damaged
        row files it redoes.

    Returns
    -------
    Progress
        The final count: ``done`` simulated now, ``skipped`` found finished.

    Raises
    ------
    SimreplayError
        For bad options, an unreadable trace, a ``store`` that cannot hold the sweep, or a
        trace whose content changed since the store's rows were simulated from it; or when
        a worker process died, with how many of the sweep's scenarios are stored.
    Stopped
        On Ctrl-C (a KeyboardInterrupt becomes one) or a ``Stopped`` SIGTERM: its
        ``message`` says how many of the sweep's scenarios are stored (``stopped_line``).
    """
    if backend not in BACKENDS:
        raise SimreplayError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SimreplayError(f"--workers must be an integer >= 1, got {workers!r}")
    # Checked here before anything is written, and again under the store's lock
    # (``_checked_run``): another sweep may have made the store in between.
    slo = store.prepare(slo)
    scenarios = _stored_spellings(scenarios, store, note)
    tasks, hashes = plan_tasks(scenarios, slo)
    try:
        return _checked_run(tasks, hashes, store, slo, workers, backend, address, progress, note)
    except WorkerDied as exc:
        raise SimreplayError(_how_far(exc.cause, tasks, store)) from None
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM within ``stop_on_sigterm``
        stopped = exc if isinstance(exc, Stopped) else Stopped(signal.SIGINT)
        stopped.message = _how_far(stopped.message, tasks, store)
        raise stopped from None


def _check_rate_scales(tasks: list[Task], tables: dict[str, pa.Table]) -> None:
    """Refuse, before the store is made, a ``--rate-scale`` that stretches a trace beyond
    what a trace may span, as ``plan`` and ``run`` refuse it (QA: the sweep stored it as an
    infeasible row of every scenario and exited 0)."""
    from simulator.trace.transform import check_arrival_span

    for trace, rate_scale in sorted({(t.knobs["trace"], t.knobs["rate_scale"]) for t in tasks}):
        arrival_s = tables[trace].column("arrival_time_s").to_numpy() / rate_scale
        check_arrival_span(arrival_s, f"--rate-scale {format_number(rate_scale)}")


def _stored_spellings(
    scenarios: list[dict[str, Any]], store: ResultStore, note: Callable[[str], None] | None
) -> list[dict[str, Any]]:
    """``scenarios`` with each GPU, model or KV-cache dtype spelled as the store's rows spell
    it (``spec.merge_spellings``), and a note for each renamed value: a rerun with
    ``--gpus 1xh100`` after ``1xH100`` stored a second row of the same numbers."""
    from simulator.sweep.spec import SPELLED_KNOBS, cli_name, merge_spellings

    earlier = store.stored_values((*SPELLED_KNOBS, "trace"))
    if not earlier:
        return scenarios
    scenarios = [dict(s) for s in scenarios]
    for knob, renamed in merge_spellings(scenarios, earlier).items():
        what = {"gpus": "deployment", "kv_cache_dtype": "KV-cache dtype"}.get(knob, knob)
        for alias, kept in renamed.items():
            if note is not None:
                note(
                    f"{cli_name(knob)} {alias} is the same {what} as {kept} in the store's "
                    f"rows: stored as {kept}"
                )
    for alias, kept in _same_trace_files(scenarios, earlier.get("trace", [])).items():
        for s in scenarios:
            if s["trace"] == alias:
                s["trace"] = kept
        if note is not None:
            note(f"trace {alias} is the file {kept} of the store's rows: stored as {kept}")
    return scenarios


def _same_trace_files(scenarios: list[dict[str, Any]], stored: list[str]) -> dict[str, str]:
    """Trace paths given now -> the spelling of the same file in a store's rows (one that
    still names it from here): ``traces/a.parquet`` and ``/abs/traces/a.parquet`` were two
    traces to ``show`` and ``report``, each with half the rows (a QA pass). A stored path
    that names no file from here (written from another folder) is left alone."""
    renamed: dict[str, str] = {}
    for given in dict.fromkeys(s["trace"] for s in scenarios):
        if given in stored:
            continue
        for kept in stored:
            try:
                if os.path.samefile(given, kept):
                    renamed[given] = kept
                    break
            except OSError:
                continue
    return renamed


def _check_sessions(tasks: list[Task], tables: dict[str, pa.Table]) -> None:
    """Refuse, before the store is made, scenarios that replay sessions from a trace without
    any (a QA pass: every such scenario was stored as infeasible, exit 0)."""
    from simulator.api import sessions_needed, trace_has_sessions

    has: dict[str, bool] = {}
    for task in tasks:
        trace = task.knobs["trace"]
        if trace not in has:
            has[trace] = trace_has_sessions(tables[trace])
        why = sessions_needed(
            has[trace], bool(task.knobs.get("closed_loop")), str(task.knobs.get("router"))
        )
        if why is not None:
            raise SimreplayError(f"trace {trace}: {why}")


def _how_far(head: str, tasks: list[Task], store: ResultStore) -> str:
    # Counted from the row files: a row renamed into place just before the stop counts.
    stored = store.done_keys() & {task.key for task in tasks}
    return stopped_line(head, len(stored), len(tasks), store.root)


def _checked_run(
    tasks: list[Task],
    hashes: dict[str, str],
    store: ResultStore,
    slo: str | None,
    workers: int,
    backend: str,
    address: str | None,
    progress: Callable[[Progress], None] | None,
    note: Callable[[str], None] | None,
) -> Progress:
    """``run_sweep`` once the scenarios are keyed: check the traces against the store, read
    them, record the scenarios asked for, and simulate what is missing."""
    first_path: dict[str, str] = {}
    for path, sha in hashes.items():
        kept = first_path.setdefault(sha, path)
        if kept != path and note is not None:
            # The key holds the content, not the path: a copy's scenarios are the first's.
            note(
                f"trace {path} has the same content as {kept}: its scenarios are run once "
                f"and stored under {kept}"
            )
    stored = store.scan()
    _check_stored(stored, tasks, hashes, store)
    # Read before the lock is taken (and the store made): a bad trace leaves nothing behind.
    todo = [t for t in tasks if t.key not in stored.keys]
    tables = load_traces(dict.fromkeys(t.knobs["trace"] for t in todo), note)
    _check_rate_scales(todo, tables)
    _check_sessions(todo, tables)
    ray_started_here = False
    if backend == "ray" and todo:
        ray_started_here = not _ray_initialized()
        check_ray(address)
    try:
        with store.locked():
            # Under the lock, as it stands now: a sweep started at the same time may have
            # made the store with another SLO, or stored some of these scenarios.
            locked_slo = store.prepare(slo)
            if locked_slo != slo:  # the store's words for the same bounds
                tasks = [dataclasses.replace(t, slo=locked_slo) for t in tasks]
            if store.rebuilt_manifest and note is not None:
                note(
                    f"{store.root}: no sweep.json beside its rows/: written again from this "
                    "command (what earlier commands asked for and did not finish is not "
                    "counted as planned)"
                )
            stored = store.scan()
            _check_stored(stored, tasks, hashes, store)
            todo = [t for t in tasks if t.key not in stored.keys]
            traces = list(dict.fromkeys(t.knobs["trace"] for t in todo))
            tables = load_traces(traces, note)
            tables = {path: tables[path] for path in traces}
            if stored.unreadable and note is not None:
                note(_unreadable_note(stored.unreadable, tasks, store))
            dropped = store.create(
                locked_slo,
                stored.unreadable,
                planned=[t.key for t in tasks],
                planned_traces={t.key: (t.knobs["trace"], t.trace_sha256) for t in tasks},
            )
            for path, num_dropped in dropped.items() if note is not None else ():
                note(
                    f"trace {path}: its content changed before {num_dropped:,} scenarios "
                    f"planned with the earlier content were simulated; they are no longer "
                    f"counted as planned in {store.root}"
                )
            return _run(
                todo, tables, len(tasks) - len(todo), store, workers, backend, address, progress
            )
    finally:
        if ray_started_here:
            import ray

            ray.shutdown()


def _check_stored(
    stored: StoredRows, tasks: list[Task], hashes: dict[str, str], store: ResultStore
) -> None:
    """Refuse a store whose rows another build simulated, or from other content of one of
    the sweep's files (trace, model config, calibration) under the same name."""
    other_builds = {b: n for b, n in stored.builds.items() if b != build_id()}
    if other_builds:
        num_rows = sum(other_builds.values())
        named = sorted(b for b in other_builds if b is not None)
        which = f"simreplay {named[0]}" if named else "a simreplay from before builds were recorded"
        raise SimreplayError(
            f"{store.root}: holds rows simulated by {which} ({num_rows:,} of them), not by "
            f"this build ({build_id()}), whose results may differ; use a new --out, or remove "
            f"{store.rows_dir} to simulate them again with this one"
        )
    for task in tasks:
        for knob, sha in task.file_sha256.items():
            other = sorted(stored.knob_files.get((knob, task.knobs[knob]), set()) - {sha})
            if other:
                raise SimreplayError(
                    f"--{knob} {task.knobs[knob]}: its content changed since the rows in "
                    f"{store.root} were simulated from it (SHA-256 {sha[:12]} now, "
                    f"{other[0][:12]} then); use a new --out, or the file as it was"
                )
    for path, sha in hashes.items():
        other = sorted(stored.traces.get(path, set()) - {sha})
        if other:
            # Rows name a trace as it was typed: "changed" may be another file of the same
            # relative name, given from another folder.
            raise SimreplayError(
                f"trace {path}: the rows in {store.root} were simulated from a trace of this "
                f"name with other content (SHA-256 {other[0][:12]} then, {sha[:12]} now): it "
                "changed, or it is another file of that name (a relative path given from another "
                "folder); use a new --out, the trace as it was, or its full path"
            )
    _check_other_spellings(stored, tasks, hashes, store)


def _real(path: Path | None) -> str | None:
    """The resolved path of an existing file, None otherwise."""
    try:
        return os.path.realpath(path) if path is not None and path.is_file() else None
    except OSError:
        return None


def _check_other_spellings(
    stored: StoredRows, tasks: list[Task], hashes: dict[str, str], store: ResultStore
) -> None:
    """Refuse a file of this sweep that stored rows name by another spelling (``m2`` and
    ``m2/config.json``, ``t.parquet`` and its full path) when their content differs from
    the file's now: those rows were simulated from content it no longer has (a QA pass:
    an edited model file given by its other spelling added fresh rows beside stale ones)."""
    stored_files: dict[str, list[tuple[str, str, str]]] = {}  # real path -> (what, name, sha)
    for (knob, value), shas in stored.knob_files.items():
        real = _real(knob_file(knob, value))
        if real is not None:
            stored_files.setdefault(real, []).extend((f"--{knob}", value, sha) for sha in shas)
    for name, shas in stored.traces.items():
        real = _real(Path(name).expanduser())
        if real is not None:
            stored_files.setdefault(real, []).extend(("trace", name, sha) for sha in shas)
    if not stored_files:
        return
    current = {
        (f"--{knob}", task.knobs[knob], sha)
        for task in tasks
        for knob, sha in task.file_sha256.items()
    } | {("trace", name, sha) for name, sha in hashes.items()}
    for what, name, sha in sorted(current):
        path = Path(name).expanduser() if what == "trace" else knob_file(what[2:], name)
        for other_what, other_name, other_sha in stored_files.get(_real(path) or "", []):
            if other_sha != sha and (other_what, other_name) != (what, name):
                raise SimreplayError(
                    f"{what} {name}: {other_what} {other_name}, the same file, names rows in "
                    f"{store.root} simulated from other content (SHA-256 {other_sha[:12]} "
                    f"then, {sha[:12]} now): it changed since; use a new --out, or the file as "
                    "it was"
                )


def _unreadable_note(unreadable: list[Path], tasks: list[Task], store: ResultStore) -> str:
    """What the sweep says of the damaged row files it removes."""
    keys = {t.key for t in tasks}
    redo = sum(path.stem in keys for path in unreadable)
    why = "(truncated or corrupt, or not its scenario's row): removed"
    if len(unreadable) > 1:
        return (
            f"{len(unreadable):,} row files in {store.rows_dir} are unreadable {why}; "
            f"{redo:,} of them are scenarios of this sweep, simulated again"
        )
    return f"1 row file in {store.rows_dir} is unreadable {why}" + (
        "; it is one of this sweep's scenarios, simulated again" if redo else ""
    )


def _ray_initialized() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized())


def _run(
    todo: list[Task],
    tables: dict[str, pa.Table],
    skipped: int,
    store: ResultStore,
    workers: int,
    backend: str,
    address: str | None,
    progress: Callable[[Progress], None] | None,
) -> Progress:
    started = time.perf_counter()
    state = Progress(0, len(todo), skipped, 0.0)
    if progress is not None:
        progress(state)
    if not todo:
        return state
    rows = (
        _ray(todo, tables, address)
        if backend == "ray"
        else _local(todo, tables, min(workers, len(todo)))
    )
    for row in rows:
        store.write_row(row)
        state.done += 1
        state.num_infeasible += row["status"] == "infeasible"
        state.elapsed_s = time.perf_counter() - started
        if progress is not None:
            progress(state)
    return state
