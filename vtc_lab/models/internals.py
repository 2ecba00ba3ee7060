"""The transformers model internals vtc-lab reads, in one place (vtc_lab.compat.PRIVATE says
which transformers versions they were verified with and what each buys; tests/test_compat.py
runs them on both tiny architectures).

transformers offers no public API for either: the vision tower's merged tokens are what the
language model receives (`get_image_features` would run the tower a second time), and the
M-RoPE offsets are cached on the model between `generate` calls.
"""

from __future__ import annotations

from typing import Any


def vision_tower(model: Any) -> Any:
    """The vision tower of a Qwen-VL / GLM-4.1V model (`model.model.visual`), also under a peft
    (LoRA) wrapper; None for a text-only model."""
    from vtc_lab.compat import private

    private("transformers.visual")
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    inner = getattr(model, "model", model)
    return getattr(inner, "visual", None)


def vision_tokens(output: Any) -> Any:
    """The merged vision tokens of a vision tower's forward output (its `pooler_output`: what
    the language model receives); the first element when the tower returns a tuple of them."""
    hidden = output.pooler_output
    return hidden[0] if isinstance(hidden, (tuple, list)) else hidden


def reset_rope_deltas(model: Any) -> None:
    """Forget the M-RoPE position offsets a Qwen-VL / GLM-4.1V model cached on an earlier call
    (`model.model.rope_deltas`): the next `generate` recomputes them from its own ids. Without
    it, a call that continues a reused prefix (cache positions not starting at 0) would place
    its tokens with the previous request's offsets."""
    from vtc_lab.compat import private

    private("transformers.rope_deltas")
    base = getattr(model, "model", None)
    if getattr(base, "rope_deltas", None) is not None:
        base.rope_deltas = None
