"""Answer extraction: model output text -> the answer string the grader compares.

Two named variants, both reported (`accuracy`, the headline, is strict; `accuracy_lenient`):

strict  -- only explicit final-answer markers, tried in order, and the content must already
           have the benchmark's form:
             1. the content of `<answer>...</answer>` after the last `</think>` (VTC-R1 format);
             2. the last `\\boxed{...}` / `\\fbox{...}` (nested braces);
             3. GSM8K only: the last "#### N";
             4. the last "the (final) answer is ...".
           GSM8K content must be one number (commas, $ and units allowed around it); GPQA
           content must be a lone letter A-D (optionally "(B)", "B.", "\\text{B}").
lenient -- everything strict accepts, plus: an `<answer>` that is not preceded by `</think>`
           or is cut off before `</answer>` (a truncated final round); GSM8K the last number in
           the marked content; GPQA a leading "B) ..." / "option B"; and, when no marker at all
           is found, a last resort: the text after `</think>` if it is one short line with a digit
           or a LaTeX command and no tags, else the last number (math, GSM8K) or the last
           "(B)"/"B)"-style letter (GPQA).

Strict is the headline (`accuracy`): only an explicit final-answer marker earns credit, so
noise that happens to end in the right digit scores nothing (a random-init model scores 0).
Lenient (`accuracy_lenient`) is reported beside it, never instead: it shows how much a forgotten
tag costs. Extraction is linear-time (str.find, brace matching
in one pass, regexes without nested quantifiers; tests feed 100k unclosed tags), so gigantic
outputs cannot stall it; equivalence (the slow part) runs in grade.py.
"""

from __future__ import annotations

import re

from vtc_lab.task.completion import THINK_END, answer_tags, parse

_BRACE_RE = re.compile(r"\\[{}]|[{}]")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS_RE = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*", re.I)
_GSM_RE = re.compile(r"####\s*([^\n]*)")
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_SHORT_LINE = 80

#: GSM8K content of the form "<$>number<units>": the number must be the only one present.
_GSM_STRICT_RE = re.compile(r"^\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)\s*(?:[A-Za-z%$][A-Za-z%$ .]*)?\.?\s*$")
_LETTER_STRICT_RE = re.compile(r"^\s*(?:\\text\{|\\textbf\{|\\mathrm\{)?\(?([A-D])\)?\}?\s*[.)]?\s*$")
_LETTER_LEAD_RE = re.compile(r"^\s*(?:option\s+|choice\s+)?\(?([A-D])(?:\)|\.|:|\s|$)", re.I)
_LETTER_ANY_RE = re.compile(r"\(([A-D])\)|\b([A-D])\)|(?:option|choice|answer)\s*:?\s*\(?([A-D])\b")


def _matching_braces(text: str) -> dict[int, int]:
    """Position of each `{` -> position of its matching `}` (one linear pass; `\\{`, `\\}` are
    literal braces and do not count). Unclosed braces are absent."""
    match: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_RE.finditer(text):
        tok = m.group()
        if tok == "{":
            stack.append(m.start())
        elif tok == "}" and stack:
            match[stack.pop()] = m.start()
    return match


def boxed_contents(text: str) -> list[str]:
    """Contents of every `\\boxed{...}` / `\\fbox{...}` in order, nested braces balanced.

    An unbalanced box (cut-off output) is ignored rather than guessed. Linear in len(text).
    """
    if "\\boxed" not in text and "\\fbox" not in text:
        return []
    match = _matching_braces(text)
    out = []
    for m in _BOX_RE.finditer(text):
        close = match.get(m.end() - 1)
        if close is not None:
            out.append(text[m.end(): close].strip())
    return out


def _strip_math(s: str) -> str:
    """Drop surrounding $...$, \\(...\\), \\[...\\] and a trailing period from an answer span."""
    s = s.strip()
    for _ in range(3):
        before = s
        s = s.rstrip().rstrip(".").rstrip()
        for lo, hi in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if len(s) >= len(lo) + len(hi) and s.startswith(lo) and s.endswith(hi):
                s = s[len(lo): len(s) - len(hi)].strip()
        if s == before:
            break
    return s


