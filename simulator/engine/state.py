"""Engine state as a struct of arrays: a few 2-D arrays with one named row per field.

``req_i`` / ``req_f`` hold one row per request of the trace (int64 / float64 fields, so a
request's fields share a cache line or two),
``rep_i`` / ``rep_f`` one column per replica, ``running`` the running list of each replica,
``rep_tables`` each replica's steady-decode counts and, with prefix caching, its cache,
``log_i`` / ``log_f`` the growable log of runs of engine steps. Field rows are the ``R*``,
``P*`` and ``L*`` constants below. Few arrays, rather than a named tuple of dozens, because
numba reference-counts every array it passes between kernels: with ~40 arrays a step cost
~1 us of atomic increments alone; with 2-D rows it is a few nanoseconds. Even without
reference counting, each array a kernel takes is copied into every call (pointer, shape
and strides), so arrays that serve the same replica share one.

Nothing here runs per step; ``kernels.py`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Return codes of the resumable engine kernels (``kernels.advance``, ``fused.run_fused``):
#: done; the step log is full (grow it and call again); an invariant broke; a request was
#: preempted and ``CFG_STOP_ON_PREEMPTION`` asked to stop then (``fused.run_fused`` only).
ADVANCE_OK, ADVANCE_LOG_FULL, ADVANCE_STUCK, ADVANCE_PREEMPTED = 0, 1, 2, 3

# Request status codes.
NOT_ARRIVED, WAITING, RUNNING, FINISHED, REJECTED = 0, 1, 2, 3, 4

# Reject reasons (0 = not rejected). The engine rejects beyond max_model_len with
# REJECT_CONTEXT and never sets REJECT_CAPPED_CONTEXT: a result counts and labels with it
# the requests within the context asked for that a max_model_len capped by the KV cache
# rejected (``results.build_result``; the state is left as it is).
REJECT_CONTEXT, REJECT_KV, REJECT_V0_PROMPT, REJECT_CAPPED_CONTEXT = 1, 2, 3, 4
REJECT_REASONS = {
    0: "",
    REJECT_CONTEXT: "longer than the model's context (input + output > max model length)",
    REJECT_KV: "needs more KV cache than a replica has",
    REJECT_V0_PROMPT: "prompt + output longer than --max-num-batched-tokens without chunked "
    "prefill (vllm-v0 could not admit or recompute it)",
    REJECT_CAPPED_CONTEXT: "longer than the max_model_len a replica's KV cache caps below the "
    "context asked for (input + output > max model length)",
}

# Schedulers.
SCHED_VLLM, SCHED_SARATHI, SCHED_V0 = 0, 1, 2
SCHEDULERS = {"vllm": SCHED_VLLM, "sarathi": SCHED_SARATHI, "vllm-v0": SCHED_V0}
#: Token budget per step of ``sarathi``: the chunk size of Sarathi-Serve's evaluation.
DEFAULT_SARATHI_CHUNK = 512

# Built-in routers.
ROUTE_ROUND_ROBIN, ROUTE_LEAST_OUTSTANDING, ROUTE_LEAST_KV, ROUTE_RANDOM = 0, 1, 2, 3
ROUTE_PREFIX_AWARE, ROUTE_SESSION_AFFINITY, ROUTE_VLLM_DP = 4, 5, 6
ROUTERS = {
    "round-robin": ROUTE_ROUND_ROBIN,
    "least-outstanding": ROUTE_LEAST_OUTSTANDING,
    "least-kv": ROUTE_LEAST_KV,
    "random": ROUTE_RANDOM,
    "prefix-aware": ROUTE_PREFIX_AWARE,
    "session-affinity": ROUTE_SESSION_AFFINITY,
    "vllm-dp": ROUTE_VLLM_DP,
}
#: ``vllm-dp``: vLLM's internal data-parallel load balancer (``vllm serve
#: --data-parallel-size N``, one API server; ``DPLBAsyncMPClient.get_core_engine_for_request``
#: in vllm/v1/engine/core_client.py, as of vLLM PRs #47420 and #49204, July 2026): an
#: engine's score is its requests in flight, plus, while it has waiting requests, waiting x
#: ``VLLM_DP_KV_PENALTY`` x max(0, KV usage - ``VLLM_DP_KV_FREE_USAGE``); the least score
#: wins, the scan starting one engine further on for each request (engine README).
VLLM_DP_KV_PENALTY = 6.0
VLLM_DP_KV_FREE_USAGE = 0.5
#: ``prefix-aware``: a replica is a candidate while its outstanding requests are at most the
#: fewest of any replica plus this many (``--prefix-load-cap``).
DEFAULT_PREFIX_LOAD_CAP = 8
#: ``prefix-aware``: a replica's cached prefix draws a request only when it is more than
#: this many tenths of the prompt; a shorter one (a shared system prompt under a long
#: question) counts as no hit, and the request goes to the least outstanding candidate.
#: vllm-router's and SGLang's ``cache_aware`` policy follow a prefix only above a match
#: share of 0.3 (``--cache-threshold``); below it they pick the worker with the smallest
#: cached record, for which least outstanding stands in here.
PREFIX_MATCH_MIN_TENTHS = 3

# Rows of ``cfg`` (int64, engine knobs).
CFG_SCHEDULER, CFG_MAX_NUM_SEQS, CFG_TOKEN_BUDGET, CFG_BLOCK_SIZE = 0, 1, 2, 3
CFG_NUM_KV_BLOCKS, CFG_MAX_MODEL_LEN, CFG_WATERMARK_BLOCKS, CFG_ROUTER = 4, 5, 6, 7
CFG_BLOCK_SHIFT = 8  # log2(block size) when it is a power of two (shifts, not divisions), else -1
CFG_PREFIX_CACHING = 9  # 1 when the prefix cache is on
CFG_HASH_BLOCK_TOKENS = 10  # tokens per trace ``hash_ids`` block (0 when the trace has none)
CFG_CACHE_TABLE_SHIFT = 11  # 64 - log2(hash table slots) of the prefix cache
CFG_PREFIX_LOAD_CAP = 12  # prefix-aware router's load cap
# Pipeline stages per replica (1: none). With N > 1 every N consecutive engine replicas are
# the N vLLM v0.6 virtual engines of one replica (see ``fused.choose_replica``).
CFG_PIPELINE_STAGES = 13
CFG_PCACHE_BASE = 14  # first column of the prefix cache in each row of ``rep_tables``
#: 1: ``fused.run_fused`` stops (``ADVANCE_PREEMPTED``) once a request has been preempted,
#: checked every ``PREEMPTION_CHECK_EVERY`` arrivals: a run without the prefix cache is made
#: again with it from the start then (``api.replay_resolved``), so the rest would be wasted.
CFG_STOP_ON_PREEMPTION = 15
#: 1: the ``vllm`` scheduler admits a waiting request only when all its known tokens fit in
#: the free blocks, not only this step's chunk (vLLM's ``scheduler_reserve_full_isl``).
CFG_RESERVE_FULL_ISL = 16
CFG_SIZE = 17
PREEMPTION_CHECK_EVERY = 64

# Columns of ``req_i`` (int64, one row per request).
R_PROMPT = 0  # prompt tokens P
R_OUTPUT = 1  # output tokens to generate O
R_STATUS = 2  # status code
R_REPLICA = 3  # replica index, -1 until routed
R_COMPUTED = 4  # tokens with KV computed (c)
R_GENERATED = 5  # output tokens generated (g)
R_BLOCKS = 6  # KV blocks held
R_SCHEDULED = 7  # tokens scheduled in the replica's in-flight step
R_PREEMPTIONS = 8  # times preempted
R_REJECT = 9  # reject reason
R_NEXT_WAIT = 10  # waiting queue links (doubly linked list per replica), -1 = none
R_PREV_WAIT = 11
R_ANCHOR = 12  # steady decodes: the replica's P_STEADY_STEPS when the request joined
# Prefix cache (see kernels.py): the request's chained trace-block ids are
# prefix_ids[R_ID_START : R_ID_START + R_NUM_IDS]; its first R_NUM_KEYS KV blocks are full
# blocks of hashed prompt that can be shared; the first R_KEYED_HELD of them are held
# through the cache (the rest of its R_BLOCKS are private, "anonymous" blocks).
R_ID_START = 13
R_NUM_IDS = 14
R_NUM_KEYS = 15
R_KEYED_HELD = 16
R_CACHED_TOKENS = 17  # prompt tokens found in the cache at its first admission, -1 before
R_SESSION = 18  # dense session index, -1 when the request has none
# Blocks R_NUM_KEYS .. R_NUM_OUT_KEYS - 1 hold the end of the prompt and the answer that the
# request's next turn starts with: their keys are that turn's, read from
# prefix_ids[R_OUT_ID_START:] (-1: none), and they enter the cache when the request
# finishes or is preempted (``prefix_keys.link_answers_to_next_turns``).
R_NUM_OUT_KEYS = 19
R_OUT_ID_START = 20
NUM_R_INT = 21

# Columns of ``req_f`` (float64, seconds, NaN until set).
R_ARRIVAL_S = 0
R_FIRST_SCHEDULED_S = 1
R_FIRST_TOKEN_S = 2
R_LAST_TOKEN_S = 3
R_FINISH_S = 4
NUM_R_FLOAT = 5

# Rows of ``rep_i`` (int64, one column per replica).
P_NUM_RUNNING = 0
P_WAIT_HEAD = 1  # -1 when the queue is empty
P_WAIT_TAIL = 2
P_NUM_WAITING = 3
P_FREE_BLOCKS = 4
P_IN_FLIGHT = 5  # 1 while a step is scheduled and not completed
P_STEP_PREFILL_TOKENS = 6  # of the in-flight step, for the log
P_STEP_DECODE_SEQS = 7
P_STEP_WAITING = 8  # waiting requests when the in-flight step started
P_OUTSTANDING = 9  # routed, not finished
P_PREEMPTIONS = 10
P_LAST_RUN = 11  # log row of this replica's latest run, -1
# Steady decodes (see kernels.py): running[r, :P_NUM_STEADY] decode one token in every step
# and are advanced implicitly; their R_COMPUTED / R_GENERATED / R_BLOCKS / R_LAST_TOKEN_S are
# as of the step they joined, and P_STEADY_STEPS - R_ANCHOR steps behind.
P_NUM_STEADY = 12
P_STEADY_STEPS = 13  # steps in which the steady decodes advanced, since the start
P_STEADY_CONTEXT = 14  # sum over steady decodes of (computed + 1): their decode context
P_STEADY_NEXT_FINISH = 15  # P_STEADY_STEPS value at which the first steady decode finishes
P_STEP_STEADY = 16  # steady decodes in the in-flight step (0 when they were materialised)
# Prefix cache: the free queue (blocks with no user, least recently freed first) and the
# stack of private blocks in use.
P_FREE_HEAD = 17  # -1 when empty
P_FREE_TAIL = 18
P_NUM_ANON = 19
P_STEP_HIT_TOKENS = 20  # of the in-flight step: prompt tokens found in the cache at admission
P_STEP_QUERY_TOKENS = 21  # and the tokens those admitted requests asked for (P + g)
P_EVICTIONS = 22  # cached blocks evicted to make room
P_NUM_CACHED = 23  # blocks holding a key (in use or free)
# 1 once a capacity bound: a waiting request that the token budget let in was held back by
# the free KV blocks (P_KV_LIMITED) or by --max-num-seqs (P_SEQS_LIMITED), else 0. Flags,
# not counts: a decode run decides for all its steps at once, a step at a time each step.
# With preemptions (P_PREEMPTIONS) and KV rejections they say whether a run would have gone
# differently with more of either (``sweep`` reuses runs that would not: sweep/README.md).
P_KV_LIMITED = 24
P_SEQS_LIMITED = 25
NUM_P_INT = 26

# Rows of ``rep_f`` (float64).
P_CLOCK_S = 0  # start of the in-flight or next step; end of the last one
P_STEP_END_S = 1
P_STEADY_LAST_S = 2  # when every steady decode produced its latest token
P_QUIET_UNTIL_S = 3  # fused least-outstanding path: outstanding is unchanged before this
P_LAST_START_S = 4  # start of the latest step (async scheduling: when the next was scheduled)
NUM_P_FLOAT = 5

# Rows of ``log_i`` / ``log_f``: runs of consecutive steps of one replica. A decode-only step
# joins the previous run when it has the same number of decoding sequences and of waiting
# requests and starts where the run ended; any other step starts a run of its own.
L_REPLICA, L_NUM_STEPS, L_PREFILL_TOKENS, L_DECODE_SEQS, L_KV_BLOCKS, L_WAITING = range(6)
L_HIT_TOKENS, L_QUERY_TOKENS = 6, 7  # prefix cache: tokens found / asked for at admission
NUM_L_INT = 8
L_START_S, L_END_S = 0, 1
NUM_L_FLOAT = 2

#: P_STEADY_NEXT_FINISH when there is no steady decode.
NO_FINISH = 1 << 62

# Slots of ``counters`` (int64).
C_LOG_SIZE = 0  # rows of the log in use
C_NEXT_REQUEST = 1  # fused path: next request to route (makes it resumable)
C_ROUTED = 2  # requests routed so far (round-robin position)
C_FAST_STEPS = 3  # engine steps applied by the decode-run fast path (for benchmarks)
NUM_COUNTERS = 4

# What ``outcomes.read_outcomes`` totals over the requests: integers (int64)...
O_COMPLETED, O_OUTPUT_DONE, O_PREEMPTIONS, O_BACKLOG = range(4)
NUM_O_INT = 4
# ... and floats: earliest send (inf without requests), latest engine arrival (0.0 if none
# is later), latest completion (NaN when none completed).
O_FIRST_SENT_S, O_LAST_ARRIVAL_S, O_LAST_FINISH_S = range(3)
NUM_O_FLOAT = 3

# Columns of EngineState.run_terms: decode_run_terms_s's six values, then a filled flag.
RUN_TERMS_FILLED = 6
NUM_RUN_TERMS = 7

# The prefix cache's columns in each row of ``rep_tables`` (int64), from column
# CFG_PCACHE_BASE, in sections of num_kv_blocks:
# block key (-1: holds nothing shareable), reference count, free-queue links (prev, next;
# -2 when not in the queue), the stack of private blocks in use; then the hash table
# (``table_slots`` block indices, -1 empty) from key to block.
PC_KEY, PC_REF, PC_PREV, PC_NEXT, PC_ANON, PC_TABLE = range(6)
NOT_QUEUED = -2
#: Engine-block key = chained trace-block id << KEY_POSITION_BITS | block position.
KEY_POSITION_BITS = 20
#: A block without a shared key (past the hashed prompt and any answer the next turn
#: resends) is keyed PRIVATE_KEY | request index << KEY_POSITION_BITS | position: no other
#: request has that key, so only the request itself finds it again, after a preemption.
#: Chained ids stay below 2**42, so shared keys stay below this bit.
PRIVATE_KEY = 1 << 62

#: Inter-token latencies are counted in bins found from the float's binary exponent and
#: mantissa (no logarithm per token): octaves 2**ITL_MIN_EXP .. 2**ITL_MAX_EXP seconds
#: (~1 us .. ~2000 s), each cut into ITL_BINS_PER_OCTAVE equal slices. A bin is at most 0.8%
#: wide relative to its value, so a percentile read at its centre is within 0.4%.
ITL_MIN_EXP, ITL_MAX_EXP, ITL_BINS_PER_OCTAVE = -19, 11, 128
ITL_NUM_BINS = (ITL_MAX_EXP - ITL_MIN_EXP) * ITL_BINS_PER_OCTAVE + 2  # + under/overflow


def itl_bin_bounds_s() -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) edges in seconds of every ITL bin; the first and last are open-ended."""
    octave = np.repeat(np.arange(ITL_MIN_EXP, ITL_MAX_EXP), ITL_BINS_PER_OCTAVE)
    slice_ = np.tile(np.arange(ITL_BINS_PER_OCTAVE), ITL_MAX_EXP - ITL_MIN_EXP)
    # frexp: x = m * 2**e with m in [0.5, 1); slice k holds m in [0.5 + k/(2B), 0.5 + (k+1)/(2B)).
    lower = (0.5 + slice_ / (2 * ITL_BINS_PER_OCTAVE)) * np.exp2(octave.astype(np.float64))
    upper = (0.5 + (slice_ + 1) / (2 * ITL_BINS_PER_OCTAVE)) * np.exp2(octave.astype(np.float64))
    lower = np.concatenate([[0.0], lower, [upper[-1]]])
    upper = np.concatenate([[lower[1]], upper, [np.inf]])
    return lower, upper


