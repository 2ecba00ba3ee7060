"""The `data` config group (where traces come from, how SFT samples are laid out) and the
`build_data` app schema that combines it with segmentation, renderer and tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field

from vtc_lab.data.messages import IMAGE_POSITIONS, REFERENCE_SYSTEM_PROMPT
from vtc_lab.data.sources import available_sources
from vtc_lab.task.toytask import ToyTaskSpec
from vtc_lab.models.config import ModelConfig
from vtc_lab.render.config import RenderConfig
from vtc_lab.segment.config import SegmentationConfig
from vtc_lab.tracking.config import TrackingConfig

SOURCES = ("openr1", "jsonl", "math500_fixture", "toy")
GENERATION_MODES = ("first", "all")
TOKEN_COUNTERS = ("model", "qwen")


@dataclass
class DataConfig:
    """One preset of the `data` group (conf/data/*.yaml)."""

    name: str = "math500_fixture"
    """Dataset name: the default output directory is `<output_root>/datasets/<name>-<config hash>`."""

    source: str = "math500_fixture"
    """Trace source: `openr1` (OpenR1-Math-220K schema, parquet or jsonl), `jsonl` (one trace
    per line with configurable field names), `math500_fixture` (the packaged MATH500 solutions
    wrapped as OpenR1-style `<think>...</think>` generations; no download) or `toy` (the
    synthetic long-reasoning task of `vtc_lab.task.toytask`, knobs in `toy`), or any name
    registered with `vtc_lab.data.sources.register_source`."""

    path: str | None = None
    """Input for `openr1`/`jsonl`: one file, a directory of shards, or a glob (`*.parquet`,
    `*.jsonl`, `*.jsonl.gz`)."""

    question_field: str = "problem"
    """Field holding the question (`jsonl`; `openr1` always uses `problem`)."""

    trace_field: str = "trace"
    """`jsonl`: field holding the reasoning trace (with or without `<think>...</think>`)."""

    answer_field: str = "answer"
    """Field holding the final answer (FINAL in `<answer>FINAL</answer>`)."""

    id_field: str | None = "uuid"
    """Field holding a problem id; rows without it get `<file stem>-<line>` ids. Ids are kept
    as the data gives them (only control characters are percent-encoded and ids over 200
    characters shortened with a hash: `vtc_lab.data.sources.safe_id`) and are never used as
    paths: dataset and export file names are shard numbers and content hashes."""

    only_correct: bool = True
    """`openr1`: keep only generations whose `correctness_math_verify` flag is true (rows
    without that column count as unverified and are skipped when this is on)."""

    generations: str = "first"
    """`openr1`: `first` correct generation per problem, or `all` correct ones (each its own
    problem id `<id>-g<j>`)."""

    require_think_end: bool = True
    """Skip (and count) traces that contain `<think>` but no `</think>` (truncated generations)."""

    max_trace_chars: int = 400_000
    """Traces longer than this are skipped and counted (gigantic or runaway generations)."""

    limit: int | None = None
    """Use at most this many problems (after filtering); None = all."""

    system_prompt: str | None = REFERENCE_SYSTEM_PROMPT
    """System turn of every sample; null = no system turn."""

    image_position: str = "before"
    """Memory images `before` (the paper) or `after` the question text."""

    include_layouts: bool = False
    """Store per-image character boxes (JSON) in the `layouts` column, for the auxiliary
    per-vision-token character loss. Costs a layout pass per render."""

    toy: ToyTaskSpec = field(default_factory=ToyTaskSpec)
    """Knobs of the synthetic task (`source: toy` only): state size, steps, round length, rule,
    number of training problems. The run's evaluator grades the held-out set of the same knobs."""

    problems_per_shard: int = 64
    """Traces per dataset shard: the unit of the builder's resumption and of its peak memory
    (part of the dataset's config hash: the shards differ)."""

    token_counter: str = "model"
    """Text tokens counted with the `model`'s own tokenizer, or `qwen` (the offline Qwen BPE of
    Qwen2/2.5/3(-VL); extra `qwen`) to quote the paper's numbers with a tiny model (part of
    the config hash: rounds are cut by this count)."""

    render_cache: bool = True
    """Reuse rendered pages across builds, keyed by (segment text hash, render config hash).
    Not part of the config hash: the pages are the same either way."""

    render_cache_dir: str | None = None
    """Where the render cache lives; null = `<output_root>/cache/render`."""

    def __post_init__(self) -> None:
        if isinstance(self.toy, dict):
            self.toy = ToyTaskSpec(**self.toy)
        if self.source not in SOURCES:
            if self.source not in available_sources():
                raise ValueError(f"data.source must be one of {sorted(set(SOURCES) | set(available_sources()))}, "
                                 f"got {self.source!r}")
        if self.source in ("openr1", "jsonl") and not self.path:
            raise ValueError(f"data.path is required for data.source={self.source!r}")
        if not self.name or "/" in self.name or "\\" in self.name or self.name in (".", ".."):
            raise ValueError(f"data.name must be a plain directory name, got {self.name!r}")
        if self.generations not in GENERATION_MODES:
            raise ValueError(
                f"data.generations must be one of {GENERATION_MODES}, got {self.generations!r}"
            )
        if self.image_position not in IMAGE_POSITIONS:
            raise ValueError(
                f"data.image_position must be one of {IMAGE_POSITIONS}, got {self.image_position!r}"
            )
        if not isinstance(self.max_trace_chars, int) or self.max_trace_chars < 1:
            raise ValueError(f"data.max_trace_chars must be an int >= 1, got {self.max_trace_chars!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ValueError(f"data.limit must be None or an int >= 1, got {self.limit!r}")
        for name in ("question_field", "trace_field", "answer_field"):
            if not getattr(self, name):
                raise ValueError(f"data.{name} must be a non-empty field name")
        if not isinstance(self.problems_per_shard, int) or self.problems_per_shard < 1:
            raise ValueError(f"data.problems_per_shard must be an int >= 1, got {self.problems_per_shard!r}")
        if self.token_counter not in TOKEN_COUNTERS:
            raise ValueError(f"data.token_counter must be one of {TOKEN_COUNTERS}, got {self.token_counter!r}")


EXPORTS = (None, "llamafactory")


@dataclass
class BuildDataConfig:
    """The `build_data` app: where traces come from, how they are cut and rendered, where to."""

    data: DataConfig = field(default_factory=DataConfig)
    """Trace source and sample layout (conf/data/)."""
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    """How each trace is cut into rounds (conf/segmentation/)."""
    renderer: RenderConfig = field(default_factory=RenderConfig)
    """How memory segments become pages (conf/renderer/)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Backbone whose tokenizer counts text tokens and whose processor rule counts vision tokens."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """MLflow run of this build (params, metrics, stats plot)."""
    output_root: str = "vtc-runs"
    """Root of all vtc-lab outputs."""
    output_dir: str | None = None
    """Dataset directory; null = `<output_root>/datasets/<data.name>-<config hash>` (stats-only:
    `<output_root>/stats/<data.name>-<config hash>`), one directory per config."""
    # A literal `{config_hash}` in output_dir becomes the config hash: see
    # vtc_lab.data.build.dataset_dir and docs/data.md.
    num_workers: int = 1
    """Worker processes (each renders whole shards); the result is identical for any value."""
    stats_only: bool = False
    """Only segment, render in memory and count: stats.json + stats.png, no images written."""
    export: str | None = None
    """`llamafactory`: also write the LLaMA-Factory sharegpt export under <dataset>/llamafactory."""
    overwrite: bool = False
    """Delete an existing dataset in output_dir (one with a manifest) and build from scratch."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self) -> None:
        if not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise ValueError(f"num_workers must be an int >= 1, got {self.num_workers!r}")
        if self.export not in EXPORTS:
            raise ValueError(f"export must be one of {EXPORTS}, got {self.export!r}")
        if self.stats_only and self.export:
            raise ValueError("export needs images: it cannot be combined with stats_only=true")
