"""A small dataset directory in the documented layout (docs/architecture.md), built here so the
training tests do not depend on the builder's speed; `test_cli_train` covers the real builder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from vtc_lab.data import REFERENCE_SYSTEM_PROMPT

COLUMNS = ["sample_id", "problem_id", "k", "n", "question", "answer", "target", "images",
           "image_segments", "memory_text_tokens", "memory_vision_tokens", "target_tokens", "layouts"]


def png(text: str, width: int = 160, height: int = 48) -> bytes:
    img = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(img).text((4, 4), text, fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def sample_rows(n_problems: int, segments: int = 3) -> list[dict]:
    rows = []
    for p in range(n_problems):
        a, b = p % 10, (p * 3) % 10
        segs = [f"Step {i}: {a}+{b}*{i}={a + b * i}. " for i in range(1, segments)]
        segs.append(f"So {a}+{b}={a + b}.</think>\n<answer>{a + b}</answer>")
        for k in range(1, segments + 1):
            rows.append({
                "sample_id": f"p{p}-k{k}", "problem_id": f"p{p}", "k": k, "n": segments,
                "question": f"What is {a}+{b}?", "answer": str(a + b), "target": segs[k - 1],
                "images": [png(s) for s in segs[: k - 1]], "image_segments": list(range(1, k)),
                "memory_text_tokens": 0, "memory_vision_tokens": 0, "target_tokens": 0,
                "layouts": [],
            })
    return rows


def write_dataset(root: Path, rows: list[dict], shard_rows: int = 12,
                  system_prompt: str | None = REFERENCE_SYSTEM_PROMPT) -> Path:
    (root / "shards").mkdir(parents=True, exist_ok=True)
    shards = [rows[i:i + shard_rows] for i in range(0, len(rows), shard_rows)] or [[]]
    for i, chunk in enumerate(shards):
        table = pa.Table.from_pylist(chunk) if chunk else pa.table({c: [] for c in COLUMNS})
        pq.write_table(table, root / "shards" / f"shard-{i:05d}.parquet")
        (root / "shards" / f"shard-{i:05d}.stats.json").write_text("{}")
    manifest = {"status": "complete", "mode": "samples", "config_hash": "test",
                "config": {"data": {"system_prompt": system_prompt, "image_position": "before"}},
                "counts": {"samples": len(rows), "shards": len(shards),
                           "problems": len({r["problem_id"] for r in rows})}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    return write_dataset(tmp_path / "ds", sample_rows(12))


@pytest.fixture
def make_png():
    """png(text, width, height) -> PNG bytes of a page with that text."""
    return png


@pytest.fixture
def make_dataset():
    """write_dataset(root, rows) / sample_rows(n_problems, segments) helpers."""
    return write_dataset, sample_rows
