"""The dataset builder on the MATH500 fixture: rows, stats, resume, refusal, export, readers."""

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from vtc_lab.data import is_final, split_final
from vtc_lab.data.build import DatasetConfigMismatch, build_dataset, ensure_dataset
from vtc_lab.data.config import DataConfig
from vtc_lab.data.shards import open_dataset
from vtc_lab.data.sources import Trace, iter_traces
from vtc_lab.render import vision_tokens
from vtc_lab.segment import SegmentationConfig


def rows_of(path):
    return list(open_dataset(path).iter_samples())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One fixture build shared by the read-only tests (10 problems, 3 shards)."""
    from vtc_lab.data.config import BuildDataConfig
    from vtc_lab.tracking.config import TrackingConfig

    root = tmp_path_factory.mktemp("build")
    cfg = BuildDataConfig(data=DataConfig(limit=10, problems_per_shard=4), tracking=TrackingConfig(mode="off"),
                          segmentation=SegmentationConfig(max_tokens=96, min_tokens=16,
                                                          max_segments=8, on_overflow="merge"),
                          output_root=str(root), progress=False)
    metrics = build_dataset(cfg)
    return cfg, metrics, Path(metrics["path"])


def test_rows_reassemble_the_traces(built):
    cfg, metrics, path = built
    rows = rows_of(path)
    traces = {t.problem_id: t for t in iter_traces(cfg.data) if isinstance(t, Trace)}
    by_problem = {}
    for r in rows:
        by_problem.setdefault(r["problem_id"], []).append(r)
    assert set(by_problem) == set(traces) and len(traces) == 10
    multi = 0
    for pid, rs in by_problem.items():
        rs.sort(key=lambda r: r["k"])
        n = rs[0]["n"]
        multi += n > 1
        assert [r["k"] for r in rs] == list(range(1, n + 1))
        assert all(not is_final(r["target"]) for r in rs[:-1]) and is_final(rs[-1]["target"])
        reasoning, answer = split_final(rs[-1]["target"])
        assert answer == traces[pid].answer
        # lossless: the targets put back together are the trace's reasoning
        assert "".join(r["target"] for r in rs[:-1]) + reasoning == traces[pid].reasoning
        for r in rs:
            assert len(r["images"]) == len(r["image_segments"])
            assert r["image_segments"] == sorted(r["image_segments"])
            assert set(r["image_segments"]) == set(range(1, r["k"]))
            sizes = [Image.open(io.BytesIO(b)).size for b in r["images"]]
            assert r["memory_vision_tokens"] == sum(vision_tokens(w, h, "qwen3_vl") for w, h in sizes)
            assert (r["memory_text_tokens"] == 0) == (r["k"] == 1)
        # sample k's memory is sample k-1's memory plus the pages of segment k-1
        for a, b in zip(rs, rs[1:]):
            assert b["images"][:len(a["images"])] == a["images"]
    assert multi >= 5, "96-token rounds must split most MATH500 solutions"
    assert metrics["data/samples"] == len(rows)


def test_stats_and_manifest(built):
    cfg, metrics, path = built
    stats = json.loads((path / "stats.json").read_text())
    manifest = json.loads((path / "manifest.json").read_text())
    rows = rows_of(path)
    assert manifest["status"] == "complete" and manifest["counts"]["samples"] == len(rows)
    assert manifest["config"]["segmentation"]["max_tokens"] == 96
    assert manifest["code_version"]["vtc_lab"]
    hist = {}
    for r in rows:
        if r["k"] == 1:
            hist[str(r["n"])] = hist.get(str(r["n"]), 0) + 1
    assert stats["segments_per_problem"] == hist
    last = [r for r in rows if r["k"] == r["n"]]
    assert stats["memory_vision_tokens"] == sum(r["memory_vision_tokens"] for r in last)
    assert stats["memory_text_tokens"] == sum(r["memory_text_tokens"] for r in last)
    assert stats["tokens_saved"] == sum(r["memory_text_tokens"] - r["memory_vision_tokens"] for r in rows)
    assert stats["compression_ratio"] == round(stats["memory_text_tokens"] / stats["memory_vision_tokens"], 4)
    assert Image.open(path / "stats.png").size[0] > 100


def test_readable_by_pandas_and_datasets(built):
    import datasets
    import pandas as pd

    _, _, path = built
    files = sorted(str(p) for p in (path / "shards").glob("*.parquet"))
    df = pd.concat([pd.read_parquet(f) for f in files])
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    rows = rows_of(path)
    assert len(df) == len(ds) == len(rows)
    assert list(ds[-1]["page_ids"]) == list(df.iloc[-1]["page_ids"]) == rows[-1]["page_ids"]
    # the page table, read with plain pandas, holds the bytes the reader puts in the rows
    last = sorted(path.glob("pages/*.parquet"))[-1]
    pages = pd.read_parquet(last)
    assert [pages.iloc[i]["png"] for i in rows[-1]["page_ids"]] == rows[-1]["images"]


def test_resume_rebuilds_only_missing_shards(make_cfg, built):
    cfg = make_cfg()
    first = build_dataset(cfg)
    path = Path(first["path"])
    reference = rows_of(path)
    stats = (path / "stats.json").read_text()
    # simulate a kill: one shard gone, a half-written temp file and a "building" manifest
    (path / "shards" / "shard-00001.parquet").unlink()
    (path / "shards" / "shard-00002.parquet.tmp999").write_bytes(b"PAR1 half")
    m = json.loads((path / "manifest.json").read_text())
    m["status"] = "building"
    (path / "manifest.json").write_text(json.dumps(m))
    again = build_dataset(cfg)
    assert again["data/built_shards"] == 1 and again["data/resumed_shards"] == 2
    assert rows_of(path) == reference
    assert (path / "stats.json").read_text() == stats
    assert not list(path.rglob("*.tmp*"))
    # and a complete dataset with the same config is simply reused
    assert build_dataset(cfg)["reused"] is True


def test_different_config_is_refused(make_cfg, tmp_path):
    out = str(tmp_path / "fixed")  # an explicit directory: the default one is per config hash
    build_dataset(make_cfg(output_dir=out))
    other = make_cfg(output_dir=out, segmentation=SegmentationConfig(max_tokens=64, min_tokens=16))
    with pytest.raises(DatasetConfigMismatch, match=r"segmentation.max_tokens: 96 -> 64"):
        build_dataset(other)
    with pytest.raises(DatasetConfigMismatch):
        ensure_dataset(other)
    assert build_dataset(make_cfg(output_dir=out, overwrite=True,
                                  segmentation=other.segmentation))["reused"] is False


def test_default_directory_is_one_per_config(make_cfg):
    """Without output_dir, configs land side by side (sweeps never collide) and reruns reuse."""
    a = build_dataset(make_cfg())
    b = build_dataset(make_cfg(segmentation=SegmentationConfig(max_tokens=64, min_tokens=16)))
    assert a["path"] != b["path"]
    assert Path(a["path"]).name == f"math500_fixture-{a['config_hash'][:12]}"
    assert build_dataset(make_cfg())["reused"] is True


def test_non_dataset_directory_is_refused(make_cfg, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetConfigMismatch, match="not empty"):
        build_dataset(make_cfg(output_dir=str(tmp_path / "busy")))


def test_stats_only_matches_full_build_without_images(make_cfg, built):
    _, _, path = built
    metrics = build_dataset(make_cfg(stats_only=True))
    out = Path(metrics["path"])
    assert not (out / "shards").exists()
    full = json.loads((path / "stats.json").read_text())
    fast = json.loads((out / "stats.json").read_text())
    for key in ("problems", "samples", "segments_per_problem", "compression_ratio", "tokens_saved"):
        assert fast[key] == full[key]


def test_ensure_dataset_builds_then_reuses(make_cfg):
    cfg = make_cfg(limit=3)
    path = ensure_dataset(cfg)
    assert open_dataset(path).num_samples == len(rows_of(path)) > 0
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert ensure_dataset(cfg) == path and (path / "manifest.json").stat().st_mtime_ns == stamp


def test_layouts_column_boxes_match_the_segment_text(make_cfg):
    cfg = make_cfg(limit=3, data=DataConfig(limit=3, include_layouts=True))
    path = Path(build_dataset(cfg)["path"])
    traces = {t.problem_id: t for t in iter_traces(cfg.data) if isinstance(t, Trace)}
    rows = [r for r in rows_of(path) if r["k"] == r["n"] and r["n"] > 1]
    assert rows
    for r in rows:
        assert len(r["layouts"]) == len(r["images"])
        segments = [r2["target"] for r2 in rows_of(path) if r2["problem_id"] == r["problem_id"]]
        for page_no, (layout, png, seg_no) in enumerate(zip(r["layouts"], r["images"], r["image_segments"])):
            boxes = json.loads(layout)
            w, h = Image.open(io.BytesIO(png)).size
            assert boxes, "every page holds characters"
            seg_text = segments[seg_no - 1]
            for index, char, x0, y0, x1, y1 in boxes:
                assert seg_text[index] == char  # index points into that segment's text
                assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h
        assert traces[r["problem_id"]]


def test_too_many_segments_are_skipped_and_counted(make_cfg):
    seg = SegmentationConfig(max_tokens=40, min_tokens=0, max_segments=2, on_overflow="drop")
    metrics = build_dataset(make_cfg(limit=10, segmentation=seg))
    stats = json.loads((Path(metrics["path"]) / "stats.json").read_text())
    assert stats["skipped"].get("too_many_segments", 0) > 0
    assert stats["problems"] + stats["skipped"]["too_many_segments"] == 10
    assert set(stats["segments_per_problem"]) <= {"1", "2"}


def test_two_workers_give_the_same_dataset(make_cfg, tmp_path):
    one = build_dataset(make_cfg(limit=12, output_dir=str(tmp_path / "w1")))
    two = build_dataset(make_cfg(limit=12, output_dir=str(tmp_path / "w2"), num_workers=2, render_cache=False))
    assert rows_of(one["path"]) == rows_of(two["path"])
    assert (Path(one["path"]) / "stats.json").read_text() == (Path(two["path"]) / "stats.json").read_text()


def test_run_logs_to_mlflow(make_cfg, tmp_path):
    from vtc_lab.data.build import run_build_data
    from vtc_lab.tracking.config import TrackingConfig

    cfg = make_cfg(limit=3, tracking=TrackingConfig(mode="local", experiment="build-data-test"))
    metrics = run_build_data(cfg)
    import mlflow  # test-only: read back what the run logged

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("build-data-test")
    run = client.search_runs([exp.experiment_id])[0]
    assert run.data.metrics["data/samples"] == metrics["data/samples"]
    assert run.data.tags["dataset_config_hash"] == metrics["config_hash"]
    names = {a.path for a in client.list_artifacts(run.info.run_id, "dataset")}
    assert {"dataset/stats.png", "dataset/stats.json", "dataset/manifest.json"} <= names


def test_a_trace_that_breaks_the_pipeline_is_counted_not_fatal(make_cfg, monkeypatch):
    """A renderer/tokenizer failure on one trace skips that trace, counted by exception type."""
    import vtc_lab.data.samples as samples

    real = samples.segment_text

    def flaky(text, cfg, tok):
        if "polar coordinates" in text:
            raise RuntimeError("boom")
        return real(text, cfg, tok)

    monkeypatch.setattr(samples, "segment_text", flaky)
    metrics = build_dataset(make_cfg(limit=6))
    stats = json.loads((Path(metrics["path"]) / "stats.json").read_text())
    assert stats["skipped"] == {"error:RuntimeError": 1}
    assert stats["problems"] == 5 == len({r["problem_id"] for r in rows_of(metrics["path"])})


def test_concurrent_builders_of_one_directory_build_once(make_cfg, tmp_path):
    """Two processes (e.g. DDP ranks) asking for the same dataset: one builds, one reuses."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    cfg = make_cfg(limit=8, output_dir=str(tmp_path / "shared"), render_cache=False)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(build_dataset, [cfg, cfg]))
    assert sorted(r["reused"] for r in results) == [False, True]
    assert results[0]["data/samples"] == results[1]["data/samples"] == len(rows_of(tmp_path / "shared"))


