"""`vtc-lab eval` end to end on the tiny model: real config, MLflow, resume, refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
import vtc_lab.cli.eval  # noqa: F401 - registers eval_schema
from vtc_lab.infer.config import EvalConfig
from vtc_lab.infer.offline import evaluate

# Depend on the timing or on what this invocation did, not on the predictions.
RUN_DEPENDENT = ("wall_s", "samples_per_s", "problems_per_s", "latency_", "peak_rss", "peak_cuda",
                 "kv_cache_peak_bytes_batch", "render_s_total", "render_share", "resumed_samples")


def make_cfg(tmp_path: Path, *overrides: str) -> EvalConfig:
    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        raw = compose("eval", overrides=[
            f"output_root={tmp_path / 'out'}", "benchmark.limit=3", "loop.max_rounds=2",
            "loop.max_new_tokens=8", "loop.batch_size=2", "grade_workers=1", "progress=false",
            "log_images=2", *overrides])
    return OmegaConf.to_object(raw)


def stable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not any(s in k for s in RUN_DEPENDENT)}


def test_eval_logs_to_mlflow_and_resumes_to_the_same_numbers(tmp_path):
    cfg = make_cfg(tmp_path, "loops=[optical,text]")
    first = evaluate(cfg)
    for mode in ("optical", "text"):
        for name in ("accuracy", "mean_at_k", "rounds_mean", "context_tokens_peak",
                     "latency_p90_s", "samples_per_s", "problems_per_s", "kv_cache_peak_bytes_per_sample",
                     "rounds_hist/2", "status/max_rounds", "peak_rss_bytes"):
            assert f"eval/math500/{mode}/{name}" in first, name
        assert first[f"eval/math500/{mode}/num_samples"] == 3
    assert first["eval/math500/optical/compression_ratio"] > 0
    assert first["eval/math500/text/context_vision_tokens_mean"] == 0

    (out_dir,) = (tmp_path / "out" / "eval" / "tiny_qwen3_vl").iterdir()
    pred = out_dir / "math500__optical.jsonl"
    lines = pred.read_text().splitlines()
    assert json.loads(lines[0])["header"]["loop"]["max_new_tokens"] == 8
    assert len(lines) == 1 + 3
    graded = [json.loads(x) for x in (out_dir / "math500__optical.graded.jsonl").read_text().splitlines()]
    assert all(g["correct"] is not None for g in graded)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("vtc-lab").experiment_id])
    assert run.data.metrics["eval/math500/optical/num_samples"] == 3
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"predictions", "memory", "metrics.json"} <= artifacts

    # Interrupt: keep the header and one finished sample, plus a torn half-written line.
    pred.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    second = evaluate(cfg)
    assert second["eval/math500/optical/resumed_samples"] == 1
    assert second["eval/math500/text/resumed_samples"] == 3
    assert stable(second) == stable(first)
    assert "eval/math500/optical/kv_cache_peak_bytes_per_sample" in stable(first)
    regraded = [json.loads(x) for x in (out_dir / "math500__optical.graded.jsonl").read_text().splitlines()]
    assert [g["output"] for g in regraded] == [g["output"] for g in graded]
    assert len(pred.read_text().splitlines()) == 1 + 3


def test_a_different_config_is_refused_in_the_same_file(tmp_path):
    out = tmp_path / "preds"
    evaluate(make_cfg(tmp_path, "loop=none", f"output_dir={out}", "benchmark.limit=1"))
    before = (out / "math500__none.jsonl").read_text()
    with pytest.raises(ValueError, match="max_new_tokens: 8 -> 9"):
        evaluate(make_cfg(tmp_path, "loop=none", f"output_dir={out}", "benchmark.limit=1",
                          "loop.max_new_tokens=9"))
    assert (out / "math500__none.jsonl").read_text() == before


def test_bad_config_names_the_field(tmp_path):
    with pytest.raises(Exception, match="loops entries"):
        make_cfg(tmp_path, "loops=[optical,vision]")


def test_train_run_supplies_model_renderer_and_prompt(tmp_path):
    """A train run dir (export + run.json's reading record) drives the eval settings; a run
    without a reading record (an older vtc-lab) is refused, naming the way out."""
    from vtc_lab.infer.offline import apply_train_run
    from vtc_lab.models import ModelConfig, load_backbone, save_backbone

    run = tmp_path / "run-7"
    save_backbone(load_backbone(ModelConfig()), run / "export")
    renderer = {**OmegaConf.to_container(OmegaConf.structured(make_cfg(tmp_path).renderer)),
                "font_size": 8.0}
    (run / "run.json").write_text(json.dumps({"dataset": str(tmp_path / "ds")}))
    with pytest.raises(ValueError, match=r"records no reading .* model=local model.path="):
        apply_train_run(make_cfg(tmp_path, f"train_run={run}"))
    (run / "run.json").write_text(json.dumps({"dataset": str(tmp_path / "ds"), "reading": {
        "renderer": renderer, "system_prompt": "trained prompt", "image_position": "after",
        "image_max_pixels": None}}))
    cfg = apply_train_run(make_cfg(tmp_path, f"train_run={run}"))
    assert (cfg.model.source, cfg.model.path, cfg.model.name) == ("pretrained", str(run / "export"), "run-7")
    assert cfg.renderer.font_size == 8.0
    assert (cfg.system_prompt, cfg.image_position) == ("trained prompt", "after")
    metrics = evaluate(make_cfg(tmp_path, f"train_run={run}", "loop=none", "benchmark.limit=1",
                                "tracking=off"))
    assert metrics["eval/math500/none/num_samples"] == 1
    with pytest.raises(ValueError, match="run.json"):
        apply_train_run(make_cfg(tmp_path, f"train_run={tmp_path}"))
