"""Benchmark registry, loader, subsets and bad input (GPQA questions are never printed)."""

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.eval import BENCHMARKS, BenchmarkConfig, load_benchmark

SIZES = {"math500": 500, "aime25": 30, "amc23": 40, "gpqa_diamond": 198, "gsm8k": 1319,
         "toy": 500, "toy_long": 500}


def test_the_sizes_below_cover_the_registry():
    assert set(SIZES) == set(BENCHMARKS), "a newly registered benchmark needs its size here"


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_registered_benchmarks_load_in_full(name):
    """The contract every registered benchmark meets, whoever registered it: it loads in full
    at its registered size, ids are unique, each problem names its benchmark and grader, it has
    a preset conf/benchmark/<name>.yaml, and its own grader marks its gold answer correct."""
    from vtc_lab.eval.grade import answers_match

    spec = BENCHMARKS[name]
    problems = load_benchmark(BenchmarkConfig(name=name))
    assert len(problems) == SIZES[name] == spec.size
    assert problems.version == spec.version
    assert len(problems.fingerprint) == 16 and problems.skipped == []
    assert len({p.id for p in problems}) == len(problems)
    assert all(p.benchmark == name and p.grader == spec.grader and p.gold and p.question.strip()
               for p in problems)
    preset = OmegaConf.load(Path(CONF_DIR) / "benchmark" / f"{name}.yaml")
    assert preset.name == name
    for p in problems[:10]:
        assert answers_match(p.gold, p.gold, p.grader), (name, p.id)
        assert not answers_match("no answer at all", p.gold, p.grader), (name, p.id)


def test_reference_protocol_samples_per_problem():
    assert {n: BENCHMARKS[n].samples_per_problem for n in SIZES} == {
        "math500": 1, "aime25": 16, "amc23": 16, "gpqa_diamond": 1, "gsm8k": 1, "toy": 1,
        "toy_long": 1}
    assert load_benchmark(BenchmarkConfig(name="aime25")).samples_per_problem == 16
    assert load_benchmark(BenchmarkConfig(name="aime25", samples_per_problem=4)).samples_per_problem == 4


def test_gold_normalisation_per_benchmark():
    amc = load_benchmark(BenchmarkConfig(name="amc23"))
    assert amc[0].gold == "27" and amc[0].grader == "math"  # stored as 27.0
    gsm = load_benchmark(BenchmarkConfig(name="gsm8k"))
    assert gsm[0].gold == "18" and gsm[0].grader == "gsm8k"
    assert gsm[0].meta["reference"].endswith("#### 18")
    assert all("," not in p.gold and "####" not in p.gold for p in gsm)
    math = load_benchmark(BenchmarkConfig(name="math500"))
    assert math[0].id == "test/precalculus/807.json"
    assert math[0].gold == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert "\\boxed" in math[0].meta["solution"]


def test_gpqa_letters_and_choices():
    gpqa = load_benchmark(BenchmarkConfig(name="gpqa_diamond"))
    letters = Counter(p.gold for p in gpqa)
    assert set(letters) == {"A", "B", "C", "D"} and sum(letters.values()) == 198
    assert all(p.grader == "gpqa" for p in gpqa)
    assert sum(len(p.choices) == 4 for p in gpqa) == 198
    assert [p.id for p in gpqa[:3]] == ["0", "1", "2"]  # no id field: the line index


def test_seeded_subset_is_deterministic_and_in_file_order():
    full = [p.id for p in load_benchmark(BenchmarkConfig(name="math500"))]
    a = [p.id for p in load_benchmark(BenchmarkConfig(name="math500", limit=20, seed=1))]
    b = [p.id for p in load_benchmark(BenchmarkConfig(name="math500", limit=20, seed=1))]
    c = [p.id for p in load_benchmark(BenchmarkConfig(name="math500", limit=20, seed=2))]
    head = [p.id for p in load_benchmark(BenchmarkConfig(name="math500", limit=20, seed=None))]
    assert a == b and a != c and len(a) == 20 == len(set(a))
    assert a == sorted(a, key=full.index)
    assert head == full[:20]
    assert load_benchmark(BenchmarkConfig(name="math500", limit=20, seed=1)).total == 500


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_local_jsonl_with_custom_fields_and_template(tmp_path):
    f = _write(tmp_path / "mine.jsonl", [
        {"q": "1+1?", "target": 2, "uid": "a"}, {"q": "2+2?", "target": "4", "uid": "b"}])
    cfg = BenchmarkConfig(name="mine", path=str(f), question_field="q", answer_field="target",
                          id_field="uid", question_template="Solve: {question}")
    ps = load_benchmark(cfg)
    assert [(p.id, p.question, p.gold, p.benchmark, p.grader) for p in ps] == [
        ("a", "Solve: 1+1?", "2", "mine", "math"), ("b", "Solve: 2+2?", "4", "mine", "math")]
    assert ps.version == "local" and ps.samples_per_problem == 1


