"""The completion format: what a model is trained to emit, and the one parser of it.

A reasoning round either stops mid-reasoning (its text is rendered and fed back) or is final:
```
<reasoning ...></think>
<answer>FINAL</answer>
```
A round is **final** when it holds `</think>` followed by a non-empty `<answer>...</answer>`
(the first pair after the last `</think>`). Training targets are built with `format_target`
(vtc_lab.data.samples), the optical-memory loop stops on `is_final` (vtc_lab.infer.loop), and the
grader reads the same `<answer>` slot (vtc_lab.eval.extract): three users, one definition here.
The trace sources cut a generation's reasoning by the same rule (`parse`: at the last
`</think>`; vtc_lab.data.sources.extract_reasoning). The markers are spelt only here (a test
scans the package for the literals); the tiny tokenizer adds `MARKERS` as tokens.
It lives in `eval/`, a leaf package, so that `models/`, `data/` and `infer/` above it can all
import it.

The parser is linear in the text: `str.rfind` for the last `</think>`, then `str.find` for tag
pairs, each character visited a bounded number of times. A lazy regex such as
`<answer>(.*?)</answer>` restarts a scan to the end from every unclosed `<answer>` and is
quadratic: 2.3-4.3 s on a 36k-character round of unclosed tags and 48 s on 144k, versus 0.1 ms
here (2-core dev box under a load average of 14-17), timed on `"</think>" + "<answer>" * 4499`
with time.perf_counter around one call; tests/task/test_completion.py asserts the scaling.
The loop parses every generated round, so a hostile or degenerate round must not stall it.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_START: str = "<think>"
THINK_END: str = "</think>"
ANSWER_OPEN: str = "<answer>"
ANSWER_CLOSE: str = "</answer>"
MARKERS: tuple[str, ...] = (THINK_START, THINK_END, ANSWER_OPEN, ANSWER_CLOSE)
"""Every tag of the format, in the order they appear in a final round."""
FINAL_SEPARATOR: str = THINK_END + "\n" + ANSWER_OPEN


def format_target(segment: str, is_last: bool, answer: str | None = None) -> str:
    """The assistant text of one SFT sample: the segment, plus the closing block if it is last.

    Targets 1..n-1 are the raw segment text (a round that stops mid-reasoning); target n is
    `segment_n + "</think>\\n<answer>" + answer + "</answer>"`, which `is_final` accepts.
    """
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


def answer_tags(text: str) -> tuple[list[str], str | None]:
    """Contents of the `<answer>...</answer>` pairs in `text`, in order (unstripped), and the text
    after a last `<answer>` that is never closed (None when every opened tag is closed).

    Each pair is the first `</answer>` after an `<answer>`; scanning resumes after it. Linear.
    """
    closed: list[str] = []
    pos = 0
    while True:
        start = text.find(ANSWER_OPEN, pos)
        if start < 0:
            return closed, None
        end = text.find(ANSWER_CLOSE, start + len(ANSWER_OPEN))
        if end < 0:
            # No `</answer>` after this tag, hence none after any later one either.
            return closed, text[text.rfind(ANSWER_OPEN) + len(ANSWER_OPEN):]
        closed.append(text[start + len(ANSWER_OPEN): end])
        pos = end + len(ANSWER_CLOSE)


@dataclass(frozen=True)
class Completion:
    """One round's text split at the last `</think>`."""

    reasoning: str
    """Text before the last `</think>` (the whole text when there is none)."""
    tail: str | None
    """Text after the last `</think>`; None when the round has no `</think>`."""
    answers: tuple[str, ...]
    """Contents of the `<answer>...</answer>` pairs in `tail`, in order, unstripped."""
    unclosed: str | None
    """Text after a last `<answer>` in `tail` that is never closed (a cut-off final round)."""

    @property
    def answer(self) -> str | None:
        """The final answer (first pair after `</think>`, stripped), or None when not final."""
        if not self.answers:
            return None
        return self.answers[0].strip() or None

    @property
    def final(self) -> bool:
        return self.answer is not None

    @property
    def empty_answer(self) -> bool:
        """`</think>` then an `<answer></answer>` with nothing in it (a format failure)."""
        return bool(self.answers) and not self.answers[0].strip()


def parse(text: str) -> Completion:
    """Split a round at its last `</think>` and read the `<answer>` tags after it. Linear."""
    cut = text.rfind(THINK_END)
    if cut < 0:
        return Completion(reasoning=text, tail=None, answers=(), unclosed=None)
    tail = text[cut + len(THINK_END):]
    answers, unclosed = answer_tags(tail)
    return Completion(reasoning=text[:cut], tail=tail, answers=tuple(answers), unclosed=unclosed)


def split_final(text: str) -> tuple[str, str | None]:
    """(reasoning, answer): text before the last `</think>` and the stripped answer after it.

    `answer` is None when the round is not final. Without `</think>` the whole text is reasoning.
    """
    parsed = parse(text)
    return parsed.reasoning, parsed.answer


def is_final(text: str) -> bool:
    """True when `text` holds `</think>` followed by a non-empty `<answer>...</answer>`."""
    return parse(text).final