@dataclass
class EngineState:
    """Every array the kernels share, for one run. Python-side holder; kernels take arrays."""

    req_i: np.ndarray
    req_f: np.ndarray
    rep_i: np.ndarray
    rep_f: np.ndarray
    running: np.ndarray
    log_i: np.ndarray
    log_f: np.ndarray
    itl_histogram: np.ndarray
    counters: np.ndarray
    rep_tables: np.ndarray
    prefix_ids: np.ndarray
    session_replica: np.ndarray
    #: Decode-run terms by batch size (``kernels._run_terms``): float64 (max_num_seqs + 1,
    #: NUM_RUN_TERMS), row n filled on the first run of n decodes (RUN_TERMS_FILLED = 1).
    run_terms: np.ndarray
    #: Closed-loop replay only: the trace's arrival times (``req_f``'s are those replayed).
    recorded_arrival_s: np.ndarray | None = None
    #: When the client sent each request, where that is not its arrival at the engine
    #: (``req_f``'s ``R_ARRIVAL_S``): with an API-server latency, the engine receives each
    #: request that long after it was sent (``cluster.replay``'s ``client_latency_s``).
    #: None: sent when it arrived.
    sent_s: np.ndarray | None = None
    #: The replay stopped at a preemption, as asked (``CFG_STOP_ON_PREEMPTION``): the state
    #: is not a finished replay.
    stopped_at_preemption: bool = False

    def kernel_args(self, cfg: np.ndarray, params: object) -> tuple:
        """The leading arguments every engine kernel takes, in their order.

        Built anew at each call: ``grow_log`` replaces the log arrays.
        """
        return (
            self.req_i,
            self.req_f,
            self.rep_i,
            self.rep_f,
            self.running,
            cfg,
            params,
            self.run_terms,
            self.log_i,
            self.log_f,
            self.itl_histogram,
            self.counters,
            self.rep_tables,
            self.prefix_ids,
        )

    @property
    def num_log_rows(self) -> int:
        return int(self.counters[C_LOG_SIZE])

    def grow_log(self) -> None:
        """Double the room of the step log, keeping its rows."""
        capacity = self.log_i.shape[1] * 2
        used = self.num_log_rows
        log_i = np.zeros((NUM_L_INT, capacity), np.int64)
        log_f = np.zeros((NUM_L_FLOAT, capacity), np.float64)
        log_i[:, :used] = self.log_i[:, :used]
        log_f[:, :used] = self.log_f[:, :used]
        self.log_i, self.log_f = log_i, log_f


