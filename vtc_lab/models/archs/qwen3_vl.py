"""Qwen3-VL (the paper's Qwen3-VL-8B-Instruct): 16 px patches, merge 2, ChatML."""

from __future__ import annotations

from vtc_lab.models.archs._common import (QWEN_CHATML, mrope_section, qwen_token_ids,
                                          text_kwargs, vision_kwargs)
from vtc_lab.models.spec import BackboneSpec, TinyRecipe
from vtc_lab.render.vision import VISION_SPECS


def tiny_config(cfg, tokenizer):
    """A Qwen3VLConfig of `model.tiny` sizes (`attn_implementation` goes through the config
    constructor, which hands it down to the text and vision sub-configs)."""
    from transformers import Qwen3VLConfig

    t = cfg.tiny
    text = dict(text_kwargs(cfg, tokenizer), head_dim=t.head_dim, rope_parameters={
        "rope_type": "default", "rope_theta": 500000.0,
        "mrope_section": mrope_section(t.head_dim), "mrope_interleaved": True})
    vision = dict(vision_kwargs(cfg), num_position_embeddings=1024, deepstack_visual_indexes=[])
    return Qwen3VLConfig(text_config=text, vision_config=vision, **qwen_token_ids(tokenizer),
                         tie_word_embeddings=False, attn_implementation=cfg.attn_implementation)


SPEC = BackboneSpec(
    name="qwen3_vl",
    model_types=("qwen3_vl",),
    vision=VISION_SPECS["qwen3_vl"],
    processor="Qwen3VLProcessor",
    model_class="Qwen3VLForConditionalGeneration",
    tiny=TinyRecipe(
        chat=QWEN_CHATML,
        image_processor="Qwen2VLImageProcessorPil",
        # Qwen3-VL's released processor normalises with mean/std 0.5
        image_processor_kwargs={"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
        build_config=tiny_config,
    ),
)
