"""Export a built dataset to the LLaMA-Factory sharegpt layout, so users can train with it.

```
<dataset>/llamafactory/data.jsonl          {"messages": [system?, user, assistant], "images": [...]}
<dataset>/llamafactory/dataset_info.json   the entry LLaMA-Factory's `dataset_dir` expects
<dataset>/llamafactory/images/<ab>/<sha256 of the PNG>.png   (one file per distinct page)
```
Image paths are relative to the export directory (use it as LLaMA-Factory's `dataset_dir` /
`media_dir`). File names are content hashes, never problem ids, so nothing can land outside
the export directory. The user turn holds one `<image>` placeholder per
image, before or after the question as in the dataset's `data.image_position`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from vtc_lab import atomic
from vtc_lab.data.shards import open_dataset
from vtc_lab.data.special_tokens import neutralised

IMAGE_TOKEN = "<image>"
EXPORT_DIR = "llamafactory"


def export_llamafactory(dataset_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                        dataset_name: str = "vtc_r1") -> Path:
    """Write the sharegpt export of a complete dataset (atomically: temp dir, then rename)."""
    ds = open_dataset(dataset_path)
    final = Path(out_dir) if out_dir is not None else ds.path / EXPORT_DIR
    system, position = ds.system_prompt, ds.image_position
    with atomic.directory(final) as tmp:
        _write_export(ds, tmp, system, position, dataset_name)
    return final


def _write_export(ds, tmp: Path, system: str | None, position: str, dataset_name: str) -> None:
    (tmp / "images").mkdir()
    with open(tmp / "data.jsonl", "w", encoding="utf-8") as fh:
        for shard in ds.shard_ids:
            # id of a page's bytes -> (the bytes, kept alive so the id stays unique, its file)
            written: dict[int, tuple[bytes, str]] = {}
            for row in ds.iter_samples([shard]):
                paths = []
                for png in row["images"]:
                    # Sample k shows the pages of samples 1..k-1: one file per distinct page.
                    known = written.get(id(png))
                    rel = known[1] if known is not None else None
                    if rel is None:
                        digest = hashlib.sha256(png).hexdigest()
                        rel = f"images/{digest[:2]}/{digest[:40]}.png"
                        if not (tmp / rel).exists():
                            (tmp / rel).parent.mkdir(exist_ok=True)
                            (tmp / rel).write_bytes(png)
                        written[id(png)] = (png, rel)
                    paths.append(rel)
                marks = IMAGE_TOKEN * len(paths)
                # the builder already made special tokens inert; datasets written before it did
                # must not gain an <image> tag without an image either (idempotent)
                question, target = neutralised(row["question"]), neutralised(row["target"])
                user = marks + question if position == "before" else question + marks
                messages = ([{"role": "system", "content": system}] if system is not None else [])
                messages += [{"role": "user", "content": user},
                             {"role": "assistant", "content": target}]
                fh.write(json.dumps({"messages": messages, "images": paths,
                                     "sample_id": row["sample_id"]}, ensure_ascii=False) + "\n")
    info = {dataset_name: {
        "file_name": "data.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"},
    }}
    atomic.write_json(tmp / "dataset_info.json", info)
