"""Trace sources: OpenR1 schema (parquet/jsonl, file/dir/glob), plain jsonl, bad rows counted."""

import json
from collections import Counter

import pytest

from vtc_lab.data.config import DataConfig
from tests.data.openr1_fixture import write_openr1_fixture
from vtc_lab.data.sources import Skip, Trace, iter_traces, math500_fixture_rows


def split(items):
    traces = [i for i in items if isinstance(i, Trace)]
    skips = Counter(i.reason for i in items if isinstance(i, Skip))
    return traces, skips


def test_math500_fixture_is_openr1_shaped():
    rows = list(math500_fixture_rows())
    assert len(rows) == 500
    g = rows[0]["generations"][0]
    assert g.startswith("<think>\n") and "</think>" in g and "\\boxed{" in g.split("</think>")[1]
    traces, skips = split(list(iter_traces(DataConfig())))
    assert len(traces) == 500 and not skips
    # the reasoning is exactly the MATH500 solution (stripped), the answer the gold answer
    assert traces[0].reasoning == rows[0]["solution"].strip()
    assert traces[0].answer == rows[0]["answer"]


@pytest.mark.parametrize("layout", ["file_parquet", "file_jsonl", "dir", "glob"])
def test_openr1_file_dir_glob(tmp_path, layout):
    rows = list(math500_fixture_rows())[:30]
    if layout == "file_parquet":
        path = write_openr1_fixture(tmp_path / "a.parquet", rows)
    elif layout == "file_jsonl":
        path = write_openr1_fixture(tmp_path / "a.jsonl", rows)
    else:
        write_openr1_fixture(tmp_path / "d" / "train-00000.parquet", rows[:10])
        write_openr1_fixture(tmp_path / "d" / "train-00001.parquet", rows[10:])
        path = tmp_path / "d" if layout == "dir" else tmp_path / "d" / "train-*.parquet"
    traces, skips = split(list(iter_traces(DataConfig(source="openr1", path=str(path)))))
    assert [t.problem_id for t in traces] == [r["uuid"] for r in rows]
    assert not skips


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        list(iter_traces(DataConfig(source="openr1", path=str(tmp_path / "nope*.parquet"))))
    with pytest.raises(ValueError, match="data.path is required"):
        DataConfig(source="openr1")


def _row(uuid, gens, flags, problem="What is 1+1?", answer="2"):
    return {"uuid": uuid, "problem": problem, "answer": answer, "generations": gens,
            "correctness_math_verify": flags}


def test_openr1_bad_rows_are_skipped_and_counted(tmp_path):
    good = "<think>\nadd them: 1+1=2.\n</think>\nSo $\\boxed{2}$."
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps(_row("a", [good], [True])),
        "{this is not json",
        json.dumps([1, 2, 3]),
        json.dumps({"uuid": "b", "problem": "q", "generations": [good]}),        # no answer
        json.dumps(_row("c", ["", 7], [True, True])),                            # empty / non-str
        json.dumps(_row("d", [good, good], [False, False])),                     # none correct
        json.dumps(_row("e", ["<think>never closed"], [True])),                  # no </think>
        json.dumps(_row("f", ["<think>" + "x" * 5000 + "</think> done"], [True])),  # gigantic
        json.dumps(_row("a", [good], [True])),                                   # duplicate id
        json.dumps(_row("../../etc/passwd", [good], [True])),                    # path chars kept as data
        json.dumps(_row("g", "not a list", [True])),
        "",
    ]
    path.write_text("\n".join(lines) + "\n")
    cfg = DataConfig(source="openr1", path=str(path), max_trace_chars=4000)
    items = list(iter_traces(cfg))
    traces, skips = split(items)
    assert [t.problem_id for t in traces] == ["a", "../../etc/passwd"]
    assert skips == Counter({"malformed_json": 2, "missing_field": 1, "bad_generation": 3,
                             "no_correct_generation": 1, "no_think_end": 1, "too_long": 1,
                             "duplicate_id": 1})
    bad_line = next(i for i in items if isinstance(i, Skip) and i.reason == "malformed_json")
    assert bad_line.origin == f"{path}:2"


def test_all_correct_generations_and_unverified(tmp_path):
    g1 = "<think>first way</think>ok"
    g2 = "<think>second way</think>ok"
    path = write_openr1_fixture(tmp_path / "x.jsonl", [_row("p", [g1, "<think>bad</think>", g2], [True, False, True])])
    every = split(list(iter_traces(DataConfig(source="openr1", path=str(path), generations="all"))))[0]
    assert [(t.problem_id, t.reasoning) for t in every] == [("p-g0", "first way"), ("p-g2", "second way")]
    first = split(list(iter_traces(DataConfig(source="openr1", path=str(path)))))[0]
    assert [t.reasoning for t in first] == ["first way"]
    anyflag = split(list(iter_traces(DataConfig(source="openr1", path=str(path), only_correct=False,
                                                generations="all"))))[0]
    assert len(anyflag) == 3


