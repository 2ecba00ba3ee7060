"""Evaluation-only degradations (`eval_degrade`): they replace what a model was trained to read
(its reading record's `renderer.degrade`), the optical loop is fed the degraded pages, and the run
records the level (MLflow param `degrade`) and keeps its predictions apart from clean ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from vtc_lab.cli._hydra import CONF_DIR
import vtc_lab.cli.eval  # noqa: F401 - registers eval_schema
from vtc_lab.eval.benchmarks import load_benchmark
from vtc_lab.infer.offline import evaluate, resolve_model, settings_header
from vtc_lab.models.reading import ReadingSpec
from vtc_lab.render import RenderConfig, config_hash, render_text
from vtc_lab.render.degrade import DegradeConfig


def eval_cfg(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        raw = compose("eval", overrides=[f"output_root={tmp_path / 'out'}", "progress=false",
                                         *overrides])
    return OmegaConf.to_object(raw)


def test_eval_degrade_wins_over_the_trained_setting_and_null_keeps_it(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    trained = RenderConfig(font_size=8.0, degrade=DegradeConfig(level="moderate"))
    ReadingSpec(renderer=trained, system_prompt=None, image_position="after",
                image_max_pixels=None).write(export)
    model = ["model=local", f"model.path={export}", "tracking=off"]
    # trained with augmentation, evaluated as trained
    kept = resolve_model(eval_cfg(tmp_path, *model))
    assert kept.renderer == trained and kept.renderer.degrade.level == "moderate"
    # ... or on clean pages; the rest of the reading record still applies
    clean = resolve_model(eval_cfg(tmp_path, *model, "eval_degrade=none"))
    assert not clean.renderer.degrade.active and clean.renderer.font_size == 8.0
    assert config_hash(clean.renderer) == config_hash(RenderConfig(font_size=8.0))
    # a knob on top of a level, and resolving twice changes nothing
    custom = resolve_model(eval_cfg(tmp_path, *model, "eval_degrade=none", "eval_degrade.downscale=0.5"))
    assert custom.renderer.degrade.settings()["downscale"] == 0.5
    assert resolve_model(custom) == custom


def test_degraded_eval_reads_degraded_pages_and_records_the_level(tmp_path, seed_store):
    torch.set_num_threads(1)
    seed_store(tmp_path / "out" / "mlflow.db")
    common = ["model=tiny_qwen3_vl_toy", "benchmark=toy", "renderer=toy_task", "benchmark.limit=2",
              "loop.max_rounds=2", "loop.max_new_tokens=12", "loop.do_sample=false",
              "loops=[optical]", "grade_workers=1", "log_images=2"]
    cfg = eval_cfg(tmp_path, *common, "eval_degrade=severe")
    clean = eval_cfg(tmp_path, *common)
    # a degraded evaluation never resumes from (or into) a clean one's predictions
    problems = load_benchmark(cfg.benchmark)
    assert (settings_header(resolve_model(cfg), problems)["renderer"]
            != settings_header(resolve_model(clean), problems)["renderer"])
    evaluate(cfg)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("vtc-lab").experiment_id])
    assert run.data.params["degrade"] == "severe"
    # the logged memory pages are the severe renders of the rounds' texts, not the clean ones
    (out_dir,) = (tmp_path / "out" / "eval").glob("*/toy-*")
    rec = json.loads((out_dir / "toy__optical.graded.jsonl").read_text().splitlines()[0])
    first = rec["rounds"][0]["text"]
    pid = rec["problem_id"]  # toy ids are safe path components already
    local = Path(client.download_artifacts(run.info.run_id, "memory", str(tmp_path / "art")))
    (logged,) = [p for p in local.iterdir() if f"_p{pid}_s0_00" in p.name]
    got = np.asarray(Image.open(logged).convert("RGB"))
    severe = RenderConfig(**{**clean.renderer.__dict__, "degrade": DegradeConfig(level="severe")})
    assert np.array_equal(got, np.asarray(render_text(first, severe)[0]))
    assert not np.array_equal(got, np.asarray(render_text(first, clean.renderer)[0]))
