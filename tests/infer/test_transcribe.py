"""`vtc-lab eval task=transcribe`: pages rendered from each problem's text, transcribed by the
model, scored by CER; with the tiny model in process and with engine=openai against a real HTTP
server (tests/infer/fake_openai.py) whose transcript is known."""

from __future__ import annotations

import json

import pytest

from tests.infer.fake_openai import FakeOpenAIServer
from tests.infer.test_eval_cli import make_cfg
from tests.infer.test_openai_client import run_eval
from vtc_lab.eval.benchmarks import Problem
from vtc_lab.eval.cer import edit_distance, normalize_space
from vtc_lab.infer.config import EvalConfig, TranscribeConfig
from vtc_lab.infer.transcribe import rendered_pages, source_text
from vtc_lab.render import RenderConfig

SOLUTIONS = ["We add 1 and 2 to get 3.", "Twice 4 is 8, so the answer is 8."]
REPLY = "We add 1 and 2 to get 3."


def test_each_page_carries_the_text_drawn_on_it():
    text = " ".join(f"word{i}" for i in range(400))
    cfg = RenderConfig(page_width=200.0, page_height=120.0)
    pages = rendered_pages(text, cfg)
    assert len(pages) > 2
    # consecutive spans, in order, covering the text (only whitespace between pages)
    pos = 0
    for _, ref in pages:
        at = text.index(ref, pos)
        assert text[pos:at].strip() == ""
        pos = at + len(ref)
    assert text[pos:].strip() == ""
    assert [r for _, r in rendered_pages(text, cfg, max_pages=2)] == [r for _, r in pages[:2]]


def test_source_text_rule():
    p = Problem(id="1", question="Q?", gold="1", benchmark="b",
                meta={"reference": "ref text", "notes": "n"})
    assert source_text(p, "auto") == "ref text"
    assert source_text(p, "question") == "Q?"
    assert source_text(p, "notes") == "n"
    assert source_text(p, "missing") == ""
    assert source_text(Problem(id="2", question="Q2", gold="1", benchmark="b"), "auto") == "Q2"


def test_bad_transcribe_settings_are_refused():
    with pytest.raises(ValueError, match="transcribe.max_pages must be an integer >= 0"):
        TranscribeConfig(max_pages=-1)
    with pytest.raises(ValueError, match="task must be one of"):
        EvalConfig(task="read")


def test_tiny_model_transcribes_and_the_run_is_logged(tmp_path):
    from vtc_lab.infer.offline import evaluate

    cfg = make_cfg(tmp_path, "task=transcribe", "transcribe.max_chars=300",
                   "transcribe.max_pages=2", "loop.max_new_tokens=12")
    metrics = evaluate(cfg)
    (out_dir,) = (tmp_path / "out" / "eval" / "tiny_qwen3_vl").iterdir()
    rows = [json.loads(x) for x in (out_dir / "math500__transcribe.jsonl").read_text().splitlines()]
    assert len(rows) >= 3  # 3 problems, at least a page each
    for r in rows:
        ref, hyp = normalize_space(r["reference"]), normalize_space(r["transcript"])
        assert r["edits"] == edit_distance(ref, hyp) and r["ref_chars"] == len(ref)
        assert r["vision_tokens"] > 0 and r["generated_tokens"] <= 12
    total = sum(r["edits"] for r in rows) / sum(r["ref_chars"] for r in rows)
    assert metrics["eval/math500/transcribe/cer"] == pytest.approx(total)
    assert metrics["eval/math500/transcribe/pages"] == len(rows)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("vtc-lab").experiment_id])
    assert run.data.metrics["eval/math500/transcribe/cer"] == pytest.approx(total)
    assert run.data.params["task"] == "transcribe"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "transcripts")] == [
        "transcripts/math500.json"]
    # a report over the experiment reads transcription runs without taking them for answers
    from vtc_lab.tracking import TrackingConfig
    from vtc_lab.tracking.report_app import ReportConfig, make_report

    report = make_report(ReportConfig(tracking=TrackingConfig(experiment="vtc-lab"),
                                      output_root=str(tmp_path / "out"),
                                      output_dir=str(tmp_path / "rep"), log_to_mlflow=False))
    assert report["report/runs"] == 1.0 and report["report/comparisons"] == 0.0


def test_openai_engine_transcript_is_scored_against_the_rendered_text(tmp_path):
    bench = tmp_path / "b.jsonl"
    bench.write_text("".join(json.dumps({"question": f"q{i}", "answer": "3", "solution": s}) + "\n"
                             for i, s in enumerate(SOLUTIONS)))
    with FakeOpenAIServer(replies={"Transcribe the text": REPLY}) as server:
        proc, out = run_eval(tmp_path, server.url, bench, "task=transcribe")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "local__transcribe.jsonl").read_text().splitlines()]
    assert [(r["problem_id"], r["page"], r["reference"], r["transcript"]) for r in rows] == [
        ("0", 0, SOLUTIONS[0], REPLY), ("1", 0, SOLUTIONS[1], REPLY)]
    edits = [0, edit_distance(SOLUTIONS[1], REPLY)]
    assert [r["edits"] for r in rows] == edits and edits[1] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval/local/transcribe/cer"] == pytest.approx(
        edits[1] / sum(len(s) for s in SOLUTIONS))
    assert metrics["eval/local/transcribe/exact_rate"] == 0.5
    assert metrics["eval/local/transcribe/vision_tokens_mean"] == 4.0  # the server's placeholders
