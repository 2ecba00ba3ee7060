"""The dataset directory on disk: atomic shard writes, the manifest, and the reader.

```
<dataset>/manifest.json            config, config_hash, status, counts, code version
<dataset>/stats.json, stats.png    see vtc_lab.data.stats
<dataset>/shards/shard-00000.parquet        one shard = `problems_per_shard` consecutive traces
<dataset>/shards/shard-00000.stats.json     that shard's counts (written before the parquet)
```
A shard exists only once complete: it is written to a temporary name and renamed, so a build
killed at any moment leaves complete shards and temporary files, nothing in between.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vtc_lab import atomic

SHARD_DIR = "shards"
MANIFEST = "manifest.json"
LOCK = ".build.lock"
TMP_MARK = atomic.TMP_MARK

SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("problem_id", pa.string()),
    ("k", pa.int32()),
    ("n", pa.int32()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("target", pa.string()),
    ("images", pa.list_(pa.binary())),
    ("image_segments", pa.list_(pa.int32())),
    ("memory_text_tokens", pa.int64()),
    ("memory_vision_tokens", pa.int64()),
    ("target_tokens", pa.int64()),
    ("layouts", pa.list_(pa.string())),
])


def shard_path(root: Path, index: int, suffix: str = ".parquet") -> Path:
    return root / SHARD_DIR / f"shard-{index:05d}{suffix}"


def write_shard(root: Path, index: int, rows: list[dict], stats: dict) -> Path:
    """Write one shard: stats sidecar first, then the parquet (the parquet marks completion)."""
    (root / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    atomic.write_json(shard_path(root, index, ".stats.json"), stats)
    buf = io.BytesIO()
    # PNG bytes are already compressed: zstd on them only costs time.
    codecs = {name: ("none" if name == "images" else "zstd") for name in SCHEMA.names}
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), buf, compression=codecs)
    path = shard_path(root, index)
    atomic.write_bytes(path, buf.getvalue())
    return path


def completed_shards(root: Path) -> set[int]:
    found = set()
    for p in (root / SHARD_DIR).glob("shard-*.parquet"):
        stem = p.name[len("shard-"):-len(".parquet")]
        if stem.isdigit() and shard_path(root, int(stem), ".stats.json").exists():
            found.add(int(stem))
    return found


def remove_temporaries(root: Path) -> int:
    """Delete temporary files a killed build left behind; returns how many."""
    removed = 0
    for p in root.rglob(f"*{TMP_MARK}*"):
        if p.is_file():
            p.unlink()
            removed += 1
    return removed


def read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: unreadable manifest ({exc}); delete the directory to rebuild") from exc


class Dataset:
    """A built SFT dataset directory (what `open_dataset` returns).

    Rows stream shard by shard in record batches, so reading never holds more than one batch
    of images in memory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest is None:
            raise FileNotFoundError(f"{self.path}: no {MANIFEST}; not a vtc-lab dataset (run `vtc-lab build-data`)")
        if manifest.get("status") != "complete":
            raise ValueError(f"{self.path}: dataset build is {manifest.get('status')!r}, not complete; "
                             "run `vtc-lab build-data` with the same config to finish it")
        if manifest.get("mode") == "stats_only":
            raise ValueError(f"{self.path}: a stats-only build has no samples")
        self.manifest: dict = manifest

    @property
    def num_samples(self) -> int:
        return int(self.manifest["counts"]["samples"])

    def __len__(self) -> int:
        return self.num_samples

    @property
    def shard_ids(self) -> list[int]:
        return list(range(int(self.manifest["counts"]["shards"])))

    @property
    def system_prompt(self) -> str | None:
        return self.manifest["config"]["data"]["system_prompt"]

    @property
    def image_position(self) -> str:
        return self.manifest["config"]["data"]["image_position"]

    def shard_files(self, shard_ids: list[int] | None = None) -> list[Path]:
        ids = self.shard_ids if shard_ids is None else list(shard_ids)
        return [shard_path(self.path, i) for i in ids]

    def iter_samples(self, shard_ids: list[int] | None = None, columns: list[str] | None = None,
                     batch_rows: int = 64) -> Iterator[dict]:
        """Rows as dicts (images as PNG bytes, greyscale or RGB: decode with `decode_images`
        or `Image.open(...).convert("RGB")`), in shard order."""
        for f in self.shard_files(shard_ids):
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
                yield from batch.to_pylist()


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Open a complete dataset directory written by `vtc-lab build-data`."""
    return Dataset(path)


def decode_images(row: dict) -> list:
    """The row's memory pages as RGB PIL images, in order."""
    from PIL import Image

    return [Image.open(io.BytesIO(b)).convert("RGB") for b in row["images"]]
