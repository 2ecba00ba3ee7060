"""The dataset directory on disk: atomic shard writes, checksums, the manifest, and the reader.

```
<dataset>/manifest.json            config, config_hash, input fingerprint, status, counts,
                                   code version, and (once complete) every shard file's checksum
<dataset>/stats.json, stats.png    see vtc_lab.data.stats
<dataset>/shards/shard-00000.parquet      samples of `problems_per_shard` consecutive traces
<dataset>/shards/shard-00000.stats.json   that shard's counts + size and sha256 of both parquets
<dataset>/pages/shard-00000.parquet       its page table: every memory page of those traces once
```
Sample k of a problem shows the pages of its segments 1..k-1, so storing pages in the rows
would repeat each page in every later sample (~n^2/2 pages per problem). Instead a sample row
holds `page_ids` into its shard's page table, where each page is stored once; the reader
(`Dataset.iter_samples`) puts the PNG bytes back as the row's `images` (and `layouts`), so
consumers see the same rows as before. A problem's samples and pages share one shard.

A shard exists only once complete: its files are written to temporary names and renamed,
sidecar (with the checksums) before the samples parquet, which marks completion; a build killed
at any moment leaves complete shards and temporary files, nothing in between. A shard damaged
later (truncated, bytes flipped) fails `verify_shard`, and the builder rebuilds it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vtc_lab import atomic
from vtc_lab.outputlock import LOCK_NAME as OUTPUT_LOCK

SHARD_DIR = "shards"
MANIFEST = "manifest.json"
LOCK = ".build.lock"
TMP_MARK = atomic.TMP_MARK
PAGE_DIR = "pages"
STATS_SUFFIX = ".stats.json"

SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("problem_id", pa.string()),
    ("k", pa.int32()),
    ("n", pa.int32()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("target", pa.string()),
    ("page_ids", pa.list_(pa.int32())),
    ("image_segments", pa.list_(pa.int32())),
    ("memory_text_tokens", pa.int64()),
    ("memory_vision_tokens", pa.int64()),
    ("target_tokens", pa.int64()),
    ("memory_text", pa.string()),
])
"""A sample row: `page_ids` index the shard's page table (pages of segments 1..k-1, in order)."""

PAGES_SCHEMA = pa.schema([
    ("page_id", pa.int32()),
    ("problem_id", pa.string()),
    ("segment", pa.int32()),
    ("png", pa.binary()),
    ("layout", pa.string()),
])
"""A page-table row: one memory page (PNG bytes, char boxes as JSON or null), stored once."""


class CorruptShardError(ValueError):
    """A shard file of a dataset is missing, truncated or unreadable."""


def shard_path(root: Path, index: int, suffix: str = ".parquet") -> Path:
    return root / SHARD_DIR / f"shard-{index:05d}{suffix}"


def pages_path(root: Path, index: int) -> Path:
    """The page table of shard `index` (apart from shards/, so `shards/*.parquet` stays the
    samples alone for pandas / `datasets`)."""
    return root / PAGE_DIR / f"shard-{index:05d}.parquet"


def shard_files(root: Path, index: int) -> list[Path]:
    """Every file of one shard (samples parquet last: it marks completion)."""
    return [shard_path(root, index, STATS_SUFFIX), pages_path(root, index), shard_path(root, index)]


def _parquet_bytes(rows: list[dict], schema: pa.Schema, raw: tuple[str, ...]) -> bytes:
    buf = io.BytesIO()
    # PNG bytes are already compressed: zstd on them only costs time.
    codecs = {name: ("none" if name in raw else "zstd") for name in schema.names}
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf, compression=codecs)
    return buf.getvalue()


