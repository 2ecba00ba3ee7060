"""Key params, flattening and provenance tags: exact values, no mlflow involved."""

from __future__ import annotations

import subprocess
from pathlib import Path

from vtc_lab.tracking.provenance import (
    flatten,
    git_state,
    key_params,
    override_params,
    provenance_tags,
)
from vtc_lab.tracking.sweep import read_jobs, read_parent, record_job, write_parent


def test_flatten_keeps_lists_as_leaves():
    from vtc_lab.segment import SegmentationConfig

    assert flatten(SegmentationConfig(max_tokens=96, markers=["Wait"])) == {
        "policy": "boundary", "max_tokens": 96, "min_tokens": 64, "max_segments": None,
        "on_overflow": "drop", "min_fill": 0.5, "markers": ["Wait"]}
    assert flatten({"a": {"b": [1, {"c": 2}]}, "d": {}}) == {"a.b": [1, {"c": 2}], "d": {}}


def test_key_params_are_short_and_readable():
    """On the real build-data schema: every key param it has, under its short name."""
    from vtc_lab.data.config import BuildDataConfig

    cfg = BuildDataConfig()
    cfg.segmentation.max_tokens = 96
    assert key_params(cfg) == {
        "backbone": "tiny_qwen3_vl", "arch": "qwen3_vl", "model_source": "tiny",
        "font": "DejaVuSans", "font_size": 9.0, "dpi": 72, "page_width": 595.0, "degrade": "none",
        "seg_policy": "boundary", "seg_budget": 96, "dataset": "math500_fixture",
        "system_prompt": "on", "image_position": "before", "max_pixels": None, "min_pixels": None,
        "image_max_pixels": None}
    cfg.data.system_prompt = None
    assert key_params(cfg)["system_prompt"] == "off"


def test_override_params():
    assert override_params(["a.b=1", "+c=x=y", "~d", "group=opt"]) == {
        "a.b": "1", "c": "x=y", "group": "opt"}


def test_git_state_matches_git():
    root = Path(__file__).resolve().parents[2]
    commit, dirty = git_state()
    expected = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True).stdout.strip()
    assert commit == expected and dirty in ("true", "false")
    tags = provenance_tags()
    assert tags["git.commit"] == tags["mlflow.source.git.commit"] == commit
    assert tags["device"].startswith(("cpu", "cuda"))


def test_sweep_state_files_round_trip(tmp_path):
    assert read_parent(tmp_path, "sqlite:///x") is None
    write_parent(tmp_path, "abc", "sqlite:///x", "1", ["a"])
    assert read_parent(tmp_path, "sqlite:///x") == "abc"
    assert read_parent(tmp_path, "http://other") is None   # another store: not our parent
    record_job(tmp_path, "a=1", "FINISHED")
    record_job(tmp_path, "a=2", "FAILED")
    assert read_jobs(tmp_path) == {"finished": 1, "failed": 1, "failed_jobs": ["a=2"]}
    write_parent(tmp_path, "def", "sqlite:///x", "1")   # a new sweep in the same dir resets
    assert read_jobs(tmp_path) == {"finished": 0, "failed": 0, "failed_jobs": []}


def test_config_diff_names_each_changed_leaf():
    from vtc_lab.tracking.provenance import config_diff

    old = {"loop": {"max_rounds": 8, "mode": "optical"}, "renderer": "abc", "gone": 1}
    new = {"loop": {"max_rounds": 2, "mode": "optical"}, "renderer": "def", "added": [1]}
    assert config_diff(old, new) == ["added: '<unset>' -> [1]", "gone: 1 -> '<unset>'",
                                     "loop.max_rounds: 8 -> 2", "renderer: 'abc' -> 'def'"]
    assert config_diff(old, old) == []


def _train_cfg(evaluator: bool = True):
    """The real train schema with two pixel quantities and an evaluator set apart from defaults."""
    from vtc_lab.train.config import TrainConfig

    cfg = TrainConfig()
    cfg.model.max_pixels, cfg.model.min_pixels = 262144, 4096
    cfg.model.image_max_pixels = 65536
    cfg.data.name = "openr1_math"
    ev = cfg.evaluator
    ev.enabled, ev.benchmarks, ev.loops = evaluator, ["math500"], ["optical", "text"]
    ev.loop.max_rounds, ev.loop.max_new_tokens = 2, 256
    return cfg


def test_key_params_one_name_per_quantity_and_none_named_like_a_group():
    """The processor's pixel bounds and the encoder's pre-resize cap are two quantities with two
    names; the dataset's name is not logged as `data` (the group override's own param); a train
    run with the evaluator on logs what it evaluates, one with it off does not."""
    kp = key_params(_train_cfg())
    assert {k: kp[k] for k in ("max_pixels", "min_pixels", "image_max_pixels", "dataset", "benchmarks",
                               "loops", "max_rounds", "max_new_tokens")} == {
        "max_pixels": 262144, "min_pixels": 4096, "image_max_pixels": 65536,
        "dataset": "openr1_math", "benchmarks": ["math500"], "loops": ["optical", "text"],
        "max_rounds": 2, "max_new_tokens": 256}
    assert not {"data", "benchmark", "loop"} & set(kp)
    off = key_params(_train_cfg(evaluator=False))
    evaluator_keys = {"benchmarks", "loops", "max_rounds", "max_new_tokens", "context_cap",
                      "context_policy", "min_render_tokens"}
    assert not evaluator_keys & set(off)
    assert set(kp) - set(off) == evaluator_keys


def test_every_key_param_path_is_a_field_of_some_app_schema():
    """KEY_PARAMS names config paths by hand: each must be a real field of at least one app's
    schema (issue 22 §5), or its param silently never appears. Checked against the schemas
    the apps register with Hydra (the same ones docs/config-reference.md is built from)."""
    from vtc_lab.cli.docs_config import app_schemas
    from vtc_lab.tracking.provenance import KEY_PARAMS, flatten

    fields = set().union(*(flatten(cfg) for cfg in app_schemas().values()))
    unknown = sorted(f"{name}: {path}" for name, paths in KEY_PARAMS.items() for path in paths
                     if path not in fields)
    assert unknown == []
