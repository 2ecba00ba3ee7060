"""`vtc-lab train` with the evaluator on: the callback logs eval metrics into the training run,
and `vtc-lab eval train_run=<that run>` evaluates the export with the training data's settings
(slow: builds a dataset, trains, generates)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
import vtc_lab.cli.train  # noqa: F401 - registers train_schema


@pytest.mark.slow
def test_train_logs_optical_eval_and_eval_reads_the_run(tmp_path):
    from vtc_lab.infer.offline import evaluate
    from vtc_lab.train.run import train

    torch.set_num_threads(1)
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        raw = compose("train", overrides=[
            f"output_root={tmp_path}", f"run_dir={tmp_path}/run", "data.limit=8",
            "optim.max_steps=4", "optim.batch_size=2", "optim.val_check_interval=2",
            "optim.val_max_samples=2", "progress=false", "evaluator=default",
            "evaluator.limit=2", "evaluator.loop.max_new_tokens=8", "evaluator.loops=[optical,none]"])
    result = train(OmegaConf.to_object(raw))
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    steps = sorted(m.step for m in client.get_metric_history(
        result["mlflow_run_id"], "eval/math500/memory/accuracy"))
    assert steps == [4, 8]  # optimizer steps 2 and 4 at step = samples seen (batch 2)
    seen = client.get_metric_history(result["mlflow_run_id"], "train/samples_seen")
    assert sorted((m.step, m.value) for m in seen) == [(4, 4.0), (8, 8.0)]
    assert client.get_metric_history(result["mlflow_run_id"], "eval/math500/none/rounds_mean")

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        raw = compose("eval", overrides=[
            f"output_root={tmp_path}/eval", f"train_run={tmp_path}/run", "benchmark.limit=2",
            "loop.max_rounds=2", "loop.max_new_tokens=8", "tracking=off", "progress=false",
            "grade_workers=1"])
    metrics = evaluate(OmegaConf.to_object(raw))
    # the run records its memory, so eval's keys match the training evaluator's
    assert metrics["eval/math500/memory/num_samples"] == 2
    assert not any("/optical/" in k for k in metrics)
    assert Path(result["export"]).is_dir()
