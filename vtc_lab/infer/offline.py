"""Offline evaluation of a saved model (`vtc-lab eval`): the loops, resumable, graded, logged.

    evaluate(EvalConfig(...)) -> {"eval/<benchmark>/<loop key>/<metric>": value, ...}

Results: metrics `eval/<benchmark>/<loop key>/<metric>` (`vtc_lab.infer.evaluate.loop_key`), predictions tables and memory images in
MLflow; a resumable predictions jsonl per loop under `output_dir` (a restart with the same
config skips finished samples and reaches the same numbers; a different config is refused).
The loops themselves are `evaluate_benchmarks`, the code the in-training evaluator runs too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from vtc_lab import atomic
from vtc_lab.infer.config import EvalConfig
from vtc_lab.infer.engines import get_engine
from vtc_lab.models.reading import (RUN_INFO, ReadingSpec, model_run_dir, read_reading,
                                    run_export_model, run_identity, run_reading)
from vtc_lab.render.config import config_hash

log = logging.getLogger(__name__)


def settings_header(cfg: EvalConfig, problems: Any, served_model: str | None = None) -> dict[str, Any]:
    """What decides the numbers (identity of a predictions file; loop settings added per loop).

    Behind `engine=openai` the model is the served model's name; the server URLs are left out,
    so a resumed run may use other or more servers."""
    model = asdict(cfg.model) if served_model is None else {"engine": cfg.engine.name,
                                                             "served_model": served_model}
    if cfg.checkpoint:
        stat = Path(cfg.checkpoint).stat()
        model["checkpoint"] = {"path": str(Path(cfg.checkpoint).resolve()), "size": stat.st_size,
                               "mtime_ns": stat.st_mtime_ns}
    task = {} if cfg.task == "solve" else {"task": cfg.task, "transcribe": asdict(cfg.transcribe),
                                           "loop": asdict(cfg.loop)}
    return {
        **task,
        "model": model,
        "benchmark": {"name": problems.name, "version": problems.version,
                      "fingerprint": problems.fingerprint, "limit": cfg.benchmark.limit,
                      "seed": cfg.benchmark.seed,
                      "question_template": cfg.benchmark.question_template,
                      "ids": hashlib.sha256("\n".join(p.id for p in problems).encode()).hexdigest()[:16]},
        "renderer": config_hash(cfg.renderer),
        "system_prompt": cfg.system_prompt,
        "image_position": cfg.image_position,
    }


def apply_reading(cfg: EvalConfig, spec: ReadingSpec, where: str) -> EvalConfig:
    """`cfg` feeding the model what it was trained to read (`spec`, recorded at `where`).

    The record wins over the renderer / system_prompt / image_position presets. An explicit
    `model.image_max_pixels` (eval's default is null) that differs from the trained cap is
    refused rather than silently replaced: pages of another size are not what the model read."""
    cap = cfg.model.image_max_pixels
    if cap is not None and cap != spec.image_max_pixels:
        raise ValueError(f"model.image_max_pixels={cap} contradicts the pixel cap the model was "
                         f"trained with ({spec.image_max_pixels}, recorded in {where}); drop the "
                         "override, or evaluate the weights with settings of your own via "
                         "model=local model.path=<export dir> after deleting its reading.json")
    return replace(cfg, renderer=spec.renderer, system_prompt=spec.system_prompt,
                   image_position=spec.image_position,
                   model=replace(cfg.model, image_max_pixels=spec.image_max_pixels))


def apply_export_reading(cfg: EvalConfig) -> EvalConfig:
    """`cfg` with the reading record of the model directory it evaluates, when it has one
    (an export of `vtc-lab train`); unchanged for other models."""
    if get_engine(cfg.engine.name).servers or cfg.model.source != "pretrained" \
            or not cfg.model.path:
        return cfg
    spec = read_reading(cfg.model.path)
    return cfg if spec is None else apply_reading(cfg, spec, str(Path(cfg.model.path) / "reading.json"))


def apply_train_run(cfg: EvalConfig) -> EvalConfig:
    """`cfg` with the model of `cfg.train_run` (its export) and what that model was trained to
    read (`vtc_lab.models.reading.run_reading`: the export's reading.json, else run.json's);
    the run's `memory` (run.json) names the metric keys (`eval/<b>/memory/...`)."""
    model = run_export_model(cfg.train_run, cfg.model)
    spec, where = run_reading(cfg.train_run)
    info = json.loads((Path(cfg.train_run) / RUN_INFO).read_text())
    if info.get("memory") in ("optical", "text"):  # runs from before it was recorded: unknown
        cfg = replace(cfg, memory=info["memory"])
    return apply_reading(replace(cfg, model=model, train_run=None), spec, where)


def resolve_model(cfg: EvalConfig) -> EvalConfig:
    """`cfg` with the model of `train_run` (and what it was trained to read), or with the
    reading an export records, then `eval_degrade` as the renderer's degradation (evaluation
    only); unchanged otherwise. Applying it twice changes nothing."""
    cfg = apply_train_run(cfg) if cfg.train_run else apply_export_reading(cfg)
    if cfg.eval_degrade is not None and cfg.eval_degrade != cfg.renderer.degrade:
        cfg = replace(cfg, renderer=replace(cfg.renderer, degrade=cfg.eval_degrade))
    return cfg


def trained_model(cfg: EvalConfig) -> dict[str, Any]:
    """The identity of the trained model a resolved `cfg` evaluates (`run_identity` of the
    `vtc-lab train` run its checkpoint or export lies in: `train_run=` resolves to the export),
    logged on the eval run (`vtc_lab.tracking.replicates`); {} for other models and for models
    behind servers (what a server serves is not known here)."""
    if get_engine(cfg.engine.name).servers:
        return {}
    model_path = cfg.model.path if cfg.model.source == "pretrained" else None
    run_dir = model_run_dir(model_path, cfg.checkpoint)
    return run_identity(run_dir) if run_dir is not None else {}


def evaluate(cfg: EvalConfig) -> dict[str, float]:
    """Load the model and benchmark, run the loops (resuming), grade, log; returns the metrics.
    The predictions directory is locked for the whole evaluation (a second writer is refused,
    naming the first). The engine comes from the registry (`vtc_lab.infer.engines`);
    `engine=openai` imports no torch (a client-only install runs it)."""
    from vtc_lab.eval.benchmarks import load_benchmark

    cfg = resolve_model(cfg)
    identity = trained_model(cfg)  # before any work: an unreadable run record stops here
    problems = load_benchmark(cfg.benchmark)
    spec = get_engine(cfg.engine.name)
    # An engine behind servers connects (and checks them) first: an unreachable server or a
    # wrong model fails now, and the served model's name is part of the predictions' identity.
    engine = spec.build(cfg) if spec.servers else None
    served = engine.served_model if engine is not None else None
    header = settings_header(cfg, problems, served)
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode()).hexdigest()
    # model names are free text: only a slug of one becomes a directory name.
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", served or cfg.model.name).strip("._") or "model"
    out_dir = Path(cfg.output_dir or Path(cfg.output_root) / "eval" / slug
                   / f"{problems.name}-{digest[:10]}")
    from vtc_lab.outputlock import OutputLock

    # one writer per predictions directory: two evals appending to the same files would
    # duplicate records and leave files that no longer resume
    try:
        with OutputLock(out_dir, job="vtc-lab eval"):
            if engine is None:  # an in-process model loads only once the directory is ours
                engine = spec.build(cfg)
            return _run_and_log(cfg, engine, problems, header, out_dir, identity)
    finally:
        if engine is not None:
            engine.close()


