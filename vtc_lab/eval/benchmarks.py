"""Benchmarks: a versioned registry over the packaged files, plus any local jsonl.

Each benchmark is a `BenchmarkSpec` (file, field names, grader kind, version). A `BenchmarkConfig`
(the `benchmark` config group) picks one, optionally points at a local jsonl instead, and takes
a seeded subset. `load_benchmark(cfg)` returns `Problem`s in file order.

Why a version per benchmark: predictions files and MLflow runs record `name@version` plus a hash
of the file's bytes, so numbers from different revisions of a benchmark are never mixed up.

Malformed lines: by default a malformed line is an error naming the file and the line number
(an evaluation on a silently shrunken benchmark reports a wrong accuracy). With
`on_malformed="skip"` such lines are skipped and counted (`ProblemList.skipped`), so a user can
evaluate a messy local file and still see how much of it was dropped.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict as dataclasses_asdict
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

from vtc_lab.textio import JsonLine, read_jsonl

#: Grader kinds: how an extracted answer is compared with the gold answer (see grade.py).
GRADERS = ("math", "gsm8k", "gpqa")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Problem:
    """One benchmark item, as the loops and the grader see it."""

    id: str
    """Stable id from the file (or the 0-based line index when the file has none). A label only:
    never used as a path."""
    question: str
    """The text shown to the model (after `question_template`)."""
    gold: str
    """Reference answer, normalised for its grader (GSM8K: the number after ####; AMC23 27.0 -> 27;
    GPQA: the letter)."""
    benchmark: str
    """Benchmark name (`math500`, ..., or the local benchmark's name); also picks the grader."""
    grader: str = "math"
    """One of GRADERS."""
    choices: tuple[str, ...] = ()
    """Multiple-choice options in letter order (GPQA), parsed from the question; empty otherwise."""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Extra fields (reference solution, subject, level, url, line number)."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """A registered benchmark: where its file is and how to read and grade it."""

    name: str
    version: str
    file: str
    """File name inside vtc_lab/eval/benchmarks_data (jsonl or jsonl.gz)."""
    question_field: str
    answer_field: str
    id_field: str | None
    grader: str
    size: int
    """Expected number of problems (checked at load: a truncated file is an error)."""
    samples_per_problem: int = 1
    """Reference protocol (VTC-R1): 16 samples for AIME25/AMC23 (mean accuracy), 1 otherwise."""
    description: str = ""
    generate: Callable[[], str] | None = field(default=None, compare=False)
    """A generated benchmark (the synthetic toy task): returns the jsonl text; `file` is then
    only a label."""


BENCHMARKS: dict[str, BenchmarkSpec] = {}


def register_benchmark(spec: BenchmarkSpec) -> BenchmarkSpec:
    """Add a packaged benchmark to the registry (a new version of a file needs a new version)."""
    if spec.grader not in GRADERS:
        raise ValueError(f"benchmark {spec.name!r}: grader must be one of {GRADERS}, got {spec.grader!r}")
    BENCHMARKS[spec.name] = spec
    return spec


register_benchmark(BenchmarkSpec(
    "math500", "1", "math500.jsonl", "problem", "answer", "unique_id", "math", 500,
    description="MATH500 (Lightman et al. 2023 subset of MATH test), LaTeX answers"))
register_benchmark(BenchmarkSpec(
    "aime25", "1", "aime25.jsonl", "problem", "answer", "id", "math", 30, samples_per_problem=16,
    description="AIME 2025 I+II, integer answers 0-999"))
register_benchmark(BenchmarkSpec(
    "amc23", "1", "amc23.jsonl", "question", "answer", "id", "math", 40, samples_per_problem=16,
    description="AMC 2023 (12A/12B), numeric answers stored as floats"))
register_benchmark(BenchmarkSpec(
    "gpqa_diamond", "1", "gpqa_diamond.jsonl.gz", "question", "answer", None, "gpqa", 198,
    description="GPQA-Diamond, 4 options A-D inside the question; kept gzipped (do not print)"))


def register_toy_benchmark(spec=None, name: str = "toy", count: int = 500) -> BenchmarkSpec:
    """Register the synthetic task's held-out problems (`vtc_lab.task.toytask`) as a benchmark.

    The default registration uses the default knobs; a run training on other knobs registers
    its own held-out set under the same name, so the evaluator grades the task it trained on.
    The version names the knobs, so predictions of different variants are never mixed up.
    """
    from vtc_lab.task import toytask

    spec = spec or toytask.ToyTaskSpec()
    knobs = hashlib.sha256(json.dumps(dataclasses_asdict(spec), sort_keys=True).encode()).hexdigest()[:8]
    return register_benchmark(BenchmarkSpec(
        name, f"1-{knobs}", f"<generated: toy task {knobs}>", "question", "answer", "id", "math",
        count, generate=lambda: toytask.benchmark_jsonl(spec, count),
        description=f"synthetic toy task, {count} held-out problems ({spec.digits} digits, "
                    f"{spec.rule} rule, up to {spec.steps} steps)"))


register_benchmark(BenchmarkSpec(
    "gsm8k", "1", "gsm8k.jsonl", "question", "answer", "idx", "gsm8k", 1319,
    description="GSM8K test; gold is the number after '####'"))
register_toy_benchmark()
TOY_LONG_STEPS = (5, 25)
"""Step range of the `toy_long` benchmark (issue 23 §5: accuracy against problem length under a
fixed context; conf/experiment/toy_long.yaml trains on the same range). 25 is the task's most
steps: the countdown letter is one character, A-Z."""


def _register_toy_long() -> None:
    from vtc_lab.task.toytask import ToyTaskSpec

    register_toy_benchmark(ToyTaskSpec(min_steps=TOY_LONG_STEPS[0], steps=TOY_LONG_STEPS[1]),
                           name="toy_long")


_register_toy_long()


@dataclass
class BenchmarkConfig:
    """The `benchmark` config group: which problems to evaluate, and how many samples each."""

    name: str = "math500"
    """A registered benchmark (math500, aime25, amc23, gpqa_diamond, gsm8k), or any label for a
    local file given by `path` (used in metric keys: eval/<name>/...)."""
    path: str | None = None
    """Local jsonl (or jsonl.gz) file; when set, the registry is not used."""
    question_field: str | None = None
    """Field holding the question (local files; default "question")."""
    answer_field: str | None = None
    """Field holding the gold answer (local files; default "answer")."""
    id_field: str | None = None
    """Field holding a stable id (local files; default: the 0-based line index)."""
    grader: str | None = None
    """Grader for a local file: math | gsm8k | gpqa (default math)."""
    limit: int | None = None
    """Evaluate at most this many problems (None: all)."""
    seed: int | None = 0
    """Seed for picking the `limit` subset at random (kept in file order); None: the first `limit`."""
    samples_per_problem: int | None = None
    """Samples per problem (mean@k); None: the benchmark's reference value (16 AIME25/AMC23, else 1)."""
    question_template: str = "{question}"
    """Format string for the text shown to the model; must contain {question}."""
    on_malformed: str = "error"
    """What a malformed line does: error (name file and line) | skip (skip and count)."""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name or ""):
            raise ValueError(f"benchmark.name must match {_NAME_RE.pattern} (it is used in metric keys), got {self.name!r}")
        if self.path is None and self.name not in BENCHMARKS:
            raise ValueError(
                f"benchmark.name {self.name!r} is not registered ({sorted(BENCHMARKS)}); "
                "set benchmark.path to evaluate a local jsonl")
        if self.path is not None and not str(self.path).strip():
            raise ValueError("benchmark.path must be a file path or null, got an empty string")
        if self.grader is not None and self.grader not in GRADERS:
            raise ValueError(f"benchmark.grader must be one of {GRADERS}, got {self.grader!r}")
        if self.path is None:
            for f in ("question_field", "answer_field", "id_field", "grader"):
                if getattr(self, f) is not None:
                    raise ValueError(f"benchmark.{f} only applies to a local file (benchmark.path), "
                                     f"but {self.name!r} is a registered benchmark")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"benchmark.limit must be > 0 or null, got {self.limit}")
        if self.samples_per_problem is not None and self.samples_per_problem <= 0:
            raise ValueError(f"benchmark.samples_per_problem must be > 0 or null, got {self.samples_per_problem}")
        if "{question}" not in self.question_template:
            raise ValueError("benchmark.question_template must contain '{question}'")
        try:
            self.question_template.format(question="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"benchmark.question_template is not a valid format string with only "
                             f"{{question}}: {e!r}") from None
        if self.on_malformed not in ("error", "skip"):
            raise ValueError(f"benchmark.on_malformed must be 'error' or 'skip', got {self.on_malformed!r}")

    @property
    def spec(self) -> BenchmarkSpec:
        """The registered spec, or an ad-hoc one for a local file."""
        if self.path is None:
            return BENCHMARKS[self.name]
        return BenchmarkSpec(
            name=self.name, version="local", file=str(self.path),
            question_field=self.question_field or "question", answer_field=self.answer_field or "answer",
            id_field=self.id_field, grader=self.grader or "math", size=-1)

    @property
    def num_samples(self) -> int:
        """Samples per problem after applying the reference default."""
        return self.samples_per_problem or self.spec.samples_per_problem


