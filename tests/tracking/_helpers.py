"""Shared by the tracking tests: run a Hydra app in a real subprocess, read runs back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

SWEEP_APP = Path(__file__).with_name("sweep_app.py")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               HYDRA_FULL_ERROR="0", MLFLOW_TRACKING_URI="")
    return env


def run_sweep_app(tmp_path: Path, *overrides: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """`python sweep_app.py -m <overrides> output_root=<tmp>/out` from tmp_path."""
    cmd = [sys.executable, str(SWEEP_APP), "-m", *overrides, f"output_root={tmp_path / 'out'}"]
    return subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=timeout)


def runs_by_role(uri: str, experiment: str = "vtc-lab"):
    """(parents, children) of an experiment, each a list of mlflow Run."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment!r} missing in {uri}"
    all_runs = client.search_runs([exp.experiment_id])
    parents = [r for r in all_runs if r.data.tags.get("vtc.sweep") == "true"]
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children
