"""The prefix cache: numba engine against the reference, invariants, and the Mooncake trace.

- differential: hypothesis traces whose prompts share prefixes, replayed by the numba engine
  and by ``tests/reference_engine.py`` (which keeps an explicit block table per request and
  checks reference counts, the free queue and capacity after every step);
- fused and simpy orchestrations agree with the cache-aware routers;
- caching on without ``hash_ids`` equals caching off unless a request is preempted, when
  its readmission finds its own blocks;
- the chained ids and the hash table against plain Python dicts;
- one replica with room for everything hits exactly the trace's own repeats (Mooncake).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from engine_cases import kv_pressure_table, scenarios
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_engine import simulate_reference
from test_engine import (
    DYADIC,
    assert_matches_reference,
    dyadic_params_variants,
    log_rows,
    replay_case,
)

from simulator.engine.prefix_cache import _find_slot, _table_delete, _table_put, find_block
from simulator.engine.prefix_keys import chain_block_ids, prefix_inputs, session_indices
from simulator.engine.state import (
    CFG_NUM_KV_BLOCKS,
    CFG_PCACHE_BASE,
    FINISHED,
    L_HIT_TOKENS,
    L_QUERY_TOKENS,
    NUM_P_INT,
    P_NUM_CACHED,
    R_CACHED_TOKENS,
    R_FINISH_S,
    R_PREEMPTIONS,
    R_REPLICA,
    R_STATUS,
    make_config,
    make_prefix_cache,
    pcache_base,
)
from simulator.perf import kernel, layout

MOONCAKE = Path(__file__).resolve().parents[2] / "shared/traces/mooncake/conversation_trace.jsonl"


@st.composite
def shared_prefix_cases(draw):
    """A ``scenarios()`` case with hash_ids drawn so that prompts share prefixes.

    Each request's ids extend one of a few "documents" (common prefixes) by a private tail;
    its prompt covers its ids' blocks, the last possibly in part.
    """
    arrival, prompts, outputs, knobs = draw(scenarios(max_requests=12))
    knobs["scheduler"] = draw(st.sampled_from(["vllm", "sarathi"]))
    knobs["router"] = draw(
        st.sampled_from(["round-robin", "least-outstanding", "least-kv", "prefix-aware"])
    )
    knobs.pop("route_draws", None)
    hash_block = draw(st.sampled_from([1, 2, 4, 8]))
    documents = draw(
        st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=6), min_size=1, max_size=3)
    )
    hash_ids = []
    prompts = prompts.copy()
    for i in range(len(prompts)):
        doc = documents[draw(st.integers(0, len(documents) - 1))]
        shared = doc[: draw(st.integers(0, len(doc)))]
        tail = [1000 + 10 * i + k for k in range(draw(st.integers(0, 3)))]
        ids = shared + tail
        if ids and draw(st.booleans()):
            # The prompt covers the ids' blocks, the last one partly.
            prompts[i] = max(1, len(ids) * hash_block - draw(st.integers(0, hash_block - 1)))
        hash_ids.append(ids)
    knobs["prefix_load_cap"] = draw(st.integers(0, 3))
    return arrival, prompts, outputs, knobs, hash_ids, hash_block


def _list_array(hash_ids) -> pa.Array:
    return pa.array(hash_ids, pa.list_(pa.int64()))


def replay_cached(arrival, prompts, outputs, knobs, hash_ids, hash_block, **extra):
    prefix = prefix_inputs(
        None if hash_ids is None else _list_array(hash_ids),
        np.asarray(prompts),
        hash_block_tokens=None if hash_ids is None else hash_block,
        block_size=knobs["block_size"],
    )
    engine_knobs = {k: v for k, v in knobs.items() if k != "prefix_load_cap"}
    return replay_case(
        arrival,
        prompts,
        outputs,
        engine_knobs,
        prefix=prefix,
        prefix_load_cap=knobs.get("prefix_load_cap", 8),
        **extra,
    )


def check_against_reference(
    arrival,
    prompts,
    outputs,
    knobs,
    hash_ids,
    hash_block,
    *,
    params=DYADIC,
    sessions=None,
    next_turn=None,
    prefix=None,
    reserve_full_isl: bool = True,
):
    """Replay with the cache in the reference and the numba engine; assert they agree per
    request, per step run, in cached tokens and hit totals, and that the cache drains.
    ``reserve_full_isl``: vLLM's whole-prompt admission, or v0.11's first-chunk one."""
    ref = simulate_reference(
        arrival,
        prompts,
        outputs,
        step_time_fn=lambda *features: kernel.step_time_s.py_func(params, *features),
        async_scheduling=params[kernel.ASYNC_SCHEDULING] != 0.0,
        enable_prefix_caching=True,
        hash_ids=hash_ids,
        hash_block_size=hash_block,
        session_ids=sessions,
        next_turn=next_turn,
        reserve_full_isl=reserve_full_isl,
        **knobs,
    )
    extra = {"params": params, "reserve_full_isl": reserve_full_isl}
    if sessions is not None:
        extra["session_idx"] = session_indices(pa.array(sessions), len(sessions))
    if prefix is None:
        state = replay_cached(arrival, prompts, outputs, knobs, hash_ids, hash_block, **extra)
    else:
        engine_knobs = {k: v for k, v in knobs.items() if k != "prefix_load_cap"}
        state = replay_case(arrival, prompts, outputs, engine_knobs, prefix=prefix, **extra)
    assert_matches_reference(state, ref)
    np.testing.assert_array_equal(
        np.maximum(state.req_i[:, R_CACHED_TOKENS], 0), ref["cached_tokens"]
    )
    rows = log_rows(state)["log_i"]
    assert rows[L_HIT_TOKENS].sum() == sum(s["cache_hit_tokens"] for s in ref["steps"])
    assert rows[L_QUERY_TOKENS].sum() == sum(s["cache_query_tokens"] for s in ref["steps"])
    assert_cache_drained(state, knobs)
    return ref, state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shared_prefix_cases(), dyadic_params_variants(), st.booleans())
def test_numba_prefix_cache_matches_reference(case, params, reserve_full_isl):
    arrival, prompts, outputs, knobs, hash_ids, hash_block = case
    check_against_reference(
        arrival,
        prompts,
        outputs,
        knobs,
        hash_ids,
        hash_block,
        params=params,
        reserve_full_isl=reserve_full_isl,
    )


def assert_cache_drained(state, knobs: dict) -> None:
    """After the run: no block has a user, every block is in the free queue exactly once
    (walked both ways), and the table holds exactly the blocks that have a key."""
    from simulator.engine.state import (
        P_FREE_BLOCKS,
        P_FREE_HEAD,
        P_FREE_TAIL,
        P_NUM_ANON,
        PC_KEY,
        PC_NEXT,
        PC_PREV,
        PC_REF,
        PC_TABLE,
    )

    num_blocks = knobs["num_kv_blocks"]
    base = pcache_base(knobs["block_size"], knobs["max_num_seqs"])
    for r in range(state.rep_i.shape[1]):
        row = state.rep_tables[r, base:]
        assert state.rep_i[P_FREE_BLOCKS, r] == num_blocks
        assert state.rep_i[P_NUM_ANON, r] == 0
        assert (row[PC_REF * num_blocks : (PC_REF + 1) * num_blocks] == 0).all()
        seen = []
        b = state.rep_i[P_FREE_HEAD, r]
        while b >= 0:
            seen.append(b)
            b = row[PC_NEXT * num_blocks + b]
        assert sorted(seen) == list(range(num_blocks))
        back = []
        b = state.rep_i[P_FREE_TAIL, r]
        while b >= 0:
            back.append(b)
            b = row[PC_PREV * num_blocks + b]
        assert back == seen[::-1]
        keyed = np.flatnonzero(row[PC_KEY * num_blocks : (PC_KEY + 1) * num_blocks] >= 0)
        table = row[PC_TABLE * num_blocks :]
        assert sorted(table[table >= 0].tolist()) == keyed.tolist()
        assert state.rep_i[P_NUM_CACHED, r] == len(keyed)


def _conversation_trace(seed: int, n: int, hash_block: int = 16):
    """Multi-turn chats: turn k's ids extend turn k-1's (its prompt and a reply)."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(0.08, n))
    sessions = rng.integers(0, max(n // 6, 1), n)
    history: dict[int, list[int]] = {}
    hash_ids, prompts, outputs = [], [], []
    next_id = 0
    for i in range(n):
        ids = list(history.get(int(sessions[i]), []))
        if not ids:
            ids = [int(rng.integers(0, 3))]  # a few shared system prompts
        added = int(rng.integers(1, 12))
        ids += list(range(next_id + 10, next_id + 10 + added))
        next_id += added
        history[int(sessions[i])] = ids
        hash_ids.append(ids)
        prompts.append(len(ids) * hash_block - int(rng.integers(0, hash_block)))
        outputs.append(int(rng.integers(1, 200)))
    return arrival, np.array(prompts), np.array(outputs), hash_ids, [str(s) for s in sessions]


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi"])
def test_numba_prefix_cache_matches_reference_on_conversations(scheduler):
    """Long multi-turn prompts, evictions and preemptions on a tight cache."""
    arrival, prompts, outputs, hash_ids, _ = _conversation_trace(3, 150)
    knobs = dict(
        num_replicas=2,
        scheduler=scheduler,
        router="prefix-aware",
        max_num_seqs=12,
        max_num_batched_tokens=512,
        chunk_size=128,
        block_size=16,
        num_kv_blocks=160,
        max_model_len=4000,
        prefix_load_cap=2,
    )
    ref, _ = check_against_reference(arrival, prompts, outputs, knobs, hash_ids, 16)
    assert ref["cached_tokens"].sum() > 0.2 * prompts.sum()  # the case exercises hits
    assert ref["num_preemptions"].sum() > 0  # and preemptions


@pytest.mark.parametrize("router", ["prefix-aware", "session-affinity", "least-outstanding"])
def test_fused_and_simpy_agree_with_the_cache_on(router):
    arrival, prompts, outputs, hash_ids, sessions = _conversation_trace(5, 200)
    knobs = dict(
        num_replicas=3,
        scheduler="vllm",
        router=router,
        max_num_seqs=16,
        max_num_batched_tokens=1024,
        chunk_size=256,
        block_size=16,
        num_kv_blocks=300,
        max_model_len=4000,
    )
    session_idx = session_indices(pa.array(sessions), len(sessions))
    states = [
        replay_cached(
            arrival,
            prompts,
            outputs,
            knobs,
            hash_ids,
            16,
            orchestration=orchestration,
            session_idx=session_idx,
        )
        for orchestration in ("fused", "simpy")
    ]
    np.testing.assert_array_equal(states[0].req_i, states[1].req_i)
    np.testing.assert_array_equal(states[0].req_f, states[1].req_f)
    np.testing.assert_array_equal(states[0].rep_tables, states[1].rep_tables)
    if router == "session-affinity":
        replica = states[0].req_i[:, R_REPLICA]
        for s in set(sessions):
            mine = [i for i, x in enumerate(sessions) if x == s]
            assert len(set(replica[mine])) == 1, "a session's requests went to two replicas"


def test_session_affinity_matches_reference():
    arrival, prompts, outputs, hash_ids, sessions = _conversation_trace(9, 120)
    knobs = dict(
        num_replicas=3,
        scheduler="vllm",
        router="session-affinity",
        max_num_seqs=8,
        max_num_batched_tokens=512,
        chunk_size=128,
        block_size=16,
        num_kv_blocks=400,
        max_model_len=4000,
    )
    check_against_reference(arrival, prompts, outputs, knobs, hash_ids, 16, sessions=sessions)


def _no_hash_case(num_kv_blocks: int, scheduler: str):
    rng = np.random.default_rng(1)
    n = 300
    arrival = np.cumsum(rng.exponential(0.05, n))
    prompts = rng.integers(1, 1200, n)
    outputs = rng.integers(1, 300, n)
    knobs = dict(
        num_replicas=2,
        scheduler=scheduler,
        router="least-outstanding",
        max_num_seqs=24,
        max_num_batched_tokens=1024,
        chunk_size=256,
        block_size=16,
        num_kv_blocks=num_kv_blocks,
        max_model_len=1600,
    )
    return arrival, prompts, outputs, knobs


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi"])
def test_cache_without_hash_ids_hits_only_a_preempted_requests_own_blocks(scheduler):
    """Without hash_ids nothing is shared, but vLLM hashes every full block of a request's
    tokens, so a preempted request's readmission finds its own blocks (prompt and output)
    that were not evicted meanwhile: as the reference, and only on readmissions."""
    arrival, prompts, outputs, knobs = _no_hash_case(500, scheduler)
    ref, on = check_against_reference(arrival, prompts, outputs, knobs, None, None)
    off = replay_case(arrival, prompts, outputs, knobs)
    assert off.req_i[:, R_PREEMPTIONS].sum() > 0, "the case should preempt"
    hits = sum(s["cache_hit_tokens"] for s in ref["steps"])
    assert hits > 0, "readmissions should find their own blocks"
    # No first admission hits anything: every hit is a readmission's.
    assert (np.maximum(on.req_i[:, R_CACHED_TOKENS], 0) == 0).all()
    # Until the first preemption both runs are the same run.
    first = min(s["start_s"] for s in ref["steps"] if s["preempted"])
    done = off.req_f[:, R_FINISH_S] < first
    np.testing.assert_array_equal(off.req_f[done], on.req_f[done])
    assert not np.array_equal(off.req_f, on.req_f)


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi"])
def test_cache_without_hash_ids_and_without_preemption_equals_cache_off(scheduler):
    """No preemption, no readmission: nothing can hit, the same run as without a cache."""
    arrival, prompts, outputs, knobs = _no_hash_case(5000, scheduler)
    off = replay_case(arrival, prompts, outputs, knobs)
    on = replay_cached(arrival, prompts, outputs, knobs, None, None)
    assert off.req_i[:, R_PREEMPTIONS].sum() == 0
    np.testing.assert_array_equal(off.req_f, on.req_f)
    np.testing.assert_array_equal(off.itl_histogram, on.itl_histogram)
    np.testing.assert_array_equal(off.req_i[:, :12], on.req_i[:, :12])


def test_simulate_runs_the_cache_for_a_trace_without_hash_ids_only_when_it_preempts():
    """``simulate`` skips the cache over a trace without hash_ids (faster, same results)
    unless the run preempts; then its results are those of the engine with the cache."""
    from simulator import Scenario, simulate
    from simulator.api import _engine_knobs, replay
    from simulator.scenario import resolve

    n = 400
    table = kv_pressure_table(0.02, n)
    for utilization, preempts in ((0.23, True), (0.9, False)):
        scenario = Scenario(gpus="1xA100", gpu_memory_utilization=utilization, max_num_seqs=32)
        resolved = resolve(scenario)
        assert resolved.prefix_caching  # vLLM V1's default
        result = simulate(table, scenario)
        columns = [table.column(c).to_numpy() for c in table.column_names]
        draws = np.random.default_rng(scenario.seed).random(n)
        empty = prefix_inputs(None, columns[1], hash_block_tokens=None, block_size=16)
        knobs = {**_engine_knobs(resolved), "draws": draws}
        knobs["client_latency_s"] = scenario.api_server_latency_ms / 1000.0
        cached = replay(*columns, **knobs, prefix=empty)
        uncached = replay(*columns, **knobs, prefix=None)
        assert (result.summary["num_preemptions"] > 0) == preempts
        expected = cached if preempts else uncached
        finish = result.requests.column("completion_s").to_numpy()
        np.testing.assert_array_equal(finish, expected.req_f[:, R_FINISH_S])
        assert np.array_equal(cached.req_f, uncached.req_f) != preempts
        # Every hit is a readmission's; the summary counts them where there were any.
        hits = int(np.sum(result.steps.column("cache_hit_tokens").to_numpy()))
        assert (hits > 0) == preempts
        assert result.summary.get("readmission_cached_tokens") == (hits if preempts else None)


@pytest.mark.parametrize("build", ["shipped", "numba"])
def test_the_run_without_the_cache_stops_soon_after_a_first_preemption(monkeypatch, build):
    """What that run would replay after a preemption is thrown away (``simulate`` runs again
    with the cache): an overloaded 1M-request replay ran twice in full. Asked to, the fused
    engine stops within ``PREEMPTION_CHECK_EVERY`` arrivals of the first preemption."""
    from simulator.api import _engine_knobs, replay
    from simulator.engine import compiled, fused
    from simulator.engine.state import C_NEXT_REQUEST, PREEMPTION_CHECK_EVERY
    from simulator.scenario import Scenario, resolve

    if build == "numba":
        monkeypatch.setattr(compiled, "run_fused", lambda: fused.run_fused)
    n = 400
    table = kv_pressure_table(0.02, n)
    columns = [table.column(c).to_numpy() for c in table.column_names]
    for utilization, preempts in ((0.23, True), (0.9, False)):
        resolved = resolve(
            Scenario(gpus="1xA100", gpu_memory_utilization=utilization, max_num_seqs=32)
        )
        # Admitting by the first chunk (as v0.11) preempts at 0.23; whole prompts do not.
        knobs = {**_engine_knobs(resolved), "draws": np.zeros(n), "reserve_full_isl": False}
        full = replay(*columns, **knobs, prefix=None)
        stopped = replay(*columns, **knobs, prefix=None, stop_on_preemption=True)
        assert stopped.stopped_at_preemption == preempts
        if not preempts:  # the same run
            np.testing.assert_array_equal(stopped.req_f, full.req_f)
            continue
        first = int(np.argmax(full.req_i[:, R_PREEMPTIONS].cumsum() > 0))
        routed = int(stopped.counters[C_NEXT_REQUEST])
        assert routed < n and (stopped.req_i[:, R_PREEMPTIONS] > 0).any()
        assert routed <= first + 2 * PREEMPTION_CHECK_EVERY + int(stopped.rep_i.shape[1])


def test_chained_ids_equal_exactly_when_prefixes_are_equal():
    rng = np.random.default_rng(0)
    lists = [list(rng.integers(0, 3, rng.integers(0, 7))) for _ in range(300)]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    values = np.array([v for x in lists for v in x], np.int64)
    chained = chain_block_ids(offsets, values)
    seen: dict[tuple, int] = {}
    for i, ids in enumerate(lists):
        for j in range(len(ids)):
            prefix = tuple(ids[: j + 1])
            got = int(chained[offsets[i] + j])
            assert seen.setdefault(prefix, got) == got
    assert len(set(seen.values())) == len(seen)  # different prefixes, different ids


def test_prefix_inputs_count_only_full_hashed_blocks():
    ids = pa.array([[1, 2, 3], None, [4], []], pa.list_(pa.int64()))
    prompts = np.array([40, 100, 600, 50])
    got = prefix_inputs(ids, prompts, hash_block_tokens=16, block_size=16)
    # 40 tokens of 3 hashed blocks: 2 full; no ids: 0; 600 tokens but 1 hashed block: 1.
    np.testing.assert_array_equal(got.num_keys, [2, 0, 1, 0])
    np.testing.assert_array_equal(got.id_offsets, [0, 3, 3, 4, 4])
    got = prefix_inputs(ids, prompts, hash_block_tokens=512, block_size=16)
    np.testing.assert_array_equal(got.num_keys, [2, 0, 32, 0])


def test_hash_table_matches_a_dict_under_inserts_and_deletes():
    blocks = 64
    cfg = make_config(
        scheduler=0,
        max_num_seqs=1,
        token_budget=1,
        block_size=16,
        num_kv_blocks=blocks,
        max_model_len=16,
        router=0,
    )
    assert cfg[CFG_NUM_KV_BLOCKS] == blocks
    cfg[CFG_PCACHE_BASE] = 0  # the table below is the prefix cache alone
    pcache = make_prefix_cache(1, blocks)
    rep_i = np.zeros((NUM_P_INT, 1), np.int64)
    rng = np.random.default_rng(2)
    truth: dict[int, int] = {}
    free = list(range(blocks))
    for _ in range(4000):
        if free and (not truth or rng.random() < 0.55):
            key = int(rng.integers(0, 1 << 40))
            if key in truth:
                continue
            b = free.pop()
            found, slot = _find_slot(pcache, cfg, 0, key)
            assert found == -1
            _table_put(pcache, rep_i, cfg, 0, slot, key, b)
            truth[key] = b
        else:
            key = list(truth)[int(rng.integers(0, len(truth)))]
            b = truth.pop(key)
            _table_delete(pcache, rep_i, cfg, 0, b)
            free.append(b)
        assert rep_i[P_NUM_CACHED, 0] == len(truth)
        for key, b in truth.items():
            assert find_block(pcache, cfg, 0, key) == b
    for _ in range(200):
        key = int(rng.integers(0, 1 << 40))
        if key not in truth:
            assert find_block(pcache, cfg, 0, key) == -1


@pytest.mark.skipif(not MOONCAKE.exists(), reason="../shared traces absent")
def test_unbounded_cache_hits_the_mooncake_trace_own_repeats():
    """One replica with room for every block, one request at a time: a request finds in the
    cache exactly the blocks whose prefix an earlier request had, which is the trace's own
    repeat ratio (36.6% of its 512-token blocks). KV blocks of 512 tokens, the trace's own,
    so that blocks count alike (with 16-token blocks the cache would need ~6M entries)."""
    from simulator.trace.importer import load_trace

    table = load_trace(MOONCAKE)
    prompts = table.column("input_tokens").to_numpy().astype(np.int64)
    outputs = np.minimum(table.column("output_tokens").to_numpy(), 4).astype(np.int64)
    hash_ids = table.column("hash_ids").to_pylist()
    seen: set[int] = set()
    repeated = total = expected_hit_blocks = full_blocks = 0
    for ids, prompt in zip(hash_ids, prompts, strict=True):
        total += len(ids)
        repeated += sum(h in seen for h in ids)
        # Full blocks only, and never the last token (vLLM recomputes at least one token).
        limit = (int(prompt) - 1) // 512
        full_blocks += int(prompt) // 512
        hits = 0
        while hits < limit and ids[hits] in seen:
            hits += 1
        expected_hit_blocks += hits
        seen.update(ids)
    assert repeated / total == pytest.approx(0.3664, abs=0.0001)
    state = replay_cached(
        np.arange(len(prompts), dtype=np.float64) * 1e3,  # one request at a time
        prompts,
        outputs,
        dict(
            num_replicas=1,
            scheduler="vllm",
            router="round-robin",
            max_num_seqs=4,
            max_num_batched_tokens=1 << 20,
            chunk_size=1,
            block_size=512,
            num_kv_blocks=total + 2 * len(prompts),
            max_model_len=1 << 20,
        ),
        hash_ids,
        512,
    )
    cached = np.maximum(state.req_i[:, R_CACHED_TOKENS], 0)
    assert not np.isnan(state.req_f[:, R_FINISH_S]).any()
    assert int(cached.sum()) == 512 * expected_hit_blocks
    # Of the blocks, as the trace counts them: 36.6% repeat; the engine finds all of them
    # but the few that are a prompt's partial last block or hold its last token.
    hit_fraction = expected_hit_blocks / total
    assert hit_fraction == pytest.approx(repeated / total, abs=0.005)
    assert expected_hit_blocks <= repeated


# ---- the CLI ----


@pytest.fixture(scope="module")
def mooncake_like(tmp_path_factory):
    """A small trace in Mooncake's JSONL format: chats that share prefixes of 512 tokens."""
    import json

    rng = np.random.default_rng(4)
    path = tmp_path_factory.mktemp("trace") / "chats.jsonl"
    lines = []
    history: dict[int, list[int]] = {}
    next_id = 100
    for k in range(300):
        session = int(rng.integers(0, 40))
        ids = history.get(session, [int(rng.integers(0, 3))])
        added = int(rng.integers(1, 4))
        ids = ids + list(range(next_id, next_id + added))
        next_id += added
        history[session] = ids
        record = {
            "timestamp": 200 * k,
            "input_length": 512 * len(ids) - int(rng.integers(0, 400)),
            "output_length": int(rng.integers(10, 300)),
            "hash_ids": ids,
        }
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_run_with_prefix_caching_reports_hits(mooncake_like, tmp_path):
    import json

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from simulator.cli import app

    out = tmp_path / "out"
    args = ["run", str(mooncake_like), "--gpus", "2xH100", "--out", str(out), "--json"]
    results = {}
    notes = {}
    for extra in (
        [],
        ["--no-enable-prefix-caching"],
        ["--enable-prefix-caching"],
        ["--enable-prefix-caching", "--router", "prefix-aware"],
    ):
        result = CliRunner().invoke(app, args + extra)
        assert result.exit_code == 0, result.stderr
        results[" ".join(extra)] = json.loads(result.stdout)
        notes[" ".join(extra)] = result.stderr
        if extra != ["--no-enable-prefix-caching"]:
            requests = pq.read_table(out / "requests.parquet")
            cached = requests.column("cached_tokens").to_numpy()
            summary = results[" ".join(extra)]
            assert cached.sum() / requests.column("input_tokens").to_numpy().sum() == (
                pytest.approx(summary["prefix_cache"]["prompt_tokens_cached_fraction"])
            )
            steps = pq.read_table(out / "steps.parquet")
            assert (
                steps.column("cache_hit_tokens").to_numpy().sum()
                == (summary["prefix_cache"]["hit_tokens"])
            )
    # vLLM V1 caches prefixes unless told not to: so does the default vllm scheduler.
    off = results["--no-enable-prefix-caching"]
    assert "prefix_cache" not in off
    assert off["scenario"]["enable_prefix_caching"] is False
    assert "prefix caching off" in off["scenario"]["engine"]
    assert results[""] == results["--enable-prefix-caching"]
    assert "as vLLM's V1 engine has it by default" in notes[""]
    assert "by default" not in notes["--enable-prefix-caching"]
    on = results["--enable-prefix-caching"]
    aware = results["--enable-prefix-caching --router prefix-aware"]
    assert on["scenario"]["enable_prefix_caching"] is True
    assert "prefix caching on" in on["scenario"]["engine"]
    # Prefixes are shared, so a cache finds some; routing by them finds more.
    assert 0.0 < on["prefix_cache"]["hit_rate"] < aware["prefix_cache"]["hit_rate"]
    assert aware["ttft_ms"]["mean"] < off["ttft_ms"]["mean"]
    assert aware["scenario"]["prefix_load_cap"] == 8


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--no-enable-prefix-caching", "--router", "prefix-aware"], "--enable-prefix-caching"),
        (["--scheduler", "sarathi", "--router", "prefix-aware"], "by default with --scheduler"),
        (["--scheduler", "vllm-v0", "--router", "prefix-aware"], "--enable-prefix-caching"),
        (["--enable-prefix-caching", "--scheduler", "vllm-v0"], "vllm-v0"),
        (["--router", "session-affinity"], "session"),
        (["--enable-prefix-caching", "--prefix-load-cap", "-1"], "--prefix-load-cap"),
    ],
)
def test_cli_bad_cache_options_are_one_line_errors(mooncake_like, tmp_path, args, fragment):
    from typer.testing import CliRunner

    from simulator.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(mooncake_like), "--out", str(out), *args])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert not out.exists()


