"""The rule that makes evaluations of trained models replicates (`vtc_lab.tracking.replicates`):
the eval run's `vtc.seed` is the training seed unless the eval chooses its own, and its
`vtc.config_key` is what the eval varies minus the model's location, plus what the model is."""

from __future__ import annotations

import json

from vtc_lab.tracking.replicates import eval_tags, model_params
from vtc_lab.tracking.report import RunRecord
from vtc_lab.tracking.sweep import JobContext

MODEL = {"seed": 2, "degrade": "moderate", "renderer": "0f1e2d3c", "run_id": "r2",
         "config": "default"}


def test_params_name_the_model():
    assert model_params(MODEL) == {"train.seed": "2", "train.degrade": "moderate",
                                   "train.renderer": "0f1e2d3c", "train.run_id": "r2",
                                   "train.config": "default"}


def test_a_single_eval_is_the_replicate_of_its_model_seed():
    outside_hydra = eval_tags(MODEL, JobContext())
    assert outside_hydra == {"vtc.seed": "2",
                             "vtc.config_key": "train.degrade=moderate,train.renderer=0f1e2d3c"}
    # a command line: where the model and outputs are is left out, the rest is the setting
    typed = {"train_run": "/runs/toy/2", "run_name": "c2.25-s2-mild", "output_dir": "/o",
             "progress": "false", "grade_workers": "1", "eval_degrade": "mild",
             "benchmark.limit": "100"}
    assert eval_tags(MODEL, JobContext(overrides=typed)) == {
        "vtc.seed": "2", "vtc.config_key": "benchmark.limit=100,eval_degrade=mild,"
                                           "train.degrade=moderate,train.renderer=0f1e2d3c"}
    # the other seed's eval of the same setting: the same configuration
    other = {**MODEL, "seed": 0, "run_id": "r0"}
    other_typed = {**typed, "train_run": "/runs/toy/0", "run_name": "c2.25-s0-mild"}
    assert (eval_tags(other, JobContext(overrides=other_typed))["vtc.config_key"]
            == eval_tags(MODEL, JobContext(overrides=typed))["vtc.config_key"])
    # a model of another training configuration is another configuration
    assert "train.config=memory=text" in eval_tags({**MODEL, "config": "memory=text"},
                                                   JobContext())["vtc.config_key"]


def test_a_sweep_of_models_groups_by_setting_and_a_seed_sweep_keeps_its_seeds():
    swept = {"train_run": "/runs/toy/2", "eval_degrade": "severe"}
    assert eval_tags(MODEL, JobContext(swept=swept, overrides={**swept, "experiment": "x"})) == {
        "vtc.seed": "2",
        "vtc.config_key": "eval_degrade=severe,experiment=x,train.degrade=moderate,train.renderer=0f1e2d3c"}
    # two sweeps over the same models that fix different pages are two settings
    # (`train_run=a,b eval_degrade=none`, then `train_run=a,b eval_degrade=severe`)
    keys = {eval_tags(MODEL, JobContext(swept={"train_run": "/runs/toy/2"},
                                        overrides={"train_run": "/runs/toy/2", "eval_degrade": pages}))
            ["vtc.config_key"] for pages in ("none", "severe")}
    assert len(keys) == 2 and all("eval_degrade=" in k for k in keys)
    # `seeds=3` sweeps loop.seed: the sampling seeds are the replicates, the model a setting
    seeds = {"loop.seed": "1"}
    assert eval_tags(MODEL, JobContext(swept=seeds, overrides=seeds)) == {
        "vtc.config_key": "train.degrade=moderate,train.renderer=0f1e2d3c,train.seed=2"}
    assert "vtc.seed" not in eval_tags(MODEL, JobContext(overrides={"loop.seed": "3"}))
    # a model whose seed nothing recorded keeps the eval's seed tag
    assert "vtc.seed" not in eval_tags({"degrade": "none"}, JobContext())


def test_the_frontier_reads_the_training_pages_from_the_run_not_the_disk(tmp_path):
    from vtc_lab.tracking.frontier_plot import trained_on

    run_dir = tmp_path / "0"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"reading": {"renderer": {}}}))  # says: clean
    logged = RunRecord("a", "a", "FINISHED", params={"train.degrade": "moderate",
                                                     "train_run": str(run_dir)})
    assert trained_on(logged) == "moderate"
    gone = RunRecord("b", "b", "FINISHED", params={"train.degrade": "mild",
                                                   "train_run": str(tmp_path / "gone")})
    assert trained_on(gone) == "mild"
    assert trained_on(RunRecord("c", "c", "FINISHED", params={"train_run": str(run_dir)})) == "none"


def test_the_job_context_is_the_one_the_callback_opened_the_run_with():
    """Inside a sweep job the `hydra` node alone cannot resolve the sweep directory
    (`${output_root}/...`), so the context the callback computed from the full config is kept
    with the job's run and handed out while that run is the job's."""
    from vtc_lab.tracking.runs import current_job_context, job_config_key, set_job_run
    from vtc_lab.tracking.state import TrackingState

    state = TrackingState()
    ctx = JobContext(swept={"eval_degrade": "mild"}, tags={"vtc.config_key": "eval_degrade=mild"})
    assert current_job_context("sqlite:///x.db", state) == JobContext()  # outside Hydra
    set_job_run(object(), state, context=ctx)
    assert current_job_context("sqlite:///x.db", state) is ctx
    set_job_run(object(), state)  # a resumed run swapped in keeps the job's context
    assert current_job_context("sqlite:///x.db", state) is ctx
    set_job_run(None, state)
    assert state.job_context is None
    assert job_config_key(None) is None  # tracking off: nothing says what was swept
