"""Real Hydra multiruns (subprocesses) of a tiny app: parent/child runs, failures, launchers."""

from __future__ import annotations

import importlib.util

import pytest
from mlflow.tracking import MlflowClient

from ._helpers import run_sweep_app, runs_by_role


def _uri(tmp_path):
    return f"sqlite:///{(tmp_path / 'out').resolve()}/mlflow.db"


def test_basic_sweep_nests_children_and_survives_a_failing_job(tmp_path, seed_store):
    seed_store(tmp_path / "out" / "mlflow.db")
    res = run_sweep_app(tmp_path, "x=1,2", "y=1,2", "fail_when_x=2")
    # Hydra reports the failed job (non-zero exit) only after every job of the sweep ran
    assert res.returncode != 0
    assert "injected failure at x=2" in res.stderr
    parents, children = runs_by_role(_uri(tmp_path))
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    by_name = {c.info.run_name: c for c in children}
    # run names say what varies (the swept keys), not the fixed overrides
    assert set(by_name) == {f"x={x},y={y}" for x in (1, 2) for y in (1, 2)}
    for x in (1, 2):
        for y in (1, 2):
            run = by_name[f"x={x},y={y}"]
            assert run.data.params["x"] == str(x) and run.data.params["y"] == str(y)
            assert run.data.params["font_size"] == "9"           # key params
            assert "output_root" not in run.data.params         # where != what
            if x == 2:
                assert run.info.status == "FAILED"
                assert "score" not in run.data.metrics
            else:
                assert run.info.status == "FINISHED"
                assert run.data.metrics["score"] == 10 * x + y + 9
    client = MlflowClient(_uri(tmp_path))
    failed = by_name["x=2,y=1"].info.run_id
    tb = client.download_artifacts(failed, "error/traceback.txt", str(tmp_path))
    assert "RuntimeError: injected failure at x=2" in open(tb).read()
    arts = {f.path for f in client.list_artifacts(failed, ".hydra")}
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml"} <= arts
    assert parent.data.params["sweep.x"] == "1,2"
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["sweep/jobs_finished"] == 2
    assert parent.data.metrics["sweep/jobs_failed"] == 2
    assert parent.data.metrics["sweep/jobs_total"] == 4
    assert "git.commit" in parent.data.tags and "device" in children[0].data.tags


def test_joblib_launcher_jobs_in_other_processes_find_the_parent(tmp_path, seed_store):
    seed_store(tmp_path / "out" / "mlflow.db")
    res = run_sweep_app(tmp_path, "x=1,2", "y=3,4", "hydra/launcher=parallel")
    assert res.returncode == 0, res.stderr[-2000:]
    parents, children = runs_by_role(_uri(tmp_path))
    assert len(parents) == 1 and len(children) == 4
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert all(c.info.status == "FINISHED" for c in children)
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.metrics["sweep/jobs_finished"] == 4
    assert sorted(c.data.metrics["score"] for c in children) == [22, 23, 32, 33]


@pytest.mark.slow
def test_submitit_local_executor_sweep(tmp_path):
    res = run_sweep_app(tmp_path, "x=1,2", "fail_when_x=2", "hydra/launcher=submitit_cpu")
    assert res.returncode != 0
    parents, children = runs_by_role(_uri(tmp_path))
    assert len(parents) == 1 and len(children) == 2
    status = {c.data.params["x"]: c.info.status for c in children}
    assert status == {"1": "FINISHED", "2": "FAILED"}
    assert parents[0].data.metrics["sweep/jobs_failed"] == 1


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="extra `optuna` (hydra-optuna-sweeper) not installed")
def test_optuna_sweeper_optimises_the_returned_objective(tmp_path):
    res = run_sweep_app(tmp_path, "x=choice(1,2,3)", "y=choice(1,2)", "hydra/sweeper=bayes",
                        "hydra.sweeper.n_trials=4")
    assert res.returncode == 0, res.stderr[-2000:]
    parents, children = runs_by_role(_uri(tmp_path))
    assert len(children) == 4
    best = max(c.data.metrics["objective"] for c in children)
    # the job's return value is what optuna optimised and what MLflow shows as `objective`
    for c in children:
        assert c.data.metrics["objective"] == c.data.metrics["score"]
    results = list((tmp_path / "out" / "multirun").rglob("optimization_results.yaml"))
    assert len(results) == 1 and f"best_value: {best}" in results[0].read_text()
    client = MlflowClient(_uri(tmp_path))
    assert "config/optimization_results.yaml" in {
        f.path for f in client.list_artifacts(parents[0].info.run_id, "config")}


def test_unknown_override_is_hydras_error_and_logs_nothing(tmp_path):
    res = run_sweep_app(tmp_path, "x=1,2", "no_such_field=3")
    assert res.returncode != 0
    assert "no_such_field" in res.stderr
    assert not (tmp_path / "out" / "mlflow.db").exists() or not runs_by_role(_uri(tmp_path))[1]


def test_bad_tracking_value_names_the_field(tmp_path):
    res = run_sweep_app(tmp_path, "x=1", "tracking.mode=cloud")
    assert res.returncode != 0
    assert "tracking.mode must be one of" in res.stderr


@pytest.mark.slow
def test_render_app_sweep_then_report_through_the_cli(tmp_path):
    """The user's flow through the real CLI (`vtc-lab` = this interpreter's `-m vtc_lab.cli.main`):
    a render sweep with one bad job, then `vtc-lab report sweep=latest` on it."""
    import subprocess
    import sys

    from ._helpers import child_env

    exe = [sys.executable, "-m", "vtc_lab.cli.main"]
    out = tmp_path / "out"
    res = subprocess.run([*exe, "render", "-m", "renderer.font_size=7,9,-1", "limit=3",
                          "backbones=[qwen3_vl]", "progress=false", f"output_root={out}",
                          "tracking.experiment=render_sweep"],
                         cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode != 0  # Hydra reports the bad job after the sweep
    assert "renderer.font_size" in res.stderr
    parents, children = runs_by_role(_uri(tmp_path), "render_sweep")
    # the invalid point gets no run of its own (refused before one is made); the parent
    # counts it and names it
    assert len(parents) == 1 and len(children) == 2
    status = {c.info.run_name: c.info.status for c in children}
    assert status == {"font_size=7": "FINISHED", "font_size=9": "FINISHED"}  # short names (sweep.run_name)
    assert "renderer.font_size=-1" in parents[0].data.tags["sweep.failed_jobs"]
    assert {c.data.params.get("font_size") for c in children if c.info.status == "FINISHED"} \
        == {"7.0", "9.0"}
    rep = subprocess.run([*exe, "report", "tracking.experiment=render_sweep", "sweep=latest",
                          f"output_root={out}"], cwd=tmp_path, env=child_env(),
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-2000:]
    reports = list((out / "reports" / "render_sweep").glob("sweep-*/report.md"))
    assert len(reports) == 1 and "2 runs (2 finished, 0 failed)" in reports[0].read_text()
    client = MlflowClient(_uri(tmp_path))
    assert "report/report.md" in {f.path for f in client.list_artifacts(parents[0].info.run_id, "report")}
    bad = subprocess.run([*exe, "report", "tracking.experiment=nope", f"output_root={out}"],
                         cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "MLflow experiment 'nope' not found" in bad.stderr
