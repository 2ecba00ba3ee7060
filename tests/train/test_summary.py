"""The end-of-run summary shows the last in-training evaluation, one row per benchmark/loop."""

from vtc_lab.train.run import _summary


def test_summary_tabulates_last_evaluation_per_loop():
    text = _summary({
        "train/loss": 4.5, "steps": 40, "eval_step": 40, "tracking_uri": "sqlite:////tmp/m.db",
        "eval/math500/optical/accuracy": 0.25, "eval/math500/optical/compression_ratio": 3.28,
        "eval/math500/optical/bad/empty_rounds": 3.0,  # nested keys are not rows
        "eval/math500/text/accuracy": 0.125, "eval/math500/text/compression_ratio": 0.0,
    })
    lines = text.splitlines()
    assert "  last evaluation (step 40):" in lines
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("    math500/")}
    assert set(rows) == {"math500/optical", "math500/text"}
    assert rows["math500/optical"][:3] == ["0.25", "-", "3.28"]
    assert rows["math500/text"][:3] == ["0.125", "-", "-"]  # no rendered memory: no ratio
    assert lines[-1] == "  open the MLflow UI: mlflow ui --backend-store-uri sqlite:////tmp/m.db"


def test_summary_without_evaluator_has_no_table():
    assert "last evaluation" not in _summary({"train/loss": 4.5, "steps": 8})
