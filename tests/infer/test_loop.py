"""Loop logic with a scripted engine: what each mode feeds back, when it stops, what it counts."""

from __future__ import annotations

import pytest
from PIL import Image

from .infer_scripted import EOS, VISION_PER_IMAGE, ScriptedEngine, images_of
from vtc_lab.eval.benchmarks import Problem
from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.loop import LoopStats, derive_seed, run_loop
from vtc_lab.infer.metrics import efficiency_metrics

FINAL = "so it is four </think>\n<answer>4</answer>"


def pages_of(text: str) -> tuple[list, bool]:
    """Test renderer: one page per 3 words, each page's width encodes its first word."""
    words = text.split()
    pages = [Image.new("RGB", (10 + len(" ".join(words[i:i + 3])), 8), "white")
             for i in range(0, len(words), 3)]
    return pages, False


def problems(*qs: str) -> list[Problem]:
    return [Problem(id=f"p{i}", question=q, gold="4", benchmark="toy") for i, q in enumerate(qs)]


def cfg(mode: str, **kw) -> LoopConfig:
    base = dict(mode=mode, max_rounds=4, max_new_tokens=32, do_sample=False, batch_size=8)
    return LoopConfig(**{**base, **kw})


def test_optical_feeds_back_rendered_pages_and_shrinks_the_active_set():
    eng = ScriptedEngine({
        "quick one": [FINAL],
        "slow one": ["first we add two and two", "still thinking here", FINAL],
    })
    recs = run_loop(eng, problems("quick one", "slow one"), cfg("optical"), None, "sys",
                    renderer=pages_of, progress=False)
    assert [len(c) for c in eng.calls] == [2, 1, 1]  # the finished problem leaves the batch
    r2 = eng.calls[1][0]
    first_pages, _ = pages_of("first we add two and two")
    assert [im.size for im in images_of(r2)] == [im.size for im in first_pages]
    r3 = eng.calls[2][0]
    second_pages, _ = pages_of("still thinking here")
    assert len(images_of(r3)) == len(first_pages) + len(second_pages)
    assert r2.prefix_ids == [] and r2.messages[0]["role"] == "system"
    quick, slow = recs
    assert (quick.status, quick.num_rounds, quick.output) == ("final", 1, FINAL)
    assert (slow.status, slow.num_rounds) == ("final", 3)
    assert [r.images for r in slow.rounds] == [0, 2, 3]
    assert [r.new_images for r in slow.rounds] == [2, 1, 0]
    # Compression bookkeeping: rendered text tokens vs the vision tokens they cost next round.
    assert [r.memory_text_tokens for r in slow.rounds] == [6, 3, 0]
    assert [r.memory_vision_tokens for r in slow.rounds] == [2 * VISION_PER_IMAGE, VISION_PER_IMAGE, 0]
    m = efficiency_metrics(recs, max_rounds=4, kv_bytes_per_token=100)
    assert m["compression_ratio"] == pytest.approx(9 / (3 * VISION_PER_IMAGE))
    assert m["rounds_hist/1"] == 1 and m["rounds_hist/3"] == 1 and m["rounds_mean"] == 2
    assert m["status/final"] == 2 and m["final_rate"] == 1.0


def test_text_mode_continues_from_exact_token_ids():
    eng = ScriptedEngine({"q": ["alpha beta", "gamma", FINAL]})
    (rec,) = run_loop(eng, problems("q"), cfg("text"), None, None, progress=False)
    prefixes = [c[0].prefix_ids for c in eng.calls]
    # Round 1 ids [5, 4, EOS]: the end-of-turn token is dropped before continuing the turn.
    assert prefixes == [[], [5, 4], [5, 4, 5]]
    assert all(images_of(c[0]) == [] for c in eng.calls)
    assert rec.status == "final" and rec.output == "alpha beta" + "gamma" + FINAL
    assert [r.context_text_tokens for r in rec.rounds] == [1, 3, 4]


def test_none_mode_sees_only_the_question_every_round():
    eng = ScriptedEngine({"q": ["nothing useful"] * 3})
    (rec,) = run_loop(eng, problems("q"), cfg("none", max_rounds=3), None, None, progress=False)
    assert len(eng.calls) == 3
    assert all(images_of(c[0]) == [] and c[0].prefix_ids == [] for c in eng.calls)
    assert rec.status == "max_rounds" and rec.num_rounds == 3 and rec.output == "nothing useful"


