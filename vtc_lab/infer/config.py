"""`LoopConfig`: the schema of the `loop` config group (conf/loop/*.yaml are presets of it), and
`EvalConfig`, the `eval` app's schema (a model, a benchmark, loops, where results go).

Kept free of torch and transformers so configs compose and validate without loading a model.
Defaults are the VTC-R1 reference protocol: at most 8 rounds of at most 8,192 new tokens,
temperature 0.6, top_p 0.95.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from vtc_lab.data.messages import IMAGE_POSITIONS, REFERENCE_SYSTEM_PROMPT
from vtc_lab.eval.benchmarks import BenchmarkConfig
from vtc_lab.infer.engine_config import EngineConfig
from vtc_lab.infer.engines import get_engine
from vtc_lab.models.config import ModelConfig
from vtc_lab.render.config import RenderConfig
from vtc_lab.render.degrade import DegradeConfig
from vtc_lab.tracking.config import TrackingConfig

MODES = ("optical", "text", "none")
CONTEXT_POLICIES = ("stop", "drop_oldest")


@dataclass
class LoopConfig:
    mode: str = "optical"
    """Which loop: `optical` (earlier rounds rendered to images and fed back), `text` (the
    long-context baseline: the model continues its own assistant turn, earlier rounds kept as
    exact tokens, i.e. one long generation cut into rounds), `none` (every round sees only the question:
    the no-memory ablation)."""

    max_rounds: int = 8
    """Most rounds per problem (sample). A problem stops earlier once a round is final
    (`</think>` followed by a non-empty `<answer>...</answer>`)."""

    max_new_tokens: int = 8192
    """Most generated tokens per round. The same budget applies to all three modes."""

    temperature: float = 0.6
    """Sampling temperature (ignored when `do_sample` is false)."""

    top_p: float = 0.95
    """Nucleus sampling mass (ignored when `do_sample` is false)."""

    top_k: int = 0
    """Top-k sampling cut-off; 0 disables it (the reference protocol uses top_p only)."""

    do_sample: bool = True
    """Sample (true) or decode greedily (false). Greedy with `samples_per_problem > 1` gives
    identical samples, so that combination is refused."""

    batch_size: int = 8
    """Problems (samples) generated together; the active set shrinks as problems finish."""

    seed: int = 0
    """Seed of every round's sampling; round r of sample s of problem p uses a seed derived
    from (seed, p, s, r), so results do not depend on batch composition or resumption."""

    samples_per_problem: int | None = None
    """Samples per problem for mean@k. null: the benchmark's reference protocol (16 for AIME25
    and AMC23, 1 otherwise) when the benchmark declares one, else 1."""

    max_context_tokens: int = 0
    """Most prompt tokens (text + vision) a round may see; 0 = no limit. What happens when a
    round's prompt would exceed it is `context_policy`. With an engine that counts prompts
    exactly (`engine=hf`) the cap is checked on the very prompt before it is sent, the same way
    for every memory; otherwise (a server) only `context_policy=stop` applies, with the bound
    of `vtc_lab.infer.loop.stop_reason`."""

    context_policy: str = "stop"
    """What a round whose prompt would exceed `max_context_tokens` does. `stop`: the sample ends
    as `context_overflow` (the round is not generated). `drop_oldest`: the oldest memory is
    dropped until the prompt fits, in the memory's own unit (text memory: token ids from the
    left of the kept turn; optical memory: whole pages, oldest first, then any kept text), and
    the round goes on; the drop is recorded per round (`dropped_tokens`, `dropped_images`).
    A prompt that does not fit even without memory ends the sample as `context_overflow`.
    Needs an engine that counts prompts (`engine=hf`)."""

    min_render_tokens: int = 0
    """Optical loop: a round whose text (with any text kept from earlier short rounds) has
    fewer tokens than this stays as text memory (the model continues it in its assistant turn,
    as the text loop does) instead of being rendered; once the kept text reaches this many
    tokens it is rendered as a whole and the kept text cleared. Each round records which
    (`memory_kind`: pages | text). 0: every round is rendered (the paper's loop). `engine=hf`
    only (a server takes no token-id prompt next to images). Below the
    crossover measured by experiments/perf/render_crossover.py, rendering costs more time than
    the text tokens it saves."""

    repetition_penalty: float = 1.0
    """transformers' repetition penalty; 1.0 = off (the reference protocol)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"loop.mode must be one of {MODES}, got {self.mode!r}")
        for name in ("max_rounds", "max_new_tokens", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"loop.{name} must be an integer >= 1, got {value!r}")
        if self.temperature <= 0 and self.do_sample:
            raise ValueError(
                f"loop.temperature must be > 0 when loop.do_sample is true, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"loop.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"loop.top_k must be >= 0, got {self.top_k}")
        if self.samples_per_problem is not None and self.samples_per_problem < 1:
            raise ValueError(
                f"loop.samples_per_problem must be >= 1 or null, got {self.samples_per_problem}")
        if (not self.do_sample and self.samples_per_problem is not None
                and self.samples_per_problem > 1):
            raise ValueError("loop.samples_per_problem > 1 needs loop.do_sample=true "
                             "(greedy decoding would repeat the same sample)")
        if self.max_context_tokens < 0:
            raise ValueError(
                f"loop.max_context_tokens must be >= 0, got {self.max_context_tokens}")
        if self.context_policy not in CONTEXT_POLICIES:
            raise ValueError(f"loop.context_policy must be one of {CONTEXT_POLICIES}, "
                             f"got {self.context_policy!r}")
        if not isinstance(self.min_render_tokens, int) or self.min_render_tokens < 0:
            raise ValueError(
                f"loop.min_render_tokens must be an integer >= 0, got {self.min_render_tokens!r}")
        if self.repetition_penalty <= 0:
            raise ValueError(
                f"loop.repetition_penalty must be > 0, got {self.repetition_penalty}")


TASKS = ("solve", "transcribe")
TRANSCRIBE_PROMPT = "Transcribe the text in the image exactly, line by line."


@dataclass
class TranscribeConfig:
    """The transcription evaluation (`task=transcribe`): how well a model reads a rendered page,
    measured directly as the character error rate of its transcript (issue 23 §3)."""

    prompt: str = TRANSCRIBE_PROMPT
    """The question shown with each page (the page goes where `image_position` says)."""
    source: str = "auto"
    """What text of each problem is rendered: `auto` (the reference solution: the problem's
    `solution`, else `reference`, else `reasoning` field, else its question), `question`, or the
    name of a field of the benchmark file."""
    max_chars: int = 2000
    """Characters of each problem's text that are rendered (from the start); 0 = all."""
    max_pages: int = 1
    """Pages per problem transcribed (the first ones); 0 = all."""

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise ValueError("transcribe.prompt must not be empty")
        if not self.source.strip():
            raise ValueError("transcribe.source must be auto, question or a field name")
        for name in ("max_chars", "max_pages"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"transcribe.{name} must be an integer >= 0, got {value!r}")


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
    task: str = "solve"
    """`solve`: run the loops on the benchmark's problems and grade the answers. `transcribe`:
    render each problem's text (`transcribe.source`) with `renderer`, ask the model to
    transcribe each page and score the character error rate against the rendered text
    (`eval/<benchmark>/transcribe/cer`; the loops are not run). Any backbone and engine."""
    transcribe: TranscribeConfig = field(default_factory=TranscribeConfig)
    """Settings of `task=transcribe`."""
    loops: list[str] = field(default_factory=list)
    """Several loop modes with the same budgets in one run (e.g. [optical, text, none]); empty:
    just `loop.mode`."""
    train_run: str | None = None
    """A `vtc-lab train` run directory: evaluate its export with what it was trained to read
    (its recorded renderer, system prompt, image position and page pixel cap replace `model`,
    `renderer`, `system_prompt`, `image_position` and `model.image_max_pixels`), so pages and
    prompts match training. An explicit `model.image_max_pixels` that differs is refused. Evaluating
    an export directly (`model=local model.path=<run>/export`) applies its reading.json the same way."""
    eval_degrade: DegradeConfig | None = None
    """Page degradations for this evaluation only: replaces `renderer.degrade` after
    `train_run=` / an export's reading record set the renderer, so a model trained on clean
    pages reads degraded ones (`eval_degrade=moderate`, a preset of conf/eval_degrade/) and
    one trained with augmentation reads clean ones (`eval_degrade=none`). null: the
    renderer's own (the trained) setting."""
    memory: str | None = None
    """What the model was trained to read its earlier rounds from (optical | text; null:
    unknown). The loop of that name logs under `eval/<benchmark>/memory/<metric>`, the key the
    training evaluator uses, so a training run's and an eval run's curves share one chart
    (`vtc_lab.infer.evaluate.loop_key`). `train_run=` sets it from the run."""
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
    """Per-item grading deadline in CPU seconds of the grader process (so machine load does not
    change verdicts; wall-clock backstop: 10x without progress); a pathological expression counts as a timeout."""
    progress: bool = True
    """Show tqdm progress bars."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for mode in self.loops:
            if mode not in MODES:
                raise ValueError(f"loops entries must be in {MODES}, got {mode!r}")
        if len(set(self.loops)) != len(self.loops):
            raise ValueError(f"loops must not repeat a mode, got {self.loops}")
        if self.memory is not None and self.memory not in ("optical", "text"):
            raise ValueError(f"memory must be optical, text or null, got {self.memory!r}")
        if self.image_position not in IMAGE_POSITIONS:
            raise ValueError(f"image_position must be one of {IMAGE_POSITIONS}, "
                             f"got {self.image_position!r}")
        samples = self.loop.samples_per_problem or self.benchmark.num_samples
        if samples > 1 and not self.loop.do_sample:  # checked here, before any run or directory
            raise ValueError(
                f"{self.benchmark.name}: {samples} samples per problem with loop.do_sample=false "
                f"would be {samples} identical greedy samples; set loop.do_sample=true, or "
                "benchmark.samples_per_problem=1 (loop.samples_per_problem=1)")
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
        if (get_engine(self.engine.name).servers and self.loop.min_render_tokens
                and "optical" in (self.loops or [self.loop.mode])):
            raise ValueError(
                "loop.min_render_tokens applies to engine=hf only: text kept from short rounds is "
                "continued as token ids next to the pages, which an OpenAI-compatible server "
                f"(engine={self.engine.name}) cannot take (token-id prompts carry no images); "
                "set loop.min_render_tokens=0")
        if self.checkpoint is not None and get_engine(self.engine.name).servers:
            raise ValueError(f"checkpoint does not apply to engine={self.engine.name}: a server "
                             "serves exported weights (vtc-lab serve train_run=... / "
                             "vllm serve <export dir>)")

    @property
    def engine_modes(self) -> list[str]:
        """What the engine must be able to serve, checked before any work: the loops' modes,
        or `optical` (pages to read) for task=transcribe."""
        return ["optical"] if self.task == "transcribe" else [c.mode for c in self.loop_configs]

    @property
    def loop_configs(self) -> list[LoopConfig]:
        return [replace(self.loop, mode=m) for m in (self.loops or [self.loop.mode])]
