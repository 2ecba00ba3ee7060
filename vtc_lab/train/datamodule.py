"""Stream a built dataset directory into training batches, split by problem, resumable.

Rows are read shard by shard (never the whole dataset), assigned to train/val by a hash of
their `problem_id` (all segments of one problem land on the same side, so val/loss measures
problems the model never saw), shuffled in a bounded buffer, dealt round-robin to DDP ranks and
DataLoader workers, and encoded by `SFTEncoder`. The train stream is endless (epoch after epoch,
reshuffled per epoch) so every rank runs exactly `max_steps` steps; each batch carries its
consumer's stream position, which the checkpoint stores so a resumed run skips what was seen.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterator
from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vtc_lab.train.collate import EncodeStats, SFTEncoder, collate

log = logging.getLogger(__name__)


def is_val_problem(problem_id: str, val_fraction: float, seed: int) -> bool:
    """Deterministic, order-free split: the same problem is always on the same side."""
    digest = hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def count_split(dataset, val_fraction: float, seed: int) -> tuple[int, int]:
    """(train, val) sample counts, reading only the problem_id column."""
    train = val = 0
    for row in dataset.iter_samples(columns=["problem_id"], batch_rows=4096):
        if is_val_problem(row["problem_id"], val_fraction, seed):
            val += 1
        else:
            train += 1
    return train, val


def _buffer_shuffle(rows: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    buffer: list[dict] = []
    for row in rows:
        buffer.append(row)
        if len(buffer) >= size:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


class SFTStream(IterableDataset):
    """Encoded samples of one split for this rank/worker, in batches' worth of lists."""

    def __init__(self, dataset, encoder: SFTEncoder, *, split: str, val_fraction: float,
                 seed: int, batch_size: int, shuffle_buffer: int = 0, endless: bool = False,
                 limit: int | None = None, rank: int = 0, world_size: int = 1,
                 start_positions: dict[int, int] | None = None):
        self.dataset, self.encoder = dataset, encoder
        self.split, self.val_fraction, self.seed = split, val_fraction, seed
        self.batch_size, self.shuffle_buffer = batch_size, shuffle_buffer
        self.endless, self.limit = endless, limit
        self.rank, self.world_size = rank, world_size
        self.start_positions = dict(start_positions or {})

    def _rows(self, epoch: int) -> Iterator[dict]:
        want_val = self.split == "val"
        rows = (row for row in self.dataset.iter_samples()
                if is_val_problem(row["problem_id"], self.val_fraction, self.seed) == want_val)
        if self.shuffle_buffer and not want_val:
            rows = _buffer_shuffle(rows, self.shuffle_buffer, random.Random(f"{self.seed}:{epoch}"))
        for j, row in enumerate(rows):
            if self.limit is not None and j >= self.limit:
                return
            yield row

    def __iter__(self) -> Iterator[list[dict]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        consumers = self.world_size * workers
        me = self.rank * workers + worker
        encoder = self.encoder
        encoder.stats = EncodeStats()
        skip = self.start_positions.get(worker, 0)
        position, epoch, batch = 0, 0, []
        while True:
            produced = seen = 0
            for j, row in enumerate(self._rows(epoch)):
                if j % consumers != me:
                    continue
                seen += 1
                position += 1
                if position <= skip:
                    continue
                row["_source"] = f"{self.dataset.path} (problem_id={row.get('problem_id')!r})"
                item = encoder.encode(row)
                if item is None:
                    continue
                produced += 1
                batch.append(item)
                if len(batch) == self.batch_size:
                    yield self._finish(batch, worker, position)
                    batch = []
            if not self.endless:
                break
            if seen == 0:
                raise ValueError(f"{self.dataset.path}: the {self.split} split has fewer samples "
                                 f"than consumers (ranks x DataLoader workers = {consumers}); "
                                 f"rank {self.rank} worker {worker} got none")
            if produced == 0 and position > skip:
                raise ValueError(self._nothing_fits())
            epoch += 1
        if batch:
            yield self._finish(batch, worker, position)

    def _finish(self, batch: list[dict], worker: int, position: int) -> list[dict]:
        batch[0]["_position"] = (worker, position)
        batch[0]["_stats"] = self.encoder.stats.as_dict()
        return batch

    def _nothing_fits(self) -> str:
        s = self.encoder.stats
        return (f"no {self.split} sample of {self.dataset.path} fits optim.cutoff_len="
                f"{self.encoder.cutoff_len}: {s.dropped_too_long} of {s.samples} dropped as too "
                f"long (raise optim.cutoff_len or use optim.truncation=truncate)")


def collate_lists(batches: list[list[dict]], pad_token_id: int) -> dict:
    """DataLoader collate_fn: the stream already yields whole batches (batch_size=None would
    also work, but a list keeps worker pickling to one object per batch)."""
    (items,) = batches
    position = items[0].pop("_position", None)
    stats = items[0].pop("_stats", None)
    batch = collate(items, pad_token_id, stats)
    if position is not None:
        batch["position"] = torch.tensor(position)
    return batch


class SFTDataModule(pl.LightningDataModule):
    """Train/val DataLoaders over a dataset directory for one backbone."""

    def __init__(self, dataset, encoder: SFTEncoder, *, batch_size: int, val_fraction: float,
                 val_max_samples: int, shuffle_buffer: int, num_workers: int, seed: int):
        super().__init__()
        self.dataset, self.encoder = dataset, encoder
        self.batch_size, self.val_fraction = batch_size, val_fraction
        self.val_max_samples, self.shuffle_buffer = val_max_samples, shuffle_buffer
        self.num_workers, self.seed = num_workers, seed
        self.start_positions: dict[int, int] = {}
        self.train_samples, self.val_samples = count_split(dataset, val_fraction, seed)
        if self.train_samples == 0:
            raise ValueError(f"{dataset.path}: no training samples (dataset has "
                             f"{dataset.num_samples} samples, {self.val_samples} held out for val; "
                             f"lower optim.val_fraction or build more data)")

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, stream: SFTStream, workers: int) -> DataLoader:
        pad = self.encoder.tokenizer.pad_token_id
        return DataLoader(stream, batch_size=1, num_workers=workers,
                          collate_fn=partial(collate_lists, pad_token_id=pad),
                          persistent_workers=False, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        stream = SFTStream(self.dataset, self.encoder, split="train", val_fraction=self.val_fraction,
                           seed=self.seed, batch_size=self.batch_size,
                           shuffle_buffer=self.shuffle_buffer, endless=True, rank=rank,
                           world_size=world, start_positions=self.start_positions)
        return self._loader(stream, self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_samples or not self.val_max_samples:
            return []
        rank, world = self._rank()
        limit = max(world, self.val_max_samples // world * world)
        stream = SFTStream(self.dataset, self.encoder, split="val", val_fraction=self.val_fraction,
                           seed=self.seed, batch_size=self.batch_size, limit=limit, rank=rank,
                           world_size=world)
        return self._loader(stream, 0)

    # Lightning stores this in the checkpoint: where each worker's stream stood.
    def state_dict(self) -> dict[str, Any]:
        return {"start_positions": dict(self.start_positions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start_positions = {int(k): int(v) for k, v in state.get("start_positions", {}).items()}
