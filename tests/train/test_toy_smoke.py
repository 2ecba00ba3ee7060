"""The main job (`vtc-lab train experiment=toy`) at CI size: the real composed preset, shrunk.

It builds the toy-task dataset (segmented, rendered on the toy grid, character boxes), trains
the tiny Qwen3-VL with the character loss on a mix of optical- and text-memory samples, and runs
the optical, text and no-memory loops on held-out problems. Accuracy is the benchmark's job
(experiments/toy/README.md); here: it runs, the losses fall, every metric the result table and
the learning curve need reaches MLflow.
"""

from __future__ import annotations

from pathlib import Path

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


def test_toy_main_job_runs_and_its_losses_fall(tmp_path):
    overrides = [
        "experiment=toy", f"output_root={tmp_path}", f"run_dir={tmp_path}/run", "progress=false",
        "data.limit=48", "optim.max_steps=24", "optim.batch_size=8", "optim.warmup_ratio=0",
        "optim.val_check_interval=24", "optim.checkpoint_every_n_steps=24",
        "optim.val_max_samples=8", "optim.log_every_n_steps=1", "optim.val_fraction=0.1",
        "evaluator.limit=4", "evaluator.loop.max_rounds=2", "evaluator.loop.max_new_tokens=12",
        "evaluator.loop.batch_size=4", "export=false",
    ]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = OmegaConf.to_object(compose("train", overrides=overrides))
    result = train(cfg)
    assert result["steps"] == 24
    run = result["mlflow_run_id"]
    for key in ("train/loss", "train/char_loss"):
        values = _history(tmp_path, run, key)
        assert len(values) == 24
        assert sum(values[-4:]) / 4 < 0.8 * sum(values[:4]) / 4, (key, values)
    for loop in ("optical", "text", "none"):
        for name in ("accuracy", "accuracy_lenient", "read_rate", "context_tokens_peak",
                     "context_tokens_mean", "round_latency_mean_s", "compression_ratio"):
            assert f"eval/toy/{loop}/{name}" in result, (loop, name)
    assert result["train/samples_seen"] == 24 * 8
    assert _history(tmp_path, run, "eval/toy/optical/accuracy")
