"""`HFEngine`: the loops' `Engine` as Hugging Face `generate` in this process.

The engine API itself (`Engine`, `GenerationRequest`, `GenerationParams`, `GenerationOutput`)
lives in the torch-free `vtc_lab.infer.engine_api`, so the loop and the OpenAI client import
without torch; it is re-exported here for the callers that import it from this module. A vLLM
engine for GPU clusters only has to implement the same methods.

Sampling is per request: each request carries its own seed and is sampled with its own
`torch.Generator`, so a sample's tokens do not depend on which other requests share its batch
(an interrupted eval resumed with a different batch composition draws the same samples).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from vtc_lab.infer.engine_api import (Engine, GenerationOutput, GenerationParams,
                                      GenerationRequest)
from vtc_lab.infer.reuse import (Clock, EngineStats, PrefixCache, VisionCache, caching_processor,
                                 image_spans, page_key, sync)
from vtc_lab.models.internals import reset_rope_deltas

if TYPE_CHECKING:
    from vtc_lab.infer.config import EvalConfig

__all__ = ["Engine", "GenerationOutput", "GenerationParams", "GenerationRequest", "HFEngine",
           "build_hf_engine"]


def build_hf_engine(cfg: EvalConfig) -> HFEngine:
    """`vtc-lab eval`'s in-process engine (registered as `hf` in `vtc_lab.infer.engines`): the
    `model` group's backbone with the `checkpoint=` weights, on `cfg.device`, in eval mode; torch's
    global seed set from the loop's, so a run's greedy and sampled outputs repeat."""
    from vtc_lab.models import load_backbone
    from vtc_lab.models.checkpoint import load_checkpoint_weights

    backbone = load_backbone(cfg.model)
    if cfg.checkpoint:
        load_checkpoint_weights(backbone.model, cfg.checkpoint)
    device = cfg.device if cfg.device != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    backbone.model.to(device).eval()
    engine = HFEngine(backbone)
    torch.manual_seed(cfg.loop.seed)
    return engine


class _RowSampler:
    """Logits processor that samples each batch row with its own generator.

    It returns scores that are -inf everywhere except at the sampled token, and generate runs
    in greedy mode, so HF picks exactly the token this processor drew. Temperature, top-k and
    top-p are applied here (HF's own warpers are off in greedy mode).
    """

    def __init__(self, seeds: Sequence[int], params: GenerationParams, device: torch.device):
        self.params = params
        self.generators = [torch.Generator(device=device).manual_seed(int(s) % (2**63))
                           for s in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        p = self.params
        logits = scores.float() / p.temperature
        if p.top_k > 0:
            kth = torch.topk(logits, min(p.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            probs = torch.softmax(sorted_logits, dim=-1)
            # Drop a token when the mass strictly before it already reaches top_p (keeps >= 1).
            drop_sorted = (torch.cumsum(probs, dim=-1) - probs) >= p.top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        out = torch.full_like(scores, float("-inf"))
        for row, gen in enumerate(self.generators):
            token = torch.multinomial(probs[row], 1, generator=gen)
            out[row, token] = 0.0
        return out


def _image_token_id(backbone: Any) -> int | None:
    for owner in (backbone.processor, getattr(backbone.model, "config", None)):
        value = getattr(owner, "image_token_id", None)
        if isinstance(value, int):
            return value
    return None


class HFEngine:
    """Batched `model.generate` (left padding, KV cache on) over a `vtc_lab.models.Backbone`.

    The prompt of each request is `processor.apply_chat_template(messages,
    add_generation_prompt=True)`: the same template and the same `build_messages` output as
    the training collator, so the inference prompt is the training prompt's prefix.
    """

    def __init__(self, backbone: Any, *, reuse_vision: bool = True, reuse_prefix: bool = True,
                 vision_cache_bytes: int = 1 << 30, static_cache: bool = False):
        """`reuse_vision`: keep each page's image preprocessing and vision features across
        calls (any batch size; `vision_cache_bytes` bounds each of the two caches).
        `reuse_prefix`: a single-request call starts from the KV cache of the previous
        single-request call where their prompts share a prefix (see `vtc_lab.infer.reuse`).
        Both only skip recomputation; `stats` accumulates where the time went.
        `static_cache`: generate with a preallocated static KV cache, which on a GPU makes
        transformers compile the decode step (removes the eager engine's per-step launch
        overhead); it replaces the prefix reuse (a static cache is allocated per call). Tested
        on CPU for identical outputs only (no compilation there); never run on a GPU here."""
        self.backbone = backbone
        self.reuse_vision = reuse_vision
        self.static_cache = static_cache
        self.reuse_prefix = reuse_prefix and not static_cache
        self.stats = EngineStats()
        self.vision_cache = VisionCache(vision_cache_bytes)
        self.prefix_cache = PrefixCache()
        # Same processor, but each page's image preprocessing runs once (reuse_vision).
        self._encoder = caching_processor(backbone.processor, vision_cache_bytes) \
            if reuse_vision else backbone.processor
        self.model = backbone.model
        self.processor = backbone.processor
        self.tokenizer = getattr(backbone, "tokenizer", None) or self.processor.tokenizer
        self.image_token_id = _image_token_id(backbone)
        if self.tokenizer.pad_token_id is None:
            raise ValueError("HFEngine: the tokenizer has no pad token; left padding needs one")
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.stop_ids = self._stop_ids()
        self.special_ids = set(self.tokenizer.all_special_ids) | set(self.stop_ids)
        if self.image_token_id is not None:
            self.special_ids.add(self.image_token_id)

    def _stop_ids(self) -> list[int]:
        ids: list[int] = list(getattr(self.backbone, "stop_token_ids", None) or [])
        gen_cfg = getattr(self.model, "generation_config", None)
        for value in (getattr(gen_cfg, "eos_token_id", None), self.tokenizer.eos_token_id):
            if value is None:
                continue
            ids.extend([value] if isinstance(value, int) else list(value))
        return sorted(set(ids))

    # -- prompt ----------------------------------------------------------------------------
    def prompt_text(self, messages: list[dict]) -> str:
        """The chat-template text of one request (no assistant prefix)."""
        return self.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)

    def encode(self, request: GenerationRequest) -> dict[str, torch.Tensor]:
        """Processor outputs of one request, the prefix ids appended to the sequence keys."""
        images = _images(request)
        # add_special_tokens=False: the template already holds every special token, and the
        # training encoder (vtc_lab.train.collate.SFTEncoder) tokenizes the same way.
        enc = self._encoder(text=[self.prompt_text(request.messages)], images=images or None,
                             add_special_tokens=False, return_tensors="pt")
        enc = dict(enc)
        length = enc["input_ids"].shape[1]
        if request.prefix_ids:
            extra = torch.tensor([request.prefix_ids], dtype=enc["input_ids"].dtype)
            for key, value in list(enc.items()):
                if _is_sequence(value, length):
                    fill = extra if key == "input_ids" else (
                        torch.ones_like(extra) if key == "attention_mask" else torch.zeros_like(extra))
                    enc[key] = torch.cat([value, fill.to(value.dtype)], dim=1)
        return enc

    def _collate(self, encodings: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Left-pad the sequence tensors, concatenate the image tensors along dim 0."""
        lengths = [e["input_ids"].shape[1] for e in encodings]
        width = max(lengths)
        batch: dict[str, torch.Tensor] = {}
        keys = list(dict.fromkeys(k for e in encodings for k in e))
        for key in keys:
            values = [e[key] for e in encodings if key in e]
            if all(_is_sequence(v, n) for v, n in zip(values, lengths)):
                pad = self.pad_id if key == "input_ids" else 0
                batch[key] = torch.cat([
                    torch.cat([torch.full((1, width - v.shape[1]), pad, dtype=v.dtype), v], dim=1)
                    for v in values], dim=0)
            else:
                batch[key] = torch.cat(values, dim=0)
        return batch

    # -- Engine ----------------------------------------------------------------------------
    def clear_cache(self) -> None:
        """Drop the cached vision features and KV prefix (frees their memory)."""
        self.vision_cache.clear()
        self.prefix_cache.clear()
        if self._encoder is not self.processor:
            self._encoder = caching_processor(self.processor, self.vision_cache.max_bytes)

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest],
                 params: GenerationParams) -> list[GenerationOutput]:
        if not requests:
            return []
        t0 = time.perf_counter()
        misses = getattr(self._encoder.image_processor, "misses", None)
        encodings = [self.encode(r) for r in requests]
        self.stats.preprocess_s += time.perf_counter() - t0
        self.stats.images_preprocessed += (self._encoder.image_processor.misses - misses) \
            if misses is not None else sum(len(_images(r)) for r in requests)
        batch = self._collate(encodings)
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        kwargs: dict[str, Any] = dict(max_new_tokens=params.max_new_tokens, do_sample=False,
                                      use_cache=True, pad_token_id=self.pad_id,
                                      eos_token_id=self.stop_ids or None,
                                      repetition_penalty=params.repetition_penalty,
                                      temperature=None, top_p=None, top_k=None,
                                      return_dict_in_generate=True)
        clock = Clock(device)
        from transformers import LogitsProcessorList

        kwargs["logits_processor"] = LogitsProcessorList(
            self.logits_processors(requests, params, device) + [clock])
        start = time.perf_counter()
        keys = [page_key(image) for r in requests for image in _images(r)]
        pages = self._pages(batch["input_ids"][0], keys) if len(requests) == 1 else None
        cache, reused = (self.prefix_cache.match(batch["input_ids"][0], pages)
                         if pages is not None and self.reuse_prefix else (None, 0))
        batch = {k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device))
                 for k, v in batch.items()}
        if cache is not None:
            kwargs["past_key_values"] = cache
        if self.static_cache:
            kwargs["cache_implementation"] = "static"
        self._encode_pages(batch, kwargs, keys, sum(1 for p in pages or [] if p[0] < reused))
        reset_rope_deltas(self.model)  # M-RoPE offsets of an earlier call: recomputed from the ids
        clock.start = time.perf_counter()
        out = self.model.generate(**batch, **kwargs)
        sync(device)
        end_time = time.perf_counter()
        elapsed = end_time - start
        if pages is not None and self.reuse_prefix:
            self.prefix_cache.store(out.sequences[0], pages, out.past_key_values)
        first = clock.first if clock.first is not None else end_time
        self.stats.calls += 1
        self.stats.prefill_s += first - clock.start
        self.stats.decode_s += end_time - first
        self.stats.prompt_tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch \
            else int(batch["input_ids"].numel())
        self.stats.reused_tokens += reused
        out = out.sequences
        prompt_width = batch["input_ids"].shape[1]
        results = []
        for row, enc in enumerate(encodings):
            ids = out[row, prompt_width:].tolist()
            stopped = False
            for i, tok in enumerate(ids):
                if tok in self.stop_ids:
                    ids, stopped = ids[:i + 1], True
                    break
            else:
                while ids and ids[-1] == self.pad_id and self.pad_id not in self.stop_ids:
                    ids.pop()  # rows that ended early are padded by generate
            text_ids = ids[:-1] if stopped else ids
            prompt_ids = enc["input_ids"][0]
            vision = int((prompt_ids == self.image_token_id).sum()) if self.image_token_id is not None else 0
            results.append(GenerationOutput(
                text=self.tokenizer.decode(text_ids, skip_special_tokens=True),
                token_ids=ids, context_text_tokens=int(prompt_ids.numel()) - vision,
                context_vision_tokens=vision, stopped=stopped, generate_s=elapsed,
                memory_ids=[t for t in text_ids if t not in self.special_ids]))
        self.stats.generated_tokens += sum(len(r.token_ids) for r in results)
        return results

    def _pages(self, ids: torch.Tensor, keys: list[str | None]) -> list[tuple[int, int, str]] | None:
        """(start, end, key) of each page's placeholders in a single prompt; None when the pages
        cannot be told apart (not PIL images, or runs that do not map one-to-one onto pages)."""
        spans = image_spans(ids, self.image_token_id)
        if len(spans) != len(keys) or any(k is None for k in keys):
            return None
        return [(a, b, k) for (a, b), k in zip(spans, keys)]

    def _encode_pages(self, batch: dict, kwargs: dict, keys: list[str | None], skip: int) -> None:
        """Run the vision tower here (through the vision cache) instead of inside `generate`,
        and hand `generate` the features of the pages it will prefill: all of them, or those
        after the first `skip` pages when the KV prefix already covers those."""
        pixels = batch.get("pixel_values")
        grid = batch.get("image_grid_thw")
        if pixels is None or grid is None or not hasattr(self.model, "get_image_features") \
                or "mm_encoder_outputs" not in inspect.signature(self.model.forward).parameters:
            return  # generate encodes the images itself
        del batch["pixel_values"]
        self.stats.images += len(keys)
        if skip >= len(keys):
            return
        t0 = time.perf_counter()
        offset = int(grid[:skip].prod(-1).sum()) if skip else 0
        features, encoded = self.vision_cache.features(
            self.model, pixels[offset:], grid[skip:], keys[skip:], self.reuse_vision)
        kwargs["mm_encoder_outputs"] = {"image": features}
        sync(pixels.device)
        self.stats.vision_s += time.perf_counter() - t0
        self.stats.images_encoded += encoded

    def logits_processors(self, requests: Sequence[GenerationRequest], params: GenerationParams,
                          device: torch.device) -> list:
        """Extra logits processors for one batch (the per-row sampler when sampling). A subclass
        may add its own, e.g. to force a known continuation in a benchmark."""
        return [_RowSampler([r.seed for r in requests], params, device)] if params.do_sample else []

    def close(self) -> None:
        """Drop the cached pages and prefixes (the model stays: its owner frees it)."""
        self.clear_cache()

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_prompt_tokens(self, request: GenerationRequest) -> tuple[int, int]:
        """(text, vision) tokens of `request`'s prompt, exactly as `generate` would feed it (the
        same `encode`; page preprocessing is cached, so `generate` does not redo it). What the
        loop's context cap (`loop.max_context_tokens`) is checked on."""
        ids = self.encode(request)["input_ids"][0]
        vision = int((ids == self.image_token_id).sum()) if self.image_token_id is not None else 0
        return int(ids.numel()) - vision, vision

    def kv_bytes_per_token(self) -> int | None:
        """Bytes of K and V cached per token: 2 x layers x kv_heads x head_dim x dtype bytes."""
        config = self.model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        layers = getattr(text, "num_hidden_layers", None)
        heads = getattr(text, "num_attention_heads", None)
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        head_dim = getattr(text, "head_dim", None) or (
            text.hidden_size // heads if heads and getattr(text, "hidden_size", None) else None)
        if not (layers and kv_heads and head_dim):
            return None
        itemsize = next(self.model.parameters()).element_size()
        return 2 * layers * kv_heads * head_dim * itemsize


def _images(request: GenerationRequest) -> list:
    return [part["image"] for msg in request.messages if isinstance(msg.get("content"), list)
            for part in msg["content"] if part.get("type") == "image"]


def _is_sequence(value: Any, length: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == (1, length)
