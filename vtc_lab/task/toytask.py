"""The synthetic long-reasoning task a tiny VLM can learn on a CPU in minutes.

A problem is a state of `digits` digits and a step count; the solution applies a fixed step
rule once per line, counting down, and the answer is the last state. Every step is a pure
function of the latest trace line (the line carries the countdown letter and the whole state),
so a model only has to read its most recent memory, never to look anything up by index: the
step is learnable from text by a 1.8 M-parameter decoder (docs/training.md, "Toy-scale
findings": an index look-up plus multi-digit addition was not). A model that cannot read its
memory cannot continue after the first round, so the no-memory loop scores ~0 (chance is
10**-digits).

The trace is written in the real format: `<think>` + lines + `</think>` + `<answer>...</answer>`
with rounds cut by the normal segmenter (boundary policy, `round_budget(spec)` tokens = exactly
`lines_per_round` lines), so the builder, collator, loop and grader run unchanged. A line is
the countdown letter (`A` = 0 steps left) followed by the digits separated by dots,
e.g. `P4.8.2.1`: letters, dots and digits are single tokens of the tiny BPE in that pattern
(adjacent digits would merge into `12`, `00`, ...), and on the toy grid renderer a 16-px
vision token covers exactly two characters. The answer is the last state as written
(`4.8.2.1`), graded by the math grader (string equality for such answers).

Held-out problems can never overlap training problems, whatever the seeds: every (state,
steps) pair is assigned to one side by a hash (`is_heldout`), the training generator skips the
held-out side and the benchmark generator keeps only it.

This module is a leaf (pure Python, no torch): `vtc_lab.eval` registers the held-out set as the
`toy` benchmark and `vtc_lab.data` registers the training traces as the `toy` source.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from vtc_lab.task.completion import parse

RULES = ("sum", "table", "shift")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TABLE = (3, 7, 0, 9, 1, 8, 2, 6, 4, 5)
"""The `table` rule's fixed digit map (a permutation of 0-9)."""
HELDOUT_SEED = 20260101
"""Seed of the held-out benchmark's problem order (fixed: the benchmark never changes)."""


@dataclass
class ToyTaskSpec:
    """Knobs of the synthetic task (the `toy` data source and benchmark)."""

    digits: int = 4
    """State size: digits per line (chance of guessing the answer is 10**-digits)."""
    steps: int = 15
    """Steps per problem (lines after the first); at most 25 (countdown letters A-Z)."""
    min_steps: int | None = None
    """Fewest steps; problems draw their step count from [min_steps, steps]. null: = steps."""
    lines_per_round: int = 4
    """Round length in lines: `round_budget(spec)` is the segmentation budget that cuts
    exactly this many lines per round (segmentation.policy=boundary, min_tokens=0)."""
    rule: str = "shift"
    """`sum`: new[i] = (s[i] + s[i+1 mod digits]) mod 10; `table`: new[i] = TABLE[s[i]];
    `shift`: new[i] = TABLE[s[i+1 mod digits]] (the table step plus a rotation). `table` repeats
    every 10 steps (TABLE is one 10-cycle), so with more than 9 steps a later line equals an
    earlier one and can be copied from an old page instead of stepped from the latest line;
    `shift` repeats only after lcm(10, digits) steps (20 for 4 digits), and going back to the
    question would need a different position map for every line."""
    heldout_fraction: float = 0.1
    """Share of the (state, steps) space reserved for the held-out benchmark."""
    train_problems: int = 8000
    """Training problems the `toy` source yields (data.limit cuts it further)."""
    seed: int = 0
    """Seed of the training problems (the held-out set has its own fixed seed)."""

    def __post_init__(self) -> None:
        if not isinstance(self.digits, int) or not 2 <= self.digits <= 16:
            raise ValueError(f"toy.digits must be an int in [2, 16], got {self.digits!r}")
        if not isinstance(self.steps, int) or not 1 <= self.steps < len(LETTERS):
            raise ValueError(f"toy.steps must be an int in [1, {len(LETTERS) - 1}], got {self.steps!r}")
        low = self.steps if self.min_steps is None else self.min_steps
        if not isinstance(low, int) or not 1 <= low <= self.steps:
            raise ValueError(f"toy.min_steps must be null or an int in [1, toy.steps={self.steps}], "
                             f"got {self.min_steps!r}")
        if not isinstance(self.lines_per_round, int) or self.lines_per_round < 1:
            raise ValueError(f"toy.lines_per_round must be an int >= 1, got {self.lines_per_round!r}")
        if self.rule not in RULES:
            raise ValueError(f"toy.rule must be one of {RULES}, got {self.rule!r}")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"toy.heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        if not isinstance(self.train_problems, int) or self.train_problems < 1:
            raise ValueError(f"toy.train_problems must be an int >= 1, got {self.train_problems!r}")

    @property
    def step_range(self) -> tuple[int, int]:
        return (self.steps if self.min_steps is None else self.min_steps), self.steps


