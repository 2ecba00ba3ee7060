"""What each loop mode carries from one round to the next: one strategy per mode.

`run_loop` itself is mode-free: it asks the sample's memory what the round's graded text is
(`observe`), lets it turn a non-final round into memory (`remember`), and asks it for the
sample's output (`output`). The prompt always holds the question plus `unit.images` and
continues from `unit.prefix_ids`; only the optical memory fills the first, only the text
memory the second.

- `OpticalMemory`: the round's text is rendered to pages that are appended to the images.
- `TextMemory`: the round's token ids are appended to the assistant turn the model continues;
  the graded text is the whole turn so far.
- `NoMemory`: nothing is kept; every round sees only the question.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vtc_lab.infer.records import RoundRecord

Renderer = Callable[[str], tuple[list, bool]]
"""`text -> (pages, lossy)`: what the optical memory draws a round with."""


@dataclass
class Unit:
    """Mutable state of one (problem, sample) while its batch runs."""

    problem: Any
    sample: int
    seed: int
    images: list = field(default_factory=list)
    """Memory pages in the prompt (optical memory only)."""
    prefix_ids: list[int] = field(default_factory=list)
    """Token ids the model continues its assistant turn from (text memory only)."""
    prefix_text: str = ""
    """The assistant turn so far, as text (text memory only)."""
    rounds: list[RoundRecord] = field(default_factory=list)
    status: str | None = None
    pending_vision: int | None = None
    """Vision tokens before the latest pages were appended (optical memory only)."""
    new_pages: int = 0
    """Pages the latest `remember` appended (optical memory only)."""
    dropped_tokens: int = 0
    dropped_images: int = 0
    dropped_vision: int = 0
    """Memory dropped to fit the context cap before the round now being generated (prompt
    tokens, pages, and the vision tokens among those tokens); moved into its round record."""

    @property
    def done(self) -> bool:
        return self.status is not None


class NoMemory:
    """`none`: every round sees only the question (what the memory is worth)."""

    def observe(self, unit: Unit, out: Any) -> str:
        """The text this round is graded on (is it final?)."""
        return out.text

    def remember(self, unit: Unit, out: Any, rec: RoundRecord) -> None:
        """Turn a round that did not end the sample into memory for the next one."""

    def output(self, unit: Unit) -> str:
        """The sample's graded output: its last round."""
        return unit.rounds[-1].text if unit.rounds else ""

    def drop_oldest(self, unit: Unit, excess: int) -> bool:
        """Drop the oldest memory of `unit`, about `excess` prompt tokens of it in the memory's
        own unit (`loop.context_policy=drop_oldest`); False when there is nothing to drop."""
        return False


def _kept_ids(out: Any) -> list[int]:
    """The ids of a round that may be fed back as text (`GenerationOutput.memory_ids`)."""
    if out.memory_ids is not None:
        return list(out.memory_ids)
    ids = list(out.token_ids)
    if out.stopped and ids:
        ids = ids[:-1]  # the end-of-turn token would close the turn we continue
    return ids


def _drop_prefix(unit: Unit, excess: int) -> bool:
    """Drop `excess` ids (at least one, at most all) from the left of the kept assistant turn:
    each id is one prompt token, so the cut is exact."""
    n = min(max(excess, 1), len(unit.prefix_ids))
    if n == 0:
        return False
    unit.prefix_ids = unit.prefix_ids[n:]
    return True


class TextMemory(NoMemory):
    """`text`: one long generation cut into rounds; earlier rounds stay as exact token ids."""

    def observe(self, unit: Unit, out: Any) -> str:
        unit.prefix_text += out.text
        return unit.prefix_text

    def remember(self, unit: Unit, out: Any, rec: RoundRecord) -> None:
        ids = _kept_ids(out)
        rec.memory_text_tokens = len(ids)
        rec.memory_kind = "text"
        unit.prefix_ids = unit.prefix_ids + ids

    def output(self, unit: Unit) -> str:
        return unit.prefix_text

    def drop_oldest(self, unit: Unit, excess: int) -> bool:
        """Token ids from the left of the kept turn (the graded turn `prefix_text` keeps all)."""
        return _drop_prefix(unit, excess)


class OpticalMemory(NoMemory):
    """`optical`: each round's text is rendered and its pages appended to the prompt's images."""

    def __init__(self, renderer: Renderer, count_text_tokens: Callable[[str], int],
                 max_pixels: int | None = None, min_render_tokens: int = 0):
        self.renderer = renderer
        self.count_text_tokens = count_text_tokens
        self.max_pixels = max_pixels
        self.min_render_tokens = min_render_tokens

    def observe(self, unit: Unit, out: Any) -> str:
        if unit.pending_vision is not None and unit.rounds:
            # Exact cost of the pages appended after the previous round: the difference in
            # vision placeholders the model actually saw.
            # previous round, plus the vision tokens of older pages dropped since (context cap).
            unit.rounds[-1].memory_vision_tokens = (out.context_vision_tokens - unit.pending_vision
                                                    + unit.dropped_vision)
            unit.pending_vision = None
        return out.text

    def remember(self, unit: Unit, out: Any, rec: RoundRecord) -> None:
        if not out.text.strip():
            # An empty (or blank) round has nothing to remember: no blank page joins the memory.
            # It is counted in the metrics as bad/empty_rounds.
            return
        text = unit.prefix_text + out.text
        if self.min_render_tokens and self.count_text_tokens(text) < self.min_render_tokens:
            # Too short to pay for its rendering: kept as text, continued by the next round.
            ids = _kept_ids(out)
            rec.memory_text_tokens = len(ids)
            rec.memory_kind = "text"
            unit.prefix_ids = unit.prefix_ids + ids
            unit.prefix_text = text
            return
        t0 = time.perf_counter()
        try:
            pages, lossy = self.renderer(text)
        except Exception as err:  # noqa: BLE001 - a renderer failure ends this sample, counted
            rec.render_s = time.perf_counter() - t0
            rec.render_error = f"{type(err).__name__}: {str(err)[:200]}"
            return
        if self.max_pixels:
            from vtc_lab.models.images import cap_pixels  # the training encoder's own resize

            pages = [cap_pixels(page, self.max_pixels) for page in pages]
        rec.render_s = time.perf_counter() - t0
        rec.new_images = len(pages)
        rec.render_truncated = lossy
        rec.memory_text_tokens = self.count_text_tokens(text) if text else 0
        rec.memory_kind = "pages"
        unit.pending_vision = out.context_vision_tokens
        unit.new_pages = len(pages)
        unit.images = unit.images + list(pages)
        unit.prefix_ids, unit.prefix_text = [], ""  # the kept text is on these pages now

    def drop_oldest(self, unit: Unit, excess: int) -> bool:
        """Whole pages, oldest first; then the kept text of short rounds (newer than any page)
        from the left. Dropping one of the newest pages loses the measurement of what they
        cost (`memory_vision_tokens` stays 0 for that round)."""
        if unit.images:
            unit.images = unit.images[1:]
            unit.dropped_images += 1
            if len(unit.images) < unit.new_pages:
                unit.pending_vision = None
                unit.new_pages = len(unit.images)
            return True
        return _drop_prefix(unit, excess)
