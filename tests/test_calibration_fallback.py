"""The fallback for GPUs without measurements, and its leave-one-GPU-out measurement."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from simulator.calibration.fallback import leave_one_out, recompute_leave_one_out
from simulator.calibration.grid import Grid
from simulator.calibration.profile import (
    Profile,
    Reference,
    load_profile,
    read_bytes,
    roofline_flop,
    roofline_latency_s,
    save_profile,
    transfer_scale,
)
from simulator.calibration.select import PROFILES_DIR, reference_for
from simulator.calibration.sources import Measurements

DATA = Path(__file__).resolve().parents[2] / "shared" / "calibration-data"

#: One GEMM per regime: memory bound (m = 1), near the ridge point (m = 160 on an A100,
#: where 2 m n k / P and the weight read take about as long), compute bound (m = 8192).
M_NODES = np.array([1.0, 160.0, 8192.0])
FEATS = {"m": M_NODES, "n": np.full(3, 4096.0), "k": np.full(3, 4096.0)}
#: Per shape: how much slower than its compute plus memory time a call runs.
SLOWDOWN = np.array([1.3, 2.0, 1.1])
FLOOR_S = 4e-6


def _true_latency_s(ref: Reference) -> np.ndarray:
    """A GPU family whose calls take a fixed floor plus SLOWDOWN x (FLOP / P + bytes / B)."""
    flop = roofline_flop("gemm_bfloat16", FEATS)
    nbytes = read_bytes("gemm_bfloat16", FEATS)
    return FLOOR_S + SLOWDOWN * (flop / ref.peak_bf16_flops + nbytes / ref.hbm_bytes_per_s)


def _profile_measured_on(gpu: str, ref: Reference) -> Profile:
    """The profile ``calibrate fit`` would make of ``_true_latency_s`` on ``ref``: one node
    per measured shape, log(measured / roofline), the floor kept."""
    values = np.log(_true_latency_s(ref) / roofline_latency_s("gemm_bfloat16", FEATS, ref))
    axes = (M_NODES, np.array([4096.0]), np.array([4096.0]))
    grid = Grid(("m", "n", "k"), axes, values.reshape(3, 1, 1), np.ones((3, 1, 1), np.int64))
    return Profile(gpu, ref, {"gemm_bfloat16": replace(grid, floor_s=FLOOR_S)})


def test_transfer_scale_is_compute_plus_memory_time_on_each_gpu():
    """Closed form on one GEMM: m = n = k = 1000 in 16 bits is 2e9 FLOP and 6e6 bytes; on
    100 TFLOP/s and 1 TB/s that is 20 + 6 us, on twice the FLOP/s 10 + 6 us: 16 / 26."""
    one = {"m": np.array([1000.0]), "n": np.array([1000.0]), "k": np.array([1000.0])}
    measured = Reference(100e12, None, 1e12, 1e11)
    target = Reference(200e12, None, 1e12, 1e11)
    scale = transfer_scale("gemm_bfloat16", one, measured, target)
    assert scale[0] == pytest.approx(16.0 / 26.0, rel=1e-12)
    # The roofline's max(compute, memory) would scale it by 10 / 20: the memory time was
    # not free on the measured GPU, nor is it on the target.
    roofline_ratio = roofline_latency_s("gemm_bfloat16", one, target) / roofline_latency_s(
        "gemm_bfloat16", one, measured
    )
    assert roofline_ratio[0] == pytest.approx(0.5)
    # Far from the ridge point: the FLOP/s ratio (compute bound), the bandwidth ratio
    # (memory bound), as before.
    big = {"m": np.array([1e6]), "n": np.array([1e5]), "k": np.array([1e5])}
    faster_dram = Reference(100e12, None, 4e12, 1e11)
    assert transfer_scale("gemm_bfloat16", big, measured, target)[0] == pytest.approx(0.5, 1e-2)
    tiny = {"m": np.array([1.0]), "n": np.array([8192.0]), "k": np.array([8192.0])}
    # (its compute time is 1 % of its memory time: 0.257)
    assert transfer_scale("gemm_bfloat16", tiny, measured, faster_dram)[0] == pytest.approx(
        0.25, 0.05
    )
    # FP8 GEMMs scale with the FP8 peaks (twice the 16-bit one where none is published).
    fp8 = transfer_scale("gemm_fp8", big, Reference(100e12, 400e12, 1e12, 1e11), measured)
    assert fp8[0] == pytest.approx(2.0, 1e-2)


def _decode_attention_of(nbytes: float) -> dict[str, np.ndarray]:
    """One decode-attention call reading about ``nbytes`` (a batch of 1 over 8 KV heads
    of 128; its 1 FLOP per byte is negligible at 1 PFLOP/s)."""
    context = nbytes / (2.0 * 8 * 128 * 2.0)
    return {
        "batch": np.array([1.0]),
        "context": np.array([context]),
        "kv_heads": np.array([8.0]),
        "head_dim": np.array([128.0]),
        "gqa": np.array([1.0]),
    }


def test_bytes_within_l2_scale_by_the_l2_rates_and_bytes_beyond_by_the_dram_rates():
    """A repeated call that fits both GPUs' L2 reads it on both: it scales by the ratio of
    their L2 rates (4 TB/s over 1 TB/s), not of their DRAM (1 over 0.5 TB/s); one far
    beyond both L2s scales by the DRAM ratio; without an L2 figure on either GPU every
    call scales by the DRAM ratio, as before."""
    measured = Reference(1e15, None, 1e12, 1e11, l2_bytes=1e9, l2_bytes_per_s=4e12)
    target = Reference(1e15, None, 0.5e12, 1e11, l2_bytes=1e7, l2_bytes_per_s=1e12)
    within = _decode_attention_of(1e5)
    beyond = _decode_attention_of(1e11)
    scale_within = transfer_scale("generation_attention", within, measured, target)[0]
    scale_beyond = transfer_scale("generation_attention", beyond, measured, target)[0]
    assert scale_within == pytest.approx(4.0, rel=0.01)
    assert scale_beyond == pytest.approx(2.0, rel=0.01)
    # Between the two L2 sizes: L2 on the measured GPU, DRAM on the target (4 / 0.5).
    between = transfer_scale("generation_attention", _decode_attention_of(1e8), measured, target)
    assert between[0] == pytest.approx(8.0, rel=0.01)
    unknown = replace(target, l2_bytes=None, l2_bytes_per_s=None)
    for feats in (within, beyond):
        assert transfer_scale("generation_attention", feats, measured, unknown)[0] == (
            pytest.approx(2.0, rel=0.01)
        )


def test_the_l2_figures_change_no_prediction_on_the_profiles_own_gpu():
    """A shipped profile read from its file takes its GPU's L2 from the catalog, and the
    catalog's reference of that GPU is still its own: no transfer, the measured latency."""
    profile = load_profile(PROFILES_DIR / "l40s.json")
    ref = reference_for("L40S")
    assert profile.reference.l2_bytes == ref.l2_bytes == 96 * 2**20
    assert profile.reference.boost_clock_hz == ref.boost_clock_hz == 2.52e9
    assert profile.reference == ref
    feats = _decode_attention_of(30e6)
    np.testing.assert_array_equal(
        profile.predict("generation_attention", feats, ref),
        profile.predict("generation_attention", feats),
    )