@dataclass(frozen=True)
class ToyProblem:
    """One problem with its full solution."""

    id: str
    question: str
    lines: tuple[str, ...]
    """Trace lines: line 0 restates the start, line j has `steps - j` steps left."""
    answer: str

    @property
    def reasoning(self) -> str:
        return "\n".join(self.lines)


# ------------------------------------------------------------------------------ the step


def format_line(remaining: int, state: tuple[int, ...]) -> str:
    return LETTERS[remaining] + ".".join(str(d) for d in state)


def parse_line(line: str) -> tuple[int, tuple[int, ...]] | None:
    """(steps left, state) of a trace line, or None when it is not one."""
    line = line.strip()
    if len(line) < 2 or line[0] not in LETTERS:
        return None
    parts = line[1:].split(".")
    if not all(len(p) == 1 and p.isdigit() for p in parts):
        return None
    return LETTERS.index(line[0]), tuple(int(p) for p in parts)


def step(state: tuple[int, ...], rule: str) -> tuple[int, ...]:
    """One application of the rule."""
    if rule == "sum":
        n = len(state)
        return tuple((state[i] + state[(i + 1) % n]) % 10 for i in range(n))
    if rule == "table":
        return tuple(TABLE[d] for d in state)
    if rule == "shift":
        n = len(state)
        return tuple(TABLE[state[(i + 1) % n]] for i in range(n))
    raise ValueError(f"unknown toy rule {rule!r}; one of {RULES}")


def next_line(line: str, rule: str) -> str | None:
    """The line that must follow `line` (None when `line` is not a line or has 0 steps left)."""
    parsed = parse_line(line)
    if parsed is None or parsed[0] == 0:
        return None
    remaining, state = parsed
    return format_line(remaining - 1, step(state, rule))


def solve(state: tuple[int, ...], steps: int, rule: str) -> tuple[str, ...]:
    lines = [format_line(steps, state)]
    for left in range(steps - 1, -1, -1):
        state = step(state, rule)
        lines.append(format_line(left, state))
    return tuple(lines)


def question_text(first_line: str, rule: str) -> str:
    return f"Apply the {rule} step until A: {first_line}"


def make_problem(state: tuple[int, ...], steps: int, rule: str) -> ToyProblem:
    lines = solve(state, steps, rule)
    return ToyProblem(id=f"{rule}-{lines[0]}", question=question_text(lines[0], rule),
                      lines=lines, answer=lines[-1][1:])


def round_budget(spec: ToyTaskSpec) -> int:
    """Segmentation budget (tokens) of one round: `lines_per_round` lines of the tiny BPE's
    single-character tokens (letter, digits, dots, newline)."""
    return spec.lines_per_round * (2 * spec.digits + 1)


# ------------------------------------------------------------------------- the split


def is_heldout(state: tuple[int, ...], steps: int, fraction: float) -> bool:
    """Whether (state, steps) belongs to the held-out side (a hash: independent of any seed)."""
    key = f"{steps}|{''.join(map(str, state))}".encode()
    value = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0 ** 64
    return value < fraction


def _draw(spec: ToyTaskSpec, rng: random.Random) -> tuple[tuple[int, ...], int]:
    lo, hi = spec.step_range
    return tuple(rng.randrange(10) for _ in range(spec.digits)), rng.randint(lo, hi)


def _space_size(spec: ToyTaskSpec) -> int:
    lo, hi = spec.step_range
    return 10 ** spec.digits * (hi - lo + 1)


