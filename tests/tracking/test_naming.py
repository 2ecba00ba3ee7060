"""Sweep runs as a user compares them in the MLflow UI: short distinct names from the swept
values, `vtc.seed` / `vtc.config_key` tags, each param once, and `seeds=N` as a sweep axis.
Real Hydra multiruns (tests/tracking/sweep_app.py) into a real sqlite MLflow store."""

from __future__ import annotations

import pytest

from vtc_lab.cli._seeds import expand_seeds
from vtc_lab.infer.evaluate import loop_key, metric_key
from vtc_lab.tracking.provenance import run_params
from vtc_lab.tracking.sweep import config_key, run_name

from ._helpers import child_env, run_sweep_app, runs_by_role


def _uri(tmp_path):
    return f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"


def test_seeds_become_one_more_sweep_axis_in_place():
    assert expand_seeds(["experiment=toy", "seeds=3"], "optim.seed") == [
        "-m", "experiment=toy", "optim.seed=0,1,2"]
    # in place, so a trailing option keeps the overrides together; -m is not added twice
    assert expand_seeds(["-m", "a=1,2", "seeds=2", "b=3", "--cfg", "job"], "loop.seed") == [
        "-m", "a=1,2", "loop.seed=0,1", "b=3", "--cfg", "job"]
    assert expand_seeds(["experiment=toy", "seeds=1"], "optim.seed") == ["experiment=toy"]
    assert expand_seeds(["experiment=toy"], "optim.seed") == ["experiment=toy"]


@pytest.mark.parametrize("argv, message", [
    (["seeds=0"], "seeds must be a whole number >= 1"),
    (["seeds=two"], "seeds must be a whole number >= 1"),
    (["seeds=2", "seeds=3"], "seeds= given 2 times"),
    (["seeds=2", "optim.seed=5"], "seeds=2 and optim.seed=5 both set the seed"),
])
def test_bad_seeds_are_refused_naming_the_problem(argv, message):
    with pytest.raises(ValueError, match=message):
        expand_seeds(argv, "optim.seed")


def test_run_names_and_config_keys_from_the_swept_values():
    assert run_name({"optim.memory": "optical"}) == "optical"
    assert run_name({"optim.memory": "text", "optim.seed": "1"}) == "text-s1"
    assert run_name({"renderer": "toy_task_wide", "optim.memory": "optical"}) == \
        "toy_task_wide-optical"
    # numbers say nothing alone, and a `-` inside a value would be ambiguous: key=value pairs
    assert run_name({"renderer.font_size": "7", "segmentation.max_tokens": "64",
                     "optim.seed": "2"}) == "font_size=7,seg_budget=64-s2"
    assert run_name({"renderer": "a-b"}) == "renderer=a-b"
    assert run_name({"optim.seed": "4"}) == "s4"
    assert run_name({}) == ""
    long = {"renderer": "x" * 50, "data": "y" * 50}
    assert len(run_name(long)) == 60 and run_name(long) != run_name({**long, "data": "y" * 51})
    assert config_key({"optim.seed": "1", "renderer": "toy_task", "optim.memory": "text"}) == \
        "memory=text,renderer=toy_task"
    assert config_key({"optim.seed": "1"}) == ""


def test_one_metric_key_per_quantity_across_models():
    # the model's own memory loop shares one key, so an optical and a text model overlay
    assert metric_key("toy", "optical", "accuracy", "optical") == "eval/toy/memory/accuracy"
    assert metric_key("toy", "text", "accuracy", "text") == "eval/toy/memory/accuracy"
    assert metric_key("toy", "none", "accuracy", "text") == "eval/toy/none/accuracy"
    assert metric_key("toy", "text", "accuracy", "optical") == "eval/toy/text/accuracy"
    assert loop_key("optical") == "optical"  # memory unknown: the loop's own name


def test_a_key_param_override_is_a_param_once_under_its_short_name():
    assert run_params({"optim.memory": "text", "renderer": "toy_task", "x": "1"}) == {
        "renderer": "toy_task", "x": "1"}


def test_seed_sweep_of_a_preset_names_tags_and_logs_each_param_once(tmp_path):
    """`seeds=3` over a preset that sweeps in the sweeper's params (like experiment=toy): six
    jobs, `optical-s0` .. `text-s2`, tagged by seed and configuration, `memory` and `seed` as
    params once each (no `renderer.font_size` beside `font_size`)."""
    argv = expand_seeds(["experiment=memories", "seeds=3", "renderer.font_size=7"], "seed")
    assert argv[0] == "-m"
    res = run_sweep_app(tmp_path, *argv[1:])
    assert res.returncode == 0, res.stderr[-3000:]
    parents, children = runs_by_role(_uri(tmp_path))
    assert len(parents) == 1
    names = sorted(c.info.run_name for c in children)
    assert names == [f"{m}-s{s}" for m in ("optical", "text") for s in range(3)]
    for child in children:
        memory, seed = child.info.run_name.split("-s")
        tags, params = child.data.tags, child.data.params
        assert tags["vtc.seed"] == seed
        assert tags["vtc.config_key"] == f"memory={memory}"
        assert params["memory"] == memory and params["seed"] == seed
        assert params["font_size"] == "7" and "renderer.font_size" not in params
    assert parents[0].data.params["sweep.seed"] == "0,1,2"
    assert parents[0].data.params["sweep.memory"] == "optical,text"


def test_single_run_is_tagged_default_with_its_seed(tmp_path):
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    from ._helpers import SWEEP_APP

    res = subprocess.run([sys.executable, str(SWEEP_APP), "seed=5", "x=2",
                          f"output_root={tmp_path / 'out'}"],
                         cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                         timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    client = MlflowClient(_uri(tmp_path))
    exp = client.get_experiment_by_name("vtc-lab")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["vtc.seed"] == "5"
    assert run.data.tags["vtc.config_key"] == "default"
    assert run.data.params["seed"] == "5" and run.data.params["x"] == "2"
