"""The `render` app (`vtc-lab render`): render texts and report their compression.

`RenderAppConfig` is the app's schema; `load_source` picks the texts, `run_render` renders,
prints the compression table, writes the report files and logs the run. Not imported by
`vtc_lab.render` itself, so the renderer stays free of the tracking package.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from dataclasses import field as dc_field  # `field` is also a config key below
from pathlib import Path
from typing import List, Optional

from vtc_lab import atomic
from vtc_lab.eval.benchmarks import BenchmarkConfig, benchmark_file
from vtc_lab.render.config import RenderConfig, config_hash
from vtc_lab.render.png import png_bytes
from vtc_lab.render.report import format_table, measure
from vtc_lab.render.sources import LoadedTexts, jsonl_texts, load_texts, read_texts
from vtc_lab.render.text_tokens import TextTokenizer
from vtc_lab.render.vision import get_spec
from vtc_lab.tracking.config import TrackingConfig

TOKENIZERS = ("qwen", "local")

#: The column holding a bundled benchmark's worked solution (what `field` defaults to for it);
#: benchmarks without one render their question.
SOLUTION_FIELDS = {"math500": "solution", "gsm8k": "answer"}


@dataclass
class RenderAppConfig:
    """The `render` app: which texts, which renderer, which backbones to count tokens for."""

    renderer: RenderConfig = dc_field(default_factory=RenderConfig)
    """Renderer settings (conf/renderer/)."""
    tracking: TrackingConfig = dc_field(default_factory=TrackingConfig)
    """MLflow run of this report."""
    output_root: str = "vtc-runs"
    """Root of all vtc-lab outputs."""
    output_dir: Optional[str] = None
    """Report directory; null = `<output_root>/render/<source>-<renderer config hash>`."""
    text: Optional[str] = None
    """Render this literal text (takes precedence over file and benchmark)."""
    file: Optional[str] = None
    """A text file (one text), or a .jsonl/.jsonl.gz/.parquet file read at column `field`."""
    field: Optional[str] = None
    """Column / key holding the text; null = `solution` in a file, and in a benchmark its worked
    solution where it ships one (math500 `solution`, gsm8k `answer`), else its question."""
    benchmark: BenchmarkConfig = dc_field(default_factory=BenchmarkConfig)
    """The texts when neither text nor file is set: the `benchmark` config group, the same
    presets as `vtc-lab eval` (`benchmark=gsm8k`; `benchmark=local_jsonl benchmark.path=...`).
    Use `limit` for a subset: `benchmark.limit` (eval's seeded sample) is refused here."""
    limit: Optional[int] = None
    """Only the first N texts."""
    tokenizer: str = "qwen"
    """Text tokenizer: `qwen` (the offline Qwen2/2.5/3(-VL) BPE; extra `qwen`) or `local` (the
    tokenizer of a local checkpoint directory, `tokenizer_path`, e.g. Glyph's)."""
    tokenizer_path: Optional[str] = None
    """Checkpoint (or tokenizer) directory for `tokenizer=local`; loaded offline by
    `vtc_lab.models.load_tokenizer` (remote code stays off)."""
    backbones: List[str] = dc_field(default_factory=lambda: ["qwen2_5_vl", "qwen3_vl", "glm4v"])
    """Backbones whose vision-token rule is reported (qwen2_vl, qwen2_5_vl, qwen3_vl, glm4v)."""
    min_pixels: Optional[int] = None
    """Override every backbone's min_pixels; null = each processor's own."""
    max_pixels: Optional[int] = None
    """Override every backbone's max_pixels (the reference fine-tuning used 262144)."""
    save_images: bool = False
    """Write the pages as PNG files (`pages/text-00000-p000.png`)."""
    stats_only: bool = False
    """Whole-data-set mode: counts only (no images, no per-text printout), with a progress bar."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if (self.tokenizer == "local") != bool(self.tokenizer_path):
            raise ValueError("tokenizer=local needs tokenizer_path=<local checkpoint dir> "
                             "(and tokenizer_path is only read with tokenizer=local)")
        if not self.backbones:
            raise ValueError("backbones must name at least one backbone")
        for b in self.backbones:
            get_spec(b)  # KeyError names the unknown backbone
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be None or >= 1, got {self.limit}")
        if self.benchmark.limit is not None:
            raise ValueError(f"benchmark.limit={self.benchmark.limit} picks eval's seeded sample; "
                             f"`vtc-lab render` takes the first N texts with limit=N instead")
        if self.stats_only and self.save_images:
            raise ValueError("save_images=true cannot be combined with stats_only=true")


def load_source(cfg: RenderAppConfig) -> LoadedTexts:
    """(source name, texts, invalid UTF-8 count): `text`, else `file`, else the benchmark's
    file at `field`."""
    if cfg.text is not None or cfg.file is not None:
        return load_texts(cfg.text, cfg.file, cfg.field or "solution", cfg.limit)
    counts: list[int] = []
    spec = cfg.benchmark.spec
    default = spec.question_field if spec.version == "local" else \
        SOLUTION_FIELDS.get(spec.name, spec.question_field)
    if spec.generate is not None:  # a generated benchmark (the toy task) has no file
        texts = jsonl_texts(spec.generate().split("\n"), cfg.field or default, spec.file, counts)
    else:
        texts = read_texts(benchmark_file(spec), cfg.field or default, counts)
    if cfg.limit is not None:
        texts, counts = texts[: cfg.limit], counts[: cfg.limit]
    return LoadedTexts(spec.name, texts, sum(counts))


def run_render(cfg: RenderAppConfig, tokenizer: TextTokenizer) -> dict:
    """Render the texts, print the compression table, write report.json + per_text.jsonl
    (+ PNGs) and log everything to MLflow. Returns the metrics.

    `tokenizer` counts the text side of the ratio (the one `cfg.tokenizer` names; the CLI
    loads a local checkpoint's through `vtc_lab.models`, a layer above this package).
    """
    from vtc_lab.tracking import start_run

    name, texts, invalid_utf8 = load_source(cfg)
    chash = config_hash(cfg.renderer)
    out = Path(cfg.output_dir or Path(cfg.output_root) / "render" / f"{name}-{chash}")
    out.mkdir(parents=True, exist_ok=True)
    pages_dir = out / "pages"
    if cfg.save_images and pages_dir.is_dir():  # pages of an earlier run must not mix with these
        for old in pages_dir.glob("text-*-p*.png"):
            old.unlink()
    first_page: list = []

    def keep(i: int, images: list) -> None:
        if not first_page and images:
            first_page.append(images[0])
        if cfg.save_images:
            pages_dir.mkdir(exist_ok=True)
            for p, im in enumerate(images):
                atomic.write_bytes(pages_dir / f"text-{i:05d}-p{p:03d}.png", png_bytes(im, cfg.renderer))

    with start_run(cfg.tracking, cfg, cfg.output_root, run_name=f"render-{name}") as run:
        rows, metrics = measure(texts, cfg.renderer, tokenizer, cfg.backbones,
                                cfg.min_pixels, cfg.max_pixels, progress=cfg.progress,
                                on_pages=None if cfg.stats_only else keep)
        metrics["render/invalid_utf8"] = invalid_utf8
        title = (f"vtc-lab render: {len(texts)} text(s) from {name}, renderer {chash} "
                 f"({cfg.renderer.font} {cfg.renderer.font_size:g} pt, {cfg.renderer.dpi} dpi), "
                 f"text tokens: {cfg.tokenizer_path or cfg.tokenizer}")
        table = format_table(metrics, cfg.backbones, title)
        if invalid_utf8:
            table += (f"\n  invalid UTF-8 in the input: {invalid_utf8} byte sequence(s) replaced by "
                      "U+FFFD (drawn as a visible box)")
        print(table)
        report = {"source": name, "renderer": asdict(cfg.renderer), "renderer_hash": chash,
                  "tokenizer": cfg.tokenizer_path or cfg.tokenizer, "min_pixels": cfg.min_pixels,
                  "max_pixels": cfg.max_pixels, "metrics": metrics}
        atomic.write_bytes(out / "report.json", json.dumps(report, indent=2).encode())
        atomic.write_bytes(out / "report.txt", (table + "\n").encode())
        atomic.write_bytes(out / "per_text.jsonl",
                      "".join(json.dumps(asdict(r)) + "\n" for r in rows).encode())
        run.log_metrics(metrics)
        run.set_tags({"render/source": name, "render/config_hash": chash})
        for fname in ("report.json", "report.txt", "per_text.jsonl"):
            run.log_artifact(out / fname, subdir="render")
        if first_page:
            run.log_image(first_page[0], "render/first_page.png")
    print(f"\nreport: {out}")
    return {**metrics, "output_dir": str(out)}
