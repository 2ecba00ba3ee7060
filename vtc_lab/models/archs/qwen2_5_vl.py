"""Qwen2.5-VL (e.g. Qwen2.5-VL-7B-Instruct): 14 px patches, merge 2 (28 px per vision token),
windowed vision attention with a few full-attention blocks, ChatML."""

from __future__ import annotations

from vtc_lab.models.archs._common import (QWEN_CHATML, mrope_section, qwen_token_ids,
                                          text_kwargs, vision_kwargs)
from vtc_lab.models.spec import BackboneSpec, TinyRecipe
from vtc_lab.render.vision import VISION_SPECS


def tiny_config(cfg, tokenizer):
    """A Qwen2_5_VLConfig of `model.tiny` sizes. The vision tower attends within windows of
    2x2 merged tokens except in its last block, which attends globally (the released 7B has
    windows of 4x4 tokens and full attention every 8th block)."""
    from transformers import Qwen2_5_VLConfig

    t = cfg.tiny
    head_dim = t.hidden_size // t.num_heads
    # the class defaults name the 152k-vocabulary ids: point them into this tokenizer
    text = dict(text_kwargs(cfg, tokenizer), bos_token_id=None,
                eos_token_id=tokenizer.convert_tokens_to_ids(QWEN_CHATML.end_of_turn),
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                 "mrope_section": mrope_section(head_dim)})
    vision = dict(vision_kwargs(cfg), window_size=t.patch_size * t.merge_size * 2,
                  fullatt_block_indexes=[t.vision_depth - 1])
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **qwen_token_ids(tokenizer),
                            tie_word_embeddings=False, attn_implementation=cfg.attn_implementation)


SPEC = BackboneSpec(
    name="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    vision=VISION_SPECS["qwen2_5_vl"],
    processor="Qwen2_5_VLProcessor",
    model_class="Qwen2_5_VLForConditionalGeneration",
    # Qwen2.5-VL's released preprocessor: the class defaults (CLIP mean/std), 56x56 px ..
    # 12.8 Mpx as in render's table
    tiny=TinyRecipe(chat=QWEN_CHATML, image_processor="Qwen2VLImageProcessorPil",
                    build_config=tiny_config),
)