def _digest(data: bytes) -> dict:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_shard(root: Path, index: int, rows: list[dict], stats: dict,
                pages: list[dict] | None = None) -> Path:
    """Write one shard: page table, then the sidecar (stats + both files' checksums), then the
    samples parquet (which marks completion)."""
    (root / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    (root / PAGE_DIR).mkdir(parents=True, exist_ok=True)
    samples = _parquet_bytes(rows, SCHEMA, ())
    table = _parquet_bytes(pages or [], PAGES_SCHEMA, ("png",))
    path, page_file = shard_path(root, index), pages_path(root, index)
    atomic.write_bytes(page_file, table)
    atomic.write_json(shard_path(root, index, STATS_SUFFIX), {
        "stats": stats,
        "files": {f"{SHARD_DIR}/{path.name}": _digest(samples),
                  f"{PAGE_DIR}/{page_file.name}": _digest(table)},
    })
    atomic.write_bytes(path, samples)
    return path


def read_sidecar(root: Path, index: int) -> dict:
    """{"stats", "files"} of one shard (raises CorruptShardError if unreadable)."""
    path = shard_path(root, index, STATS_SUFFIX)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(obj, dict) or not isinstance(obj.get("files"), dict) or "stats" not in obj:
            raise ValueError("not a shard sidecar")
        return obj
    except (OSError, ValueError) as exc:
        raise CorruptShardError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def verify_shard(root: Path, index: int) -> str | None:
    """None if every file of the shard is present with the size and sha256 its sidecar
    recorded; else the reason (naming the file)."""
    try:
        files = read_sidecar(root, index)["files"]
    except CorruptShardError as exc:
        return str(exc)
    for name, want in sorted(files.items()):
        path = root / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            return f"{path}: {type(exc).__name__}: {exc}"
        if len(data) != want.get("bytes"):
            return f"{path}: {len(data)} bytes, {want.get('bytes')} written (truncated or replaced)"
        if hashlib.sha256(data).hexdigest() != want.get("sha256"):
            return f"{path}: sha256 differs from the one written (corrupted)"
    return None


def completed_shards(root: Path) -> set[int]:
    """Shards whose samples parquet and sidecar exist (not yet verified: see verify_shard)."""
    found = set()
    for p in (root / SHARD_DIR).glob("shard-*.parquet"):
        stem = p.name[len("shard-"):-len(".parquet")]
        if stem.isdigit() and shard_path(root, int(stem), STATS_SUFFIX).exists():
            found.add(int(stem))
    return found


def remove_shard(root: Path, index: int) -> None:
    for path in shard_files(root, index):
        path.unlink(missing_ok=True)


def shard_checksums(root: Path, indices: range | list[int]) -> dict[str, dict]:
    """`<dir>/<file>` -> {"bytes", "sha256"} of every file of these shards (for the manifest)."""
    out: dict[str, dict] = {}
    for i in indices:
        out.update(read_sidecar(root, i)["files"])
    return out


# What the builder itself writes into a dataset directory (and may therefore delete).
LOCK_FILES = (LOCK, OUTPUT_LOCK)
"""Lock files: the builder's and the output lock every long job takes (never deleted)."""
_OWN_TOP = {MANIFEST, "stats.json", "stats.png", *LOCK_FILES}
_OWN_SHARD = re.compile(r"shard-\d{5}(\.parquet|\.stats\.json)")
_OWN_PAGES = re.compile(r"shard-\d{5}\.parquet")
_OWN_EXPORT = re.compile(r"data\.jsonl|dataset_info\.json|images/[0-9a-f]{2}/[0-9a-f]{40}\.png")
_TMP = re.compile(r"(.+)\.tmp\d*(?:-[0-9a-f]+)?(\.png)?")  # vtc_lab.atomic's temporaries
EXPORT_DIRS = ("llamafactory",)
_EXPORT_TMP = re.compile(r"\.llamafactory\.(tmp|old)\d+-[0-9a-f]+")  # atomic.directory's


def _is_own(rel: str) -> bool:
    """True for a path (relative to the dataset root, `/`-separated) the builder writes."""
    tmp = _TMP.fullmatch(rel.rsplit("/", 1)[-1])
    if tmp:  # a temporary of one of our files
        rel = rel[: len(rel) - len(rel.rsplit("/", 1)[-1])] + tmp.group(1)
    if rel in _OWN_TOP:
        return True
    head, _, rest = rel.partition("/")
    if head == SHARD_DIR:
        return bool(_OWN_SHARD.fullmatch(rest))
    if head == PAGE_DIR:
        return bool(_OWN_PAGES.fullmatch(rest))
    if head in EXPORT_DIRS or _EXPORT_TMP.fullmatch(head):
        return bool(_OWN_EXPORT.fullmatch(rest))
    return False


def foreign_files(root: Path) -> list[str]:
    """Paths under `root` the builder did not write (relative, sorted): what it must never
    delete. Directories count through their files; an empty foreign directory counts itself."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in filenames:
            if not _is_own(prefix + name):
                out.append(prefix + name)
        for name in dirnames:
            full = Path(dirpath) / name
            if full.is_symlink():
                out.append(prefix + name)  # never followed, never deleted
            elif (not any(full.iterdir()) and not _EXPORT_TMP.fullmatch(name)
                  and (prefix + name) not in (SHARD_DIR, PAGE_DIR, *EXPORT_DIRS, "llamafactory/images")):
                out.append(prefix + name + "/")
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    return sorted(out)


def remove_own_files(root: Path) -> int:
    """Delete everything the builder wrote in `root` (not the lock file), then the directories
    it made if they are empty. Call only after `foreign_files(root)` came back empty."""
    removed = 0
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in filenames:
            if _is_own(prefix + name) and name not in LOCK_FILES:
                (Path(dirpath) / name).unlink()
                removed += 1
        if prefix and not any(Path(dirpath).iterdir()):
            Path(dirpath).rmdir()
    return removed


def remove_temporaries(root: Path) -> int:
    """Delete temporary files a killed build left behind (only our own names); returns how many."""
    removed = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in filenames:
            if _TMP.fullmatch(name) and _is_own(prefix + name):
                (Path(dirpath) / name).unlink()
                removed += 1
    return removed


def is_dataset_manifest(manifest: Any) -> bool:
    """True for a manifest vtc-lab's builder wrote (not any file called manifest.json)."""
    return (isinstance(manifest, dict) and isinstance(manifest.get("config_hash"), str)
            and "format_version" in manifest and "status" in manifest and "identity" in manifest)


def read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable manifest ({exc}); delete the directory to rebuild") from exc


class Dataset:
    """A built SFT dataset directory (what `open_dataset` returns).

    Rows stream shard by shard in record batches; the shard's page table (each memory page once)
    is loaded with its shard, so reading holds one shard's pages and one batch of rows.
    Reads datasets with pages inside the rows (`images` column, format 1) as well.
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
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Every file the manifest lists is there with its size (cheap; the builder verifies
        the checksums): a truncated shard is named here, not by a pyarrow traceback mid-run."""
        for rel, want in sorted((self.manifest.get("files") or {}).items()):
            path = self.path / rel
            size = path.stat().st_size if path.is_file() else None
            if size != want.get("bytes"):
                found = "missing" if size is None else f"{size} bytes, {want.get('bytes')} written"
                raise CorruptShardError(
                    f"{path}: {found}; run `vtc-lab build-data` with the dataset's config "
                    "(it verifies every shard and rebuilds damaged ones) or rebuild with overwrite=true")

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
        or `Image.open(...).convert("RGB")`), in shard order. `columns=None` gives every sample
        column plus `images` and `layouts` resolved from the page table."""
        for f in self.shard_files(shard_ids):
            try:
                yield from self._shard_rows(f, columns, batch_rows)
            except CorruptShardError:
                raise
            except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad files
                raise CorruptShardError(
                    f"{f}: unreadable shard ({type(exc).__name__}: {exc}); run `vtc-lab build-data` "
                    "with the dataset's config (it verifies every shard and rebuilds damaged ones)"
                ) from exc

    def _shard_rows(self, f: Path, columns: list[str] | None, batch_rows: int) -> Iterator[dict]:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        if "page_ids" not in names:  # format 1: pages inside the rows
            for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
                yield from batch.to_pylist()
            return
        want = set(names) | {"images", "layouts"} if columns is None else set(columns)
        resolve = [c for c in ("images", "layouts") if c in want]
        read = [c for c in names if c in want or (c == "page_ids" and resolve)]
        pngs = layouts = None
        if resolve:
            table = pq.read_table(self.path / PAGE_DIR / f.name, columns=["png", "layout"])
            pngs = table.column("png").to_pylist()
            if "layouts" in resolve:
                layouts = table.column("layout").to_pylist()
            del table
        for batch in pf.iter_batches(batch_size=batch_rows, columns=read):
            for row in batch.to_pylist():
                ids = row["page_ids"] if resolve else ()
                if pngs is not None:
                    row["images"] = [pngs[i] for i in ids]
                if layouts is not None:
                    row["layouts"] = [layouts[i] for i in ids if layouts[i] is not None]
                if "page_ids" not in want:
                    row.pop("page_ids", None)
                yield row


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Open a complete dataset directory written by `vtc-lab build-data`."""
    return Dataset(path)


def decode_images(row: dict) -> list:
    """The row's memory pages as RGB PIL images, in order."""
    from PIL import Image

    return [Image.open(io.BytesIO(b)).convert("RGB") for b in row["images"]]