def test_misbehaving_model_is_counted_not_fatal():
    def broken_renderer(text):
        if "BOOM" in text:
            raise RuntimeError("cannot lay out this markup")
        return pages_of(text)

    eng = ScriptedEngine({
        "never closes": ["thinking forever and ever"],
        "empty answer": ["done </think>\n<answer> </answer>"],
        "silent": [""],
        "markup": ["<svg> BOOM \x00 </svg>"],
        "giant": ["word " * 500],
    }, budget_words=40)
    recs = run_loop(eng, problems("never closes", "empty answer", "silent", "markup", "giant"),
                    cfg("optical", max_rounds=8, batch_size=2), None, None,
                    renderer=broken_renderer, progress=False)
    by_q = {r.problem_id: r for r in recs}
    assert by_q["p0"].status == "max_rounds" and by_q["p0"].num_rounds == 8
    assert by_q["p1"].status == "max_rounds"  # an empty <answer> is not final
    assert by_q["p2"].status == "max_rounds" and all(r.text == "" for r in by_q["p2"].rounds)
    assert by_q["p3"].status == "render_error" and by_q["p3"].num_rounds == 1
    assert "cannot lay out" in by_q["p3"].rounds[0].render_error
    assert by_q["p4"].rounds[0].generated_tokens == 40 and not by_q["p4"].rounds[0].stopped
    m = efficiency_metrics(recs, max_rounds=8)
    assert m["bad/empty_answer"] == 1
    assert m["bad/all_rounds_empty"] == 1
    assert m["bad/render_errors"] == 1 and m["status/render_error"] == 1
    assert m["bad/no_think_end"] == 4  # all but the empty-answer one
    assert m["bad/budget_hits"] == 8  # every round of the giant one


def test_samples_skip_and_callback():
    eng = ScriptedEngine({"a": [FINAL], "b": [FINAL], "c": [FINAL]})
    seen = []
    recs = run_loop(eng, problems("a", "b", "c"), cfg("none", batch_size=2), None, None,
                    skip={("p1", 0)}, on_record=seen.append, progress=False)
    assert [r.problem_id for r in recs] == ["p0", "p2"] == [r.problem_id for r in seen]
    # Batches are cut from the full list ([p0, p1], [p2]) whatever is already done, so a
    # resumed run keeps the uninterrupted run's batch boundaries.
    assert [[images_of(r) == [] for r in c] for c in eng.calls] == [[True], [True]]


def test_seeds_depend_only_on_identity():
    a = derive_seed(0, "math500", "p1", 0, 2)
    assert a == derive_seed(0, "math500", "p1", 0, 2)
    assert len({a, derive_seed(1, "math500", "p1", 0, 2), derive_seed(0, "math500", "p2", 0, 2),
                derive_seed(0, "math500", "p1", 1, 2), derive_seed(0, "math500", "p1", 0, 3)}) == 5


def test_context_overflow_stops_a_growing_text_memory():
    eng = ScriptedEngine({"q": ["one two three four five six"]})
    stats = LoopStats()
    (rec,) = run_loop(eng, problems("q"), cfg("text", max_context_tokens=12), None, None,
                      progress=False, stats=stats)
    # contexts 1, 7 (next would be 13 > 12): two rounds, then stopped and counted.
    assert rec.status == "context_overflow" and rec.num_rounds == 2
    assert stats.kv_cache_peak_bytes_batch == 100 * (7 + 7)


def test_greedy_with_several_samples_is_refused():
    from vtc_lab.infer.evaluate import evaluate_benchmarks

    eng = ScriptedEngine({"a": [FINAL]})
    probs = problems("a")
    from vtc_lab.eval.benchmarks import ProblemList

    listed = ProblemList(probs)
    listed.samples_per_problem = 4  # e.g. AIME25's reference 16
    with pytest.raises(ValueError, match="identical greedy samples"):
        evaluate_benchmarks(eng, {"toy": listed}, [cfg("none")], progress=False)
    assert eng.calls == []


def test_predictions_of_another_page_cap_are_not_resumed(tmp_path):
    """The page cap is part of what a predictions file was written with (it left the loop
    config for `model.image_max_pixels`): resuming under another cap is refused, naming it."""
    from vtc_lab.infer.evaluate import evaluate_benchmarks

    def run(cap):
        return evaluate_benchmarks(ScriptedEngine({"a": [FINAL]}), {"toy": problems("a")},
                                   [cfg("none")], image_max_pixels=cap, predictions_dir=tmp_path,
                                   progress=False, grade_workers=1)

    run(65536)
    run(65536)  # the same cap resumes
    with pytest.raises(ValueError, match=r"image_max_pixels: 65536 -> 16384"):
        run(16384)


