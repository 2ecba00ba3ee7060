"""The completion format (the loop's definition of "final") and the one prompt builder."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtc_lab.data import (
    REFERENCE_SYSTEM_PROMPT,
    THINK_END,
    build_messages,
    format_target,
    is_final,
    split_final,
)


def test_target_format_exact():
    assert format_target("so x=2.", False, "2") == "so x=2."
    assert format_target("so x=2.", True, "2") == "so x=2.</think>\n<answer>2</answer>"


@given(seg=st.text(max_size=50).filter(lambda s: THINK_END not in s),
       ans=st.text(min_size=1, max_size=20).filter(lambda a: a.strip() and "</answer>" not in a
                                                    and THINK_END not in a))
def test_format_round_trips_through_split_final(seg, ans):
    target = format_target(seg, True, ans)
    assert is_final(target)
    reasoning, answer = split_final(target)
    assert reasoning == seg and answer == ans.strip()


@pytest.mark.parametrize("text,final", [
    ("thinking...", False),
    ("done</think>", False),
    ("done</think>\n<answer>   </answer>", False),
    ("<answer>5</answer> no think end", False),
    ("a</think>\n<answer>5</answer>", True),
    ("a</think>x<answer>5</answer>trailing", True),
    ("a</think><answer>1</answer> b</think> nothing", False),  # the LAST </think> decides
])
def test_is_final_cases(text, final):
    assert is_final(text) is final


def test_last_segment_needs_answer():
    with pytest.raises(ValueError, match="non-empty answer"):
        format_target("x", True, " ")
    with pytest.raises(ValueError, match="must not contain"):
        format_target("x", True, "1</answer>")


def test_build_messages_layouts():
    imgs = ["img0", "img1"]
    before = build_messages("Q?", imgs, REFERENCE_SYSTEM_PROMPT)
    assert before[0] == {"role": "system", "content": [{"type": "text", "text": REFERENCE_SYSTEM_PROMPT}]}
    assert before[1]["role"] == "user"
    assert before[1]["content"] == [{"type": "image", "image": "img0"}, {"type": "image", "image": "img1"},
                                    {"type": "text", "text": "Q?"}]
    after = build_messages("Q?", imgs, None, image_position="after")
    assert len(after) == 1 and after[0]["content"][0] == {"type": "text", "text": "Q?"}
    assert [p["image"] for p in after[0]["content"][1:]] == imgs
    assert build_messages("Q?", [], None) == [{"role": "user", "content": [{"type": "text", "text": "Q?"}]}]
    with pytest.raises(ValueError, match="image_position"):
        build_messages("Q?", [], None, image_position="middle")


def test_reference_prompt_is_the_papers():
    assert REFERENCE_SYSTEM_PROMPT.startswith("These images record your previous reasoning process.")
    assert REFERENCE_SYSTEM_PROMPT.endswith("\nIf no images are provided, start the reasoning from scratch.")