def test_plain_jsonl_with_custom_fields(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"qid": 1, "q": "Q1", "cot": "plain reasoning, no tags", "final": 3},
        {"qid": 2, "q": "Q2", "cot": "<think>tagged</think> tail", "final": "x"},
        {"qid": 3, "q": "Q3", "final": "y"},
    ]) + "\n")
    cfg = DataConfig(source="jsonl", path=str(path), question_field="q", trace_field="cot",
                     answer_field="final", id_field="qid")
    traces, skips = split(list(iter_traces(cfg)))
    assert [(t.problem_id, t.question, t.reasoning, t.answer) for t in traces] == [
        ("1", "Q1", "plain reasoning, no tags", "3"), ("2", "Q2", "tagged", "x")]
    assert skips == Counter({"missing_field": 1})


def test_limit_counts_kept_problems():
    traces, _ = split(list(iter_traces(DataConfig(limit=7))))
    assert len(traces) == 7


def test_toy_source_yields_training_traces_of_its_knobs():
    cfg = DataConfig(source="toy", name="toy", limit=5, toy={"digits": 3, "steps": 6, "seed": 1})
    traces, skips = split(list(iter_traces(cfg)))
    assert len(traces) == 5 and not skips
    for t in traces:
        lines = t.reasoning.split("\n")
        assert len(lines) == 7 and lines[0] in t.question and t.answer == lines[-1][1:]
        assert t.reasoning.startswith("G") and lines[-1].startswith("A")


def test_unknown_source_is_clear():
    cfg = DataConfig()
    cfg.source = "nope"  # past validation, as a plug-in that was never registered
    with pytest.raises(ValueError, match="'nope' is not available.*toy"):
        list(iter_traces(cfg))


def test_registered_source_plugs_in():
    from vtc_lab.data import sources

    def squares(cfg):
        for i in range(3):
            yield sources.Trace(f"sq{i}", f"What is {i}^2?", f"{i} times {i} is {i * i}.", str(i * i), f"squares:{i}")
        yield sources.Skip("malformed_json", "squares:9")

    sources.register_source("squares", squares)
    try:
        traces, skips = split(list(iter_traces(DataConfig(source="squares", limit=2))))
        assert [t.problem_id for t in traces] == ["sq0", "sq1"]
    finally:
        sources._REGISTRY.pop("squares")
    with pytest.raises(ValueError, match="data.source must be one of"):
        DataConfig(source="squares")


def test_parquet_reads_only_the_needed_columns(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    rows = [{**r, "messages": [{"role": "user", "content": "x" * 100}]} for r in list(math500_fixture_rows())[:5]]
    path = write_openr1_fixture(tmp_path / "a.parquet", rows)
    asked = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        asked.append(kwargs.get("columns"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    traces, _ = split(list(iter_traces(DataConfig(source="openr1", path=str(path)))))
    assert len(traces) == 5
    assert asked == [["problem", "answer", "generations", "correctness_math_verify", "uuid"]]


def test_gzipped_jsonl_shards(tmp_path):
    import gzip

    rows = list(math500_fixture_rows())[:4]
    with gzip.open(tmp_path / "part-0.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows) + "\n")
    traces, skips = split(list(iter_traces(DataConfig(source="openr1", path=str(tmp_path)))))
    assert [t.problem_id for t in traces] == [r["uuid"] for r in rows] and not skips


def test_a_generation_ends_its_reasoning_where_the_parser_does(tmp_path):
    """One rule for where reasoning ends (issue 22 §5): the last `</think>`, as the loop and the
    grader read it (vtc_lab.task.completion.parse). A generation with two `</think>` has one
    inside its reasoning: skipped as `bad_trace`, not cut at the first one."""
    from vtc_lab.data.sources import extract_reasoning
    from vtc_lab.task.completion import parse

    for text in ["<think>a</think>b", "<think>\nplain\n</think>\nok", "no tags at all",
                 "<think>a</think>b</think>c"]:
        assert extract_reasoning(text, True) == parse(text).reasoning.replace("<think>", "", 1).strip()
    twice = "<think>first</think> then more </think>\nSo $\\boxed{2}$."
    path = write_openr1_fixture(tmp_path / "x.jsonl", [_row("t", [twice], [True])])
    traces, skips = split(list(iter_traces(DataConfig(source="openr1", path=str(path)))))
    assert traces == [] and skips == Counter({"bad_trace": 1})
