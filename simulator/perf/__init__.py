"""Step-time prediction: how long one engine step of one replica takes.

``roofline_model`` builds a ``StepTimeModel`` from a model and GPU spec; the engine calls
``step_time_s(model.params, ...)`` once per step inside numba. A calibrated profile (issue 4)
fills the same ``params`` slots with measured constants without touching the engine.
"""

from simulator import _numba_cache
from simulator.perf import kernel
from simulator.perf.kernel import step_time_parts_s, step_time_s
from simulator.perf.roofline import (
    DEFAULT_EFFICIENCIES,
    Efficiencies,
    StepTimeModel,
    constant_step_model,
    roofline_model,
    with_cross_node_allreduce,
    with_cuda_graphs,
    with_pipeline_stages,
)

# kernel.py imports only numpy, numba and math; its cache loads are made lean here.
_numba_cache.lean_loads(vars(kernel))

__all__ = [
    "DEFAULT_EFFICIENCIES",
    "Efficiencies",
    "StepTimeModel",
    "constant_step_model",
    "roofline_model",
    "step_time_parts_s",
    "step_time_s",
    "with_cross_node_allreduce",
    "with_cuda_graphs",
    "with_pipeline_stages",
]
