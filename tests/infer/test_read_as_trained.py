"""Evaluation feeds a trained model what it was trained to read: a real tiny training run with
a non-default page pixel cap, system prompt, image position and renderer records them in
run.json and next to its export, and `eval train_run=` / `eval` of the export apply all four
to the loop; an explicit pixel cap that contradicts the training's is refused."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
import vtc_lab.cli.eval  # noqa: F401 - registers eval_schema
import vtc_lab.cli.train  # noqa: F401 - registers train_schema
from vtc_lab.infer.offline import apply_export_reading, apply_train_run
from vtc_lab.models.reading import ReadingSpec, read_reading

CAP = 5000  # far below the default 262144: a lost cap shows


def eval_cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        raw = compose("eval", overrides=[f"output_root={tmp_path / 'eval'}", "tracking=off",
                                         "progress=false", *overrides])
    return OmegaConf.to_object(raw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from vtc_lab.train.run import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trained")
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        raw = compose("train", overrides=[
            f"output_root={root}", f"run_dir={root}/run", "data.limit=2", "optim.max_steps=1",
            "optim.batch_size=1", "optim.val_max_samples=1", "progress=false", "tracking=off",
            f"model.image_max_pixels={CAP}", "data.system_prompt=trained prompt",
            "data.image_position=after", "renderer.font_size=8.0"])
    train(OmegaConf.to_object(raw))
    return root / "run"


def check_applied(cfg):
    assert cfg.model.image_max_pixels == CAP
    assert (cfg.system_prompt, cfg.image_position, cfg.renderer.font_size) == (
        "trained prompt", "after", 8.0)


def test_train_records_what_the_model_reads(run_dir):
    expected = {"image_max_pixels": CAP, "system_prompt": "trained prompt",
                "image_position": "after"}
    spec = read_reading(run_dir / "export")
    assert {k: getattr(spec, k) for k in expected} == expected
    assert spec.renderer.font_size == 8.0
    # run.json holds the same record, and it is the dataset's renderer
    info = json.loads((run_dir / "run.json").read_text())
    assert ReadingSpec.from_dict(info["reading"], "run.json") == spec
    manifest = json.loads((__import__("pathlib").Path(info["dataset"]) / "manifest.json").read_text())
    assert spec.to_dict()["renderer"] == manifest["config"]["renderer"]


def test_eval_of_the_run_or_its_export_feeds_the_loop_as_trained(tmp_path, run_dir):
    defaults = eval_cfg(tmp_path)
    assert defaults.model.image_max_pixels is None and defaults.image_position == "before"
    check_applied(apply_train_run(eval_cfg(tmp_path, f"train_run={run_dir}")))
    check_applied(apply_export_reading(eval_cfg(
        tmp_path, "model=local", f"model.path={run_dir / 'export'}")))
    # the same value given explicitly agrees; another is refused, naming both
    check_applied(apply_train_run(eval_cfg(tmp_path, f"train_run={run_dir}",
                                           f"model.image_max_pixels={CAP}")))
    with pytest.raises(ValueError, match=rf"model.image_max_pixels=9999 contradicts .*\({CAP}"):
        apply_train_run(eval_cfg(tmp_path, f"train_run={run_dir}", "model.image_max_pixels=9999"))


def test_run_json_record_serves_when_the_export_lacks_its_file(tmp_path, run_dir):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "export" / "reading.json").unlink()
    check_applied(apply_train_run(eval_cfg(tmp_path, f"train_run={copy}")))
