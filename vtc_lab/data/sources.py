"""Trace sources: OpenR1-Math-220K (parquet/jsonl), plain jsonl, the packaged MATH500 fixture,
the synthetic toy task.

Every source yields, in a deterministic order, either a `Trace` or a `Skip` (a counted reason
plus the file and line/row it came from). The builder never sees a half-valid row, and a bad
row never stops a build. Sources stream: parquet in record batches, jsonl line by line, so
memory does not grow with the size of the data. The record types are `vtc_lab.data.traces`,
reading and fingerprinting files `vtc_lab.data.files`; both re-exported here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtc_lab.data.files import INVALID_UTF8, file_fingerprint, iter_rows, resolve_files
from vtc_lab.data.special_tokens import neutralise
from vtc_lab.data.traces import Skip, Trace
from vtc_lab.task.completion import ANSWER_CLOSE, THINK_END, THINK_START, parse

if TYPE_CHECKING:  # the config validates names against this module's registry, not back
    from vtc_lab.data.config import DataConfig

__all__ = ["INVALID_UTF8", "Skip", "Trace", "available_sources", "extract_reasoning",
           "file_fingerprint", "harden", "input_fingerprint", "iter_rows", "iter_traces",
           "math500_fixture_rows", "register_source", "resolve_files", "safe_id"]

SourceFn = Callable[["DataConfig"], Iterator["Trace | Skip"]]
_REGISTRY: dict[str, SourceFn] = {}


def register_source(name: str, fn: SourceFn) -> None:
    """Plug in a trace source (the synthetic toy task registers itself here as `toy`)."""
    _REGISTRY[name] = fn


def available_sources() -> list[str]:
    return sorted(_REGISTRY)


def iter_traces(cfg: DataConfig) -> Iterator[Trace | Skip]:
    """All traces of the configured source, filtered and de-duplicated, in a stable order."""
    if cfg.source not in _REGISTRY:
        raise ValueError(
            f"data.source={cfg.source!r} is not available; available: {available_sources()}"
        )
    seen: set[str] = set()
    kept = 0
    for item in _REGISTRY[cfg.source](cfg):
        if isinstance(item, Trace):
            item = harden(item)
            if item.problem_id in seen:
                yield Skip("duplicate_id", item.origin, item.problem_id[:80])
                continue
            seen.add(item.problem_id)
            if cfg.limit is not None and kept >= cfg.limit:
                return
            kept += 1
        yield item


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ID_CHARS = 200


def safe_id(value: Any) -> str:
    """A problem id as the data gives it, minus what no id should hold: control characters
    (percent-encoded, `\n` -> `%0A`) and lengths over MAX_ID_CHARS (a prefix plus a hash of the
    whole). Path characters stay: ids are keys (MATH500's are `test/algebra/1.json`), matched
    against the source and across runs, and vtc-lab never uses an id as a path; file names are
    content hashes or shard numbers, and eval artifacts sanitise the id into one component."""
    text = _CONTROL.sub(lambda m: f"%{ord(m.group(0)):02X}", str(value))
    if len(text) > MAX_ID_CHARS:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        text = f"{text[:MAX_ID_CHARS - 17]}~{digest}"
    return text


def harden(trace: Trace) -> Trace:
    """`trace` with a safe id and its text's special tokens made inert (counted on the trace)."""
    question, q = neutralise(trace.question)
    reasoning, r = neutralise(trace.reasoning)
    answer, a = neutralise(trace.answer)
    pid = safe_id(trace.problem_id)
    if not (q or r or a) and pid == trace.problem_id:
        return trace
    return dataclasses.replace(trace, problem_id=pid, question=question, reasoning=reasoning,
                               answer=answer, special_tokens=trace.special_tokens + q + r + a)


# ---------------------------------------------------------------------------------- input


def _rows(cfg: DataConfig, columns: list[str]) -> Iterator[tuple[str, dict | Skip]]:
    assert cfg.path is not None
    if cfg.id_field:
        columns = [*columns, cfg.id_field]
    for path in resolve_files(cfg.path):
        yield from iter_rows(path, columns)


def input_fingerprint(cfg: DataConfig) -> dict | None:
    """What the traces were read from, as a content fingerprint the builder stores in the
    manifest and checks before reusing or resuming a dataset: the input files of `openr1` /
    `jsonl` sources, the packaged file of `math500_fixture`; None for registered sources
    without files (their config is their identity)."""
    if cfg.source in ("openr1", "jsonl") and cfg.path:
        files_ = [file_fingerprint(f) for f in resolve_files(cfg.path)]
    elif cfg.source == "math500_fixture":
        from vtc_lab.eval.benchmarks import packaged_file

        fixture = packaged_file("math500.jsonl")
        files_ = [{**file_fingerprint(fixture), "path": "vtc_lab.eval/math500.jsonl"}]
    else:
        return None
    # names, not full paths: the same files moved elsewhere are the same input
    blob = json.dumps([[Path(f["path"]).name, f["bytes"], f["sha256"]] for f in files_])
    return {"sha256": hashlib.sha256(blob.encode()).hexdigest(), "files": files_}


# ------------------------------------------------------------------------------- parsing


def extract_reasoning(text: str, require_think_end: bool) -> str | Skip:
    """The reasoning of a generation: what lies between its first `<think>` and its last
    `</think>` (the completion format's rule, `vtc_lab.task.completion.parse`), stripped.

    A text without any think tag is all reasoning (plain traces). A text that opens `<think>`
    but never closes it is a truncated generation: skipped when `require_think_end`. Reasoning
    that still holds a `</think>` (a generation with two) is refused later, in `_check_trace`.
    """
    parsed = parse(text)
    if parsed.tail is None and THINK_START in text and require_think_end:
        return Skip("no_think_end", "", f"generation opens {THINK_START} but has no {THINK_END}")
    body = parsed.reasoning
    open_at = body.find(THINK_START)
    if open_at >= 0:
        body = body[open_at + len(THINK_START):]
    return body.strip()


def _check_trace(problem_id: Any, question: Any, reasoning: str, answer: Any, origin: str,
                 cfg: DataConfig, invalid_utf8: int = 0) -> Trace | Skip:
    if not isinstance(question, str) or not question.strip():
        return Skip("missing_field", origin, "question")
    if answer is None or not str(answer).strip():
        return Skip("missing_field", origin, "answer")
    answer = str(answer).strip()
    if ANSWER_CLOSE in answer or THINK_END in answer:
        return Skip("bad_answer", origin, answer[:80])
    if not reasoning:
        return Skip("empty_trace", origin)
    if len(reasoning) > cfg.max_trace_chars:
        return Skip("too_long", origin, f"{len(reasoning)} chars > data.max_trace_chars={cfg.max_trace_chars}")
    if THINK_END in reasoning:
        return Skip("bad_trace", origin, f"reasoning contains {THINK_END}")
    return Trace(str(problem_id), question, reasoning, answer, origin, invalid_utf8=invalid_utf8)


def _row_id(record: dict, cfg: DataConfig, origin: str) -> str:
    value = record.get(cfg.id_field) if cfg.id_field else None
    if value is None or (isinstance(value, str) and not value.strip()):
        return origin.rsplit("/", 1)[-1].replace(":row ", "-").replace(":", "-")
    return str(value)


def openr1_row_traces(record: dict, origin: str, cfg: DataConfig) -> Iterator[Trace | Skip]:
    """Traces of one OpenR1-Math-220K row: its (correct) generations, first or all."""
    for name in ("problem", "answer", "generations"):
        if name not in record or record[name] is None:
            yield Skip("missing_field", origin, name)
            return
    gens = record["generations"]
    if isinstance(gens, str) or not isinstance(gens, Iterable):
        yield Skip("bad_generation", origin, "generations is not a list")
        return
    gens = list(gens)
    flags = record.get("correctness_math_verify")
    flags = list(flags) if flags is not None and not isinstance(flags, (str, bool)) else None
    base_id = _row_id(record, cfg, origin)
    any_kept = False
    for j, gen in enumerate(gens):
        if cfg.only_correct and (flags is None or j >= len(flags) or flags[j] is not True):
            continue
        any_kept = True
        gen_origin = f"{origin} generation {j}"
        if not isinstance(gen, str) or not gen.strip():
            yield Skip("bad_generation", gen_origin, "empty or not a string")
            continue
        reasoning = extract_reasoning(gen, cfg.require_think_end)
        if isinstance(reasoning, Skip):
            yield Skip(reasoning.reason, gen_origin, reasoning.detail)
            continue
        pid = base_id if cfg.generations == "first" else f"{base_id}-g{j}"
        item = _check_trace(pid, record["problem"], reasoning, record["answer"], gen_origin, cfg,
                            record.get(INVALID_UTF8, 0))
        yield item
        if isinstance(item, Trace) and cfg.generations == "first":
            return
    if not any_kept:  # (correct generations that were themselves skipped are counted above)
        yield Skip("no_correct_generation", origin)


OPENR1_COLUMNS = ["problem", "answer", "generations", "correctness_math_verify"]


def openr1_source(cfg: DataConfig) -> Iterator[Trace | Skip]:
    for origin, record in _rows(cfg, OPENR1_COLUMNS):
        if isinstance(record, Skip):
            yield record
            continue
        yield from openr1_row_traces(record, origin, cfg)


def jsonl_source(cfg: DataConfig) -> Iterator[Trace | Skip]:
    """Plain traces: `question_field`, `trace_field`, `answer_field` (and `id_field`) per row."""
    for origin, record in _rows(cfg, [cfg.question_field, cfg.trace_field, cfg.answer_field]):
        if isinstance(record, Skip):
            yield record
            continue
        missing = [f for f in (cfg.question_field, cfg.trace_field, cfg.answer_field)
                   if record.get(f) is None]
        if missing:
            yield Skip("missing_field", origin, ",".join(missing))
            continue
        trace = record[cfg.trace_field]
        if not isinstance(trace, str) or not trace.strip():
            yield Skip("bad_generation", origin, "trace empty or not a string")
            continue
        reasoning = extract_reasoning(trace, cfg.require_think_end)
        if isinstance(reasoning, Skip):
            yield Skip(reasoning.reason, origin, reasoning.detail)
            continue
        yield _check_trace(_row_id(record, cfg, origin), record[cfg.question_field], reasoning,
                           record[cfg.answer_field], origin, cfg, record.get(INVALID_UTF8, 0))


# ------------------------------------------------------------------------ MATH500 fixture


def math500_fixture_rows() -> Iterator[dict]:
    """The packaged MATH500 problems as OpenR1-Math-220K rows (one correct generation each).

    The worked solution becomes the reasoning inside `<think>...</think>`, followed by a short
    write-up with the boxed answer, the shape of an R1 generation.
    """
    from vtc_lab.eval.benchmarks import packaged_rows

    for row in packaged_rows("math500.jsonl"):
        answer = row["answer"]
        generation = (f"{THINK_START}\n{row['solution']}\n{THINK_END}\n\n"
                      f"The final answer is $\\boxed{{{answer}}}$.")
        yield {
            "uuid": row["unique_id"],
            "problem": row["problem"],
            "solution": row["solution"],
            "answer": answer,
            "problem_type": row.get("subject", ""),
            "generations": [generation],
            "correctness_math_verify": [True],
            "finish_reasons": ["stop"],
        }


def math500_fixture_source(cfg: DataConfig) -> Iterator[Trace | Skip]:
    for i, record in enumerate(math500_fixture_rows(), 1):
        yield from openr1_row_traces(record, f"math500.jsonl:{i}", cfg)


# ------------------------------------------------------------------------------ toy task


def toy_source(cfg: DataConfig) -> Iterator[Trace | Skip]:
    """Training problems of the synthetic task (`vtc_lab.task.toytask`, knobs in `data.toy`);
    never one of the held-out benchmark's problems."""
    from vtc_lab.task.toytask import training_problems

    count = min(cfg.toy.train_problems, cfg.limit or cfg.toy.train_problems)
    for problem in training_problems(cfg.toy, count):
        yield Trace(problem.id, problem.question, problem.reasoning, problem.answer,
                    f"toy:{problem.id}")


register_source("openr1", openr1_source)
register_source("jsonl", jsonl_source)
register_source("math500_fixture", math500_fixture_source)
register_source("toy", toy_source)