def _generate(spec: ToyTaskSpec, count: int, seed: int, heldout: bool) -> Iterator[ToyProblem]:
    expected = _space_size(spec) * (spec.heldout_fraction if heldout else 1 - spec.heldout_fraction)
    if count > 0.9 * expected:
        side = "held-out" if heldout else "training"
        raise ValueError(
            f"toy task: {count} distinct {side} problems asked for, but digits={spec.digits}, "
            f"steps in {list(spec.step_range)} and heldout_fraction={spec.heldout_fraction} leave "
            f"only ~{int(expected)}; raise toy.digits or widen the step range")
    rng = random.Random(f"toy|{seed}|{'heldout' if heldout else 'train'}")
    seen: set[tuple[tuple[int, ...], int]] = set()
    while len(seen) < count:
        state, steps = _draw(spec, rng)
        if (state, steps) in seen or is_heldout(state, steps, spec.heldout_fraction) != heldout:
            continue
        seen.add((state, steps))
        yield make_problem(state, steps, spec.rule)


def training_problems(spec: ToyTaskSpec, count: int | None = None) -> Iterator[ToyProblem]:
    """`count` (default `spec.train_problems`) distinct training problems, seeded by `spec.seed`."""
    return _generate(spec, spec.train_problems if count is None else count, spec.seed, False)


def heldout_problems(spec: ToyTaskSpec, count: int = 500) -> list[ToyProblem]:
    """The held-out benchmark: `count` distinct problems from the fixed seed `HELDOUT_SEED`."""
    return list(_generate(spec, count, HELDOUT_SEED, True))


def benchmark_jsonl(spec: ToyTaskSpec | None = None, count: int = 500) -> str:
    """The held-out problems as benchmark jsonl (`id`, `question`, `answer`, `spec`)."""
    spec = spec or ToyTaskSpec()
    rows = [json.dumps({"id": p.id, "question": p.question, "answer": p.answer,
                        "steps": len(p.lines) - 1, "spec": asdict(spec)}, sort_keys=True)
            for p in heldout_problems(spec, count)]
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------- reading metrics


def read_details(round_texts: list[str], rule: str, continuous: bool = False
                 ) -> list[tuple[int, str, str]]:
    """(round index, first line written, line expected) of every checked round of one sample.

    A round r >= 1 (0-based) is checked when its first line follows a valid, unfinished line:
    the expected line is `next_line` of that line, i.e. the state on the model's newest memory
    page read exactly and stepped once (the page shows what the model wrote, so the expectation
    is exact even after an earlier mistake). `continuous` as in `read_checks`.
    """
    joiner = "" if continuous else "\n"
    text = parse(joiner.join(round_texts)).reasoning
    starts, offset = [], 0
    for t in round_texts:
        starts.append(offset)
        offset += len(t) + len(joiner)
    # (start offset, line) of every non-blank line of the reasoning
    lines, pos = [], 0
    for raw in text.split("\n"):
        if raw.strip():
            lines.append((pos, raw.strip()))
        pos += len(raw) + 1
    out = []
    for r, start in enumerate(starts[1:], start=1):
        i = next((j for j, (p, _) in enumerate(lines) if p >= start), None)
        if i is None or i == 0:
            continue
        want = next_line(lines[i - 1][1], rule)
        if want is not None:
            out.append((r, lines[i][1], want))
    return out


def read_checks(round_texts: list[str], rule: str, continuous: bool = False) -> tuple[int, int]:
    """(rounds checked, rounds read correctly) of one sample's rounds.

    A round r >= 2 "read" its memory when the first line it starts is exactly the line that
    must follow the line before it (what the model itself wrote, now in memory): the state was
    recovered from memory and stepped once. Checks with no valid, unfinished predecessor line
    are not counted.

    `continuous=False` (optical and no memory): every round is its own turn and starts a line,
    so round r's first line is checked against round r-1's last line. `continuous=True` (text
    memory: one long generation cut into rounds wherever the token budget ran out): the rounds
    are joined and the first line that starts at or after round r's first character is checked
    against the line before it, which may straddle the cut.
    """
    details = read_details(round_texts, rule, continuous)
    return len(details), sum(got == want for _, got, want in details)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1): the project's
    one edit distance (the transcription CER in `vtc_lab.eval.cer` uses it too). Computed row by
    row after the common prefix and suffix are cut off, so a close string costs about its
    length and only the differing middle pays the quadratic table."""
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a, end_b = end_a - 1, end_b - 1
    a, b = a[start:end_a], b[start:end_b]
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_error_rate(got: str, want: str) -> float:
    """Edits from `want` to `got` per character of `want` (can exceed 1 for long garbage)."""
    return edit_distance(got, want) / max(1, len(want))