# ---- answers the next turn resends ----


def _resending_conversations(seed: int, n: int, hash_block: int = 16):
    """Chats whose turn k+1 prompt is turn k's prompt + answer + a new message (as chat
    clients send), with hash ids over blocks of ``hash_block`` tokens (a new id for each
    block whose content is new, including the previous prompt's partial last block)."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(0.3, n))
    num_sessions = max(n // 4, 1)
    sessions = rng.integers(0, num_sessions, n)
    last: dict[int, tuple[list[int], int, int]] = {}  # session -> (ids, prompt, output)
    prompts, outputs, hash_ids = [], [], []
    next_id = 10
    for i in range(n):
        s = int(sessions[i])
        if s in last:
            ids, prompt, output = last[s]
            prompt = prompt + output + int(rng.integers(1, 60))
            ids = ids[: last[s][1] // hash_block]  # the previous prompt's full blocks
        else:
            prompt, ids = int(rng.integers(20, 300)), []
        num_ids = -(-prompt // hash_block)
        ids = ids + list(range(next_id, next_id + num_ids - len(ids)))
        next_id += num_ids
        output = int(rng.integers(1, 120))
        last[s] = (ids, prompt, output)
        prompts.append(prompt)
        outputs.append(output)
        hash_ids.append(ids)
    return arrival, np.array(prompts), np.array(outputs), hash_ids, [str(s) for s in sessions]


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi"])
def test_answers_resent_by_the_next_turn_are_hit_as_in_the_reference(scheduler):
    from simulator.closed_loop import session_turn_links
    from simulator.engine.prefix_keys import link_answers_to_next_turns

    arrival, prompts, outputs, hash_ids, sessions = _resending_conversations(6, 160)
    session_idx = session_indices(pa.array(sessions), len(sessions))
    next_turn = session_turn_links(session_idx, None, arrival)
    knobs = dict(
        num_replicas=2,
        scheduler=scheduler,
        router="session-affinity",
        max_num_seqs=10,
        max_num_batched_tokens=256,
        chunk_size=96,
        block_size=16,
        num_kv_blocks=220,
        max_model_len=20000,
    )
    prefix = prefix_inputs(_list_array(hash_ids), prompts, hash_block_tokens=16, block_size=16)
    linked = link_answers_to_next_turns(prefix, next_turn, prompts, outputs, block_size=16)
    assert (linked.num_out_keys > linked.num_keys).sum() > 50, "the case should link answers"
    ref, state = check_against_reference(
        arrival,
        prompts,
        outputs,
        knobs,
        hash_ids,
        16,
        sessions=sessions,
        next_turn=next_turn,
        prefix=linked,
    )
    # Without the links, the same run finds less: the resent answers are what it adds.
    plain = replay_case(arrival, prompts, outputs, knobs, prefix=prefix, session_idx=session_idx)
    assert plain.req_i[:, R_CACHED_TOKENS].sum() < state.req_i[:, R_CACHED_TOKENS].sum()
    assert ref["num_preemptions"].sum() > 0


def test_ids_that_are_chained_already_are_kept_and_others_are_chained():
    # A tree of prefixes numbered so that an id always follows the same id (as Mooncake's):
    # kept as they are. Reusing an id after a different parent: chained anew.
    lists = [[0, 1, 2], [0, 1, 3], [0, 4], [5], [0, 1, 2, 6]]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    values = np.array([v for x in lists for v in x], np.int64)
    np.testing.assert_array_equal(chain_block_ids(offsets, values), values)
    lists[3] = [2]  # 2 starts a list here but follows 1 elsewhere
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    values = np.array([v for x in lists for v in x], np.int64)
    chained = chain_block_ids(offsets, values)
    assert chained[offsets[3]] != chained[2]  # [2] is not the prefix [0, 1, 2]
    assert chained[0] == chained[3] and chained[1] == chained[4]  # shared prefixes kept


def test_a_readmission_that_decodes_at_once_keeps_its_cache_hit_in_the_step_log():
    """Found by hypothesis: a preempted request whose prompt and output are cached but its
    last token decodes in its first step after readmission; that step joins a decode run,
    and its cache hit must join the run's row too."""
    arrival = np.array([0.0, 0.0, 0.0, 0.125, 0.875, 0.875, 1.25, 2.0, 2.0, 2.0, 2.0])
    prompts = np.array([1, 23, 1, 1, 4, 1, 1, 1, 1, 1, 1])
    outputs = np.array([1, 6, 1, 1, 2, 1, 1, 1, 1, 1, 1])
    knobs = dict(
        num_replicas=3,
        scheduler="vllm",
        router="round-robin",
        max_num_seqs=2,
        max_num_batched_tokens=12,
        chunk_size=4,
        block_size=2,
        num_kv_blocks=16,
        max_model_len=29,
        prefix_load_cap=0,
    )
    hash_ids = [[], [], [], [], [0, 1040, 1041, 1042], [], [], [], [], [], []]
    params = layout.new_params()
    params[kernel.HOST_S] = params[kernel.HOST_S_PER_SEQ] = 0.125
    params[kernel.ELEMENTWISE_S_PER_TOKEN] = 2.0**-12
    params[kernel.ATTN_KV_S_PER_CONTEXT_TOKEN] = 2.0**-16
    ref, _ = check_against_reference(arrival, prompts, outputs, knobs, hash_ids, 1, params=params)
    assert sum(s["cache_hit_tokens"] for s in ref["steps"]) > 0


