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


def test_sweep_table_labels_each_jobs_loops():
    """The sweep's table (printed at the end of a multirun) puts every job's loops in one table,
    each row labelled with the job's run name, in a column wide enough for the longest label."""
    from vtc_lab.tracking.report import eval_table, eval_table_header

    metrics = {"eval/toy/memory/accuracy": 1.0, "eval/toy/memory/compression_ratio": 2.25,
               "eval/toy/none/accuracy": 0.0, "eval/toy/none/compression_ratio": 0.0}
    label = "optical"
    width = len(label) + 24
    rows = eval_table(metrics, label, width)
    assert [r.split()[:3] for r in rows] == [[label, "toy/memory", "1"], [label, "toy/none", "0"]]
    assert rows[0].split()[4] == "2.25" and rows[1].split()[4] == "-"
    header = eval_table_header(width)
    assert header.index("accuracy") + len("accuracy") == rows[1].index(" 0 ") + 2


def test_trainer_threads_is_validated():
    import pytest

    from vtc_lab.train.config import TrainerConfig

    assert TrainerConfig(threads=1).threads == 1 and TrainerConfig().threads is None
    with pytest.raises(ValueError, match=r"trainer.threads must be null or an int >= 1, got 0"):
        TrainerConfig(threads=0)
