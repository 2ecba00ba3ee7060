"""Building blocks shared by the tiny recipes: the Qwen ChatML format and config helpers.

Nothing here imports transformers; the recipes' `build_config` functions do, lazily.
"""

from __future__ import annotations

from typing import Any

from vtc_lab.models.spec import ChatFormat

# Qwen2-VL, Qwen2.5-VL and Qwen3-VL share ChatML and the vision tokens; a pretrained checkpoint
# always brings its own template, this one is only for the tiny backbones.
QWEN_CHATML = ChatFormat(
    special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                    "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"),
    template=(
        "{%- for message in messages -%}"
        "{{- '<|im_start|>' + message['role'] + '\n' -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
        "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{{- '<|im_end|>\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
    ),
    end_of_turn="<|im_end|>",
    pad="<|endoftext|>",
)


def qwen_token_ids(tokenizer) -> dict[str, int]:
    """The image/video token ids of a Qwen-family config, read off the tokenizer."""
    ids = tokenizer.convert_tokens_to_ids
    return dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                vision_start_token_id=ids("<|vision_start|>"),
                vision_end_token_id=ids("<|vision_end|>"))


def mrope_section(rotary_dim: int) -> list[int]:
    """Split rotary frequencies over (time, height, width) like the real models (64 -> 24/20/20)."""
    half = rotary_dim // 2
    side = half * 5 // 16
    return [half - 2 * side, side, side]


def text_kwargs(cfg, tokenizer) -> dict[str, Any]:
    """Text-decoder sizes every family's text config takes under the same names."""
    t = cfg.tiny
    return dict(vocab_size=len(tokenizer), hidden_size=t.hidden_size,
                intermediate_size=t.intermediate_size, num_hidden_layers=t.num_layers,
                num_attention_heads=t.num_heads, num_key_value_heads=t.num_kv_heads,
                max_position_embeddings=t.max_position_embeddings,
                pad_token_id=tokenizer.pad_token_id)


def vision_kwargs(cfg) -> dict[str, Any]:
    """Vision-tower sizes every family's vision config takes under the same names."""
    t = cfg.tiny
    return dict(depth=t.vision_depth, hidden_size=t.vision_hidden_size, num_heads=t.vision_heads,
                intermediate_size=t.vision_intermediate_size, patch_size=t.patch_size,
                spatial_merge_size=t.merge_size, temporal_patch_size=t.temporal_patch_size,
                out_hidden_size=t.hidden_size)
