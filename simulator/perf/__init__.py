"""Step-time prediction: how long one engine step of one replica takes.

``roofline_model`` builds a ``StepTimeModel`` from a model and GPU spec; the engine calls
``step_time_s(model.params, ...)`` once per step inside numba. A calibrated profile (issue 4)
fills the same ``params`` slots with measured constants without touching the engine.
"""

from typing import Any

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


def __getattr__(name: str) -> Any:
    """``step_time_s`` and ``step_time_parts_s`` import numba: only when asked for."""
    if name in ("step_time_s", "step_time_parts_s"):
        from simulator.perf import kernel

        return getattr(kernel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
