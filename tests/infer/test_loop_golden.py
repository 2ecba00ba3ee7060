"""Characterisation of `run_loop`: every record field, every request, for all three modes.

`golden/loop_records.json` was written by the loop as it stood before it was split into one
memory strategy per mode and one stop function; this test holds the restructured loop to exactly
the same records and requests (timings excluded: they are wall clock). Regenerate only for an
intended behaviour change: `VTC_LAB_WRITE_GOLDEN=1 python -m pytest tests/infer/test_loop_golden.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .infer_scripted import ScriptedEngine, images_of, question_of
from .test_loop import FINAL, cfg, pages_of, problems
from vtc_lab.infer.loop import LoopStats, run_loop

GOLDEN = Path(__file__).parent / "golden" / "loop_records.json"

SCRIPTS = {
    "quick": [FINAL],
    "slow": ["first we add two and two", "still thinking here", FINAL],
    "never closes": ["thinking forever and ever and ever"],
    "empty answer": ["done </think>\n<answer> </answer>"],
    "silent": [""],
    "markup": ["<svg> BOOM </svg> and more words here"],
    "giant": ["word " * 45],
    "late": ["a b c", "d e f g h", "i j k l m n o p", FINAL],
}


def _renderer(text: str):
    if "BOOM" in text:
        raise RuntimeError("cannot lay out this markup")
    return pages_of(text)


CASES = {
    f"{mode}-{name}": (mode, kw)
    for mode in ("optical", "text", "none")
    for name, kw in {
        "plain": dict(max_rounds=5, batch_size=3),
        "overflow": dict(max_rounds=5, batch_size=8, max_context_tokens=18),
        "samples": dict(max_rounds=3, batch_size=4, do_sample=True, samples_per_problem=2),
        "one-round": dict(max_rounds=1, batch_size=2),
    }.items()
}


def _run(mode: str, kw: dict) -> dict:
    eng = ScriptedEngine(SCRIPTS, budget_words=40)
    stats = LoopStats()
    recs = run_loop(eng, problems(*SCRIPTS), cfg(mode, **kw), None, "sys", renderer=_renderer,
                    keep_images=3, skip={("p2", 1)}, progress=False, stats=stats)
    records = []
    for r in recs:
        d = r.to_dict()
        d.pop("latency_s")
        for rd in d["rounds"]:
            rd.pop("render_s")
        d["memory_images"] = [im.size for im in r.memory_images]
        records.append(d)
    calls = [[{"q": question_of(req), "images": [im.size for im in images_of(req)],
               "prefix_ids": req.prefix_ids, "seed": req.seed,
               "roles": [m["role"] for m in req.messages]} for req in batch]
             for batch in eng.calls]
    return {"records": records, "calls": calls, "batches": stats.batches,
            "kv_peak": stats.kv_cache_peak_bytes_batch}


def _normalise(obj):
    return json.loads(json.dumps(obj))


def test_write_golden_when_asked():
    if not os.environ.get("VTC_LAB_WRITE_GOLDEN"):
        pytest.skip("set VTC_LAB_WRITE_GOLDEN=1 to rewrite the golden records")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({k: _run(*v) for k, v in CASES.items()}, sort_keys=True) + "\n")


@pytest.mark.parametrize("case", sorted(CASES))
def test_records_and_requests_match_the_golden_run(case):
    golden = json.loads(GOLDEN.read_text())
    assert _normalise(_run(*CASES[case])) == golden[case]


def test_golden_covers_every_status_and_mode():
    golden = json.loads(GOLDEN.read_text())
    statuses = {(c.split("-")[0], r["status"]) for c, run in golden.items() for r in run["records"]}
    assert statuses >= {(m, s) for m in ("optical", "text", "none") for s in ("final", "max_rounds")}
    assert {("optical", "context_overflow"), ("text", "context_overflow"),
            ("optical", "render_error")} <= statuses
