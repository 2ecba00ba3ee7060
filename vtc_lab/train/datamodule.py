"""Stream a built dataset directory into training batches, split by problem, resumable.

Rows are read shard by shard (never the whole dataset), assigned to train/val by a hash of
their `problem_id` (all segments of one problem land on the same side, so val/loss measures
problems the model never saw), shuffled in a bounded buffer, dealt round-robin to DDP ranks and
DataLoader workers, and encoded by `SFTEncoder`. The train stream is endless (epoch after epoch,
reshuffled per epoch) so every rank runs exactly `max_steps` steps; each batch carries its
consumer's stream position, which the checkpoint stores so a resumed run skips what was seen.
The validation stream is finite, and under several ranks it is padded so that every rank runs
the same number of batches: FSDP gathers each layer's shards from all ranks on every forward,
so a rank with one batch more than the others would wait for them forever.
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

from vtc_lab.train.collate import IGNORE_INDEX, EncodeStats, SFTEncoder, collate

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


def padding_of(item: dict) -> dict:
    """A copy of an encoded sample that supervises nothing (every label ignored): it runs the
    same forward pass as a real sample, so a rank short of validation rows keeps step with the
    others, and it adds no token to the loss and no sample to val/loss's weight."""
    pad = {k: v for k, v in item.items() if not k.startswith("_")}
    pad["labels"] = torch.full_like(item["labels"], IGNORE_INDEX)
    if "char_labels" in item:
        pad["char_labels"] = torch.full_like(item["char_labels"], IGNORE_INDEX)
    pad["_pad"] = True
    return pad


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
                 start_positions: dict[int, int] | None = None, even_total: int | None = None):
        """`even_total` (finite streams only): the number of rows the split yields over all
        consumers; every consumer then yields exactly ceil(even_total / consumers) samples,
        its own plus zero-weight padding (`padding_of`) for the rows it lacks or the encoder
        dropped, so all ranks run the same number of batches."""
        self.dataset, self.encoder = dataset, encoder
        self.split, self.val_fraction, self.seed = split, val_fraction, seed
        self.batch_size, self.shuffle_buffer = batch_size, shuffle_buffer
        self.endless, self.limit = endless, limit
        self.rank, self.world_size = rank, world_size
        self.start_positions = dict(start_positions or {})
        self.even_total = even_total

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
        template = None  # the padding of this consumer's first sample
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
                if template is None and self.even_total is not None:
                    template = padding_of(item)
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
        if self.even_total is not None:
            missing = -(-self.even_total // consumers) - produced
            if missing > 0 and template is None:
                template = self._any_padding()
            for _ in range(missing if template is not None else 0):
                batch.append(dict(template))
                if len(batch) == self.batch_size:
                    yield self._finish(batch, worker, position)
                    batch = []
        if batch:
            yield self._finish(batch, worker, position)

    def _any_padding(self) -> dict | None:
        """Padding for a consumer that encoded no sample of its own: the first row of the split
        that encodes (None when none does: then no consumer has a sample, and all yield
        nothing alike)."""
        for row in self._rows(0):
            item = self.encoder.encode(row)
            if item is not None:
                return padding_of(item)
        return None

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
    real = sum(not item.pop("_pad", False) for item in items)
    batch = collate(items, pad_token_id, stats)
    batch["real_samples"] = torch.tensor(real)  # val/loss's weight: padding counts for nothing
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
        return self._loader(self.val_stream(*self._rank()), 0)

    def val_stream(self, rank: int, world: int) -> SFTStream:
        """The validation samples of `rank` out of `world`: the first `val_max_samples` of the
        split, dealt round-robin; under several ranks padded to the same number of batches."""
        limit = self.val_max_samples
        even = min(limit, self.val_samples) if world > 1 else None
        return SFTStream(self.dataset, self.encoder, split="val", val_fraction=self.val_fraction,
                         seed=self.seed, batch_size=self.batch_size, limit=limit, rank=rank,
                         world_size=world, even_total=even)

    # Lightning stores this in the checkpoint: where each worker's stream stood.
    def state_dict(self) -> dict[str, Any]:
        return {"start_positions": dict(self.start_positions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start_positions = {int(k): int(v) for k, v in state.get("start_positions", {}).items()}
