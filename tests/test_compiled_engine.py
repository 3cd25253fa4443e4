"""The fused engine's ahead-of-time build (``simulator/engine/compiled.py``).

- it is shipped for the current kernel sources, and used wherever its manifest says it can
  be (so the differential tests below never skip on the machine that built it);
- it replays exactly as numba's build of the same source: engine states bit for bit on
  random small scenarios (hypothesis) and on a realistic trace through ``simulate`` with
  every scheduler, router and engine feature;
- a replay with built-in policies imports no numba;
- a stale, foreign or broken build is refused, and numba's path runs.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from engine_cases import scenarios
from hypothesis import HealthCheck, given, settings
from test_engine import assert_same_state, replay_case

from simulator import Scenario, _numba_cache, simulate
from simulator._numba_cache import SHIPPED_DIR, kernel_hash, sources_hash
from simulator.engine import compiled, fused
from simulator.trace.importer import load_trace

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "traces"


def _manifest() -> dict:
    return json.loads((SHIPPED_DIR / kernel_hash() / "BUILD.json").read_text())


def _same_toolchain() -> bool:
    manifest = _manifest()
    return (
        manifest["numba"] == numba.__version__
        and manifest["python"] == sys.implementation.cache_tag
        and manifest["machine"] == platform.machine()
    )


needs_build = pytest.mark.skipif(
    not compiled.available(), reason="no ahead-of-time build for this interpreter or machine"
)


def test_the_extension_is_shipped_for_the_kernel_sources_and_used_where_it_can_be():
    manifest = _manifest()  # a missing folder: run python -m simulator.build_kernels
    assert manifest["sources_hash"] == sources_hash()
    assert manifest["ahead_of_time"] == compiled.file_name()
    assert compiled.shipped_path() == SHIPPED_DIR / kernel_hash() / compiled.file_name()
    assert compiled.shipped_path().is_file()
    if _same_toolchain():
        assert compiled.available(), "built for this interpreter and machine, yet not loaded"
        assert compiled.run_fused() is compiled.shipped_module().run_fused


def test_the_extension_counts_no_references():
    """Built without numba's runtime, as the kernels are jitted (``_nrt=False``): with it,
    pycc wrapped every call between kernels in atomic increments and decrements of each
    array argument's reference count."""
    shipped = compiled.shipped_path()
    assert shipped is not None
    assert b"NRT_incref" not in shipped.read_bytes()


def test_the_environment_can_ask_for_numbas_build(monkeypatch):
    monkeypatch.setenv("SIMREPLAY_AOT", "0")
    assert not compiled.available()
    assert compiled.run_fused() is fused.run_fused
    monkeypatch.setenv("SIMREPLAY_AOT", "1")
    monkeypatch.setenv("NUMBA_DISABLE_JIT", "1")
    assert not compiled.available()


def _replay_both(monkeypatch, run):
    """``run()`` through numba's build, then through the shipped extension."""
    monkeypatch.setenv("SIMREPLAY_AOT", "0")
    by_numba = run()
    monkeypatch.delenv("SIMREPLAY_AOT")
    assert compiled.available()
    return by_numba, run()


@needs_build
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scenarios(max_requests=16))
def test_both_builds_replay_random_scenarios_identically(monkeypatch, case):
    arrival, prompts, outputs, knobs = case
    by_numba, ahead = _replay_both(
        monkeypatch, lambda: replay_case(arrival, prompts, outputs, knobs, orchestration="fused")
    )
    assert_same_state(by_numba, ahead)
    np.testing.assert_array_equal(by_numba.rep_i, ahead.rep_i)  # P_LAST_RUN too: same path


@pytest.fixture(scope="module")
def chat():
    return load_trace(TRACES / "chat-1h.parquet").slice(0, 1500)


@pytest.fixture(scope="module")
def sessions():
    return load_trace(TRACES / "chat-sessions.parquet").slice(0, 800)


SCENARIOS = {
    "default": dict(gpus="4xA100"),
    "vllm-v0": dict(gpus="2xA100", scheduler="vllm-v0"),
    "sarathi": dict(gpus="2xA100", scheduler="sarathi"),
    "round-robin": dict(gpus="3xA100", router="round-robin"),
    "least-kv": dict(gpus="3xA100", router="least-kv"),
    "random": dict(gpus="3xA100", router="random", seed=7),
    "preempting": dict(gpus="1xL40S", max_num_seqs=512, gpu_memory_utilization=0.6),
    "pipeline": dict(gpus="4xA100", model="llama-3.1-70b", tp=2, pp=2),
    "moe": dict(gpus="2xH100", model="mixtral-8x7b", tp=2),
    "eager": dict(gpus="1xH100", enforce_eager=True),
}


@needs_build
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_both_builds_simulate_a_trace_identically(monkeypatch, chat, name):
    scenario = Scenario(**SCENARIOS[name])
    by_numba, ahead = _replay_both(monkeypatch, lambda: simulate(chat, scenario))
    assert by_numba.requests.equals(ahead.requests)
    assert by_numba.steps.equals(ahead.steps)
    assert json.dumps(by_numba.summary, sort_keys=True) == json.dumps(ahead.summary, sort_keys=True)


@needs_build
@pytest.mark.parametrize("router", ["prefix-aware", "session-affinity", "least-outstanding"])
def test_both_builds_replay_prefix_caching_identically(monkeypatch, sessions, router):
    scenario = Scenario(gpus="2xA100", enable_prefix_caching=True, router=router)
    by_numba, ahead = _replay_both(monkeypatch, lambda: simulate(sessions, scenario))
    assert by_numba.requests.equals(ahead.requests)
    assert by_numba.steps.equals(ahead.steps)


