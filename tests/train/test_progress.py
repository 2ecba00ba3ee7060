"""One clean progress display per training job: the bar counts optimizer steps to max_steps
(not "Epoch 0/-2"), shows samples/s, and Lightning's INFO lines print once, not twice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_train_shows_one_step_bar_with_samples_per_second_and_each_line_once(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": ""}
    env.pop("HYDRA_FULL_ERROR", None)
    res = subprocess.run(
        [sys.executable, "-m", "vtc_lab.cli.main", "train", f"output_root={tmp_path / 'out'}",
         "tracking=off", "data.limit=4", "optim.batch_size=2", "optim.max_steps=3",
         "optim.val_check_interval=3", "optim.val_max_samples=2", "export=false",
         f"run_dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    shown = (res.stdout + res.stderr).replace("\r", "\n")
    assert "Epoch 0/-2" not in shown and "Epoch 0" not in shown
    bar = [line for line in shown.splitlines() if line.startswith("train:")]
    assert bar and "3/3" in bar[-1] and "samples/s=" in bar[-1], shown[-3000:]
    assert shown.count("GPU available:") == 1, shown[-3000:]
