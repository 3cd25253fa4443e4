"""Whether a finished run would have gone differently with more KV blocks or more seats.

Two capacities enter the engine's decisions: the free KV blocks of a replica and
``--max-num-seqs``. A run in which neither ever held a request back gives the same steps,
times and tokens with more of either, because every comparison it made against them comes
out the same way with more:

- admission (V1 ``_admit_waiting``, v0 ``_schedule_v0``, a decode run's admission check)
  compares the queue's head with the free blocks and the running count; the engine flags
  each comparison that held the head back (``P_KV_LIMITED``, ``P_SEQS_LIMITED``);
- scheduling running requests preempts only when blocks run out (``P_PREEMPTIONS``);
- a request is rejected for KV only when it needs more blocks than the replica has, net of
  v0's watermark (1% of the blocks, rounded down: it never grows faster than the blocks);
- every other use of the two capacities (array sizes, whether a decode run may be applied
  in one go) changes how the engine computes, not what it computes.

With more KV blocks every replica has the same number more free at every moment, so a
router reading free blocks (``least-kv``) ranks replicas the same way. The prefix cache is
left out: its evictions depend on the block count; so is ``vllm-dp``, which reads the share
of blocks in use (``api._share_key`` keeps the block count in its key).
``tests/test_engine.py`` checks the claim on random cases against runs with more capacity.

``sweep`` uses this to answer scenarios that differ only in ``--gpu-memory-utilization``
or ``--max-num-seqs`` from one run (``sweep/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.engine.state import (
    P_KV_LIMITED,
    P_PREEMPTIONS,
    P_SEQS_LIMITED,
    R_REJECT,
    REJECT_KV,
    EngineState,
)


@dataclass(frozen=True)
class CapacityBounds:
    """Which capacities held a run back (``True``: a run with more of it may differ)."""

    kv: bool
    seqs: bool

    def covers(
        self, run_kv_blocks: int, run_max_num_seqs: int, kv_blocks: int, max_num_seqs: int
    ) -> bool:
        """True when the run made with (``run_kv_blocks``, ``run_max_num_seqs``) per
        replica is also the run with (``kv_blocks``, ``max_num_seqs``)."""
        if kv_blocks < run_kv_blocks or max_num_seqs < run_max_num_seqs:
            return False
        if self.kv and kv_blocks != run_kv_blocks:
            return False
        return not (self.seqs and max_num_seqs != run_max_num_seqs)


def capacity_bounds(state: EngineState) -> CapacityBounds:
    """The capacities that held back the finished run in ``state`` (no prefix cache)."""
    kv = bool(
        np.any(state.rep_i[P_KV_LIMITED])
        or np.any(state.rep_i[P_PREEMPTIONS])
        or np.any(state.req_i[:, R_REJECT] == REJECT_KV)
    )
    return CapacityBounds(kv=kv, seqs=bool(np.any(state.rep_i[P_SEQS_LIMITED])))