def test_hostile_markup_goes_through_the_real_renderer():
    """Markup, control characters, emoji, bidi overrides and a 20k-char unbroken line are drawn
    (or counted as lossy), never a crash; every non-final round becomes at least one page."""
    from vtc_lab.render import RenderConfig

    nasty = ["<b>unclosed <font size=999> &amp; &lt;para&gt; <br/>",
             "\x00\x07\x1b[31m ctrl \ufeff\u200b",
             "emoji \U0001F600 \u202e reversed \u202c math \u222b\u2211",
             "x" * 20000]
    eng = ScriptedEngine({"q": nasty + [FINAL]})
    (rec,) = run_loop(eng, problems("q"), cfg("optical", max_rounds=6), RenderConfig(), None,
                      progress=False)
    assert rec.status == "final" and rec.num_rounds == 5
    assert all(r.new_images >= 1 and r.render_error is None for r in rec.rounds[:4])
    assert rec.rounds[3].new_images > 1  # the long line wraps onto several pages
    assert rec.rounds[-1].images == sum(r.new_images for r in rec.rounds[:4])
    m = efficiency_metrics([rec], max_rounds=6)
    assert m["bad/render_lossy"] >= 1  # control characters dropped are reported


def test_peak_memory_sees_a_block_allocation():
    """The windowed RSS peak covers an allocation made inside the block and freed before read."""
    import numpy as np

    from vtc_lab.infer.metrics import PeakMemory

    quiet = PeakMemory()
    quiet.start()
    base = quiet.read()
    probe = PeakMemory()
    probe.start()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    del block
    after = probe.read()
    if probe.rss_reset:
        assert after["peak_rss_bytes"] >= base["peak_rss_bytes"] + 48 * 2**20
    untouched = PeakMemory(reset=False)
    untouched.start()
    assert "process_peak_rss_bytes" in untouched.read()


def test_pages_are_capped_like_the_training_encoder():
    from vtc_lab.render import RenderConfig, render_text
    from vtc_lab.models.images import cap_pixels

    long_text = "the sum of the first terms is computed step by step " * 300
    eng = ScriptedEngine({"q": [long_text, FINAL]})
    run_loop(eng, problems("q"), cfg("optical"), RenderConfig(), None, image_max_pixels=100_000,
             progress=False)
    fed = images_of(eng.calls[1][0])
    expected = [cap_pixels(p, 100_000) for p in render_text(long_text, RenderConfig())]
    assert max(p.width * p.height for p in render_text(long_text, RenderConfig())) > 100_000
    assert [p.size for p in fed] == [p.size for p in expected]
    assert all(p.width * p.height <= 100_000 for p in fed)
    assert fed[0].tobytes() == expected[0].tobytes()


def test_an_empty_round_adds_nothing_to_memory_and_is_counted():
    """An empty or blank round is not rendered into a blank page: the next prompt has the same
    images as before it, and the round is counted as bad/empty_rounds."""
    from vtc_lab.render import RenderConfig

    eng = ScriptedEngine({"q": ["", " \n\t ", "two plus two", "", FINAL]})
    (rec,) = run_loop(eng, problems("q"), cfg("optical", max_rounds=6), RenderConfig(), None,
                      progress=False)
    assert rec.status == "final" and rec.num_rounds == 5
    assert [len(images_of(c[0])) for c in eng.calls] == [0, 0, 0, 1, 1]
    assert [r.new_images for r in rec.rounds] == [0, 0, 1, 0, 0]
    assert [r.memory_text_tokens for r in rec.rounds] == [0, 0, 3, 0, 0]
    m = efficiency_metrics([rec], max_rounds=6)
    assert m["bad/empty_rounds"] == 3 and m["memory_images_mean"] == 1


def test_special_tokens_in_a_question_are_made_inert_and_counted():
    """A benchmark question with `<|image_pad|>` must not become a phantom image (it aborted whole
    eval runs): the model sees the neutralised text, and the run counts what was changed."""
    hostile = "What is <|image_pad|> plus <image>?"
    eng = ScriptedEngine({"What is < |image_pad|> plus < image>?": [FINAL], "plain": [FINAL]})
    stats = LoopStats()
    recs = run_loop(eng, problems(hostile, "plain"), cfg("optical"), None, "sys",
                    renderer=pages_of, progress=False, stats=stats)
    assert [r.status for r in recs] == ["final", "final"]
    sent = [p["text"] for req in eng.calls[0] for p in req.messages[-1]["content"] if p["type"] == "text"]
    assert sent == ["What is < |image_pad|> plus < image>?", "plain"]
    assert stats.special_tokens == 2
