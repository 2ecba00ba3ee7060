"""GLM-4.1V (Glyph, the paper's main backbone): 14 px patches, merge 2, GLM role tags."""

from __future__ import annotations

from vtc_lab.models.archs._common import mrope_section, text_kwargs, vision_kwargs
from vtc_lab.models.spec import BackboneSpec, ChatFormat, TinyRecipe
from vtc_lab.render.vision import VISION_SPECS

GLM_CHAT = ChatFormat(
    special_tokens=("<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>",
                    "<|assistant|>", "<|begin_of_image|>", "<|end_of_image|>", "<|image|>",
                    "<|begin_of_video|>", "<|end_of_video|>", "<|video|>"),
    template=(
        "{{- '[gMASK]<sop>' -}}"
        "{%- for message in messages -%}"
        "{{- '<|' + message['role'] + '|>\n' -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'image' -%}{{- '<|begin_of_image|><|image|><|end_of_image|>' -}}"
        "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{%- if message['role'] == 'assistant' -%}{{- '<|endoftext|>' -}}{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}"
    ),
    end_of_turn="<|endoftext|>",
    pad="<|endoftext|>",
)


def tiny_config(cfg, tokenizer):
    """A Glm4vConfig of `model.tiny` sizes (half the head's dims rotate, as in GLM-4.1V)."""
    from transformers import Glm4vConfig

    t = cfg.tiny
    ids = tokenizer.convert_tokens_to_ids
    head_dim = t.hidden_size // t.num_heads
    text = dict(text_kwargs(cfg, tokenizer), rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
        "mrope_section": mrope_section(head_dim // 2)})
    vision = dict(vision_kwargs(cfg), image_size=t.patch_size * 24)
    return Glm4vConfig(text_config=text, vision_config=vision,
                       image_token_id=ids("<|image|>"), video_token_id=ids("<|video|>"),
                       image_start_token_id=ids("<|begin_of_image|>"),
                       image_end_token_id=ids("<|end_of_image|>"),
                       video_start_token_id=ids("<|begin_of_video|>"),
                       video_end_token_id=ids("<|end_of_video|>"), tie_word_embeddings=False,
                       attn_implementation=cfg.attn_implementation)


SPEC = BackboneSpec(
    name="glm4v",
    model_types=("glm4v",),
    vision=VISION_SPECS["glm4v"],
    processor="Glm4vProcessor",
    model_class="Glm4vForConditionalGeneration",
    projector_keys=("merger", "downsample"),
    # GLM-4.1V-9B-Thinking / Glyph preprocessor_config.json: bounds as in render's table
    tiny=TinyRecipe(chat=GLM_CHAT, image_processor="Glm4vImageProcessorPil",
                    build_config=tiny_config),
)
