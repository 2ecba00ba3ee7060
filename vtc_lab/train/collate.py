"""Turn dataset rows into model batches: the shared prompt builder + the processor's chat template.

Per sample (`SFTEncoder.encode`, runs in DataLoader workers): decode the PNG pages, cap their
pixels, build the prompt with `vtc_lab.data.build_messages` and the backbone's own chat template
(`add_generation_prompt=True`, exactly what inference sends), run the processor on prompt +
images, and append the tokenized assistant turn. Tokenizing the prompt and the completion
separately means training sees the same prompt tokens as inference (no BPE merge across the
boundary). Labels are -100 on the prompt and supervise the assistant turn up to and including
its end-of-turn token.

Per batch (`collate`): right-pad, concatenate the pixel patches of all images in order (one
`image_grid_thw` row per image; a batch may have none), sum the truncation counters.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from vtc_lab.data import build_messages
from vtc_lab.task.completion import is_final
from vtc_lab.models.images import cap_pixels

IGNORE_INDEX = -100


class BadSampleError(ValueError):
    """A dataset row that cannot be trained on (e.g. a corrupt PNG); names the sample."""


@dataclass
class EncodeStats:
    """Counters of the truncation policy (summed over batches and logged)."""

    samples: int = 0
    truncated: int = 0
    dropped_too_long: int = 0
    target_tokens_cut: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def decode_png(data: bytes, where: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # PIL raises many types for corrupt files
        raise BadSampleError(f"corrupt image: {where}: {type(exc).__name__}: {exc}") from exc
    return image.convert("RGB")


@dataclass
class SFTEncoder:
    """Encodes one dataset row; picklable, so DataLoader workers each hold a copy."""

    processor: Any
    stop_token_ids: list[int]
    system_prompt: str | None
    image_position: str = "before"
    cutoff_len: int = 4096
    truncation: str = "truncate"
    image_max_pixels: int | None = None
    char_labels: Any = None
    """Optional callable(sample, original sizes, grid_thw) -> LongTensor per merged vision token
    (`vtc_lab.train.char_loss.CharLabeler`)."""
    memory: str = "optical"
    """`optical`: pages of the earlier rounds, every round ends the turn. `text`: no pages, the
    earlier rounds open the assistant turn unsupervised and only the final round ends it
    (`OptimConfig.memory`)."""
    stats: EncodeStats = field(default_factory=EncodeStats)

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def prompt_text(self, question: str, images: list) -> str:
        messages = build_messages(question, images, self.system_prompt, self.image_position)
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def completion_ids(self, question: str, images: list, target: str) -> list[int]:
        """Token ids of the assistant turn as the template writes it, up to its end-of-turn.

        The template renders the whole conversation; what follows the generation prompt is the
        assistant turn (target + end-of-turn, and whatever the template adds around it)."""
        messages = build_messages(question, images, self.system_prompt, self.image_position)
        prompt = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = self.processor.apply_chat_template(
            messages + [{"role": "assistant", "content": target}], tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template does not render the generation prompt as a prefix "
                             "of the conversation; cannot locate the assistant turn")
        ids = self.tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
        stops = set(self.stop_token_ids)
        for i, tok in enumerate(ids):
            if tok in stops:
                return ids[: i + 1]
        return ids + self.stop_token_ids[:1]  # templates that leave the turn open

    def load_images(self, sample: dict) -> tuple[list[Image.Image], list[tuple[int, int]]]:
        """Decoded, pixel-capped pages and their original (width, height)."""
        where = f"sample_id={sample.get('sample_id')!r}"
        if sample.get("_source"):
            where += f" in {sample['_source']}"
        images = [decode_png(data, f"{where} image {i}") for i, data in enumerate(sample.get("images") or [])]
        return [cap_pixels(img, self.image_max_pixels) for img in images], [img.size for img in images]

    def encode(self, sample: dict) -> dict | None:
        """Tensors for one row, or None when the truncation policy drops it (counted)."""
        text_memory = self.memory == "text"
        images, sizes = ([], []) if text_memory else self.load_images(sample)
        prompt = self.prompt_text(sample["question"], images)
        enc = self.processor(text=[prompt], images=images or None, add_special_tokens=False,
                             return_tensors="pt")
        prompt_ids = enc["input_ids"][0]
        if text_memory and sample.get("memory_text"):
            # earlier rounds continue the assistant turn, as the text loop feeds them
            memory = self.tokenizer(sample["memory_text"], add_special_tokens=False)["input_ids"]
            prompt_ids = torch.cat([prompt_ids, torch.tensor(memory, dtype=torch.long)])
            if "mm_token_type_ids" in enc:
                enc["mm_token_type_ids"] = torch.cat(
                    [enc["mm_token_type_ids"], torch.zeros((1, len(memory)), dtype=torch.long)], 1)
        ids = self.completion_ids(sample["question"], images, sample["target"])
        if text_memory and not is_final(sample["target"]) and ids[-1] in self.stop_token_ids:
            ids = ids[:-1]  # the turn goes on: the next round continues it
        completion = torch.tensor(ids, dtype=torch.long)
        self.stats.samples += 1
        total = len(prompt_ids) + len(completion)
        out: dict[str, Any] = {"sample_id": sample.get("sample_id")}
        if total > self.cutoff_len:
            if self.truncation == "drop" or len(prompt_ids) >= self.cutoff_len:
                self.stats.dropped_too_long += 1
                return None
            keep = self.cutoff_len - len(prompt_ids)
            self.stats.truncated += 1
            self.stats.target_tokens_cut += len(completion) - keep
            completion = completion[:keep]
        out["input_ids"] = torch.cat([prompt_ids, completion])
        out["labels"] = torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), completion])
        if "mm_token_type_ids" in enc:
            out["mm_token_type_ids"] = torch.cat(
                [enc["mm_token_type_ids"][0], torch.zeros_like(completion)])
        if images:
            out["pixel_values"] = enc["pixel_values"]
            out["image_grid_thw"] = enc["image_grid_thw"]
            if self.char_labels is not None:
                out["char_labels"] = self.char_labels(sample, sizes, enc["image_grid_thw"])
        return out


def collate(encoded: list[dict], pad_token_id: int, stats: dict[str, int] | None = None) -> dict:
    """Right-pad a list of encoded samples into one batch."""
    if not encoded:
        raise ValueError("collate: empty batch")
    length = max(len(e["input_ids"]) for e in encoded)
    n = len(encoded)
    input_ids = torch.full((n, length), pad_token_id, dtype=torch.long)
    labels = torch.full((n, length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((n, length), dtype=torch.long)
    has_mm = "mm_token_type_ids" in encoded[0]
    mm = torch.zeros((n, length), dtype=torch.long) if has_mm else None
    for i, e in enumerate(encoded):
        k = len(e["input_ids"])
        input_ids[i, :k] = e["input_ids"]
        labels[i, :k] = e["labels"]
        attention[i, :k] = 1
        if mm is not None:
            mm[i, :k] = e["mm_token_type_ids"]
    batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    if mm is not None:
        batch["mm_token_type_ids"] = mm
    with_images = [e for e in encoded if "pixel_values" in e]
    if with_images:
        batch["pixel_values"] = torch.cat([e["pixel_values"] for e in with_images])
        batch["image_grid_thw"] = torch.cat([e["image_grid_thw"] for e in with_images])
        if all("char_labels" in e for e in with_images):
            batch["char_labels"] = torch.cat([e["char_labels"] for e in with_images])
    if stats is not None:
        batch["stats"] = {k: torch.tensor(v) for k, v in stats.items()}
    return batch

