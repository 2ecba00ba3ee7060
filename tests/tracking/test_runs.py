"""RunHandle / start_run against a real sqlite MLflow store in tmp_path."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass, field

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from vtc_lab.tracking import (
    NullRunHandle,
    TrackingConfig,
    TrackingUnavailableError,
    lightning_logger,
    prepare_store,
    resolve_tracking_uri,
    start_run,
    store,
)


@dataclass
class _Renderer:
    font_size: int = 9
    dpi: int = 72


@dataclass
class _App:
    output_root: str = "x"
    renderer: _Renderer = field(default_factory=_Renderer)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="tracking.mode"):
        TrackingConfig(mode="cloud")
    with pytest.raises(ValueError, match="tracking.uri is required"):
        TrackingConfig(mode="server")
    with pytest.raises(ValueError, match="tracking.experiment"):
        TrackingConfig(experiment="../escape")
    with pytest.raises(ValueError, match="tracking.uri must be a sqlite"):
        TrackingConfig(mode="local", uri="http://x:5000")


def test_resolve_uri(tmp_path):
    assert resolve_tracking_uri(TrackingConfig(mode="off"), tmp_path) is None
    uri = resolve_tracking_uri(TrackingConfig(), tmp_path / "out")
    assert uri == f"sqlite:///{(tmp_path / 'out').resolve()}/mlflow.db"
    assert resolve_tracking_uri(TrackingConfig(mode="server", uri="http://h:1"), tmp_path) == "http://h:1"


def test_off_mode_is_a_noop_and_creates_nothing(tmp_path):
    with start_run(TrackingConfig(mode="off"), _App(), tmp_path) as run:
        assert isinstance(run, NullRunHandle)
        run.log_params({"a": 1})
        run.log_metrics({"m": 1.0})
        assert lightning_logger(run) is None
    assert list(tmp_path.iterdir()) == []


def test_run_logs_everything_and_finishes(tmp_path):
    cfg = TrackingConfig(experiment="unit", tags={"owner": "me"})
    with start_run(cfg, _App(), tmp_path, run_name="r1") as run:
        run.log_params({"extra": {"nested": 3}})
        run.log_metrics({"eval/acc": 0.5, "n": 3}, step=2)
        run.log_dict({"k": [1, 2]}, "d.json")
        run.log_image(Image.new("RGB", (8, 4), "white"), "pages/p0")
        run.log_table([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], "tables/t.csv")
        run_id = run.run_id
    client = MlflowClient(resolve_tracking_uri(cfg, tmp_path))
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "r1"
    assert got.data.params["font_size"] == "9" and got.data.params["dpi"] == "72"
    assert got.data.params["extra.nested"] == "3"
    assert got.data.metrics == {"eval/acc": 0.5, "n": 3.0}
    assert got.data.tags["owner"] == "me"
    assert len(got.data.tags["git.commit"]) in (40, 7)  # a sha, or 'unknown'
    assert {"host", "device", "vtc_lab.version", "git.dirty"} <= set(got.data.tags)
    files = {f.path for f in client.list_artifacts(run_id)}
    assert {"config", "d.json", "pages", "tables"} <= files
    cfg_text = (tmp_path / "dl").mkdir() or client.download_artifacts(run_id, "config/config.yaml", str(tmp_path / "dl"))
    assert "font_size: 9" in open(cfg_text).read()
    csv = client.download_artifacts(run_id, "tables/t.csv", str(tmp_path / "dl"))
    assert open(csv).read().splitlines() == ["a,b", "1,x", "2,y"]
    # artifacts live beside the sqlite store, not in ./mlruns of the working directory
    assert (tmp_path / "mlartifacts" / "unit").is_dir()


def test_failure_marks_failed_with_traceback(tmp_path):
    cfg = TrackingConfig(experiment="unit")
    with pytest.raises(RuntimeError, match="boom"):
        with start_run(cfg, None, tmp_path) as run:
            run_id = run.run_id
            raise RuntimeError("boom")
    client = MlflowClient(resolve_tracking_uri(cfg, tmp_path))
    assert client.get_run(run_id).info.status == "FAILED"
    tb = client.download_artifacts(run_id, "error/traceback.txt", str(tmp_path))
    assert "RuntimeError: boom" in open(tb).read()


def test_params_never_collide_on_resume(tmp_path):
    cfg = TrackingConfig(experiment="unit")
    with start_run(cfg, _App(), tmp_path) as run:
        run_id = run.run_id
    changed = _App(renderer=_Renderer(font_size=12))
    resumed = TrackingConfig(experiment="unit", resume_run_id=run_id)
    with start_run(resumed, changed, tmp_path) as run:
        assert run.run_id == run_id
        run.log_metrics({"late": 1.0})
    got = MlflowClient(resolve_tracking_uri(cfg, tmp_path)).get_run(run_id)
    assert got.data.params["font_size"] == "9"          # never rewritten
    assert got.data.tags["param_changed.font_size"] == "12"
    assert got.data.metrics["late"] == 1.0 and got.info.status == "FINISHED"


def test_an_override_and_the_apps_value_of_one_param_are_one_value(tmp_path):
    """The sweep logs the override text (`[optical]`), the app the value (`["optical"]`): the
    same param, not a changed one; a really different value still becomes a tag."""
    cfg = TrackingConfig(experiment="unit")
    client = MlflowClient(resolve_tracking_uri(cfg, tmp_path))
    changed = []
    for second in (["optical"], ["text"]):
        with start_run(cfg, _App(), tmp_path) as run:
            run.log_params({"loops": "[optical]", "size": "7"})
            run.log_params({"loops": second, "size": 7.0})
        got = client.get_run(run.run_id)
        assert got.data.params["loops"] == "[optical]" and got.data.params["size"] == "7"
        changed.append({k: v for k, v in got.data.tags.items() if k.startswith("param_changed.")})
    assert changed == [{}, {"param_changed.loops": '["text"]'}]


def test_non_numeric_metric_names_the_key(tmp_path):
    with start_run(TrackingConfig(), None, tmp_path) as run:
        with pytest.raises(TypeError, match="'eval/acc'"):
            run.log_metrics({"eval/acc": "high"})


def test_unreachable_server_fails_fast_naming_the_uri(tmp_path):
    cfg = TrackingConfig(mode="server", uri="http://127.0.0.1:9", connect_timeout_s=2)
    with pytest.raises(TrackingUnavailableError, match=r"http://127\.0\.0\.1:9"):
        with start_run(cfg, None, tmp_path):
            pytest.fail("the body must not run")


def test_lightning_logger_writes_into_the_same_run(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = TrackingConfig(experiment="unit")
    with start_run(cfg, _App(), tmp_path) as run:
        logger = lightning_logger(run)
        logger.log_hyperparams({"lr": 0.1, "font_size": 9})
        logger.log_metrics({"train/loss": 1.5}, step=3)
        logger.finalize("success")
        assert logger.run_id == run.run_id
        # the process-wide URI is left alone (later jobs / subprocesses must not inherit it)
        assert "MLFLOW_TRACKING_URI" not in os.environ
        run_id = run.run_id
        # still running: the logger must not end the run the app still logs into
        assert run.client.get_run(run_id).info.status == "RUNNING"
    client = MlflowClient(resolve_tracking_uri(cfg, tmp_path))
    hist = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in hist] == [(3, 1.5)]
    assert client.get_run(run_id).data.params["hparams.lr"] == "0.1"


def test_lightning_logger_puts_a_previously_set_tracking_uri_back(tmp_path, monkeypatch):
    import os

    import mlflow

    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    mlflow.set_tracking_uri(elsewhere)
    try:
        with start_run(TrackingConfig(experiment="unit"), _App(), tmp_path / "out") as run:
            logger = lightning_logger(run)
            logger.log_metrics({"train/loss": 1.0}, step=1)  # creates the experiment client
            assert logger.experiment.tracking_uri == run.tracking_uri != elsewhere
            assert os.environ["MLFLOW_TRACKING_URI"] == elsewhere
            assert mlflow.get_tracking_uri() == elsewhere
    finally:
        mlflow.set_tracking_uri(None)


def _migrate(uri):
    prepare_store(uri)
    return True


def test_parallel_first_use_of_a_fresh_store_does_not_race(tmp_path):
    uri = resolve_tracking_uri(TrackingConfig(), tmp_path)
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        assert pool.map(_migrate, [uri] * 4) == [True] * 4


def test_resume_inside_a_hydra_job_reuses_the_old_run(tmp_path):
    from vtc_lab.tracking import open_run, resolve_tracking_uri as rtu
    from vtc_lab.tracking.runs import current_job_run, set_job_run

    cfg = TrackingConfig(experiment="unit")
    uri = rtu(cfg, tmp_path)
    with start_run(cfg, _App(), tmp_path) as first:
        old_id = first.run_id
    prepare_store(uri)
    fresh = open_run(cfg, uri, run_name="attempt-2")  # what the callback opens for the job
    set_job_run(fresh)
    try:
        resumed_cfg = TrackingConfig(experiment="unit", resume_run_id=old_id)
        with start_run(resumed_cfg, _App(), tmp_path) as run:
            assert run.run_id == old_id
            run.log_metrics({"after_resume": 2.0})
        assert current_job_run().run_id == old_id   # the callback will end this one
    finally:
        set_job_run(None)
    client = MlflowClient(uri)
    assert client.get_run(fresh.run_id).info.lifecycle_stage == "deleted"
    assert client.get_run(old_id).data.metrics["after_resume"] == 2.0


def test_app_run_name_renames_a_single_job_run_but_not_a_sweep_child(tmp_path):
    from vtc_lab.tracking import open_run
    from vtc_lab.tracking.runs import set_job_run

    cfg = TrackingConfig(experiment="unit")
    uri = resolve_tracking_uri(cfg, tmp_path)
    store.prepare_store(uri)  # a copy of the migrated template (tests/conftest.py)
    parent = open_run(cfg, uri, run_name="sweep")
    for parent_id, expected in ((None, "eval-tiny-math500"), (parent.run_id, "x=1")):
        job = open_run(cfg, uri, run_name="x=1", parent_run_id=parent_id)
        set_job_run(job)
        try:
            with start_run(cfg, None, tmp_path, run_name="eval-tiny-math500") as run:
                assert run.run_id == job.run_id
        finally:
            set_job_run(None)
        assert MlflowClient(uri).get_run(job.run_id).info.run_name == expected


def test_experiments_open_on_the_runs_table(tmp_path):
    """New experiments, and ones made before (or by hand without a kind), are marked as model
    development, which the MLflow 3 UI opens on the runs table; a kind someone set is kept."""
    uri = resolve_tracking_uri(TrackingConfig(), tmp_path)
    store.prepare_store(uri)  # a copy of the migrated template (tests/conftest.py)
    client = MlflowClient(uri)
    # made "by hand", but with artifact roots under tmp_path: without one, MLflow's default is
    # ./mlruns of the working directory, where start_run below would log config.yaml
    old = client.create_experiment("older", artifact_location=store.artifact_location(uri, "older"))
    client.create_experiment("mine", artifact_location=store.artifact_location(uri, "mine"),
                             tags={"mlflow.experimentKind": "genai_development"})
    for name in ("vtc-lab", "older", "mine"):
        with start_run(TrackingConfig(experiment=name), _App(), tmp_path):
            pass
    kinds = {name: client.get_experiment_by_name(name).tags.get("mlflow.experimentKind")
             for name in ("vtc-lab", "older", "mine")}
    assert kinds == {"vtc-lab": "custom_model_development", "older": "custom_model_development",
                     "mine": "genai_development"}
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def test_dataset_inputs_are_recorded(tmp_path):
    data = tmp_path / "datasets" / "fixture-abc"
    data.mkdir(parents=True)
    with start_run(TrackingConfig(), _App(), tmp_path) as run:
        run.log_dataset("fixture", "abc123", data, "training", {"problems": 8, "samples": 30})
        run.log_dataset("toy", "1-ff", "<generated: toy task ff>", "evaluation", {"problems": 5})
        with pytest.raises(ValueError, match="dataset context"):
            run.log_dataset("x", "d", data, "testing")
        run_id = run.run_id
    client = MlflowClient(resolve_tracking_uri(TrackingConfig(), tmp_path))
    inputs = client.get_run(run_id).inputs.dataset_inputs
    got = {(d.dataset.name, d.dataset.digest, d.dataset.source_type, d.dataset.source,
            d.dataset.profile, tuple((t.key, t.value) for t in d.tags)) for d in inputs}
    assert got == {
        ("fixture", "abc123", "local", f'{{"uri": "{data.resolve()}"}}',
         '{"problems": 8, "samples": 30}', (("mlflow.data.context", "training"),)),
        ("toy", "1-ff", "code", '{"uri": "<generated: toy task ff>"}', '{"problems": 5}',
         (("mlflow.data.context", "evaluation"),))}
    # the runs table filters on it
    exp = client.get_experiment_by_name("vtc-lab").experiment_id
    assert [r.info.run_id for r in client.search_runs([exp], "dataset.name = 'fixture'")] == [run_id]
    NullRunHandle().log_dataset("x", "d", data, "training")  # tracking=off: a no-op


def test_two_tracking_states_share_nothing(tmp_path):
    """The process's run bookkeeping is an object (`TrackingState`): two of them keep their own
    job run and open runs; killing one's open runs leaves the other's running, and a
    `start_run` under a state hands out that state's job run only."""
    from vtc_lab.tracking import TrackingState, finish_run, open_run
    from vtc_lab.tracking.runs import current_job_run, set_job_run
    from vtc_lab.tracking.state import STATE

    cfg = TrackingConfig(experiment="unit")
    uri = resolve_tracking_uri(cfg, tmp_path)
    store.prepare_store(uri)
    a, b = TrackingState(), TrackingState()
    run_a = open_run(cfg, uri, run_name="a", state=a)
    run_b = open_run(cfg, uri, run_name="b", state=b)
    assert set(a.open_runs) == {run_a.run_id} and set(b.open_runs) == {run_b.run_id}
    assert run_a.run_id not in STATE.open_runs and run_b.run_id not in STATE.open_runs

    set_job_run(run_a, a)
    assert current_job_run(a) is run_a and current_job_run(b) is None
    assert current_job_run() is None  # the process's own state is untouched
    with start_run(cfg, None, tmp_path, state=a) as got:
        assert got.run_id == run_a.run_id
    with start_run(cfg, None, tmp_path, run_name="own", state=b) as got:
        own_id = got.run_id
        assert own_id not in (run_a.run_id, run_b.run_id) and own_id in b.open_runs
    assert own_id not in b.open_runs  # ended by start_run

    a.kill_open_runs()
    client = MlflowClient(uri)
    assert client.get_run(run_a.run_id).info.status == "KILLED"
    assert client.get_run(run_b.run_id).info.status == "RUNNING"
    assert client.get_run(own_id).info.status == "FINISHED"
    finish_run(run_b, state=b)
    assert b.open_runs == {} and client.get_run(run_b.run_id).info.status == "FINISHED"