def _after_answer_is(text: str) -> str | None:
    """The span after the last "the answer is": a $...$ group if it starts with one, else to the
    end of the sentence/line."""
    last = None
    for last in _ANSWER_IS_RE.finditer(text):
        pass
    if last is None:
        return None
    rest = text[last.end():]
    for lo, hi in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(lo):
            end = rest.find(hi, len(lo))
            if end > 0:
                return rest[len(lo): end].strip()
    boxes = boxed_contents(rest.split("\n", 1)[0])
    if boxes:
        return boxes[0]
    line = rest.split("\n", 1)[0]
    cut = re.search(r"\.(?:\s|$)", line)
    return _strip_math(line[: cut.start()] if cut else line) or None


def _final_slot(text: str, lenient: bool) -> str | None:
    """The `<answer>` content: after the last `</think>` (strict), anywhere / unclosed (lenient)."""
    parsed = parse(text)
    candidates: list[str] = list(parsed.answers)
    if not candidates and lenient and parsed.unclosed is not None:
        candidates = [parsed.unclosed]  # cut off before </answer>
    if not candidates and lenient:
        candidates, unclosed = answer_tags(text)
        if not candidates and unclosed is not None:
            candidates = [unclosed]
    for c in reversed(candidates):
        boxes = boxed_contents(c)
        c = boxes[-1] if boxes else _strip_math(c)
        if c:
            return c
    return None


def _marked_spans(text: str, benchmark: str, lenient: bool) -> list[str]:
    """Candidate answer spans from explicit markers, best first."""
    spans = []
    slot = _final_slot(text, lenient)
    if slot:
        spans.append(slot)
    boxes = boxed_contents(text)
    if boxes and boxes[-1]:
        spans.append(boxes[-1])
    if benchmark == "gsm8k":
        hashes = _GSM_RE.findall(text)
        if hashes and hashes[-1].strip():
            spans.append(hashes[-1].strip())
    said = _after_answer_is(text)
    if said:
        spans.append(said)
    return spans


def normalize_number(s: str) -> str | None:
    """A GSM8K-style number string without commas, $ or units ("1,234.50 dollars" -> "1234.50")."""
    m = _GSM_STRICT_RE.match(_strip_math(s).replace("\\$", "$").replace("\\%", "%"))
    if not m:
        return None
    return m.group(1).replace(",", "")


def _last_number(s: str) -> str | None:
    nums = _NUMBER_RE.findall(s)
    return nums[-1].replace(",", "") if nums else None


def _form(span: str, benchmark: str, lenient: bool) -> str | None:
    """Check/convert a marked span to the benchmark's answer form, or None if it does not fit."""
    if benchmark == "gsm8k":
        n = normalize_number(span)
        return n if n is not None or not lenient else _last_number(span)
    if benchmark == "gpqa":
        span = _strip_math(span)
        m = _LETTER_STRICT_RE.match(span) or (lenient and _LETTER_LEAD_RE.match(span))
        return m.group(1).upper() if m else None
    return span or None


def grader_kind(benchmark: str) -> str:
    """Map a benchmark name to its grader kind (math | gsm8k | gpqa).

    Accepts the kinds themselves, the registered names, and names that start with a kind
    (e.g. a local "gsm8k_hard"); anything else is graded as math.
    """
    b = benchmark.lower()
    if b.startswith("gpqa"):
        return "gpqa"
    if b.startswith("gsm8k"):
        return "gsm8k"
    try:
        from vtc_lab.eval.benchmarks import BENCHMARKS
        if benchmark in BENCHMARKS:
            return BENCHMARKS[benchmark].grader
    except ImportError:  # pragma: no cover
        pass
    return "math"


def extract_answer(text: str | None, benchmark: str, strict: bool = False) -> str | None:
    """The answer in a model output, or None when there is none (counted as no-answer).

    `benchmark` is a benchmark name or grader kind (math500, gsm8k, gpqa_diamond, math, ...).
    Returns the raw LaTeX span for math, a comma-free number for GSM8K, a letter A-D for GPQA.
    See the module docstring for what `strict` changes.
    """
    if not text:
        return None
    kind = grader_kind(benchmark)
    lenient = not strict
    for span in _marked_spans(text, kind, lenient):
        got = _form(span, kind, lenient)
        if got:
            return got
    if strict:
        return None
    body = text.rsplit(THINK_END, 1)[-1].strip() or text.strip()
    if "\n" not in body and len(body) <= _SHORT_LINE and not re.search(r"</?[a-z]+>", body) and re.search(r"[\d\\]", body):
        got = _form(body, kind, True)
        if got:
            return got
    if kind == "gpqa":
        letters = [next(g for g in m.groups() if g) for m in _LETTER_ANY_RE.finditer(body)]
        return letters[-1].upper() if letters else None
    return _last_number(body)
