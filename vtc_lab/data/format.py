"""The completion format the model is trained to emit, and the one check for "this round is final".

Targets 1..n-1 are the raw segment text (a round that stops mid-reasoning); target n is
`segment_n + "</think>\\n<answer>" + FINAL + "</answer>"`. The optical-memory loop calls
`is_final` on every generated round, so this module is the single definition of completion
(see docs/data.md).
"""

from __future__ import annotations

import re

THINK_END: str = "</think>"
ANSWER_OPEN: str = "<answer>"
ANSWER_CLOSE: str = "</answer>"
FINAL_SEPARATOR: str = THINK_END + "\n" + ANSWER_OPEN

FINAL_RE: re.Pattern[str] = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
"""First `<answer>...</answer>` span; applied to the text after the last `</think>`."""


def format_target(segment: str, is_last: bool, answer: str | None = None) -> str:
    """The assistant text for one SFT sample: the segment, plus the closing block if it is last."""
    if not is_last:
        return segment
    if answer is None or not str(answer).strip():
        raise ValueError("format_target: the last segment needs a non-empty answer")
    answer = str(answer)
    if ANSWER_CLOSE in answer or THINK_END in answer:
        raise ValueError(
            f"format_target: answer must not contain {ANSWER_CLOSE!r} or {THINK_END!r}: {answer[:80]!r}"
        )
    return segment + FINAL_SEPARATOR + answer + ANSWER_CLOSE


def split_final(text: str) -> tuple[str, str | None]:
    """(reasoning, answer): text before the last `</think>` and the stripped answer after it.

    `answer` is None when the round is not final: no `</think>`, or no non-empty
    `<answer>...</answer>` after the last `</think>`. Without `</think>` the whole text is
    reasoning.
    """
    cut = text.rfind(THINK_END)
    if cut < 0:
        return text, None
    reasoning, tail = text[:cut], text[cut + len(THINK_END):]
    match = FINAL_RE.search(tail)
    if match is None or not match.group(1).strip():
        return reasoning, None
    return reasoning, match.group(1).strip()


def is_final(text: str) -> bool:
    """True when `text` holds `</think>` followed by a non-empty `<answer>...</answer>`."""
    return split_final(text)[1] is not None
