"""A real `mlflow server` (sqlite backend, one worker, free port): sweep into it, read back over
REST, stop it by pid. Also: a server that is down fails the app before any job runs."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from ._helpers import child_env, run_sweep_app
from .conftest import free_port


def _rest(base: str, path: str, body: dict | None = None, query: str = "") -> dict:
    url = f"{base}/api/2.0/mlflow/{path}{query}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_sweep_against_a_real_tracking_server(tmp_path, mlflow_server):
    res = run_sweep_app(tmp_path, "x=1,2", "y=5", "fail_when_x=2", "tracking=server",
                        f"tracking.uri={mlflow_server}", "tracking.experiment=served")
    assert res.returncode != 0 and "injected failure at x=2" in res.stderr
    exp = _rest(mlflow_server, "experiments/get-by-name", query="?experiment_name=served")
    exp_id = exp["experiment"]["experiment_id"]
    found = _rest(mlflow_server, "runs/search", {"experiment_ids": [exp_id]})["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in found]
    parents = [r for r, t in zip(found, tags) if t.get("vtc.sweep") == "true"]
    children = [(r, t) for r, t in zip(found, tags) if "mlflow.parentRunId" in t]
    assert len(parents) == 1 and len(children) == 2
    parent_id = parents[0]["info"]["run_id"]
    assert all(t["mlflow.parentRunId"] == parent_id for _, t in children)
    status = {r["info"]["run_name"]: r["info"]["status"] for r, _ in children}
    assert status == {"x=1": "FINISHED", "x=2": "FAILED"}
    ok = next(r for r, _ in children if r["info"]["status"] == "FINISHED")
    hist = _rest(mlflow_server, "metrics/get-history",
                 query=f"?run_id={ok['info']['run_id']}&metric_key=score")["metrics"]
    assert [m["value"] for m in hist] == [1 * 10 + 5 + 9]
    pmetrics = {m["key"]: m["value"] for m in parents[0]["data"]["metrics"]}
    assert pmetrics["sweep/jobs_finished"] == 1 and pmetrics["sweep/jobs_failed"] == 1
    # artifacts went through the server (proxied), not into the client's output_root
    failed = next(r for r, _ in children if r["info"]["status"] == "FAILED")
    arts = _rest(mlflow_server, "artifacts/list",
                 query=f"?run_id={failed['info']['run_id']}&path=error")
    assert [f["path"] for f in arts["files"]] == ["error/traceback.txt"]
    assert list((tmp_path / "server-artifacts").rglob("traceback.txt"))
    assert not (tmp_path / "out" / "mlartifacts").exists()


def test_server_down_fails_before_any_job_naming_the_uri(tmp_path):
    port = free_port()  # nothing listens there
    res = run_sweep_app(tmp_path, "x=1,2", "tracking=server",
                        f"tracking.uri=http://127.0.0.1:{port}", "tracking.connect_timeout_s=2")
    assert res.returncode != 0
    assert f"http://127.0.0.1:{port}" in res.stderr
    assert "cannot reach the MLflow tracking server" in res.stderr
    assert "Launching" not in res.stdout + res.stderr  # no job started


@pytest.mark.slow
@pytest.mark.parametrize("store", ["local", "server"])
def test_tiny_model_train_sweep_four_jobs_one_injected_failure(tmp_path, store, request):
    """The tracking layer's acceptance sweep on the real `vtc-lab train`, tiny model: 4 jobs,
    job 0 gets optim.max_steps=0 (invalid) through `${hydra:job.num}`, the rest train 1-3
    steps. One parent; the invalid job is refused before a run is made for it and counted
    failed on the parent; three FINISHED children with their losses."""
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    args = [sys.executable, "-m", "vtc_lab.cli.main", "train", "-m", "tracking.experiment=toy",
            "renderer.font_size=7,9",
            "segmentation.max_tokens=64,128", "optim.max_steps=${hydra:job.num}",
            "evaluator=off", "data.limit=16", "optim.val_check_interval=1", "export=false",
            "progress=false", f"output_root={out}"]
    if store == "server":
        base = request.getfixturevalue("mlflow_server")
        args += ["tracking=server", f"tracking.uri={base}"]
        uri = base
    else:
        uri = f"sqlite:///{out.resolve()}/mlflow.db"
    res = subprocess.run(args, cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                         timeout=1500)
    assert res.returncode != 0 and "optim.max_steps must be >= 1" in res.stderr
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("toy")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("vtc.sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    # job 0's config is invalid: refused before a run was created for it, counted on the parent
    assert len(parents) == 1 and len(children) == 3
    assert {c.info.run_name for c in children} == {
        f"font_size={f},seg_budget={m}" for f in (7, 9) for m in (64, 128)
    } - {"font_size=7,seg_budget=64"}
    assert all(c.info.status == "FINISHED" for c in children)
    for c in children:  # validation runs every step; train/loss only every 5 steps
        if c.info.status == "FINISHED":
            assert 0 < c.data.metrics["val/loss"] < 10 and c.data.params["max_steps"] in "123"
    p = parents[0].data.metrics
    assert (p["sweep/jobs_finished"], p["sweep/jobs_failed"]) == (3, 1)
    assert "max_steps" in parents[0].data.tags["sweep.failed_jobs"]