class ProblemList(list):
    """`list[Problem]` that also says where it came from (for run params and resumable files)."""

    name: str
    version: str
    fingerprint: str
    """sha256 (first 16 hex) of the file's bytes."""
    total: int
    """Problems in the file before `limit`."""
    skipped: list[tuple[int, str]]
    """(line number, reason) of malformed lines skipped with on_malformed=skip."""
    samples_per_problem: int
    source: str
    """The file read (absolute), or the generated benchmark's label (`<generated: ...>`)."""


def benchmark_input(problems: ProblemList) -> dict:
    """The problems an evaluation ran on as an MLflow dataset input (`RunHandle.log_dataset(
    **this, context="evaluation")`): name, the file's hash as digest, where it is, the counts."""
    return {"name": problems.name, "digest": problems.fingerprint, "source": problems.source,
            "profile": {"problems": len(problems), "total": problems.total,
                        "version": problems.version, "skipped": len(problems.skipped),
                        "samples_per_problem": problems.samples_per_problem}}


def packaged_file(name: str) -> Path:
    """Path of a file shipped in vtc_lab/eval/benchmarks_data (e.g. "math500.jsonl")."""
    return Path(str(files("vtc_lab.eval") / "benchmarks_data" / name))


def benchmark_file(spec: BenchmarkSpec) -> Path:
    """Path of a spec's file (packaged data for registered ones)."""
    if spec.version == "local":
        return Path(spec.file).expanduser()
    return packaged_file(spec.file)