#: Request rows ``make_state`` fills at a time (4096 x 208 bytes: within a core's L2).
_FILL_ROWS = 4096


def make_state(
    arrival_s: np.ndarray,
    prompt_tokens: np.ndarray,
    output_tokens: np.ndarray,
    *,
    num_replicas: int,
    max_num_seqs: int,
    num_kv_blocks: int,
    block_size: int,
    log_capacity: int = 1024,
    prefix_caching: bool = False,
    prefix_ids: np.ndarray | None = None,
    id_offsets: np.ndarray | None = None,
    num_keys: np.ndarray | None = None,
    session_idx: np.ndarray | None = None,
    num_out_keys: np.ndarray | None = None,
    out_id_start: np.ndarray | None = None,
) -> EngineState:
    """Fresh state: every request not yet arrived, every replica idle with all blocks free.

    With ``prefix_caching``, ``prefix_ids`` (int64, flat) holds each request's chained
    trace-block ids, request ``i``'s at ``prefix_ids[id_offsets[i]:id_offsets[i + 1]]``, and
    ``num_keys[i]`` counts its shareable KV blocks (see ``engine/prefix.py``).
    ``session_idx`` (int64, -1 for none) names each request's session for
    ``session-affinity`` routing.
    """
    n = len(arrival_s)
    fresh_i = np.zeros(NUM_R_INT, np.int64)
    fresh_i[[R_REPLICA, R_NEXT_WAIT, R_PREV_WAIT, R_CACHED_TOKENS, R_SESSION]] = -1
    columns: dict[int, np.ndarray] = {R_PROMPT: prompt_tokens, R_OUTPUT: output_tokens}
    if session_idx is not None:
        columns[R_SESSION] = session_idx
    if prefix_ids is None:
        prefix_ids = np.zeros(0, np.int64)
    else:
        columns[R_ID_START] = id_offsets[:-1]
        columns[R_NUM_IDS] = np.diff(id_offsets)
        columns[R_NUM_KEYS] = num_keys
        columns[R_NUM_OUT_KEYS] = num_keys if num_out_keys is None else num_out_keys
        if out_id_start is not None:
            columns[R_OUT_ID_START] = out_id_start
        else:
            fresh_i[R_OUT_ID_START] = -1
    num_sessions = 0 if session_idx is None or n == 0 else int(session_idx.max()) + 1
    req_i = np.empty((n, NUM_R_INT), np.int64)
    req_f = np.empty((n, NUM_R_FLOAT), np.float64)
    # Rows are written a block at a time, every field of a block while it is in the CPU's
    # cache: writing whole columns of a 1M-request table instead passes over its 200 MB
    # once per column (1M requests, no prefix caching: 70-78 -> 46-48 ms).
    for start in range(0, n, _FILL_ROWS):
        stop = min(start + _FILL_ROWS, n)
        block_i = req_i[start:stop]
        block_i[:] = fresh_i
        for column, values in columns.items():
            block_i[:, column] = values[start:stop]
        block_f = req_f[start:stop]
        block_f[:] = np.nan
        block_f[:, R_ARRIVAL_S] = arrival_s[start:stop]
    rep_i = np.zeros((NUM_P_INT, num_replicas), np.int64)
    rep_i[P_WAIT_HEAD] = -1
    rep_i[P_WAIT_TAIL] = -1
    rep_i[P_FREE_BLOCKS] = num_kv_blocks
    rep_i[P_LAST_RUN] = -1
    rep_i[P_STEADY_NEXT_FINISH] = NO_FINISH
    rep_i[P_FREE_HEAD] = -1
    rep_i[P_FREE_TAIL] = -1
    # Per replica: steady decodes counted by (computed - R_ANCHOR) % block_size in the first
    # block_size columns (those with residue (-P_STEADY_STEPS) % block_size take a new KV
    # block in the next step), then the P_STEADY_STEPS value at which each steady decode
    # finishes, by its position in the running list; then, with prefix caching, the cache
    # (``prefix_cache.py``). One array, not three: every array a kernel takes is copied into
    # each call's arguments.
    steady = np.zeros((num_replicas, pcache_base(block_size, max_num_seqs)), np.int64)
    if prefix_caching:
        rep_tables = np.concatenate(
            [steady, make_prefix_cache(num_replicas, num_kv_blocks)], axis=1
        )
        rep_i[P_FREE_HEAD] = 0
        rep_i[P_FREE_TAIL] = num_kv_blocks - 1
    else:
        rep_tables = steady
    return EngineState(
        req_i=req_i,
        req_f=req_f,
        rep_i=rep_i,
        rep_f=np.zeros((NUM_P_FLOAT, num_replicas), np.float64),
        running=np.full((num_replicas, max_num_seqs), -1, np.int64),
        log_i=np.zeros((NUM_L_INT, log_capacity), np.int64),
        log_f=np.zeros((NUM_L_FLOAT, log_capacity), np.float64),
        itl_histogram=np.zeros(ITL_NUM_BINS, np.int64),
        counters=np.zeros(NUM_COUNTERS, np.int64),
        rep_tables=rep_tables,
        prefix_ids=np.ascontiguousarray(prefix_ids, dtype=np.int64),
        session_replica=np.full(max(num_sessions, 1), -1, np.int64),
        run_terms=np.zeros((max_num_seqs + 1, NUM_RUN_TERMS), np.float64),
    )