@needs_build
@pytest.mark.parametrize("scenario", ['gpus="2xA100"', 'gpus="2xA100", tp=2'])
def test_a_replay_with_built_in_policies_imports_no_numba(tmp_path, scenario):
    """At tp > 1 too: ``resolve`` times a prompt step for its all-reduce note, through the
    extension's ``step_time_parts_s`` (a docs pass: numba was imported for it, 171 MiB
    against the 100 the README gave)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "SIMREPLAY_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    code = f"""
import json, sys
from simulator import Scenario, simulate
from simulator.trace.importer import load_trace
result = simulate(load_trace("traces/chat-1h.parquet").slice(0, 300), Scenario({scenario}))
print(json.dumps([result.summary["num_completed"], "numba" in sys.modules]))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [300, False]


@needs_build
def test_the_extensions_step_time_parts_are_numbas():
    """``StepTimeModel.predict_parts`` runs the extension's copy of the kernel: the same
    floats as numba's, part by part, for prompt, decode and mixed steps, calibrated or not,
    with all-reduce and MoE parts."""
    from simulator.perf import kernel
    from simulator.perf.layout import NUM_PARTS
    from simulator.scenario import resolve

    aot = compiled.shipped_module().step_time_parts_s
    assert compiled.step_time_parts_s() is aot
    steps = [
        (2048, 1, 2048 * 2048 / 2.0, 2048, 0, 0),
        (0, 0, 0.0, 0, 64, 64 * 3000),
        (512, 2, 90_000.5, 700, 31, 31 * 1200),
        (1, 1, 0.5, 1, 1, 17),
        (0, 0, 0.0, 0, 0, 0),
    ]
    for scenario in (
        Scenario(gpus="4xA100", tp=4),
        Scenario(gpus="2xH100", model="mixtral-8x7b", tp=2),
        Scenario(gpus="2xMI300X", tp=2),
    ):
        params = resolve(scenario).step_model.params
        for features in steps:
            typed = tuple(np.int64(v) if isinstance(v, int) else v for v in features)
            ours, theirs = np.zeros(NUM_PARTS), np.zeros(NUM_PARTS)
            total = aot(params, *typed, ours)
            assert total == kernel.step_time_parts_s(params, *typed, theirs)
            assert np.array_equal(ours, theirs)
            assert (total > 0) == (features != (0, 0, 0.0, 0, 0, 0))


def _folder_for_this_platform(tmp_path: Path) -> Path:
    folder = tmp_path / "build"
    folder.mkdir()
    manifest = {"python": sys.implementation.cache_tag, "machine": platform.machine()}
    (folder / "BUILD.json").write_text(json.dumps(manifest))
    return folder


def test_a_broken_or_foreign_build_is_refused(tmp_path):
    folder = _folder_for_this_platform(tmp_path)
    path = folder / compiled.file_name()
    assert compiled.load(path) is None  # missing
    assert compiled.load(None) is None
    path.write_bytes(b"\x7fELF not really a shared library")
    assert compiled.load(path) is None  # the loader's ImportError
    if compiled.available():
        path.write_bytes(compiled.shipped_path().read_bytes())
        assert compiled.load(path) is not None
        for manifest in ({"python": "cpython-399", "machine": platform.machine()}, {}):
            (folder / "BUILD.json").write_text(json.dumps(manifest))
            assert compiled.load(path) is None
        for text in ("not json", "[1]"):
            (folder / "BUILD.json").write_text(text)
            assert compiled.load(path) is None


def test_an_edited_kernel_source_is_not_served_by_the_shipped_build(monkeypatch):
    """The extension is found through the kernel sources' hash: another finds nothing."""
    monkeypatch.setattr(_numba_cache, "sources_hash", lambda: "0123456789abcdef")
    assert compiled.shipped_path() is None
    assert compiled.load(compiled.shipped_path()) is None


def test_another_numba_keeps_the_shipped_extension(monkeypatch):
    """numba's cached kernels are for one numba version; the extension runs without numba,
    so a user with another numba still gets it."""
    found = compiled.shipped_path()
    monkeypatch.setattr(_numba_cache, "_numba_version_stamp", lambda: b"numba 9.99")
    assert kernel_hash() not in str(found)  # numba's cache would miss
    assert compiled.shipped_path() == found


def test_a_manifest_that_names_no_extension_finds_none(tmp_path):
    for manifest in ({"sources_hash": sources_hash()}, {"ahead_of_time": "x.so"}, "[1]", "{"):
        (tmp_path / "abc").mkdir(exist_ok=True)
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (tmp_path / "abc" / "BUILD.json").write_text(text)
        assert compiled.shipped_path(tmp_path) is None


def test_step_time_parts_of_a_strided_params_view_are_its_values():
    """A review: the extension reads params as a contiguous array, so a strided view (any
    caller may build one) summed to 1.08 ms where predict gave 9.05 ms."""
    import dataclasses

    from simulator.scenario import resolve

    model = resolve(Scenario(gpus="4xA100", tp=4)).step_model
    wide = np.zeros(2 * len(model.params))
    wide[::2] = model.params
    strided = dataclasses.replace(model, params=wide[::2])
    step = {"num_prefill_tokens": 512, "num_prefill_seqs": 1, "prefill_attn_work": 512 * 256.0}
    step |= {"prefill_context_tokens": 512, "num_decode_seqs": 8, "decode_context_tokens": 8000}
    assert strided.predict_parts(**step) == model.predict_parts(**step)
    assert sum(model.predict_parts(**step).values()) == pytest.approx(model.predict(**step))
