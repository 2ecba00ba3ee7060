"""Work the HF engine carries from one round to the next.

Round r of the optical loop repeats round r-1's prompt up to the newest page (system prompt,
the question's turn header, pages 1..r-1), and round r of the text loop repeats round r-1's whole
sequence (prompt + what it generated). Recomputing that shared part every round is what made the
optical loop slower than the text loop on small models: every round re-ran the vision tower over
every page seen so far and prefilled the whole prompt again. Two caches remove it:

- `PixelCache`: the image processor's output per page (resize, normalise, patchify), and
  `VisionCache`: the vision tower's output per page, both keyed by the page's pixels (a content
  hash, so a cached result can never be served for a different image). Any batch size.
- `PrefixCache`: the KV cache of the last single-request call and the exact token ids (and page
  identities) behind it. The next single request keeps the longest prefix whose tokens and pages
  are identical and prefills only the rest. Batched calls (left padding shifts every row) do not
  use it: batched serving gets the same effect from the serving engine's prefix caching.

Both are pure reuse: the same numbers computed once instead of again. `EngineStats` accumulates
where a call's time went (preprocessing, vision tower, prefill, decode), which the benchmarks in
experiments/perf/ read.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass
class EngineStats:
    """Cumulative cost counters of an engine (reset with `reset()`)."""

    calls: int = 0
    preprocess_s: float = 0.0
    """Chat template + image preprocessing + tokenization (the processor call)."""
    vision_s: float = 0.0
    """Vision tower over the pages that were not cached."""
    prefill_s: float = 0.0
    """Language-model forward over the prompt tokens not reused, up to the first new token."""
    decode_s: float = 0.0
    """Every later decode step."""
    images: int = 0
    """Pages in the prompts."""
    images_preprocessed: int = 0
    """Pages that went through the image processor (the rest came from the pixel cache)."""
    images_encoded: int = 0
    """Pages that ran through the vision tower (the rest came from the vision cache)."""
    prompt_tokens: int = 0
    reused_tokens: int = 0
    """Prompt tokens whose K/V came from the prefix cache instead of a prefill."""
    generated_tokens: int = 0

    @property
    def prefill_tokens(self) -> int:
        return self.prompt_tokens - self.reused_tokens

    def reset(self) -> None:
        for name, value in asdict(EngineStats()).items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "prefill_tokens": self.prefill_tokens}


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so a wall-clock split is honest (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def page_key(image: Any) -> str | None:
    """Content hash of a PIL page (mode, size, pixels); None for anything else."""
    if not hasattr(image, "tobytes") or not hasattr(image, "size"):
        return None
    digest = hashlib.blake2b(f"{image.mode}|{image.size}".encode(), digest_size=16)
    digest.update(image.tobytes())
    return digest.hexdigest()


class PixelCache:
    """Image preprocessing per page, kept across calls: a shallow copy of the processor whose
    `image_processor` is this object runs the real image processor only on pages it has not
    seen, one page at a time (the processor treats pages independently, so the concatenation
    is the same tensor it would have built), and everything else (chat template, placeholder
    expansion, tokenization, `mm_token_type_ids`) stays the processor's own code."""

    def __init__(self, image_processor: Any, max_bytes: int = 1 << 30):
        self.inner = image_processor
        self.max_bytes = max_bytes
        self.misses = 0
        self._items: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self._bytes = 0

    def __getattr__(self, name: str) -> Any:  # merge_size, patch_size, size, ...
        return getattr(self.__dict__["inner"], name)

    def __call__(self, images: Any, **kwargs: Any) -> Any:
        from transformers import BatchFeature

        if not isinstance(images, (list, tuple)) or any(page_key(im) is None for im in images):
            return self.inner(images, **kwargs)
        options = repr(sorted((k, repr(v)) for k, v in kwargs.items() if k != "return_tensors"))
        outs = []
        for image in images:
            key = (page_key(image), options)
            out = self._items.get(key)
            if out is None:
                self.misses += 1
                out = {k: v for k, v in self.inner([image], **{**kwargs, "return_tensors": "pt"}).items()
                       if isinstance(v, torch.Tensor)}
                self._put(key, out)
            else:
                self._items.move_to_end(key)
            outs.append(out)
        data = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
        return BatchFeature(data, tensor_type=kwargs.get("return_tensors"))

    def _put(self, key: tuple, value: dict[str, torch.Tensor]) -> None:
        size = sum(t.nbytes for t in value.values())
        if size > self.max_bytes:
            return
        self._items[key] = value
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= sum(t.nbytes for t in old.values())


def caching_processor(processor: Any, max_bytes: int = 1 << 30) -> Any:
    """A shallow copy of `processor` that preprocesses each page once (see `PixelCache`)."""
    import copy

    clone = copy.copy(processor)
    clone.image_processor = PixelCache(processor.image_processor, max_bytes)
    return clone


