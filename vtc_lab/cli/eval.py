"""`vtc-lab eval`: run the optical / text / none loops of a saved model on a benchmark.

    vtc-lab eval model=local model.path=/ckpt/VTC-R1-Glyph benchmark=aime25 loops=[optical,text]
    vtc-lab eval -m loop=optical,text,none benchmark.limit=50

Results: metrics `eval/<benchmark>/<loop>/<metric>`, predictions tables and memory images in
MLflow; a resumable predictions jsonl per loop under `output_dir` (a restart with the same
config skips finished samples and reaches the same numbers; a different config is refused).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from vtc_lab import atomic
from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.data.config import IMAGE_POSITIONS
from vtc_lab.data.messages import REFERENCE_SYSTEM_PROMPT
from vtc_lab.eval.benchmarks import BenchmarkConfig
from vtc_lab.infer.config import MODES, LoopConfig
from vtc_lab.infer.engine_config import EngineConfig
from vtc_lab.models.config import ModelConfig
from vtc_lab.render.config import RenderConfig
from vtc_lab.tracking.config import TrackingConfig


@dataclass
class EvalConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    """The backbone to evaluate (a tiny one, our export, or a local checkpoint directory)."""
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    """Which problems, how many, how many samples each."""
    loop: LoopConfig = field(default_factory=LoopConfig)
    """Loop mode and budgets (the reference protocol by default)."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """What generates: `hf` (the `model` in this process) or `openai` (OpenAI-compatible
    servers at `engine.base_urls`: vLLM, SGLang, `vtc-lab serve`; `model` is then not loaded)."""
    renderer: RenderConfig = field(default_factory=RenderConfig)
    """How the optical loop renders a round's text: must match the training data's renderer."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Where the MLflow run goes."""
    output_root: str = "vtc-runs"
    """Root of all outputs (MLflow store, predictions)."""
    loops: list[str] = field(default_factory=list)
    """Several loop modes with the same budgets in one run (e.g. [optical, text, none]); empty:
    just `loop.mode`."""
    train_run: str | None = None
    """A `vtc-lab train` run directory: evaluate its export, with the renderer, system prompt and
    image position of the dataset it was trained on (they override `model`, `renderer`,
    `system_prompt`, `image_position`), so pages and prompts match training."""
    checkpoint: str | None = None
    """A Lightning checkpoint (.ckpt) from `vtc-lab train` whose weights replace the model's;
    null: the model's own weights."""
    output_dir: str | None = None
    """Where the predictions files go; null: `<output_root>/eval/<model.name>/<benchmark>-<hash
    of the settings>`, so the same config resumes and a different one starts fresh."""
    system_prompt: str | None = REFERENCE_SYSTEM_PROMPT
    """System turn of every round; must match the training data (null: no system turn)."""
    image_position: str = "before"
    """Memory images before or after the question; must match the training data."""
    device: str = "auto"
    """Where the model runs: auto (cuda if available, else cpu) | cpu | cuda | cuda:N. One
    device: a model too large for one GPU needs a sharded engine (e.g. a vLLM engine)."""
    run_name: str | None = None
    """MLflow run name; null: `eval-<model.name>-<benchmark.name>`."""
    log_images: int = 4
    """Rendered memory pages to log as images (optical loop; first samples)."""
    grade_workers: int = 2
    """Worker processes for math-verify grading."""
    grade_timeout_s: float = 5.0
    """Per-item grading deadline; a pathological expression counts as a timeout."""
    progress: bool = True
    """Show tqdm progress bars."""

    def __post_init__(self) -> None:
        for mode in self.loops:
            if mode not in MODES:
                raise ValueError(f"loops entries must be in {MODES}, got {mode!r}")
        if len(set(self.loops)) != len(self.loops):
            raise ValueError(f"loops must not repeat a mode, got {self.loops}")
        if self.image_position not in IMAGE_POSITIONS:
            raise ValueError(f"image_position must be one of {IMAGE_POSITIONS}, "
                             f"got {self.image_position!r}")
        if self.log_images < 0:
            raise ValueError(f"log_images must be >= 0, got {self.log_images}")
        if self.grade_workers < 1:
            raise ValueError(f"grade_workers must be >= 1, got {self.grade_workers}")
        if self.grade_timeout_s <= 0:
            raise ValueError(f"grade_timeout_s must be > 0, got {self.grade_timeout_s}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise ValueError(f"checkpoint: file not found: {self.checkpoint}")
        if self.checkpoint is not None and self.engine.name != "hf":
            raise ValueError("checkpoint applies to engine=hf only; a server serves exported "
                             "weights (vtc-lab serve train_run=... / vllm serve <export dir>)")

    @property
    def loop_configs(self) -> list[LoopConfig]:
        return [replace(self.loop, mode=m) for m in (self.loops or [self.loop.mode])]


ConfigStore.instance().store(name="eval_schema", node=EvalConfig)


def settings_header(cfg: EvalConfig, problems: Any, served_model: str | None = None) -> dict[str, Any]:
    """What decides the numbers (identity of a predictions file; loop settings added per loop).

    Behind `engine=openai` the model is the served model's name; the server URLs are left out,
    so a resumed run may use other or more servers."""
    from vtc_lab.render.config import config_hash

    model = asdict(cfg.model) if served_model is None else {"engine": "openai",
                                                             "served_model": served_model}
    if cfg.checkpoint:
        stat = Path(cfg.checkpoint).stat()
        model["checkpoint"] = {"path": str(Path(cfg.checkpoint).resolve()), "size": stat.st_size,
                               "mtime_ns": stat.st_mtime_ns}
    return {
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


def load_checkpoint_weights(model: Any, path: str) -> None:
    """Load a Lightning checkpoint's `state_dict` into `model`, whatever attribute prefix the
    LightningModule gave it (`model.`, `backbone.model.`, ...). Tensors only (weights_only)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    own = model.state_dict()
    for prefix in sorted({k[: len(k) - len(o)] for k in state for o in own if k.endswith(o)},
                         key=len):
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if set(own) <= set(picked):
            model.load_state_dict({k: picked[k] for k in own}, strict=True)
            return
    raise ValueError(f"checkpoint {path}: its state_dict does not hold this model's weights "
                     f"(e.g. {next(iter(own))!r}); was it trained with another model config?")


def apply_train_run(cfg: EvalConfig) -> EvalConfig:
    """`cfg` with model / renderer / prompt settings taken from `cfg.train_run` (see the field)."""
    run = Path(cfg.train_run)
    info_path, export = run / "run.json", run / "export"
    if not info_path.is_file():
        raise ValueError(f"train_run: {info_path} not found (not a `vtc-lab train` run directory)")
    if not (export / "config.json").is_file():
        raise ValueError(f"train_run: {export} holds no exported model (train with export=true, "
                         "or evaluate checkpoints/last.ckpt with checkpoint=... and its model)")
    info = json.loads(info_path.read_text())
    dataset = Path(str(info.get("dataset", "")))
    if not dataset.is_absolute() and (run / dataset).is_dir():
        dataset = run / dataset  # recorded relative to the run directory
    manifest_path = dataset / "manifest.json"
    if not manifest_path.is_file():
        raise ValueError(f"train_run: the training dataset's manifest {manifest_path} is missing; "
                         "set renderer / system_prompt / image_position by hand and use "
                         f"model=local model.path={export}")
    built = json.loads(manifest_path.read_text()).get("config", {})
    data = built.get("data", {})
    try:
        renderer = RenderConfig(**built["renderer"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"train_run: {manifest_path}: unreadable renderer config ({err})") from None
    model = ModelConfig(name=run.name, source="pretrained", arch="auto", path=str(export),
                        dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation)
    return replace(cfg, model=model, renderer=renderer, train_run=None,
                   system_prompt=data.get("system_prompt", cfg.system_prompt),
                   image_position=data.get("image_position", cfg.image_position))


def evaluate(cfg: EvalConfig) -> dict[str, float]:
    """Load the model and benchmark, run the loops (resuming), grade, log; returns the metrics."""
    import torch

    from vtc_lab.eval.benchmarks import load_benchmark
    from vtc_lab.infer.engine import HFEngine
    from vtc_lab.models import load_backbone

    if cfg.train_run:
        cfg = apply_train_run(cfg)
    problems = load_benchmark(cfg.benchmark)
    served = None
    if cfg.engine.name == "openai":
        from vtc_lab.infer.openai_engine import OpenAIEngine

        engine = OpenAIEngine(cfg.engine)
        engine.check([c.mode for c in cfg.loop_configs])  # unreachable / wrong model: fail now
        served = engine.model
    header = settings_header(cfg, problems, served)
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode()).hexdigest()
    # model names are free text: only a slug of one becomes a directory name.
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", served or cfg.model.name).strip("._") or "model"
    out_dir = Path(cfg.output_dir or Path(cfg.output_root) / "eval" / slug
                   / f"{problems.name}-{digest[:10]}")
    if served is None:
        backbone = load_backbone(cfg.model)
        if cfg.checkpoint:
            load_checkpoint_weights(backbone.model, cfg.checkpoint)
        device = cfg.device if cfg.device != "auto" else (
            "cuda" if torch.cuda.is_available() else "cpu")
        backbone.model.to(device).eval()
        engine = HFEngine(backbone)
    torch.manual_seed(cfg.loop.seed)
    try:
        return _run_and_log(cfg, engine, problems, header, out_dir)
    finally:
        if served is not None:
            engine.close()


def _run_and_log(cfg: EvalConfig, engine: Any, problems: Any, header: dict[str, Any],
                 out_dir: Path) -> dict[str, float]:
    from vtc_lab.infer.evaluate import evaluate_benchmarks
    from vtc_lab.tracking import start_run

    name = header["model"].get("served_model") or cfg.model.name
    run_name = cfg.run_name or f"eval-{name}-{problems.name}"
    with start_run(cfg.tracking, cfg, cfg.output_root, run_name=run_name) as run:
        from vtc_lab.eval.benchmarks import benchmark_input

        run.log_dataset(**benchmark_input(problems), context="evaluation")
        results = evaluate_benchmarks(
            engine, {problems.name: problems}, cfg.loop_configs, cfg.renderer,
            cfg.system_prompt, cfg.image_position, predictions_dir=out_dir, header=header,
            keep_images=cfg.log_images, progress=cfg.progress,
            grade_workers=cfg.grade_workers, grade_timeout_s=cfg.grade_timeout_s)
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


SUMMARY = ("accuracy", "accuracy_strict", "mean_at_k", "rounds_mean", "generated_tokens_mean",
           "context_tokens_peak", "compression_ratio", "latency_mean_s", "samples_per_s",
           "render_share", "final_rate")


def summary_table(metrics: dict[str, float], benchmark: str, modes: list[str]) -> str:
    """A fixed-width table of the headline metrics, one column per loop."""
    lines = [f"{'eval/' + benchmark:<24}" + "".join(f"{m:>12}" for m in modes)]
    for name in SUMMARY:
        vals = [metrics.get(f"eval/{benchmark}/{m}/{name}") for m in modes]
        lines.append(f"{name:<24}" + "".join(f"{v:>12.4g}" if v is not None else f"{'-':>12}"
                                             for v in vals))
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(raw: DictConfig) -> float | None:
    cfg: EvalConfig = OmegaConf.to_object(raw)
    metrics = evaluate(cfg)
    modes = [c.mode for c in cfg.loop_configs]
    print(summary_table(metrics, cfg.benchmark.name, modes), flush=True)
    return metrics.get(f"eval/{cfg.benchmark.name}/{modes[0]}/accuracy")


if __name__ == "__main__":
    main()
