"""The resumable predictions file: a header line, then one `ProblemRecord` per finished sample.

Line 1 is `{"vtc_lab_predictions": 1, "header": {...}}`: the settings that decide the numbers
(model, benchmark version and subset, loop, renderer, prompt). A restart with the same header
skips the samples already in the file; a different header is refused (mixing two
configurations in one file would produce numbers that belong to neither). Each record is
written and flushed as its sample finishes; a torn last line from a killed process is dropped
on reopen, and that sample simply runs again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vtc_lab import atomic
from vtc_lab.infer.records import ProblemRecord
from vtc_lab.tracking.provenance import config_diff

FORMAT_VERSION = 1


def _normalize(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


class PredictionsFile:
    """Append-only jsonl of records for one (benchmark, loop), checked against its header."""

    def __init__(self, path: str | Path, header: dict[str, Any]):
        self.path = Path(path)
        self.header = _normalize(header)
        self._handle = None

    def open(self) -> list[ProblemRecord]:
        """Create the file, or validate and load it; returns the records already there."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            atomic.write_text(self.path, json.dumps({"vtc_lab_predictions": FORMAT_VERSION,
                                                     "header": self.header}, sort_keys=True) + "\n")
            records: list[ProblemRecord] = []
        else:
            records = self._load()
        self._handle = self.path.open("a", encoding="utf-8")
        if self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
            self._handle.write("\n")  # a complete last record written without its newline
        return records

    def _load(self) -> list[ProblemRecord]:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        try:
            first = json.loads(lines[0])
            header = first["header"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{self.path}:1: not a vtc-lab predictions file (no header line); "
                             "move it away or choose another output directory") from None
        if header != self.header:
            diffs = "; ".join(config_diff(header, self.header)[:8])
            raise ValueError(f"{self.path}: was written with different settings ({diffs}); "
                             "refusing to mix them. Use a new output directory or restore the "
                             "original config.")
        records: list[ProblemRecord] = []
        seen: set[tuple[str, int]] = set()
        good_bytes = len(lines[0]) + 1
        for lineno, line in enumerate(lines[1:], start=2):
            is_last = lineno == len(lines)
            if not line.strip():
                good_bytes += len(line) + (0 if is_last else 1)
                continue
            try:
                rec = ProblemRecord.from_dict(json.loads(line))
            except (ValueError, TypeError) as err:
                if is_last:  # torn write of a killed run: drop it, the sample reruns
                    break
                raise ValueError(f"{self.path}:{lineno}: malformed record ({err})") from None
            if rec.key in seen:
                raise ValueError(f"{self.path}:{lineno}: duplicate record for problem "
                                 f"{rec.problem_id!r} sample {rec.sample}")
            seen.add(rec.key)
            records.append(rec)
            good_bytes += len(line) + (0 if is_last else 1)
        if good_bytes < len(raw):
            with self.path.open("r+b") as handle:
                handle.truncate(good_bytes)
        return records

    def append(self, record: ProblemRecord) -> None:
        if self._handle is None:
            raise RuntimeError("PredictionsFile.append before open()")
        self._handle.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