def pcache_base(block_size: int, max_num_seqs: int) -> int:
    """First column of the prefix cache in a row of ``rep_tables``."""
    return max(block_size, 1) + max_num_seqs


def cache_table_slots(num_kv_blocks: int) -> int:
    """Hash-table slots of a replica's prefix cache: a power of two >= 2 x its blocks."""
    return 1 << max(2 * num_kv_blocks - 1, 1).bit_length()


def make_prefix_cache(num_replicas: int, num_kv_blocks: int) -> np.ndarray:
    """Every replica's prefix cache, empty: all blocks free, in index order, none cached."""
    blocks = num_kv_blocks
    slots = cache_table_slots(blocks)
    pcache = np.empty((num_replicas, 5 * blocks + slots), np.int64)
    ids = np.arange(blocks, dtype=np.int64)
    pcache[:, PC_KEY * blocks : (PC_KEY + 1) * blocks] = -1
    pcache[:, PC_REF * blocks : (PC_REF + 1) * blocks] = 0
    pcache[:, PC_PREV * blocks : (PC_PREV + 1) * blocks] = ids - 1
    pcache[:, PC_NEXT * blocks : (PC_NEXT + 1) * blocks] = np.where(ids + 1 < blocks, ids + 1, -1)
    pcache[:, PC_ANON * blocks : (PC_ANON + 1) * blocks] = -1
    pcache[:, PC_TABLE * blocks :] = -1
    return pcache


