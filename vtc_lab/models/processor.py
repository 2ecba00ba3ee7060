"""Image-only processors for the Qwen-VL and GLM-4.1V families.

The stock `Qwen3VLProcessor` / `Glm4vProcessor` insist on a video processor, and transformers'
video processors need torchvision, which vtc-lab does not install (optical memory is images
only). These subclasses keep everything the stock processors do for text and images (chat
template, image-token expansion, `mm_token_type_ids`) and simply have no video slot. A
checkpoint's processor is assembled from its own image processor, tokenizer and chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import Glm4vProcessor, Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen3VLProcessor


class _ImageOnly:
    """Mixin: the processor's attributes are (image_processor, tokenizer) only."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # The parent passes (image_processor, tokenizer, video_processor=None) positionally;
        # ProcessorMixin zips them against get_attributes(), which no longer lists video.
        super().__init__(image_processor=image_processor, tokenizer=tokenizer,
                         video_processor=None, chat_template=chat_template, **kwargs)

    @property
    def stock_name(self) -> str:
        """The transformers processor this one stands in for (what exports record)."""
        return next(c.__name__ for c in type(self).__mro__[1:]
                    if c.__module__.startswith("transformers."))

    def to_dict(self):
        # exports name the stock class, so `AutoProcessor` outside vtc-lab can load them
        out = super().to_dict()
        out["processor_class"] = self.stock_name
        return out

    def save_pretrained(self, save_directory, *args, **kwargs):
        result = super().save_pretrained(save_directory, *args, **kwargs)
        config = Path(save_directory) / "tokenizer_config.json"
        if config.is_file():
            data = json.loads(config.read_text(encoding="utf-8"))
            if data.get("processor_class") == type(self).__name__:
                data["processor_class"] = self.stock_name
                config.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        return result

    def __call__(self, images=None, text=None, videos=None, **kwargs):
        if videos is not None:
            raise ValueError(f"{type(self).__name__} handles images only (no torchvision); got videos")
        return super().__call__(images=images, text=text, **kwargs)


class ImageOnlyQwen3VLProcessor(_ImageOnly, Qwen3VLProcessor):
    """Qwen3-VL processor without the video processor."""


class ImageOnlyGlm4vProcessor(_ImageOnly, Glm4vProcessor):
    """GLM-4.1V / Glyph processor without the video processor."""


class ImageOnlyQwen2_5_VLProcessor(_ImageOnly, Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without the video processor."""


class ImageOnlyQwen2VLProcessor(_ImageOnly, Qwen2VLProcessor):
    """Qwen2-VL processor without the video processor."""


PROCESSORS = {"qwen3_vl": ImageOnlyQwen3VLProcessor, "glm4v": ImageOnlyGlm4vProcessor,
              "qwen2_5_vl": ImageOnlyQwen2_5_VLProcessor, "qwen2_vl": ImageOnlyQwen2VLProcessor}


def read_chat_template(path: Path, tokenizer) -> str | None:
    """The checkpoint's own chat template: tokenizer config, chat_template.jinja or .json."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    as_json = path / "chat_template.json"
    if as_json.is_file():
        return json.loads(as_json.read_text(encoding="utf-8")).get("chat_template")
    return None