def test_a_hash_ids_cell_that_is_no_list_is_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from simulator.cli import app

    src = tmp_path / "bad.jsonl"
    src.write_text('{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": "abc"}\n')
    result = CliRunner().invoke(app, ["run", str(src), "--enable-prefix-caching"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        'error: bad.jsonl: line 1: field hash_ids: expected a list of integers, got "abc"; '
        "--skip-invalid reads such values as missing"
    ], lines


def test_the_prefix_cache_benchmark_turns_the_cache_off_in_its_off_case():
    """``benchmarks/prefix_cache.py``'s "caching off" case left the flag unset, which the
    ``vllm`` scheduler reads as on (vLLM V1's default): its "off" row was a cache-on run."""
    import importlib.util

    from simulator import Scenario, simulate
    from simulator.trace.importer import load_trace

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "bench_prefix", root / "benchmarks/prefix_cache.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    table = load_trace(root / "traces/chat-sessions.parquet").slice(0, 400)
    summaries = {
        name: simulate(table, Scenario(gpus="1xH100", **extra)).summary
        for name, extra in bench.CASES.items()
    }
    assert "prefix_cache" not in summaries.pop("caching off")
    assert all(s["prefix_cache"]["hit_rate"] > 0 for s in summaries.values())


def test_cli_engine_line_says_a_trace_without_hash_ids_cannot_hit(mooncake_like, tmp_path):
    """Prefix caching is on by default, so a run of a trace without hash_ids (Azure, the
    shipped chat-1h) printed "prefix caching on" with nothing to say no hit is modelled."""
    from typer.testing import CliRunner

    from simulator.cli import app

    plain = tmp_path / "plain.csv"
    plain.write_text("arrival_time_s,input_tokens,output_tokens\n0.0,100,20\n0.5,100,20\n")
    said = (
        "prefix caching on (V1 KVCacheManager); the trace has no hash_ids: hits only on "
        "readmission after a preemption"
    )
    for trace, without_ids in ((plain, True), (mooncake_like, False)):
        result = CliRunner().invoke(app, ["run", str(trace), "--gpus", "1xH100"])
        assert result.exit_code == 0, result.stderr
        engine = next(line for line in result.stdout.splitlines() if "Engine" in line)
        assert (said in engine) == without_ids, engine


def test_a_python_router_is_asked_once_per_request_with_the_cache_on_and_no_hash_ids():
    """``simulate`` runs a trace without hash_ids again with the cache when the first run
    preempted; a user's router (which may keep state) must not be asked twice, and routing
    as round-robin it gives the built-in round-robin's results."""
    from simulator import Scenario, simulate

    n = 400
    table = kv_pressure_table(0.01, n)
    asked = []

    def rotate(request, replicas):
        asked.append(request)
        return (len(asked) - 1) % len(replicas)

    scenario = Scenario(
        gpus="2xA100", tp=1, gpu_memory_utilization=0.23, max_num_seqs=32, router="round-robin"
    )
    mine = simulate(table, scenario, router=rotate)
    builtin = simulate(table, scenario)
    assert mine.summary["num_preemptions"] > 0
    assert len(asked) == n
    for column in ("replica", "first_token_s", "completion_s"):
        assert mine.requests.column(column).equals(builtin.requests.column(column)), column


@pytest.mark.parametrize(("shared_blocks", "replica"), [(6, 1), (7, 0)])
def test_prefix_aware_follows_a_prefix_only_above_three_tenths_of_the_prompt(
    shared_blocks, replica
):
    """vllm-router's cache_aware threshold (0.3): a second request sharing 6 of its 20
    blocks (96 of 320 tokens, 0.3) with the first goes to the idle replica; sharing 7 (0.35)
    it joins the first. A QA pass: Mooncake's shared prefixes drew every request to the
    first 10 of 32 replicas, and 10, 16 and 32 GPUs gave the same latencies."""
    first = list(range(10))
    second = first[:shared_blocks] + list(range(100, 100 + 20 - shared_blocks))
    knobs = dict(
        num_replicas=2,
        scheduler="vllm",
        router="prefix-aware",
        max_num_seqs=8,
        max_num_batched_tokens=512,
        chunk_size=512,
        block_size=16,
        num_kv_blocks=200,
        max_model_len=4000,
    )
    state = replay_cached(
        np.array([0.0, 1.0]),
        np.array([160, 320]),
        np.array([2000, 5]),
        knobs,
        [first, second],
        16,
    )
    assert state.req_i[:, R_REPLICA].tolist() == [0, replica]
    assert state.req_i[0, R_STATUS] == FINISHED and state.req_i[1, R_STATUS] == FINISHED
