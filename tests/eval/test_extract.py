"""Answer extraction: the marker chain, nested braces, and what strict vs lenient accept."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vtc_lab.eval import extract_answer
from vtc_lab.eval.extract import boxed_contents, grader_kind

# (text, benchmark, strict result, lenient result)
CASES = [
    # <answer> after the last </think> wins over boxes in the reasoning
    ("<think>try \\boxed{3}</think>\n<answer>\\frac{1}{2}</answer>", "math500", "\\frac{1}{2}", "\\frac{1}{2}"),
    # only the answer after the LAST </think> counts
    ("<answer>1</answer></think> more </think><answer>2</answer>", "math500", "2", "2"),
    # a box inside the answer tag: its content
    ("</think><answer>The result is $\\boxed{x^{2}+1}$.</answer>", "aime25", "x^{2}+1", "x^{2}+1"),
    # $...$ around the answer tag content is dropped
    ("</think><answer> $42$ </answer>", "math500", "42", "42"),
    # no tags: the LAST box, nested braces balanced; \fbox too
    ("first \\boxed{1} then \\boxed{\\frac{\\sqrt{2}}{2}}", "math500", "\\frac{\\sqrt{2}}{2}", "\\frac{\\sqrt{2}}{2}"),
    ("so \\fbox{\\{1,2\\}} done", "math500", "\\{1,2\\}", "\\{1,2\\}"),
    # empty <answer> falls through to the chain
    ("\\boxed{7}</think><answer></answer>", "math500", "7", "7"),
    # "the answer is"
    ("Thus the answer is $\\frac{1}{2}$. Done.", "math500", "\\frac{1}{2}", "\\frac{1}{2}"),
    ("The final answer is: 3.5.\nbye", "amc23", "3.5", "3.5"),
    # <answer> without </think>: lenient only
    ("<answer>5</answer>", "math500", None, "5"),
    # cut-off answer (truncated round): lenient only
    ("</think><answer>12", "math500", None, "12"),
    # no marker at all: lenient last resort
    ("\\frac{3}{4}", "math500", None, "\\frac{3}{4}"),
    ("We get 3 then\n 4 and finally 5", "math500", None, "5"),
    ("no digits at all\nhere", "math500", None, None),
    ("", "math500", None, None),
    (None, "math500", None, None),
    # GSM8K: '#### N', commas, $ and units
    ("She makes 9 * 2 = 18 dollars.\n#### 1,018", "gsm8k", "1018", "1018"),
    ("</think><answer>$18 dollars</answer>", "gsm8k", "18", "18"),
    ("</think><answer>\\$1,234.50</answer>", "gsm8k", "1234.50", "1234.50"),
    ("</think><answer>18 + 2 = 20 eggs</answer>", "gsm8k", None, "20"),
    ("The answer is 72.", "gsm8k", "72", "72"),
    ("I think 42 apples\nthen 17", "gsm8k", None, "17"),
    # GPQA: a letter
    ("</think><answer>B</answer>", "gpqa_diamond", "B", "B"),
    ("</think><answer>(c)</answer>", "gpqa_diamond", None, "C"),  # strict: capital letters only
    ("Therefore \\boxed{D}", "gpqa_diamond", "D", "D"),
    ("The answer is (A).", "gpqa_diamond", "A", "A"),
    ("</think><answer>C) 4.5 eV</answer>", "gpqa_diamond", None, "C"),
    ("</think><answer>Option B</answer>", "gpqa_diamond", None, "B"),
    ("I lean to (B) over (D)\nso (D)", "gpqa_diamond", None, "D"),
    ("</think><answer>E</answer>", "gpqa_diamond", None, None),
]


@pytest.mark.parametrize("text, bench, strict, lenient", CASES)
def test_extraction_table(text, bench, strict, lenient):
    assert extract_answer(text, bench, strict=True) == strict
    assert extract_answer(text, bench) == lenient


_WRAPPERS = ["</think><answer>{}</answer>", "<answer>{}</answer>", "\\boxed{{{}}}", "#### {}",
             "The answer is {}.", "{}", "</think><answer>{}"]
_ANSWERS = ["42", "1,234", "$18 dollars", "\\text{B}", "(C)", "B", "D.", "Option A", "C) 4.5 eV",
            "-3.5", "\\frac{1}{2}", "x^2", "20 eggs", ""]
_AROUND = [("", ""), ("Let me think </think> maybe \\boxed{3} and ", " so"),
           ("#### 7\n(A) or ", "\n</answer>")]


@pytest.mark.parametrize("bench", ["math500", "gsm8k", "gpqa_diamond"])
def test_lenient_finds_an_answer_whenever_strict_does(bench):
    """Lenient accepts everything strict accepts (it only adds fallbacks): every marker x answer
    form x surrounding text, called through extract_answer."""
    checked = 0
    for wrapper in _WRAPPERS:
        for answer in _ANSWERS:
            for before, after in _AROUND:
                text = before + wrapper.format(answer) + after
                if extract_answer(text, bench, strict=True) is not None:
                    assert extract_answer(text, bench) is not None, text
                    checked += 1
    assert checked >= 20  # the grid really exercises strict hits


def test_boxed_contents_balances_and_ignores_unclosed():
    assert boxed_contents("\\boxed{a{b}c} \\boxed {d} \\boxed{\\frac{1}{2") == ["a{b}c", "d"]
    assert boxed_contents("\\boxed{\\{1\\}}") == ["\\{1\\}"]
    assert boxed_contents("\\boxed{a\\}b} \\boxed{\\{} \\boxed{\\}") == ["a\\}b", "\\{"]  # escaped braces are literal


def test_grader_kind_mapping():
    assert [grader_kind(b) for b in ("math500", "aime25", "amc23", "gsm8k", "gpqa_diamond", "gpqa", "mine")] == [
        "math", "math", "math", "gsm8k", "gpqa", "gpqa", "math"]


ADVERSARIAL = {  # shapes that make naive regexes/scans quadratic; model output can be anything
    "unclosed_boxes": ("x" * 50 + " { \\boxed{ ( [ $ ") * 20000 + "</think><answer>7</answer>",
    "unclosed_answers": "<answer>" * 100000,
    "unclosed_after_think": "</think>" + "<answer>x" * 100000,
    "answer_is": "the answer is $" * 100000,
    "units": "</think><answer>5 " + "a " * 100000 + "!</answer>",
    "hashes": "#### " * 100000,
    "letters": "(A " * 100000,
    "numbers": "1," * 100000,
    "thinks": "</think>" * 100000,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_gigantic_adversarial_outputs_extract_in_linear_time(name):
    text = ADVERSARIAL[name]
    t0 = time.process_time()  # this process's CPU time: the same on a loaded machine
    results = [extract_answer(text, b, strict=s) for b in ("math500", "gsm8k", "gpqa") for s in (True, False)]
    assert time.process_time() - t0 < 5  # ~0.1 s each when linear; minutes when quadratic
    if name == "unclosed_boxes":
        assert results[0] == "7"


# --- properties: what goes into the answer slot / a box comes back out --------------------------

_plain = st.text(st.characters(codec="utf-8", exclude_characters="<>{}\\$\r"), max_size=40)


def _balanced():
    leaf = st.text(st.characters(codec="ascii", exclude_characters="{}\\"), max_size=8)
    return st.recursive(leaf, lambda inner: st.tuples(inner, inner, inner).map(
        lambda t: t[0] + "{" + t[1] + "}" + t[2]), max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(reasoning=_plain, answer=_plain.filter(lambda a: a.strip() and a.strip()[-1] != "."))
def test_answer_slot_round_trips(reasoning, answer):
    text = f"<think>{reasoning}</think>\n<answer>{answer}</answer>"
    assert extract_answer(text, "math500", strict=True) == answer.strip()
    assert extract_answer(text, "math500") == answer.strip()


@settings(max_examples=150, deadline=None)
@given(before=_plain, inner=_balanced(), after=_plain)
def test_boxed_round_trips_nested_braces(before, inner, after):
    assert boxed_contents(f"{before}\\boxed{{{inner}}}{after}") == [inner.strip()]
