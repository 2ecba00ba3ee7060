"""LLaMA-Factory sharegpt export (loads with `datasets`) and path safety of ids."""

import json
from pathlib import Path

from vtc_lab.data.build import build_dataset
from vtc_lab.data.config import DataConfig
from vtc_lab.data.export import export_llamafactory
from vtc_lab.data.messages import REFERENCE_SYSTEM_PROMPT
from vtc_lab.data.shards import open_dataset
from tests.data.openr1_fixture import write_openr1_fixture
from vtc_lab.data.sources import math500_fixture_rows


def test_llamafactory_export_loads_with_datasets(make_cfg):
    import datasets

    metrics = build_dataset(make_cfg(limit=4, export="llamafactory"))
    root = Path(metrics["path"]) / "llamafactory"
    info = json.loads((root / "dataset_info.json").read_text())
    entry = info["vtc_r1"]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages", "images": "images"}
    ds = datasets.load_dataset("json", data_files=str(root / entry["file_name"]), split="train")
    rows = list(open_dataset(metrics["path"]).iter_samples())
    assert len(ds) == len(rows)
    for ex, row in zip(ds, rows):
        roles = [m["role"] for m in ex["messages"]]
        assert roles == ["system", "user", "assistant"]
        assert ex["messages"][0]["content"] == REFERENCE_SYSTEM_PROMPT
        user = ex["messages"][1]["content"]
        assert user == "<image>" * len(ex["images"]) + row["question"]
        assert ex["messages"][2]["content"] == row["target"]
        assert [(root / p).read_bytes() for p in ex["images"]] == list(row["images"])


def test_ids_with_path_characters_never_become_paths(make_cfg, tmp_path):
    rows = list(math500_fixture_rows())[:3]
    for row, bad in zip(rows, ["../../escape", "/abs/olute", "a/../../b"]):
        row["uuid"] = bad
    src = write_openr1_fixture(tmp_path / "src" / "evil.jsonl", rows)
    out = tmp_path / "runs" / "ds"
    metrics = build_dataset(make_cfg(data=DataConfig(source="openr1", path=str(src)), output_dir=str(out),
                                     export="llamafactory", render_cache_dir=str(tmp_path / "runs" / "cache")))
    got = {r["problem_id"] for r in open_dataset(metrics["path"]).iter_samples()}
    # kept as data, as DataConfig.id_field says (never used as a path)
    assert got == {"../../escape", "/abs/olute", "a/../../b"}
    export = [json.loads(line) for line in (out / "llamafactory" / "data.jsonl").read_text().splitlines()]
    assert {ex["sample_id"].split("#")[0] for ex in export} == got
    for ex in export:  # every image path resolves inside the export directory
        assert all((out / "llamafactory" / p).resolve().is_relative_to(out / "llamafactory")
                   for p in ex["images"])
    # every file written lies under the output root, and nothing appeared next to it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "src"]
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == ["evil.jsonl"]
    assert not Path("/abs").exists()


def test_export_of_image_position_after(make_cfg):
    cfg = make_cfg(limit=2, data=DataConfig(limit=2, image_position="after", system_prompt=None))
    metrics = build_dataset(cfg)
    root = export_llamafactory(metrics["path"])
    first = [json.loads(line) for line in (root / "data.jsonl").read_text().splitlines()]
    with_images = [ex for ex in first if ex["images"]]
    assert with_images and all(ex["messages"][0]["role"] == "user" for ex in first)
    ex = with_images[0]
    assert ex["messages"][0]["content"].endswith("<image>" * len(ex["images"]))


def test_export_writes_each_distinct_page_once(make_cfg):
    metrics = build_dataset(make_cfg(limit=4))
    root = export_llamafactory(metrics["path"])
    rows = list(open_dataset(metrics["path"]).iter_samples())
    distinct = {png for r in rows for png in r["images"]}
    files = list((root / "images").rglob("*.png"))
    assert len(files) == len(distinct) < sum(len(r["images"]) for r in rows)
