"""Key params, flattening and provenance tags: exact values, no mlflow involved."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from vtc_lab.tracking.provenance import (
    flatten,
    git_state,
    key_params,
    override_params,
    provenance_tags,
)
from vtc_lab.tracking.sweep import read_jobs, read_parent, record_job, write_parent


@dataclass
class _Seg:
    policy: str = "boundary"
    max_tokens: int = 96
    markers: list[str] = field(default_factory=lambda: ["Wait"])


@dataclass
class _Data:
    system_prompt: str | None = "You are..."
    image_position: str = "before"


@dataclass
class _Cfg:
    segmentation: _Seg = field(default_factory=_Seg)
    data: _Data = field(default_factory=_Data)
    seed: int = 3


def test_flatten_keeps_lists_as_leaves():
    assert flatten(_Cfg()) == {"segmentation.policy": "boundary", "segmentation.max_tokens": 96,
                               "segmentation.markers": ["Wait"], "data.system_prompt": "You are...",
                               "data.image_position": "before", "seed": 3}


def test_key_params_are_short_and_readable():
    # a top-level `seed` is no app's field (the seed param reads optim.seed)
    assert key_params(_Cfg()) == {"seg_policy": "boundary", "seg_budget": 96,
                                  "system_prompt": "on", "image_position": "before"}
    assert key_params(_Cfg(data=_Data(system_prompt=None)))["system_prompt"] == "off"


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


@dataclass
class _Model:
    name: str = "tiny_qwen3_vl"
    max_pixels: int | None = 262144
    min_pixels: int | None = 4096
    image_max_pixels: int | None = 65536


@dataclass
class _Optim:
    lr: float = 1e-3


@dataclass
class _EvalLoop:
    mode: str = "optical"
    max_rounds: int = 2
    max_new_tokens: int = 256


@dataclass
class _Evaluator:
    enabled: bool = True
    benchmarks: list[str] = field(default_factory=lambda: ["math500"])
    loops: list[str] = field(default_factory=lambda: ["optical", "text"])
    loop: _EvalLoop = field(default_factory=_EvalLoop)


@dataclass
class _NamedData:
    name: str = "openr1_math"


@dataclass
class _TrainCfg:
    model: _Model = field(default_factory=_Model)
    optim: _Optim = field(default_factory=_Optim)
    evaluator: _Evaluator = field(default_factory=_Evaluator)
    data: _NamedData = field(default_factory=_NamedData)


def test_key_params_one_name_per_quantity_and_none_named_like_a_group():
    """The processor's pixel bounds and the encoder's pre-resize cap are two quantities with two
    names; the dataset's name is not logged as `data` (the group override's own param); a train
    run with the evaluator on logs what it evaluates, one with it off does not."""
    kp = key_params(_TrainCfg())
    assert {k: kp[k] for k in ("max_pixels", "min_pixels", "image_max_pixels", "dataset", "benchmarks",
                               "loops", "max_rounds", "max_new_tokens")} == {
        "max_pixels": 262144, "min_pixels": 4096, "image_max_pixels": 65536,
        "dataset": "openr1_math", "benchmarks": ["math500"], "loops": ["optical", "text"],
        "max_rounds": 2, "max_new_tokens": 256}
    assert not {"data", "benchmark", "loop"} & set(kp)
    off = key_params(_TrainCfg(evaluator=_Evaluator(enabled=False)))
    assert not {"benchmarks", "loops", "max_rounds", "max_new_tokens"} & set(off)
    assert set(kp) - set(off) == {"benchmarks", "loops", "max_rounds", "max_new_tokens"}


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
