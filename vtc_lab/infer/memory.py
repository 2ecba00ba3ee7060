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


class TextMemory(NoMemory):
    """`text`: one long generation cut into rounds; earlier rounds stay as exact token ids."""

    def observe(self, unit: Unit, out: Any) -> str:
        unit.prefix_text += out.text
        return unit.prefix_text

    def remember(self, unit: Unit, out: Any, rec: RoundRecord) -> None:
        if out.memory_ids is not None:
            ids = list(out.memory_ids)
        else:
            ids = list(out.token_ids)
            if out.stopped and ids:
                ids = ids[:-1]  # the end-of-turn token would close the turn we continue
        rec.memory_text_tokens = len(ids)
        unit.prefix_ids = unit.prefix_ids + ids

    def output(self, unit: Unit) -> str:
        return unit.prefix_text


class OpticalMemory(NoMemory):
    """`optical`: each round's text is rendered and its pages appended to the prompt's images."""

    def __init__(self, renderer: Renderer, count_text_tokens: Callable[[str], int],
                 max_pixels: int | None = None):
        self.renderer = renderer
        self.count_text_tokens = count_text_tokens
        self.max_pixels = max_pixels

    def observe(self, unit: Unit, out: Any) -> str:
        if unit.pending_vision is not None and unit.rounds:
            # Exact cost of the pages appended after the previous round: the difference in
            # vision placeholders the model actually saw.
            unit.rounds[-1].memory_vision_tokens = out.context_vision_tokens - unit.pending_vision
            unit.pending_vision = None
        return out.text

    def remember(self, unit: Unit, out: Any, rec: RoundRecord) -> None:
        if not out.text.strip():
            # An empty (or blank) round has nothing to remember: no blank page joins the memory.
            # It is counted in the metrics as bad/empty_rounds.
            return
        t0 = time.perf_counter()
        try:
            pages, lossy = self.renderer(out.text)
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
        rec.memory_text_tokens = self.count_text_tokens(out.text) if out.text else 0
        unit.pending_vision = out.context_vision_tokens
        unit.images = unit.images + list(pages)
