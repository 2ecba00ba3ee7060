"""What the loops record: one `RoundRecord` per round, one `ProblemRecord` per problem sample.

Records are plain dataclasses that round-trip through JSON (`to_dict` / `from_dict`), so the
predictions file of `vtc-lab eval` is a jsonl of `ProblemRecord.to_dict()` lines and a resumed
eval rebuilds exactly the records it had written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Why a problem sample stopped.
STATUSES = ("final", "max_rounds", "context_overflow", "render_error")


@dataclass
class RoundRecord:
    round: int
    """1-based round index."""
    text: str
    """The round's generated text (decoded, end-of-turn token removed)."""
    generated_tokens: int
    """New tokens of this round (incl. the end-of-turn token when emitted)."""
    context_text_tokens: int
    """Prompt tokens that are not image placeholders (system, question, template, delimiters,
    and in the text loop the earlier rounds' tokens)."""
    context_vision_tokens: int
    """Image placeholder tokens in the prompt (merged vision tokens of all memory images)."""
    images: int
    """Memory images in this round's prompt."""
    generate_s: float
    """Wall time of the batched generate call this round was part of."""
    final: bool
    """`</think>` then a non-empty `<answer>` (vtc_lab.task.completion.is_final)."""
    stopped: bool
    """The model ended its turn itself (False: it ran into max_new_tokens)."""
    render_s: float = 0.0
    """Time spent rendering this round's text into memory pages (optical loop)."""
    new_images: int = 0
    """Pages rendered from this round's text and appended to the memory."""
    memory_text_tokens: int = 0
    """Optical: text tokens (the backbone's tokenizer) of this round's rendered text. Text loop:
    the ids of this round kept in the assistant turn (special tokens removed)."""
    memory_vision_tokens: int = 0
    """Vision tokens the pages rendered after this round cost in the next prompt."""
    render_error: str | None = None
    """The renderer's exception message, when rendering this round's text failed."""
    render_truncated: bool = False
    """The renderer reported truncation / dropped characters for this round's text."""
    memory_kind: str = ""
    """How this round was kept for the next one: `pages` (rendered), `text` (kept as token ids:
    the text loop, or an optical round shorter than `loop.min_render_tokens`), empty when it
    was not kept (final round, no memory, nothing to keep)."""
    dropped_tokens: int = 0
    """Prompt tokens of memory dropped before this round so that its prompt fits
    `loop.max_context_tokens` (`loop.context_policy=drop_oldest`); 0: nothing dropped."""
    dropped_images: int = 0
    """Memory pages dropped before this round (optical memory, same rule)."""


@dataclass
class ProblemRecord:
    problem_id: str
    """The benchmark's problem id (a label; never used as a path)."""
    benchmark: str
    """Benchmark name."""
    sample: int
    """0-based sample index (mean@k)."""
    mode: str
    """Loop mode: optical | text | none."""
    seed: int
    """Base seed of this sample (round r samples with a seed derived from it and r)."""
    gold: str
    """Reference answer."""
    status: str
    """final | max_rounds | context_overflow | render_error."""
    output: str
    """The graded text: the final round's output (optical, none) or the whole assistant turn
    (text loop)."""
    latency_s: float
    """End-to-end time of this sample: its rounds' generate + render time."""
    rounds: list[RoundRecord] = field(default_factory=list)
    prediction: str | None = None
    """Extracted answer (lenient); filled by grading."""
    correct: bool | None = None
    """Graded verdict (lenient); None until graded."""
    prediction_strict: str | None = None
    correct_strict: bool | None = None
    grade_status: str | None = None
    """Grader status (ok | timeout | error); None until graded."""
    memory_images: list[Any] = field(default_factory=list, repr=False)
    """The rendered pages (kept for a few records only, for logging; never serialized)."""

    @property
    def key(self) -> tuple[str, int]:
        return (self.problem_id, self.sample)

    @property
    def num_rounds(self) -> int:
        return len(self.rounds)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("rounds", "memory_images")}
        out["rounds"] = [asdict(r) for r in self.rounds]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProblemRecord:
        names = {f.name for f in fields(cls)} - {"rounds", "memory_images"}
        unknown = set(data) - names - {"rounds"}
        if unknown:
            raise ValueError(f"ProblemRecord: unknown fields {sorted(unknown)}")
        rounds = [RoundRecord(**r) for r in data.get("rounds", [])]
        return cls(**{k: v for k, v in data.items() if k in names}, rounds=rounds)

    def table_row(self) -> dict[str, Any]:
        """One predictions-table row: the per-sample summary a person scans in the MLflow UI."""
        return {
            "problem_id": self.problem_id, "sample": self.sample, "mode": self.mode,
            "status": self.status, "rounds": self.num_rounds,
            "generated_tokens": sum(r.generated_tokens for r in self.rounds),
            "peak_context_tokens": max((r.context_text_tokens + r.context_vision_tokens
                                        for r in self.rounds), default=0),
            "gold": self.gold, "prediction": self.prediction, "correct": self.correct,
            "prediction_strict": self.prediction_strict, "correct_strict": self.correct_strict,
            "latency_s": round(self.latency_s, 4),
            "dropped_tokens": sum(r.dropped_tokens for r in self.rounds),
            "outputs": [r.text for r in self.rounds],
        }