def _run_and_log(cfg: EvalConfig, engine: Any, problems: Any, header: dict[str, Any],
                 out_dir: Path, identity: dict[str, Any]) -> dict[str, float]:
    from vtc_lab.infer.evaluate import evaluate_benchmarks
    from vtc_lab.tracking import start_run
    from vtc_lab.tracking.replicates import log_trained_model

    name = header["model"].get("served_model") or cfg.model.name
    run_name = cfg.run_name or f"eval-{name}-{problems.name}"
    with start_run(cfg.tracking, cfg, cfg.output_root, run_name=run_name) as run:
        from vtc_lab.eval.benchmarks import benchmark_input

        log_trained_model(run, identity)  # train.* params, vtc.seed / vtc.config_key tags

        run.log_dataset(**benchmark_input(problems), context="evaluation")
        if cfg.task == "transcribe":
            return _transcribe_and_log(cfg, engine, problems, out_dir, run)
        results = evaluate_benchmarks(
            engine, {problems.name: problems}, cfg.loop_configs, cfg.renderer,
            cfg.system_prompt, cfg.image_position, image_max_pixels=cfg.model.image_max_pixels,
            predictions_dir=out_dir, header=header,
            keep_images=cfg.log_images, progress=cfg.progress,
            grade_workers=cfg.grade_workers, grade_timeout_s=cfg.grade_timeout_s,
            model_memory=cfg.memory)
        metrics = dict(results.metrics)
        metrics[f"eval/{problems.name}/skipped_lines"] = float(len(problems.skipped))
        run.log_metrics(metrics)
        run.set_tags({"vtc_lab.predictions_dir": str(out_dir.resolve())})
        for key, recs in results.records.items():
            name = key.replace("/", "__")
            run.log_table(results.tables[key], f"predictions/{name}.json")
            atomic.write_text(out_dir / f"{name}.graded.jsonl",
                          "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in recs))
        for name, image in results.memory_images(cfg.log_images):
            run.log_image(image, f"memory/{name}")
        atomic.write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
        run.log_artifact(out_dir / "metrics.json")
    return metrics


def _transcribe_and_log(cfg: EvalConfig, engine: Any, problems: Any, out_dir: Path,
                        run: Any) -> dict[str, float]:
    """`task=transcribe`: metrics `eval/<benchmark>/transcribe/<metric>` and a table of the
    pages (`transcripts/<benchmark>.json`: not under `predictions/`, whose tables `vtc-lab
    report` reads as graded answers) in MLflow, the records as jsonl in `out_dir`."""
    from vtc_lab.infer.transcribe import run_transcription, transcription_metrics

    records = run_transcription(engine, problems, cfg.transcribe, cfg.loop, cfg.renderer,
                                cfg.system_prompt, cfg.image_position,
                                image_max_pixels=cfg.model.image_max_pixels)
    metrics = {f"eval/{problems.name}/transcribe/{k}": v
               for k, v in transcription_metrics(records).items()}
    run.log_metrics(metrics)
    rows = [r.to_dict() for r in records]
    run.log_table(rows, f"transcripts/{problems.name}.json")
    atomic.write_text(out_dir / f"{problems.name}__transcribe.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    atomic.write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
    run.log_artifact(out_dir / "metrics.json")
    return metrics


SUMMARY = ("accuracy", "accuracy_lenient", "mean_at_k", "read_rate", "rounds_mean", "generated_tokens_mean",
           "context_tokens_peak", "compression_ratio", "latency_mean_s", "samples_per_s",
           "render_share", "final_rate")


def summary_table(metrics: dict[str, float], benchmark: str, modes: list[str],
                  memory: str | None = None) -> str:
    """A fixed-width table of the headline metrics, one column per loop (headed by its
    metric-key name, `memory` for the model's own loop: see `loop_key`)."""
    from vtc_lab.infer.evaluate import loop_key, metric_key

    lines = [f"{'eval/' + benchmark:<24}" + "".join(f"{loop_key(m, memory):>12}" for m in modes)]
    for name in SUMMARY:
        vals = [metrics.get(metric_key(benchmark, m, name, memory)) for m in modes]
        lines.append(f"{name:<24}" + "".join(f"{v:>12.4g}" if v is not None else f"{'-':>12}"
                                             for v in vals))
    return "\n".join(lines)