def test_a_builder_arriving_mid_build_waits_for_it_instead_of_refusing(make_cfg, tmp_path, caplog):
    """The race behind a flaky CI run of the test above: the second builder looked before the
    first had written its manifest, saw the first one's shards in a directory without one and
    refused. Replayed deterministically: the builder's files without a manifest, the lock held."""
    import fcntl
    import logging
    import threading
    import time

    from vtc_lab.data import shards as sh

    cfg = make_cfg(limit=4, output_dir=str(tmp_path / "shared"), render_cache=False)
    out = Path(build_dataset(cfg)["path"])
    manifest = (out / sh.MANIFEST).read_bytes()
    (out / sh.MANIFEST).unlink()           # mid-build: shards written, manifest not yet
    results, errors = [], []
    with open(out / sh.LOCK, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)   # the first builder still holds the lock
        with caplog.at_level(logging.INFO, logger="vtc_lab.data.build"):
            second = threading.Thread(target=lambda: _call(build_dataset, cfg, results, errors))
            second.start()
            deadline = time.monotonic() + 60
            while "being built by another process" not in caplog.text and second.is_alive() \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not errors, errors      # it did not refuse the directory
            assert second.is_alive()       # it waits for the lock
            (out / sh.MANIFEST).write_bytes(manifest)  # the first builder finishes
            fcntl.flock(held, fcntl.LOCK_UN)
            second.join(60)
    assert not errors and results and results[0]["reused"] is True
    # a directory holding a file the builder never writes is still refused, lock or not
    (out / sh.MANIFEST).unlink()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DatasetConfigMismatch, match="has no manifest.json"):
        build_dataset(cfg)


