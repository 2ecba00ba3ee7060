"""`vtc-lab eval train_run=<run dir>` on a run trained with relative paths, from another working
directory, as a real process: every path the run recorded resolves, the MLflow run carries the
effective config (the export, not the presets it replaced), each param once, and the benchmark
as its evaluation dataset input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.cli.train import TrainConfig  # noqa: F401 - registers train_schema

from ..tracking._helpers import child_env


@pytest.mark.slow  # trains, then a real eval process: ~100 s on a loaded 2-core machine
def test_eval_of_a_train_run_from_another_directory(tmp_path, monkeypatch):
    from vtc_lab.train.run import train

    torch.set_num_threads(1)
    trained_in, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    trained_in.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(trained_in)  # the default: relative output_root and run_dir
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        raw = compose("train", overrides=[
            "output_root=vtc-runs", "run_dir=vtc-runs/train/rel", "data.limit=4",
            "optim.max_steps=2", "optim.batch_size=2", "optim.val_check_interval=2",
            "optim.val_max_samples=2", "optim.checkpoint_every_n_steps=2", "progress=false",
            "tracking=off"])
    train(OmegaConf.to_object(raw))
    run_dir = (trained_in / "vtc-runs" / "train" / "rel").resolve()
    info = json.loads((run_dir / "run.json").read_text())
    assert Path(info["dataset"]).is_absolute() and (Path(info["dataset"]) / "manifest.json").is_file()

    out = tmp_path / "evals"
    proc = subprocess.run(
        [sys.executable, "-m", "vtc_lab.cli.main", "eval", f"train_run={run_dir}",
         "benchmark.limit=1", "loop.max_rounds=1", "loop.max_new_tokens=4", "grade_workers=1",
         "progress=false", "log_images=0", f"output_root={out}"],
        cwd=elsewhere, env=child_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already has params" not in proc.stdout + proc.stderr

    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("vtc-lab").experiment_id])
    params, tags = run.data.params, run.data.tags
    # the model evaluated is the export: its name and source, not the tiny preset's
    assert (params["backbone"], params["model_source"]) == ("rel", "pretrained")
    assert params["train_run"] == str(run_dir)
    assert not [t for t in tags if t.startswith("param_changed.")]
    config = client.download_artifacts(run.info.run_id, "config/config.yaml", str(tmp_path))
    assert f"path: {run_dir / 'export'}" in Path(config).read_text()
    [entry] = run.inputs.dataset_inputs
    assert entry.dataset.name == "math500"
    assert [(t.key, t.value) for t in entry.tags] == [("mlflow.data.context", "evaluation")]
