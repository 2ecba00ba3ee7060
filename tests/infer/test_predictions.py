"""The resumable predictions file: round trip, torn tails, corruption, foreign files."""

from __future__ import annotations

import json

import pytest

from vtc_lab.infer.predictions import PredictionsFile
from vtc_lab.infer.records import ProblemRecord, RoundRecord


def record(pid: str, sample: int = 0) -> ProblemRecord:
    rnd = RoundRecord(round=1, text="t </think>\n<answer>1</answer>", generated_tokens=5,
                      context_text_tokens=10, context_vision_tokens=3, images=1, generate_s=0.5,
                      final=True, stopped=True, render_s=0.1, new_images=0)
    return ProblemRecord(problem_id=pid, benchmark="b", sample=sample, mode="optical", seed=7,
                         gold="1", status="final", output=rnd.text, latency_s=0.6, rounds=[rnd])


def test_round_trip_and_resume(tmp_path):
    path = tmp_path / "p.jsonl"
    f = PredictionsFile(path, {"loop": {"max_rounds": 8}})
    assert f.open() == []
    f.append(record("a"))
    f.append(record("b", 1))
    f.close()
    again = PredictionsFile(path, {"loop": {"max_rounds": 8}})
    loaded = again.open()
    again.close()
    assert [r.to_dict() for r in loaded] == [record("a").to_dict(), record("b", 1).to_dict()]


def test_torn_tail_is_dropped_and_the_file_stays_appendable(tmp_path):
    path = tmp_path / "p.jsonl"
    f = PredictionsFile(path, {"h": 1})
    f.open()
    f.append(record("a"))
    f.close()
    with path.open("a") as handle:
        handle.write(json.dumps(record("b").to_dict())[:40])  # killed mid-write
    g = PredictionsFile(path, {"h": 1})
    assert [r.problem_id for r in g.open()] == ["a"]
    g.append(record("c"))
    g.close()
    assert [r.problem_id for r in PredictionsFile(path, {"h": 1}).open()] == ["a", "c"]


def test_corruption_in_the_middle_names_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    f = PredictionsFile(path, {"h": 1})
    f.open()
    f.append(record("a"))
    f.append(record("b"))
    f.close()
    lines = path.read_text().splitlines()
    lines[1] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"p\.jsonl:2: malformed record"):
        PredictionsFile(path, {"h": 1}).open()


def test_duplicates_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / "p.jsonl"
    f = PredictionsFile(path, {"h": 1})
    f.open()
    f.append(record("a"))
    f.append(record("a"))
    f.close()
    with pytest.raises(ValueError, match="duplicate record for problem 'a'"):
        PredictionsFile(path, {"h": 1}).open()
    other = tmp_path / "notes.jsonl"
    other.write_text('{"question": "x"}\n')
    with pytest.raises(ValueError, match="not a vtc-lab predictions file"):
        PredictionsFile(other, {"h": 1}).open()


def test_header_mismatch_lists_the_differences(tmp_path):
    path = tmp_path / "p.jsonl"
    PredictionsFile(path, {"loop": {"max_rounds": 8, "top_p": 0.95}, "renderer": "abc"}).open()
    with pytest.raises(ValueError, match=r"loop\.max_rounds: 8 -> 2.*renderer: 'abc' -> 'def'"):
        PredictionsFile(path, {"loop": {"max_rounds": 2, "top_p": 0.95}, "renderer": "def"}).open()
