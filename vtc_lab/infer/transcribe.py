"""`vtc-lab eval task=transcribe`: read a rendered page back, scored by character error rate.

Why: the loops only show reading through the final answer, so a misread page and a wrong step
look the same. Here each problem's text (a reference solution, by default) is rendered with the
run's renderer exactly as the optical loop renders memory, each page is shown to the model with
the transcription prompt, and the transcript is compared with the text that is on that page
(`vtc_lab.eval.cer`, whitespace normalised). The renderer config is the variable: a sweep over
renderer settings (Hydra multirun) gives CER per setting. Any engine: the in-process model
(tiny on a CPU, a checkpoint on a GPU) or a server behind `engine=openai`. The transcript is
only decoded and compared, never executed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vtc_lab.eval.cer import cer
from vtc_lab.infer.config import LoopConfig, TranscribeConfig
from vtc_lab.infer.loop import derive_seed, generation_params

SOURCE_FIELDS = ("solution", "reference", "reasoning")
"""Problem fields `transcribe.source=auto` renders, the first one present (else the question)."""


@dataclass
class PageRecord:
    """One transcribed page."""

    problem_id: str
    page: int
    """0-based page index within the problem's rendered text."""
    reference: str
    """The text drawn on the page (the span of the source text its characters come from)."""
    transcript: str
    edits: int
    """Edit distance between reference and transcript (whitespace normalised)."""
    ref_chars: int
    """Characters of the normalised reference."""
    generated_tokens: int
    stopped: bool
    """The model ended its turn (False: it ran into `loop.max_new_tokens`)."""
    vision_tokens: int
    """Vision tokens the page cost in the prompt."""
    generate_s: float

    @property
    def cer(self) -> float:
        return self.edits / max(self.ref_chars, 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cer": self.cer}


def source_text(problem: Any, source: str) -> str:
    """The text of `problem` that `transcribe.source` names ('' when it has none)."""
    if source == "question":
        return problem.question
    if source == "auto":
        for name in SOURCE_FIELDS:
            value = problem.meta.get(name)
            if isinstance(value, str) and value.strip():
                return value
        return problem.question
    value = problem.meta.get(source)
    return value if isinstance(value, str) else ""


def rendered_pages(text: str, render_cfg: Any, max_pages: int = 0) -> list[tuple[Any, str]]:
    """(page image, the text on it) per page of `text` rendered with `render_cfg`: a page's text
    is the source span from its first to its last drawn character (blank pages skipped)."""
    from vtc_lab.render import render_with_layout

    result = render_with_layout(text, render_cfg)
    out = []
    for image, boxes in zip(result.images, result.boxes):
        if boxes:
            lo, hi = min(b.index for b in boxes), max(b.index for b in boxes)
            out.append((image, text[lo:hi + 1]))
        if max_pages and len(out) == max_pages:
            break
    return out


def run_transcription(engine: Any, problems: Sequence[Any], tcfg: TranscribeConfig,
                      loop_cfg: LoopConfig, render_cfg: Any, system_prompt: str | None,
                      image_position: str = "before", image_max_pixels: int | None = None,
                      ) -> list[PageRecord]:
    """Transcribe the first `tcfg.max_pages` pages of each problem's text, `loop_cfg.batch_size`
    requests per `generate` call with `loop_cfg`'s decoding settings; one record per page.
    A problem without the source text is skipped; none at all is an error."""
    from vtc_lab.data.messages import build_messages
    from vtc_lab.infer.engine_api import GenerationRequest

    jobs = []
    for p in problems:
        text = source_text(p, tcfg.source)
        if tcfg.max_chars:
            text = text[:tcfg.max_chars]
        if not text.strip():
            continue
        for i, (image, reference) in enumerate(rendered_pages(text, render_cfg, tcfg.max_pages)):
            if image_max_pixels:
                from vtc_lab.models.images import cap_pixels  # the optical loop's own resize

                image = cap_pixels(image, image_max_pixels)
            jobs.append((p, i, image, reference))
    if not jobs:
        raise ValueError(f"transcribe.source={tcfg.source!r}: no problem has that text to render")
    params = generation_params(loop_cfg)
    records = []
    for start in range(0, len(jobs), loop_cfg.batch_size):
        batch = jobs[start:start + loop_cfg.batch_size]
        requests = [GenerationRequest(
            messages=build_messages(tcfg.prompt, [image], system_prompt, image_position),
            seed=derive_seed(loop_cfg.seed, p.benchmark, p.id, 0, i + 1))
            for p, i, image, _ in batch]
        t0 = time.perf_counter()
        outputs = engine.generate(requests, params)
        elapsed = time.perf_counter() - t0
        for (p, i, _, reference), out in zip(batch, outputs):
            if out.overflow is not None:
                raise ValueError(f"{p.benchmark}/{p.id} page {i}: the server refused the prompt "
                                 f"as too long ({out.overflow}); lower transcribe.max_chars or "
                                 "the renderer's page size")
            edits, chars = cer(reference, out.text)
            records.append(PageRecord(
                problem_id=p.id, page=i, reference=reference, transcript=out.text, edits=edits,
                ref_chars=chars, generated_tokens=len(out.token_ids), stopped=out.stopped,
                vision_tokens=out.context_vision_tokens, generate_s=elapsed))
    return records


def transcription_metrics(records: Sequence[PageRecord]) -> dict[str, float]:
    """`cer` (all edits over all reference characters), `cer_mean` (mean of the pages' rates),
    `exact_rate` (pages transcribed without an edit), page and size counters."""
    n = len(records)
    chars = sum(r.ref_chars for r in records)
    return {
        "cer": sum(r.edits for r in records) / max(chars, 1),
        "cer_mean": sum(r.cer for r in records) / n,
        "exact_rate": sum(r.edits == 0 for r in records) / n,
        "pages": float(n),
        "ref_chars_mean": chars / n,
        "vision_tokens_mean": sum(r.vision_tokens for r in records) / n,
        "chars_per_vision_token": chars / max(sum(r.vision_tokens for r in records), 1),
        "generated_tokens_mean": sum(r.generated_tokens for r in records) / n,
        "bad/budget_hits": float(sum(not r.stopped for r in records)),
    }
