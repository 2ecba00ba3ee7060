"""Qwen2.5-VL (pretrained checkpoints only): 14 px patches, merge 2."""

from __future__ import annotations

from vtc_lab.models.spec import BackboneSpec
from vtc_lab.render.vision import VISION_SPECS

SPEC = BackboneSpec(
    name="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    vision=VISION_SPECS["qwen2_5_vl"],
    processor="Qwen2_5_VLProcessor",
    model_class="Qwen2_5_VLForConditionalGeneration",
)
