"""Inference loops: optical memory (VTC-R1), the text-memory baseline and the no-memory ablation.

`LoopConfig` imports nothing heavy; the engine and loop (torch, transformers) load on first use,
so composing and validating configs stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from vtc_lab.infer.config import MODES, LoopConfig

_LAZY = {
    "Engine": "vtc_lab.infer.engine_api",
    "GenerationParams": "vtc_lab.infer.engine_api",
    "GenerationRequest": "vtc_lab.infer.engine_api",
    "GenerationOutput": "vtc_lab.infer.engine_api",
    "HFEngine": "vtc_lab.infer.engine",
    "OpenAIEngine": "vtc_lab.infer.openai_engine",
    "EngineUnavailableError": "vtc_lab.infer.openai_engine",
    "EngineConfig": "vtc_lab.infer.engine_config",
    "run_loop": "vtc_lab.infer.loop",
    "ProblemRecord": "vtc_lab.infer.records",
    "RoundRecord": "vtc_lab.infer.records",
    "derive_seed": "vtc_lab.infer.loop",
    "LoopStats": "vtc_lab.infer.loop",
    "grade_records": "vtc_lab.infer.metrics",
    "efficiency_metrics": "vtc_lab.infer.metrics",
    "evaluate_benchmarks": "vtc_lab.infer.evaluate",
    "EvalResults": "vtc_lab.infer.evaluate",
    "load_problems": "vtc_lab.infer.evaluate",
    "PredictionsFile": "vtc_lab.infer.predictions",
}

__all__ = ["MODES", "LoopConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vtc_lab.infer' has no attribute {name!r}")
