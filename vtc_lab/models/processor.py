"""Image-only variants of transformers' VLM processors (any family's, by class name).

The stock `Qwen3VLProcessor` / `Glm4vProcessor` insist on a video processor, and transformers'
video processors need torchvision, which vtc-lab does not install (optical memory is images
only). These subclasses keep everything the stock processors do for text and images (chat
template, image-token expansion, `mm_token_type_ids`) and simply have no video slot. A
checkpoint's processor is assembled from its own image processor, tokenizer and chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

from functools import cache

import transformers


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


@cache
def image_only(stock: str) -> type:
    """The image-only subclass of transformers' processor class `stock` (e.g. "Qwen3VLProcessor"),
    named `ImageOnly<stock>` and bound in this module, so it pickles like a plain class."""
    base = getattr(transformers, stock, None)
    if base is None:
        raise ValueError(f"transformers {transformers.__version__} has no processor class {stock!r}")
    name = f"ImageOnly{stock}"
    cls = type(name, (_ImageOnly, base), {"__module__": __name__, "__qualname__": name,
                                          "__doc__": f"{stock} without the video processor."})
    globals()[name] = cls
    return cls


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


def __getattr__(name: str):
    # `ImageOnly<stock>` classes exist once `image_only` made them; a fresh process (a data
    # loader worker unpickling a processor) makes them on first lookup.
    if name.startswith("ImageOnly") and name != "ImageOnly":
        return image_only(name.removeprefix("ImageOnly"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