def make_config(
    *,
    scheduler: int,
    max_num_seqs: int,
    token_budget: int,
    block_size: int,
    num_kv_blocks: int,
    max_model_len: int,
    router: int,
    prefix_caching: bool = False,
    hash_block_tokens: int = 0,
    prefix_load_cap: int = DEFAULT_PREFIX_LOAD_CAP,
    pipeline_stages: int = 1,
    stop_on_preemption: bool = False,
    reserve_full_isl: bool = True,
) -> np.ndarray:
    """The int64 knob array the kernels read (rows ``CFG_*``).

    With ``pipeline_stages`` N > 1, ``num_kv_blocks`` and ``max_num_seqs`` are those of one
    virtual engine (an engine replica), N of which make a replica. ``reserve_full_isl``
    applies to the ``vllm`` scheduler without pipeline stages only (the other schedulers,
    and the v0.6 virtual engines stages follow, never had it).
    """
    config = np.zeros(CFG_SIZE, np.int64)
    config[CFG_SCHEDULER] = scheduler
    config[CFG_MAX_NUM_SEQS] = max_num_seqs
    config[CFG_TOKEN_BUDGET] = token_budget
    config[CFG_BLOCK_SIZE] = block_size
    config[CFG_NUM_KV_BLOCKS] = num_kv_blocks
    config[CFG_MAX_MODEL_LEN] = max_model_len
    # vLLM v0's block manager keeps 1% of blocks free when admitting prefills.
    config[CFG_WATERMARK_BLOCKS] = int(0.01 * num_kv_blocks) if scheduler == SCHED_V0 else 0
    config[CFG_ROUTER] = router
    is_power_of_two = block_size > 0 and block_size & (block_size - 1) == 0
    config[CFG_BLOCK_SHIFT] = block_size.bit_length() - 1 if is_power_of_two else -1
    config[CFG_PREFIX_CACHING] = 1 if prefix_caching else 0
    config[CFG_HASH_BLOCK_TOKENS] = hash_block_tokens
    config[CFG_CACHE_TABLE_SHIFT] = 64 - (cache_table_slots(num_kv_blocks).bit_length() - 1)
    config[CFG_PREFIX_LOAD_CAP] = prefix_load_cap
    config[CFG_PCACHE_BASE] = pcache_base(block_size, max_num_seqs)
    config[CFG_PIPELINE_STAGES] = pipeline_stages
    config[CFG_STOP_ON_PREEMPTION] = 1 if stop_on_preemption else 0
    whole_prompt = reserve_full_isl and scheduler == SCHED_VLLM and pipeline_stages == 1
    config[CFG_RESERVE_FULL_ISL] = 1 if whole_prompt else 0
    return config