def test_the_l2_rate_is_the_measured_l40s_rate_per_sm_and_clock_and_never_below_dram():
    """L40S reads its L2 at the 1.8 TB/s its decode attention was measured at; A100 and
    H100 at their DRAM bandwidth (their kernels never read faster); GPUs without a
    published clock or L2 (A10G, B200, MI300X) have no L2 rate."""
    assert reference_for("L40S").l2_bytes_per_s == pytest.approx(1.8e12)
    for gpu in ("A100-80GB-SXM", "H100-SXM", "H200"):
        ref = reference_for(gpu)
        assert ref.l2_bytes_per_s == ref.hbm_bytes_per_s
    rtx = reference_for("RTX-PRO-6000")
    assert rtx.l2_bytes_per_s == pytest.approx(1.8e12 * 188 * 2.597e9 / (142 * 2.52e9), 1e-3)
    for gpu in ("A10G", "B200", "MI300X"):
        assert reference_for(gpu).l2_bytes_per_s is None


def test_a_borrowed_grid_recovers_a_known_scaling_exactly():
    """Calls that take a floor plus a per-shape multiple of (compute + memory time), as the
    fallback assumes, are predicted exactly on another GPU, in every regime; the
    roofline's max(compute, memory) missed the call near the ridge point. (Without the
    catalog's SM clocks, which would scale the floor as well.)"""
    a100 = replace(reference_for("A100-80GB-SXM"), boost_clock_hz=None)
    h100 = replace(reference_for("H100-SXM"), boost_clock_hz=None)
    profile = _profile_measured_on("A100-80GB-SXM", a100)
    np.testing.assert_allclose(
        profile.predict("gemm_bfloat16", FEATS), _true_latency_s(a100), rtol=1e-9
    )
    predicted = profile.predict("gemm_bfloat16", FEATS, h100)
    np.testing.assert_allclose(predicted, _true_latency_s(h100), rtol=1e-9)
    own = profile.predict("gemm_bfloat16", FEATS)
    max_rule = FLOOR_S + (own - FLOOR_S) * (
        roofline_latency_s("gemm_bfloat16", FEATS, h100)
        / roofline_latency_s("gemm_bfloat16", FEATS, a100)
    )
    assert max_rule[1] / _true_latency_s(h100)[1] - 1 > 0.25  # 27.7 % too slow