def _call(fn, arg, results, errors):
    try:
        results.append(fn(arg))
    except Exception as err:  # noqa: BLE001 - handed to the test thread
        errors.append(err)


def test_config_hash_placeholder_gives_one_directory_per_config(make_cfg, tmp_path):
    template = str(tmp_path / "ds-{config_hash}")
    a = build_dataset(make_cfg(limit=2, output_dir=template))
    b = build_dataset(make_cfg(limit=2, output_dir=template,
                               segmentation=SegmentationConfig(max_tokens=64, min_tokens=16)))
    assert a["path"] != b["path"]
    assert Path(a["path"]).name == "ds-" + a["config_hash"][:12]
    assert build_dataset(make_cfg(limit=2, output_dir=template))["reused"] is True


def test_degraded_build_is_its_own_dataset_recorded_in_manifest_and_params(make_cfg, tmp_path):
    """Training with degraded pages (augmentation): the manifest records the settings, the
    config hash (directory, reuse) tells them from clean pages, the pages are the degraded
    renders, and the run's params carry the level. Clean builds keep their old identity."""
    import dataclasses as dc

    import mlflow  # test-only: read back what the run logged
    import numpy as np

    from vtc_lab.data.build import identity_config, run_build_data
    from vtc_lab.render import RenderConfig, render_text
    from vtc_lab.render.degrade import DegradeConfig
    from vtc_lab.tracking.config import TrackingConfig

    clean_cfg = make_cfg(limit=2)
    assert "degrade" not in identity_config(clean_cfg)["renderer"]  # old hashes still hold
    degraded = RenderConfig(degrade=DegradeConfig(level="mild", downscale=0.8))
    cfg = make_cfg(limit=2, renderer=degraded,
                   tracking=TrackingConfig(mode="local", experiment="degrade-test"))
    metrics = run_build_data(cfg)
    clean = build_dataset(clean_cfg)
    assert metrics["config_hash"] != clean["config_hash"] and metrics["path"] != clean["path"]
    manifest = json.loads((Path(metrics["path"]) / "manifest.json").read_text())
    assert manifest["config"]["renderer"]["degrade"] == dc.asdict(degraded.degrade)
    assert manifest["identity"]["renderer"]["degrade"]["downscale"] == 0.8
    # the stored pages are the degraded renders of their segments: row k=2's first image is
    # the first page of segment 1, the target of row k=1
    rows = rows_of(metrics["path"])
    row = next(r for r in rows if r["k"] == 2)
    seg1 = next(r for r in rows if r["problem_id"] == row["problem_id"] and r["k"] == 1)["target"]
    page = np.asarray(Image.open(io.BytesIO(row["images"][0])).convert("RGB"))
    assert np.array_equal(page, np.asarray(render_text(seg1, degraded)[0]))
    assert not np.array_equal(page, np.asarray(render_text(seg1, clean_cfg.renderer)[0]))
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("degrade-test").experiment_id])[0]
    assert run.data.params["degrade"] == "mild"