class VisionCache:
    """LRU of per-page vision features (the model's `get_image_features` output, split per page).

    Bounded by bytes (`max_bytes`): on a GPU the features of an 8B model's page are megabytes.
    """

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[torch.Tensor, list[torch.Tensor] | None]] = OrderedDict()
        self._bytes = 0
        self._output_cls: Any = None

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    def features(self, model: Any, pixel_values: torch.Tensor, grid_thw: torch.Tensor,
                 keys: list[str | None], use_cache: bool) -> tuple[Any, int]:
        """The multimodal encoder output for these pages (in order), as the model's forward
        takes it through `mm_encoder_outputs["image"]`; and how many pages were encoded.

        Pages not cached (or all of them when `use_cache` is false) go through the vision tower
        together in one call, exactly as `generate` would run them.
        """
        patches = grid_thw.prod(-1).tolist()
        offsets = [0]
        for n in patches:
            offsets.append(offsets[-1] + n)
        todo = [i for i, key in enumerate(keys) if not use_cache or key is None or key not in self._items]
        # Take the cached pages first: storing the fresh ones below may evict them.
        found = {i: self._items[key] for i, key in enumerate(keys) if i not in todo}
        for i in found:
            self._items.move_to_end(keys[i])
        fresh: dict[int, tuple[torch.Tensor, list[torch.Tensor] | None]] = {}
        if todo:
            rows = torch.cat([pixel_values[offsets[i]:offsets[i + 1]] for i in todo])
            out = model.get_image_features(rows, grid_thw[todo], return_dict=True)
            self._output_cls = type(out)
            deep = getattr(out, "deepstack_features", None)
            for j, i in enumerate(todo):
                fresh[i] = (out.pooler_output[j],
                            [layer[j] for layer in deep] if deep is not None else None)
                if use_cache and keys[i] is not None:
                    self._put(keys[i], fresh[i])
        parts = [fresh[i] if i in fresh else found[i] for i in range(len(keys))]
        output = self._output_cls(pooler_output=tuple(p[0] for p in parts))
        if parts and parts[0][1] is not None:
            output.deepstack_features = [tuple(p[1][layer] for p in parts)
                                         for layer in range(len(parts[0][1]))]
        return output, len(todo)

    def _put(self, key: str, value: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
        size = value[0].nbytes + sum(t.nbytes for t in value[1] or [])
        if size > self.max_bytes:
            return
        self._items[key] = value
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (old, deep) = self._items.popitem(last=False)
            self._bytes -= old.nbytes + sum(t.nbytes for t in deep or [])


def image_spans(ids: torch.Tensor, image_token_id: int | None) -> list[tuple[int, int]]:
    """[start, end) of each run of image placeholder tokens in a 1-D id tensor."""
    if image_token_id is None or ids.numel() == 0:
        return []
    is_img = (ids == image_token_id).to(torch.int8)
    edges = torch.diff(is_img, prepend=is_img.new_zeros(1), append=is_img.new_zeros(1))
    starts = (edges == 1).nonzero().flatten().tolist()
    ends = (edges == -1).nonzero().flatten().tolist()
    return list(zip(starts, ends))


@dataclass
class _Entry:
    ids: torch.Tensor
    """Token ids whose K/V the cache holds (1-D, CPU)."""
    pages: list[tuple[int, int, str]]
    """(start, end, page key) of every page the prompt held."""
    cache: Any


class PrefixCache:
    """The KV cache of the last single-request generation, reusable by the next one."""

    def __init__(self, min_tokens: int = 1):
        self.min_tokens = min_tokens
        self._entry: _Entry | None = None

    def clear(self) -> None:
        self._entry = None

    def match(self, ids: torch.Tensor, pages: list[tuple[int, int, str]]) -> tuple[Any, int]:
        """(cache cropped to the reusable prefix, its length) for a prompt, or (None, 0).

        The prefix must hold the same token ids, and every page that starts inside it must be
        the same page at the same place in both sequences (the placeholders of two different
        pages are the same tokens). At least one prompt token is left to prefill: the first new
        token's logits come from it. The entry is consumed: generate extends the cache in place.
        """
        entry, self._entry = self._entry, None
        if entry is None:
            return None, 0
        n = min(entry.ids.numel(), ids.numel() - 1)
        if n < self.min_tokens:
            return None, 0
        diff = (entry.ids[:n] != ids[:n]).nonzero()
        length = int(diff[0]) if diff.numel() else n
        old, new = set(entry.pages), set(pages)
        for start, end, key in sorted(old | new):
            if start < length and ((start, end, key) not in old or (start, end, key) not in new
                                   or end > length):
                length = start
        if length < self.min_tokens:
            return None, 0
        entry.cache.crop(length - entry.cache.get_seq_length())  # a negative count: tokens to drop
        return entry.cache, length

    def store(self, ids: torch.Tensor, pages: list[tuple[int, int, str]], cache: Any) -> None:
        """Remember a finished single-request call: `ids` = prompt + generated tokens."""
        length = cache.get_seq_length() if cache is not None else 0
        if length <= 0:
            return
        self._entry = _Entry(ids[:length].detach().cpu(), [p for p in pages if p[1] <= length], cache)


class Clock:
    """Logits processor that records when the first and each later token's logits arrive (it
    changes nothing): the first call ends the prefill, the rest are decode steps."""

    def __init__(self, device: torch.device):
        self.device = device
        self.start = time.perf_counter()
        self.first: float | None = None
        self.steps = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self.first is None:
            sync(self.device)
            self.first = time.perf_counter()
        self.steps += 1
        return scores