def test_a_borrowed_floor_runs_at_the_targets_sm_clock():
    """A GPU twice as fast in every figure, its SM clock included, runs every borrowed
    call in half the time, floor and all; without either clock the floor is kept as it
    was, so the calls near it are predicted slower than that, and only the part above one
    floor scales."""
    slow = Reference(100e12, None, 1e12, 1e11, boost_clock_hz=1.5e9)
    fast = Reference(200e12, None, 2e12, 2e11, boost_clock_hz=3e9)
    profile = _profile_measured_on("X", slow)
    own = profile.predict("gemm_bfloat16", FEATS)
    np.testing.assert_allclose(profile.predict("gemm_bfloat16", FEATS, fast), own / 2, rtol=1e-9)
    unclocked = replace(fast, boost_clock_hz=None)
    kept = profile.predict("gemm_bfloat16", FEATS, unclocked)
    np.testing.assert_allclose(kept, FLOOR_S + (own - FLOOR_S) / 2, rtol=1e-9)
    np.testing.assert_allclose(kept - own / 2, FLOOR_S / 2, rtol=1e-6)  # the kept floor
    # Either GPU's clock missing is enough to keep the floor unscaled.
    no_measured_clock = _profile_measured_on("X", replace(slow, boost_clock_hz=None))
    np.testing.assert_allclose(
        no_measured_clock.predict("gemm_bfloat16", FEATS, fast), kept, rtol=1e-9
    )


def test_a_borrowed_all_reduce_keeps_the_latency_of_its_gpu_count():
    """All-reduce on 2 and 8 GPUs: a latency that grows with the GPU count plus the ring
    time at some efficiency. On a GPU with twice the link bandwidth only the part above
    each count's latency halves (one family-wide floor would halve most of the 8-GPU
    latency too)."""
    ref = Reference(300e12, None, 2e12, 50e9)
    fast_link = Reference(300e12, None, 2e12, 100e9)
    gpus, sizes = np.array([2.0, 8.0]), np.array([256.0, 2.0**20, 2.0**28])
    g, size = np.meshgrid(gpus, sizes, indexing="ij")
    feats = {"num_gpus": g.ravel(), "message_bytes": size.ravel()}
    latency_s = np.where(feats["num_gpus"] == 2.0, 5e-6, 25e-6)
    ring_s = roofline_latency_s("allreduce", feats, ref)
    measured_s = latency_s + 1.5 * ring_s
    values = np.log(measured_s / ring_s).reshape(2, 3)
    grid = Grid(("num_gpus", "message_bytes"), (gpus, sizes), values, np.ones((2, 3), np.int64))
    profile = Profile("X", ref, {"allreduce": replace(grid, floor_s=5e-6)})
    borrowed = profile.predict("allreduce", feats, fast_link)
    # Each count's latency is its time for 256 B (which moves 256 B as well).
    first_s = np.repeat(measured_s.reshape(2, 3)[:, 0], 3)
    np.testing.assert_allclose(borrowed, first_s + (measured_s - first_s) / 2, rtol=1e-9)
    np.testing.assert_allclose(borrowed, latency_s + 1.5 * ring_s / 2, rtol=1e-3)
    # One GPU count and many sizes broadcast as the step model passes them.
    one = profile.predict("allreduce", {"num_gpus": 8.0, "message_bytes": sizes}, fast_link)
    np.testing.assert_allclose(one, borrowed[3:], rtol=1e-9)


