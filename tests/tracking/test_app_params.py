"""A real `vtc-lab build-data` process: every param is logged once, with the value the app ran
with (no "already has params ... with other values" warning, no param_changed tags)."""

from __future__ import annotations

import subprocess
import sys

from mlflow.tracking import MlflowClient

from tests.data.openr1_fixture import write_openr1_fixture

from ._helpers import child_env


def test_build_data_with_a_group_override_logs_each_param_once(tmp_path, seed_store):
    seed_store(tmp_path / "out" / "mlflow.db")
    traces = write_openr1_fixture(tmp_path / "openr1.jsonl", limit=3)
    proc = subprocess.run(
        [sys.executable, "-m", "vtc_lab.cli.main", "build-data", "data=openr1",
         f"data.path={traces}", "stats_only=true", "segmentation=small", "progress=false",
         f"output_root={tmp_path / 'out'}"],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already has params" not in proc.stdout + proc.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'out'}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("vtc-lab").experiment_id])
    params, tags = run.data.params, run.data.tags
    assert params["data"] == "openr1" and params["dataset"] == "openr1_math"
    assert params["seg_budget"] == "96" and params["backbone"] == "tiny_qwen3_vl"
    assert not [t for t in tags if t.startswith("param_changed.")]
    # the built dataset is the run's dataset input (the runs table's Dataset column)
    [entry] = run.inputs.dataset_inputs
    [built] = (tmp_path / "out" / "stats").iterdir()  # stats_only builds go to <root>/stats
    assert (entry.dataset.name, f"openr1_math-{entry.dataset.digest}") == ("openr1_math", built.name)
    assert [(t.key, t.value) for t in entry.tags] == [("mlflow.data.context", "build")]
    assert '"problems": 3' in entry.dataset.profile
