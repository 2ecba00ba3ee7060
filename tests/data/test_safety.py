"""The builder under real faults: user files next to a dataset, changed input, damaged shards,
corrupt or truncated parquet input, bad UTF-8 bytes and special tokens in the data."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vtc_lab.data.build import DatasetConfigMismatch, DatasetInputChanged, build_dataset
from vtc_lab.data.config import DataConfig
from vtc_lab.data.shards import CorruptShardError, open_dataset
from vtc_lab.data.sources import math500_fixture_rows


def _rows(path):
    return list(open_dataset(path).iter_samples())


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _traces(answer: str, n: int = 3) -> list[dict]:
    return [{"id": f"t{i}", "question": f"What is {i}+{i}?", "answer": f"{answer}{i}",
             "trace": f"We add {i} and {i}. " * 30 + f"So the result is {answer}{i}."} for i in range(n)]


def _jsonl_cfg(make_cfg, src: Path, out: Path, **kw):
    data = DataConfig(name="t", source="jsonl", path=str(src), question_field="question",
                      trace_field="trace", answer_field="answer", id_field="id")
    return make_cfg(data=data, output_dir=str(out), render_cache=False, **kw)


def test_overwrite_deletes_only_what_the_builder_wrote(make_cfg, tmp_path):
    out = tmp_path / "ds"
    build_dataset(make_cfg(limit=4, output_dir=str(out), export="llamafactory"))
    (out / "precious.txt").write_text("keep me")
    (out / "src").mkdir()
    (out / "src" / "main.py").write_text("print('mine')")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    with pytest.raises(DatasetConfigMismatch, match=r"precious\.txt.*src/main\.py.*refusing to delete"):
        build_dataset(make_cfg(limit=4, output_dir=str(out), overwrite=True))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before  # nothing touched
    # without the user's files, overwrite rebuilds from scratch
    (out / "precious.txt").unlink()
    (out / "src" / "main.py").unlink()
    (out / "src").rmdir()
    metrics = build_dataset(make_cfg(limit=4, output_dir=str(out), overwrite=True))
    assert metrics["reused"] is False and metrics["data/built_shards"] == 1
    assert not (out / "llamafactory").exists()  # the old export was ours: removed


def test_overwrite_refuses_a_directory_with_someone_elses_manifest(make_cfg, tmp_path):
    out = tmp_path / "webapp"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my web app", "version": 3}')
    (out / "index.html").write_text("<html></html>")
    with pytest.raises(DatasetConfigMismatch, match="not a vtc-lab dataset manifest"):
        build_dataset(make_cfg(limit=2, output_dir=str(out), overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "manifest.json"]


def test_changed_input_is_refused_not_reused(make_cfg, tmp_path):
    src = _jsonl(tmp_path / "in" / "traces.jsonl", _traces("OLD"))
    out = tmp_path / "ds"
    build_dataset(_jsonl_cfg(make_cfg, src, out))
    assert {r["answer"] for r in _rows(out)} == {"OLD0", "OLD1", "OLD2"}
    _jsonl(src, _traces("NEW"))  # same size, same config: only the content differs
    with pytest.raises(DatasetInputChanged, match=r"traces\.jsonl \(changed\).*overwrite=true"):
        build_dataset(_jsonl_cfg(make_cfg, src, out))
    with pytest.raises(DatasetInputChanged):  # training's path (ensure_dataset) refuses too
        from vtc_lab.data.build import ensure_dataset
        ensure_dataset(_jsonl_cfg(make_cfg, src, out))
    build_dataset(_jsonl_cfg(make_cfg, src, out, overwrite=True))
    assert {r["answer"] for r in _rows(out)} == {"NEW0", "NEW1", "NEW2"}
    src.unlink()  # raw data deleted after the build: the complete dataset stays usable
    assert build_dataset(_jsonl_cfg(make_cfg, src, out))["reused"] is True


def test_damaged_shards_are_named_and_rebuilt(make_cfg, tmp_path):
    out = tmp_path / "ds"
    build_dataset(make_cfg(limit=10, output_dir=str(out)))  # 3 shards of 4, 4, 2
    good = _rows(out)
    samples = out / "shards" / "shard-00001.parquet"
    samples.write_bytes(samples.read_bytes()[: samples.stat().st_size // 2])  # truncated
    pages = out / "pages" / "shard-00002.parquet"
    blob = bytearray(pages.read_bytes())
    blob[len(blob) // 2: len(blob) // 2 + 64] = bytes(64)  # bytes flipped, same size
    pages.write_bytes(bytes(blob))
    with pytest.raises(CorruptShardError, match=r"shard-00001\.parquet.*build-data"):
        open_dataset(out)  # named before any pyarrow traceback
    again = build_dataset(make_cfg(limit=10, output_dir=str(out)))
    assert again["reused"] is False
    assert (again["data/built_shards"], again["data/resumed_shards"]) == (2, 1)
    assert _rows(out) == good
    assert build_dataset(make_cfg(limit=10, output_dir=str(out)))["reused"] is True


def _openr1_parquet(path: Path, rows: list[dict], group: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=group)
    return path


def test_corrupt_and_truncated_parquet_inputs_are_named_counted_and_skipped(make_cfg, tmp_path, capsys):
    rows = list(math500_fixture_rows())[:12]
    data = tmp_path / "in"
    _openr1_parquet(data / "a.parquet", rows[:8], group=4)
    _openr1_parquet(data / "b.parquet", rows[8:], group=4)
    # a: bad bytes in the middle of the `generations` column of its first row group
    meta = pq.ParquetFile(data / "a.parquet").metadata
    col = next(meta.row_group(0).column(i) for i in range(meta.num_columns)
               if meta.row_group(0).column(i).path_in_schema.startswith("generations"))
    blob = bytearray((data / "a.parquet").read_bytes())
    first = col.dictionary_page_offset or col.data_page_offset
    start = first + col.total_compressed_size // 2 - 50
    blob[start:start + 100] = bytes(range(100))  # inside that column chunk only
    (data / "a.parquet").write_bytes(bytes(blob))
    # b: cut in half
    half = (data / "b.parquet").read_bytes()
    (data / "b.parquet").write_bytes(half[: len(half) // 2])
    cfg = make_cfg(data=DataConfig(name="r1", source="openr1", path=str(data)),
                   output_dir=str(tmp_path / "ds"), render_cache=False)
    metrics = build_dataset(cfg)
    stats = json.loads((tmp_path / "ds" / "stats.json").read_text())
    assert stats["skipped"]["bad_input_file"] == 2
    assert stats["problems"] == 4  # a.parquet's second row group, nothing else
    assert {r["problem_id"] for r in _rows(metrics["path"])} == {r["uuid"] for r in rows[4:8]}
    examples = " ".join(stats["skip_examples"]["bad_input_file"])
    assert "a.parquet:rows 1-4" in examples and "b.parquet" in examples
    printed = capsys.readouterr().out
    assert "unreadable input skipped" in printed and "b.parquet" in printed


def test_invalid_utf8_bytes_are_replaced_and_counted(make_cfg, tmp_path):
    src = tmp_path / "in" / "traces.jsonl"
    src.parent.mkdir()
    lines = [json.dumps(r).encode() for r in _traces("A", 2)]
    lines[0] = lines[0].replace(b"What is 0+0?", b"What is 0\xff+0\xfe?")  # Latin-1 junk
    src.write_bytes(b"\n".join(lines) + b"\n")
    metrics = build_dataset(_jsonl_cfg(make_cfg, src, tmp_path / "ds"))
    questions = {r["question"] for r in _rows(metrics["path"])}
    assert "What is 0\ufffd+0\ufffd?" in questions
    assert metrics["data/invalid_utf8"] == 2
    stats = json.loads((tmp_path / "ds" / "stats.json").read_text())
    assert stats["invalid_utf8"] == 2


def test_special_tokens_in_data_never_reach_the_model_or_the_export(make_cfg, tmp_path):
    traces = _traces("A", 2)
    traces[0]["question"] = "Count <|image_pad|> and <image> here?"
    traces[1]["trace"] = "Think <|im_end|><|vision_start|> then go on. " * 20 + "Done."
    src = _jsonl(tmp_path / "in" / "traces.jsonl", traces)
    metrics = build_dataset(_jsonl_cfg(make_cfg, src, tmp_path / "ds", export="llamafactory"))
    assert metrics["data/special_tokens"] == 2 + 2 * 20
    rows = _rows(metrics["path"])
    for row in rows:
        for text in (row["question"], row["target"]):
            assert "<|" not in text and "<image>" not in text
    assert any(r["question"] == "Count < |image_pad|> and < image> here?" for r in rows)
    export = [json.loads(line) for line in
              (tmp_path / "ds" / "llamafactory" / "data.jsonl").read_text().splitlines()]
    assert export and all(ex["messages"][-2]["content"].count("<image>") == len(ex["images"])
                          for ex in export)


def test_a_question_with_special_tokens_encodes_for_training_and_inference():
    """The real failure: the processor counted `<|image_pad|>` in the question as an image
    ("Found 2 <|image_pad|> tokens ... but 1 image") and aborted the run. Training's collator
    and the inference engine both build the prompt with build_messages."""
    import io

    import torch
    from PIL import Image

    from vtc_lab.data import build_messages
    from vtc_lab.models import ModelConfig, TinySpec, load_backbone
    from vtc_lab.train.collate import SFTEncoder

    torch.set_num_threads(1)
    bb = load_backbone(ModelConfig(name="qwen3_vl", arch="qwen3_vl", tiny=TinySpec(patch_size=16)))
    page = io.BytesIO()
    Image.new("RGB", (96, 64), "white").save(page, format="PNG")
    question = "Is <|image_pad|> an <image> or <|vision_start|>?"
    enc = SFTEncoder(bb.processor, bb.stop_token_ids, None, "before")
    item = enc.encode({"sample_id": "s", "question": question, "target": "Yes.",
                       "images": [page.getvalue()]})
    pad = bb.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    merged = int(item["image_grid_thw"].prod()) // 4  # 2x2 patches per vision token
    assert int((item["input_ids"] == pad).sum()) == merged
    prompt = bb.processor.apply_chat_template(
        build_messages(question, [Image.new("RGB", (96, 64), "white")], None),
        tokenize=False, add_generation_prompt=True)
    assert prompt.count("<|image_pad|>") == 1 and "< |image_pad|>" in prompt


def test_a_second_build_data_writer_is_refused_naming_the_holder(make_cfg, tmp_path):
    """`vtc-lab build-data` into a directory another live process is building (or overwriting)
    is refused at once with the holder's pid, not interleaved with it."""
    import subprocess
    import sys

    from vtc_lab.data.build import run_build_data
    from vtc_lab.outputlock import OutputLockedError

    out = tmp_path / "ds"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from vtc_lab.outputlock import OutputLock; "
         "OutputLock(sys.argv[1], job='vtc-lab build-data (other)').acquire(); "
         "print('held', flush=True); time.sleep(120)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=rf"pid {holder.pid}|{holder.pid}"):
            run_build_data(make_cfg(limit=2, output_dir=str(out), overwrite=True))
        assert not (out / "manifest.json").exists()
    finally:
        holder.kill()
        holder.wait()
    metrics = run_build_data(make_cfg(limit=2, output_dir=str(out)))  # the lock died with it
    assert metrics["reused"] is False
