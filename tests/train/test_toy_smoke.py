"""The main job (`vtc-lab train experiment=toy`) at CI size: the real composed preset, shrunk.

It builds the toy-task dataset (segmented, rendered on the toy grid, character boxes), trains
the tiny Qwen3-VL (with the character loss on the pages for optical memory), and runs the job's
own loop and the no-memory loop on held-out problems. Accuracy is the benchmark's job
(experiments/toy/README.md); here: it runs, the losses fall, every metric the result table and
the learning curve need reaches MLflow. The whole sweep through the `vtc-lab` command (both
jobs side by side, the sweep's table) is the slow test below.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.cli.train import TrainConfig  # noqa: F401 - registers the train schema
from vtc_lab.train.run import train

torch.set_num_threads(1)


def _history(root: Path, run_id: str, key: str) -> list[float]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.mark.parametrize("memory", ["optical", "text"])
def test_toy_main_job_runs_and_its_losses_fall(tmp_path, memory, caplog):
    """One job of the main sweep (`optim.memory` is what the sweep varies), in-process."""
    overrides = [
        "experiment=toy", f"optim.memory={memory}", f"output_root={tmp_path}",
        f"run_dir={tmp_path}/run", "data.limit=48", "optim.max_steps=24", "optim.batch_size=4",
        "optim.warmup_ratio=0", "optim.val_check_interval=24", "optim.checkpoint_every_n_steps=24",
        "optim.val_max_samples=8", "optim.log_every_n_steps=1", "optim.val_fraction=0.1",
        "evaluator.limit=2", "evaluator.loop.max_rounds=2", "evaluator.loop.max_new_tokens=8",
        "evaluator.loop.batch_size=2", "export=false",
    ]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = OmegaConf.to_object(compose("train", overrides=overrides))
    assert cfg.evaluator.loops == [memory, "none"] and cfg.trainer.threads == 1
    with caplog.at_level(logging.INFO, logger="vtc_lab.train"):
        result = train(cfg)
    assert result["steps"] == 24
    run = result["mlflow_run_id"]
    losses = ("train/loss", "train/char_loss") if memory == "optical" else ("train/loss",)
    for key in losses:
        values = _history(tmp_path, run, key)
        assert len(values) == 24
        assert sum(values[-4:]) / 4 < 0.8 * sum(values[:4]) / 4, (key, values)
    # the model's own loop under `memory` (one key for both models), the ablation under `none`
    for loop in ("memory", "none"):
        for name in ("accuracy", "accuracy_lenient", "read_rate", "context_tokens_peak",
                     "context_tokens_mean", "round_latency_mean_s", "compression_ratio"):
            assert f"eval/toy/{loop}/{name}" in result, (loop, name)
    assert not any(k.startswith(f"eval/toy/{other}/") for k in result
                   for other in ("optical", "text"))
    assert result["train/samples_seen"] == 24 * 4
    assert _history(tmp_path, run, "eval/toy/memory/accuracy")
    # no progress bar (two jobs side by side): a log line per job instead, the last at the end
    assert f"run run ({memory} memory) step 24/24" in caplog.text


@pytest.mark.slow
def test_toy_main_command_runs_both_jobs_side_by_side_and_prints_their_table(tmp_path):
    """`vtc-lab train experiment=toy` as typed (a multirun of its own, joblib launcher), shrunk:
    both jobs finish into the fixed sweep directory, the sweep prints one table with each job's
    loops, and the same command again resumes (nothing left to train) instead of starting over."""
    cmd = [sys.executable, "-m", "vtc_lab.cli.main", "train", "experiment=toy",
           f"output_root={tmp_path}", "data.toy.train_problems=64", "optim.max_steps=6",
           "optim.batch_size=4", "optim.val_check_interval=6", "optim.checkpoint_every_n_steps=6",
           "optim.val_max_samples=4", "optim.val_fraction=0.1", "evaluator.limit=3",
           "evaluator.loop.max_rounds=2", "evaluator.loop.max_new_tokens=8", "export=false"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    table = out.stdout[out.stdout.index("=== sweep "):]
    assert "2 jobs (2 finished)" in table.splitlines()[0]
    # rows: the run's short name (the swept value), then benchmark/loop; the model's own
    # memory loop is named `memory` (db41a6f)
    for row in ("optical toy/memory", "optical toy/none", "text toy/memory", "text toy/none"):
        assert row in table, table
    assert "mlflow ui --backend-store-uri sqlite:///" in table
    # the sweep's report (learning curves included) is written and logged to the parent run
    reports = list((tmp_path / "reports" / "toy").glob("sweep-*/report.md"))
    assert len(reports) == 1 and (reports[0].parent / "accuracy_vs_samples.png").is_file()
    runs = {}
    for job in ("0", "1"):
        assert (tmp_path / "toy" / job / "checkpoints" / "last.ckpt").is_file()
        runs[job] = json.loads((tmp_path / "toy" / job / "run.json").read_text())["mlflow_run_id"]
    # run.json names each model as its run's tags do (what evaluations of it log: train.*)
    infos = [json.loads((tmp_path / "toy" / job / "run.json").read_text()) for job in ("0", "1")]
    assert sorted((i["config_key"], i["seed"]) for i in infos) == [("memory=optical", 0),
                                                                   ("memory=text", 0)]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    for job in ("0", "1"):  # each job continued its own checkpoint and MLflow run
        assert f"resuming {tmp_path / 'toy' / job} from" in again.stdout + again.stderr
        assert json.loads((tmp_path / "toy" / job / "run.json").read_text())["mlflow_run_id"] == runs[job]
