"""Qwen2-VL (pretrained checkpoints only): 14 px patches, merge 2."""

from __future__ import annotations

from vtc_lab.models.spec import BackboneSpec
from vtc_lab.render.vision import VISION_SPECS

SPEC = BackboneSpec(
    name="qwen2_vl",
    model_types=("qwen2_vl",),
    vision=VISION_SPECS["qwen2_vl"],
    processor="Qwen2VLProcessor",
    model_class="Qwen2VLForConditionalGeneration",
)
