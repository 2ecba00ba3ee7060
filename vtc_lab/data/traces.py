"""What a trace source yields: a `Trace` to segment, or a `Skip` saying which row was left out
and why (counted in the dataset's stats, never a stopped build)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Trace:
    """One reasoning trace to segment: the question, the reasoning inside <think>, the answer."""

    problem_id: str
    question: str
    reasoning: str
    answer: str
    origin: str
    """`file:line` (jsonl) or `file:row` (parquet) it came from, for error messages."""
    invalid_utf8: int = 0
    """Invalid UTF-8 sequences / lone surrogates replaced by U+FFFD in this row (counted)."""
    special_tokens: int = 0
    """Model special tokens / placeholders made inert in the question, reasoning and answer."""


@dataclass(frozen=True)
class Skip:
    """A row or generation that was left out, and why (counted in stats.json)."""

    reason: str
    origin: str
    detail: str = ""