def packaged_rows(name: str) -> list[dict]:
    """The raw rows of a packaged benchmark file, in file order, read by the one JSONL reader
    (`vtc_lab.textio.read_jsonl`, as `load_benchmark` reads it): for the fixtures built from
    benchmarks_data (the MATH500 traces, the tiny tokenizer's corpus)."""
    rows = []
    for line in read_jsonl(packaged_file(name)):
        if line.error is not None:
            raise ValueError(f"{line.where}: {line.error}")
        rows.append(line.row)
    return rows


def _gold_text(value: Any, grader: str) -> str:
    """Normalise the stored gold answer to the string the grader compares against."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"answer must be a string or a number, got {value!r}")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"answer must be a string or a number, got {type(value).__name__}")
    text = value.strip()
    if grader == "gsm8k" and "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    if grader == "gsm8k":
        text = text.replace(",", "")
    if grader == "gpqa":
        text = text.strip("() .").upper()
        if text not in ("A", "B", "C", "D"):
            raise ValueError(f"GPQA answer must be a letter A-D, got {value!r}")
    if not text:
        raise ValueError("answer is empty")
    return text


_CHOICE_RE = re.compile(r"(?m)^\(?([A-D])[.)]\s+(.*\S)\s*$")


def _choices(question: str) -> tuple[str, ...]:
    """The A-D options written one per line at the end of a GPQA question, or () if not found."""
    found = {}
    for m in _CHOICE_RE.finditer(question):
        found[m.group(1)] = m.group(2)
    return tuple(found[k] for k in "ABCD") if len(found) == 4 else ()


def _parse_line(line: JsonLine, spec: BenchmarkSpec, template: str) -> Problem:
    if line.error is not None:
        raise ValueError(line.error)
    if line.replaced:  # a benchmark is curated text: a replaced byte means a damaged file
        raise ValueError(f"not UTF-8 ({line.replaced} invalid sequence(s) on this line)")
    row, lineno = line.row, line.lineno
    for f in (spec.question_field, spec.answer_field):
        if f not in row:
            raise ValueError(f"missing field {f!r} (fields: {sorted(row)[:12]})")
    question = row[spec.question_field]
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"field {spec.question_field!r} must be a non-empty string")
    gold = _gold_text(row[spec.answer_field], spec.grader)
    if spec.id_field is None:
        pid = str(lineno - 1)
    else:
        if spec.id_field not in row:
            raise ValueError(f"missing id field {spec.id_field!r}")
        pid = str(row[spec.id_field])
    meta = {k: v for k, v in row.items() if k not in (spec.question_field, spec.id_field)}
    if spec.answer_field in meta:  # keep the full stored answer (GSM8K: the worked solution)
        meta["reference"] = meta.pop(spec.answer_field)
    meta["line"] = lineno
    return Problem(
        id=pid, question=template.format(question=question), gold=gold, benchmark=spec.name,
        grader=spec.grader, choices=_choices(question) if spec.grader == "gpqa" else (), meta=meta)


def load_benchmark(cfg: BenchmarkConfig) -> ProblemList:
    """Read a benchmark's problems (seeded `limit` subset, file order).

    Raises ValueError naming the file and line for a malformed line (unless on_malformed=skip),
    a duplicate id, or a registered file whose size differs from the registry.
    """
    spec = cfg.spec
    path = benchmark_file(spec)
    if spec.generate is not None:
        data = spec.generate().encode("utf-8")
        lines = read_jsonl(data.split(b"\n"), label=spec.file)
    elif not path.is_file():
        raise FileNotFoundError(f"benchmark {spec.name!r}: file not found: {path}")
    else:
        data = path.read_bytes()  # the fingerprint is of the file as stored
        lines = read_jsonl(path)
    problems: list[Problem] = []
    skipped: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for line in lines:
        lineno = line.lineno
        try:
            p = _parse_line(line, spec, cfg.question_template)
            if p.id in seen:
                raise ValueError(f"duplicate id {p.id!r} (first on line {seen[p.id]})")
        except (ValueError, TypeError) as e:
            reason = str(e).splitlines()[0][:200]
            if cfg.on_malformed == "skip":
                skipped.append((lineno, reason))
                continue
            raise ValueError(f"{line.where}: malformed benchmark line: {reason}") from None
        seen[p.id] = lineno
        problems.append(p)
    if spec.size >= 0 and len(problems) + len(skipped) != spec.size:
        raise ValueError(f"{path}: expected {spec.size} problems for {spec.name}@{spec.version}, "
                         f"found {len(problems) + len(skipped)}")
    if not problems:
        raise ValueError(f"{path}: no problems found")
    total = len(problems)
    if cfg.limit is not None and cfg.limit < total:
        if cfg.seed is None:
            problems = problems[: cfg.limit]
        else:
            keep = sorted(random.Random(cfg.seed).sample(range(total), cfg.limit))
            problems = [problems[i] for i in keep]
    out = ProblemList(problems)
    out.name, out.version = spec.name, spec.version
    out.source = spec.file if spec.generate is not None else str(path.resolve())
    out.fingerprint = hashlib.sha256(data).hexdigest()[:16]
    out.total, out.skipped, out.samples_per_problem = total, skipped, cfg.num_samples
    return out
