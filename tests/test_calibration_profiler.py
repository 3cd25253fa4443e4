"""``calibrate profile``: shapes, grids, file format (against AIConfigurator's), CLI errors.

Everything runs on CPU with tiny shapes. Tests that need torch skip without it (the
``profile`` extra); the missing-torch error is tested everywhere.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from simulator.calibration import profiler
from simulator.calibration.profiler import (
    CONTEXT_ATTENTION_SCHEMA,
    GEMM_SCHEMA,
    GENERATION_ATTENTION_SCHEMA,
    META_FILE,
    NCCL_SCHEMA,
    TABLES,
    AttentionShape,
    ProfileGrid,
    Timing,
)
from simulator.cli.calibrate_profile import profile
from simulator.errors import SimreplayError
from simulator.models import get_model, load_hf_config

AIC = Path(__file__).resolve().parents[2] / "shared" / "calibration-data" / "aiconfigurator"
#: The newest systems' files: every column, in order, with its type.
AIC_REFERENCE_SYSTEM = "h100_sxm"

TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
    "vocab_size": 1000,
    "max_position_embeddings": 4096,
    "hidden_act": "silu",
}
#: Distinct (n, k) of TINY_CONFIG at TP 1 and 2, worked out by hand (vocab 1000 pads to 1024):
#: TP1 qkv (4+2*2)*64=512 x 256, o 256 x 256, gate_up 1024 x 256, down 256 x 512,
#: lm_head 1024 x 256; TP2 qkv (2+2*1)*64=256 x 256, o 256 x 128, gate_up 512 x 256,
#: down 256 x 256, lm_head 512 x 256.
TINY_GEMM_NK = [(256, 128), (256, 256), (256, 512), (512, 256), (1024, 256)]

TINY_GRID = ProfileGrid(
    gemm_tokens=(1, 8, 32),
    prefill_batch_sizes=(1, 2),
    prefill_lengths=(16, 32),
    max_prefill_tokens=32,
    decode_batch_sizes=(1, 4),
    decode_context_lengths=(16, 64),
    max_decode_kv_bytes=1 << 20,
    allreduce_elements=(1024,),
)
FAST = {"warmup": 0, "repeats": 1}


@pytest.fixture
def torch():
    """torch (or skip), with one intra-op thread: on a loaded 2-core machine a second
    thread's barrier waits for the scheduler and turns 0.5 ms into 30 ms at random."""
    module = pytest.importorskip("torch")
    threads = module.get_num_threads()
    module.set_num_threads(1)
    yield module
    module.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "config.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return path


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory, tiny_config):
    """One profile of the tiny model at TP 1 and 2, written by ``run_profile``."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("profile") / "tiny"
    request = profiler.plan_profile(
        "cpu", [load_hf_config(tiny_config)], [1, 2], grid=TINY_GRID, **FAST
    )
    results, meta = profiler.run_profile(request, out)
    return out, results, meta


def _aic_file(name: str, system: str = AIC_REFERENCE_SYSTEM) -> Path:
    files = sorted((AIC / system).rglob(name))
    assert files, f"{name} not found under {AIC / system}"
    return files[0]


def _columns(schema: pa.Schema) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in schema]


# --------------------------------------------------------------------------- file format


@pytest.mark.parametrize("table", sorted(TABLES))
def test_declared_schemas_are_aiconfigurators(table):
    if not AIC.is_dir():
        pytest.skip("../shared/calibration-data is not present")
    file_name, schema = TABLES[table]
    published = pq.read_schema(_aic_file(file_name))
    assert _columns(schema) == _columns(published)
    # Other systems' files may lack newer columns (A100's attention has no window_size) or
    # store text as large_string (B200's attention), but never disagree otherwise.
    ours = dict(_columns(schema))
    for path in AIC.glob(f"*/**/{file_name}"):
        for name, kind in _columns(pq.read_schema(path)):
            assert ours.get(name) == kind.replace("large_string", "string"), (path, name, kind)


def test_written_files_have_exactly_the_declared_columns(tiny_profile):
    out, results, meta = tiny_profile
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(
        [META_FILE, "gemm_perf.parquet", "context_attention_perf.parquet",
         "generation_attention_perf.parquet"]
    )  # fmt: skip
    for name, schema in (
        ("gemm_perf.parquet", GEMM_SCHEMA),
        ("context_attention_perf.parquet", CONTEXT_ATTENTION_SCHEMA),
        ("generation_attention_perf.parquet", GENERATION_ATTENTION_SCHEMA),
    ):
        table = pq.read_table(out / name)
        assert _columns(table.schema) == _columns(schema), name
        if AIC.is_dir():
            assert _columns(table.schema) == _columns(pq.read_schema(_aic_file(name))), name
        latency = table.column("latency").to_pylist()
        assert table.num_rows > 0 and all(v > 0 for v in latency), name
    assert meta["tables"]["nccl_perf"]["status"] == "skipped"
    assert "cpu" in meta["tables"]["nccl_perf"]["reason"]
    on_disk = json.loads((out / META_FILE).read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert on_disk["timing"]["statistic"] == "median"
    assert on_disk["runtime"]["torch"] and on_disk["device"]["type"] == "cpu"
    assert {t: on_disk["tables"][t]["rows"] for t in ("gemm_perf",)} == {
        "gemm_perf": len(TINY_GEMM_NK) * len(TINY_GRID.gemm_tokens)
    }


def test_the_gemm_grid_is_every_distinct_layer_shape_times_every_token_count(tiny_profile):
    out, _, meta = tiny_profile
    table = pq.read_table(out / "gemm_perf.parquet")
    got = list(zip(*(table.column(c).to_pylist() for c in ("n", "k", "m")), strict=True))
    expected = [(n, k, m) for n, k in TINY_GEMM_NK for m in TINY_GRID.gemm_tokens]
    assert got == expected
    assert set(table.column("gemm_dtype").to_pylist()) == {"float32"}
    layers = {(s["tp"], s["layer"]): (s["n"], s["k"]) for s in meta["gemm_shapes"]}
    assert layers[(2, "qkv")] == (256, 256) and layers[(1, "lm_head")] == (1024, 256)


def test_decode_rows_follow_aiconfigurators_isl_and_step_convention(tiny_profile):
    out, _, _ = tiny_profile
    table = pq.read_table(out / "generation_attention_perf.parquet")
    assert set(table.column("isl").to_pylist()) == {1}
    # step = tokens already cached; the query attends to step + 1 keys.
    assert sorted(set(table.column("step").to_pylist())) == [15, 63]
    # TP 1 and 2 of the tiny model: 4/2 and 2/1 heads/KV heads per GPU, head_dim 64.
    shapes = set(zip(table.column("num_heads").to_pylist(),
                     table.column("num_key_value_heads").to_pylist(), strict=True))  # fmt: skip
    assert shapes == {(4, 2), (2, 1)}
    if AIC.is_dir():
        published = pq.read_table(_aic_file("generation_attention_perf.parquet"))
        assert set(published.column("isl").to_pylist()) == {1}
        steps = set(published.column("step").to_pylist())
        assert all((s + 1) & s == 0 for s in steps), "published decode steps are 2^j - 1"
    prefill = pq.read_table(out / "context_attention_perf.parquet")
    assert set(prefill.column("step").to_pylist()) == {0}
    pairs = list(zip(prefill.column("batch_size").to_pylist(), prefill.column("isl").to_pylist(),
                     strict=True))  # fmt: skip
    assert pairs == [(1, 16), (2, 16), (1, 32)] * 2  # batch x length <= 32, per head shape


def test_the_same_options_measure_the_same_points(tiny_config, tmp_path, torch):
    def keys(out: Path) -> dict[str, pa.Table]:
        return {
            name: pq.read_table(out / name).drop(["latency"])
            for name in sorted(p.name for p in out.glob("*.parquet"))
        }

    spec = load_hf_config(tiny_config)
    tables = []
    for run in ("a", "b"):
        request = profiler.plan_profile("cpu", [spec], [1, 2], grid=TINY_GRID, **FAST)
        profiler.run_profile(request, tmp_path / run)
        tables.append(keys(tmp_path / run))
    assert tables[0].keys() == tables[1].keys() and len(tables[0]) == 3
    for name in tables[0]:
        assert tables[0][name].equals(tables[1][name]), name


# --------------------------------------------------------------------------- shapes


def test_llama_3_1_8b_shards_as_vllm_shards_it():
    spec = get_model("llama-3.1-8b")
    tp2 = {s.layer: (s.n, s.k) for s in profiler.gemm_shapes(spec, 2)}
    assert tp2 == {
        "qkv": ((16 + 2 * 4) * 128, 4096),
        "o": (4096, 2048),
        "gate_up": (2 * 7168, 4096),
        "down": (4096, 7168),
        "lm_head": (128256 // 2, 4096),
    }
    # More GPUs than KV heads: each GPU keeps one replicated KV head.
    tp16 = {s.layer: (s.n, s.k) for s in profiler.gemm_shapes(spec, 16)}
    assert tp16["qkv"] == ((2 + 2 * 1) * 128, 4096)
    assert profiler.attention_shape(spec, 16) == AttentionShape("llama-3.1-8b", 16, 2, 1, 128)


def test_plain_mlp_and_moe_models_get_their_own_layers():
    phi = {s.layer: (s.n, s.k) for s in profiler.gemm_shapes(get_model("phi-2"), 1)}
    assert phi["up"] == (10240, 2560) and "gate_up" not in phi
    assert phi["lm_head"] == (51200, 2560)  # already a multiple of 64
    mixtral = {s.layer: (s.n, s.k) for s in profiler.gemm_shapes(get_model("mixtral-8x7b"), 2)}
    assert mixtral["router"] == (8, 4096) and "down" not in mixtral


def test_a_tp_the_model_cannot_use_is_dropped_with_a_note(torch):
    qwen = get_model("qwen2.5-7b")  # 28 heads: TP 8 does not divide them
    request = profiler.plan_profile("cpu", [qwen], [1, 8], grid=TINY_GRID, **FAST)
    assert request.tps == (1, 8) and {s.tp for s in request.gemm} == {1}
    assert any("28 attention heads" in n for n in request.notes)
    with pytest.raises(SimreplayError, match="none splits qwen2.5-7b"):
        profiler.plan_profile("cpu", [qwen], [8], grid=TINY_GRID, **FAST)


def test_default_grids_respect_their_caps():
    grid = profiler.default_grid("cuda", max_tokens=8192, max_context=32768)
    assert grid.gemm_tokens[0] == 1 and grid.gemm_tokens[-1] == 8192
    assert all(b * s <= 8192 for b, s in profiler.prefill_points(grid))
    assert grid.decode_context_lengths[-1] == 32768
    shape = AttentionShape("m", 1, 32, 8, 128)
    for b, c in profiler.decode_points(grid, shape, 2):
        assert 2 * b * c * 8 * 128 * 2 <= grid.max_decode_kv_bytes
    quick = profiler.default_grid("cpu", quick=True)
    assert quick.gemm_tokens == (1, 4, 16, 64)
    odd = profiler.default_grid("cpu", max_tokens=100)
    assert odd.gemm_tokens[-1] == 100  # the cap itself is measured
    with pytest.raises(SimreplayError, match="--max-tokens 0"):
        profiler.default_grid("cpu", max_tokens=0)


# --------------------------------------------------------------------------- physics


def _latency(result, key: str) -> dict[int, float]:
    table = result.table
    return dict(
        zip(table.column(key).to_pylist(), table.column("latency").to_pylist(), strict=True)
    )


def test_gemm_latency_grows_with_tokens_at_large_m(torch):
    result = profiler.profile_gemm(
        torch.device("cpu"), torch.float32, [(512, 512)], [64, 4096], Timing(warmup=1, repeats=5)
    )
    by_m = _latency(result, "m")
    # 64x the FLOPs; even a loaded 2-core machine shows far more than 4x.
    assert by_m[4096] > 4 * by_m[64], by_m


def test_attention_latency_grows_with_sequence_length(torch):
    cpu, timing = torch.device("cpu"), Timing(warmup=1, repeats=5)
    shape = [AttentionShape("m", 1, 8, 2, 64)]
    grid = ProfileGrid((1,), (1,), (64, 2048), 2048, (4,), (128, 32768), 1 << 30, (1,))
    prefill = _latency(profiler.profile_attention("context", cpu, torch.float32, shape, grid,
                                                  timing), "isl")  # fmt: skip
    assert prefill[2048] > 4 * prefill[64], prefill  # 1,024x the score FLOPs
    decode = _latency(profiler.profile_attention("generation", cpu, torch.float32, shape, grid,
                                                 timing), "step")  # fmt: skip
    assert decode[32767] > 4 * decode[127], decode  # 256x the KV bytes read


def test_cpu_timing_is_the_median_of_the_timed_calls_after_warmup(torch):
    """Calls that sleep known times: warm-up calls are dropped and the median is kept."""
    import time

    # 2 warm-up calls, then 3 timed: median 5 ms, mean 22 ms, median with warm-up 60 ms.
    durations_ms = iter([200.0, 200.0, 1.0, 60.0, 5.0])

    def op():
        time.sleep(next(durations_ms) / 1e3)

    median_ms = profiler.time_op(op, torch.device("cpu"), Timing(warmup=2, repeats=3))
    assert 5.0 <= median_ms < 20.0, median_ms  # room for a loaded machine's late wake-ups


def test_gqa_sdpa_matches_the_expanded_reference(torch):
    """The timed call computes real attention: GQA equals explicitly repeated KV heads."""
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, h, 5, 16, generator=gen) for h in (8, 2, 2))
    got = profiler._sdpa_call(torch, q, k, v, causal=True)()
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(4, dim=1), v.repeat_interleave(4, dim=1), is_causal=True
    )
    assert torch.allclose(got, ref, atol=1e-5)


def test_allreduce_runs_in_spawned_processes(torch):
    """The all-reduce worker, on gloo across 2 CPU processes (NCCL needs 2 GPUs)."""
    result = profiler.profile_allreduce(
        [2], torch.float32, [1024, 65536], Timing(warmup=1, repeats=2), backend="gloo"
    )
    assert result.skipped == [] and result.status == "complete"
    table = result.table
    assert _columns(table.schema) == _columns(NCCL_SCHEMA)
    assert table.column("num_gpus").to_pylist() == [2, 2]
    assert table.column("message_size").to_pylist() == [1024, 65536]
    assert table.column("nccl_dtype").to_pylist() == ["float", "float"]
    assert all(v > 0 for v in table.column("latency").to_pylist())


# --------------------------------------------------------------------------- CLI

runner = CliRunner()
_app = typer.Typer()
_app.command()(profile)


def invoke(*args):
    return runner.invoke(_app, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_cli_writes_the_profile_and_prints_a_summary(tiny_config, tmp_path, torch):
    out = tmp_path / "gpu"
    args = ["--device", "cpu", "--quick", "--model", tiny_config, "--max-tokens", 16,
            "--warmup", 0, "--repeats", 1, "-o", out]  # fmt: skip
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert "gemm_perf.parquet" in result.stdout and "nccl_perf: skipped" in result.stdout
    assert "gemm: done" in result.stderr
    assert (out / "gemm_perf.parquet").is_file() and (out / META_FILE).is_file()
    assert pq.read_table(out / "gemm_perf.parquet").column("m").to_pylist()[:3] == [1, 4, 16]
    (out / "stale.txt").write_text("from before")
    result = invoke(*args, "--force", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["tables"]["gemm_perf"]["rows"] == 3 * 4  # 4 distinct (n, k) at TP 1
    assert not (out / "stale.txt").exists()
    # A second QA pass: what --force removes beyond a profile's own files is named.
    assert "note: --force removed 1 file of" in result.stderr and "stale.txt" in result.stderr
    assert _leftovers(tmp_path) == []


def test_cli_says_that_float32_rows_cannot_be_fitted(tiny_config, tmp_path, torch):
    """Found by QA: ``profile --device cpu`` (float32 by default) then ``fit``, as the README
    chains them, ended at fit with "no ... rows that can be fitted"; profile said nothing."""
    args = ["--device", "cpu", "--quick", "--model", tiny_config, "--max-tokens", 16,
            "--warmup", 0, "--repeats", 1]  # fmt: skip
    note = (
        "note: float32 rows are not fitted by `calibrate fit` (it fits the 16-bit and FP8 "
        "operators vLLM serves with); measure with --dtype bf16 to fit this profile"
    )
    result = invoke(*args, "-o", tmp_path / "fp32")
    assert result.exit_code == 0, result.stderr
    assert note in result.stderr.splitlines()
    result = invoke(*args, "--dtype", "bf16", "-o", tmp_path / "bf16")
    assert result.exit_code == 0, result.stderr
    assert "float32 rows" not in result.stderr


def test_cli_refuses_a_non_empty_output_directory(tiny_config, tmp_path, torch):
    out = tmp_path / "gpu"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = invoke("--device", "cpu", "--quick", "--model", tiny_config, "-o", out)
    assert_one_line_error(result, "not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--model", "no-such-model"], ["unknown model 'no-such-model'"]),
        (["--tp", "0"], ["--tp 0", "positive integers"]),
        (["--tp", "2,x"], ["--tp 2,x"]),
        (["--dtype", "fp64"], ["--dtype fp64", "bf16"]),
        (["--device", "tpu"], ["--device tpu", "cpu, cuda"]),
        (["--repeats", "0"], ["--repeats 0"]),
        (["--attention", "xformers"], ["--attention xformers"]),
    ],
)
def test_cli_bad_options_are_one_line_errors_and_write_nothing(args, fragments, tmp_path, torch):
    out = tmp_path / "gpu"
    result = invoke("--device", "cpu", "--quick", "-o", out, *args)
    assert_one_line_error(result, *fragments)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_cli_without_torch_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    out = tmp_path / "gpu"
    result = invoke("--device", "cpu", "-o", out)
    assert_one_line_error(result, "torch is not installed", "pip install -e '.[profile]'")
    assert not out.exists()


def test_cli_cuda_without_a_gpu_is_an_error(tmp_path, torch):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    out = tmp_path / "gpu"
    result = invoke("--device", "cuda", "--quick", "-o", out)
    assert_one_line_error(result, "--device cuda", "no CUDA GPU", "--device cpu")
    assert not out.exists()


def test_a_failure_while_measuring_leaves_no_output(tiny_config, tmp_path, monkeypatch, torch):
    def fail(*args, **kwargs):
        raise SimreplayError("decode attention failed")

    monkeypatch.setattr(profiler, "profile_attention", fail)
    out = tmp_path / "gpu"
    result = invoke("--device", "cpu", "--quick", "--model", tiny_config, "--max-tokens", 4,
                    "--warmup", 0, "--repeats", 1, "-o", out)  # fmt: skip
    assert result.exit_code == 1, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: decode attention failed"], result.stderr  # after progress lines
    assert not out.exists() and _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- CUDA paths, faked
# No GPU in CI: these replace torch.cuda's events, streams and graphs with host-clock fakes
# to check the control flow of the CUDA timer (warm-up, calls per sample, graph replay,
# fallback when capture fails) and the flash-attn call layouts against flash-attn's
# documented signatures.


class _FakeCuda:
    """torch.cuda stand-ins: events read the host clock, a graph records the calls made
    while capturing and replays them."""

    def __init__(self, fail_capture: bool = False):
        self.capturing = None
        self.fail_capture = fail_capture

    def install(self, monkeypatch, torch):
        import contextlib
        import time

        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                self.t = None

            def record(self, stream=None):
                self.t = time.perf_counter()

            def elapsed_time(self, end):
                return (end.t - self.t) * 1e3

        class Stream:
            def __init__(self, device=None):
                pass

            def wait_stream(self, other):
                pass

        class CUDAGraph:
            def __init__(self):
                self.calls = []

            def replay(self):
                for call in self.calls:
                    call()

        @contextlib.contextmanager
        def graph(cuda_graph, stream=None, **kwargs):
            if fake.fail_capture:
                raise RuntimeError("operation not permitted when stream is capturing")
            fake.capturing = cuda_graph
            try:
                yield
            finally:
                fake.capturing = None

        for name, value in {
            "Event": Event,
            "Stream": Stream,
            "CUDAGraph": CUDAGraph,
            "graph": graph,
            "device": lambda device: contextlib.nullcontext(),
            "stream": lambda stream: contextlib.nullcontext(),
            "current_stream": lambda device=None: Stream(),
            "synchronize": lambda device=None: None,
        }.items():
            monkeypatch.setattr(torch.cuda, name, value)

    def op(self, per_call_ms: float, counter: list[int]):
        """An operator that sleeps; while capturing, it is recorded instead of run."""
        import time

        def run():
            counter[0] += 1
            time.sleep(per_call_ms / 1e3)

        def call():
            if self.capturing is not None:
                self.capturing.calls.append(run)
            else:
                run()

        return call


@pytest.mark.parametrize("mode", ["graph", "capture fails", "eager"])
def test_cuda_timer_divides_each_sample_by_its_calls(mode, monkeypatch, torch):
    fake = _FakeCuda(fail_capture=mode == "capture fails")
    fake.install(monkeypatch, torch)
    runs = [0]
    # min_sample_ms this large makes every sample hold max_inner = 4 calls.
    timing = Timing(warmup=2, repeats=3, cuda_graph=mode != "eager", min_sample_ms=1e6, max_inner=4)
    stats = profiler._TimingStats()
    per_call_ms = profiler.time_op(fake.op(2.0, runs), torch.device("cuda", 0), timing, stats)
    assert 2.0 <= per_call_ms < 6.0, per_call_ms
    # 2 warm-up + 1 first timed call (+ 1 side-stream warm-up before a capture) + (1 upload
    # + 3 timed samples) x 4 calls.
    side = 0 if mode == "eager" else 1
    assert runs[0] == 2 + 1 + side + 4 * 4
    assert (stats.graph_points, stats.eager_points) == ((1, 0) if mode == "graph" else (0, 1))
    if mode == "capture fails":
        assert stats.graph_failures == ["operation not permitted when stream is capturing"]


def test_flash_attn_calls_follow_its_documented_layouts(monkeypatch, torch):
    """A stand-in flash_attn checks our arguments against flash-attn 2's signatures
    (``flash_attn_varlen_func``: packed (tokens, heads, dim) with int32 cumulative lengths;
    ``flash_attn_with_kvcache``: (batch, 1, heads, dim) queries, (batch, context, KV heads,
    dim) caches, int32 cache lengths) and answers with SDPA."""
    import types

    calls = []

    def varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, **kwargs):
        assert kwargs == {"causal": True}
        assert q.dim() == 3 and k.shape == v.shape and k.shape[0] == q.shape[0]
        assert cu_seqlens_q.dtype == torch.int32 and torch.equal(cu_seqlens_q, cu_seqlens_k)
        assert max_seqlen_q == max_seqlen_k == 12
        assert cu_seqlens_q.tolist() == [0, 12, 24, 36] and q.shape == (36, 8, 16)
        assert k.shape == (36, 2, 16)
        calls.append("varlen")
        packed = (x.reshape(3, 12, x.shape[1], 16).transpose(1, 2) for x in (q, k, v))
        out = torch.nn.functional.scaled_dot_product_attention(
            *packed, is_causal=True, enable_gqa=True
        )
        return out.transpose(1, 2).reshape(q.shape)

    def with_kvcache(q, k_cache, v_cache, **kwargs):
        assert set(kwargs) == {"cache_seqlens"}
        assert q.shape == (3, 1, 8, 16) and k_cache.shape == v_cache.shape == (3, 40, 2, 16)
        lengths = kwargs["cache_seqlens"]
        assert lengths.dtype == torch.int32 and lengths.tolist() == [40, 40, 40]
        calls.append("kvcache")
        out = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k_cache.transpose(1, 2), v_cache.transpose(1, 2), enable_gqa=True
        )
        return out.transpose(1, 2)

    fake = types.SimpleNamespace(
        flash_attn_varlen_func=varlen, flash_attn_with_kvcache=with_kvcache, __version__="0"
    )
    monkeypatch.setitem(sys.modules, "flash_attn", fake)
    shape = AttentionShape("m", 1, 8, 2, 16)
    cpu, f32, gen = torch.device("cpu"), torch.float32, torch.Generator().manual_seed(5)
    prefill = profiler._prefill_call(torch, "flash-attn", shape, 3, 12, cpu, f32, gen)()
    decode = profiler._decode_call(torch, "flash-attn", shape, 3, 40, cpu, f32, gen)()
    assert calls == ["varlen", "kvcache"]
    assert prefill.shape == (36, 8, 16) and decode.shape == (3, 1, 8, 16)
    assert profiler.attention_backend(cpu, f32, "auto") == "sdpa"  # flash-attn is CUDA-only
    with pytest.raises(SimreplayError, match="needs --device cuda"):
        profiler.attention_backend(cpu, f32, "flash-attn")


def test_force_replaces_only_a_previous_profiles_folder(tmp_path):
    """Found by QA: ``--force`` deleted any non-empty ``-o`` folder once the profile was
    measured (``-o ~ --force`` would have removed a home directory); it now replaces only a
    folder a profile run wrote (its collection_meta.json), as the option's help says."""
    from simulator.calibration.profiler import check_out_dir

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(SimreplayError, match="--force replaces only a previous profile's"):
        check_out_dir(mine, force=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    (mine / META_FILE).write_text("{}")
    assert check_out_dir(mine, force=True) == mine


def test_the_cpu_allocators_refusal_counts_as_out_of_memory(torch):
    """QA (stop 36): a GEMM weight the CPU could not hold ("DefaultCPUAllocator: can't
    allocate memory") ended `calibrate profile --device cpu` in a traceback; CUDA's
    out-of-memory error was already a skipped point."""
    with pytest.raises(RuntimeError) as info:
        torch.empty(1 << 62, dtype=torch.uint8)
    assert profiler._is_oom(info.value)
    assert profiler._is_oom(MemoryError())
    assert not profiler._is_oom(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_an_out_folder_that_cannot_be_made_is_refused_before_measuring(tmp_path):
    """QA (stop 36): `-o /proc/nope` failed after the banner, naming the run's own
    temporary folder."""
    from simulator.calibration.profiler import check_out_dir

    if Path("/proc").is_dir():
        with pytest.raises(
            SimreplayError, match=r"^-o /proc/nope: cannot create a folder in /proc"
        ):
            check_out_dir(Path("/proc/nope"), force=False)
    assert check_out_dir(tmp_path / "new", force=False) == tmp_path / "new"
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing


def test_temporaries_of_a_killed_run_are_removed(tmp_path):
    """QA (stop 36): a run killed with SIGKILL left `.NAME.PID.tmp/`, which no later run
    removed; a running process's are kept."""
    import os

    from simulator.calibration.profiler import check_out_dir

    dead = tmp_path / ".k4.999999999.tmp"
    old = tmp_path / ".k4.999999999.old"
    alive = tmp_path / f".k4.{os.getpid()}.tmp"
    other = tmp_path / ".k4.notes"
    for folder in (dead, old, alive, other):
        folder.mkdir()
    check_out_dir(tmp_path / "k4", force=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])


def test_dtype_is_read_in_any_case_as_device_is(tiny_config, tmp_path, torch):
    """QA (stop 36): --device CPU was read, --dtype BF16 refused."""
    args = ["--device", "CPU", "--dtype", "BF16", "--quick", "--model", tiny_config,
            "--max-tokens", 4, "--warmup", 0, "--repeats", 1, "-o", tmp_path / "p"]  # fmt: skip
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "p" / META_FILE).read_text())["dtype"] == "bfloat16"
