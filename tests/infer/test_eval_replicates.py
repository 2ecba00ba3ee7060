"""Evaluations of trained models are replicates of one configuration: two tiny models trained
with seeds 0 and 1, each evaluated by a real `vtc-lab eval train_run=...` process into one
MLflow store, carry the model's identity (params `train.*`, tag `vtc.seed` = the training
seed) and `vtc-lab report` aggregates them as one configuration with n = 2, reading nothing
but the store (the run directories are gone by then); so does a sweep over `train_run` (one
configuration per swept page condition)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.cli.train import TrainConfig  # noqa: F401 - registers train_schema
from vtc_lab.render.config import RenderConfig, config_hash

from ..tracking._helpers import child_env


@pytest.mark.slow  # two 2-step trainings, three eval processes (6 evals): ~1-2 min
def test_evals_of_two_seeds_are_one_configuration_with_n_2(tmp_path):
    from vtc_lab.tracking.aggregate import eval_points
    from vtc_lab.tracking.report import collect_runs
    from vtc_lab.tracking.report_app import ReportConfig, make_report
    from vtc_lab.tracking import TrackingConfig
    from vtc_lab.train.run import train

    torch.set_num_threads(1)
    trained = {}
    for seed in (0, 1):
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            raw = compose("train", overrides=[
                f"output_root={tmp_path}/train", f"run_dir={tmp_path}/runs/{seed}",
                f"optim.seed={seed}", "data.limit=4", "optim.max_steps=2", "optim.batch_size=2",
                "optim.val_check_interval=2", "optim.val_max_samples=2",
                "optim.checkpoint_every_n_steps=2", "evaluator.enabled=false", "progress=false"])
        trained[seed] = train(OmegaConf.to_object(raw))["mlflow_run_id"]
    info = json.loads((tmp_path / "runs" / "0" / "run.json").read_text())
    renderer = config_hash(RenderConfig(**info["reading"]["renderer"]))

    out = tmp_path / "evals"
    for seed in (0, 1):
        proc = subprocess.run(
            [sys.executable, "-m", "vtc_lab.cli.main", "eval", f"train_run={tmp_path}/runs/{seed}",
             "eval_degrade=mild", "benchmark.limit=2", "loop.max_rounds=1",
             "loop.max_new_tokens=4", "grade_workers=1", "progress=false", "log_images=0",
             f"run_name=eval-s{seed}", f"output_root={out}"],
            cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    # the same two models in one sweep over the models and the pages: a configuration per pages
    proc = subprocess.run(
        [sys.executable, "-m", "vtc_lab.cli.main", "eval", "-m",
         f"train_run={tmp_path}/runs/0,{tmp_path}/runs/1", "eval_degrade=none,mild", "benchmark.limit=2",
         "loop.max_rounds=1", "loop.max_new_tokens=4", "grade_workers=1", "progress=false",
         "log_images=0", "tracking.experiment=swept", f"output_root={out}"],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.rmtree(tmp_path / "runs")  # the report must not need the training run directories

    uri = f"sqlite:///{out}/mlflow.db"
    client = MlflowClient(uri)
    runs = {r.info.run_name: r for r in client.search_runs(
        [client.get_experiment_by_name("vtc-lab").experiment_id])}
    # what the command lines set alike (short names), minus where the model is and how the run
    # is carried out
    key = ("benchmark.limit=2,eval_degrade=mild,max_new_tokens=4,max_rounds=1,"
           f"train.degrade=none,train.renderer={renderer}")
    for seed in (0, 1):
        params, tags = runs[f"eval-s{seed}"].data.params, runs[f"eval-s{seed}"].data.tags
        assert {k: v for k, v in params.items() if k.startswith("train.")} == {
            "train.seed": str(seed), "train.degrade": "none", "train.renderer": renderer,
            "train.run_id": trained[seed]}
        assert params["seed"] == "0"  # the eval's own sampling seed: not the replicate
        assert (tags["vtc.seed"], tags["vtc.config_key"]) == (str(seed), key)
        assert params["degrade"] == "mild"

    records, _, _ = collect_runs(uri, "vtc-lab")
    points = [p for p in eval_points(records) if p.metric == "accuracy"]
    assert points and {(p.arm.config, p.seeds, p.interval.n) for p in points} == {(key, ("0", "1"), 2)}
    make_report(ReportConfig(tracking=TrackingConfig(uri=uri), output_root=str(out),
                             output_dir=str(tmp_path / "report")))
    table = (tmp_path / "report" / "report.md").read_text()
    assert f"| math500 | accuracy | {key} | memory | step 0 |" in table
    assert info["seed"] == 0  # run.json records the seed the evals learn it from

    swept, _, _ = collect_runs(uri, "swept")
    assert sorted((r.tags["vtc.config_key"], r.tags["vtc.seed"]) for r in swept) == [
        (f"benchmark.limit=2,eval_degrade={pages},max_new_tokens=4,max_rounds=1,"
         f"train.degrade=none,train.renderer={renderer}", seed)
        for pages in ("mild", "none") for seed in ("0", "1")]  # the sweep's fixed values count too
    assert {(p.arm.config.split(",")[1], p.interval.n) for p in eval_points(swept)
            if p.metric == "accuracy"} == {("eval_degrade=none", 2), ("eval_degrade=mild", 2)}
