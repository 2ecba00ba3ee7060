"""The `segmentation` config group: how a reasoning trace is cut into rounds."""

from __future__ import annotations

from dataclasses import dataclass, field

from vtc_lab.segment.policies import policy_names

OVERFLOW_MODES = ("drop", "merge")

DEFAULT_MARKERS: list[str] = [
    "Wait",
    "But wait",
    "Alternatively",
    "Let me check",
    "Let me verify",
    "Let me double-check",
    "Let me think again",
    "Let me re-examine",
    "Hmm",
    "On second thought",
    "Another approach",
]


@dataclass
class SegmentationConfig:
    """One preset of the `segmentation` group (conf/segmentation/*.yaml)."""

    policy: str = "boundary"
    """Where cuts go: `fixed_tokens` (every max_tokens tokens), `boundary` (last paragraph break,
    else sentence end, else line break, else word/token boundary under the budget) or `markers`
    (before a reflection marker such as "Wait" under the budget, else as `boundary`)."""

    max_tokens: int = 4096
    """Token budget of one segment (one round of reasoning), counted with the model's tokenizer."""

    min_tokens: int = 64
    """A last segment shorter than this is merged into the previous one (0 disables); the merged
    segment may then exceed max_tokens by less than min_tokens."""

    max_segments: int | None = None
    """At most this many segments (rounds) per trace; None = unlimited. See `on_overflow`."""

    on_overflow: str = "drop"
    """A trace needing more than max_segments: `drop` (segment_text raises TooManySegmentsError;
    the builder skips and counts it) or `merge` (everything left goes into the last segment)."""

    min_fill: float = 0.5
    """`boundary`/`markers`: a paragraph/sentence/line/marker cut is only taken if the segment
    keeps at least this fraction of its character window; otherwise the next kind is tried, and
    a word boundary (then a token boundary) near the budget is the last resort. Keeps segments
    from collapsing to a sentence when the only paragraph break is near the start."""

    markers: list[str] = field(default_factory=lambda: list(DEFAULT_MARKERS))
    """`markers` policy: phrases that open a reflection; cuts go right before them (they must
    start a word, case-sensitive)."""

    def __post_init__(self) -> None:
        if self.policy not in policy_names():
            raise ValueError(f"segmentation.policy must be one of {policy_names()} (the policies "
                             f"registered in vtc_lab.segment.policies), got {self.policy!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"segmentation.max_tokens must be an int >= 1, got {self.max_tokens!r}")
        if not isinstance(self.min_tokens, int) or self.min_tokens < 0:
            raise ValueError(f"segmentation.min_tokens must be an int >= 0, got {self.min_tokens!r}")
        if self.min_tokens >= self.max_tokens:
            raise ValueError(
                f"segmentation.min_tokens ({self.min_tokens}) must be < max_tokens ({self.max_tokens})"
            )
        if self.max_segments is not None and (
            not isinstance(self.max_segments, int) or self.max_segments < 1
        ):
            raise ValueError(
                f"segmentation.max_segments must be None or an int >= 1, got {self.max_segments!r}"
            )
        if self.on_overflow not in OVERFLOW_MODES:
            raise ValueError(
                f"segmentation.on_overflow must be one of {OVERFLOW_MODES}, got {self.on_overflow!r}"
            )
        if not 0.0 <= float(self.min_fill) < 1.0:
            raise ValueError(f"segmentation.min_fill must be in [0, 1), got {self.min_fill!r}")
        self.markers = list(self.markers)
        bad = [m for m in self.markers if not isinstance(m, str) or not m.strip()]
        if bad:
            raise ValueError(f"segmentation.markers must be non-empty strings, got {bad!r}")
        if self.policy == "markers" and not self.markers:
            raise ValueError("segmentation.markers must not be empty when policy is 'markers'")