def test_local_gzipped_gpqa_style_file(tmp_path):
    f = tmp_path / "mc.jsonl.gz"
    f.write_bytes(gzip.compress(b'{"question": "Pick\\nA. x\\nB. y\\nC. z\\nD. w", "answer": "(c)"}\n'))
    ps = load_benchmark(BenchmarkConfig(name="mc", path=str(f), grader="gpqa"))
    assert ps[0].gold == "C" and ps[0].choices == ("x", "y", "z", "w")


def test_malformed_line_is_an_error_naming_file_and_line(tmp_path):
    f = _write(tmp_path / "bad.jsonl", [
        {"question": "ok", "answer": "1"}, '{"question": "broken", "answer": ', {"question": "ok2", "answer": "2"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: malformed benchmark line"):
        load_benchmark(BenchmarkConfig(name="bad", path=str(f)))


def test_malformed_lines_skipped_and_counted(tmp_path):
    f = _write(tmp_path / "bad.jsonl", [
        {"question": "ok", "answer": "1"}, "not json", {"question": "no answer"},
        {"question": "", "answer": "3"}, {"question": "ok2", "answer": "2"}])
    ps = load_benchmark(BenchmarkConfig(name="bad", path=str(f), on_malformed="skip"))
    assert [p.gold for p in ps] == ["1", "2"] and [p.id for p in ps] == ["0", "4"]
    assert [line for line, _ in ps.skipped] == [2, 3, 4]
    assert "missing field 'answer'" in ps.skipped[1][1]


def test_duplicate_ids_and_missing_fields_name_the_line(tmp_path):
    f = _write(tmp_path / "dup.jsonl", [{"question": "a", "answer": "1", "id": 7},
                                        {"question": "b", "answer": "2", "id": 7}])
    with pytest.raises(ValueError, match=r"dup\.jsonl:2: .*duplicate id '7' \(first on line 1\)"):
        load_benchmark(BenchmarkConfig(name="dup", path=str(f), id_field="id"))
    with pytest.raises(ValueError, match=r"dup\.jsonl:1: .*missing field 'problem'"):
        load_benchmark(BenchmarkConfig(name="dup", path=str(f), question_field="problem"))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_benchmark(BenchmarkConfig(name="x", path=str(tmp_path / "nope.jsonl")))


@pytest.mark.parametrize("kwargs, field", [
    ({"name": "unknown"}, "benchmark.name"),
    ({"name": "../etc"}, "benchmark.name"),
    ({"limit": 0}, "benchmark.limit"),
    ({"samples_per_problem": 0}, "benchmark.samples_per_problem"),
    ({"question_template": "no placeholder"}, "benchmark.question_template"),
    ({"question_template": "{question} {other}"}, "benchmark.question_template"),
    ({"on_malformed": "ignore"}, "benchmark.on_malformed"),
    ({"name": "x", "path": "f.jsonl", "grader": "exact"}, "benchmark.grader"),
    ({"answer_field": "target"}, "benchmark.answer_field"),
])
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        BenchmarkConfig(**kwargs)


@pytest.mark.parametrize("preset", [*sorted(BENCHMARKS), "local_jsonl"])
def test_presets_compose_into_the_schema(preset, tmp_path):
    raw = OmegaConf.load(Path(CONF_DIR) / "benchmark" / f"{preset}.yaml")
    if preset == "local_jsonl":
        assert OmegaConf.is_missing(raw, "path")
        raw.path = str(_write(tmp_path / "l.jsonl", [{"question": "q", "answer": "1"}]))
    merged = OmegaConf.merge(OmegaConf.structured(BenchmarkConfig), raw)
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, BenchmarkConfig)
    if preset != "local_jsonl":
        assert cfg.name == preset and cfg.num_samples == BENCHMARKS[preset].samples_per_problem
    assert len(load_benchmark(cfg)) >= 1


def test_one_reader_feeds_the_benchmark_and_the_fixtures():
    """packaged_rows is what load_benchmark, the MATH500 traces and the tiny tokenizer read."""
    from vtc_lab.data.sources import math500_fixture_rows
    from vtc_lab.eval.benchmarks import packaged_rows

    rows = packaged_rows("math500.jsonl")
    problems = load_benchmark(BenchmarkConfig(name="math500"))
    assert len(rows) == len(problems) == 500
    assert [r["problem"] for r in rows] == [r["problem"] for r in math500_fixture_rows()]
    assert all(r["problem"] in p.question for r, p in zip(rows, problems))
    gz = packaged_rows("gpqa_diamond.jsonl.gz")  # gzipped files through the same path
    assert len(gz) == len(load_benchmark(BenchmarkConfig(name="gpqa_diamond")))
