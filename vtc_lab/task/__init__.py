"""What the model is asked to write, and the synthetic task that exercises it.

`vtc_lab.task.completion`: the completion format (the `</think>` / `<answer>` markers, the
dataset's `format_target`, `is_final` and the one linear parser `parse`), which the dataset
builder, the loop's stop check and the grader's answer slot share. `vtc_lab.task.toytask`: the
synthetic task (training traces for `data.source=toy` and the held-out `toy` benchmark). A leaf
like `render` and `segment`: it imports no other stage.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "MARKERS": "completion",
    "THINK_END": "completion",
    "format_target": "completion",
    "is_final": "completion",
    "split_final": "completion",
    "parse": "completion",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"vtc_lab.task.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vtc_lab.task' has no attribute {name!r}")