def test_leave_one_out_never_reads_the_left_out_gpus_profile(tmp_path):
    """The left-out GPU's own file is unreadable here: the measurement reads only the
    relative's profile, saved and read again, and predicts through it what that profile
    predicts in memory."""
    h100 = reference_for("H100-SXM")
    a100_profile = _profile_measured_on("A100-80GB-SXM", reference_for("A100-80GB-SXM"))
    save_profile(a100_profile, tmp_path / "a100-80gb-sxm.json")
    (tmp_path / "h100-sxm.json").write_text("not a profile")
    meas = Measurements(
        gemm={
            "dtype": np.array(["bfloat16"] * 3, dtype=object),
            **{k: v.copy() for k, v in FEATS.items()},
            "latency_s": a100_profile.predict("gemm_bfloat16", FEATS, h100),
        }
    )
    result = leave_one_out(meas, "H100-SXM", h100, tmp_path)
    assert set(result) == {"gemm_bfloat16"}
    stats = result["gemm_bfloat16"]
    assert stats["borrowed_from"] == "A100-80GB-SXM"
    assert stats["n"] == 3
    assert stats["median_abs_pct"] < 0.1  # log-ratios stored to 1e-3
    assert stats["p90_abs_pct"] < 0.1


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/calibration-data")
def test_recompute_changes_only_the_leave_one_out_tables_and_ignores_own_grids(tmp_path):
    """Recomputing in place rewrites each profile's leave_one_out and nothing else; a GPU's
    result does not move when its own grids are replaced by nonsense."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    for name in ("b200.json", "gb200.json"):
        shutil.copy(PROFILES_DIR / name, folder / name)
    before = {p.name: load_profile(p) for p in folder.glob("*.json")}
    first = recompute_leave_one_out(folder, DATA / "aiconfigurator")
    assert set(first) == {"B200", "GB200"}
    assert {stats["borrowed_from"] for stats in first["B200"].values()} == {"GB200"}
    for path in folder.glob("*.json"):
        after, old = load_profile(path), before[path.name]
        assert after.errors_leave_one_out == first[after.gpu]
        assert after.errors == old.errors and after.provenance == old.provenance
        assert after.to_json()["grids"] == old.to_json()["grids"]
    # B200's grids 5 times slower: GB200 is predicted from them, B200 is not.
    b200 = load_profile(folder / "b200.json")
    b200.grids = {
        name: replace(grid, values=grid.values + np.log(5.0)) for name, grid in b200.grids.items()
    }
    save_profile(b200, folder / "b200.json")
    second = recompute_leave_one_out(folder, DATA / "aiconfigurator")
    assert second["B200"] == first["B200"]
    assert second["GB200"]["gemm_bfloat16"]["median_abs_pct"] > 100


def test_a_profile_on_a_gpu_it_is_no_relative_of_quotes_no_transfer_error():
    """A new-user pass: H100's profile given with --calibration on MI300X quoted H100's
    leave-one-GPU-out error (14 %, H100 predicted from A100), which says nothing of an AMD
    GPU; on H200, whose measured relative H100 is, the figure stays."""
    from simulator.calibration.select import PROFILES_DIR
    from simulator.scenario import Scenario, resolve

    h100 = str(PROFILES_DIR / "h100-sxm.json")
    amd = resolve(Scenario(gpus="1xMI300X", calibration=h100)).to_dict()["calibration"]
    assert amd.endswith(
        "applied to MI300X as efficiencies over its roofline; H100-SXM is no measured relative "
        "of MI300X: the error of this transfer is unmeasured"
    ), amd
    assert "leave-one-GPU-out" not in amd
    h200 = resolve(Scenario(gpus="1xH200", calibration=h100)).to_dict()["calibration"]
    assert "expect errors like a measured GPU predicted from its relative: GEMM median" in h200
